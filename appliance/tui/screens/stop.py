"""Stopping a line of the current treatment: the reason is required (it stays in the
resident's file; the next renewal leaves the line out)."""

from __future__ import annotations

from typing import ClassVar

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.widgets import Input, Label, Static

from appliance.tui.screens.base import KioskModal


class StopLineScreen(KioskModal):
    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "back", "Ne pas arrêter")]

    def __init__(self, label: str) -> None:
        super().__init__()
        self.label = label

    def compose(self) -> ComposeResult:
        with Vertical(id="stop-box", classes="dialog"):
            yield Static(f"Arrêter : {self.label[:58]}", classes="dialog-title")
            yield Static("La ligne sort du traitement en cours ; le prochain renouvellement "
                         "la laisse de côté.")
            with Horizontal(classes="field"):
                yield Label("Motif : ")
                yield Input(max_length=500, id="reason", compact=True)
            yield Static("Entrée : arrêter la ligne    Échap : ne pas arrêter",
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
