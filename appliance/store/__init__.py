"""SQLite store: the connection and its pragmas (``db``), the migrations, one owner module per
table (``residents``, ``practitioners``, ``prescriptions``, ``outbox``, ``print_jobs``,
``meta``, ``audit``, ``dispensations``), the read models of the screens (``views``), and the
unit of work that gathers them (``uow.SqliteUnitOfWork``). The drug referential has its own
file (``referential``)."""

from appliance.store.db import Store, open_store

__all__ = ["Store", "open_store"]
