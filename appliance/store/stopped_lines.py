"""Owner of the ``stopped_lines`` table (migration m010): signed lines taken out of a
resident's treatment before their end (stopped by a physician, or replaced by a signed
renewal), read back by ``appliance.store.views.StoreViews``."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from appliance.ports.clock import iso
from appliance.ports.uow import StoppedLine
from appliance.store.db import Store

_INSERT = ("INSERT INTO stopped_lines (prescription_id, line, reason, stopped_at, stopped_by,"
           " replaced_by) VALUES (?, ?, ?, ?, ?, ?)"
           " ON CONFLICT (prescription_id, line) DO NOTHING")
_REMOVE = ("DELETE FROM stopped_lines WHERE prescription_id = ? AND line = ?"
           " AND replaced_by IS NULL")
SELECT_SQL = ("SELECT prescription_id, line, reason, stopped_at, stopped_by, replaced_by"
              " FROM stopped_lines")


def stopped_line(row: tuple[Any, ...]) -> StoppedLine:  # sqlite3 values are Any
    pid, line, reason, at, by, replaced_by = row
    return StoppedLine(pid, int(line), reason, datetime.fromisoformat(at), by, replaced_by)


class StoppedLinesTable:
    def __init__(self, store: Store) -> None:
        self._store = store

    def add(self, stopped: StoppedLine) -> bool:
        self._store.require_write("stopped_lines")
        cursor = self._store.execute(_INSERT, [
            stopped.prescription_id, stopped.line, stopped.reason, iso(stopped.stopped_at),
            stopped.stopped_by, stopped.replaced_by])
        return bool(cursor.rowcount)

    def of(self, prescription_id: str) -> list[StoppedLine]:
        rows = self._store.execute(SELECT_SQL + " WHERE prescription_id = ? ORDER BY line",
                                   [prescription_id]).fetchall()
        return [stopped_line(tuple(r)) for r in rows]

    def remove(self, prescription_id: str, line: int) -> bool:
        self._store.require_write("stopped_lines")
        return bool(self._store.execute(_REMOVE, [prescription_id, line]).rowcount)
