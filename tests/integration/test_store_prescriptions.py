"""Prescriptions in a real SQLite file: one transaction for the signed prescription, its
outbox row, its print job and its audit entry; drafts; state updates."""

from datetime import UTC, datetime

import pytest

from appliance.domain.prescription import State
from appliance.domain.prescription_id import PrescriptionIdGenerator
from appliance.errors import StoreError
from appliance.store import audit, open_store
from appliance.store import repositories as repo
from tests.factories import prescription, resident

T1 = datetime(2026, 11, 25, 9, 31, tzinfo=UTC)
COUNTS = "SELECT (SELECT count(*) FROM prescriptions), (SELECT count(*) FROM outbox)," \
         " (SELECT count(*) FROM print_jobs), (SELECT count(*) FROM audit)"


@pytest.fixture
def store(tmp_path):
    s = open_store(tmp_path / "ordo.sqlite")
    with s.write() as db:
        repo.upsert_residents(db, [resident()])
    yield s
    s.close()


@pytest.fixture
def ids():
    return PrescriptionIdGenerator(clock_ms=lambda: 1_764_000_000_000)


def test_signed_prescription_outbox_print_job_and_audit_together(store, ids):
    p = prescription(ids.new()).transition(State.SIGNED, T1)
    with store.write() as db:
        job = repo.record_signed(db, p, signature=b"sig", signer_cert=b"cert", actor="8100")
    assert tuple(store.conn.execute(COUNTS).fetchone()) == (1, 1, 1, 1)
    row = store.query("SELECT * FROM print_jobs")[0]
    assert (row["id"], row["kind"], row["status"]) == (job, "original", "queued")
    assert store.query("SELECT kind, status FROM outbox")[0] == {"kind": "create",
                                                                "status": "pending"}
    assert repo.get_prescription(store, p.id) == p
    assert audit.entries(store)[0].subject == p.id


@pytest.mark.parametrize("failing", ["outbox", "print_jobs", "audit"])
def test_an_error_inside_the_transaction_leaves_nothing(store, ids, failing):
    p = prescription(ids.new()).transition(State.SIGNED, T1)
    store.conn.execute(f"CREATE TRIGGER fail BEFORE INSERT ON {failing} "
                       "BEGIN SELECT RAISE(ABORT, 'disk on fire'); END")
    with pytest.raises(Exception, match="disk on fire"), store.write() as db:
        repo.record_signed(db, p, signature=b"sig", signer_cert=b"cert", actor="8100")
    assert tuple(store.conn.execute(COUNTS).fetchone()) == (0, 0, 0, 0)
    store.conn.execute("DROP TRIGGER fail")
    with store.write() as db:  # the same prescription can then be recorded
        repo.record_signed(db, p, signature=b"sig", signer_cert=b"cert", actor="8100")
    assert tuple(store.conn.execute(COUNTS).fetchone()) == (1, 1, 1, 1)


def test_a_signed_prescription_is_never_overwritten(store, ids):
    p = prescription(ids.new())
    with store.write() as db:
        repo.save_draft(db, p)
        repo.save_draft(db, p)  # saving a draft again is fine
    signed = p.transition(State.SIGNED, T1)
    with store.write() as db:
        repo.record_signed(db, signed, signature=b"s", signer_cert=b"c", actor="8100")
    with pytest.raises(StoreError, match="already signed"), store.write() as db:
        repo.record_signed(db, signed, signature=b"s", signer_cert=b"c", actor="8100")
    with pytest.raises(StoreError, match="already signed"), store.write() as db:
        repo.save_draft(db, p)
    assert repo.get_prescription(store, p.id).state is State.SIGNED


def test_state_updates_are_audited(store, ids):
    signed = prescription(ids.new()).transition(State.SIGNED, T1)
    with store.write() as db:
        repo.record_signed(db, signed, signature=b"s", signer_cert=b"c", actor="8100")
    registered = signed.transition(State.REGISTERED, T1)
    with store.write() as db:
        repo.update_state(db, registered, actor="system:sync")
    assert repo.prescriptions_of(store, signed.resident.ins.value)[0].state is State.REGISTERED
    assert [e.action for e in audit.entries(store)] == ["prescription.signed",
                                                        "prescription.registered"]
    assert audit.verify(store) == 2


def test_record_signed_outside_a_transaction_is_refused(store, ids):
    p = prescription(ids.new()).transition(State.SIGNED, T1)
    with pytest.raises(StoreError, match="write transaction"):
        repo.record_signed(store.db, p, signature=b"s", signer_cert=b"c", actor="8100")


def test_ids_after_a_restore_start_above_the_floor_the_restore_wrote(store):
    """A restore raises the ID floor in ``meta``; the prescribing service reads that floor."""
    from appliance.domain.prescription_id import id_timestamp_ms
    from appliance.services.ops import backup
    from appliance.services.prescribing import IdAllocator

    floor = 4_000_000_000_000
    with store.write() as db:
        db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
                   [backup.LAST_MS_KEY, str(floor)])
        pid = IdAllocator(clock_ms=lambda: 1_764_000_000_000).new(db)
    assert id_timestamp_ms(pid) == floor + 1


def test_history_lists_from_the_index_newest_first(store, ids):
    from appliance.store.repositories import history

    first = prescription(ids.new())
    second = prescription(ids.new(), created_at=datetime(2026, 11, 26, 8, 0, tzinfo=UTC))
    with store.write() as db:
        repo.save_draft(db, first)
        repo.record_signed(db, second.transition(State.SIGNED, T1), signature=b"s",
                           signer_cert=b"c", actor="8100")
    rows = history(store, first.resident.ins.value)
    assert [(r.id, r.state) for r in rows] == [(second.id, State.SIGNED),
                                               (first.id, State.DRAFT)]
    assert rows[0].signed_at == T1 and rows[1].prescriber_id == first.prescriber.id_nat_ps
    assert rows[1].signed_at is None and rows[1].created_at == first.created_at
    plan = " ".join(str(r[-1]) for r in store.conn.execute(
        f"EXPLAIN QUERY PLAN {repo.HISTORY_SQL}", ("x",)))
    assert "COVERING INDEX prescriptions_history" in plan
    assert "TEMP B-TREE" not in plan                  # newest first comes from the index


def test_history_refuses_a_state_it_does_not_know(store, ids):
    """A store written by a newer version (or damaged) is reported, not listed wrongly."""
    p = prescription(ids.new())
    with store.write() as db:
        repo.save_draft(db, p)
        db.execute("UPDATE prescriptions SET state = 'lost' WHERE id = ?", [p.id])
    with pytest.raises(StoreError, match="unknown state 'lost'"):
        repo.history(store, p.resident.ins.value)
