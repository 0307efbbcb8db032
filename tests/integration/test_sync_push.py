"""Push against the reference registry on loopback: acknowledgement, idempotent resend, lost
acknowledgement, a crash between send and acknowledgement, 30 % faults over 1,000
prescriptions, quarantine that never blocks, Retry-After, an unreachable registry."""

from __future__ import annotations

import json
import socket
from datetime import UTC, datetime

import pytest

from appliance.services import sync
from appliance.services.signature import record_signature, sign_prescription
from appliance.store import audit
from sync.client import RegistryClient
from sync.registry_sim import Faults
from tests.factories import lines, prescription

pytestmark = pytest.mark.integration


def held_receipts(sim) -> dict[str, str]:
    return {row["id"]: row["receipt_id"] for row in sim.db.list_prescriptions()}


def local_receipts(orders) -> dict[str, str]:
    return {row["prescription_id"]: json.loads(row["receipt"])["id"] for row in orders.outbox()
            if row["status"] == "acknowledged"}


def test_push_stores_the_registry_receipt_and_registers_the_prescription(
        orders, registry_sim, make_engine, store):
    [p] = orders.sign_many()
    report = make_engine(registry_sim.url).push()
    assert (report.acknowledged, report.remaining, report.replayed) == (1, 0, 0)
    assert held_receipts(registry_sim) == local_receipts(orders)
    [row] = orders.outbox()
    assert row["status"] == "acknowledged" and row["attempts"] == 1
    assert orders.state(p.id) == "registered"
    stored = store.query("SELECT registry_receipt FROM prescriptions")[0]
    assert stored["registry_receipt"] == held_receipts(registry_sim)[p.id]
    actions = [e.action for e in audit.entries(store)]
    assert "registry.create.acknowledged" in actions and "prescription.registered" in actions
    assert audit.verify(store) == len(actions)


def test_a_resend_gets_the_original_receipt_and_the_registry_holds_one(
        orders, registry_sim, make_engine, store, uow):
    [p] = orders.sign_many()
    signed = uow.prescriptions.signed_rows([p.id])[p.id].load()
    client = RegistryClient(registry_sim.url)
    try:
        first = client.register(signed.prescription, signed.proof)
        again = client.register(signed.prescription, signed.proof)
    finally:
        client.close()
    assert again.receipt_id == first.receipt_id
    assert (first.replayed, again.replayed) == (False, True)
    # The engine never saw those answers (as after a crash): its send is a third one.
    report = make_engine(registry_sim.url).push()
    assert (report.acknowledged, report.replayed) == (1, 1)
    assert registry_sim.db.count() == 1
    assert local_receipts(orders) == {p.id: first.receipt_id}


def test_a_crash_between_send_and_acknowledgement_is_repaired_by_resending(
        orders, registry_sim, make_engine, store):
    [p] = orders.sign_many()
    # The acknowledgement's transaction dies after the registry committed the prescription.
    store.conn.execute("CREATE TRIGGER crash BEFORE UPDATE ON outbox "
                            "BEGIN SELECT RAISE(ABORT, 'power cut'); END")
    with pytest.raises(Exception, match="power cut"):
        make_engine(registry_sim.url).push()
    assert registry_sim.db.count() == 1
    assert orders.outbox()[0]["status"] == "pending" and orders.state(p.id) == "signed"
    store.conn.execute("DROP TRIGGER crash")
    report = make_engine(registry_sim.url).push()
    assert (report.acknowledged, report.replayed) == (1, 1)
    assert registry_sim.db.count() == 1
    assert local_receipts(orders) == held_receipts(registry_sim)
    assert orders.state(p.id) == "registered"


def test_a_lost_acknowledgement_is_recovered_with_the_original_receipt(
        orders, registry_sim, make_engine):
    [p] = orders.sign_many()
    registry_sim.set_faults(Faults(script=("drop",)))  # commit, then no answer
    report = make_engine(registry_sim.url).push()
    assert (report.acknowledged, report.replayed, report.retried) == (1, 1, 1)
    counts = registry_sim.stats()["counts"]
    assert (counts["created"], counts["replayed"]) == (1, 1)
    assert local_receipts(orders) == held_receipts(registry_sim) and p.id in local_receipts(orders)
    assert orders.outbox()[0]["attempts"] == 2


def test_thirty_percent_errors_and_resets_over_1000_prescriptions_exactly_once(
        orders, registry_sim, make_engine):
    made = orders.sign_many(1000)
    registry_sim.set_faults(Faults(seed=7, error_rate=0.2, reset_rate=0.05, drop_rate=0.05))
    report = make_engine(registry_sim.url, batch_size=100).push()
    assert report.remaining == 0 and report.acknowledged == 1000
    held = held_receipts(registry_sim)
    assert len(held) == 1000 and set(held) == {p.id for p in made}
    assert local_receipts(orders) == held  # one receipt per ID, the registry's own
    assert {row["status"] for row in orders.outbox()} == {"acknowledged"}
    stats = registry_sim.stats()
    faults = stats["faults"]
    assert faults["reset"] > 0 and faults["drop"] > 0 and faults["500"] + faults["503"] > 0
    assert stats["counts"]["created"] == 1000  # each one created once, never twice
    # every lost answer was made good by a replay (a replay may lose its answer too)
    assert 0 < report.replayed <= faults["drop"] <= stats["counts"]["replayed"]
    states = orders.store.query("SELECT state, count(*) AS n FROM prescriptions GROUP BY state")
    assert states == [{"state": "registered", "n": 1000}]


def test_a_record_refused_for_good_is_quarantined_and_never_blocks_the_others(
        orders, registry_sim, make_engine, store, uow):
    [bad] = orders.sign_many(profile="untrusted")  # oldest in the queue; its CA is not trusted
    good = orders.sign_many(3)
    report = make_engine(registry_sim.url).push()
    assert (report.quarantined, report.acknowledged, report.remaining) == (1, 3, 0)
    rows = {row["prescription_id"]: row for row in orders.outbox()}
    assert rows[bad.id]["status"] == "quarantined"
    assert "no trusted root" in rows[bad.id]["last_error"]
    assert all(rows[p.id]["status"] == "acknowledged" for p in good)
    assert orders.state(bad.id) == "signed"
    status = sync.status(uow)
    assert status.quarantined == 1 and status.queue_depth == 0
    assert status.quarantined_records[0]["prescription_id"] == bad.id
    assert "registry.create.quarantined" in [e.action for e in audit.entries(store)]
    # a second run does not try it again
    assert make_engine(registry_sim.url).push().sent == 0


def test_other_content_under_an_existing_id_is_a_conflict_and_quarantined(
        orders, registry_sim, make_engine, uow, signers):
    doctor = orders.practitioner()
    pid = orders.ids.new()
    now = datetime.now(UTC)
    there = sign_prescription(prescription(pid, prescriber=doctor), signers["physician"],
                              now)
    client = RegistryClient(registry_sim.url)
    try:
        from appliance.ports.registry import SignatureProof

        client.register(there.prescription, SignatureProof(
            there.signature, there.certificate_der, there.payload.signed_bytes))
    finally:
        client.close()
    here = sign_prescription(prescription(pid, prescriber=doctor, lines=lines()[:1]),
                             signers["physician"], now)
    from tests.factories import resident

    with uow:
        uow.residents.upsert([resident()])
        record_signature(uow, here, actor="test")
        uow.commit()
    report = make_engine(registry_sim.url).push()
    assert report.quarantined == 1
    [row] = orders.outbox()
    assert row["status"] == "quarantined" and "other content" in row["last_error"]
    assert registry_sim.stats()["counts"]["conflicts"] == 1


def test_retry_after_is_honoured(orders, registry_sim, make_engine):
    orders.sign_many()
    registry_sim.set_faults(Faults(script=("429",), retry_after_s=1))
    report = make_engine(registry_sim.url).push()
    assert (report.throttled, report.acknowledged) == (1, 1)
    arrivals = list(registry_sim.arrivals)
    assert [a[3] for a in arrivals] == ["429", "ok"]
    assert arrivals[1][0] - arrivals[0][0] >= 1.0


def test_an_unreachable_registry_ends_the_run_and_keeps_the_queue(orders, make_engine, store, uow):
    orders.sign_many(5)
    with socket.socket() as probe:  # a port that nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    report = make_engine(f"http://127.0.0.1:{port}/fhir", unreachable_after=3,
                         concurrency=2).push()
    assert report.unreachable and report.acknowledged == 0 and report.remaining == 5
    attempts = [row["attempts"] for row in orders.outbox()]
    # three failures in a row end the run; at most one more was already in flight
    assert attempts[:3] == [1, 1, 1] and attempts[-1] == 0 and sum(attempts) <= 4
    status = sync.status(uow)
    assert status.queue_depth == 5 and "cannot connect" in status.last_error
    assert status.last_success_at is None
