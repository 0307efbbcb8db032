"""A dialog that asks for a required reason (cancelling an order, stopping a line): Entrée
gives the reason, whitespace tidied; Échap gives None."""

from __future__ import annotations

from textual import on
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widgets import Input, Label, Static

from appliance.tui.screens.base import KioskModal


class ReasonScreen(KioskModal):
    def __init__(self, box_id: str, title: str, explanation: str, hint: str) -> None:
        super().__init__()
        self.box_id, self.title_text = box_id, title
        self.explanation, self.hint = explanation, hint

    def compose(self) -> ComposeResult:
        with Vertical(id=self.box_id, classes="dialog"):
            yield Static(self.title_text, classes="dialog-title", markup=False)
            yield Static(self.explanation, markup=False)
            with Horizontal(classes="field"):
                yield Label("Motif : ")
                yield Input(max_length=500, id="reason", compact=True)
            yield Static(self.hint, classes="hint", markup=False)
            yield Static("", id="message", classes="message", markup=False)

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
