"""SQLite store: connection and pragmas, migrations, repositories, outbox, audit chain."""

from appliance.store.db import Store, open_store

__all__ = ["Store", "open_store"]
