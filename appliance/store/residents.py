"""Owner of the ``residents`` table (upsert by INS; search by name or room)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date
from typing import Any

from appliance.domain.ids import Ins
from appliance.domain.people import Resident, Sex, fold
from appliance.ports.clock import iso, utc_now
from appliance.store.db import Store, upsert_sql

_COLUMNS = ("ins", "ins_oid", "birth_name", "used_name", "first_names", "birth_date", "sex",
            "room", "objection", "active", "search_key", "updated_at")
_UPSERT = upsert_sql("residents", _COLUMNS, "ins")


def _row(r: Resident, now: str) -> list[Any]:
    return [r.ins.value, r.ins.oid, r.birth_name, r.used_name, r.first_names,
            r.birth_date.isoformat(), r.sex.value, r.room, int(r.objection), int(r.active),
            r.search_key, now]


def _resident(row: Any) -> Resident:
    return Resident(
        ins=Ins(row["ins"], row["ins_oid"]), birth_name=row["birth_name"],
        used_name=row["used_name"], first_names=row["first_names"],
        birth_date=date.fromisoformat(row["birth_date"]), sex=Sex(row["sex"]), room=row["room"],
        objection=bool(row["objection"]), active=bool(row["active"]))


class ResidentsTable:
    def __init__(self, store: Store) -> None:
        self._store = store

    def get(self, ins: str) -> Resident | None:
        row = self._store.execute("SELECT * FROM residents WHERE ins = ?", [ins]).fetchone()
        return None if row is None else _resident(row)

    def search(self, query: str = "", active_only: bool = True) -> list[Resident]:
        sql = "SELECT * FROM residents WHERE (? = 0 OR active = 1)"
        params: list[Any] = [int(active_only)]
        for word in fold(query).split():
            sql += " AND search_key LIKE ? ESCAPE '\\'"
            params.append("%" + word.replace("\\", "\\\\").replace("%", "\\%")
                          .replace("_", "\\_") + "%")
        sql += " ORDER BY coalesce(used_name, birth_name), first_names"
        return [_resident(row) for row in self._store.execute(sql, params)]

    def upsert(self, residents: Iterable[Resident]) -> tuple[int, int]:
        store = self._store
        store.require_write("residents")
        created = updated = 0
        now = iso(utc_now())
        for resident in residents:
            exists = store.one("SELECT 1 FROM residents WHERE ins = ?", [resident.ins.value])
            store.execute(_UPSERT, _row(resident, now))
            if exists:
                updated += 1
            else:
                created += 1
        return created, updated
