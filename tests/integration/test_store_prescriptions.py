"""Prescriptions in a real SQLite file through the unit of work: one transaction for the
signed prescription, its outbox row, its print job and its audit entry; drafts; state
updates; the resident's file in a few queries whatever its length."""

from datetime import UTC, datetime
from types import SimpleNamespace

import pytest

from appliance.domain.prescription import State
from appliance.domain.prescription_id import PrescriptionIdGenerator
from appliance.errors import StoreError
from appliance.ports.registry import RegistryReceipt
from appliance.ports.uow import Trail
from appliance.services.prescribing import record_transition
from appliance.services.signature import SignedPrescription, record_signature
from appliance.store import audit, open_store
from appliance.store.uow import SqliteUnitOfWork
from appliance.store.views import HISTORY_SQL
from tests.factories import prescription, resident

T1 = datetime(2026, 11, 25, 9, 31, tzinfo=UTC)
COUNTS = "SELECT (SELECT count(*) FROM prescriptions), (SELECT count(*) FROM outbox)," \
         " (SELECT count(*) FROM print_jobs), (SELECT count(*) FROM audit)"


@pytest.fixture
def store(tmp_path):
    s = open_store(tmp_path / "ordo.sqlite")
    uow = SqliteUnitOfWork(s, owns=False)
    with uow:
        uow.residents.upsert([resident()])
        uow.commit()
    yield s
    s.close()


@pytest.fixture
def uow(store):
    return SqliteUnitOfWork(store, owns=False)


@pytest.fixture
def ids():
    return PrescriptionIdGenerator(clock_ms=lambda: 1_764_000_000_000)


def signed_record(p, signature: bytes = b"sig", cert: bytes = b"cert") -> SignedPrescription:
    """What the card signing returns, with stand-in bytes (the store does not check them)."""
    return SignedPrescription(p, signature, cert, SimpleNamespace(signed_bytes=None))


def record(uow, p, **kwargs) -> int:
    with uow:
        job = record_signature(uow, signed_record(p, **kwargs), actor="8100")
        uow.commit()
    return job


def test_signed_prescription_outbox_print_job_and_audit_together(store, uow, ids):
    p = prescription(ids.new()).transition(State.SIGNED, T1)
    job = record(uow, p)
    assert tuple(store.conn.execute(COUNTS).fetchone()) == (1, 1, 1, 1)
    row = store.query("SELECT * FROM print_jobs")[0]
    assert (row["id"], row["kind"], row["status"]) == (job, "original", "queued")
    assert store.query("SELECT kind, status FROM outbox")[0] == {"kind": "create",
                                                                "status": "pending"}
    assert uow.prescriptions.get(p.id) == p
    assert audit.entries(store)[0].subject == p.id


@pytest.mark.parametrize("failing", ["outbox", "print_jobs", "audit"])
def test_an_error_inside_the_transaction_leaves_nothing(store, uow, ids, failing):
    p = prescription(ids.new()).transition(State.SIGNED, T1)
    store.conn.execute(f"CREATE TRIGGER fail BEFORE INSERT ON {failing} "
                       "BEGIN SELECT RAISE(ABORT, 'disk on fire'); END")
    with pytest.raises(StoreError, match="disk on fire"):
        record(uow, p)
    assert tuple(store.conn.execute(COUNTS).fetchone()) == (0, 0, 0, 0)
    assert not store.conn.in_transaction
    store.conn.execute("DROP TRIGGER fail")
    record(uow, p)  # the same prescription can then be recorded
    assert tuple(store.conn.execute(COUNTS).fetchone()) == (1, 1, 1, 1)


def test_a_block_left_without_commit_writes_nothing_and_blocks_nest(store, uow, ids):
    p = prescription(ids.new())
    with uow:
        uow.prescriptions.save_draft(p)
    assert uow.prescriptions.get(p.id) is None
    with uow:
        uow.prescriptions.save_draft(p)
        with uow:  # a savepoint: undone alone
            uow.meta.set("k", "v")
        with uow:
            uow.meta.set("kept", "yes")
            uow.commit()
        uow.commit()
    assert uow.prescriptions.get(p.id) == p
    assert (uow.meta.get("k"), uow.meta.get("kept")) == (None, "yes")


def test_a_signed_prescription_is_never_overwritten(uow, ids):
    p = prescription(ids.new())
    with uow:
        uow.prescriptions.save_draft(p)
        uow.prescriptions.save_draft(p)  # saving a draft again is fine
        uow.commit()
    signed = p.transition(State.SIGNED, T1)
    record(uow, signed)
    with pytest.raises(StoreError, match="already signed"):
        record(uow, signed)
    with pytest.raises(StoreError, match="already signed"), uow:
        uow.prescriptions.save_draft(p)
    assert uow.prescriptions.get(p.id).state is State.SIGNED


def test_state_updates_are_audited(store, uow, ids):
    signed = prescription(ids.new()).transition(State.SIGNED, T1)
    record(uow, signed)
    with uow:
        record_transition(uow, signed.transition(State.REGISTERED, T1), actor="system:sync")
        uow.commit()
    assert uow.prescriptions.of_resident(signed.resident.ins.value)[0].state is \
        State.REGISTERED
    assert [e.action for e in audit.entries(store)] == ["prescription.signed",
                                                        "prescription.registered"]
    assert audit.verify(store) == 2


def test_writes_outside_a_block_are_refused(uow, ids):
    p = prescription(ids.new()).transition(State.SIGNED, T1)
    with pytest.raises(StoreError, match="write transaction"):
        record_signature(uow, signed_record(p), actor="8100")
    with pytest.raises(StoreError, match="write transaction"):
        uow.audit.append(actor="a", action="b")
    with pytest.raises(StoreError, match="outside"):
        uow.commit()


def test_ids_after_a_restore_start_above_the_floor_the_restore_wrote(uow):
    """A restore raises the ID floor in ``meta``; the prescribing service reads that floor."""
    from appliance.domain.prescription_id import id_timestamp_ms
    from appliance.ops import backup
    from appliance.services.prescribing import IdAllocator

    floor = 4_000_000_000_000
    with uow:
        uow.meta.set(backup.LAST_MS_KEY, str(floor))
        pid = IdAllocator(clock_ms=lambda: 1_764_000_000_000).new(uow)
        uow.commit()
    assert id_timestamp_ms(pid) == floor + 1


def test_history_lists_from_the_index_newest_first(store, uow, ids):
    first = prescription(ids.new())
    second = prescription(ids.new(), created_at=datetime(2026, 11, 26, 8, 0, tzinfo=UTC))
    with uow:
        uow.prescriptions.save_draft(first)
        uow.commit()
    record(uow, second.transition(State.SIGNED, T1))
    rows = uow.views.history(first.resident.ins.value)
    assert [(r.id, r.state) for r in rows] == [(second.id, State.SIGNED),
                                               (first.id, State.DRAFT)]
    assert rows[0].signed_at == T1 and rows[1].prescriber_id == first.prescriber.id_nat_ps
    assert rows[1].signed_at is None and rows[1].created_at == first.created_at
    plan = " ".join(str(r[-1]) for r in store.conn.execute(
        f"EXPLAIN QUERY PLAN {HISTORY_SQL}", ("x",)))
    assert "COVERING INDEX prescriptions_history" in plan
    assert "TEMP B-TREE" not in plan                  # newest first comes from the index


def test_history_refuses_a_state_it_does_not_know(store, uow, ids):
    """A store written by a newer version (or damaged) is reported, not listed wrongly."""
    p = prescription(ids.new())
    with uow:
        uow.prescriptions.save_draft(p)
        uow.commit()
    store.conn.execute("UPDATE prescriptions SET state = 'lost' WHERE id = ?", [p.id])
    with pytest.raises(StoreError, match="unknown state 'lost'"):
        uow.views.history(p.resident.ins.value)


def _statements(store, call) -> list[str]:
    seen: list[str] = []
    store.conn.set_trace_callback(seen.append)
    try:
        result = call()
    finally:
        store.conn.set_trace_callback(None)
    return [s for s in seen if s.lstrip().upper().startswith("SELECT")], result


@pytest.mark.parametrize("count", [1, 30])
def test_the_resident_file_takes_the_same_few_queries_for_1_or_30_prescriptions(
        store, uow, ids, count):
    resident_ins = resident().ins.value
    failed = []
    for n in range(count):
        p = prescription(ids.new()).transition(State.SIGNED, T1)
        job = record(uow, p)
        with uow:
            uow.print_jobs.add(p.id, "duplicate", "8100", T1)
            if n % 2:
                uow.print_jobs.fail(job, "plus de papier")
                failed.append(p.id)
            uow.commit()
    selects, entries = _statements(store, lambda: uow.views.resident_file(resident_ins))
    assert len(entries) == count
    assert len(selects) == 3                         # history, registry, pharmacy
    assert all(e.registry == "pending" and not e.prints for e in entries)
    for entry in entries:                            # read when the prescription is opened
        first = ("original", "failed", "plus de papier") if entry.row.id in failed else \
            ("original", "queued", None)
        assert uow.views.trail(entry.row.id) == Trail(
            "pending", None, [first, ("duplicate", "queued", None)])


def test_the_resident_file_lists_registry_refusals_and_pending_records_only(store, uow, ids):
    """Acknowledged records are not read for the list (the registry's answer of one
    prescription is read when it is opened); refused and pending ones are, with the
    refusal's reason."""
    ps = [prescription(ids.new()).transition(State.SIGNED, T1) for _ in range(3)]
    for p in ps:
        record(uow, p)
    refused, acknowledged, pending = ps
    with uow:
        [rec] = [r for r in uow.outbox.due(T1, 10) if r.prescription_id == refused.id]
        uow.outbox.quarantine(rec, "registry refused (422): bad dose")
        [rec] = [r for r in uow.outbox.due(T1, 10) if r.prescription_id == acknowledged.id]
        uow.outbox.acknowledge(rec, RegistryReceipt("RX-1", T1), T1)
        uow.commit()
    entries = {e.row.id: e for e in uow.views.resident_file(resident().ins.value)}
    assert (entries[refused.id].registry, entries[refused.id].registry_error) == (
        "quarantined", "registry refused (422): bad dose")
    assert entries[pending.id].registry == "pending"
    assert entries[acknowledged.id].registry is None
    assert uow.views.trail(acknowledged.id) == Trail("acknowledged", None,
                                                     [("original", "queued", None)])
    assert uow.views.trail("01KAX5JDE0000G40R40M30EH") == Trail(None, None, [])
