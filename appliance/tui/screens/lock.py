"""The lock screen: "Insérez votre carte CPS", the reason of the last lock, the status bar."""

from __future__ import annotations

from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.widgets import Footer, Static

from appliance.tui.screens.base import KioskScreen
from appliance.tui.widgets.status_bar import StatusBar


class LockScreen(KioskScreen):
    BINDINGS: ClassVar[list[BindingType]] = [Binding("enter", "pin", "Saisir le code PIN")]

    def compose(self) -> ComposeResult:
        with Vertical(id="lock-box"):
            yield Static(self.ctx.establishment, id="lock-title", markup=False)
            yield Static("Insérez votre carte CPS", id="lock-prompt", markup=False)
            yield Static("", id="lock-reason", markup=False)
            yield Static(self.ctx.banner, id="lock-banner", markup=False)
        yield StatusBar()
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self.show_locked(self.kiosk.lock_message)

    def on_screen_resume(self) -> None:
        self.show_locked(self.kiosk.lock_message)

    def show_locked(self, message: str) -> None:
        self.query_one("#lock-reason", Static).update(message)

    def action_pin(self) -> None:
        """After an idle lock the card is still in: Enter asks for the PIN again."""
        from appliance.tui.screens.pin import PinScreen

        readers = self.kiosk.card_readers_with_card()
        if readers and self.session is None:
            self.app.push_screen(PinScreen(readers[0]))
