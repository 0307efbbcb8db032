"""Benchmark of the registry's return: how soon after the registry answers again does the
real sync service get its first acknowledgement?

Run from the repository root::

    python -m bench.outage [--outage-s 30 300] [--queued 20] [--keep DIR]

It makes the test PKI and signs ``1 + queued`` prescriptions plus one for the baseline (not
timed). It starts the reference registry (``ordo registry-sim --plain-http``, its own
process, on a port kept for the whole run) and the real ``ordo sync run`` on a data
directory holding one prescription, and waits for that one's acknowledgement. Then, for
each ``--outage-s``:

- the registry process is killed (its port closed, every connection cut) and ``queued``
  prescriptions are recorded as the kiosk does (outbox rows pending);
- a **bare client** starts at once in this process: it posts one more signed prescription
  every 50 ms until the registry acknowledges it (the quickest any client could notice);
- after ``outage`` seconds the registry is started again on the same port; ``back`` is the
  moment it first answers ``GET [base]/metadata`` (polled every 20 ms);
- ``first_ack_s`` is the time from ``back`` to the service's first acknowledgement (the
  store polled every 20 ms), ``drained_s`` to the queue empty, ``bare_s`` the bare
  client's time from ``back``; ``ratio_to_bare`` = ``first_ack_s`` / ``bare_s`` (in the same
  run; the service probes every 5 s, the bare client every 50 ms, so this ratio is large by
  design: it shows the probe's cost in latency, bounded by the probe's period).

``previous_policy_wait_s`` is what the service did before it probed the link: it held off
for a full-jitter backoff (``tick`` 5 s doubling up to the 900 s cap) after each unreachable
run; the figure is the wait left at the registry's return for that outage length, simulated
(10,000 draws, the formula of ``appliance.domain.backoff.full_jitter``);
``ratio_to_previous_policy_mean`` = ``first_ack_s`` / its mean.
The 1-hour and 24-hour outages run on an injectable clock in
``tests/unit/test_sync_link.py`` (the same code, the probe's schedule is the same).
Prints JSON only.

Goal: the queue drains ≤ 10 s after the registry is reachable again.
"""

from __future__ import annotations

import argparse
import random
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx

from bench.common import CLI, ROOT, bench_run, child_env, free_port

GOAL_S = 10.0
TICK_S, CAP_S = 5.0, 900.0  # the former service backoff: [sync] interval cap, backoff_cap_s


def _sign(pki_dir: Path, count: int) -> list:
    from bench.sync import _sign_chunk

    return _sign_chunk((str(pki_dir), count, 0))


def _record(data: Path, signed: list) -> None:
    from appliance.services.signature import record_signature
    from appliance.store.uow import SqliteUnitOfWork
    from tests.factories import resident

    uow = SqliteUnitOfWork.open(data / "ordo.sqlite", migrate=True)
    try:
        with uow:
            uow.residents.upsert([resident(1)])
            for s in signed:
                record_signature(uow, s, actor="bench")
            uow.commit()
    finally:
        uow.close()


def _acknowledged(data: Path) -> tuple[int, int]:
    """(acknowledged, pending) as the store says."""
    import sqlite3

    conn = sqlite3.connect(f"file:{data / 'ordo.sqlite'}?mode=ro", uri=True, timeout=5)
    try:
        rows = dict(conn.execute("SELECT status, count(*) FROM outbox GROUP BY status"))
    finally:
        conn.close()
    return rows.get("acknowledged", 0), rows.get("pending", 0)


class Registry:
    def __init__(self, work: Path, pki, port: int) -> None:
        self.work, self.pki, self.port = work, pki, port
        self.url = f"http://127.0.0.1:{port}/fhir"
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        trust = [a for p in self.pki.trust_roots for a in ("--trust-root", str(p))]
        crls = [a for p in self.pki.crls for a in ("--crl", str(p))]
        self.proc = subprocess.Popen(
            [*CLI, "--data-dir", str(self.work / "sim"), "registry-sim", "--plain-http",
             "--port", str(self.port), "--db", str(self.work / "registry.sqlite"),
             *trust, *crls], cwd=ROOT, env=child_env(),
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def answering(self) -> bool:
        try:
            return httpx.get(self.url + "/metadata", timeout=0.5).status_code == 200
        except httpx.HTTPError:
            return False

    def wait_answering(self, timeout_s: float = 30.0) -> float:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.answering():
                return time.monotonic()
            time.sleep(0.02)
        raise SystemExit("the registry did not start")

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(timeout=10)
            self.proc = None


def _bare_client(url: str, body: bytes, stop: threading.Event, out: dict) -> None:
    """Post ``body`` every 50 ms until the registry acknowledges it."""
    with httpx.Client(timeout=1.0) as client:
        while not stop.is_set():
            try:
                answer = client.post(url, content=body,
                                     headers={"Content-Type": "application/fhir+json"})
                if answer.status_code in (200, 201):
                    out["at"] = time.monotonic()
                    return
            except httpx.HTTPError:
                pass
            stop.wait(0.05)


def _body(work: Path, signed) -> bytes:
    """The FHIR bundle the appliance would send for ``signed`` (via a store of its own)."""
    from bench.sync import bodies_of

    data = work / f"bare-{signed.prescription.id}"
    _record(data, [signed])
    return bodies_of(data)[0]


def previous_policy_wait_s(outage_s: float, draws: int = 10_000) -> dict:
    """The wait left at the registry's return under the former service backoff."""
    from appliance.domain.backoff import full_jitter

    rng = random.Random(19)  # a simulation, not a secret
    waits = []
    for _ in range(draws):
        t, failures = 0.0, 0
        while t <= outage_s:  # an unreachable run, then a hold
            failures += 1
            t += max(TICK_S, full_jitter(failures, TICK_S, CAP_S, rng))
        waits.append(t - outage_s)
    waits.sort()
    return {"mean": round(statistics.fmean(waits), 1),
            "p95": round(waits[int(0.95 * len(waits))], 1), "max": round(waits[-1], 1)}


def run_outage(registry: Registry, data: Path, queued: list, extra,
               outage_s: float) -> dict:
    body = _body(registry.work, extra)
    registry.kill()
    before, _ = _acknowledged(data)
    _record(data, queued)
    stop, bare = threading.Event(), {}
    thread = threading.Thread(target=_bare_client, args=(registry.url, body, stop, bare),
                              daemon=True)
    thread.start()
    time.sleep(outage_s)
    registry.start()
    back = registry.wait_answering()
    first = drained = None
    deadline = back + 120
    while time.monotonic() < deadline and drained is None:
        acknowledged, pending = _acknowledged(data)
        now = time.monotonic()
        if first is None and acknowledged > before:
            first = now
        if acknowledged >= before + len(queued) and pending == 0:
            drained = now
        time.sleep(0.02)
    thread.join(timeout=30)
    stop.set()
    if first is None or drained is None or "at" not in bare:
        raise SystemExit(f"outage {outage_s} s: no drain within 120 s of the return")
    first_s, bare_s = first - back, max(bare["at"] - back, 0.001)
    previous = previous_policy_wait_s(outage_s)
    return {"outage_s": outage_s, "queued": len(queued),
            "first_ack_s": round(first_s, 2), "drained_s": round(drained - back, 2),
            "bare_s": round(bare_s, 3), "ratio_to_bare": round(first_s / bare_s, 1),
            "previous_policy_wait_s": previous,
            "ratio_to_previous_policy_mean": round(first_s / max(previous["mean"], 0.001), 2),
            "goal_met": drained - back <= GOAL_S}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--outage-s", type=float, nargs="+", default=[30.0])
    parser.add_argument("--queued", type=int, default=20)
    parser.add_argument("--keep", type=Path, help="work in this directory and keep it")
    args = parser.parse_args()
    from drivers.card.pki import init_pki

    with bench_run(args.keep, "ordo-bench-outage-") as (work, result):
        pki = init_pki(work / "pki")
        per_outage = args.queued + 1
        signed = _sign(pki.directory, 1 + per_outage * len(args.outage_s))
        data = work / "data"
        _record(data, signed[:1])
        (work / "empty.toml").write_text("")
        registry = Registry(work, pki, free_port())
        registry.start()
        registry.wait_answering()
        service = subprocess.Popen(
            [*CLI, "sync", "run"], cwd=ROOT,
            env=child_env(ORDO_DATA_DIR=str(data), ORDO_CONFIG=str(work / "empty.toml"),
                          ORDO_REGISTRY_URL=registry.url),
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 60
            while _acknowledged(data)[0] < 1:
                if time.monotonic() > deadline or service.poll() is not None:
                    raise SystemExit("the sync service did not drain the first prescription")
                time.sleep(0.05)
            runs = []
            for i, outage in enumerate(args.outage_s):
                chunk = signed[1 + i * per_outage:1 + (i + 1) * per_outage]
                runs.append(run_outage(registry, data, chunk[:-1], chunk[-1], outage))
            result["runs"] = runs
            result["goals"] = {"drained_within_s": GOAL_S,
                               "met": all(r["goal_met"] for r in runs)}
        finally:
            service.terminate()
            service.wait(timeout=20)
            registry.kill()


if __name__ == "__main__":
    sys.exit(main())
