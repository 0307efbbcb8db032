"""Prometheus metrics of one appliance, served by the sync service on ``[metrics] listen``.

``OrdoCollector`` computes every figure when it is scraped (``ops.health``: a few reads
of the store, a directory listing, the referential's date, the printer and the card
readers), on a private ``CollectorRegistry`` (``registry``), so that a process may hold
several. Every gauge has one label, ``finess`` (the establishment's FINESS, empty when not
configured); no label or value says anything of a resident, a practitioner or a
prescription (``ordo_build_info`` adds the version).

A scrape takes a bounded time: the store is read (a WAL reader never waits for the sync
service's writes), and the two devices are asked on threads of their own, at most once
every ``device_every_s`` (30 s: a receipt printer serves one connection at a time, the
kiosk's prints come first), the answer awaited at most ``device_timeout_s``; a device
that does not answer within it is reported down. A part that fails (an unreadable
database, a probe's bug) drops its own metrics (``ordo_store_up`` says so for the store)
and is logged; the scrape and the sync service go on.

Conventions: an age of something that never happened (no backup, no audit anchor, no drug
referential) is ``+Inf``; ``ordo_sync_last_success_timestamp_seconds`` is 0 before the first
exchange with the registry; ``ordo_registry_up`` is absent until the sync service has
exchanged with the registry once since the database was created; ``ordo_printer_paper_ok``
is absent while the printer is down or cannot tell (USB); the printer's gauges are absent
for a printer on a device file or a serial line (``file://``, ``serial://``), which only the
kiosk opens.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import urlsplit

from prometheus_client import CollectorRegistry
from prometheus_client.core import GaugeMetricFamily, Metric

from appliance import __version__
from appliance.config import Settings, listen_address
from appliance.ops import health
from appliance.ports.clock import Clock, utc_now
from appliance.ports.uow import UnitOfWork

log = logging.getLogger(__name__)

DEVICE_EVERY_S = 30.0
DEVICE_TIMEOUT_S = 3.0

# name: help. The names the alert rules and the dashboard may use (a test checks both).
METRICS: dict[str, str] = {
    "ordo_build_info": "Ordo version (label version), always 1",
    "ordo_store_up": "1 if the local database could be read for this scrape",
    "ordo_outbox_pending": "Prescriptions and cancellations waiting to be sent to the registry",
    "ordo_outbox_oldest_pending_age_seconds": "Age of the oldest record waiting for the "
                                              "registry (0 when none waits)",
    "ordo_outbox_quarantined": "Records the registry refused for good (ordo sync status)",
    "ordo_sync_last_success_timestamp_seconds": "Unix time of the last successful exchange "
                                                "with the registry (0: never)",
    "ordo_registry_up": "1 if the last exchange or probe reached the registry",
    "ordo_registry_misconfigured": "1 if the registry link is set up wrong (URL, certificate)",
    "ordo_print_jobs_queued": "Print jobs waiting for the printer",
    "ordo_print_jobs_failed": "Print jobs that failed for good",
    "ordo_printer_up": "1 if the order printer answered its status request",
    "ordo_printer_paper_ok": "1 if the printer has paper, 0 if it is out",
    "ordo_printer_paper_near_end": "1 if the printer's roll is nearly empty",
    "ordo_card_reader_present": "1 if pcscd sees at least one card reader",
    "ordo_card_readers": "Card readers pcscd sees",
    "ordo_referential_age_days": "Age of the drug referential's data in days (+Inf: none)",
    "ordo_backup_age_seconds": "Age of the newest backup (+Inf: none)",
    "ordo_audit_anchor_age_seconds": "Age of the last audit anchor the registry received "
                                     "(+Inf: none)",
    "ordo_audit_unanchored_entries": "Audit entries written since the last anchor",
}


class DeviceProbe:
    """A slow probe run on a daemon thread of its own, at most once every ``every_s``
    (its answer is reused meanwhile), awaited at most ``timeout_s`` by each reader.
    ``read`` returns the answer, raises the probe's error, or ``TimeoutError``."""

    def __init__(self, name: str, probe: Callable[[], Any], *, every_s: float,
                 timeout_s: float, monotonic: Callable[[], float] = time.monotonic) -> None:
        self.name, self.probe = name, probe
        self.every_s, self.timeout_s, self.monotonic = every_s, timeout_s, monotonic
        self._lock = threading.Lock()
        self._finished = threading.Event()
        self._outcome: tuple[bool, Any] | None = None
        self._started = -math.inf
        self._running = False

    def _run(self) -> None:
        try:
            outcome: tuple[bool, Any] = (True, self.probe())
        except Exception as exc:
            outcome = (False, exc)
        with self._lock:
            self._outcome, self._running = outcome, False
            self._finished.set()

    def read(self) -> Any:
        with self._lock:
            if not self._running and self.monotonic() - self._started >= self.every_s:
                self._running, self._started, self._outcome = True, self.monotonic(), None
                self._finished = threading.Event()
                threading.Thread(target=self._run, name=f"metrics-{self.name}",
                                 daemon=True).start()
            finished = self._finished
        finished.wait(self.timeout_s)
        with self._lock:
            outcome = self._outcome
        if outcome is None:
            raise TimeoutError(f"{self.name}: no answer within {self.timeout_s:g} s")
        ok, value = outcome
        if not ok:
            raise value
        return value


class OrdoCollector:
    """The appliance's gauges, computed at each scrape (see the module's docstring)."""

    def __init__(self, settings: Settings, new_uow: Callable[[], UnitOfWork], *,
                 clock: Clock = utc_now, device_every_s: float = DEVICE_EVERY_S,
                 device_timeout_s: float = DEVICE_TIMEOUT_S,
                 printer: Callable[[], health.PrinterFigures] | None = None,
                 card_readers: Callable[[], int] | None = None) -> None:
        self.settings, self.new_uow, self.clock = settings, new_uow, clock
        self.finess = settings.establishment.finess
        uri = settings.printer.uri
        socket_timeout = max(device_timeout_s - 0.5, 0.5)  # the printer's own, within ours
        # A printer on a device file or a serial line is the kiosk's alone (the sync
        # service runs without device access, PrivateDevices=): not asked from here.
        self.asks_printer = printer is not None or urlsplit(uri).scheme in {"tcp", "usb"}
        self.printer = DeviceProbe(
            "printer", printer or (lambda: health.printer_figures(uri, socket_timeout)),
            every_s=device_every_s, timeout_s=device_timeout_s)
        self.card_readers = DeviceProbe("card-readers", card_readers or health.card_readers,
                                        every_s=device_every_s, timeout_s=device_timeout_s)
        self._lock = threading.Lock()  # one scrape at a time: the devices are asked once

    def describe(self) -> Iterator[Metric]:
        for name, text in METRICS.items():
            labels = ["finess", "version"] if name == "ordo_build_info" else ["finess"]
            yield GaugeMetricFamily(name, text, labels=labels)

    def _gauge(self, name: str, value: float) -> GaugeMetricFamily:
        family = GaugeMetricFamily(name, METRICS[name], labels=["finess"])
        family.add_metric([self.finess], value)
        return family

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            families = [*self._info()]
            for part in (self._queue, self._files, self._devices):
                try:
                    families += part()
                except Exception:  # a bug in one part must not hide the others
                    log.exception("metrics: a part failed", extra={"fields": {
                        "part": part.__name__.strip("_")}})
        yield from families

    def _info(self) -> list[Metric]:
        family = GaugeMetricFamily("ordo_build_info", METRICS["ordo_build_info"],
                                   labels=["finess", "version"])
        family.add_metric([self.finess, __version__], 1)
        return [family]

    def _queue(self) -> list[Metric]:
        now = self.clock()
        try:
            uow = self.new_uow()
            try:
                q = health.queue_figures(uow, now)
            finally:
                uow.close()
        except Exception as exc:
            log.warning("metrics: the database cannot be read", extra={"fields": {
                "error": f"{type(exc).__name__}: {str(exc)[:200]}"}})
            return [self._gauge("ordo_store_up", 0)]
        out: list[Metric] = [self._gauge("ordo_store_up", 1),
               self._gauge("ordo_outbox_pending", q.pending),
               self._gauge("ordo_outbox_oldest_pending_age_seconds", q.oldest_pending_age_s),
               self._gauge("ordo_outbox_quarantined", q.quarantined),
               self._gauge("ordo_sync_last_success_timestamp_seconds",
                           q.last_success_at.timestamp() if q.last_success_at else 0),
               self._gauge("ordo_print_jobs_queued", q.print_queued),
               self._gauge("ordo_print_jobs_failed", q.print_failed),
               self._gauge("ordo_audit_anchor_age_seconds", q.anchor_age_s),
               self._gauge("ordo_audit_unanchored_entries", q.unanchored_entries)]
        if q.link is not None:
            out += [self._gauge("ordo_registry_up", int(q.link == "up")),
                    self._gauge("ordo_registry_misconfigured", int(q.link == "misconfigured"))]
        return out

    def _files(self) -> list[Metric]:
        now, data_dir = self.clock(), self.settings.data_dir
        backup = health.backup_age(data_dir, now)
        referential = health.referential_age(data_dir, now)
        return [self._gauge("ordo_backup_age_seconds",
                            health.NEVER if backup is None else max(backup.age_s, 0.0)),
                self._gauge("ordo_referential_age_days",
                            health.NEVER if referential is None else referential.days)]

    def _devices(self) -> list[Metric]:
        out = self._printer() if self.asks_printer else []
        try:
            readers = int(self.card_readers.read())
        except Exception as exc:
            log.warning("metrics: card reader probe failed", extra={"fields": {
                "error": str(exc)}})
            readers = 0
        out += [self._gauge("ordo_card_reader_present", int(readers > 0)),
                self._gauge("ordo_card_readers", readers)]
        return out

    def _printer(self) -> list[Metric]:
        out: list[Metric] = []
        try:
            printer = self.printer.read()
        except Exception as exc:  # a timeout, or a bug of the probe
            log.warning("metrics: printer probe failed", extra={"fields": {"error": str(exc)}})
            printer = health.PrinterFigures(False, None)
        out.append(self._gauge("ordo_printer_up", int(printer.up)))
        if printer.paper is not None:
            out += [self._gauge("ordo_printer_paper_ok", int(printer.paper != "out")),
                    self._gauge("ordo_printer_paper_near_end",
                                int(printer.paper in {"near_end", "out"}))]
        return out


def registry(collector: OrdoCollector) -> CollectorRegistry:
    """A private registry holding ``collector`` only (not the library's global one)."""
    target = CollectorRegistry(auto_describe=False)
    target.register(collector)
    return target


class MetricsServer:
    """The HTTP endpoint (``prometheus_client``'s threaded server) on (host, port);
    ``start`` raises ``OSError`` when the address cannot be bound."""

    def __init__(self, host: str, port: int, registry: CollectorRegistry) -> None:
        self.host, self.port, self.registry = host, port, registry
        self._server: Any = None
        self._thread: threading.Thread | None = None

    @property
    def address(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    def start(self) -> None:
        from prometheus_client import start_http_server

        self._server, self._thread = start_http_server(self.port, addr=self.host,
                                                       registry=self.registry)
        self.port = self._server.server_port  # the one bound, when 0 was asked
        log.info("metrics served", extra={"fields": {"address": self.address}})

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None


def metrics_server(settings: Settings, new_uow: Callable[[], UnitOfWork], *,
                   clock: Clock = utc_now, **options: Any) -> MetricsServer | None:
    """The endpoint of ``[metrics] listen`` over this appliance's figures; ``None`` when
    the setting is empty."""
    address = listen_address(settings.metrics.listen)
    if address is None:
        return None
    collector = OrdoCollector(settings, new_uow, clock=clock, **options)
    return MetricsServer(*address, registry(collector))
