"""``ordo sync run``: the sync service, one APScheduler 3 scheduler in one dedicated process.

One job, ``sync``, on an interval trigger (``tick_s``, a few seconds) with
``max_instances=1`` and ``coalesce=True``: ticks never overlap and missed ones fold into
one. Each tick does what is due:

- **push** whenever the outbox is not empty: the engine drains it (the sync use case,
  ``appliance.services.sync``, given by the composition root);
  when the registry cannot be reached the service holds off for a full-jitter backoff
  (``tick_s`` doubling up to ``[sync] backoff_cap_s``) before trying again;
- **pull** the dispensations every ``pull_every_s`` (ten times ``[sync] interval_s``:
  five minutes by default);
- **housekeeping** every hour: a passive WAL checkpoint and ``PRAGMA optimize``.

systemd: ``READY=1`` once the scheduler runs, ``WATCHDOG=1`` while the sync job shows signs
of life, ``STATUS=`` with the queue, ``STOPPING=1`` on SIGTERM; a stop waits for the current
record and its transaction, never more. A lock file (``flock``) keeps a single sync process
per data directory: ``ordo sync once`` refuses to run beside the service.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import random
import signal
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, Protocol

from apscheduler.schedulers.background import BackgroundScheduler

from appliance.domain.backoff import service_backoff
from appliance.errors import StoreError, SyncAlreadyRunning
from appliance.ports.uow import UnitOfWork
from sync import sdnotify

log = logging.getLogger(__name__)

TICK_S = 5.0
PULL_FACTOR = 10
HOUSEKEEPING_S = 3600.0
LOCK_NAME = "sync.lock"


@contextlib.contextmanager
def single_instance(data_dir: Path) -> Iterator[IO[str]]:
    """Hold ``<data_dir>/sync.lock`` (``flock``, released by the kernel if we die)."""
    try:
        data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        handle = (data_dir / LOCK_NAME).open("a+")
    except OSError as exc:
        raise StoreError(f"verrou de synchronisation impossible dans {data_dir} : "
                         f"{exc.strerror or exc}") from exc
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.close()
        raise SyncAlreadyRunning("le service de synchronisation tourne déjà "
                                 f"(verrou {data_dir / LOCK_NAME})") from None
    try:
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        yield handle
    finally:
        fcntl.flock(handle, fcntl.LOCK_UN)
        handle.close()


class Report(Protocol):
    unreachable: bool


class Engine(Protocol):
    """What the service drives: the sync use case (``appliance.services.sync.SyncEngine``)."""

    heartbeat: Callable[[], None]

    @property
    def stopping(self) -> bool: ...

    def push(self) -> Report: ...

    def pull(self) -> Report: ...

    def stop(self) -> None: ...


@dataclass
class CycleReport:
    push: Any = None   # the engine's PushReport
    pull: Any = None   # the engine's PullReport
    held: bool = False
    housekeeping: bool = False


class SyncService:
    def __init__(self, engine: Engine, uow: UnitOfWork, *, tick_s: float = TICK_S,
                 pull_every_s: float = 300.0, housekeeping_every_s: float = HOUSEKEEPING_S,
                 backoff_cap_s: float = 900.0,
                 environ: Mapping[str, str] | None = None,
                 notify: Callable[[str], bool] | None = None,
                 rng: random.Random | None = None) -> None:
        self.engine, self.uow = engine, uow
        self.tick_s, self.pull_every_s = tick_s, pull_every_s
        self.housekeeping_every_s, self.backoff_cap_s = housekeeping_every_s, backoff_cap_s
        self.environ = os.environ if environ is None else environ
        self.notify = notify or (lambda state: sdnotify.notify(state, self.environ))
        self.rng = rng or random.Random()  # noqa: S311 (retry jitter, not a secret)
        self._stop = threading.Event()
        self._failures = 0
        self._hold_until = 0.0
        self._next_pull = 0.0
        self._next_housekeeping = time.monotonic() + housekeeping_every_s
        self._beat = time.monotonic()
        engine.heartbeat = self.beat

    def beat(self) -> None:
        self._beat = time.monotonic()

    # -- one tick ---------------------------------------------------------------------------
    def _unreachable(self, now: float) -> None:
        self._failures += 1
        wait = service_backoff(self._failures, self.tick_s, self.backoff_cap_s, self.rng)
        self._hold_until = now + wait
        log.warning("registry unreachable, holding off", extra={"fields": {
            "failures": self._failures, "seconds": round(wait, 1)}})

    def cycle(self, *, force: bool = False) -> CycleReport:
        """Push if anything waits, pull if due (``force``: both, now, whatever the holds)."""
        report = CycleReport()
        now = time.monotonic()
        self.beat()
        if not force and now < self._hold_until:
            report.held = True
            return report
        if force or self.uow.outbox.pending_count():
            report.push = self.engine.push()
            if report.push.unreachable:
                self._unreachable(time.monotonic())
                return report
            self._failures = 0
        if not self.engine.stopping and (force or now >= self._next_pull):
            report.pull = self.engine.pull()
            if report.pull.unreachable:
                self._unreachable(time.monotonic())
            else:
                self._failures = 0
                self._next_pull = time.monotonic() + self.pull_every_s
        if not force and now >= self._next_housekeeping and not self.engine.stopping:
            self.housekeeping()
            report.housekeeping = True
            self._next_housekeeping = time.monotonic() + self.housekeeping_every_s
        self.beat()
        return report

    def housekeeping(self) -> None:
        self.uow.housekeeping()

    def tick(self) -> None:
        try:
            self.cycle()
        except Exception:  # the scheduler must keep ticking; the next tick retries
            log.exception("sync tick failed")
        status = self.uow.views.sync_status(datetime.now(UTC))
        self.notify(f"STATUS=file : {status.queue_depth} en attente, "
                    f"{status.quarantined} en quarantaine")

    def watchdog(self, stale_after_s: float) -> None:
        if time.monotonic() - self._beat < stale_after_s:
            self.notify("WATCHDOG=1")
        else:
            log.error("sync job shows no sign of life: watchdog not fed")

    # -- the process ----------------------------------------------------------------------------
    def request_stop(self, *_: Any) -> None:
        self._stop.set()
        self.engine.stop()

    def run(self, *, install_signals: bool = True) -> int:
        """Serve until SIGTERM or SIGINT; returns the exit status (0)."""
        logging.getLogger("apscheduler").setLevel(logging.ERROR)
        scheduler = BackgroundScheduler(timezone="UTC", job_defaults={
            "max_instances": 1, "coalesce": True, "misfire_grace_time": None})
        scheduler.add_job(self.tick, "interval", seconds=self.tick_s, id="sync",
                          next_run_time=datetime.now(UTC))
        interval = sdnotify.watchdog_interval(self.environ)
        if interval is not None:
            stale = max(4 * interval, 3 * self.tick_s + 60)
            scheduler.add_job(self.watchdog, "interval", seconds=interval, id="watchdog",
                              args=[stale], next_run_time=datetime.now(UTC))
        if install_signals:
            signal.signal(signal.SIGTERM, self.request_stop)
            signal.signal(signal.SIGINT, self.request_stop)
        scheduler.start()
        self.notify("READY=1\nSTATUS=synchronisation démarrée")
        log.info("sync service started", extra={"fields": {
            "tick_s": self.tick_s, "pull_every_s": self.pull_every_s,
            "watchdog_s": interval}})
        while not self._stop.wait(1.0):
            pass
        self.notify("STOPPING=1")
        log.info("sync service stopping")
        scheduler.shutdown(wait=True)
        log.info("sync service stopped")
        return 0
