"""The retention policy on a real store: which prescriptions go, with which rows, the audit
chain still verifying after its oldest entries are cut, and the run itself audited."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from click.testing import CliRunner

from appliance.cli import main
from appliance.config import Retention
from appliance.domain.prescription import State
from appliance.ops.doctor import OK, run_doctor
from appliance.ops.retention import ACTION, run_retention
from appliance.store import audit, open_store
from tests.integration.test_ops_helpers import add_prescriptions, ops_env, settings_for

pytestmark = pytest.mark.integration

OLD = "2015-03-01T10:00:00.000+00:00"
OLD_AUDIT = datetime(2014, 6, 1, tzinfo=UTC)
POLICY = Retention(prescriptions_years=10, audit_years=10)
SECRET_REASON = "motif-unique-7Q3XK"
OVERRIDE_REASON = "levee-unique-9W2PD"  # an override's typed reason: health data too
STOP_REASON = "arret-unique-4H8ZM"  # why a physician stopped a line: health data too


def _set(store, ids, **columns):
    sets = ", ".join(f"{k} = ?" for k in columns)
    for pid in ids:
        store.conn.execute(f"UPDATE prescriptions SET {sets} WHERE id = ?",
                           [*columns.values(), pid])


@pytest.fixture
def box(tmp_path):
    settings = settings_for(tmp_path)
    store = open_store(settings.db_path)
    for n in range(5):
        audit.append(store, actor="old", action="old.event", subject=str(n), at=OLD_AUDIT)
    g = {
        "dispensed": add_prescriptions(store, 3, start_ms=1_700_000_000_000,
                                       state=State.DISPENSED),
        "cancelled": add_prescriptions(store, 2, start_ms=1_700_000_100_000,
                                       state=State.CANCELLED),
        "registered": add_prescriptions(store, 2, start_ms=1_700_000_200_000,
                                        state=State.REGISTERED),
        "signed": add_prescriptions(store, 1, start_ms=1_700_000_300_000),
        "cancel_pending": add_prescriptions(store, 1, start_ms=1_700_000_400_000,
                                            state=State.REGISTERED),
        "print_queued": add_prescriptions(store, 1, start_ms=1_700_000_500_000,
                                          state=State.DISPENSED),
        "recent": add_prescriptions(store, 2, start_ms=1_764_000_000_000,
                                    state=State.DISPENSED),
    }
    with store.write():
        old = [pid for name, ids in g.items() if name != "recent" for pid in ids]
        _set(store, old, created_at=OLD, updated_at=OLD)
        _set(store, g["cancelled"], cancel_reason=SECRET_REASON)
        done = [pid for name, ids in g.items() if name != "signed" for pid in ids]
        for pid in done:
            store.conn.execute("UPDATE outbox SET status = 'acknowledged' WHERE "
                               "prescription_id = ?", [pid])
            if pid not in g["print_queued"]:
                store.conn.execute("UPDATE print_jobs SET status = 'done' WHERE "
                                   "prescription_id = ?", [pid])
        store.conn.execute("INSERT INTO outbox (prescription_id, kind, created_at) "
                           "VALUES (?, 'cancel', ?)", [g["cancel_pending"][0], OLD])
        for pid in g["dispensed"] + g["recent"]:
            store.conn.execute(
                "INSERT INTO dispensations (registry_id, prescription_id, line_no, complete,"
                " handed_over_at, received_at, resource) VALUES (?, ?, 1, 1, ?, ?, '{}')",
                [f"md-{pid}", pid, OLD, OLD])
            store.conn.execute(
                "INSERT INTO prescription_alerts (prescription_id, position, code, severity,"
                " message, source, line, overridable, status, reason, checked_at)"
                " VALUES (?, 0, 'dose.max_daily', 'bloquant', 'Ligne 1', 'RCP', 0, 1,"
                " 'overridden', ?, ?)", [pid, OVERRIDE_REASON, OLD])
            store.conn.execute(
                "INSERT INTO stopped_lines (prescription_id, line, reason, stopped_at,"
                " stopped_by) VALUES (?, 0, ?, ?, 'test')", [pid, STOP_REASON, OLD])
    yield settings, store, g
    store.close()


def _count(store, table):
    return store.query(f"SELECT count(*) AS n FROM {table}")[0]["n"]


def test_only_old_prescriptions_in_final_states_go_with_their_rows(box):
    _settings, store, g = box
    report = run_retention(store, POLICY, actor="cli:test")
    assert report.prescriptions == 7
    # each group was signed with its own certificate: those of the three groups that went
    # entirely (dispensed, cancelled, registered) are no longer referred to
    assert report.related_rows == {"dispensations": 3, "mail_outbox": 0, "outbox": 7,
                                  "print_jobs": 7, "prescription_alerts": 3, "stopped_lines": 3,
                                  "certificates": 3}
    left = {row["id"] for row in store.query("SELECT id FROM prescriptions")}
    assert left == set(g["signed"] + g["cancel_pending"] + g["print_queued"] + g["recent"])
    assert _count(store, "dispensations") == 2
    assert _count(store, "prescription_alerts") == 2  # the recent ones stay
    assert _count(store, "stopped_lines") == 2
    orphans = store.query("SELECT count(*) AS n FROM outbox WHERE prescription_id NOT IN "
                          "(SELECT id FROM prescriptions)")
    assert orphans[0]["n"] == 0
    assert "7 prescription(s)" in report.summary()


def test_the_audit_chain_still_verifies_after_its_oldest_entries_are_cut(box):
    settings, store, _g = box
    head_before = audit.verify(store)
    report = run_retention(store, POLICY, actor="cli:test")
    assert report.audit_entries == 5 and report.anchor_seq == 6
    assert audit.verify(store) == head_before + 1
    assert store.query("SELECT min(seq) AS s FROM audit")[0]["s"] == 6
    entry = audit.entries(store)[-1]
    assert (entry.action, entry.actor) == (ACTION, "cli:test")
    assert entry.details["audit_entries"] == 5 and entry.details["anchor_seq"] == 6
    assert entry.details["prescriptions"] == 7
    with pytest.raises(Exception, match="append-only"):  # the trigger is back
        store.conn.execute("DELETE FROM audit WHERE seq = 7")
    result = CliRunner().invoke(main, ["--data-dir", str(settings.data_dir), "audit", "verify"])
    assert result.exit_code == 0 and result.stdout.startswith("OK")
    doctor = run_doctor(settings).get("audit")
    assert doctor.status == OK and "kept from entry 6" in doctor.detail


def test_deleted_health_data_does_not_stay_in_the_file(box):
    settings, store, g = box
    store.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    for secret in (SECRET_REASON, OVERRIDE_REASON, STOP_REASON):
        assert secret.encode() in settings.db_path.read_bytes()
    for table in ("prescription_alerts", "stopped_lines"):  # the recent ones stay with theirs
        store.conn.execute(f"DELETE FROM {table} WHERE prescription_id IN (?, ?)", g["recent"])
    run_retention(store, POLICY)
    store.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    wal = settings.db_path.with_name("ordo.sqlite-wal")
    for secret in (SECRET_REASON, OVERRIDE_REASON, STOP_REASON):
        assert secret.encode() not in settings.db_path.read_bytes()
        assert not wal.exists() or secret.encode() not in wal.read_bytes()


def test_dry_run_counts_and_changes_nothing(box):
    _settings, store, _g = box
    before = [_count(store, t) for t in ("prescriptions", "outbox", "audit", "dispensations")]
    head = audit.verify(store)
    report = run_retention(store, POLICY, dry_run=True)
    assert (report.prescriptions, report.audit_entries) == (7, 5)
    # each group was signed with its own certificate: those of the three groups that went
    # entirely (dispensed, cancelled, registered) are no longer referred to
    assert report.related_rows == {"dispensations": 3, "mail_outbox": 0, "outbox": 7,
                                  "print_jobs": 7, "prescription_alerts": 3, "stopped_lines": 3,
                                  "certificates": 3}
    assert "would delete" in report.summary()
    after = [_count(store, t) for t in ("prescriptions", "outbox", "audit", "dispensations")]
    assert after == before and audit.verify(store) == head


def test_nothing_old_nothing_done_and_nothing_audited(box):
    _settings, store, _g = box
    run_retention(store, POLICY)
    head = audit.verify(store)
    again = run_retention(store, POLICY)
    assert not again.changed and audit.verify(store) == head


def test_a_later_run_moves_the_anchor_again_even_past_everything(box):
    settings, store, _g = box
    run_retention(store, POLICY)
    head = audit.verify(store)
    later = datetime.now(UTC) + timedelta(days=3 * 366)
    report = run_retention(store, Retention(prescriptions_years=10, audit_years=1), now=later)
    assert report.audit_entries == head - 5  # the first 5 were already gone
    assert report.anchor_seq == head + 1  # every entry was older than a year
    assert audit.verify(store) == head + 1
    assert [e.action for e in audit.entries(store)] == [ACTION]
    assert run_doctor(settings).get("audit").status == OK


def test_cli_retention_run(box):
    settings, _store, _g = box
    runner = CliRunner()
    args = ["--data-dir", str(settings.data_dir), "retention", "run"]
    dry = runner.invoke(main, [*args, "--dry-run"], env=ops_env(settings.data_dir.parent))
    assert dry.exit_code == 0 and dry.stdout.startswith("would delete 7 prescription(s)")
    done = runner.invoke(main, args, env=ops_env(settings.data_dir.parent))
    assert done.exit_code == 0 and done.stdout.startswith("deleted 7 prescription(s)")
    assert "5 audit entries" in done.stdout
