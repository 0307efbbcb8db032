"""PIN entry: masked, digits only; the card's tries left are shown before and after a try,
the same in the header and in the message, with a warning before the last one."""

from __future__ import annotations

from typing import Any, ClassVar

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Center, Horizontal, Vertical
from textual.widgets import Footer, Input, Label, Static

from appliance.tui.screens.base import KioskScreen, describe_error
from appliance.tui.widgets.status_bar import StatusBar

LAST_TRY = "Attention : dernier essai, un code faux de plus bloque la carte."


class PinScreen(KioskScreen):
    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "cancel", "Annuler")]

    def __init__(self, reader: str) -> None:
        super().__init__()
        self.reader = reader
        self.busy = False
        self.gone = False
        self.holder = ""

    def compose(self) -> ComposeResult:
        with Vertical(id="pin-box"):
            yield Static("Carte détectée", id="pin-title", markup=False)
            yield Static("", id="pin-holder", markup=False)
            with Center(), Horizontal(classes="field", id="pin-field"):
                yield Label("Code PIN : ")
                yield Input(password=True, restrict=r"[0-9]*", max_length=8, id="pin",
                            compact=True)
            yield Static("", id="message", classes="message", markup=False)
        yield StatusBar()
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self.query_one("#pin", Input).focus()
        info, reader = self.ctx.card_info, self.reader
        if info is not None:
            self.background(lambda: info(reader), self._show_holder, failed=lambda _: None)

    def _show_holder(self, result: tuple[str, int | None]) -> None:
        self.holder, tries = result
        self._show_tries(tries)
        if tries == 1:
            self.show_error(LAST_TRY)

    def _show_tries(self, tries: int | None) -> None:
        text = self.holder
        if tries is not None:
            text += f" - {tries} essai(s) de code PIN" if tries else " - carte bloquée"
            if tries == 1:
                text += " (dernier)"
        self.query_one("#pin-holder", Static).update(text)

    def on_unmount(self) -> None:
        self.gone = True

    def action_cancel(self) -> None:
        self.app.pop_screen()

    @on(Input.Submitted, "#pin")
    def submit(self, event: Input.Submitted) -> None:
        if self.busy:
            return
        pin = event.value
        event.input.value = ""
        if not pin:
            return
        self.busy = True
        self.show_info("Vérification du code PIN…")
        ctx, reader = self.ctx, self.reader

        def login() -> tuple[Any, bool]:
            # Imported here: the card monitor's first event opens this module, before the
            # lock screen is drawn; the login has loaded the auth service by now.
            from appliance.services import prescribing
            from appliance.services.auth import AuthRefused

            session = ctx.login(reader, pin)
            try:
                if self.gone:  # the card left while its PIN was checked
                    raise AuthRefused("locked")
                with ctx.uow() as uow:
                    prescribing.register_login(uow, session)
                    needs_am = prescribing.needs_am(uow, session)
            except BaseException:
                session.lock("card_removed" if self.gone else "logout")
                raise
            return session, needs_am

        self.background(login, self._logged_in, failed=self._refused)

    def _logged_in(self, result: tuple[Any, bool]) -> None:
        self.busy = False
        session, needs_am = result
        self.kiosk.begin_session(session, needs_am)

    def _refused(self, exc: BaseException) -> None:
        self.busy = False
        self.query_one("#pin", Input).value = ""
        if getattr(exc, "reason", None) == "wrong_pin":  # AuthRefused
            tries = getattr(exc, "tries_left", None)
            if tries is not None and self.holder:
                self._show_tries(tries)
            # with the tries left when the card tells them
            self.show_error(f"{exc} {LAST_TRY}" if tries == 1 else str(exc))
        else:
            self.show_error(describe_error(exc))
