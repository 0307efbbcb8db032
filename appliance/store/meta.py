"""Owner of the ``meta`` table: small named values.

The prescription-ID generator's floor (``prescription_id.last_ms``), the audit chain's head
and anchor (``audit.*``, written by ``appliance.store.audit`` through these functions), the
sync bookkeeping (``sync.*``), the editor's half-typed lines (``kiosk.form.<id>``) and the
lines a draft renews (``renewal.<id>``).
"""

from __future__ import annotations

from appliance.store.db import Store

# The floor of the prescription-ID generator's ``last_ms``: kept by the prescribing service
# and raised by a restore, so IDs stay monotonic across both.
ID_FLOOR_KEY = "prescription_id.last_ms"


def get(store: Store, key: str, default: str | None = None) -> str | None:
    value = store.one("SELECT value FROM meta WHERE key = ?", [key])
    return default if value is None else str(value)


def with_prefix(store: Store, prefix: str) -> dict[str, str]:
    escaped = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return {row["key"]: row["value"] for row in store.query(
        "SELECT key, value FROM meta WHERE key LIKE ? ESCAPE '\\'", [escaped + "%"])}


_PUT = {1: "INSERT INTO meta (key, value) VALUES (?, ?)"
           " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        2: "INSERT INTO meta (key, value) VALUES (?, ?), (?, ?)"
           " ON CONFLICT (key) DO UPDATE SET value = excluded.value"}


def put(store: Store, *pairs: tuple[str, str]) -> None:
    """Set one or two keys in one statement, in the caller's write transaction."""
    store.require_write("meta")
    store.execute(_PUT[len(pairs)], [item for pair in pairs for item in pair])


def delete(store: Store, key: str) -> None:
    store.require_write("meta")
    store.execute("DELETE FROM meta WHERE key = ?", [key])


class MetaTable:
    """The ``Meta`` repository of a unit of work."""

    def __init__(self, store: Store) -> None:
        self._store = store

    def get(self, key: str) -> str | None:
        return get(self._store, key)

    def with_prefix(self, prefix: str) -> dict[str, str]:
        return with_prefix(self._store, prefix)

    def set(self, key: str, value: str) -> None:
        put(self._store, (key, value))

    def delete(self, key: str) -> None:
        delete(self._store, key)
