"""``ordo kiosk``: the kiosk's composition root.

It wires pcscd (``drivers.card``), the ESC/POS printer and its layout (``drivers.printer``),
the BDPM referential, the audit chain and the sync status (``sync.localstore``) into the
services and the Textual app (``appliance.tui.make_app``). The headless commands
(``ordo prescribe``, ``ordo drafts``, ``ordo practitioners``) are in
``appliance.commands.prescribe``.

The lock screen is drawn before anything slow: this module imports neither cryptography nor
sqlite-utils, and ``build_context`` only builds closures. The card monitor, the referential,
the store's migrations, the trust store and the login's modules are made or loaded by
``ctx.warm_up``, which the app runs on a thread once the first frame is drawn; the
migrations and the trust store are also loaded by their first use, whichever comes first.

The systemd unit (``systemd/ordo-kiosk.service``) runs ``ordo kiosk`` explicitly; ``ordo``
alone runs it too when the data directory is the appliance's (``/var/lib/ordo``).
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from appliance.bootstrap import App
from appliance.commands.session import login, open_card, store_audit
from appliance.config import Settings
from appliance.errors import OrdoError
from appliance.store import open_store
from appliance.store.db import Store

if TYPE_CHECKING:
    from appliance.domain.prescription import Prescription
    from appliance.services.auth import PractitionerSession
    from appliance.services.trust import TrustStore

log = logging.getLogger(__name__)

T = TypeVar("T")

PREVIEW_PAYLOAD = "EPU1*APERCU"


def once(build: Callable[[], T]) -> Callable[[], T]:
    """``build()`` run by the first call, from any thread; later calls return its result.
    A call that raises is not remembered: the next call tries again."""
    lock = threading.Lock()
    done: list[T] = []

    def get() -> T:
        with lock:
            if not done:
                done.append(build())
            return done[0]

    return get


# -- adapters of the kiosk ---------------------------------------------------------------------
class CardThread:
    """Every card operation runs on one thread, which owns the PC/SC context."""

    def __init__(self) -> None:
        self._executor: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()

    def call(self, func: Callable[[], T]) -> T:
        with self._lock:
            if self._executor is None:
                self._executor = ThreadPoolExecutor(1, thread_name_prefix="card")
            executor = self._executor
        return executor.submit(func).result()

    def close(self) -> None:
        with self._lock:
            executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=False, cancel_futures=True)


class KioskPrinter:
    """The kiosk's print queue worker (``PrintService`` of ``appliance.tui.context``).

    ``start`` returns at once: the printer driver (python-escpos, PIL, qrcode: about half a
    second of imports) is loaded and the queue started on a thread, so that the lock screen
    does not wait for them. Jobs queued meanwhile are printed when the worker starts.
    """

    def __init__(self, settings: Settings, open_db: Callable[[], Store],
                 idle_s: float = 5.0) -> None:
        self.settings = settings
        self.open_db = open_db
        self.idle_s = idle_s
        self._printer: Any = None
        self._printer_lock = threading.Lock()
        self._worker: Any = None
        self._starter: threading.Thread | None = None
        self._store: Store | None = None

    def order_printer(self) -> Any:
        with self._printer_lock:
            if self._printer is None:
                from drivers.printer.escpos import EscPosOrderPrinter

                self._printer = EscPosOrderPrinter.from_settings(self.settings)
            return self._printer

    def start(self, on_status: Callable[[Any], None]) -> None:
        self._starter = threading.Thread(target=self._start, args=(on_status,),
                                         name="print-start", daemon=True)
        self._starter.start()

    def _start(self, on_status: Callable[[Any], None]) -> None:
        from appliance.commands.printing import make_print_queue
        from appliance.services.printing import PrintWorker

        try:
            store = self.open_db()
            queue = make_print_queue(store, self.settings, printer=self.order_printer(),
                                     on_status=on_status)
        except Exception:
            log.exception("print worker: cannot start")
            return
        self._store = store
        self._worker = PrintWorker(queue, idle_s=self.idle_s)
        self._worker.start()

    def stop(self) -> None:
        starter, self._starter = self._starter, None
        if starter is not None:
            starter.join()
        worker, self._worker = self._worker, None
        if worker is not None:
            worker.stop()
        store, self._store = self._store, None
        if store is not None:
            store.close()

    def wake(self) -> None:
        if self._worker is not None:
            self._worker.wake()

    def probe(self) -> Any:
        return self.order_printer().status()


def make_preview(settings: Settings) -> Callable[[Prescription], list[str]]:
    """The printed order as text lines, from the printer's own layout module (imported at
    the first preview: it pulls qrcode in, which the lock screen does not need)."""

    def preview(prescription: Prescription) -> list[str]:
        from drivers.printer.layout import (
            Barcodes,
            Cut,
            Feed,
            Letterhead,
            OrderDocument,
            Qr,
            Rule,
            Text,
            media_for,
            tickets_for,
        )

        media = media_for(settings.printer.media, settings.printer.dpi)
        cols = media.columns

        def place(text: str, align: str) -> str:
            if align == "center":
                return text.center(cols).rstrip()
            if align == "right":
                return text.rjust(cols)
            return text

        lines: list[str] = []
        doc = OrderDocument(prescription, PREVIEW_PAYLOAD, Letterhead.from_settings(settings))
        if prescription.secure:
            lines.append("Ordonnance sécurisée : imprimée en PDF sur papier sécurisé.")
        elif prescription.mixes_secure:
            lines.append("Lignes sécurisées : une seconde ordonnance, imprimée en PDF sur "
                         "papier sécurisé, les reprendra.")
        for ticket in tickets_for(doc, media):
            for op in ticket:
                if isinstance(op, Text):
                    lines.append(place(op.text, op.align))
                elif isinstance(op, Feed):
                    lines.extend([""] * op.lines)
                elif isinstance(op, Rule):
                    lines.append(("=" if op.heavy else "-") * cols)
                elif isinstance(op, Barcodes):
                    lines.append(place("[ code-barres ]", "center"))
                elif isinstance(op, Qr):
                    lines.append(place("[ code QR ]", "center"))
                elif isinstance(op, Cut):
                    lines.append(place("- - - coupe - - -", "center"))
        return lines

    return preview


def _dispensation_views(store: Store, prescription_id: str) -> list[Any]:
    from appliance.tui.context import DispensationView
    from sync import localstore

    return [DispensationView(localstore.describe_fr(d).replace("\u2014", "-"), d.substituted,
                             d.complete)
            for d in localstore.dispensations_of(store, prescription_id)]


@dataclass
class KioskParts:
    """What ``build_context`` started, to stop it afterwards."""

    card_thread: CardThread
    referential: Any = None
    closers: list[Callable[[], None]] = field(default_factory=list)

    def close(self) -> None:
        while self.closers:
            with contextlib.suppress(Exception):
                self.closers.pop()()
        self.card_thread.close()
        if self.referential is not None:
            self.referential.close()


def build_context(app: App, *, watcher: bool = True, printer: bool = True,
                  allow_quit: bool = False, banner: str = "",
                  demo_dispense: Callable[[str], str] | None = None,
                  console: bool | None = None) -> tuple[Any, KioskParts]:
    """The ``KioskContext`` of the real appliance (or of the demo) from the settings.

    The card monitor and the referential are made by ``ctx.warm_up``, after the first frame
    (the app starts the monitor once the warm-up is over, failed or not): until then nobody
    can log in, and nothing can search.
    """
    from appliance.tui.context import KioskContext

    settings = app.settings
    path = settings.db_path
    # ``app.store`` creates the file and runs the migrations: once, before any connection.
    migrated = once(lambda: app.store)
    trust = once(lambda: _load_trust(settings))

    def open_db() -> Store:
        migrated()
        return open_store(path, migrate=False)

    audit_log = store_audit(open_db)
    card_thread = CardThread()
    parts = KioskParts(card_thread)

    def kiosk_login(reader: str, pin: str) -> PractitionerSession:
        return card_thread.call(lambda: login(
            trust(), audit_log, float(settings.security.idle_timeout_s), pin, reader=reader))

    def card_info(reader: str) -> tuple[str, int | None]:
        def read() -> tuple[str, int | None]:
            from cryptography import x509

            from appliance.services.auth import parse_practitioner

            card = open_card(reader, None)
            try:
                tries = card.pin_status().tries_left
                cert = x509.load_der_x509_certificate(card.read_certificates().authentication)
            finally:
                card.close()
            holder = parse_practitioner(cert)
            return f"Carte de {holder.display_name} ({holder.profession})", tries

        return card_thread.call(read)

    def warm_up(ctx: KioskContext) -> None:
        from appliance.store.referential.build import referential_path
        from appliance.store.referential.search import Referential

        if ctx.referential is None:
            ctx.referential = parts.referential = Referential(
                referential_path(settings.data_dir))
        if watcher and ctx.watcher is None:
            from drivers.card.monitor import ReaderMonitor

            ctx.watcher = ReaderMonitor()
        migrated()
        trust()
        # The modules of the login and of the signature, loaded while nobody waits.
        importlib.import_module("appliance.services.auth")
        importlib.import_module("appliance.services.signature")

    ctx = KioskContext(
        open_store=open_db, login=kiosk_login, card_call=card_thread.call,
        card_info=card_info,
        preview=make_preview(settings),
        printer=KioskPrinter(settings, open_db) if printer else None,
        sync_status=_sync_status, dispensations=_dispensation_views,
        establishment=settings.establishment.name, allow_quit=allow_quit,
        console=os.environ.get("TERM") == "linux" if console is None else console,
        banner=banner, demo_dispense=demo_dispense, warm_up=warm_up)
    return ctx, parts


def _load_trust(settings: Settings) -> TrustStore:
    from appliance.services.trust import load_trust_store

    return load_trust_store(settings.security.trust_roots, settings.security.crls)


def _sync_status(store: Store) -> Any:
    from sync import localstore

    return localstore.sync_status(store)


def _log_to_file(settings: Settings, name: str) -> None:
    """The kiosk owns the terminal: logs go to the journal (systemd) or to a file."""
    log_to_file_at(settings.data_dir / name, settings.logging.level)


def log_to_file_at(target: Path, level: str = "INFO") -> None:
    from appliance import logs

    if logs.stream_is_journal(sys.stderr) or not sys.stderr.isatty():
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    logs.setup_logging(level, open(target, "a", encoding="utf-8"))  # noqa: SIM115


def exit_on_signals() -> None:
    """SIGTERM or SIGHUP (terminal closed) end the demo through its clean-up."""

    def stop(signum: int, _frame: object) -> None:
        for other in (signal.SIGTERM, signal.SIGHUP):
            signal.signal(other, signal.SIG_IGN)  # one clean-up, whatever comes next
        raise SystemExit(128 + signum)

    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, stop)


@click.command("kiosk")
@click.pass_obj
def kiosk(app: App) -> None:
    """Run the kiosk full screen (on the appliance, systemd runs it on tty1).

    No key quits it: ``systemctl stop ordo-kiosk`` (SIGTERM) does, cleanly.
    """
    from appliance.tui.app import make_app

    _log_to_file(app.settings, "kiosk.log")
    try:
        ctx, parts = build_context(app)
    except OrdoError as exc:
        raise click.ClickException(str(exc)) from exc
    ctx.on_hangup = parts.close
    try:
        make_app(ctx).run()
    finally:
        parts.close()


COMMANDS = [kiosk]
