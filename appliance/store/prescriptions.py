"""Owner of the ``prescriptions`` table: drafts, signed prescriptions, their states.

A signed prescription is stored with the exact bytes the card signed (``signed_payload``,
when they are not ``canonical_bytes()``), in the transaction that also writes its outbox
row, its first print job and its audit entry (``appliance.services.signature.record_signature``).
``purge`` is the retention policy's: it removes old prescriptions with every row of the
other tables that refers to them, as a foreign key with ``ON DELETE CASCADE`` would.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable
from typing import cast

from appliance.domain.prescription import Prescription, State
from appliance.errors import StoreError
from appliance.ports.clock import iso, utc_now
from appliance.ports.uow import SignedRow
from appliance.store.db import SqlValue, Store, upsert_sql

_IN_CHUNK = 500  # bound parameters per query (SQLite allows 32,766 since 3.32)
_SIGNED_SQL = ("SELECT id, body, signature, signer_cert, signed_payload FROM prescriptions"
               " WHERE id IN ({})")
_COLUMNS = ("id", "state", "resident_ins", "prescriber_id", "created_at", "signed_at",
            "updated_at", "body", "cancel_reason", "signature", "signer_cert", "signed_payload")
_UPSERT = upsert_sql("prescriptions", _COLUMNS, "id")


def _row(p: Prescription, *, signature: bytes | None = None, signer_cert: bytes | None = None,
         signed_payload: bytes | None = None) -> list[SqlValue]:
    body = p.to_dict()
    return [p.id, p.state.value, p.resident.ins.value, p.prescriber.id_nat_ps,
            cast("str", body["created_at"]), cast("str | None", body["signed_at"]), iso(utc_now()),
            json.dumps(body, ensure_ascii=False), p.cancel_reason, signature, signer_cert,
            signed_payload]


_STATES = {s.value: s for s in State}  # a dictionary is cheaper than the enum's call


def _load(body: str) -> Prescription:
    return Prescription.from_dict(json.loads(body))


class PrescriptionsTable:
    def __init__(self, store: Store) -> None:
        self._store = store

    # -- reads ------------------------------------------------------------------------------
    def get(self, prescription_id: str) -> Prescription | None:
        body = self._store.one("SELECT body FROM prescriptions WHERE id = ?", [prescription_id])
        return None if body is None else _load(body)

    def state_of(self, prescription_id: str) -> State | None:
        value = self._store.one("SELECT state FROM prescriptions WHERE id = ?",
                                [prescription_id])
        return None if value is None else _STATES.get(value) or State(value)

    def drafts_of(self, id_nat_ps: str) -> list[Prescription]:
        return [_load(row[0]) for row in self._store.execute(
            "SELECT body FROM prescriptions WHERE state = 'draft' AND prescriber_id = ?"
            " ORDER BY updated_at DESC", [id_nat_ps])]

    def of_resident(self, ins: str) -> list[Prescription]:
        return [_load(row[0]) for row in self._store.execute(
            "SELECT body FROM prescriptions WHERE resident_ins = ? ORDER BY created_at DESC",
            [ins])]

    def signed_rows(self, prescription_ids: Iterable[str]) -> dict[str, SignedRow]:
        ids = list(dict.fromkeys(prescription_ids))
        rows: dict[str, SignedRow] = {}
        cursor = self._store.conn.cursor()
        cursor.row_factory = None  # plain tuples: a batch is read at every step of a drain
        for start in range(0, len(ids), _IN_CHUNK):
            chunk = ids[start:start + _IN_CHUNK]
            sql = _SIGNED_SQL.format(",".join("?" * len(chunk)))  # placeholders only
            try:
                found = cursor.execute(sql, chunk).fetchall()
            except sqlite3.Error as exc:
                raise self._store.failed(exc) from exc
            for pid, body, signature, cert, payload in found:
                rows[pid] = SignedRow(pid, body, _bytes(signature), _bytes(cert),
                                      _bytes(payload))
        return rows

    def cancel_reason(self, prescription_id: str) -> str:
        return self._store.one("SELECT cancel_reason FROM prescriptions WHERE id = ?",
                               [prescription_id]) or ""

    # -- writes -----------------------------------------------------------------------------
    def _refuse_unless_draft(self, p: Prescription) -> None:
        existing = self._store.one("SELECT state FROM prescriptions WHERE id = ?", [p.id])
        if existing is not None and existing != State.DRAFT.value:
            raise StoreError(f"prescription {p.id} is already {existing}")

    def save_draft(self, draft: Prescription) -> None:
        self._store.require_write("prescriptions")
        if draft.state is not State.DRAFT:
            raise StoreError(f"prescription {draft.id} is {draft.state.value}, not a draft")
        self._refuse_unless_draft(draft)
        self._store.execute(_UPSERT, _row(draft))

    def delete_draft(self, prescription_id: str) -> bool:
        self._store.require_write("prescriptions")
        return self._store.execute("DELETE FROM prescriptions WHERE id = ? AND state = 'draft'",
                                   [prescription_id]).rowcount > 0

    def add_signed(self, prescription: Prescription, *, signature: bytes, signer_cert: bytes,
                   signed_payload: bytes | None) -> None:
        self._store.require_write("prescriptions")
        if prescription.state is not State.SIGNED:
            raise StoreError(f"prescription {prescription.id} is "
                             f"{prescription.state.value}, not signed")
        self._refuse_unless_draft(prescription)
        self._store.execute(_UPSERT, _row(prescription, signature=signature,
                                          signer_cert=signer_cert,
                                          signed_payload=signed_payload))

    def save_state(self, prescription: Prescription) -> State:
        self._store.require_write("prescriptions")
        before = self.state_of(prescription.id)
        if before is None:
            raise StoreError(f"unknown prescription {prescription.id}")
        self._store.execute(
            "UPDATE prescriptions SET state = ?, body = ?, updated_at = ?, cancel_reason = ?"
            " WHERE id = ?", [prescription.state.value,
                              json.dumps(prescription.to_dict(), ensure_ascii=False),
                              iso(utc_now()), prescription.cancel_reason, prescription.id])
        return before

    def set_registry_receipt(self, prescription_id: str, receipt_id: str) -> None:
        self._store.require_write("prescriptions")
        self._store.execute("UPDATE prescriptions SET registry_receipt = ? WHERE id = ?",
                            [receipt_id, prescription_id])


def _bytes(value: bytes | None) -> bytes | None:
    return None if value is None else bytes(value)


# -- retention ---------------------------------------------------------------------------------
_SELECT_PRUNABLE = (
    "INSERT INTO temp._ordo_retention (id) SELECT p.id FROM prescriptions p"
    " WHERE p.state IN ({states})"
    " AND julianday(p.created_at) < julianday(?) AND julianday(p.updated_at) < julianday(?)"
    " AND NOT EXISTS (SELECT 1 FROM outbox o WHERE o.prescription_id = p.id"
    "                 AND o.status = 'pending')"
    " AND NOT EXISTS (SELECT 1 FROM print_jobs j WHERE j.prescription_id = p.id"
    "                 AND j.status = 'queued')"
)


def _referring(store: Store) -> list[tuple[str, str]]:
    """(table, column) pairs that refer to a prescription: a foreign key to
    ``prescriptions``, or a ``prescription_id`` column."""
    found = []
    tables = [row[0] for row in store.execute(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
        " AND name NOT IN ('prescriptions', 'audit') ORDER BY name")]
    for table in tables:
        columns = {row[1] for row in store.execute(f'PRAGMA table_info("{table}")')}
        refs = {row[3] for row in store.execute(f'PRAGMA foreign_key_list("{table}")')
                if row[2] == "prescriptions"}
        if "prescription_id" in columns:
            refs.add("prescription_id")
        found += [(table, column) for column in sorted(refs)]
    return found


def purge(store: Store, states: Iterable[State], before: str, *, dry_run: bool = False
          ) -> tuple[int, dict[str, int]]:
    """Delete (or with ``dry_run`` only count) the prescriptions in ``states`` created and
    last updated before ``before`` with nothing pending (outbox) or queued (printer), and
    the rows of the other tables that refer to them, in the caller's write transaction.
    Returns (prescriptions, rows per other table)."""
    store.require_write("prescriptions.purge")
    wanted = [s.value for s in states]
    store.execute("DROP TABLE IF EXISTS temp._ordo_retention")
    store.execute("CREATE TABLE temp._ordo_retention (id TEXT PRIMARY KEY)")
    try:
        store.execute(_SELECT_PRUNABLE.format(states=", ".join("?" * len(wanted))),
                      [*wanted, before, before])
        count = int(store.one("SELECT count(*) FROM temp._ordo_retention"))
        related: dict[str, int] = {}
        if not count:
            return 0, related
        for table, column in _referring(store):
            # Table and column names come from sqlite_master, never from input.
            where = f'"{column}" IN (SELECT id FROM temp._ordo_retention)'  # noqa: S608
            if dry_run:
                n = store.one(f'SELECT count(*) FROM "{table}" WHERE {where}')  # noqa: S608
            else:
                n = store.execute(f'DELETE FROM "{table}" WHERE {where}').rowcount  # noqa: S608
            related[table] = related.get(table, 0) + int(n)
        if not dry_run:
            store.execute("DELETE FROM prescriptions"
                          " WHERE id IN (SELECT id FROM temp._ordo_retention)")
        return count, related
    finally:
        store.execute("DROP TABLE IF EXISTS temp._ordo_retention")
