"""A yes/no question before something that cannot be undone (discarding a draft): Entrée
answers yes, Échap no."""

from __future__ import annotations

from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.widgets import Static

from appliance.tui.screens.base import KioskModal


class ConfirmScreen(KioskModal):
    BINDINGS: ClassVar[list[BindingType]] = [Binding("enter", "answer(True)", "Oui"),
                                             Binding("escape", "answer(False)", "Non")]

    def __init__(self, title: str, text: str, yes: str) -> None:
        super().__init__()
        self.title_text, self.text, self.yes = title, text, yes

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Static(self.title_text, classes="dialog-title", markup=False)
            yield Static(self.text, id="confirm-text", markup=False)
            yield Static(f"Entrée : {self.yes}    Échap : ne rien changer", classes="hint",
                         markup=False)

    def action_answer(self, yes: bool) -> None:
        self.dismiss(yes)
