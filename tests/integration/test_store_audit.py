"""The store on a real SQLite file: modes, pragmas, migrations, and the audit chain."""

import os
import sqlite3
import stat

import pytest

from appliance.errors import AuditChainBroken, StoreError
from appliance.store import audit, open_store
from appliance.store.migrations import MIGRATIONS, applied


@pytest.fixture
def store(tmp_path):
    s = open_store(tmp_path / "data" / "ordo.sqlite")
    yield s
    s.close()


def test_file_modes_pragmas_and_migrations(store, tmp_path):
    path = tmp_path / "data" / "ordo.sqlite"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(path.parent).st_mode) == 0o700
    assert store.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert store.conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    assert applied(store) == [name for name, _ in MIGRATIONS]
    again = open_store(path)  # idempotent
    assert applied(again) == applied(store)
    again.close()


def _fill(store, n=5):
    for i in range(n):
        audit.append(store, actor="812345678901", action="login", subject=f"s{i}",
                     details={"reader": 0})


def test_chain_verifies(store):
    _fill(store)
    assert audit.verify(store) == 5
    assert [e.seq for e in audit.entries(store)] == [1, 2, 3, 4, 5]


def test_append_only_triggers(store):
    _fill(store, 2)
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        store.conn.execute("UPDATE audit SET actor = 'x' WHERE seq = 1")
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        store.conn.execute("DELETE FROM audit WHERE seq = 1")


def _tamper(store, sql, params=()):
    store.conn.execute("DROP TRIGGER audit_no_update")
    store.conn.execute("DROP TRIGGER audit_no_delete")
    store.conn.execute(sql, params)


@pytest.mark.parametrize("seq", [1, 3, 5])
def test_modified_row_detected(store, seq):
    _fill(store)
    _tamper(store, "UPDATE audit SET subject = 'forged' WHERE seq = ?", (seq,))
    with pytest.raises(AuditChainBroken) as err:
        audit.verify(store)
    assert err.value.seq == seq


@pytest.mark.parametrize("column", ["at", "actor", "action", "details"])
def test_every_column_is_sealed(store, column):
    _fill(store)
    value = '{"reader": 1}' if column == "details" else "x"
    _tamper(store, f"UPDATE audit SET {column} = ? WHERE seq = 2", (value,))
    with pytest.raises(AuditChainBroken) as err:
        audit.verify(store)
    assert err.value.seq == 2


@pytest.mark.parametrize("seq", [1, 3, 5])
def test_deleted_row_detected(store, seq):
    _fill(store)
    _tamper(store, "DELETE FROM audit WHERE seq = ?", (seq,))
    with pytest.raises(AuditChainBroken) as err:
        audit.verify(store)
    assert err.value.seq == seq


def test_reordered_rows_detected(store):
    _fill(store)
    _tamper(store, "UPDATE audit SET seq = -1 WHERE seq = 2")
    store.conn.execute("UPDATE audit SET seq = 2 WHERE seq = 3")
    store.conn.execute("UPDATE audit SET seq = 3 WHERE seq = -1")
    with pytest.raises(AuditChainBroken) as err:
        audit.verify(store)
    assert err.value.seq == 2


def test_rehashed_forgery_still_breaks_the_head(store):
    """Recomputing the hash of a changed last row does not help: the head disagrees."""
    _fill(store, 3)
    row = store.query("SELECT * FROM audit WHERE seq = 3")[0]
    forged = audit._digest(row["prev_hash"], 3, row["at"], row["actor"], "logout",
                           row["subject"], {"reader": 0})
    _tamper(store, "UPDATE audit SET action = 'logout', hash = ? WHERE seq = 3", (forged,))
    with pytest.raises(AuditChainBroken) as err:
        audit.verify(store)
    assert err.value.seq == 3


def test_health_data_and_pin_refused_in_details(store):
    with pytest.raises(StoreError, match="pin"):
        audit.append(store, actor="a", action="login", details={"PIN": "1234"})
    with pytest.raises(StoreError, match="nir"):
        audit.append(store, actor="a", action="x", details={"nir": "1"})
    assert audit.verify(store) == 0


def test_transaction_rolls_back_everything(store):
    with pytest.raises(RuntimeError), store.write():
        audit.append(store, actor="a", action="one")
        raise RuntimeError("boom")
    assert audit.entries(store) == []
    assert audit.verify(store) == 0


# -- the guards: append-only triggers, and the retention anchor -------------------------
def _ordo(store, *args):
    from click.testing import CliRunner

    from appliance.cli import main

    return CliRunner().invoke(main, ["--data-dir", str(store.path.parent), "audit", *args])


def test_intact_guards_and_no_anchor(store):
    _fill(store)
    assert audit.guard_problems(store) == []
    assert audit.anchor_status(store) is None
    result = _ordo(store, "verify")
    assert result.exit_code == 0 and "OK: 5 entries" in result.output
    assert "append-only triggers intact" in result.output


def test_a_dropped_trigger_is_reported_and_not_recreated_by_opening_the_store(store, tmp_path):
    _fill(store)
    store.conn.execute("DROP TRIGGER audit_no_delete")
    again = open_store(tmp_path / "data" / "ordo.sqlite")  # migrations run again
    assert audit.guard_problems(again) == [
        "trigger audit_no_delete is missing: entries can be deleted"]
    again.close()
    result = _ordo(store, "verify")
    assert result.exit_code == 1
    assert "trigger audit_no_delete is missing" in result.output
    assert "ordo audit restore-guards" in result.output


def test_a_trigger_emptied_under_its_own_name_or_an_extra_one_is_reported(store):
    _fill(store, 2)
    store.conn.execute("DROP TRIGGER audit_no_update")
    store.conn.execute("CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit "
                       "BEGIN SELECT 1; END")
    store.conn.execute("CREATE TRIGGER audit_quiet BEFORE INSERT ON audit "
                       "BEGIN SELECT RAISE(IGNORE); END")
    problems = audit.guard_problems(store)
    assert problems == ["trigger audit_no_update was altered: entries can be changed",
                        "unexpected trigger audit_quiet on the audit table"]
    store.conn.execute("UPDATE audit SET actor = 'x' WHERE seq = 1")  # what it lets through


def test_restore_guards_puts_them_back_and_says_so_in_the_chain(store):
    _fill(store, 2)
    store.conn.execute("DROP TRIGGER audit_no_delete")
    store.conn.execute("DROP TRIGGER audit_no_update")
    store.conn.execute("CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit "
                       "BEGIN SELECT 1; END")
    store.conn.execute("CREATE TRIGGER audit_quiet BEFORE INSERT ON audit "
                       "BEGIN SELECT RAISE(IGNORE); END")
    result = _ordo(store, "restore-guards")
    assert result.exit_code == 0, result.output
    assert audit.guard_problems(store) == []
    last = audit.entries(store)[-1]
    assert last.action == "audit.guards_restored"
    assert last.details == {"created": ["audit_no_update", "audit_no_delete"],
                            "removed": ["audit_quiet"]}
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        store.conn.execute("UPDATE audit SET actor = 'x' WHERE seq = 1")
    assert audit.verify(store) == 3
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        store.conn.execute("DELETE FROM audit WHERE seq = 1")
    assert "nothing to restore" in _ordo(store, "restore-guards").output


def _behead(store, first_kept: int, *, record: bool) -> None:
    """What an intruder with the file can do: cut the oldest entries, move the anchor
    and, to look like retention, append a retention entry recording the cut."""
    prev = store.query("SELECT prev_hash FROM audit WHERE seq = ?", (first_kept,))[0]
    store.conn.execute("DROP TRIGGER audit_no_delete")
    store.conn.execute("DELETE FROM audit WHERE seq < ?", (first_kept,))
    store.conn.execute(audit.TRIGGERS["audit_no_delete"])
    store.conn.execute("INSERT OR REPLACE INTO meta VALUES ('audit.anchor_seq', ?), "
                       "('audit.anchor_prev', ?)", (str(first_kept), prev["prev_hash"]))
    if record:
        audit.append(store, actor="system:retention", action=audit.RETENTION_ACTION,
                     details={"anchor_seq": first_kept, "anchor_prev": prev["prev_hash"],
                              "audit_entries": first_kept - 1,
                              "audit_before": "2016-01-01T00:00:00+00:00"})


def test_a_cut_that_no_retention_run_recorded_is_broken(store):
    _fill(store)
    _behead(store, 4, record=False)
    assert audit.verify(store) == 5  # the hashes alone still hold from the anchor
    result = _ordo(store, "verify")
    assert result.exit_code == 1
    assert "starts at entry 4 but no retention run recorded that cut" in result.output


def test_a_beheading_disguised_as_retention_is_shown_with_its_date(store):
    """The box alone cannot tell a forged retention entry from a real one: verify shows
    where the chain starts and which entry, when, says it was cut there, so a cut of
    recent entries is plain to see; the chain head kept off the box is the real answer."""
    _fill(store)
    _behead(store, 4, record=True)
    result = _ordo(store, "verify")
    assert result.exit_code == 0, result.output
    found = audit.anchor_status(store)
    assert (found.seq, found.recorded_by) == (4, 6)
    assert "entries 1 to 3 were removed" in result.output
    assert f"by the retention run of {found.recorded_at[:10]} (entry 6" in result.output
    assert "older than 2016-01-01" in result.output
