"""Prescription and dispensing conditions of the BDPM (CIS_CPD_bdpm.txt), sorted by what they
mean for a prescription written in a nursing home.

The texts are the ANSM's own, one condition a row; the patterns below were checked against
every distinct text of the 2022 extract (about 150). A text no pattern knows ("liste I",
"liste II", information about dispensing...) raises nothing.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from enum import StrEnum

from appliance.domain.people import fold


class ConditionKind(StrEnum):
    HOSPITAL_ONLY = "hospital_only"            # réservé à l'usage hospitalier
    PUI_ONLY = "pui_only"                      # délivrance réservée aux PUI
    HOSPITAL_PRESCRIPTION = "hospital_prescription"
    INITIAL_HOSPITAL = "initial_hospital"      # prescription initiale hospitalière ...
    SPECIALIST = "specialist"                  # réservée aux spécialistes / renouvellement ...
    RESTRICTED_USE = "restricted_use"          # réservé à l'usage professionnel, urgence ...
    MAX_DURATION = "max_duration"              # prescription limitée à N semaines
    SECURE = "secure"                          # stupéfiants, ordonnance sécurisée
    FRACTIONED = "fractioned"                  # délivrance fractionnée de N jours
    MONITORING = "monitoring"                  # surveillance particulière


@dataclass(frozen=True)
class Condition:
    kind: ConditionKind
    text: str
    max_days: int | None = None  # MAX_DURATION: the longest duration allowed, in days


_DAYS = {"jour": 1, "jours": 1, "semaine": 7, "semaines": 7, "mois": 31}
_LIMIT = re.compile(r"^prescription limitee a (\d+) (jours?|semaines?|mois)"
                    r"(?: ou (\d+) (jours?|semaines?|mois))?$")
_RULES: tuple[tuple[ConditionKind, re.Pattern[str]], ...] = (
    (ConditionKind.HOSPITAL_ONLY, re.compile(r"^reserve a l ?usage hospitalier$")),
    (ConditionKind.PUI_ONLY,
     re.compile(r"^delivrance reservee aux pharmacies a usage interieur$")),
    (ConditionKind.HOSPITAL_PRESCRIPTION, re.compile(r"^prescription hospitaliere$")),
    (ConditionKind.INITIAL_HOSPITAL, re.compile(r"^prescription initiale hospitaliere")),
    (ConditionKind.SPECIALIST, re.compile(
        r"^(?:prescription (?:initiale )?(?:annuelle |semestrielle )?(?:reservee|reserve)"
        r"|prescription initiale (?:annuelle |semestrielle )?reservee"
        r"|renouvellement de la prescription reserve"
        r"|prescription (?:initiale )?par un medecin exercant"
        r"|hors etablissement de sante prescription reservee)")),
    (ConditionKind.RESTRICTED_USE, re.compile(
        r"^(?:reserve (?:a|aux) |delivrance reservee aux ets "
        r"|l administration doit etre effectuee dans un etablissement)")),
    (ConditionKind.SECURE, re.compile(
        r"^(?:stupefiants|prescription en toutes lettres sur ordonnance securisee)$")),
    (ConditionKind.FRACTIONED, re.compile(r"^delivrance fractionnee de \d+ jours$")),
    (ConditionKind.MONITORING, re.compile(
        r"^medicament necessitant une surveillance particuliere pendant le traitement$")),
)


def _key(text: str) -> str:
    return " ".join(re.sub(r"[^a-z0-9]+", " ", fold(text)).split())


@functools.lru_cache(maxsize=1024)
def classify(text: str) -> Condition | None:
    """What a CIS_CPD text means here, or None when it asks nothing of the prescriber."""
    key = _key(text)
    limit = _LIMIT.match(key)
    if limit:
        days = [int(limit[1]) * _DAYS[limit[2]]]
        if limit[3]:
            days.append(int(limit[3]) * _DAYS[limit[4]])
        return Condition(ConditionKind.MAX_DURATION, text, max(days))
    for kind, pattern in _RULES:
        if pattern.match(key):
            return Condition(kind, text)
    return None
