"""Registry chaos: thousands of signed prescriptions drained into a registry that fails.

Two producer processes sign and record ``count`` one-line prescriptions (the physician's
test key, ``record_signature`` as the sign use case does: outbox row, print job, audit
entry). Then the reference registry starts failing (seeded): 500/503 errors, TCP resets,
lost acknowledgements (committed, then the connection dropped), 429 with
``Retry-After: 0``, and a random latency of a few milliseconds on every request; one sync
worker (the real engine, small backoff caps) drains the outbox until it is empty. The drain
time is that of the whole backlog, retries included.

Checked afterwards (``problems`` lists what failed): the registry holds exactly ``count``
prescriptions, the very IDs signed here, each created once (a resend after a lost answer is
a replay, never a second record), no conflict or refusal; every outbox row is acknowledged
with the registry's own receipt; every prescription is ``registered``; each kind of fault
did happen; the audit chain verifies and ``PRAGMA integrity_check`` is ok.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path
from typing import Any

from appliance.store import open_store
from drivers.card.pki import PkiPaths
from sync.registry_sim import Faults
from tests import factories
from tests.harness import checks, workers

FAULTS = {"error_rate": 0.10, "reset_rate": 0.05, "drop_rate": 0.05, "throttle_rate": 0.01,
          "retry_after_s": 0, "latency_ms": 4.0}
ENGINE = {"batch_size": 100, "backoff_base_s": 0.01, "backoff_cap_s": 0.2, "max_wait_s": 2.0,
          "concurrency": 4}
PRODUCERS = 2
DRAIN_TIMEOUT_S = 300.0


def run(work: Path, pki: PkiPaths, registry: Any, *, count: int = 5000, seed: int = 0,
        faults: dict[str, float] | None = None, lines: int = 1) -> dict[str, Any]:
    """Create ``count`` prescriptions, drain them into ``registry`` (a running
    ``RegistrySim``) under faults, check; a JSON-ready report."""
    resident = factories.resident(9)
    setup = workers.Setup(store=str(Path(work) / "data" / "ordo.sqlite"),
                          pki=str(pki.directory), resident_ins=resident.ins.value,
                          registry_url=registry.url, engine=ENGINE)
    workers.prepare_store(setup, pki.directory, resident)
    ctx = workers.fork_context()
    problems: list[str] = []

    shares = [count // PRODUCERS + (i < count % PRODUCERS) for i in range(PRODUCERS)]
    started = time.monotonic()
    producers = [ctx.Process(target=workers.producer, args=(setup, n),
                             kwargs={"lines": lines}, name=f"producer-{i}")
                 for i, n in enumerate(shares)]
    for process in producers:
        process.start()
    for process in producers:
        process.join(DRAIN_TIMEOUT_S)
        if process.exitcode != 0:
            problems.append(f"{process.name} exited with {process.exitcode}")
    created_s = time.monotonic() - started

    registry.set_faults(Faults(seed=seed, **(FAULTS if faults is None else faults)))
    report_path = Path(work) / "drain.json"
    started = time.monotonic()
    syncer = ctx.Process(target=workers.syncer, args=(setup,),
                         kwargs={"drain": True, "report_path": str(report_path)},
                         name="syncer")
    syncer.start()
    syncer.join(DRAIN_TIMEOUT_S)
    drain_s = time.monotonic() - started
    if syncer.exitcode is None:
        syncer.kill()
        syncer.join(5)
        problems.append(f"the outbox did not drain in {DRAIN_TIMEOUT_S} s")
    elif syncer.exitcode != 0:
        problems.append(f"the sync worker exited with {syncer.exitcode}")
    push = json.loads(report_path.read_text("utf-8")) if report_path.exists() else {}

    store = open_store(setup.store, migrate=False)
    try:
        found = checks.integrity(store) + checks.audit_chain(store)
        found += checks.all_or_nothing(store)
        rows = store.query("SELECT o.prescription_id AS id, o.status, o.receipt, p.state"
                           " FROM outbox o JOIN prescriptions p ON p.id = o.prescription_id")
    finally:
        store.close()
    local = {r["id"]: json.loads(r["receipt"])["id"] for r in rows
             if r["status"] == "acknowledged" and r["receipt"]}
    held = {r["id"]: r["receipt_id"] for r in registry.db.list_prescriptions()}
    stats = registry.stats()
    counts, injected = stats["counts"], stats["faults"]
    statuses = Counter(r["status"] for r in rows)
    states = Counter(r["state"] for r in rows)
    if len(rows) != count:
        found.append(f"{len(rows)} outbox rows for {count} prescriptions")
    if statuses != Counter({"acknowledged": count}):
        found.append(f"outbox after the drain: {dict(statuses)}")
    if states != Counter({"registered": count}):
        found.append(f"prescriptions after the drain: {dict(states)}")
    if len(held) != count or set(held) != {r["id"] for r in rows}:
        found.append(f"registry holds {len(held)}, {len(set(held) - set(local))} unknown here")
    if local != held:
        found.append("local receipts differ from the registry's")
    if counts.get("created", 0) != count:
        found.append(f"registry created {counts.get('created', 0)} records for {count}")
    for bad in ("conflicts", "rejected", "bad_requests"):
        if counts.get(bad):
            found.append(f"registry {bad}: {counts[bad]}")
    for kind in ("500", "503", "reset", "drop", "429"):
        if faults is None and not injected.get(kind):
            found.append(f"no {kind} fault was injected")
    problems += found
    return {"count": count, "seed": seed, "faults": FAULTS if faults is None else faults,
            "create_seconds": round(created_s, 2), "drain_seconds": round(drain_s, 2),
            "drain_per_second": round(count / drain_s, 1) if drain_s else None,
            "held": len(held), "acknowledged": statuses.get("acknowledged", 0),
            "registry_requests": counts.get("requests", 0),
            "created_once": counts.get("created", 0), "replayed": counts.get("replayed", 0),
            "injected": injected, "push": push, "problems": problems}
