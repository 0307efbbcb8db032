"""Owner of the ``external_prescriptions`` table: prescriptions received from other
prescribers (GPs, hospitals) by MSSanté.

Each row is one received document: the CDA and/or the PDF as received, who sent and wrote
it, when, its lines when the CDA is structured, and the resident it belongs to, matched by
INS (``ins``), by birth name, first name and birth date (``identity``), by a person
(``hand``), or not yet (``none``: the kiosk shows an alert until someone attaches it). A
document is kept once: by the message's Message-ID and by the CDA's document ID. The lists
the kiosk and ``ordo mss received`` show are read models (``appliance.store.views``).
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import asdict
from datetime import datetime

from appliance.errors import StoreError
from appliance.ports.clock import iso, parse_iso
from appliance.ports.mail import ExternalLine
from appliance.ports.uow import MATCHED_BY, ExternalPrescription, ReceivedPrescription
from appliance.store.db import Store

# What the read models select (``external``); never the documents themselves.
SELECT_SQL = ("SELECT id, message_id, document_id, resident_ins, matched_by, sender, author,"
              " author_id, issued_at, received_at, lines, cda IS NOT NULL AS has_cda,"
              " pdf IS NOT NULL AS has_pdf, patient FROM external_prescriptions")


def external(row: sqlite3.Row) -> ExternalPrescription:
    """A row selected with ``SELECT_SQL`` as the port's record."""
    return ExternalPrescription(
        id=row["id"], message_id=row["message_id"], document_id=row["document_id"],
        resident_ins=row["resident_ins"], matched_by=row["matched_by"], sender=row["sender"],
        author=row["author"], author_id=row["author_id"], issued_at=parse_iso(row["issued_at"]),
        received_at=datetime.fromisoformat(row["received_at"]),
        lines=tuple(ExternalLine(**x) for x in json.loads(row["lines"])),
        has_cda=bool(row["has_cda"]), has_pdf=bool(row["has_pdf"]),
        patient=json.loads(row["patient"]))


class ExternalPrescriptionsTable:
    def __init__(self, store: Store) -> None:
        self._store = store

    def known(self, message_id: str, document_id: str | None = None) -> bool:
        count: int = self._store.one(
            "SELECT count(*) FROM external_prescriptions WHERE message_id = ?"
            " OR (? IS NOT NULL AND document_id = ?)",
            [message_id, document_id, document_id])
        return count > 0

    def add(self, received: ReceivedPrescription) -> int | None:
        self._store.require_write("external_prescriptions")
        r = received
        if r.matched_by not in MATCHED_BY:
            raise StoreError(f"rattachement inconnu {r.matched_by!r}")
        if self.known(r.message_id, r.document_id):
            return None
        cursor = self._store.execute(
            "INSERT INTO external_prescriptions (message_id, document_id, resident_ins,"
            " matched_by, sender, author, author_id, issued_at, received_at, patient, lines,"
            " cda, pdf) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [r.message_id, r.document_id, r.resident_ins, r.matched_by, r.sender, r.author,
             r.author_id, iso(r.issued_at) if r.issued_at else None, iso(r.received_at),
             json.dumps(r.patient, ensure_ascii=False),
             json.dumps([asdict(line) for line in r.lines], ensure_ascii=False), r.cda, r.pdf])
        return int(cursor.lastrowid or 0)

    def attach(self, external_id: int, resident_ins: str) -> bool:
        self._store.require_write("external_prescriptions")
        return self._store.execute(
            "UPDATE external_prescriptions SET resident_ins = ?, matched_by = 'hand'"
            " WHERE id = ?", [resident_ins, external_id]).rowcount > 0

    def documents(self, external_id: int) -> tuple[bytes | None, bytes | None] | None:
        row = self._store.execute("SELECT cda, pdf FROM external_prescriptions WHERE id = ?",
                                  [external_id]).fetchone()
        if row is None:
            return None
        cda, pdf = row["cda"], row["pdf"]
        return (bytes(cda) if cda is not None else None,
                bytes(pdf) if pdf is not None else None)
