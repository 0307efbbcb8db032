"""What the faster drain must not give up: the batch load, the bodies built ahead,
the strictly sequential window and the acknowledgements committed once per batch keep
exactly once. A sync process killed with SIGKILL after the registry took part of a batch
and before that batch's acknowledgements were committed never shows as acknowledged what
the registry does not hold, and the next run makes it good with the original receipts."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from appliance.store import audit
from sync.registry_sim import Faults

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]

# A drain in its own process, as `ordo sync once` runs it: batches of 10, one request at a time.
DRAIN = """
import sys
from appliance.services.sync import EngineConfig, SyncEngine
from appliance.store.uow import SqliteUnitOfWork
from sync.client import RegistryClient

SyncEngine(SqliteUnitOfWork.open(sys.argv[1]), RegistryClient(sys.argv[2]),
           EngineConfig(batch_size=10, concurrency=1, backoff_base_s=0.01)).push()
"""


def held_receipts(sim) -> dict[str, str]:
    return {row["id"]: row["receipt_id"] for row in sim.db.list_prescriptions()}


def local_receipts(orders) -> dict[str, str]:
    return {row["prescription_id"]: json.loads(row["receipt"])["id"] for row in orders.outbox()
            if row["status"] == "acknowledged"}


def test_signed_rows_loads_a_batch_in_chunks_and_leaves_unknown_ids_out(orders, store,
                                                                         monkeypatch, uow):
    made = orders.sign_many(7)
    from appliance.store import prescriptions

    monkeypatch.setattr(prescriptions, "_IN_CHUNK", 3)  # three queries for 8 IDs
    ids = [p.id for p in made]
    rows = uow.prescriptions.signed_rows([*ids, "01UNKNOWN0000000000000000", ids[0]])
    assert sorted(rows) == sorted(ids)
    for p in made:
        signed = rows[p.id].load()
        assert signed.prescription.id == p.id and signed.proof.signature
        # the canonical bytes checked against the signed hash travel with the proof
        assert signed.proof.canonical == signed.prescription.canonical_bytes()
        assert signed == uow.prescriptions.signed_rows([p.id])[p.id].load()


def test_one_at_a_time_sends_in_outbox_order_and_registers_everything(
        orders, registry_sim, make_engine, store):
    made = orders.sign_many(25)
    report = make_engine(registry_sim.url, concurrency=1, batch_size=10).push()
    assert (report.acknowledged, report.sent, report.batches, report.remaining) == (25, 25, 3, 0)
    order = [row["prescription_id"] for row in orders.outbox()]
    assert order == [p.id for p in made]
    assert list(held_receipts(registry_sim)) == order  # the registry lists by arrival
    assert local_receipts(orders) == held_receipts(registry_sim)
    assert {orders.state(p.id) for p in made} == {"registered"}
    assert audit.verify(store) > 0


def test_a_stored_prescription_that_no_longer_loads_is_quarantined_alone(
        orders, registry_sim, make_engine, store):
    bad, *good = orders.sign_many(3)
    from appliance.store.prescriptions import decode_body, encode_body

    [raw] = store.query("SELECT body FROM prescriptions WHERE id = ?", [bad.id])
    body = json.loads(decode_body(raw["body"]))
    body["resident"]["ins"] = "241017510100128"  # wrong NIR key
    with store.write() as db:
        db.execute("UPDATE prescriptions SET body = ? WHERE id = ?", [encode_body(body), bad.id])
    report = make_engine(registry_sim.url, concurrency=1).push()
    assert (report.quarantined, report.acknowledged, report.remaining) == (1, 2, 0)
    assert report.sent == 2  # the broken one never went out
    rows = {row["prescription_id"]: row for row in orders.outbox()}
    assert rows[bad.id]["status"] == "quarantined"
    assert rows[bad.id]["last_error"].startswith("donnée locale invalide")
    assert set(held_receipts(registry_sim)) == {p.id for p in good}


def test_a_kill_between_sending_and_the_batch_commit_is_repaired_exactly_once(
        orders, registry_sim, make_engine, store):
    made = orders.sign_many(40)
    registry_sim.set_faults(Faults(latency_ms=100, seed=3))  # ~50 ms a request
    child = subprocess.Popen([sys.executable, "-c", DRAIN, str(store.path),
                              registry_sim.url], cwd=ROOT, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 30
        # the second batch (records 11 to 20) is half sent: its acknowledgements are not
        # written yet (they are, once per batch, after its last answer)
        while registry_sim.db.count() < 15 and time.monotonic() < deadline:
            assert child.poll() is None, child.stderr.read()
            time.sleep(0.002)
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.wait(timeout=10)
        child.stderr.close()
    time.sleep(0.3)  # a request the registry was working on when the sender died is committed
    held = held_receipts(registry_sim)
    acknowledged = local_receipts(orders)
    assert 15 <= len(held) < 20, (len(held), len(acknowledged))
    # nothing is acknowledged that the registry does not hold, with its own receipt
    assert acknowledged.items() <= held.items()
    assert len(acknowledged) < len(held)  # some were sent, their acknowledgement lost
    assert audit.verify(store) > 0
    registry_sim.set_faults(Faults())

    report = make_engine(registry_sim.url, concurrency=1, batch_size=10).push()
    assert report.acknowledged == 40 - len(acknowledged) and report.remaining == 0
    assert report.replayed == len(held) - len(acknowledged)  # resent: original receipts
    assert local_receipts(orders) == held_receipts(registry_sim)
    assert registry_sim.stats()["counts"]["created"] == 40
    assert {orders.state(p.id) for p in made} == {"registered"}
    audit.verify(store)
    actions = Counter((e.action, e.subject) for e in audit.entries(store))
    for p in made:  # one acknowledgement and one state change each, never two
        assert actions["registry.create.acknowledged", p.id] == 1
        assert actions["prescription.registered", p.id] == 1


def test_a_batch_is_acknowledged_in_a_few_statements_whatever_its_size(
        orders, registry_sim, make_engine, uow, store):
    """The outcomes of a batch (receipts, state changes, audit entries, the chain's head,
    the bookkeeping) are a few statements for the whole batch, not a few per record. Every
    statement SQLite runs is counted (a row of ``executemany`` counts as one)."""
    made = orders.sign_many(60)
    statements: list[str] = []
    engine = make_engine(registry_sim.url, concurrency=1, batch_size=30)
    uow.store.conn.set_trace_callback(statements.append)
    try:
        report = engine.push()
    finally:
        uow.store.conn.set_trace_callback(None)
    assert (report.acknowledged, report.batches, report.remaining) == (60, 2, 0)
    # one write of each table per batch, whatever the number of records in it
    inserts = Counter(s.split(None, 3)[2].lower() for s in statements
                      if s.upper().startswith("INSERT INTO"))
    updates = Counter(s.split(None, 2)[1].lower() for s in statements
                      if s.upper().startswith("UPDATE"))
    assert inserts["audit"] == report.batches
    assert updates["outbox"] == report.batches
    assert updates["prescriptions"] == report.batches
    # reads and writes of a batch (about a dozen), and the run's own bookkeeping
    assert len(statements) <= 15 * report.batches + 10, [s[:70] for s in statements]
    assert len(statements) / report.acknowledged < 0.7
    # and still exact: one acknowledgement and one state change each, the chain verified
    assert {orders.state(p.id) for p in made} == {"registered"}
    assert local_receipts(orders) == held_receipts(registry_sim)
    assert audit.verify(store) == len(audit.entries(store))
    actions = Counter(e.action for e in audit.entries(store))
    assert actions["registry.create.acknowledged"] == actions["prescription.registered"] == 60
