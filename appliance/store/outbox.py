"""Owner of the ``outbox`` table: what waits to go to the registry.

A ``create`` row is written with each signed prescription, a ``cancel`` row with each
cancellation; they are read oldest first, and a cancel waits until the create of the same
prescription is no longer pending. Every outcome write is guarded (``status =
'pending'``): a record acknowledged by another process is not acknowledged twice.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from datetime import UTC, datetime

from appliance.ports.clock import iso, parse_iso
from appliance.ports.registry import RegistryReceipt
from appliance.ports.uow import OutboxRecord
from appliance.store.db import SqlValue, Store

_IN_CHUNK = 500  # bound parameters per query
# A cancel is eligible only once the create of the same prescription is no longer pending.
_DUE_SQL = (
    "SELECT o.seq, o.prescription_id, o.kind, o.attempts, o.created_at FROM outbox o"
    " WHERE o.status = 'pending' AND (o.kind = 'create' OR NOT EXISTS ("
    "  SELECT 1 FROM outbox c WHERE c.prescription_id = o.prescription_id"
    "  AND c.kind = 'create' AND c.status = 'pending'))"
    " AND (o.next_attempt_at IS NULL OR o.next_attempt_at <= ?) AND o.seq > ?"
    " ORDER BY o.seq LIMIT ?"
)
_NEXT_DUE_SQL = (
    "SELECT count(*) AS n, min(coalesce(o.next_attempt_at, '')) AS t FROM outbox o"
    " WHERE o.status = 'pending' AND (o.kind = 'create' OR NOT EXISTS ("
    "  SELECT 1 FROM outbox c WHERE c.prescription_id = o.prescription_id"
    "  AND c.kind = 'create' AND c.status = 'pending'))"
)


# The outcomes of a batch, one statement each: the rows come as ``VALUES`` (placeholders
# only, one group per record), guarded by ``status = 'pending'``.
_ACKNOWLEDGE_SQL = (
    "UPDATE outbox SET status = 'acknowledged', attempts = attempts + 1, receipt = v.column2,"
    " acknowledged_at = ?, last_error = NULL, next_attempt_at = NULL"
    " FROM (VALUES {}) AS v WHERE outbox.seq = v.column1 AND outbox.status = 'pending'"
    " RETURNING seq"
)
_RETRY_SQL = (
    "UPDATE outbox SET attempts = attempts + 1, last_error = v.column2,"
    " next_attempt_at = v.column3"
    " FROM (VALUES {}) AS v WHERE outbox.seq = v.column1 AND outbox.status = 'pending'"
)


def _receipt_json(receipt: RegistryReceipt) -> str:
    return json.dumps({"id": receipt.receipt_id, "at": iso(receipt.received_at),
                       "replayed": receipt.replayed})


class OutboxTable:
    def __init__(self, store: Store) -> None:
        self._store = store

    def add(self, prescription_id: str, kind: str, at: datetime) -> int:
        self._store.require_write("outbox")
        cursor = self._store.execute(
            "INSERT INTO outbox (prescription_id, kind, created_at) VALUES (?, ?, ?)",
            [prescription_id, kind, iso(at)])
        return int(cursor.lastrowid or 0)

    def due(self, now: datetime, limit: int, after: int = 0) -> list[OutboxRecord]:
        return [OutboxRecord(*row) for row in self._store.execute(
            _DUE_SQL, [iso(now), after, limit])]

    def next_due_at(self) -> datetime | None:
        row = self._store.execute(_NEXT_DUE_SQL).fetchone()
        if not row["n"]:
            return None
        return parse_iso(row["t"]) or datetime.min.replace(tzinfo=UTC)

    def pending_count(self) -> int:
        return int(self._store.one("SELECT count(*) FROM outbox WHERE status = 'pending'"))

    def create_status(self, prescription_id: str) -> str | None:
        status: str | None = self._store.one("SELECT status FROM outbox WHERE prescription_id = ?"
                                             " AND kind = 'create'", [prescription_id])
        return status

    def acknowledge(self, record: OutboxRecord, receipt: RegistryReceipt,
                    at: datetime) -> bool:
        self._store.require_write("outbox")
        return self._store.execute(
            "UPDATE outbox SET status = 'acknowledged', attempts = attempts + 1, receipt = ?,"
            " acknowledged_at = ?, last_error = NULL, next_attempt_at = NULL"
            " WHERE seq = ? AND status = 'pending'",
            [_receipt_json(receipt), iso(at), record.seq]).rowcount > 0

    def acknowledge_many(self, items: Sequence[tuple[OutboxRecord, RegistryReceipt]],
                         at: datetime) -> set[int]:
        """Acknowledge several records in one statement (per 500); returns the numbers of
        those that were still pending (the others were acknowledged by another process,
        and are left as they are)."""
        self._store.require_write("outbox")
        when = iso(at)
        pending: set[int] = set()
        for start in range(0, len(items), _IN_CHUNK):
            chunk = items[start:start + _IN_CHUNK]
            params: list[SqlValue] = [when]
            for record, receipt in chunk:
                params += (record.seq, _receipt_json(receipt))
            sql = _ACKNOWLEDGE_SQL.format(",".join(["(?, ?)"] * len(chunk)))
            try:  # the rows come back from the first step: fetched inside the guard
                pending.update(row[0] for row in self._store.conn.execute(sql, params))
            except sqlite3.Error as exc:
                raise self._store.failed(exc) from exc
        return pending

    def retry_many(self, items: Sequence[tuple[OutboxRecord, str, datetime | None]]) -> None:
        """Count a failed attempt of each record, with its error and when it may go again
        (``None``: as soon as the registry answers), in one statement (per 500)."""
        self._store.require_write("outbox")
        for start in range(0, len(items), _IN_CHUNK):
            chunk = items[start:start + _IN_CHUNK]
            params: list[SqlValue] = []
            for record, error, at in chunk:
                params += (record.seq, error[:500], None if at is None else iso(at))
            self._store.execute(_RETRY_SQL.format(",".join(["(?, ?, ?)"] * len(chunk))),
                                params)

    def retry(self, record: OutboxRecord, error: str, at: datetime) -> None:
        self._store.require_write("outbox")
        self._store.execute(
            "UPDATE outbox SET attempts = attempts + 1, last_error = ?, next_attempt_at = ?"
            " WHERE seq = ? AND status = 'pending'", [error[:500], iso(at), record.seq])

    def quarantine(self, record: OutboxRecord, reason: str) -> bool:
        self._store.require_write("outbox")
        return self._store.execute(
            "UPDATE outbox SET status = 'quarantined', attempts = attempts + 1,"
            " last_error = ?, next_attempt_at = NULL WHERE seq = ? AND status = 'pending'",
            [reason[:1000], record.seq]).rowcount > 0

    def release(self, seq: int) -> OutboxRecord | None:
        self._store.require_write("outbox")
        row = self._store.execute(
            "SELECT seq, prescription_id, kind, attempts, created_at FROM outbox"
            " WHERE seq = ? AND status = 'quarantined'", [seq]).fetchone()
        if row is None:
            return None
        self._store.execute("UPDATE outbox SET status = 'pending', next_attempt_at = NULL"
                            " WHERE seq = ?", [seq])
        return OutboxRecord(*row)
