"""Owner of the ``mail_outbox`` table: the messages waiting for the partner pharmacy by
MSSanté, one per signed order.

A row is written in the signing transaction (``appliance.services.signature
.record_signature``, when ``[pharmacy] mssante`` is set): the order and its message are
committed together, so a crash never leaves a signed order unsent. The address is copied
into the row: a later change of pharmacy does not redirect orders already queued.

The sending use case (``appliance.services.mailbox.MailSender``) reads the due rows oldest
first, fixes the row's ``message_id`` at the first attempt (every resend is the same
message) and records the outcome: ``sent`` once the server accepted the message, a retry
time after a transient failure, ``quarantined`` with the reason after a permanent refusal.
Every outcome write is guarded (``status = 'pending'``).
"""

from __future__ import annotations

from datetime import datetime

from appliance.ports.clock import iso
from appliance.ports.uow import MailRecord
from appliance.store.db import Store

_RECORD = "seq, prescription_id, recipient, message_id, attempts"


class MailOutboxTable:
    def __init__(self, store: Store) -> None:
        self._store = store

    def add(self, prescription_id: str, recipient: str, at: datetime) -> int:
        self._store.require_write("mail_outbox")
        cursor = self._store.execute(
            "INSERT INTO mail_outbox (prescription_id, recipient, created_at) VALUES (?, ?, ?)"
            " ON CONFLICT (prescription_id, recipient) DO NOTHING",
            [prescription_id, recipient, iso(at)])
        if cursor.rowcount:
            return int(cursor.lastrowid or 0)
        return int(self._store.one(
            "SELECT seq FROM mail_outbox WHERE prescription_id = ? AND recipient = ?",
            [prescription_id, recipient]))

    def due(self, now: datetime, limit: int, after: int = 0) -> list[MailRecord]:
        return [MailRecord(*row) for row in self._store.execute(
            f"SELECT {_RECORD} FROM mail_outbox WHERE status = 'pending'"  # noqa: S608
            " AND (next_attempt_at IS NULL OR next_attempt_at <= ?) AND seq > ?"
            " ORDER BY seq LIMIT ?", [iso(now), after, limit])]

    def pending_count(self) -> int:
        return int(self._store.one(
            "SELECT count(*) FROM mail_outbox WHERE status = 'pending'"))

    def set_message_id(self, seq: int, message_id: str) -> str:
        self._store.require_write("mail_outbox")
        self._store.execute("UPDATE mail_outbox SET message_id = ?"
                            " WHERE seq = ? AND message_id IS NULL", [message_id, seq])
        return str(self._store.one("SELECT message_id FROM mail_outbox WHERE seq = ?", [seq]))

    def sent(self, record: MailRecord, at: datetime) -> bool:
        self._store.require_write("mail_outbox")
        return self._store.execute(
            "UPDATE mail_outbox SET status = 'sent', sent_at = ?, attempts = attempts + 1,"
            " last_error = NULL, next_attempt_at = NULL WHERE seq = ? AND status = 'pending'",
            [iso(at), record.seq]).rowcount > 0

    def retry(self, record: MailRecord, error: str, at: datetime) -> None:
        self._store.require_write("mail_outbox")
        self._store.execute(
            "UPDATE mail_outbox SET attempts = attempts + 1, last_error = ?,"
            " next_attempt_at = ? WHERE seq = ? AND status = 'pending'",
            [error[:500], iso(at), record.seq])

    def quarantine(self, record: MailRecord, reason: str) -> bool:
        self._store.require_write("mail_outbox")
        return self._store.execute(
            "UPDATE mail_outbox SET status = 'quarantined', attempts = attempts + 1,"
            " last_error = ?, next_attempt_at = NULL WHERE seq = ? AND status = 'pending'",
            [reason[:500], record.seq]).rowcount > 0

    def release(self, seq: int) -> MailRecord | None:
        self._store.require_write("mail_outbox")
        row = self._store.execute(
            f"SELECT {_RECORD} FROM mail_outbox"  # noqa: S608
            " WHERE seq = ? AND status = 'quarantined'", [seq]).fetchone()
        if row is None:
            return None
        self._store.execute("UPDATE mail_outbox SET status = 'pending', next_attempt_at = NULL,"
                            " attempts = 0 WHERE seq = ?", [seq])
        return MailRecord(*row)
