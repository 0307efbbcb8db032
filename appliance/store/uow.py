"""The SQLite unit of work: one connection, one repository per table, the read models.

``with uow:`` opens a ``BEGIN IMMEDIATE`` transaction (the kiosk and the sync service share
the file: an immediate write lock never deadlocks on an upgrade); ``uow.commit()`` commits
it; leaving the block without a commit, or with an exception, rolls it back. A block inside
a block is a savepoint, committed or rolled back with it. Reads outside a block run each in
their own snapshot. Every SQLite error leaves as a ``StoreError``.

Each repository is the owner module of its table (``residents``, ``practitioners``,
``prescriptions``, ``certificates``, ``outbox``, ``print_jobs``, ``meta``, ``audit``,
``dispensations``, ``mail_outbox``, ``external_prescriptions``, ``allergies``,
``prescription_alerts``, ``stopped_lines``); ``views`` holds the read models. One unit of
work per thread: SQLite connections are not shared between threads.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Self

from appliance.errors import StoreError
from appliance.store.allergies import AllergiesTable
from appliance.store.audit import AuditTable
from appliance.store.certificates import CertificatesTable
from appliance.store.db import Store, open_store
from appliance.store.dispensations import DispensationsTable
from appliance.store.external_prescriptions import ExternalPrescriptionsTable
from appliance.store.mail_outbox import MailOutboxTable
from appliance.store.meta import MetaTable
from appliance.store.outbox import OutboxTable
from appliance.store.practitioners import PractitionersTable
from appliance.store.prescription_alerts import PrescriptionAlertsTable
from appliance.store.prescriptions import PrescriptionsTable
from appliance.store.print_jobs import PrintJobsTable
from appliance.store.residents import ResidentsTable
from appliance.store.stopped_lines import StoppedLinesTable
from appliance.store.views import StoreViews


class SqliteUnitOfWork:
    """``appliance.ports.uow.UnitOfWork`` over one ``Store`` (connection)."""

    def __init__(self, store: Store, *, owns: bool = True) -> None:
        self.store = store
        self._owns = owns
        self._depth = 0
        self._committed: list[bool] = []
        self.residents = ResidentsTable(store)
        self.practitioners = PractitionersTable(store)
        self.prescriptions = PrescriptionsTable(store)
        self.certificates = CertificatesTable(store)
        self.outbox = OutboxTable(store)
        self.print_jobs = PrintJobsTable(store)
        self.meta = MetaTable(store)
        self.audit = AuditTable(store)
        self.dispensations = DispensationsTable(store)
        self.mail_outbox = MailOutboxTable(store)
        self.external_prescriptions = ExternalPrescriptionsTable(store)
        self.allergies = AllergiesTable(store)
        self.prescription_alerts = PrescriptionAlertsTable(store)
        self.stopped_lines = StoppedLinesTable(store)
        self.views = StoreViews(store)

    @classmethod
    def open(cls, path: Path | str, *, migrate: bool = False) -> SqliteUnitOfWork:
        """A unit of work on its own connection to the file at ``path``."""
        return cls(open_store(path, migrate=migrate))

    def __enter__(self) -> Self:
        if self._depth == 0:
            if self.store.in_transaction:
                raise StoreError("a transaction is already open on this connection")
            self.store.begin()
        else:
            self.store.execute(f"SAVEPOINT uow_{self._depth}")
        self._depth += 1
        self._committed.append(False)
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        committed = self._committed.pop()
        self._depth -= 1
        if self._depth == 0:
            if not committed:
                self.store.rollback()
        elif not committed:
            self.store.execute(f"ROLLBACK TO uow_{self._depth}")
            self.store.execute(f"RELEASE uow_{self._depth}")

    def commit(self) -> None:
        if not self._committed or self._committed[-1]:
            raise StoreError("commit() outside a 'with uow:' block (or twice)")
        if self._depth == 1:
            self.store.commit()
        else:
            self.store.execute(f"RELEASE uow_{self._depth - 1}")
        self._committed[-1] = True

    def rollback(self) -> None:
        """Undo the current block now (leaving it without a commit does the same)."""
        if not self._committed or self._committed[-1]:
            return
        if self._depth == 1:
            self.store.rollback()
        else:
            self.store.execute(f"ROLLBACK TO uow_{self._depth - 1}")
            self.store.execute(f"RELEASE uow_{self._depth - 1}")
        self._committed[-1] = True  # nothing left to undo on exit

    @contextlib.contextmanager
    def light(self) -> Iterator[Self]:
        """A write block committed with ``synchronous = NORMAL``: in WAL mode the commit
        is not synced to disk (the next durable commit syncs it with its own), so a power
        failure may undo it, never a crash of the process, and the file stays consistent.
        SQLite refuses to change the level inside a transaction: the block is the
        outermost one."""
        if self._depth:
            raise StoreError("a light write block cannot be nested in another one")
        self.store.execute("PRAGMA synchronous = NORMAL")
        try:
            with self:
                yield self
        finally:
            self.store.execute("PRAGMA synchronous = FULL")

    def housekeeping(self) -> None:
        """A passive WAL checkpoint and ``PRAGMA optimize``."""
        self.store.execute("PRAGMA wal_checkpoint(PASSIVE)")
        self.store.execute("PRAGMA optimize")

    def close(self) -> None:
        if self._owns:
            self.store.close()


if TYPE_CHECKING:  # the type checker proves that this adapter implements the port
    from appliance.ports.uow import UnitOfWork

    _IMPLEMENTS: type[UnitOfWork] = SqliteUnitOfWork
