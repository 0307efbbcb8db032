"""Stopping a line of the current treatment: the reason is required (it stays in the
resident's file; the next renewal leaves the line out)."""

from __future__ import annotations

from typing import ClassVar

from textual.binding import Binding, BindingType

from appliance.tui.screens.reason import ReasonScreen


class StopLineScreen(ReasonScreen):
    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "back", "Ne pas arrêter")]

    def __init__(self, label: str) -> None:
        super().__init__(
            "stop-box", f"Arrêter : {label[:58]}",
            "La ligne sort du traitement en cours ; le prochain renouvellement la laisse de "
            "côté.", "Entrée : arrêter la ligne    Échap : ne pas arrêter")
        self.label = label
