"""Owner of the ``dispensations`` table: what the pharmacies handed over, pulled back from
the registry. Each is kept once (by the registry's ID) with the registry's resource as
received; no foreign key, so that a dispensation for an unknown prescription (e.g. after
restoring an old backup) is kept rather than lost."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal

from appliance.domain import Json
from appliance.ports.clock import iso
from appliance.ports.registry import Dispensation
from appliance.store.db import SqlValue, Store

_INSERT = ("INSERT OR IGNORE INTO dispensations (registry_id, prescription_id, line_no,"
           " complete, product_label, product_system, product_code, quantity, unit,"
           " substituted, substitution_type, substitution_reason, pharmacy, handed_over_at,"
           " received_at, resource) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")


def dispensation(r: sqlite3.Row) -> Dispensation:
    """A stored row (``sqlite3.Row``) as the port's record."""
    return Dispensation(
        registry_id=r["registry_id"], prescription_id=r["prescription_id"], line=r["line_no"],
        complete=bool(r["complete"]), handed_over_at=datetime.fromisoformat(r["handed_over_at"]),
        product_label=r["product_label"], product_code=r["product_code"],
        product_system=r["product_system"],
        quantity=None if r["quantity"] is None else Decimal(r["quantity"]), unit=r["unit"],
        substituted=bool(r["substituted"]), substitution_type=r["substitution_type"],
        substitution_reason=r["substitution_reason"], pharmacy=r["pharmacy"])


def _text(value: SqlValue) -> SqlValue:
    """Text as SQLite can store it: the registry's JSON may carry lone surrogates
    (``"\\ud800"``), which are not UTF-8; they become ``?`` rather than losing the row."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return value.encode("utf-8", "replace").decode("utf-8")
    return value


class DispensationsTable:
    def __init__(self, store: Store) -> None:
        self._store = store

    def add(self, d: Dispensation, resource: Mapping[str, Json], received_at: datetime) -> bool:
        self._store.require_write("dispensations")
        return self._store.execute(_INSERT, [_text(value) for value in (
            d.registry_id, d.prescription_id, d.line, int(d.complete), d.product_label,
            d.product_system, d.product_code,
            None if d.quantity is None else format(d.quantity, "f"), d.unit,
            int(d.substituted), d.substitution_type, d.substitution_reason, d.pharmacy,
            iso(d.handed_over_at), iso(received_at),
            json.dumps(dict(resource), ensure_ascii=False))]).rowcount > 0

    def of(self, prescription_id: str) -> list[Dispensation]:
        return [dispensation(r) for r in self._store.execute(
            "SELECT * FROM dispensations WHERE prescription_id = ?"
            " ORDER BY handed_over_at, registry_id", [prescription_id])]

    def complete_lines(self, prescription_id: str) -> set[int]:
        return {row[0] for row in self._store.execute(
            "SELECT DISTINCT line_no FROM dispensations WHERE prescription_id = ?"
            " AND complete = 1", [prescription_id])}

    def count_for(self, prescription_id: str) -> int:
        return int(self._store.one("SELECT count(*) FROM dispensations"
                                   " WHERE prescription_id = ?", [prescription_id]))
