"""What the sync engine reads and writes in the appliance's SQLite store.

The outbox (``outbox`` table, written by ``record_signed`` and the cancel use case) is read
oldest first. A cancellation waits until the create of the same prescription is
acknowledged. Every write here runs inside the caller's ``store.write()`` transaction
(``BEGIN IMMEDIATE``), so that an acknowledgement, the prescription's new state and their
audit entries land together; state changes go through the domain's ``transition()``.

Sync bookkeeping lives in ``meta`` under ``sync.*`` keys: the dispensation cursor, the last
successful exchange, the last error. ``sync_status()`` is what ``ordo sync status`` and the
kiosk show.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from appliance.domain.prescription import MedicationLine, Prescription, State
from appliance.domain.qr import SignedOrder
from appliance.ports.registry import (
    Dispensation,
    DispensationPage,
    RegistryReceipt,
    SignatureProof,
)
from appliance.store import audit
from appliance.store import repositories as repo
from appliance.store.db import Store

if TYPE_CHECKING:
    import sqlite_utils

CURSOR_KEY = "sync.dispense_cursor"
LAST_SUCCESS_KEY = "sync.last_success_at"
LAST_ERROR_KEY = "sync.last_error"
LAST_ERROR_AT_KEY = "sync.last_error_at"
LAST_PUSH_KEY = "sync.last_push_at"
LAST_PULL_KEY = "sync.last_pull_at"

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


def iso(moment: datetime) -> str:
    """The house timestamp format (UTC, milliseconds): sorts as text."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds")


def _parse(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


@dataclass(frozen=True)
class OutboxRecord:
    seq: int
    prescription_id: str
    kind: str
    attempts: int
    created_at: str


def due_records(store: Store, now: datetime, limit: int, after: int = 0
                ) -> list[OutboxRecord]:
    """Pending records whose time has come, oldest first, after outbox number ``after``."""
    rows = store.query(_DUE_SQL, (iso(now), after, limit))
    return [OutboxRecord(**row) for row in rows]


def next_due_at(store: Store) -> datetime | None:
    """When the earliest eligible pending record becomes due (``None``: nothing pending)."""
    row = store.query(_NEXT_DUE_SQL)[0]
    if not row["n"]:
        return None
    return _parse(row["t"]) or datetime.min.replace(tzinfo=UTC)


def pending_count(store: Store) -> int:
    return store.query("SELECT count(*) AS n FROM outbox WHERE status = 'pending'")[0]["n"]


@dataclass(frozen=True)
class Signed:
    """A signed prescription as stored, ready to send."""

    prescription: Prescription
    proof: SignatureProof


_SIGNED_SQL = ("SELECT id, body, signature, signer_cert, signed_payload FROM prescriptions"
               " WHERE id IN ({})")
_IN_CHUNK = 500  # bound parameters per query (SQLite allows 32,766 since 3.32)


def parse_signed(row: Any) -> Signed | None:
    """A stored ``prescriptions`` row (``signed_rows``) as a ``Signed``; ``None`` when it is
    not signed. Raises the domain's ``ValidationError`` when the body no longer loads."""
    if row["signature"] is None or row["signer_cert"] is None:
        return None
    prescription = Prescription.from_dict(json.loads(row["body"]))
    signed_part = (bytes(row["signed_payload"]) if row["signed_payload"] is not None
                   else SignedOrder.from_prescription(prescription).to_bytes())
    return Signed(prescription, SignatureProof(signature=bytes(row["signature"]),
                                               signer_cert=bytes(row["signer_cert"]),
                                               signed_part=signed_part))


def signed_rows(store: Store, prescription_ids: Iterable[str]) -> dict[str, Any]:
    """The stored rows of several prescriptions by ID, one query per 500 IDs (the engine
    loads a whole batch at once, not one query per record); unknown IDs are left out."""
    ids = list(dict.fromkeys(prescription_ids))
    rows: dict[str, Any] = {}
    for start in range(0, len(ids), _IN_CHUNK):
        chunk = ids[start:start + _IN_CHUNK]
        sql = _SIGNED_SQL.format(",".join("?" * len(chunk)))  # placeholders only
        rows.update((row["id"], row) for row in store.conn.execute(sql, chunk))
    return rows


def load_signed(store: Store, prescription_id: str) -> Signed | None:
    """The prescription with its signature, certificate and the exact signed part: the
    stored ``signed_payload`` when there is one, else the QR signed part rebuilt from the
    prescription (``SignedOrder.from_prescription``: its fields, ``signed_at`` and ``H``,
    byte for byte what the signing service had the card sign)."""
    row = signed_rows(store, [prescription_id]).get(prescription_id)
    return None if row is None else parse_signed(row)


def cancel_reason(store: Store, prescription_id: str) -> str:
    rows = store.query("SELECT cancel_reason FROM prescriptions WHERE id = ?",
                       (prescription_id,))
    return (rows[0]["cancel_reason"] or "") if rows else ""


def create_status(store: Store, prescription_id: str) -> str | None:
    rows = store.query("SELECT status FROM outbox WHERE prescription_id = ? AND kind = 'create'",
                       (prescription_id,))
    return rows[0]["status"] if rows else None


# -- outbox outcomes (inside store.write()) -------------------------------------------------------
def _receipt_json(receipt: RegistryReceipt) -> str:
    return json.dumps({"id": receipt.receipt_id, "at": iso(receipt.received_at),
                       "replayed": receipt.replayed})


def _current(db: sqlite_utils.Database, prescription_id: str,
             known: Prescription | None = None) -> Prescription | None:
    """The stored prescription; ``known`` (already loaded) when its state still matches, so
    that the body is neither read nor parsed again."""
    if known is not None:
        row = db.execute("SELECT state FROM prescriptions WHERE id = ?",
                         [prescription_id]).fetchone()
        if row is None:
            return None
        if known.state.value == row[0]:
            return known
    row = db.execute("SELECT body FROM prescriptions WHERE id = ?", [prescription_id]).fetchone()
    return None if row is None else Prescription.from_dict(json.loads(row[0]))


def mark_acknowledged(db: sqlite_utils.Database, record: OutboxRecord, receipt: RegistryReceipt,
                      now: datetime, actor: str, known: Prescription | None = None) -> bool:
    """Store the receipt; a create moves the prescription ``signed`` → ``registered``.

    Returns False when another process acknowledged the record first (nothing written)."""
    cur = db.execute(
        "UPDATE outbox SET status = 'acknowledged', attempts = attempts + 1, receipt = ?,"
        " acknowledged_at = ?, last_error = NULL, next_attempt_at = NULL"
        " WHERE seq = ? AND status = 'pending'",
        [_receipt_json(receipt), iso(now), record.seq])
    if cur.rowcount == 0:
        return False
    if record.kind == "create":
        db.execute("UPDATE prescriptions SET registry_receipt = ? WHERE id = ?",
                   [receipt.receipt_id, record.prescription_id])
        p = _current(db, record.prescription_id, known)
        if p is not None and p.state is State.SIGNED:
            repo.update_state(db, p.transition(State.REGISTERED, now), actor=actor)
    audit.append(db, actor=actor, action=f"registry.{record.kind}.acknowledged",
                 subject=record.prescription_id,
                 details={"receipt": receipt.receipt_id, "replayed": receipt.replayed,
                          "outbox": record.seq})
    return True


def mark_retry(db: sqlite_utils.Database, record: OutboxRecord, error: str,
               next_attempt: datetime) -> None:
    db.execute("UPDATE outbox SET attempts = attempts + 1, last_error = ?, next_attempt_at = ?"
               " WHERE seq = ? AND status = 'pending'",
               [error[:500], iso(next_attempt), record.seq])


def mark_quarantined(db: sqlite_utils.Database, record: OutboxRecord, reason: str,
                     now: datetime, actor: str, status: int | None = None) -> None:
    """Set the record aside for good with its reason; the others keep flowing."""
    cur = db.execute("UPDATE outbox SET status = 'quarantined', attempts = attempts + 1,"
                     " last_error = ?, next_attempt_at = NULL WHERE seq = ? AND status = 'pending'",
                     [reason[:1000], record.seq])
    if cur.rowcount:
        audit.append(db, actor=actor, action=f"registry.{record.kind}.quarantined",
                     subject=record.prescription_id,
                     details={"outbox": record.seq, "status": status, "reason": reason[:200]},
                     at=now)


def release(db: sqlite_utils.Database, seq: int, actor: str) -> bool:
    """Put a quarantined record back in the queue (after the cause was fixed)."""
    row = db.execute("SELECT prescription_id, kind FROM outbox WHERE seq = ?"
                     " AND status = 'quarantined'", [seq]).fetchone()
    if row is None:
        return False
    db.execute("UPDATE outbox SET status = 'pending', next_attempt_at = NULL WHERE seq = ?",
               [seq])
    audit.append(db, actor=actor, action=f"registry.{row[1]}.released", subject=row[0],
                 details={"outbox": seq})
    return True


# -- meta -------------------------------------------------------------------------------------
def get_meta(store: Store, key: str) -> str | None:
    rows = store.query("SELECT value FROM meta WHERE key = ?", (key,))
    return rows[0]["value"] if rows else None


def set_meta(db: sqlite_utils.Database, key: str, value: str) -> None:
    db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", [key, value])


def record_exchange(db: sqlite_utils.Database, now: datetime, *, ok: bool,
                    error: str | None = None) -> None:
    """Remember the last successful exchange with the registry, or the last error."""
    if ok:
        set_meta(db, LAST_SUCCESS_KEY, iso(now))
    if error:
        set_meta(db, LAST_ERROR_KEY, error[:500])
        set_meta(db, LAST_ERROR_AT_KEY, iso(now))


# -- dispensations --------------------------------------------------------------------------------
def _dispensation_row(d: Dispensation, resource: dict[str, Any], now: datetime) -> list[Any]:
    return [d.registry_id, d.prescription_id, d.line, int(d.complete), d.product_label,
            d.product_system, d.product_code,
            None if d.quantity is None else format(d.quantity, "f"), d.unit,
            int(d.substituted), d.substitution_type, d.substitution_reason, d.pharmacy,
            iso(d.handed_over_at), iso(now), json.dumps(resource, ensure_ascii=False)]


def apply_dispensations(db: sqlite_utils.Database, page: DispensationPage, now: datetime,
                        actor: str) -> list[str]:
    """Store a page of dispensations (each once) and move the prescriptions they concern:
    ``partially_dispensed`` until every medication line had a complete dispensation, then
    ``dispensed``. Returns the IDs of the prescriptions touched."""
    touched: dict[str, None] = {}
    raws = page.raw or tuple({} for _ in page.items)
    for d, resource in zip(page.items, raws, strict=True):
        cur = db.execute(
            "INSERT OR IGNORE INTO dispensations (registry_id, prescription_id, line_no,"
            " complete, product_label, product_system, product_code, quantity, unit,"
            " substituted, substitution_type, substitution_reason, pharmacy, handed_over_at,"
            " received_at, resource) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            _dispensation_row(d, resource, now))
        if cur.rowcount:
            touched[d.prescription_id] = None
            audit.append(db, actor=actor, action="registry.dispensation", subject=d.prescription_id,
                         details={"dispensation": d.registry_id, "line": d.line,
                                  "complete": d.complete, "substituted": d.substituted})
    for pid in touched:
        _advance(db, pid, now, actor)
    return list(touched)


def _advance(db: sqlite_utils.Database, prescription_id: str, now: datetime, actor: str) -> None:
    p = _current(db, prescription_id)
    if p is None:
        return
    medication = {n for n, line in enumerate(p.lines, start=1)
                  if isinstance(line, MedicationLine)}
    complete = {row[0] for row in db.execute(
        "SELECT DISTINCT line_no FROM dispensations WHERE prescription_id = ? AND complete = 1",
        [prescription_id])}
    target = State.DISPENSED if medication and medication <= complete \
        else State.PARTIALLY_DISPENSED
    if p.state is State.SIGNED:  # the registry holds it: our acknowledgement was lost
        p = p.transition(State.REGISTERED, now)
        repo.update_state(db, p, actor=actor)
    if p.state is State.CANCELLED:
        audit.append(db, actor=actor, action="registry.dispensed_after_cancel",
                     subject=prescription_id, details={"target": target.value})
        return
    if p.can_become(target):
        repo.update_state(db, p.transition(target, now), actor=actor)


def dispensations_of(store: Store, prescription_id: str) -> list[Dispensation]:
    """What the pharmacy handed over for a prescription, in the order it happened."""
    rows = store.query("SELECT * FROM dispensations WHERE prescription_id = ?"
                       " ORDER BY handed_over_at, registry_id", (prescription_id,))
    return [Dispensation(
        registry_id=r["registry_id"], prescription_id=r["prescription_id"], line=r["line_no"],
        complete=bool(r["complete"]), handed_over_at=datetime.fromisoformat(r["handed_over_at"]),
        product_label=r["product_label"], product_code=r["product_code"],
        product_system=r["product_system"],
        quantity=None if r["quantity"] is None else Decimal(r["quantity"]), unit=r["unit"],
        substituted=bool(r["substituted"]), substitution_type=r["substitution_type"],
        substitution_reason=r["substitution_reason"], pharmacy=r["pharmacy"]) for r in rows]


SUBSTITUTION_LABELS_FR = {"G": "générique", "E": "équivalent", "EC": "équivalent",
                          "BC": "marque", "TE": "équivalent thérapeutique",
                          "TB": "marque thérapeutique", "TG": "générique thérapeutique",
                          "F": "formulaire", "N": "aucune"}


def describe_fr(d: Dispensation) -> str:
    """One line in French for the kiosk: what was handed over, and any substitution."""
    quantity = ""
    if d.quantity is not None:
        quantity = f"{format(d.quantity.normalize(), 'f').replace('.', ',')} {d.unit or ''} "
    text = f"Ligne {d.line} : {quantity.strip()} {d.product_label}".replace("  ", " ")
    text += " (délivrance complète)" if d.complete else " (délivrance partielle)"
    if d.substituted:
        kind = SUBSTITUTION_LABELS_FR.get(d.substitution_type or "", "substitution")
        text += f" — substitution ({kind})"
        if d.substitution_reason:
            text += f" : {d.substitution_reason}"
    return text


# -- status -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class SyncStatus:
    """Queue depth, oldest pending age, last success, last error, quarantined records."""

    queue_depth: int
    pending_creates: int
    pending_cancels: int
    oldest_pending_at: str | None
    oldest_pending_age_s: float | None
    next_attempt_at: str | None
    acknowledged: int
    quarantined: int
    last_success_at: str | None
    last_error: str | None
    last_error_at: str | None
    last_push_at: str | None
    last_pull_at: str | None
    dispense_cursor: str | None
    dispensations: int
    quarantined_records: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def sync_status(store: Store, now: datetime | None = None) -> SyncStatus:
    now = now or datetime.now(UTC)
    counts = store.query(
        "SELECT"
        " sum(status = 'pending') AS pending,"
        " sum(status = 'pending' AND kind = 'create') AS creates,"
        " sum(status = 'pending' AND kind = 'cancel') AS cancels,"
        " sum(status = 'acknowledged') AS acknowledged,"
        " sum(status = 'quarantined') AS quarantined,"
        " min(CASE WHEN status = 'pending' THEN created_at END) AS oldest,"
        " min(CASE WHEN status = 'pending' THEN coalesce(next_attempt_at, '') END) AS next"
        " FROM outbox")[0]
    oldest = counts["oldest"]
    age = (now - datetime.fromisoformat(oldest)).total_seconds() if oldest else None
    quarantined = store.query(
        "SELECT seq, prescription_id, kind, attempts, created_at, last_error AS reason"
        " FROM outbox WHERE status = 'quarantined' ORDER BY seq")
    meta = {row["key"]: row["value"] for row in store.query(
        "SELECT key, value FROM meta WHERE key LIKE 'sync.%'")}
    return SyncStatus(
        queue_depth=counts["pending"] or 0, pending_creates=counts["creates"] or 0,
        pending_cancels=counts["cancels"] or 0, oldest_pending_at=oldest,
        oldest_pending_age_s=None if age is None else round(max(age, 0.0), 3),
        next_attempt_at=counts["next"] or (iso(now) if counts["pending"] else None),
        acknowledged=counts["acknowledged"] or 0, quarantined=counts["quarantined"] or 0,
        last_success_at=meta.get(LAST_SUCCESS_KEY), last_error=meta.get(LAST_ERROR_KEY),
        last_error_at=meta.get(LAST_ERROR_AT_KEY), last_push_at=meta.get(LAST_PUSH_KEY),
        last_pull_at=meta.get(LAST_PULL_KEY), dispense_cursor=meta.get(CURSOR_KEY),
        dispensations=store.query("SELECT count(*) AS n FROM dispensations")[0]["n"],
        quarantined_records=quarantined)
