"""Owner of the ``allergies`` table (migration m008): residents' allergies and intolerances.

One row per resident and substance: adding a substance already recorded keeps the first
record (its date and source) and reports it as not added.
"""

from __future__ import annotations

from datetime import date

from appliance.domain.drug_facts import Allergy
from appliance.ports.clock import iso, utc_now
from appliance.store.db import Store

_INSERT = ("INSERT INTO allergies (resident_ins, substance_code, substance, recorded_on,"
           " source, recorded_by, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)"
           " ON CONFLICT (resident_ins, substance_code) DO NOTHING")


class AllergiesTable:
    def __init__(self, store: Store) -> None:
        self._store = store

    def add(self, ins: str, allergy: Allergy, *, recorded_by: str) -> int | None:
        """Record an allergy in the caller's write transaction; its id, or None when the
        resident already has this substance recorded."""
        self._store.require_write("allergies")
        cursor = self._store.execute(_INSERT, [
            ins, allergy.substance_code, allergy.substance, allergy.recorded_on.isoformat(),
            allergy.source, recorded_by, iso(utc_now())])
        return cursor.lastrowid if cursor.rowcount else None

    def of_resident(self, ins: str) -> list[Allergy]:
        """The resident's allergies, oldest record first."""
        rows = self._store.execute(
            "SELECT id, substance_code, substance, recorded_on, source FROM allergies"
            " WHERE resident_ins = ? ORDER BY recorded_on, id", [ins]).fetchall()
        return [Allergy(substance_code=r[1], substance=r[2],
                        recorded_on=date.fromisoformat(r[3]), source=r[4], id=r[0])
                for r in rows]
