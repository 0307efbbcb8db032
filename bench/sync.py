"""Benchmark of the registry drain: ``ordo sync once`` against a bare httpx loop, same run.

Run from the repository root::

    python -m bench.sync [--count 10000] [--batch 100] [--faults] [--keep DIR]

It makes the test PKI, signs ``--count`` prescriptions with the physician's test card key
(in parallel, not timed) and records them as the kiosk does (outbox rows pending). It starts
one reference registry per drain (``ordo registry-sim --plain-http`` on 127.0.0.1, each its
own process and empty database, same options, stopped after its drain). Then ``--runs``
rounds (3 by default), each in this order:

- **bare**: one ``httpx.Client`` (the same socket options as Ordo's client) posts the very
  bodies Ordo sends (built beforehand by Ordo's own encoder, not timed) one after the other;
- **sequential**: the sync engine with ``concurrency=1`` (a child process, the same code as
  ``ordo sync once``; one thread does it all) drains a fresh copy of the store: loading and
  checking each signed prescription, FHIR mapping, sending, acknowledging (receipt, state
  change, audit);
- **concurrent**: the same with the default window (``--concurrency``, 4);

and a last bare loop after the last round, so that every engine drain has a bare one before
and after it. Each figure is the **median** of its runs (the machine is shared and noisy;
every run is in ``runs``).

``ratio`` = engine throughput / bare throughput (medians), the engine's time being its push
as it reports it (``push.seconds``). The sequential ratio measures the engine's own cost;
the concurrent one what the appliance does by default. Peak memory is each child's own
high-water mark (``VmHWM``). Every registry must end up holding exactly ``--count``
prescriptions and each store all of them acknowledged.

``cpu_ms_per_record`` is the client side's CPU time per prescription (all threads of the
engine child during its push; the bare loop's own process during its loop), the registry's
not included; ``cpu_ratio`` = engine / bare (medians). On a machine whose CPUs are busy with
other work the ratio follows the CPU each side needs per record (the registry's plus the
client's) rather than the latencies, so that figure explains a ratio measured under load; it
varies far less than the times.

``--latency-ms N`` makes every registry wait up to N ms per request, as a network would.
``--faults`` injects 20 % 500/503, 5 % resets and 5 % lost answers (seed 7) and runs the
default engine only, once: the drain time then includes the retries (a bare loop has none).
Prints JSON only.

Goals (``goals``, ``met`` when all hold): one at a time, throughput ≥ 0.9× the bare loop's
and client CPU per record ≤ 1.5× the bare loop's; drain ≤ 30 s for 10,000 prescriptions
(4 in flight).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import socket
import sqlite3
import statistics
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import httpx

from bench.common import bench_run

ROOT = Path(__file__).resolve().parents[1]
GOAL_RATIO, GOAL_CPU_RATIO, GOAL_DRAIN_S = 0.9, 1.5, 30.0
CLI = [sys.executable, "-c", "from appliance.cli import main; main()"]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _sign_chunk(args: tuple[str, int, int]) -> list:
    """Worker: sign ``n`` prescriptions (IDs from a clock offset so workers never collide)."""
    pki_dir, n, worker = args
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    from appliance.domain.prescription_id import PrescriptionIdGenerator
    from appliance.services.signature import SoftwareSigner, sign_prescription
    from drivers.card.pki import PROFILES, PkiPaths
    from tests.factories import physician, prescription, resident

    card = PkiPaths(Path(pki_dir)).card_dir("physician")
    signer = SoftwareSigner(load_pem_private_key((card / "sign.key").read_bytes(), None),
                            x509.load_der_x509_certificate((card / "sign.der").read_bytes()))
    p = PROFILES["physician"]
    doctor = physician(id_nat_ps=p.id_nat_ps, last_name=p.family_name, first_name=p.given_name)
    ids = PrescriptionIdGenerator(lambda: int(time.time() * 1000) + worker * 10_000_000)
    who = resident(1)
    return [sign_prescription(prescription(ids.new(), prescriber=doctor, resident=who),
                              signer, datetime.now(UTC)) for _ in range(n)]


def prepare(work: Path, count: int) -> tuple[Path, object]:
    from appliance.services.signature import record_signature
    from appliance.store.uow import SqliteUnitOfWork
    from drivers.card.pki import init_pki
    from tests.factories import resident

    pki = init_pki(work / "pki")
    data = work / "data"
    uow = SqliteUnitOfWork.open(data / "ordo.sqlite", migrate=True)
    workers = max(os.cpu_count() or 1, 1)
    chunks = [(str(pki.directory), count // workers + (i < count % workers), i)
              for i in range(workers)]
    with ProcessPoolExecutor(workers) as pool:
        signed = [s for chunk in pool.map(_sign_chunk, chunks) for s in chunk]
    with uow:
        uow.residents.upsert([resident(1)])
        for s in signed:
            record_signature(uow, s, actor="bench")
        uow.commit()
    uow.close()
    return data, pki


def bodies_of(data: Path) -> list[bytes]:
    from appliance.store.uow import SqliteUnitOfWork
    from sync.client import RegistryClient

    uow = SqliteUnitOfWork.open(data / "ordo.sqlite")
    encoder = RegistryClient("http://127.0.0.1:9/fhir")  # its encoder only: no request
    try:
        out = []
        ids = [r.prescription_id for r in uow.outbox.due(datetime.now(UTC), 10**9)]
        rows = uow.prescriptions.signed_rows(ids)
        for pid in ids:
            signed = rows[pid].load()
            out.append(encoder.encode_registration(signed.prescription, signed.proof))
        return out
    finally:
        uow.close()


def start_registry(work: Path, name: str, pki, faults: list[str]) -> tuple[subprocess.Popen,
                                                                          str, Path]:
    port = _free_port()
    db = work / f"registry-{name}.sqlite"
    trust = [arg for path in pki.trust_roots for arg in ("--trust-root", str(path))]
    crls = [arg for path in pki.crls for arg in ("--crl", str(path))]
    proc = subprocess.Popen([*CLI, "--data-dir", str(work / f"sim-{name}"), "registry-sim",
                             "--plain-http", "--port", str(port), "--db", str(db),
                             *trust, *crls, *faults],
                            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/fhir"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(url + "/metadata", timeout=1).status_code == 200:
                return proc, url, db
        except httpx.TransportError:
            time.sleep(0.1)
    proc.kill()
    raise SystemExit(f"registry {name} did not start")


def held(db: Path) -> int:
    conn = sqlite3.connect(db)
    try:
        return conn.execute("SELECT count(*) FROM prescriptions").fetchone()[0]
    finally:
        conn.close()


def bare_loop(url: str, bodies: list[bytes]) -> tuple[float, float]:
    """Post ``bodies`` one after the other; returns (seconds, CPU seconds of this process)."""
    from sync.client import SOCKET_OPTIONS

    with httpx.Client(transport=httpx.HTTPTransport(socket_options=SOCKET_OPTIONS),
                      timeout=30) as client:
        started, cpu = time.perf_counter(), time.process_time()
        for body in bodies:
            answer = client.post(url, content=body,
                                 headers={"Content-Type": "application/fhir+json"})
            if answer.status_code != 200:
                raise SystemExit(f"bare loop: HTTP {answer.status_code}")
        return time.perf_counter() - started, time.process_time() - cpu


def engine_drain(data: Path, url: str, batch: int, concurrency: int) -> dict:
    """Drain ``data`` into ``url`` in a child process (``--child``), as ``ordo sync once``
    does it; returns the child's push report and its peak resident memory."""
    done = subprocess.run([sys.executable, "-m", "bench.sync", "--child", str(data), url,
                           "--batch", str(batch), "--concurrency", str(concurrency)],
                          cwd=ROOT, capture_output=True, text=True, check=False)
    if done.returncode:
        raise SystemExit(f"engine child failed: {done.stderr[-2000:]}")
    return json.loads(done.stdout)


def child(data: Path, url: str, batch: int, concurrency: int) -> None:
    from appliance.bootstrap import bootstrap
    from appliance.config import load_settings

    # as `ordo sync once` builds it: the composition root from the settings
    app = bootstrap(load_settings(data_dir=data, environ={"ORDO_REGISTRY_URL": url}))
    engine = app.sync_engine(batch_size=batch, concurrency=concurrency, backoff_cap_s=1.0)
    app.uow  # noqa: B018 (the connection is opened before the clock starts)
    cpu = time.process_time()
    push = engine.push()
    push_cpu = time.process_time() - cpu
    pull = engine.pull()
    app.close()
    print(json.dumps({"push": push.__dict__, "push_cpu_s": round(push_cpu, 3),
                      "pull_received": pull.received,
                      "peak_rss_mb": round(peak_rss_kb() / 1024, 1)}))


def peak_rss_kb() -> int:
    """This process's own peak resident set (``VmHWM``). Not ``ru_maxrss``: on Linux that
    one survives ``execve``, so a child would report its parent's size at fork time."""
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def engine_result(run: dict, db: Path) -> dict:
    push = run["push"]
    return {"push_s": push["seconds"],
            "per_s": round(push["acknowledged"] / push["seconds"], 1),
            "cpu_ms_per_record": round(run["push_cpu_s"] * 1000
                                       / max(push["acknowledged"], 1), 3),
            "acknowledged": push["acknowledged"], "replayed": push["replayed"],
            "retried": push["retried"], "remaining": push["remaining"], "held": held(db),
            "peak_rss_mb": run["peak_rss_mb"]}


def _median_run(runs: list[dict], key: str) -> dict:
    """The run whose ``key`` is the median (the lower one of an even count), with every
    run's ``push_s`` and ``cpu_ms_per_record`` beside it."""
    ordered = sorted(runs, key=lambda r: r[key])
    middle = ordered[(len(ordered) - 1) // 2]
    return {**middle, "runs_s": [r[key] for r in runs],
            "runs_cpu_ms_per_record": [r["cpu_ms_per_record"] for r in runs]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=10_000)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--runs", type=int, default=3, help="rounds (medians are reported)")
    parser.add_argument("--faults", action="store_true")
    parser.add_argument("--latency-ms", type=float, default=0.0,
                        help="registry latency, uniform in [0, N] ms (all registries alike)")
    parser.add_argument("--keep", type=Path, help="work in this directory and keep it")
    parser.add_argument("--child", nargs=2, metavar=("DATA_DIR", "URL"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(Path(args.child[0]), args.child[1], args.batch, args.concurrency)
        return
    procs: list[subprocess.Popen] = []

    def stop(proc: subprocess.Popen) -> None:
        proc.terminate()
        proc.wait(timeout=10)
        procs.remove(proc)

    with bench_run(args.keep, "ordo-bench-sync-") as (work, result):
        started = time.perf_counter()
        data, pki = prepare(work, args.count)
        prep_s = time.perf_counter() - started
        latency = ["--latency-ms", str(args.latency_ms)] if args.latency_ms else []
        runs = 1 if args.faults else max(args.runs, 1)
        result.update({"count": args.count, "batch": args.batch,
                       "concurrency": args.concurrency, "faults": args.faults,
                       "latency_ms": args.latency_ms, "runs": runs,
                       "prepare_s": round(prep_s, 2), "cpus": os.cpu_count(),
                       "loadavg_before": [round(x, 2) for x in os.getloadavg()]})

        def drain(name: str, concurrency: int, faults: list[str]) -> dict:
            store = work / f"data-{name}"
            store.mkdir()
            shutil.copy(data / "ordo.sqlite", store / "ordo.sqlite")
            proc, url, db = start_registry(work, name, pki, faults)
            procs.append(proc)
            try:
                return engine_result(engine_drain(store, url, args.batch, concurrency), db)
            finally:
                stop(proc)

        if args.faults:
            result["engine"] = drain("faults", args.concurrency, [
                "--seed", "7", "--error-rate", "0.2", "--reset-rate", "0.05",
                "--drop-rate", "0.05", *latency])
            result["exactly_once"] = (result["engine"]["held"] == args.count
                                      == result["engine"]["acknowledged"])
        else:
            bodies = bodies_of(data)

            def bare(name: str) -> dict:
                proc, url, db = start_registry(work, name, pki, latency)
                procs.append(proc)
                try:
                    seconds, cpu = bare_loop(url, bodies)
                    return {"seconds": round(seconds, 3),
                            "per_s": round(len(bodies) / seconds, 1),
                            "cpu_ms_per_record": round(cpu * 1000 / max(len(bodies), 1), 3),
                            "held": held(db)}
                finally:
                    stop(proc)

            # Bare loops and engine drains alternate, each into a fresh registry: every
            # engine drain has a bare loop just before and just after it.
            bare_runs: list[dict] = []
            engine_runs: dict[str, list[dict]] = {"sequential": [], "concurrent": []}
            for n in range(runs):
                bare_runs.append(bare(f"bare-{n}"))
                for name, concurrency in (("sequential", 1), ("concurrent", args.concurrency)):
                    engine_runs[name].append(drain(f"{name}-{n}", concurrency, latency))
            bare_runs.append(bare(f"bare-{runs}"))
            result["bare"] = {**_median_run(bare_runs, "seconds"),
                              "body_bytes_avg": sum(map(len, bodies)) // max(len(bodies), 1)}
            result["bare"]["cpu_ms_per_record"] = round(statistics.median(
                r["cpu_ms_per_record"] for r in bare_runs), 3)
            del bodies
            for name, done in engine_runs.items():
                figures = _median_run(done, "push_s")
                figures["cpu_ms_per_record"] = round(statistics.median(
                    r["cpu_ms_per_record"] for r in done), 3)
                figures["ratio"] = round(figures["per_s"] / result["bare"]["per_s"], 3)
                figures["cpu_ratio"] = round(figures["cpu_ms_per_record"]
                                             / result["bare"]["cpu_ms_per_record"], 3)
                figures["held"] = min(r["held"] for r in done)
                figures["acknowledged"] = min(r["acknowledged"] for r in done)
                result[name] = figures
            result["exactly_once"] = all(r["held"] == args.count == r["acknowledged"]
                                         for done in engine_runs.values() for r in done)
            sequential, drain_s = result["sequential"], result["concurrent"]["push_s"]
            goals = {"ratio_min": GOAL_RATIO, "cpu_ratio_max": GOAL_CPU_RATIO,
                     "drain_max_s": GOAL_DRAIN_S,
                     "ratio_sequential_ok": sequential["ratio"] >= GOAL_RATIO,
                     "cpu_sequential_ok": sequential["cpu_ratio"] <= GOAL_CPU_RATIO,
                     "drain_ok": drain_s <= GOAL_DRAIN_S}
            goals["met"] = all(v for k, v in goals.items() if k.endswith("_ok"))
            goals["status"] = "met" if goals["met"] else "not met"
            result["goals"] = goals
        result["loadavg_after"] = [round(x, 2) for x in os.getloadavg()]
    for proc in list(procs):  # the run failed: the registries stop all the same
        stop(proc)


if __name__ == "__main__":
    main()
