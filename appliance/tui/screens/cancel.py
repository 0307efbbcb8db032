"""Cancelling a signed prescription: the reason is required (it goes to the registry)."""

from __future__ import annotations

from typing import ClassVar

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.widgets import Input, Label, Static

from appliance.domain.prescription_id import format_id
from appliance.tui.screens.base import KioskModal


class CancelScreen(KioskModal):
    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "back", "Ne pas annuler")]

    def __init__(self, prescription_id: str) -> None:
        super().__init__()
        self.prescription_id = prescription_id

    def compose(self) -> ComposeResult:
        with Vertical(id="cancel-box", classes="dialog"):
            yield Static(f"Annuler l'ordonnance {format_id(self.prescription_id)}",
                         classes="dialog-title")
            yield Static("Possible seulement avant toute délivrance. Le registre sera "
                         "prévenu.")
            with Horizontal(classes="field"):
                yield Label("Motif : ")
                yield Input(max_length=500, id="reason", compact=True)
            yield Static("Entrée : annuler l'ordonnance    Échap : ne pas annuler",
                         classes="hint")
            yield Static("", id="message", classes="message")

    def on_mount(self) -> None:
        self.query_one("#reason", Input).focus()

    def action_back(self) -> None:
        self.dismiss(None)

    @on(Input.Submitted, "#reason")
    def submit(self, event: Input.Submitted) -> None:
        reason = " ".join(event.value.split())
        if not reason:
            self.query_one("#message", Static).update("Le motif est obligatoire.")
            return
        self.dismiss(reason)
