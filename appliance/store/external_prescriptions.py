"""Prescriptions received from other prescribers (GPs, hospitals) by MSSanté (table
``external_prescriptions``); this module is the only one that writes the table.

Each row is one received document: the CDA and/or the PDF as received, who sent and wrote
it, when, its lines when the CDA is structured, and the resident it belongs to, matched by
INS (``ins``), by birth name, first name and birth date (``identity``), by a person
(``hand``), or not yet (``none``: the kiosk shows an alert until someone attaches it). A
document is kept once: by the message's Message-ID and by the CDA's document ID.

The read functions are what the kiosk shows: a resident's external prescriptions (author,
date, lines, whether a PDF or a CDA is there), the unmatched ones and their count.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from appliance.errors import StoreError
from appliance.store import audit
from appliance.store.db import Store

if TYPE_CHECKING:
    import sqlite_utils

MATCHES = ("ins", "identity", "hand", "none")


@dataclass(frozen=True)
class ExternalLineRow:
    label: str
    code: str | None = None
    posology: str = ""


@dataclass(frozen=True)
class ExternalPrescription:
    id: int
    message_id: str
    document_id: str | None
    resident_ins: str | None
    matched_by: str
    sender: str
    author: str
    author_id: str | None
    issued_at: datetime | None
    received_at: datetime
    lines: tuple[ExternalLineRow, ...]
    has_cda: bool
    has_pdf: bool
    patient: dict[str, Any]  # identity as written in the document (for matching by hand)


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds")


def _row(row: dict) -> ExternalPrescription:
    return ExternalPrescription(
        id=row["id"], message_id=row["message_id"], document_id=row["document_id"],
        resident_ins=row["resident_ins"], matched_by=row["matched_by"], sender=row["sender"],
        author=row["author"], author_id=row["author_id"],
        issued_at=datetime.fromisoformat(row["issued_at"]) if row["issued_at"] else None,
        received_at=datetime.fromisoformat(row["received_at"]),
        lines=tuple(ExternalLineRow(**x) for x in json.loads(row["lines"])),
        has_cda=bool(row["has_cda"]), has_pdf=bool(row["has_pdf"]),
        patient=json.loads(row["patient"]))


_COLUMNS = ("id, message_id, document_id, resident_ins, matched_by, sender, author, author_id,"
            " issued_at, received_at, lines, patient, cda IS NOT NULL AS has_cda,"
            " pdf IS NOT NULL AS has_pdf")


def known(store: Store | Any, message_id: str, document_id: str | None = None) -> bool:
    """Whether this message, or this CDA document, was already received."""
    conn = store.conn
    row = conn.execute("SELECT 1 FROM external_prescriptions WHERE message_id = ?"
                       " OR (? IS NOT NULL AND document_id = ?)",
                       (message_id, document_id, document_id)).fetchone()
    return row is not None


def add(db: sqlite_utils.Database, *, message_id: str, document_id: str | None,
        resident_ins: str | None, matched_by: str, sender: str, author: str,
        author_id: str | None, issued_at: datetime | None, lines: list[ExternalLineRow],
        patient: dict[str, Any], cda: bytes | None, pdf: bytes | None,
        received_at: datetime | None = None, actor: str = "mssante") -> int | None:
    """Keep a received document in the caller's transaction; ``None`` if already kept."""
    if matched_by not in MATCHES:
        raise StoreError(f"unknown match kind {matched_by!r}")
    if known(db, message_id, document_id):
        return None
    cur = db.execute(
        "INSERT INTO external_prescriptions (message_id, document_id, resident_ins,"
        " matched_by, sender, author, author_id, issued_at, received_at, patient, lines, cda,"
        " pdf) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [message_id, document_id, resident_ins, matched_by, sender, author, author_id,
         _iso(issued_at) if issued_at else None, _iso(received_at or datetime.now(UTC)),
         json.dumps(patient, ensure_ascii=False),
         json.dumps([x.__dict__ for x in lines], ensure_ascii=False), cda, pdf])
    ext_id = int(cur.lastrowid)
    audit.append(db, actor=actor, action="mssante.received", subject=str(ext_id),
                 details={"matched_by": matched_by, "sender": sender,
                          "structured": cda is not None, "lines": len(lines)})
    return ext_id


def attach(db: sqlite_utils.Database, ext_id: int, resident_ins: str, *, actor: str) -> None:
    """A person attaches an unmatched document to a resident (audited)."""
    cur = db.execute("UPDATE external_prescriptions SET resident_ins = ?, matched_by = 'hand'"
                     " WHERE id = ?", [resident_ins, ext_id])
    if not cur.rowcount:
        raise StoreError(f"ordonnance reçue inconnue : {ext_id}")
    audit.append(db, actor=actor, action="mssante.attached", subject=str(ext_id))


def of_resident(store: Store, ins: str) -> list[ExternalPrescription]:
    """A resident's received prescriptions, newest first."""
    return [_row(r) for r in store.query(
        f"SELECT {_COLUMNS} FROM external_prescriptions WHERE resident_ins = ?"  # noqa: S608
        " ORDER BY received_at DESC", (ins,))]


def every(store: Store, limit: int = 200) -> list[ExternalPrescription]:
    """The latest received prescriptions, matched or not, newest first."""
    return [_row(r) for r in store.query(
        f"SELECT {_COLUMNS} FROM external_prescriptions"  # noqa: S608
        " ORDER BY received_at DESC LIMIT ?", (limit,))]


def unmatched(store: Store) -> list[ExternalPrescription]:
    return [_row(r) for r in store.query(
        f"SELECT {_COLUMNS} FROM external_prescriptions"  # noqa: S608
        " WHERE resident_ins IS NULL"
        " ORDER BY received_at")]


def unmatched_count(store: Store) -> int:
    return store.query("SELECT count(*) AS n FROM external_prescriptions"
                       " WHERE resident_ins IS NULL")[0]["n"]


def documents(store: Store, ext_id: int) -> tuple[bytes | None, bytes | None]:
    """The CDA and the PDF of a received prescription, as received."""
    rows = store.query("SELECT cda, pdf FROM external_prescriptions WHERE id = ?", (ext_id,))
    if not rows:
        raise StoreError(f"ordonnance reçue inconnue : {ext_id}")
    cda, pdf = rows[0]["cda"], rows[0]["pdf"]
    return (bytes(cda) if cda is not None else None, bytes(pdf) if pdf is not None else None)
