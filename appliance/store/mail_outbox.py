"""The MSSanté mail outbox (table ``mail_outbox``): one message per signed order to the
partner pharmacy. This module is the only one that writes the table.

``enqueue(db, prescription_id)`` runs inside the signing transaction: the order and its
message are committed together, so a signed order is never left unsent by a crash. The
pharmacy's address is the configured ``[pharmacy] mssante``; the composition root records it
in ``meta`` (``configure``) so that the store, which does not see the settings, queues
nothing while it is empty. The address is copied into the row: a later change of pharmacy
does not redirect orders already queued.

The sender (``sync.mailbox``) reads the due rows oldest first, fixes the row's
``message_id`` at the first attempt (every resend is the same message), and records the
outcome: ``sent`` once the server accepted the message, a retry time after a transient
failure, ``quarantined`` with the reason after a permanent refusal (5xx). ``release`` puts a
quarantined row back in the queue. Sent and quarantined rows are audited (never the
resident's identity).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from appliance.store import audit
from appliance.store.db import Store

if TYPE_CHECKING:
    import sqlite_utils

RECIPIENT_KEY = "mssante.pharmacy"
ACTOR = "mssante"


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds")


def _get_meta(db: Any, key: str) -> str | None:
    row = db.execute("SELECT value FROM meta WHERE key = ?", [key]).fetchone()
    return row[0] if row else None


def configure(store: Store, recipient: str) -> None:
    """Record the partner pharmacy's address (empty: queue nothing); writes only on change."""
    if (_get_meta(store.conn, RECIPIENT_KEY) or "") == recipient:
        return
    with store.write() as db:
        if recipient:
            db.execute("INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key)"
                       " DO UPDATE SET value = excluded.value", [RECIPIENT_KEY, recipient])
        else:
            db.execute("DELETE FROM meta WHERE key = ?", [RECIPIENT_KEY])


def enqueue(db: sqlite_utils.Database, prescription_id: str, recipient: str | None = None,
            *, at: datetime | None = None) -> int | None:
    """Queue the order's message in the caller's transaction; ``None`` when no pharmacy
    address is configured. Queuing the same order twice keeps one row."""
    recipient = recipient if recipient is not None else _get_meta(db, RECIPIENT_KEY)
    if not recipient:
        return None
    cur = db.execute(
        "INSERT INTO mail_outbox (prescription_id, recipient, created_at) VALUES (?, ?, ?)"
        " ON CONFLICT (prescription_id, recipient) DO NOTHING",
        [prescription_id, recipient, _iso(at or datetime.now(UTC))])
    if cur.rowcount:
        return int(cur.lastrowid)
    row = db.execute("SELECT seq FROM mail_outbox WHERE prescription_id = ? AND recipient = ?",
                     [prescription_id, recipient]).fetchone()
    return int(row[0])


@dataclass(frozen=True)
class MailRecord:
    seq: int
    prescription_id: str
    recipient: str
    message_id: str | None
    attempts: int


def due(store: Store, now: datetime, limit: int = 20, after: int = 0) -> list[MailRecord]:
    rows = store.query(
        "SELECT seq, prescription_id, recipient, message_id, attempts FROM mail_outbox"
        " WHERE status = 'pending' AND (next_attempt_at IS NULL OR next_attempt_at <= ?)"
        " AND seq > ? ORDER BY seq LIMIT ?", (_iso(now), after, limit))
    return [MailRecord(**row) for row in rows]


def next_due_at(store: Store) -> datetime | None:
    row = store.query("SELECT count(*) AS n, min(coalesce(next_attempt_at, '')) AS t"
                      " FROM mail_outbox WHERE status = 'pending'")[0]
    if not row["n"]:
        return None
    return datetime.fromisoformat(row["t"]) if row["t"] else datetime.min.replace(tzinfo=UTC)


def pending_count(store: Store) -> int:
    return store.query("SELECT count(*) AS n FROM mail_outbox WHERE status = 'pending'")[0]["n"]


def set_message_id(db: sqlite_utils.Database, seq: int, message_id: str) -> str:
    """Fix the row's Message-ID if it has none yet; returns the one that stays."""
    db.execute("UPDATE mail_outbox SET message_id = ? WHERE seq = ? AND message_id IS NULL",
               [message_id, seq])
    return db.execute("SELECT message_id FROM mail_outbox WHERE seq = ?", [seq]).fetchone()[0]


def mark_sent(db: sqlite_utils.Database, record: MailRecord, at: datetime) -> bool:
    cur = db.execute("UPDATE mail_outbox SET status = 'sent', sent_at = ?, attempts = attempts"
                     " + 1, last_error = NULL, next_attempt_at = NULL"
                     " WHERE seq = ? AND status = 'pending'", [_iso(at), record.seq])
    if not cur.rowcount:
        return False
    audit.append(db, actor=ACTOR, action="mssante.sent", subject=record.prescription_id,
                 details={"mail": record.seq, "to": record.recipient})
    return True


def mark_retry(db: sqlite_utils.Database, record: MailRecord, error: str,
               retry_at: datetime) -> None:
    db.execute("UPDATE mail_outbox SET attempts = attempts + 1, last_error = ?,"
               " next_attempt_at = ? WHERE seq = ? AND status = 'pending'",
               [error[:500], _iso(retry_at), record.seq])


def mark_quarantined(db: sqlite_utils.Database, record: MailRecord, reason: str) -> None:
    cur = db.execute("UPDATE mail_outbox SET status = 'quarantined', attempts = attempts + 1,"
                     " last_error = ?, next_attempt_at = NULL WHERE seq = ? AND status = "
                     "'pending'", [reason[:500], record.seq])
    if cur.rowcount:
        audit.append(db, actor=ACTOR, action="mssante.quarantined",
                     subject=record.prescription_id,
                     details={"mail": record.seq, "reason": reason[:200]})


def release(db: sqlite_utils.Database, seq: int, *, actor: str) -> bool:
    """Put a quarantined message back in the queue (``ordo sync release-mail``)."""
    row = db.execute("SELECT prescription_id FROM mail_outbox WHERE seq = ? AND status ="
                     " 'quarantined'", [seq]).fetchone()
    if row is None:
        return False
    db.execute("UPDATE mail_outbox SET status = 'pending', next_attempt_at = NULL,"
               " attempts = 0 WHERE seq = ?", [seq])
    audit.append(db, actor=actor, action="mssante.released", subject=row[0],
                 details={"mail": seq})
    return True


@dataclass(frozen=True)
class MailStatus:
    pending: int
    sent: int
    quarantined: int
    last_error: str | None
    quarantined_records: tuple[dict[str, Any], ...]

    def to_dict(self) -> dict[str, Any]:
        return {"pending": self.pending, "sent": self.sent, "quarantined": self.quarantined,
                "last_error": self.last_error,
                "quarantined_records": list(self.quarantined_records)}


def status(store: Store) -> MailStatus:
    counts = {row["status"]: row["n"] for row in store.query(
        "SELECT status, count(*) AS n FROM mail_outbox GROUP BY status")}
    last = store.query("SELECT last_error FROM mail_outbox WHERE status = 'pending'"
                       " AND last_error IS NOT NULL ORDER BY seq DESC LIMIT 1")
    quarantined = tuple(store.query(
        "SELECT seq, prescription_id, recipient, last_error AS reason FROM mail_outbox"
        " WHERE status = 'quarantined' ORDER BY seq"))
    return MailStatus(counts.get("pending", 0), counts.get("sent", 0),
                      counts.get("quarantined", 0), last[0]["last_error"] if last else None,
                      quarantined)
