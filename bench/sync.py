"""Benchmark of the registry drain: ``ordo sync once`` against a bare httpx loop, same run.

Run from the repository root::

    python -m bench.sync [--count 10000] [--batch 100] [--faults] [--keep DIR]

It makes the test PKI, signs ``--count`` prescriptions with the physician's test card key
(in parallel, not timed) and records them as the kiosk does (outbox rows pending). It starts
one reference registry per run (``ordo registry-sim --plain-http`` on 127.0.0.1, each its
own process and empty database, same options). Then, in this order:

- **bare**: one ``httpx.Client`` (the same socket options as Ordo's client) posts the very
  bodies Ordo sends (built beforehand, not timed) to registry A, one after the other;
- **sequential**: the sync engine with ``concurrency=1`` (a child process, the same code as
  ``ordo sync once``) drains a copy of the store into registry B: loading, FHIR mapping,
  sending, acknowledging (receipt, state change, audit), then the pull;
- **concurrent**: the same with the default window (``--concurrency``, 4) into registry C;
- **bare again**: the bare loop once more, into registry D. The faster of the two bare runs
  is the anchor, so that a slow moment of the machine during one of them does not flatter
  the engine (both are in ``bare.runs_s``).

``ratio`` = engine throughput / bare throughput (the faster bare run), the engine's time
being its push as it reports it (``push.seconds``). The sequential ratio measures the
engine's own cost (the issue's comparison); the concurrent one what the appliance does by
default. Peak memory is
each child's own high-water mark (``VmHWM``). Every registry must end up holding exactly ``--count``
prescriptions and each store all of them acknowledged.

``cpu_ms_per_record`` is the client side's CPU time per prescription (all threads of the
engine child during its push; the bare loop's own process during its loop), the registry's
not included. On a machine whose CPUs are busy with other work the ratio follows the CPU
each side needs per record (the registry's plus the client's) rather than the latencies,
so that figure explains a ratio measured under load; it varies far less than the times.

``--latency-ms N`` makes every registry wait up to N ms per request, as a network would.
``--faults`` injects 20 % 500/503, 5 % resets and 5 % lost answers (seed 7) and runs the
default engine only: the drain time then includes the retries (a bare loop has none).
Prints JSON only.

Goals: ratio ≥ 0.7 and drain ≤ 30 s for 10,000 prescriptions.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import socket
import sqlite3
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import httpx

from bench.common import bench_run

ROOT = Path(__file__).resolve().parents[1]
GOAL_RATIO, GOAL_DRAIN_S = 0.7, 30.0
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
    from sync import fhir

    uow = SqliteUnitOfWork.open(data / "ordo.sqlite")
    try:
        out = []
        ids = [r.prescription_id for r in uow.outbox.due(datetime.now(UTC), 10**9)]
        rows = uow.prescriptions.signed_rows(ids)
        for pid in ids:
            signed = rows[pid].load()
            out.append(json.dumps(fhir.prescription_bundle(signed.prescription, signed.proof),
                                  ensure_ascii=False).encode("utf-8"))
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=10_000)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--concurrency", type=int, default=4)
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
    with bench_run(args.keep, "ordo-bench-sync-") as (work, result):
        started = time.perf_counter()
        data, pki = prepare(work, args.count)
        prep_s = time.perf_counter() - started
        latency = ["--latency-ms", str(args.latency_ms)] if args.latency_ms else []
        result.update({"count": args.count, "batch": args.batch,
                       "concurrency": args.concurrency, "faults": args.faults,
                       "latency_ms": args.latency_ms,
                       "prepare_s": round(prep_s, 2), "cpus": os.cpu_count(),
                       "loadavg_before": [round(x, 2) for x in os.getloadavg()]})
        runs: dict[str, Path] = {}
        for name in (["concurrent"] if args.faults else ["sequential", "concurrent"]):
            runs[name] = work / f"data-{name}"
            runs[name].mkdir()
            shutil.copy(data / "ordo.sqlite", runs[name] / "ordo.sqlite")
        if args.faults:
            proc, url, db = start_registry(work, "faults", pki, [
                "--seed", "7", "--error-rate", "0.2", "--reset-rate", "0.05",
                "--drop-rate", "0.05", *latency])
            procs.append(proc)
            result["engine"] = engine_result(
                engine_drain(runs["concurrent"], url, args.batch, args.concurrency), db)
            result["exactly_once"] = (result["engine"]["held"] == args.count
                                      == result["engine"]["acknowledged"])
        else:
            bodies = bodies_of(data)

            def bare(name: str) -> dict:
                proc, url, db = start_registry(work, name, pki, latency)
                procs.append(proc)
                seconds, cpu = bare_loop(url, bodies)
                return {"seconds": round(seconds, 3),
                        "per_s": round(len(bodies) / seconds, 1),
                        "cpu_ms_per_record": round(cpu * 1000 / max(len(bodies), 1), 3),
                        "held": held(db)}

            # The bare loop runs first and again last, each time into a fresh registry: the
            # faster of the two is the anchor, so that a slow moment of the machine during
            # one of them does not flatter the engine.
            bare_runs = [bare("bare")]
            for name, concurrency in (("sequential", 1), ("concurrent", args.concurrency)):
                proc, url, db = start_registry(work, name, pki, latency)
                procs.append(proc)
                result[name] = engine_result(
                    engine_drain(runs[name], url, args.batch, concurrency), db)
            bare_runs.append(bare("bare-again"))
            result["bare"] = {**min(bare_runs, key=lambda r: r["seconds"]),
                              "runs_s": [r["seconds"] for r in bare_runs],
                              "body_bytes_avg": sum(map(len, bodies)) // max(len(bodies), 1)}
            del bodies
            for name in ("sequential", "concurrent"):
                result[name]["ratio"] = round(result[name]["per_s"] / result["bare"]["per_s"],
                                              3)
            result["exactly_once"] = all(result[n]["held"] == args.count
                                         == result[n]["acknowledged"]
                                         for n in ("sequential", "concurrent"))
            drain = result["concurrent"]["push_s"]
            result["goals"] = {"ratio_min": GOAL_RATIO, "drain_max_s": GOAL_DRAIN_S,
                               "ratio_sequential_ok": result["sequential"]["ratio"]
                               >= GOAL_RATIO,
                               "drain_ok": drain <= GOAL_DRAIN_S}
        result["loadavg_after"] = [round(x, 2) for x in os.getloadavg()]
        for proc in procs:
            proc.terminate()
            proc.wait(timeout=10)
        procs.clear()
    for proc in procs:  # the run failed: the registries stop all the same
        proc.terminate()
        proc.wait(timeout=10)


if __name__ == "__main__":
    main()
