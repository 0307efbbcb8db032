"""A light write block (``uow.light()``, the print job lease): committed and seen by every
connection like any other, with ``synchronous = NORMAL`` for its own commit only (not synced
to disk: a power failure may undo it, a crash of the process cannot); every other block
stays ``FULL``."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from appliance.errors import StoreError
from appliance.store.uow import SqliteUnitOfWork

pytestmark = pytest.mark.integration
NOW = datetime(2026, 12, 3, 9, 0, tzinfo=UTC)
FULL, NORMAL = 2, 1


def test_a_light_block_commits_without_sync_and_leaves_the_connection_durable(tmp_path):
    path = tmp_path / "ordo.db"
    uow = SqliteUnitOfWork.open(path, migrate=True)
    other = SqliteUnitOfWork.open(path)
    try:
        assert uow.store.one("PRAGMA synchronous") == FULL
        uow.store.execute("PRAGMA foreign_keys = OFF")  # a job without its prescription
        with uow:
            job = uow.print_jobs.add("01KAX5JDE0000G40R40M30EH", "original", "x", NOW)
            uow.commit()
        with uow.light():
            assert uow.store.one("PRAGMA synchronous") == NORMAL
            claimed = uow.print_jobs.claim("worker-1", NOW, NOW + timedelta(minutes=2))
            uow.commit()
        assert claimed is not None and claimed.id == job
        assert uow.store.one("PRAGMA synchronous") == FULL
        assert other.store.one("SELECT claimed_by FROM print_jobs WHERE id = ?",
                               [job]) == "worker-1"
        with uow.light():  # left without a commit: nothing written, still durable after
            uow.print_jobs.release(job, "x")
        assert uow.store.one("PRAGMA synchronous") == FULL
        assert other.store.one("SELECT claimed_by FROM print_jobs WHERE id = ?",
                               [job]) == "worker-1"
        with uow, pytest.raises(StoreError), uow.light():
            pass
        assert uow.store.one("PRAGMA synchronous") == FULL
    finally:
        other.close()
        uow.close()
