"""One SQLite file shared by the kiosk and the sync service.

WAL journal, ``synchronous=FULL``, a busy timeout, and ``BEGIN IMMEDIATE`` for every write
so that the two processes never deadlock on a lock upgrade. The file is created with mode
0600 inside a 0700 directory: it holds health data.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from appliance.errors import StoreError

if TYPE_CHECKING:
    import sqlite_utils

log = logging.getLogger(__name__)

BUSY_TIMEOUT_MS = 10_000
FILE_MODE = 0o600
DIR_MODE = 0o700


class Store:
    """A connection to the store, with explicit write transactions.

    ``db`` is the sqlite-utils view of the same connection; its own ``atomic()`` blocks
    nest as savepoints inside ``write()``. sqlite-utils (and the click, dateutil and pluggy
    it loads, about 0.1 s) is imported by the first ``Store``, not by importing this module,
    so that the kiosk draws its lock screen before it needs the store.
    """

    def __init__(self, conn: sqlite3.Connection, path: Path | None = None) -> None:
        import sqlite_utils

        self.conn = conn
        self.path = path
        self.db = sqlite_utils.Database(conn)

    @contextlib.contextmanager
    def write(self) -> Iterator[sqlite_utils.Database]:
        """One write transaction (``BEGIN IMMEDIATE``): all or nothing."""
        if self.conn.in_transaction:
            with self.db.atomic():
                yield self.db
            return
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield self.db
        except BaseException:
            if self.conn.in_transaction:
                self.conn.execute("ROLLBACK")
            raise
        else:
            self.conn.execute("COMMIT")

    def query(self, sql: str, params: tuple | dict = ()) -> list[dict]:
        return [dict(row) for row in self.conn.execute(sql, params)]

    def close(self) -> None:
        self.conn.close()


def _secure_path(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=DIR_MODE)
    os.chmod(path.parent, DIR_MODE)
    if not path.exists():
        fd = os.open(path, os.O_CREAT | os.O_WRONLY, FILE_MODE)
        os.close(fd)
    os.chmod(path, FILE_MODE)


def connect(path: Path | str) -> sqlite3.Connection:
    """Open a connection with the house pragmas (no migration)."""
    conn = sqlite3.connect(str(path), isolation_level=None, timeout=BUSY_TIMEOUT_MS / 1000,
                           check_same_thread=False)
    conn.row_factory = sqlite3.Row
    conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = FULL")
    conn.execute("PRAGMA foreign_keys = ON")
    return conn


def open_store(path: Path | str, migrate: bool = True) -> Store:
    """Open (creating if needed) the store at ``path`` and bring its schema up to date."""
    path = Path(path)
    try:
        _secure_path(path)
        conn = connect(path)
        # WAL side files hold the same data: same mode.
        for suffix in ("-wal", "-shm"):
            side = path.with_name(path.name + suffix)
            if side.exists():
                os.chmod(side, FILE_MODE)
    except (OSError, sqlite3.Error) as exc:
        raise StoreError(f"cannot open the database {path}: {exc}") from exc
    store = Store(conn, path)
    if migrate:
        from appliance.store.migrations import migrate as run_migrations

        run_migrations(store)
    return store
