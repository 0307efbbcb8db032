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
and ``audit.verify`` starts there (``appliance.store.audit.prune``; the prescriptions go
through ``appliance.store.prescriptions.purge``). The append-only trigger
``audit_no_delete`` is dropped and recreated from its own stored SQL inside that
transaction, so no other connection ever sees the table without it. Then an entry
``retention.applied`` records the counts and the new anchor: ``ordo doctor`` checks that
the anchor matches such an entry.

The deletion runs with ``PRAGMA secure_delete`` so that deleted health data is
overwritten in the file, and the WAL is checkpointed afterwards.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime

from appliance.config import Retention
from appliance.domain.prescription import State
from appliance.store import audit, prescriptions
from appliance.store.db import Store

log = logging.getLogger(__name__)

PRUNABLE_STATES = (State.DISPENSED, State.CANCELLED, State.REGISTERED)
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


def run_retention(store: Store, policy: Retention, *, now: datetime | None = None,
                  dry_run: bool = False, actor: str = "system:retention") -> RetentionReport:
    """Apply the policy in one write transaction (or only count, with ``dry_run``)."""
    now = (now or datetime.now(UTC)).astimezone(UTC)
    p_cutoff = years_ago(now, policy.prescriptions_years).isoformat(timespec="seconds")
    a_cutoff = years_ago(now, policy.audit_years).isoformat(timespec="seconds")
    report = RetentionReport(p_cutoff, a_cutoff, dry_run=dry_run)
    previous_secure = store.one("PRAGMA secure_delete")
    store.execute("PRAGMA secure_delete = ON")
    try:
        store.begin()
        try:
            report.prescriptions, report.related_rows = prescriptions.purge(
                store, PRUNABLE_STATES, p_cutoff, dry_run=dry_run)
            count, first_kept, prev = audit.prunable(store, a_cutoff)
            report.audit_entries = count
            if count:
                report.anchor_seq = first_kept
                if not dry_run:
                    audit.prune(store, first_kept, prev)
            if report.changed and not dry_run:
                anchor_seq, anchor_prev = audit.anchor(store)
                report.audit_seq = audit.append(store, actor=actor, action=ACTION, details={
                    "prescriptions": report.prescriptions,
                    "related_rows": report.related_rows,
                    "audit_entries": report.audit_entries,
                    "prescriptions_before": p_cutoff, "audit_before": a_cutoff,
                    "anchor_seq": anchor_seq, "anchor_prev": anchor_prev,
                })
        except BaseException:
            store.rollback()
            raise
        if dry_run:
            store.rollback()
        else:
            store.commit()
    finally:
        store.execute(f"PRAGMA secure_delete = {int(previous_secure)}")
    if report.changed and not dry_run:
        store.execute("PRAGMA wal_checkpoint(PASSIVE)")
    log.info("retention applied" if not dry_run else "retention dry run", extra={"fields": {
        "prescriptions": report.prescriptions, "audit_entries": report.audit_entries,
        "prescriptions_before": p_cutoff, "audit_before": a_cutoff, "dry_run": dry_run}})
    return report
