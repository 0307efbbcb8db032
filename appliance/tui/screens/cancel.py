"""Cancelling a signed prescription: the reason is required (it goes to the registry)."""

from __future__ import annotations

from typing import ClassVar

from textual.binding import Binding, BindingType

from appliance.domain.prescription_id import format_id
from appliance.tui.screens.reason import ReasonScreen


class CancelScreen(ReasonScreen):
    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "back", "Ne pas annuler")]

    def __init__(self, prescription_id: str) -> None:
        super().__init__(
            "cancel-box", f"Annuler l'ordonnance {format_id(prescription_id)}",
            "Possible seulement avant toute délivrance. Le registre sera prévenu.",
            "Entrée : annuler l'ordonnance    Échap : ne pas annuler")
        self.prescription_id = prescription_id
