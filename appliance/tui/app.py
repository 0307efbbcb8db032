"""The kiosk application: screens, the practitioner's session, the card and print threads.

``make_app(ctx)`` is used by ``ordo kiosk``, ``ordo demo`` and the tests alike.

Session life: the lock screen waits for a card; a card in a reader opens the PIN screen;
the PIN is checked on the card thread (``ctx.login``); the session then lasts until the card
leaves the reader, another card comes in, pcscd goes away (``SessionGuard`` on the card
monitor's events), the idle timeout passes (checked every second, reset by every key), or
the practitioner locks it (F12). Whatever the reason, every screen above the lock screen is
closed at once; the draft being typed has been saved as typed.

No key quits the kiosk: systemd stops it with SIGTERM (``systemctl stop ordo-kiosk``), which
closes the session and the threads cleanly. ``ctx.allow_quit`` (the demo) makes ctrl+q quit.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
from typing import TYPE_CHECKING, Any, ClassVar

from textual import events
from textual.app import App
from textual.binding import Binding, BindingType
from textual.reactive import reactive
from textual.scrollbar import ScrollBar, ScrollBarRender
from textual.widget import Widget

from appliance.domain.people import ROLE_LABELS_FR, Role
from appliance.errors import OrdoError
from appliance.tui.messages import (
    CardChanged,
    DataChanged,
    PrintStatusChanged,
    RunInUi,
    SessionLocked,
)
from appliance.tui.screens.base import LOCK_REASONS_FR

if TYPE_CHECKING:
    from appliance.ports.card import CardEvent
    from appliance.services.auth import PractitionerSession, SessionGuard
    from appliance.tui.context import KioskContext

log = logging.getLogger(__name__)

STATUS_EVERY_S = 5.0
PRINTER_PROBE_EVERY = 6  # status refreshes between two printer probes (network I/O)

KEY_NAMES_FR = {"escape": "Échap", "enter": "Entrée", "up": "Haut", "down": "Bas",
                "tab": "Tab", "delete": "Suppr", "backspace": "Retour arr."}



class OrdoApp(App[None]):
    CSS_PATH = "app.tcss"
    TITLE = "Ordo"
    ENABLE_COMMAND_PALETTE = False
    BINDINGS: ClassVar[list[BindingType]] = [Binding("ctrl+q", "quit", show=False, priority=True)]

    status_line: reactive[str] = reactive("")

    def __init__(self, ctx: KioskContext) -> None:
        super().__init__(ansi_color=True if ctx.console else None)
        self.ctx = ctx
        self.session: PractitionerSession | None = None
        self.lock_message = ""
        self._guard: SessionGuard | None = None
        self._parts: dict[str, str] = {"card": "Carte ?", "printer": "Imprimante ?",
                                       "registry": "Registre ?", "bdpm": "BDPM ?"}
        self._refreshes = 0
        self._queue_pending = 0
        self._save_lock = threading.Lock()
        self._save_seq = 0
        self._saved_seq = 0
        self.discarded: set[str] = set()  # drafts discarded (or being discarded): never listed

    # -- screens ---------------------------------------------------------------------------
    def get_default_screen(self) -> Any:
        from appliance.tui.screens.lock import LockScreen

        return LockScreen()

    def get_key_display(self, binding: Binding) -> str:
        """Key names the Linux console font can draw, in French."""
        if binding.key_display:
            return binding.key_display
        key = binding.key.split(",")[0]
        if key in KEY_NAMES_FR:
            return KEY_NAMES_FR[key]
        if key.startswith("f") and key[1:].isdigit():
            return key.upper()
        if key.startswith("ctrl+"):
            return "Ctrl+" + key[5:].upper()
        return key

    # -- lifecycle -------------------------------------------------------------------------
    def on_mount(self) -> None:
        if self.ctx.console:
            self.theme = "ansi-dark"
        self.set_interval(1.0, self._check_idle)
        self.set_interval(STATUS_EVERY_S, self.refresh_status)
        # The card monitor, the printer and the status line (which probes the printer) start
        # after the first frame and the context's warm-up: the lock screen does not wait.
        self.call_after_refresh(self._start_after_first_frame)
        with contextlib.suppress(ValueError, RuntimeError, NotImplementedError):
            import asyncio

            loop = asyncio.get_running_loop()
            loop.add_signal_handler(signal.SIGTERM, self.exit)
            loop.add_signal_handler(signal.SIGHUP, self._hang_up)

    def _start_after_first_frame(self) -> None:
        self.run_worker(self._warm_up, thread=True, exit_on_error=False, group="warm-up")

    def _warm_up(self) -> None:
        warm_up = self.ctx.warm_up
        if warm_up is not None:
            try:
                warm_up(self.ctx)
            except OrdoError as exc:
                log.error("kiosk start: %s", exc)
                self.post_message(RunInUi(self._show_lock_message, f"Démarrage incomplet : {exc}"))
            except Exception:
                log.exception("kiosk start failed")
                self.post_message(RunInUi(self._show_lock_message,
                                          "Démarrage incomplet : erreur interne"))
        self.post_message(RunInUi(self._start_services, None))

    def _start_services(self, _: None) -> None:
        watcher = self.ctx.watcher
        if watcher is not None:
            watcher.subscribe(self._card_event)
            watcher.start()
        if self.ctx.printer is not None:
            self.ctx.printer.start(lambda status: self.post_message(PrintStatusChanged(status)))
        self.refresh_status()

    def on_unmount(self) -> None:
        self._stop_services()

    def _stop_services(self) -> None:
        session, self.session = self.session, None
        if session is not None:
            session.lock("shutdown")
        watcher, self.ctx.watcher = self.ctx.watcher, None
        if watcher is not None:
            watcher.stop()
        printer, self.ctx.printer = self.ctx.printer, None
        if printer is not None:
            printer.stop()

    def _hang_up(self) -> None:
        """The terminal is gone (SIGHUP): Textual cannot restore it and may block trying,
        so stop what was started and end the process at once."""
        log.warning("terminal hung up: stopping the kiosk")
        try:
            self._stop_services()
            if self.ctx.on_hangup is not None:
                self.ctx.on_hangup()
        except Exception:
            log.exception("clean-up after hang-up failed")
        finally:
            logging.shutdown()
            os._exit(128 + signal.SIGHUP)

    async def action_quit(self) -> None:
        if self.ctx.allow_quit:
            self.exit()

    async def action_help_quit(self) -> None:
        """ctrl+c does nothing on the kiosk (only systemd stops it)."""

    async def on_event(self, event: events.Event) -> None:
        if isinstance(event, events.Key) and self.session is not None:
            session = self.session
            session.last_activity = session.clock()
        await super().on_event(event)

    def on_run_in_ui(self, message: RunInUi) -> None:
        message.callback(message.value)

    def _start_widget(self, parent: Widget, widget: Widget) -> None:
        """This app's scroll bars (Textual makes them on demand, through here) draw with
        ``PlainScrollBarRender``; Textual's own default, shared by every app, is left as is."""
        if isinstance(widget, ScrollBar):
            widget.renderer = PlainScrollBarRender  # type: ignore[misc]  # per instance
        super()._start_widget(parent, widget)

    # -- card and session ------------------------------------------------------------------
    def _card_event(self, event: CardEvent) -> None:
        """Card monitor thread: lock first (at once), then tell the UI."""
        guard = self._guard
        if guard is not None:
            guard(event)
        self.post_message(CardChanged(event))

    def on_card_changed(self, message: CardChanged) -> None:
        from appliance.ports.card import CardEventKind
        from appliance.tui.screens.lock import LockScreen
        from appliance.tui.screens.pin import PinScreen

        event = message.event
        self._update_card_status()
        if event.kind is CardEventKind.INSERTED and self.session is None:
            if isinstance(self.screen, LockScreen):
                self.push_screen(PinScreen(event.reader))
        elif event.kind in (CardEventKind.REMOVED, CardEventKind.READER_REMOVED,
                            CardEventKind.SERVICE_LOST):
            screen = self.screen
            if isinstance(screen, PinScreen) and (event.reader in ("", screen.reader)):
                self.pop_screen()

    def card_readers_with_card(self) -> list[str]:
        watcher = self.ctx.watcher
        return sorted(watcher.cards()) if watcher is not None else []

    def begin_session(self, session: PractitionerSession, needs_am: bool) -> None:
        """The PIN was right: open the home screen for this practitioner."""
        from appliance.services.auth import SessionGuard
        from appliance.tui.screens.am import AmScreen
        from appliance.tui.screens.home import HomeScreen

        self.session = session
        self._guard = SessionGuard(session)
        session.on_lock(lambda s: self.post_message(SessionLocked(s, s.lock_reason)))
        watcher = self.ctx.watcher
        if watcher is not None and session.reader not in watcher.cards():
            self.run_worker(lambda: session.lock("card_removed"), thread=True,
                            exit_on_error=False)
            return
        self.lock_message = ""
        self._update_card_status()
        while len(self.screen_stack) > 1:
            self.pop_screen()
        self.push_screen(HomeScreen())
        if needs_am:
            self.push_screen(AmScreen())

    def on_session_locked(self, message: SessionLocked) -> None:
        if message.session is not self.session:
            return
        self.session = None
        self._guard = None
        self.lock_message = LOCK_REASONS_FR.get(message.reason, "Session verrouillée.")
        for screen in reversed(self.screen_stack[1:]):
            flush = getattr(screen, "flush_draft", None)
            if flush is not None:
                flush()
        while len(self.screen_stack) > 1:
            self.pop_screen()
        self._show_lock_message(self.lock_message)

    def _show_lock_message(self, text: str) -> None:
        """Keep ``text`` as the lock screen's reason and show it there now."""
        self.lock_message = text
        show = getattr(self.screen_stack[0], "show_locked", None)
        if show is not None:
            show(text)

    def lock_session(self, reason: str = "logout") -> None:
        session = self.session
        if session is not None:
            self.run_worker(lambda: session.lock(reason), thread=True, exit_on_error=False)

    def _check_idle(self) -> None:
        session = self.session
        if session is None or session.locked:
            return
        if session.clock() - session.last_activity > session.idle_timeout_s:
            self.run_worker(session.check_idle, thread=True, exit_on_error=False,
                            group="idle", exclusive=True)

    # -- drafts, saved as typed -------------------------------------------------------------
    def save_draft(self, session: PractitionerSession, draft: Any,
                   form: dict[str, Any] | None) -> None:
        """Save a draft from an app-level worker (it outlives the editor screen); a save
        never overwrites a newer one."""
        self._save_seq += 1
        seq, ctx = self._save_seq, self.ctx

        def save() -> None:
            from appliance.services import prescribing

            with self._save_lock:
                if seq < self._saved_seq or draft.id in self.discarded:
                    return
                try:
                    with ctx.uow() as uow:
                        if uow.prescriptions.get(draft.id) is None:
                            self._draft_again(uow, session, draft, form)
                            return
                        prescribing.update_draft(uow, session, draft, form=form)
                except OrdoError as exc:
                    log.warning("draft not saved: %s", exc)
                    return
                except Exception:
                    log.exception("draft not saved", extra={"fields": {"prescription":
                                                                       draft.id}})
                    return
                self._saved_seq = seq

        self.run_worker(save, thread=True, exit_on_error=False, group="save")

    def _draft_again(self, uow: Any, session: PractitionerSession, draft: Any,
                     form: dict[str, Any] | None) -> None:
        """The draft being typed is gone from the store (not discarded here): what was
        typed goes into a new draft for the same resident, which the editor takes on."""
        from dataclasses import replace

        from appliance.services import prescribing

        if not draft.lines and not form:
            return
        ctx = self.ctx
        fresh = prescribing.new_draft(uow, session, draft.resident.ins.value, ids=ctx.ids,
                                      now=ctx.now())
        saved = prescribing.update_draft(uow, session, replace(
            fresh, lines=draft.lines), form=form)
        log.warning("draft gone from the store: its lines saved again",
                    extra={"fields": {"prescription": draft.id, "now": saved.id}})
        self.post_message(RunInUi(self._redrafted, (draft.id, saved)))

    def _redrafted(self, ids: tuple[str, Any]) -> None:
        from appliance.tui.screens.editor import EditorScreen

        old, saved = ids
        for screen in self.screen_stack:
            if isinstance(screen, EditorScreen) and screen.draft.id == old:
                screen.take_over(saved)

    def discard_draft(self, session: PractitionerSession, prescription_id: str) -> None:
        """Drop a draft once its last save is written. From now on no list shows it (the
        screens leave out ``discarded``), and they refresh once it is gone."""
        ctx = self.ctx
        self.discarded.add(prescription_id)

        def discard() -> None:
            from appliance.services import prescribing

            with self._save_lock:
                try:
                    with ctx.uow() as uow:
                        prescribing.discard_draft(uow, session, prescription_id)
                except Exception:
                    log.exception("draft not discarded")
            self.post_message(DataChanged())

        self.run_worker(discard, thread=True, exit_on_error=False, group="save")

    def screen_info(self, text: str) -> None:
        """Say ``text`` (something done) on the screen now shown."""
        show = getattr(self.screen, "show_info", None)
        if show is not None:
            show(text)

    @property
    def role(self) -> Role | None:
        return self.session.role if self.session is not None else None

    @property
    def who(self) -> str:
        session = self.session
        if session is None:
            return ""
        return f"{session.practitioner.display_name} ({ROLE_LABELS_FR[session.role]})"

    # -- status bar ------------------------------------------------------------------------
    def _update_card_status(self) -> None:
        watcher = self.ctx.watcher
        if watcher is None:
            text = "Carte -"
        elif not watcher.service_up:
            text = "Service carte arrêté"
        elif not watcher.readers():
            text = "Pas de lecteur"
        elif self._reader_in_use() in watcher.cards():
            text = "Carte présente"
        else:
            text = "Carte absente"
        self._set_part("card", text)

    def _reader_in_use(self) -> str | None:
        """The reader of the session, or of the PIN being typed; with neither, the one
        holding a card (the lock screen waits for any)."""
        from appliance.tui.screens.pin import PinScreen

        if self.session is not None:
            return self.session.reader
        screen = self.screen_stack[-1] if self.screen_stack else None
        if isinstance(screen, PinScreen):
            return screen.reader
        watcher = self.ctx.watcher
        cards = sorted(watcher.cards()) if watcher is not None else []
        return cards[0] if cards else None

    def _set_part(self, key: str, text: str) -> None:
        self._parts[key] = text
        self.status_line = " | ".join(self._parts[k] for k in ("card", "printer", "registry",
                                                                "bdpm"))

    def on_print_status_changed(self, message: PrintStatusChanged) -> None:
        status = message.status
        self._queue_pending = status.pending
        self._set_part("printer", _printer_text(status.printer.value, status.pending))
        self.post_message(DataChanged())

    def on_data_changed(self, message: DataChanged) -> None:
        refresh = getattr(self.screen, "refresh_data", None)
        if refresh is not None:
            refresh()

    def refresh_status(self) -> None:
        self._update_card_status()
        probe = self._refreshes % PRINTER_PROBE_EVERY == 0
        self._refreshes += 1
        self.run_worker(lambda: self._collect_status(probe), thread=True, exit_on_error=False,
                        group="status", exclusive=True)

    def _collect_status(self, probe: bool) -> None:
        ctx = self.ctx
        parts: dict[str, str] = {}
        try:
            with ctx.uow() as uow:
                parts["registry"] = _registry_text(uow.views.sync_status(ctx.now()))
                pending = uow.print_jobs.counts().get("queued", 0)
        except Exception:
            log.exception("status: cannot read the store")
            parts["registry"] = "Base illisible !"
            pending = self._queue_pending
        if ctx.printer is not None and probe:
            try:
                parts["printer"] = _printer_text(ctx.printer.probe().state.value, pending)
            except Exception:
                log.exception("status: printer probe failed")
        if ctx.referential is not None:
            try:
                date = ctx.referential.info().date
                parts["bdpm"] = f"BDPM {_short_date(date)}" if date else "BDPM ?"
            except Exception:
                parts["bdpm"] = "BDPM absente"
        self.post_message(RunInUi(self._apply_parts, parts))

    def _apply_parts(self, parts: dict[str, str]) -> None:
        for key, text in parts.items():
            self._set_part(key, text)


PRINTER_FR = {"ready": "prête", "paper_low": "fin de papier", "paper_out": "sans papier",
              "offline": "hors ligne", "unreachable": "injoignable", "unknown": "?"}


def _printer_text(state: str, pending: int) -> str:
    text = f"Imprimante {PRINTER_FR.get(state, state)}"
    return text + (f" ({pending} en file)" if pending else "")


def _short_date(iso: str) -> str:
    year, month, day = iso[:10].split("-")
    return f"{day}/{month}/{year}"


def _registry_text(status: Any) -> str:
    if status.link == "misconfigured":  # nothing leaves until a setting is fixed
        return f"Registre mal configuré : {status.link_key}"
    if status.quarantined:
        return f"Registre : {status.quarantined} rejet(s) !"
    if status.queue_depth:
        if status.link == "down":
            return f"Registre injoignable : {status.queue_depth} à envoyer"
        return f"Registre : {status.queue_depth} à envoyer"
    if status.last_success_at:
        return f"Registre à jour {_short_time(status.last_success_at)}"
    return "Registre jamais joint"


def _short_time(iso: str) -> str:
    from datetime import datetime

    from appliance.domain.prescription import local

    try:
        return local(datetime.fromisoformat(iso)).strftime("%H:%M")
    except ValueError:
        return ""


class PlainScrollBarRender(ScrollBarRender):
    """Scroll bars drawn with colour alone: the Linux console font has no eighth blocks."""

    VERTICAL_BARS: ClassVar[list[str]] = [" "] * 8
    HORIZONTAL_BARS: ClassVar[list[str]] = [" "] * 8


def make_app(ctx: KioskContext) -> OrdoApp:
    """The kiosk app around ``ctx`` (see ``appliance.tui.context``)."""
    return OrdoApp(ctx)
