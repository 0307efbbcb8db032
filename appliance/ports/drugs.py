"""The drug database port: what the prescribing-safety checks read about drugs, substances
and interactions.

``DrugFacts`` gives a specialty as ``appliance.domain.drug_facts.DrugInfo`` (form, routes,
prescription conditions, active components with their strengths);
``appliance.store.referential.facts.ReferentialFacts`` reads it from the BDPM referential
file. ``SubstanceLookup`` resolves a substance written by name or BDPM code (allergies).
``InteractionSource`` is where a licensed drug-interaction database (Thériaque, BCB,
Vidal...) plugs in: no open machine-readable source exists (the ANSM's thesaurus is a PDF),
so the adapter Ordo ships (``appliance.store.referential.interactions``) knows none.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

from appliance.domain.drug_facts import DrugInfo

__all__ = ["DrugFacts", "Interaction", "InteractionLevel", "InteractionSource",
           "SubstanceLookup"]


class DrugFacts(Protocol):
    """What the checks read from a drug database (``ReferentialFacts`` for the BDPM).

    An adapter may also offer ``prefetch(cis=..., cip13=...)``: the checks then announce
    every code of the draft and of the current treatment before asking for them one by one,
    so that they can be read in one round trip.
    """

    def drug(self, cis: str | None = None, cip13: str | None = None) -> DrugInfo | None:
        """The specialty of a CIS or of a CIP13's presentation; None when unknown."""


class SubstanceLookup(Protocol):
    """Substances of the drug database by name or code (``ReferentialFacts``)."""

    def substances(self, text: str) -> list[tuple[str, str]]:
        """(code, name) of the substances ``text`` names, best first."""


class InteractionLevel(StrEnum):
    """The four levels of the ANSM's thesaurus of drug interactions."""

    CONTRAINDICATION = "contre-indication"
    NOT_RECOMMENDED = "association déconseillée"
    PRECAUTION = "précaution d'emploi"
    TAKE_INTO_ACCOUNT = "à prendre en compte"


@dataclass(frozen=True)
class Interaction:
    """An interaction between ``drugs[first]`` and ``drugs[second]`` of the list given to
    ``InteractionSource.interactions``, with the database's own wording and reference."""

    first: int
    second: int
    level: InteractionLevel
    text: str
    source: str


class InteractionSource(Protocol):
    """A licensed drug-interaction database (Thériaque, BCB, Vidal...) plugs in here. No
    open machine-readable source exists (the ANSM's thesaurus is a PDF): Ordo ships none."""

    def interactions(self, drugs: Sequence[DrugInfo]) -> Sequence[Interaction]:
        """The interactions between the drugs of the list, by index."""
