"""``ordo kiosk``: the kiosk, built from the composition root (``appliance.bootstrap``).

``build_context`` gives the Textual app (``appliance.tui.make_app``) what it needs from the
``App``: units of work, the login recipe on the card thread, the card watcher, the drug
referential and the substitution check over it, the print worker and the order preview.
The headless commands (``ordo prescribe``, ``ordo drafts``, ``ordo practitioners``) are in
``appliance.commands.prescribe``.

The lock screen is drawn before anything slow: this module imports neither cryptography nor
sqlite-utils, and ``build_context`` only builds closures. The card watcher, the store's
migrations, the trust store and the login's modules are made or loaded by ``ctx.warm_up``,
which the app runs on a thread once the first frame is drawn, and which ends by starting a
thread that loads the drug referential and its spelling vocabulary; the migrations and the
trust store are also loaded by their first use, whichever comes first.

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
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from appliance.bootstrap import App
from appliance.errors import OrdoError, StoreError

if TYPE_CHECKING:
    from appliance.config import Settings
    from appliance.domain.prescription import Prescription
    from appliance.ports.uow import UnitOfWork
    from appliance.services.auth import PractitionerSession
    from appliance.tui.context import KioskContext

log = logging.getLogger(__name__)

T = TypeVar("T")

PREVIEW_PAYLOAD = "ORD1:APERCU"


class CardThread:
    """Every card operation runs on one thread, which owns the card's context."""

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


def make_preview(settings: Settings) -> Callable[[Prescription], list[str]]:
    """The printed order as text lines, from the printer's own layout module (imported at
    the first preview: it pulls qrcode in, which the lock screen does not need)."""

    def preview(prescription: Prescription) -> list[str]:
        from drivers.printer.layout import (
            Cut,
            Feed,
            Letterhead,
            OrderDocument,
            Qr,
            Text,
            media_for,
            tickets_for,
        )

        media = media_for(settings.printer.media, settings.printer.dpi)
        est = settings.establishment
        cols = media.columns

        def place(text: str, align: str) -> str:
            if align == "center":
                return text.center(cols).rstrip()
            if align == "right":
                return text.rjust(cols)
            return text

        lines: list[str] = []
        doc = OrderDocument(prescription, PREVIEW_PAYLOAD,
                            Letterhead(est.name, est.finess, est.address))
        for ticket in tickets_for(doc, media):
            for op in ticket:
                if isinstance(op, Text):
                    lines.append(place(op.text, op.align))
                elif isinstance(op, Feed):
                    lines.extend([""] * op.lines)
                elif isinstance(op, Qr):
                    lines.append(place("[ code QR signé ]", "center"))
                elif isinstance(op, Cut):
                    lines.append(place("- - - coupe - - -", "center"))
        return lines

    return preview


def preload_referential(referential: Any) -> None:
    """Open the drug referential and load its counts and spelling vocabulary (about 0.2 s
    on the whole BDPM; a file an older Ordo built is upgraded first, a few seconds), so
    that the first search, misspelt or not, answers at once. Without a referential, the
    editor says so at the first search."""
    try:
        referential.warm_up()
    except OrdoError as exc:
        log.warning("kiosk start: drug referential not loaded", extra={"fields": {
            "error": str(exc)}})
    except Exception:
        log.exception("kiosk start: drug referential not loaded")


@dataclass
class KioskParts:
    """What ``build_context`` started, to stop it afterwards."""

    card_thread: CardThread
    closers: list[Callable[[], None]] = field(default_factory=list)
    referential_loader: threading.Thread | None = None
    """Loads the referential after the warm-up, beside the card monitor's start."""

    def close(self) -> None:
        while self.closers:
            with contextlib.suppress(Exception):
                self.closers.pop()()
        self.card_thread.close()


def build_context(app: App, *, watcher: bool = True, printer: bool = True,
                  allow_quit: bool = False, banner: str = "",
                  demo_dispense: Callable[[str], str] | None = None,
                  console: bool | None = None) -> tuple[KioskContext, KioskParts]:
    """The ``KioskContext`` of the real appliance (or of the demo) from the ``App``.

    The card watcher and the referential are made by ``ctx.warm_up``, after the first frame
    (the app starts the watcher once the warm-up is over, failed or not): until then nobody
    can log in, and nothing can search. The warm-up ends by starting a thread that loads
    the referential (``preload_referential``, ``parts.referential_loader``).
    """
    from appliance.tui.context import KioskContext

    settings = app.settings
    card_thread = CardThread()
    parts = KioskParts(card_thread)

    def kiosk_login(reader: str, pin: str) -> PractitionerSession:
        return card_thread.call(lambda: app.login(pin, reader=reader))

    def card_info(reader: str) -> tuple[str, int | None]:
        def read() -> tuple[str, int | None]:
            from appliance.services.auth import card_holder

            holder, tries = card_holder(app.card_reader, reader)
            return f"Carte de {holder.display_name} ({holder.profession})", tries

        return card_thread.call(read)

    def warm_up(ctx: KioskContext) -> None:
        if ctx.referential is None:
            ctx.referential = app.referential
        if watcher and ctx.watcher is None:
            ctx.watcher = app.card_watcher()
        try:
            app.migrate()
            app.trust  # noqa: B018 (loaded now, while nobody waits; a ConfigError shows)
            # The modules of the login and of the signature, loaded while nobody waits.
            importlib.import_module("appliance.services.auth")
            importlib.import_module("appliance.services.signature")
        finally:  # the referential loads beside the card monitor's start, not before it
            if parts.referential_loader is None:
                parts.referential_loader = threading.Thread(
                    target=preload_referential, args=(ctx.referential,),
                    name="referential-warm-up", daemon=True)
                parts.referential_loader.start()

    ctx = KioskContext(
        new_uow=app.new_uow, login=kiosk_login, card_call=card_thread.call,
        card_info=card_info, preview=make_preview(settings),
        printer=app.print_service() if printer else None,
        establishment=settings.establishment.name, allow_quit=allow_quit,
        console=os.environ.get("TERM") == "linux" if console is None else console,
        banner=banner, demo_dispense=demo_dispense, warm_up=warm_up, now=app.clock)

    def other_substances(uow: UnitOfWork, handed: Iterable[tuple[str, int, str | None]]
                         ) -> set[tuple[str, int, str]]:
        from appliance.services.substitution import other_substances

        return other_substances(uow, ctx.referential, handed)

    ctx.other_substances = other_substances
    return ctx, parts


def log_to_file_at(target: Path, level: str = "INFO") -> None:
    from appliance import logs

    if logs.stream_is_journal(sys.stderr) or not sys.stderr.isatty():
        return
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        stream = open(target, "a", encoding="utf-8")  # noqa: SIM115
    except OSError as exc:
        raise StoreError(f"journal impossible à écrire : {target} "
                         f"({exc.strerror or exc})") from exc
    logs.setup_logging(level, stream)


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

    log_to_file_at(app.settings.data_dir / "kiosk.log", app.settings.logging.level)
    ctx, parts = build_context(app)
    ctx.on_hangup = parts.close
    try:
        make_app(ctx).run()
    finally:
        parts.close()


COMMANDS = [kiosk]
