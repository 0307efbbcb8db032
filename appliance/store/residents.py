"""Owner of the ``residents`` table (upsert by INS; search by name or room).

An upsert is one ``INSERT … ON CONFLICT`` statement run over a stream of rows
(``executemany``): an import of a million residents holds one row at a time, and the count
of rows before and after (under the unit of work's write lock) tells the created from the
updated. ``import_lines`` also finds an INS given twice in one file through a temporary
table, not a dictionary of every INS.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterable, Iterator
from datetime import date

from appliance.domain.ids import Ins
from appliance.domain.people import Resident, Sex, fold
from appliance.ports.clock import iso, utc_now
from appliance.store.db import SqlValue, Store, upsert_sql

_COLUMNS = ("ins", "ins_oid", "birth_name", "used_name", "first_names", "birth_date", "sex",
            "room", "objection", "active", "search_key", "updated_at")
_UPSERT = upsert_sql("residents", _COLUMNS, "ins")
_COUNT = "SELECT count(*) FROM residents"


def _row(r: Resident, now: str) -> list[SqlValue]:
    return [r.ins.value, r.ins.oid, r.birth_name, r.used_name, r.first_names,
            r.birth_date.isoformat(), r.sex.value, r.room, int(r.objection), int(r.active),
            r.search_key, now]


def _resident(row: sqlite3.Row) -> Resident:
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
        params: list[SqlValue] = [int(active_only)]
        for word in fold(query).split():
            sql += " AND search_key LIKE ? ESCAPE '\\'"
            params.append("%" + word.replace("\\", "\\\\").replace("%", "\\%")
                          .replace("_", "\\_") + "%")
        sql += " ORDER BY coalesce(used_name, birth_name), first_names"
        return [_resident(row) for row in self._store.execute(sql, params)]

    def born_on(self, birth_date: date) -> list[Resident]:
        return [_resident(row) for row in self._store.execute(
            "SELECT * FROM residents WHERE birth_date = ? ORDER BY ins",
            [birth_date.isoformat()])]

    def upsert(self, residents: Iterable[Resident]) -> tuple[int, int]:
        store = self._store
        conn = store.require_write("residents")
        now = iso(utc_now())
        rows = 0

        def values() -> Iterator[list[SqlValue]]:
            nonlocal rows
            for resident in residents:
                rows += 1
                yield _row(resident, now)

        before = store.one(_COUNT)
        try:
            conn.executemany(_UPSERT, values())
        except sqlite3.Error as exc:
            raise store.failed(exc, "residents") from exc
        created = store.one(_COUNT) - before
        return created, rows - created

    def import_lines(self, rows: Iterable[tuple[int, Resident]],
                     duplicate: Callable[[int, int], None]) -> tuple[int, int]:
        store = self._store
        store.require_write("residents")
        store.execute("CREATE TEMP TABLE IF NOT EXISTS _residents_import"
                      " (ins TEXT PRIMARY KEY, line INTEGER NOT NULL)")
        store.execute("DELETE FROM temp._residents_import")

        def first_seen() -> Iterator[Resident]:
            for line, resident in rows:
                cursor = store.execute("INSERT OR IGNORE INTO temp._residents_import"
                                       " VALUES (?, ?)", [resident.ins.value, line])
                if cursor.rowcount:
                    yield resident
                else:
                    duplicate(line, store.one("SELECT line FROM temp._residents_import"
                                              " WHERE ins = ?", [resident.ins.value]))

        try:
            return self.upsert(first_seen())
        finally:
            store.execute("DROP TABLE IF EXISTS temp._residents_import")
