"""Recording a resident's allergy or intolerance: the substance (a name or a BDPM substance
code, resolved against the drug referential) and who reported it. The prescribing checks
then block any drug holding that substance (or another salt of it)."""

from __future__ import annotations

from typing import ClassVar

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.widgets import Input, Label, Static

from appliance.domain.people import Resident
from appliance.services.allergies import MAX_SOURCE
from appliance.tui.screens.base import KioskModal


class AllergyScreen(KioskModal):
    """Dismissed with ``(substance text, source)``, or None."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "back", "Ne pas enregistrer")]

    def __init__(self, resident: Resident) -> None:
        super().__init__()
        self.resident = resident

    def compose(self) -> ComposeResult:
        with Vertical(id="allergy-box", classes="dialog"):
            yield Static(f"Allergie ou intolérance de {self.resident.display_name}",
                         classes="dialog-title", markup=False)
            with Horizontal(classes="field"):
                yield Label("Substance : ")
                yield Input(max_length=100, id="substance", compact=True,
                            placeholder="nom ou code de substance (ex. amoxicilline)")
            with Horizontal(classes="field"):
                yield Label("Source : ")
                yield Input(max_length=MAX_SOURCE, id="source", compact=True,
                            placeholder="qui l'a signalée (famille, dossier médical...)")
            yield Static("Entrée : enregistrer    Échap : ne pas enregistrer", classes="hint",
                         markup=False)
            yield Static("", id="message", classes="message", markup=False)

    def on_mount(self) -> None:
        self.query_one("#substance", Input).focus()

    def action_back(self) -> None:
        self.dismiss(None)

    @on(Input.Submitted, "#substance")
    def _substance(self, event: Input.Submitted) -> None:
        if not event.value.strip():
            self.query_one("#message", Static).update("La substance est obligatoire.")
            return
        self.query_one("#source", Input).focus()

    @on(Input.Submitted, "#source")
    def _source(self, event: Input.Submitted) -> None:
        substance = self.query_one("#substance", Input).value.strip()
        source = " ".join(event.value.split())
        if not substance:
            self.query_one("#substance", Input).focus()
            return
        if not source:
            self.query_one("#message", Static).update(
                "La source est obligatoire (qui a signalé l'allergie).")
            return
        self.dismiss((substance, source))
