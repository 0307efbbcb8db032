"""Residents' allergies and intolerances (table ``allergies``, migration m006).

One row per resident and substance: adding a substance already recorded keeps the first
record (its date and source) and reports it as not added.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import TYPE_CHECKING

from appliance.domain.drug_facts import Allergy
from appliance.store.db import Store

if TYPE_CHECKING:
    import sqlite_utils


def add(db: sqlite_utils.Database, *, ins: str, allergy: Allergy, recorded_by: str) -> int | None:
    """Record an allergy in the caller's write transaction; its id, or None when the
    resident already has this substance recorded."""
    cursor = db.execute(
        "INSERT INTO allergies (resident_ins, substance_code, substance, recorded_on, source,"
        " recorded_by, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)"
        " ON CONFLICT (resident_ins, substance_code) DO NOTHING",
        [ins, allergy.substance_code, allergy.substance, allergy.recorded_on.isoformat(),
         allergy.source, recorded_by, datetime.now(UTC).isoformat(timespec="seconds")])
    return cursor.lastrowid if cursor.rowcount else None


def of_resident(store: Store, ins: str) -> list[Allergy]:
    """The resident's allergies, oldest record first."""
    rows = store.conn.execute(
        "SELECT id, substance_code, substance, recorded_on, source FROM allergies"
        " WHERE resident_ins = ? ORDER BY recorded_on, id", (ins,)).fetchall()
    return [Allergy(substance_code=r[1], substance=r[2], recorded_on=date.fromisoformat(r[3]),
                    source=r[4], id=r[0]) for r in rows]
