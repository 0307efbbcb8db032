"""The retention policy: delete old prescriptions and old audit entries, and audit it.

Prescriptions (``[retention] prescriptions_years``): only those in a final state
(``dispensed``, ``cancelled``) or ``registered``, created *and* last changed before the
limit, with no registry message still pending and no print job still queued. Their rows
in every table that refers to them (a ``prescription_id`` column or a foreign key: the
outbox, print jobs, dispensations...) go with them, in the same transaction.

Audit entries (``[retention] audit_years``): the oldest entries, as a prefix of the chain
(up to the first entry younger than the limit; an older-looking entry after it is kept).
The chain stays verifiable: in the same transaction the first kept sequence number and
the hash it follows are stored in ``meta`` (``audit.anchor_seq`` / ``audit.anchor_prev``)
and ``audit.verify`` starts there. The append-only trigger ``audit_no_delete`` is dropped
and recreated from its own stored SQL inside that transaction, so no other connection
ever sees the table without it. Then an entry ``retention.applied`` records the counts
and the new anchor: ``ordo doctor`` checks that the anchor matches such an entry.

The deletion runs with ``PRAGMA secure_delete`` so that deleted health data is
overwritten in the file, and the WAL is checkpointed afterwards.
"""

from __future__ import annotations

import logging
import sqlite3
from dataclasses import dataclass, field
from datetime import UTC, datetime

from appliance.config import Retention
from appliance.domain.prescription import State
from appliance.store import audit
from appliance.store.db import Store

log = logging.getLogger(__name__)

PRUNABLE_STATES = (State.DISPENSED.value, State.CANCELLED.value, State.REGISTERED.value)
AUDIT_TRIGGER = "audit_no_delete"
ACTION = audit.RETENTION_ACTION


@dataclass
class RetentionReport:
    prescriptions_before: str
    audit_before: str
    prescriptions: int = 0
    related_rows: dict[str, int] = field(default_factory=dict)
    audit_entries: int = 0
    anchor_seq: int | None = None
    dry_run: bool = False
    audit_seq: int | None = None

    @property
    def changed(self) -> bool:
        return bool(self.prescriptions or self.audit_entries)

    def summary(self) -> str:
        verb = "would delete" if self.dry_run else "deleted"
        related = ", ".join(f"{n} {t}" for t, n in sorted(self.related_rows.items()) if n)
        return (f"{verb} {self.prescriptions} prescription(s) older than "
                f"{self.prescriptions_before[:10]}"
                + (f" (with {related})" if related else "")
                + f" and {self.audit_entries} audit entr"
                + ("y" if self.audit_entries == 1 else "ies")
                + f" older than {self.audit_before[:10]}")


def years_ago(moment: datetime, years: int) -> datetime:
    """The same calendar day ``years`` earlier (29 February becomes the 28th)."""
    try:
        return moment.replace(year=moment.year - years)
    except ValueError:
        return moment.replace(year=moment.year - years, day=28)


def _related_tables(conn: sqlite3.Connection) -> list[tuple[str, str]]:
    """(table, column) pairs that refer to a prescription."""
    found = []
    tables = [row[0] for row in conn.execute(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
        " AND name NOT IN ('prescriptions', 'audit') ORDER BY name")]
    for table in tables:
        columns = {row[1] for row in conn.execute(f'PRAGMA table_info("{table}")')}
        refs = {row[3] for row in conn.execute(f'PRAGMA foreign_key_list("{table}")')
                if row[2] == "prescriptions"}
        if "prescription_id" in columns:
            refs.add("prescription_id")
        found += [(table, column) for column in sorted(refs)]
    return found


def _meta(conn: sqlite3.Connection, key: str) -> str | None:
    row = conn.execute("SELECT value FROM meta WHERE key = ?", [key]).fetchone()
    return row[0] if row else None


def run_retention(store: Store, policy: Retention, *, now: datetime | None = None,
                  dry_run: bool = False, actor: str = "system:retention") -> RetentionReport:
    """Apply the policy in one write transaction (or only count, with ``dry_run``)."""
    now = (now or datetime.now(UTC)).astimezone(UTC)
    p_cutoff = years_ago(now, policy.prescriptions_years).isoformat(timespec="seconds")
    a_cutoff = years_ago(now, policy.audit_years).isoformat(timespec="seconds")
    report = RetentionReport(p_cutoff, a_cutoff, dry_run=dry_run)
    conn = store.conn
    previous_secure = conn.execute("PRAGMA secure_delete").fetchone()[0]
    conn.execute("PRAGMA secure_delete = ON")
    try:
        with store.write() as db:
            _prune_prescriptions(conn, p_cutoff, report)
            _prune_audit(conn, a_cutoff, report)
            if dry_run:
                conn.execute("DROP TABLE IF EXISTS temp._ordo_retention")
                raise _DryRun
            if report.changed:
                anchor = _meta(conn, audit.ANCHOR_SEQ)
                report.audit_seq = audit.append(db, actor=actor, action=ACTION, details={
                    "prescriptions": report.prescriptions,
                    "related_rows": report.related_rows,
                    "audit_entries": report.audit_entries,
                    "prescriptions_before": p_cutoff, "audit_before": a_cutoff,
                    "anchor_seq": int(anchor) if anchor else None,
                    "anchor_prev": _meta(conn, audit.ANCHOR_PREV),
                })
            conn.execute("DROP TABLE IF EXISTS temp._ordo_retention")
    except _DryRun:
        pass
    finally:
        conn.execute(f"PRAGMA secure_delete = {int(previous_secure)}")
    if report.changed and not dry_run:
        conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
    log.info("retention applied" if not dry_run else "retention dry run", extra={"fields": {
        "prescriptions": report.prescriptions, "audit_entries": report.audit_entries,
        "prescriptions_before": p_cutoff, "audit_before": a_cutoff, "dry_run": dry_run}})
    return report


class _DryRun(Exception):
    """Rolls the dry run's transaction back."""


_SELECT_PRUNABLE = (
    "INSERT INTO temp._ordo_retention (id) SELECT p.id FROM prescriptions p"
    " WHERE p.state IN (?, ?, ?)"
    " AND julianday(p.created_at) < julianday(?) AND julianday(p.updated_at) < julianday(?)"
    " AND NOT EXISTS (SELECT 1 FROM outbox o WHERE o.prescription_id = p.id"
    "                 AND o.status = 'pending')"
    " AND NOT EXISTS (SELECT 1 FROM print_jobs j WHERE j.prescription_id = p.id"
    "                 AND j.status = 'queued')"
)


def _prune_prescriptions(conn: sqlite3.Connection, cutoff: str, report: RetentionReport) -> None:
    conn.execute("CREATE TABLE temp._ordo_retention (id TEXT PRIMARY KEY)")
    conn.execute(_SELECT_PRUNABLE, [*PRUNABLE_STATES, cutoff, cutoff])
    report.prescriptions = conn.execute(
        "SELECT count(*) FROM temp._ordo_retention").fetchone()[0]
    if not report.prescriptions:
        return
    for table, column in _related_tables(conn):
        # Table and column names come from sqlite_master, never from input.
        where = f'"{column}" IN (SELECT id FROM temp._ordo_retention)'  # noqa: S608
        if report.dry_run:
            sql = f'SELECT count(*) FROM "{table}" WHERE {where}'  # noqa: S608
            count = conn.execute(sql).fetchone()[0]
        else:
            count = conn.execute(f'DELETE FROM "{table}" WHERE {where}').rowcount  # noqa: S608
        report.related_rows[table] = report.related_rows.get(table, 0) + count
    if not report.dry_run:
        conn.execute("DELETE FROM prescriptions WHERE id IN (SELECT id FROM temp._ordo_retention)")


def _prune_audit(conn: sqlite3.Connection, cutoff: str, report: RetentionReport) -> None:
    head_seq = int(_meta(conn, "audit.count") or 0)
    start = int(_meta(conn, audit.ANCHOR_SEQ) or 1)
    first_young = conn.execute("SELECT min(seq) FROM audit WHERE julianday(at) >= julianday(?)",
                               [cutoff]).fetchone()[0]
    first_kept = head_seq + 1 if first_young is None else int(first_young)
    report.audit_entries = conn.execute("SELECT count(*) FROM audit WHERE seq < ?",
                                        [first_kept]).fetchone()[0]
    if not report.audit_entries or first_kept <= start:
        report.audit_entries = 0
        return
    if first_young is None:
        prev = _meta(conn, "audit.head") or audit.GENESIS
    else:
        prev = conn.execute("SELECT prev_hash FROM audit WHERE seq = ?",
                            [first_kept]).fetchone()[0]
    report.anchor_seq = first_kept
    if report.dry_run:
        return
    trigger = conn.execute("SELECT sql FROM sqlite_master WHERE type = 'trigger' AND name = ?",
                           [AUDIT_TRIGGER]).fetchone()
    if trigger is not None:
        conn.execute(f"DROP TRIGGER {AUDIT_TRIGGER}")
    conn.execute("DELETE FROM audit WHERE seq < ?", [first_kept])
    if trigger is not None:
        conn.execute(trigger[0])
    conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?), (?, ?)",
                 [audit.ANCHOR_SEQ, str(first_kept), audit.ANCHOR_PREV, prev])
