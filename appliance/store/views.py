"""Read models: what the screens and the commands show, each in a few queries whatever the
number of rows (no query per prescription). Nothing here writes.

``history`` reads the covering index of migration m005 alone; ``bench.store_million``
times ``HISTORY_SQL`` bare as its anchor. ``resident_file`` adds, for the same resident, the
registry's answers, the print jobs and the dispensations: four queries for the whole file.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime

from appliance.domain.prescription import State
from appliance.errors import StoreError
from appliance.ports.clock import iso
from appliance.ports.uow import (
    DispensationAlert,
    DraftRow,
    FileEntry,
    HistoryRow,
    QuarantinedRecord,
    SyncKeys,
    SyncStatus,
)
from appliance.store import meta
from appliance.store.db import Store
from appliance.store.dispensations import dispensation

# The covering index alone (migration m005), newest first.
HISTORY_SQL = ("SELECT id, state, created_at, signed_at, prescriber_id FROM prescriptions"
               " INDEXED BY prescriptions_history WHERE resident_ins = ?"
               " ORDER BY created_at DESC")
# The rest of a resident's file, each for all of the resident's prescriptions at once.
FILE_REGISTRY_SQL = (
    "SELECT prescription_id, status, last_error FROM outbox WHERE kind = 'create'"
    " AND prescription_id IN (SELECT id FROM prescriptions WHERE resident_ins = ?)")
FILE_PRINTS_SQL = (
    "SELECT prescription_id, kind, status, last_error FROM print_jobs"
    " WHERE prescription_id IN (SELECT id FROM prescriptions WHERE resident_ins = ?)"
    " ORDER BY id")
FILE_DISPENSATIONS_SQL = (
    "SELECT * FROM dispensations"
    " WHERE prescription_id IN (SELECT id FROM prescriptions WHERE resident_ins = ?)"
    " ORDER BY handed_over_at, registry_id")


_STATES = {s.value: s for s in State}


class StoreViews:
    def __init__(self, store: Store) -> None:
        self._store = store

    @contextmanager
    def _snapshot(self) -> Iterator[None]:
        """Several reads from one snapshot (a read transaction), unless the caller's
        transaction already gives one."""
        conn = self._store.conn
        if conn.in_transaction:
            yield
            return
        self._store.execute("BEGIN")
        try:
            yield
        finally:
            if conn.in_transaction:
                conn.execute("COMMIT")

    def history(self, ins: str) -> list[HistoryRow]:
        """A resident's prescriptions, newest first, without parsing their bodies.

        Plain tuples from SQLite (no ``sqlite3.Row``), states by dictionary rather than
        through ``State(...)`` (an enum call is about 1.5 µs), the two ISO timestamps parsed
        at once since the list shows a date on every row.
        """
        cursor = self._store.conn.cursor()
        cursor.row_factory = None
        parse = datetime.fromisoformat
        try:
            rows = cursor.execute(HISTORY_SQL, (ins,)).fetchall()
        except sqlite3.Error as exc:
            raise self._store.failed(exc) from exc
        try:
            return [HistoryRow(pid, _STATES[state], parse(created),
                               parse(signed) if signed else None, prescriber)
                    for pid, state, created, signed, prescriber in rows]
        except KeyError as exc:
            raise StoreError(f"a prescription of this resident has an unknown state {exc}") \
                from exc

    def resident_file(self, ins: str) -> list[FileEntry]:
        with self._snapshot():
            entries = {row.id: FileEntry(row) for row in self.history(ins)}
            if not entries:
                return []
            for pid, status, error in self._store.execute(FILE_REGISTRY_SQL, [ins]):
                entry = entries.get(pid)
                if entry is not None:
                    entry.registry, entry.registry_error = status, error
            for pid, kind, status, error in self._store.execute(FILE_PRINTS_SQL, [ins]):
                entry = entries.get(pid)
                if entry is not None:
                    entry.prints.append((kind, status, error))
            for row in self._store.execute(FILE_DISPENSATIONS_SQL, [ins]):
                entry = entries.get(row["prescription_id"])
                if entry is not None and entry.row.state is not State.DRAFT:
                    entry.dispensations.append(dispensation(row))
        return list(entries.values())

    def sync_status(self, now: datetime) -> SyncStatus:
        with self._snapshot():
            counts = self._store.query(
                "SELECT"
                " sum(status = 'pending') AS pending,"
                " sum(status = 'pending' AND kind = 'create') AS creates,"
                " sum(status = 'pending' AND kind = 'cancel') AS cancels,"
                " sum(status = 'acknowledged') AS acknowledged,"
                " sum(status = 'quarantined') AS quarantined,"
                " min(CASE WHEN status = 'pending' THEN created_at END) AS oldest,"
                " min(CASE WHEN status = 'pending' THEN coalesce(next_attempt_at, '') END)"
                " AS next FROM outbox")[0]
            quarantined = [QuarantinedRecord(
                seq=r["seq"], prescription_id=r["prescription_id"], kind=r["kind"],
                attempts=r["attempts"], created_at=r["created_at"], reason=r["reason"])
                for r in self._store.query(
                    "SELECT seq, prescription_id, kind, attempts, created_at,"
                    " last_error AS reason FROM outbox WHERE status = 'quarantined'"
                    " ORDER BY seq")]
            values = meta.with_prefix(self._store, SyncKeys.PREFIX)
            dispensed = self._store.one("SELECT count(*) FROM dispensations")
        oldest = counts["oldest"]
        age = (now - datetime.fromisoformat(oldest)).total_seconds() if oldest else None
        return SyncStatus(
            queue_depth=counts["pending"] or 0, pending_creates=counts["creates"] or 0,
            pending_cancels=counts["cancels"] or 0, oldest_pending_at=oldest,
            oldest_pending_age_s=None if age is None else round(max(age, 0.0), 3),
            next_attempt_at=counts["next"] or (iso(now) if counts["pending"] else None),
            acknowledged=counts["acknowledged"] or 0, quarantined=counts["quarantined"] or 0,
            last_success_at=values.get(SyncKeys.LAST_SUCCESS),
            last_error=values.get(SyncKeys.LAST_ERROR),
            last_error_at=values.get(SyncKeys.LAST_ERROR_AT),
            last_push_at=values.get(SyncKeys.LAST_PUSH),
            last_pull_at=values.get(SyncKeys.LAST_PULL),
            dispense_cursor=values.get(SyncKeys.CURSOR),
            dispensations=int(dispensed), quarantined_records=quarantined)

    def drafts(self, id_nat_ps: str | None = None) -> list[DraftRow]:
        sql = ("SELECT id, prescriber_id, created_at, updated_at FROM prescriptions"
               " WHERE state = 'draft'")
        params: list[str] = []
        if id_nat_ps:
            sql, params = sql + " AND prescriber_id = ?", [id_nat_ps]
        return [DraftRow(*row) for row in self._store.execute(
            sql + " ORDER BY updated_at DESC", params)]

    def dispensation_alerts(self, limit: int = 20) -> list[DispensationAlert]:
        rows = self._store.execute(
            "SELECT d.prescription_id, d.line_no, d.product_label, d.substituted,"
            " d.substitution_type, d.substitution_reason, d.complete, d.handed_over_at,"
            " r.room, r.birth_name, r.used_name, r.first_names, d.product_code"
            " FROM dispensations d LEFT JOIN prescriptions p ON p.id = d.prescription_id"
            " LEFT JOIN residents r ON r.ins = p.resident_ins"
            " WHERE d.substituted = 1 OR d.complete = 0"
            " ORDER BY d.received_at DESC, d.registry_id LIMIT ?", [limit])
        return [DispensationAlert(pid, line, label, bool(sub), sub_type, reason,
                                  bool(complete), at, room, birth, used, first, code)
                for pid, line, label, sub, sub_type, reason, complete, at, room, birth, used,
                first, code in rows]

    def latest_registered(self) -> str | None:
        found: str | None = self._store.one("SELECT id FROM prescriptions"
                                            " WHERE state = 'registered'"
                                            " ORDER BY signed_at DESC LIMIT 1")
        return found
