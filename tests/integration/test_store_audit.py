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
