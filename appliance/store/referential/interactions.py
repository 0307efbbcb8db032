"""The interaction source Ordo ships: none.

The BDPM carries no drug interactions and no open machine-readable source exists (the
ANSM's thesaurus of interactions is published as a PDF), so Ordo invents none: this
adapter of ``appliance.ports.drugs.InteractionSource`` finds no interaction. A licensed
drug database (Thériaque, BCB, Vidal...) replaces it in the composition root
(``appliance.bootstrap.App.interactions``); the checks turn its findings into
``interaction.*`` alerts.
"""

from __future__ import annotations

from collections.abc import Sequence

from appliance.domain.drug_facts import DrugInfo
from appliance.ports.drugs import Interaction


class NoInteractionData:
    """``InteractionSource`` without data: no interaction is ever reported."""

    source = "aucune base d'interactions installée"

    def interactions(self, drugs: Sequence[DrugInfo]) -> Sequence[Interaction]:
        return ()
