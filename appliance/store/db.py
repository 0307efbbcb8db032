"""One SQLite file shared by the kiosk and the sync service.

WAL journal, ``synchronous=FULL``, a busy timeout, and ``BEGIN IMMEDIATE`` for every write
so that the two processes never deadlock on a lock upgrade. The file is created with mode
0600 inside a 0700 directory: it holds health data.

``Store`` is one connection. Every SQLite or file-system error of the data directory (missing,
read-only, corrupt, full) leaves it as a ``StoreError`` naming the file: callers never see
``sqlite3`` or ``OSError`` exceptions. The tables are written by their owner modules of this
package, through a unit of work (``appliance.store.uow``).
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import sqlite3
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from appliance.errors import StoreError

if TYPE_CHECKING:
    import sqlite_utils

log = logging.getLogger(__name__)

BUSY_TIMEOUT_MS = 10_000
PAGE_SIZE = 8192
FILE_MODE = 0o600
DIR_MODE = 0o700

# What SQLite stores, and so what a statement's parameters may be.
SqlValue = str | int | float | bytes | None
Params = Sequence[SqlValue] | Mapping[str, SqlValue]


class Store:
    """A connection to the store, with explicit write transactions.

    ``begin`` / ``commit`` / ``rollback`` (or ``write()``) frame a ``BEGIN IMMEDIATE``
    transaction; a write outside one is refused (``require_write``). ``db`` is the
    sqlite-utils view of the same connection, made on first use (the migrations use it):
    sqlite-utils (and the click, dateutil and pluggy it loads, about 0.1 s) is not imported
    by the owner modules, so that the kiosk draws its lock screen before it needs the store.
    """

    def __init__(self, conn: sqlite3.Connection, path: Path | None = None) -> None:
        self.conn = conn
        self.path = path
        self._db: sqlite_utils.Database | None = None

    @property
    def db(self) -> sqlite_utils.Database:
        if self._db is None:
            import sqlite_utils

            self._db = sqlite_utils.Database(self.conn)
        return self._db

    @property
    def where(self) -> str:
        return str(self.path) if self.path is not None else "la base locale"

    def failed(self, exc: BaseException, doing: str = "") -> StoreError:
        """The ``StoreError`` for a SQLite or OS error on this store."""
        what = f" ({doing})" if doing else ""
        return StoreError(f"base de données {self.where} inutilisable{what} : "
                          f"{describe_failure(exc)}")

    # -- transactions -------------------------------------------------------------------
    @property
    def in_transaction(self) -> bool:
        return self.conn.in_transaction

    def begin(self) -> None:
        try:
            self.conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise self.failed(exc, "début d'écriture") from exc

    def commit(self) -> None:
        try:
            self.conn.execute("COMMIT")
        except sqlite3.Error as exc:
            self.rollback()
            raise self.failed(exc, "enregistrement") from exc

    def rollback(self) -> None:
        if self.conn.in_transaction:
            try:
                self.conn.execute("ROLLBACK")
            except sqlite3.Error:
                log.exception("rollback failed")

    def require_write(self, what: str) -> sqlite3.Connection:
        """The connection, for a write: only inside a write transaction."""
        if not self.conn.in_transaction:
            raise StoreError(f"{what} needs a write transaction (with uow: ... uow.commit())")
        return self.conn

    @contextlib.contextmanager
    def write(self) -> Iterator[sqlite_utils.Database]:
        """One write transaction (``BEGIN IMMEDIATE``): all or nothing. Nested, a
        savepoint. For the migrations and the maintenance jobs; use cases write through a
        unit of work."""
        if self.conn.in_transaction:
            with self.db.atomic():
                yield self.db
            return
        self.begin()
        try:
            yield self.db
        except BaseException:
            self.rollback()
            raise
        else:
            self.commit()

    # -- statements ---------------------------------------------------------------------
    def execute(self, sql: str, params: Params = ()) -> sqlite3.Cursor:
        try:
            return self.conn.execute(sql, params)
        except sqlite3.Error as exc:
            raise self.failed(exc) from exc

    def one(self, sql: str, params: Params = ()) -> Any:
        """The first column of the first row (``None`` when there is no row)."""
        row = self.execute(sql, params).fetchone()
        return None if row is None else row[0]

    def query(self, sql: str, params: Params = ()) -> list[dict[str, Any]]:
        return [dict(row) for row in self.execute(sql, params)]

    def close(self) -> None:
        self.conn.close()


# What the user reads for the SQLite result codes (``sqlite_errorname``, by prefix: the
# extended codes SQLITE_IOERR_WRITE, SQLITE_READONLY_DBMOVED...) and the errno values a data
# directory fails with; the technical name follows in parentheses, for the journal.
_SQLITE_FR = (
    ("SQLITE_FULL", "disque plein"),
    ("SQLITE_READONLY", "base en lecture seule (fichier, dossier ou disque non inscriptible)"),
    ("SQLITE_CANTOPEN", "fichier impossible à ouvrir"),
    ("SQLITE_NOTADB", "le fichier n'est pas une base de données"),
    ("SQLITE_CORRUPT", "base corrompue"),
    ("SQLITE_IOERR_SHMSIZE", "disque plein (la mémoire partagée de la base ne peut pas "
                             "grandir)"),
    ("SQLITE_IOERR", "erreur de lecture ou d'écriture sur le disque"),
    ("SQLITE_BUSY", "base occupée par un autre processus"),
    ("SQLITE_LOCKED", "base verrouillée"),
    ("SQLITE_PERM", "accès refusé"),
    ("SQLITE_AUTH", "accès refusé"),
)
_ERRNO_FR = {
    errno.ENOSPC: "disque plein",
    errno.EDQUOT: "quota disque dépassé",
    errno.EPERM: "opération non permise (fichier ou dossier immuable ?)",
    errno.EACCES: "permission refusée",
    errno.EROFS: "système de fichiers en lecture seule",
    errno.ENOENT: "fichier ou dossier absent",
    errno.ENOTDIR: "un chemin n'est pas un dossier",
    errno.EISDIR: "le chemin est un dossier",
    errno.EIO: "erreur de lecture ou d'écriture sur le disque",
}


def describe_failure(exc: BaseException) -> str:
    """A SQLite or OS error of the data directory in French, its technical name after."""
    if isinstance(exc, sqlite3.Error):
        name = getattr(exc, "sqlite_errorname", "") or ""
        for prefix, french in _SQLITE_FR:
            if name.startswith(prefix):
                return f"{french} ({name})"
        if "file is not a database" in str(exc):
            return f"{dict(_SQLITE_FR)['SQLITE_NOTADB']} (SQLITE_NOTADB)"
        return f"{exc} ({name})" if name else str(exc)
    if isinstance(exc, OSError) and exc.errno in _ERRNO_FR:
        return f"{_ERRNO_FR[exc.errno]} ({errno.errorcode[exc.errno]})"
    return str(getattr(exc, "strerror", None) or exc)


def upsert_sql(table: str, columns: Sequence[str], key: str) -> str:
    """``INSERT ... ON CONFLICT (key) DO UPDATE`` for constant names (never input)."""
    updates = ", ".join(f"{c} = excluded.{c}" for c in columns if c != key)
    marks = ", ".join("?" * len(columns))
    return (f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})"  # noqa: S608
            f" ON CONFLICT ({key}) DO UPDATE SET {updates}")


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
    # A new file gets 8 KiB pages (an existing one keeps its own): a signed prescription's
    # row is about 700 bytes, and 4 KiB pages left an eighth of the file unused
    # (``bench/store_million.py``).
    conn.execute(f"PRAGMA page_size = {PAGE_SIZE}")
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
        raise StoreError(f"impossible d'ouvrir la base de données {path} : "
                         f"{describe_failure(exc)}") from exc
    store = Store(conn, path)
    if migrate:
        from appliance.store.migrations import migrate as run_migrations

        try:
            run_migrations(store)
        except BaseException:
            store.close()
            raise
    return store
