"""``ordo sync run``: the sync service, one APScheduler 3 scheduler in one dedicated process.

One job, ``sync``, on an interval trigger (``tick_s``, a few seconds) with
``max_instances=1`` and ``coalesce=True``: ticks never overlap and missed ones fold into
one. Each tick does what is due:

- **push** whenever the outbox is not empty: the engine drains it (the sync use case,
  ``appliance.services.sync``, given by the composition root);
- while the registry cannot be reached, nothing is sent: the service **probes** it
  (``Engine.probe``, ``GET [base]/metadata``) at every tick, ``probe_every_s`` (5 s), and
  at once when the kernel reports a network change (``sync.netwatch``: a link up, an
  address or a route added); as soon as it answers the queue drains, whatever the
  backoff of records that only met the outage (the records the registry itself failed on
  keep theirs). A misconfigured link (``RegistryMisconfigured``: the URL, a certificate)
  pauses the queue the same way, probed every ``misconfigured_probe_s`` (30 s), until the
  setting is fixed;
- **anchor** the audit chain's head at the registry whenever it moved (``Engine.anchor_audit``:
  after a push, or at a tick with nothing to push; one small request, none while it has
  not moved);
- **pull** the dispensations every ``pull_every_s`` (ten times ``[sync] interval_s``:
  five minutes by default);
- **housekeeping** every hour: a passive WAL checkpoint and ``PRAGMA optimize``;
- **MSSanté** when configured (the composition root gives the use cases of
  ``appliance.services.mailbox``): the orders waiting for the partner pharmacy are sent at
  every tick (an unreachable mail server holds the mail off with its own backoff, the
  registry is not held), and the mailbox is read every ``mail_fetch_every_s`` (a few
  minutes).

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

from appliance.domain.backoff import full_jitter
from appliance.errors import StoreError, SyncAlreadyRunning
from appliance.ports.uow import UnitOfWork
from sync import netwatch, sdnotify

log = logging.getLogger(__name__)

TICK_S = 5.0
PROBE_S = 5.0                 # while the registry does not answer
MISCONFIGURED_PROBE_S = 30.0  # while the link is set up wrong
UP, DOWN, MISCONFIGURED = "up", "down", "misconfigured"  # as the sync use case says
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
    misconfigured: str | None


class MailSender(Protocol):
    """The MSSanté sending use case (``appliance.services.mailbox.MailSender``)."""

    def drain(self) -> Report: ...


class Exporter(Protocol):
    """The metrics endpoint (``appliance.ops.metrics.MetricsServer``), served while the
    service runs."""

    @property
    def address(self) -> str: ...

    def start(self) -> None: ...

    def stop(self) -> None: ...


class Engine(Protocol):
    """What the service drives: the sync use case (``appliance.services.sync.SyncEngine``)."""

    heartbeat: Callable[[], None]

    @property
    def stopping(self) -> bool: ...

    def push(self) -> Report: ...

    def pull(self) -> Report: ...

    def probe(self) -> str:
        """Ask the registry whether it answers: ``up``, ``down`` or ``misconfigured``."""
        ...

    def anchor_audit(self) -> int | None:
        """Send the audit chain's head to the registry if it moved since the last anchor."""
        ...

    def stop(self) -> None: ...


@dataclass
class CycleReport:
    push: Any = None   # the engine's PushReport
    pull: Any = None   # the engine's PullReport
    held: bool = False
    probed: bool = False
    anchored: int | None = None  # the audit entry anchored at the registry by this tick
    housekeeping: bool = False


class SyncService:
    def __init__(self, engine: Engine, uow: UnitOfWork, *, tick_s: float = TICK_S,
                 pull_every_s: float = 300.0, housekeeping_every_s: float = HOUSEKEEPING_S,
                 probe_every_s: float = PROBE_S,
                 misconfigured_probe_s: float = MISCONFIGURED_PROBE_S,
                 environ: Mapping[str, str] | None = None,
                 notify: Callable[[str], bool] | None = None,
                 backoff_cap_s: float = 900.0,
                 rng: random.Random | None = None,
                 mail_sender: MailSender | None = None,
                 mail_fetch: Callable[[], object] | None = None,
                 mail_fetch_every_s: float = 180.0,
                 monotonic: Callable[[], float] = time.monotonic,
                 on_cycle: Callable[[CycleReport], None] | None = None,
                 metrics: Exporter | None = None) -> None:
        self.engine, self.uow = engine, uow
        self.metrics = metrics
        self.mail_sender, self.mail_fetch = mail_sender, mail_fetch
        self.mail_fetch_every_s = mail_fetch_every_s
        self.backoff_cap_s = backoff_cap_s  # the mail server's hold-off, not the registry's
        self.rng = rng or random.Random()  # noqa: S311 (retry jitter, not a secret)
        self._mail_failures = 0
        self._mail_hold_until = 0.0
        self._next_fetch = 0.0
        self.tick_s, self.pull_every_s = tick_s, pull_every_s
        self.housekeeping_every_s = housekeeping_every_s
        self.probe_every_s, self.misconfigured_probe_s = probe_every_s, misconfigured_probe_s
        self.environ = os.environ if environ is None else environ
        self.notify = notify or (lambda state: sdnotify.notify(state, self.environ))
        self.monotonic = monotonic
        self.on_cycle = on_cycle
        self._stop = threading.Event()
        self._link = UP  # what the last exchange or probe found
        self._next_probe = 0.0
        self._next_pull = 0.0
        self._next_housekeeping = monotonic() + housekeeping_every_s
        self._beat = monotonic()
        self._scheduler: BackgroundScheduler | None = None
        engine.heartbeat = self.beat

    def beat(self) -> None:
        self._beat = self.monotonic()

    @property
    def link(self) -> str:
        return self._link

    # -- the link ---------------------------------------------------------------------------
    def _lost(self, state: str, now: float) -> None:
        """The registry stopped answering (or answers as something else): probe it."""
        if self._link != state:
            log.warning("registry link lost, probing", extra={"fields": {
                "state": state, "every_s": self._probe_every(state)}})
        self._link = state
        self._next_probe = now + self._probe_every(state)

    def _probe_every(self, state: str) -> float:
        return self.misconfigured_probe_s if state == MISCONFIGURED else self.probe_every_s

    def wake(self) -> None:
        """The network changed (a link came up, an address or a route was added): probe the
        registry now rather than at the next tick."""
        self._next_probe = 0.0
        scheduler = self._scheduler
        if scheduler is not None and self._link != UP:
            try:
                scheduler.modify_job("sync", next_run_time=datetime.now(UTC))
            except Exception:  # stopping: the job is gone
                log.debug("wake: no sync job")

    # -- one tick ---------------------------------------------------------------------------
    def cycle(self, *, force: bool = False) -> CycleReport:
        """Push if anything waits, pull if due (``force``: both, now, whatever the link);
        while the registry does not answer, only probe it when due."""
        report = CycleReport()
        now = self.monotonic()
        self.beat()
        self.mail_cycle(now, force=force)
        if self._link != UP and not force:
            # a tick may come a little before the probe is due: a probe per tick at most
            if now + min(self.tick_s, self.probe_every_s) / 2 < self._next_probe:
                report.held = True
                return self._done(report)
            report.probed = True
            state = self.engine.probe()
            if state != UP:
                self._lost(state, self.monotonic())
                report.held = True
                return self._done(report)
            log.info("registry answers again: draining")
            self._link = UP
        if force or self.uow.outbox.pending_count():
            report.push = self.engine.push()
            if report.push.misconfigured:
                self._lost(MISCONFIGURED, self.monotonic())
                return self._done(report)
            if report.push.unreachable:
                self._lost(DOWN, self.monotonic())
                return self._done(report)
        if not self.engine.stopping and (force or now >= self._next_pull):
            report.pull = self.engine.pull()
            if report.pull.misconfigured:
                self._lost(MISCONFIGURED, self.monotonic())
            elif report.pull.unreachable:
                self._lost(DOWN, self.monotonic())
            else:
                self._next_pull = self.monotonic() + self.pull_every_s
        if self._link == UP and not self.engine.stopping and report.push is None:
            # logins, prints, dispensations move the head too: anchored even with no queue
            report.anchored = self.engine.anchor_audit()
        if not force and now >= self._next_housekeeping and not self.engine.stopping:
            self.housekeeping()
            report.housekeeping = True
            self._next_housekeeping = self.monotonic() + self.housekeeping_every_s
        self.beat()
        return self._done(report)

    def _done(self, report: CycleReport) -> CycleReport:
        if self.on_cycle is not None:
            try:
                self.on_cycle(report)
            except Exception:
                log.exception("after-cycle hook failed")
        return report

    def mail_cycle(self, now: float, *, force: bool = False) -> None:
        """Send the waiting MSSanté messages, and read the mailbox when due; a failure here
        is logged and never stops the registry's sync."""
        if self.mail_sender is not None and (force or now >= self._mail_hold_until) \
                and self.uow.mail_outbox.pending_count():
            try:
                sent = self.mail_sender.drain()
            except Exception:
                log.exception("mssante send failed")
            else:
                if sent.unreachable:
                    self._mail_failures += 1
                    wait = max(self.tick_s, full_jitter(self._mail_failures, self.tick_s,
                                                        self.backoff_cap_s, self.rng))
                    self._mail_hold_until = self.monotonic() + wait
                    log.warning("mail server unreachable, holding off", extra={"fields": {
                        "failures": self._mail_failures, "seconds": round(wait, 1)}})
                else:
                    self._mail_failures = 0
        if self.mail_fetch is not None and (force or now >= self._next_fetch):
            self._next_fetch = self.monotonic() + self.mail_fetch_every_s
            try:
                self.mail_fetch()
            except Exception as exc:  # unreachable mailbox, refused login: next time
                log.warning("mssante fetch failed", extra={"fields": {"error": str(exc)[:200]}})
        self.beat()

    def housekeeping(self) -> None:
        self.uow.housekeeping()

    def tick(self) -> None:
        try:
            self.cycle()
        except Exception:  # the scheduler must keep ticking; the next tick retries
            log.exception("sync tick failed")
        status = self.uow.views.sync_status(datetime.now(UTC))
        text = (f"STATUS=file : {status.queue_depth} en attente, "
                f"{status.quarantined} en quarantaine")
        if status.misconfigured:
            text += f" ; registre mal configuré ({status.link_key})"
        elif self._link == DOWN:
            text += " ; registre injoignable"
        self.notify(text)

    def watchdog(self, stale_after_s: float) -> None:
        if self.monotonic() - self._beat < stale_after_s:
            self.notify("WATCHDOG=1")
        else:
            log.error("sync job shows no sign of life: watchdog not fed")

    # -- the process ----------------------------------------------------------------------------
    def _serve_metrics(self) -> Exporter | None:
        """Start the metrics endpoint; one that cannot listen (address in use, not on this
        machine) is logged and the service syncs without it."""
        if self.metrics is None:
            return None
        try:
            self.metrics.start()
        except OSError as exc:
            log.error("metrics endpoint not served", extra={"fields": {
                "address": self.metrics.address, "error": exc.strerror or str(exc)}})
            return None
        return self.metrics

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
        self._scheduler = scheduler
        interval = sdnotify.watchdog_interval(self.environ)
        if interval is not None:
            stale = max(4 * interval, 3 * self.tick_s + 60)
            scheduler.add_job(self.watchdog, "interval", seconds=interval, id="watchdog",
                              args=[stale], next_run_time=datetime.now(UTC))
        if install_signals:
            signal.signal(signal.SIGTERM, self.request_stop)
            signal.signal(signal.SIGINT, self.request_stop)
        scheduler.start()
        serving = self._serve_metrics()
        watcher = netwatch.NetworkWatcher(self.wake)
        watching = watcher.start()
        self.notify("READY=1\nSTATUS=synchronisation démarrée")
        log.info("sync service started", extra={"fields": {
            "tick_s": self.tick_s, "pull_every_s": self.pull_every_s,
            "watchdog_s": interval, "network_events": watching,
            "metrics": serving.address if serving is not None else None}})
        while not self._stop.wait(1.0):
            pass
        self.notify("STOPPING=1")
        log.info("sync service stopping")
        watcher.stop()
        if serving is not None:
            serving.stop()
        scheduler.shutdown(wait=True)
        self._scheduler = None
        log.info("sync service stopped")
        return 0
