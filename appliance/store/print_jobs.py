"""Owner of the ``print_jobs`` table: the print queue.

A job is leased (``claimed_by``, ``claimed_until``) so that two workers (the kiosk and
``ordo print pending``) never send the same job at once; the lease expires if a worker dies
mid-job.
"""

from __future__ import annotations

import sqlite3
from datetime import datetime

from appliance.ports.clock import iso, parse_iso
from appliance.ports.uow import PrintJob
from appliance.store.db import Store

_FIELDS = ("id, prescription_id, kind, requested_by, created_at, status, attempts,"
           " last_error, done_at")


def _job(row: sqlite3.Row) -> PrintJob:
    created = parse_iso(row[4])
    assert created is not None
    return PrintJob(id=row[0], prescription_id=row[1], kind=row[2], requested_by=row[3],
                    created_at=created, status=row[5], attempts=row[6], last_error=row[7],
                    done_at=parse_iso(row[8]))


class PrintJobsTable:
    def __init__(self, store: Store) -> None:
        self._store = store

    def add(self, prescription_id: str, kind: str, requested_by: str, at: datetime) -> int:
        self._store.require_write("print_jobs")
        cursor = self._store.execute(
            "INSERT INTO print_jobs (prescription_id, kind, requested_by, created_at)"
            " VALUES (?, ?, ?, ?)", [prescription_id, kind, requested_by, iso(at)])
        return int(cursor.lastrowid or 0)

    def get(self, job_id: int) -> PrintJob | None:
        row = self._store.execute(f"SELECT {_FIELDS} FROM print_jobs WHERE id = ?",  # noqa: S608
                                  [job_id]).fetchone()
        return None if row is None else _job(row)

    def list(self, prescription_id: str | None = None,
             status: str | None = None) -> list[PrintJob]:
        sql, params = f"SELECT {_FIELDS} FROM print_jobs WHERE 1 = 1", []  # noqa: S608
        if prescription_id is not None:
            sql += " AND prescription_id = ?"
            params.append(prescription_id)
        if status is not None:
            sql += " AND status = ?"
            params.append(status)
        return [_job(row) for row in self._store.execute(sql + " ORDER BY id", params)]

    def counts(self) -> dict[str, int]:
        return {row[0]: row[1] for row in self._store.execute(
            "SELECT status, count(*) FROM print_jobs GROUP BY status")}

    def claim(self, worker: str, now: datetime, until: datetime) -> PrintJob | None:
        self._store.require_write("print_jobs")
        job_id = self._store.one(
            "SELECT id FROM print_jobs WHERE status = 'queued'"
            " AND (claimed_until IS NULL OR claimed_until < ?) ORDER BY id LIMIT 1",
            [iso(now)])
        if job_id is None:
            return None
        self._store.execute("UPDATE print_jobs SET claimed_by = ?, claimed_until = ?"
                            " WHERE id = ?", [worker, iso(until), job_id])
        return self.get(job_id)

    def release(self, job_id: int, error: str) -> None:
        self._store.require_write("print_jobs")
        self._store.execute("UPDATE print_jobs SET attempts = attempts + 1, last_error = ?,"
                            " claimed_by = NULL, claimed_until = NULL WHERE id = ?",
                            [error, job_id])

    def done(self, job_id: int, at: datetime) -> None:
        self._store.require_write("print_jobs")
        self._store.execute("UPDATE print_jobs SET status = 'done', attempts = attempts + 1,"
                            " last_error = NULL, done_at = ?, claimed_by = NULL,"
                            " claimed_until = NULL WHERE id = ?", [iso(at), job_id])

    def fail(self, job_id: int, error: str) -> None:
        self._store.require_write("print_jobs")
        self._store.execute("UPDATE print_jobs SET status = 'failed', attempts = attempts + 1,"
                            " last_error = ?, claimed_by = NULL, claimed_until = NULL"
                            " WHERE id = ?", [error, job_id])

    def drop_queued(self, prescription_id: str, reason: str) -> int:
        self._store.require_write("print_jobs")
        return self._store.execute(
            "UPDATE print_jobs SET status = 'failed', last_error = ?, claimed_by = NULL,"
            " claimed_until = NULL WHERE prescription_id = ? AND status = 'queued'",
            [reason, prescription_id]).rowcount
