"""The appliance's health figures: computed here once, read by ``ordo doctor`` (its
``backup`` and ``referential`` checks) and by the Prometheus endpoint (``ops.metrics``).

Every figure is a count, an age or a state; none carries a resident, a practitioner or a
prescription. What the sync queue says comes from the read model ``ordo sync status`` and
the kiosk's status line use (``Views.sync_status``); the devices are asked with the
doctor's probes (``ops.probes``).

Something that never happened (no backup yet, no anchor at the registry, no referential)
is infinitely old: its age is ``math.inf``, so that one threshold ("older than 36 h")
covers "never" too.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from appliance.ops import probes
from appliance.ops.backup import BACKUP_SUBDIR, latest_backup
from appliance.ports.uow import SyncKeys, UnitOfWork

NEVER = math.inf


@dataclass(frozen=True)
class QueueFigures:
    """The registry queue and link, as the sync service left them in the store."""

    pending: int
    oldest_pending_age_s: float   # 0 when nothing waits
    quarantined: int
    last_success_at: datetime | None
    link: str | None              # up, down, misconfigured; None before the first exchange
    print_queued: int
    print_failed: int
    anchor_age_s: float           # since the registry received the last audit anchor
    unanchored_entries: int       # audit entries written since that anchor


def queue_figures(uow: UnitOfWork, now: datetime) -> QueueFigures:
    """A few cheap reads of the store (one read transaction for the queue)."""
    status = uow.views.sync_status(now)
    prints = uow.print_jobs.counts()
    head_seq, _ = uow.audit.head()
    anchored_seq = uow.meta.get(SyncKeys.ANCHOR_SEQ)
    anchored_at = _parse_time(uow.meta.get(SyncKeys.ANCHOR_AT))
    anchor_age = NEVER if anchored_at is None else max((now - anchored_at).total_seconds(), 0.0)
    anchored = int(anchored_seq) if anchored_seq and anchored_seq.isdigit() else 0
    return QueueFigures(
        pending=status.queue_depth, oldest_pending_age_s=status.oldest_pending_age_s or 0.0,
        quarantined=status.quarantined, last_success_at=_parse_time(status.last_success_at),
        link=status.link, print_queued=prints.get("queued", 0),
        print_failed=prints.get("failed", 0), anchor_age_s=anchor_age,
        unanchored_entries=max(head_seq - anchored, 0))


def _parse_time(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


@dataclass(frozen=True)
class BackupAge:
    newest: Path
    age_s: float


def backup_age(data_dir: Path, now: datetime) -> BackupAge | None:
    """The newest backup in ``<data_dir>/backups`` and its age (by its file's time);
    ``None`` when there is none."""
    newest = latest_backup(data_dir / BACKUP_SUBDIR)
    if newest is None:
        return None
    made = datetime.fromtimestamp(newest.stat().st_mtime, UTC)
    return BackupAge(newest, (now - made).total_seconds())


@dataclass(frozen=True)
class ReferentialAge:
    found: probes.ReferentialDate
    days: int


def referential_age(data_dir: Path, now: datetime) -> ReferentialAge | None:
    """The drug referential's data date and its age in days; ``None`` without one."""
    found = probes.referential_date(data_dir / probes.REFERENTIAL_FILE)
    if found is None:
        return None
    return ReferentialAge(found, (now.date() - found.day).days)


@dataclass(frozen=True)
class PrinterFigures:
    up: bool
    paper: str | None  # ok, near_end, out; None when the printer cannot tell or is down


def printer_figures(uri: str, timeout: float) -> PrinterFigures:
    """Ask the printer of ``[printer] uri`` for its paper sensor (the doctor's probe); a
    printer that does not answer is down."""
    from appliance.errors import PrinterError

    try:
        status = probes.printer_status(uri, timeout)
    except PrinterError:
        return PrinterFigures(False, None)
    return PrinterFigures(True, None if status.paper == "unknown" else status.paper)


def card_readers() -> int:
    """How many card readers pcscd sees (0 when pcscd does not answer)."""
    from appliance.errors import CardError

    try:
        return len(probes.pcsc_readers())
    except CardError:
        return 0
