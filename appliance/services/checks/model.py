"""The alerts of the prescribing-safety checks, their inputs and their ports."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date
from enum import StrEnum
from typing import Any, Protocol

from appliance.domain.drug_facts import Allergy, DrugInfo
from appliance.domain.people import Resident
from appliance.domain.posology import FreeTextPosology, Posology
from appliance.domain.prescription import Line, MedicationLine


class Severity(StrEnum):
    """``bloquant``: signing needs an override with a typed reason (or is refused when the
    alert cannot be overridden); ``important``: needs an acknowledgement; ``info``: shown."""

    BLOQUANT = "bloquant"
    IMPORTANT = "important"
    INFO = "info"


SEVERITY_ORDER = {Severity.BLOQUANT: 0, Severity.IMPORTANT: 1, Severity.INFO: 2}


@dataclass(frozen=True)
class Alert:
    """One finding on a draft.

    ``code`` is stable and machine-readable (``dose.max_daily``); ``line`` is the index of
    the draft line it concerns (0-based; None for the whole draft) and ``message`` names the
    line by its position (1-based) and drug; ``source`` says where the rule or the figure
    comes from. ``key`` (``code@position``) identifies the alert in acknowledgements and
    overrides.
    """

    code: str
    severity: Severity
    message: str
    source: str
    line: int | None = None
    overridable: bool = True

    @property
    def position(self) -> int | None:
        return None if self.line is None else self.line + 1

    @property
    def key(self) -> str:
        return self.code if self.line is None else f"{self.code}@{self.line + 1}"

    def to_dict(self) -> dict[str, Any]:
        return {"code": self.code, "key": self.key, "severity": self.severity.value,
                "message": self.message, "source": self.source, "line": self.line,
                "overridable": self.overridable}


def sort_alerts(alerts: Iterable[Alert]) -> list[Alert]:
    """Most severe first, then by line (draft-wide alerts first), then by code."""
    return sorted(alerts, key=lambda a: (SEVERITY_ORDER[a.severity],
                                         -1 if a.line is None else a.line, a.code))


# -- inputs ----------------------------------------------------------------------------------
class DraftLike(Protocol):
    """A draft or a prescription being written: its lines and its renewals."""

    @property
    def lines(self) -> Sequence[Line]: ...

    @property
    def renewals(self) -> int: ...


@dataclass(frozen=True)
class ResidentProfile:
    """What the checks need to know about the resident: age and allergies."""

    birth_date: date | None
    allergies: tuple[Allergy, ...] = ()

    @classmethod
    def of(cls, resident: Resident, allergies: Iterable[Allergy] = ()) -> ResidentProfile:
        return cls(resident.birth_date, tuple(allergies))

    def age(self, today: date) -> int | None:
        if self.birth_date is None:
            return None
        before_birthday = (today.month, today.day) < (self.birth_date.month,
                                                      self.birth_date.day)
        return today.year - self.birth_date.year - before_birthday


@dataclass(frozen=True)
class CurrentMedication:
    """A medication the resident already takes (a line of a prescription still running).

    ``until``: the last day of the treatment when known; a line that ended before the day
    of the check is ignored. The caller leaves out the lines that the draft replaces (a
    renewal), otherwise each renewed drug reads as taken twice.
    """

    label: str
    cis: str | None = None
    cip13: str | None = None
    posology: Posology | FreeTextPosology | None = None
    until: date | None = None
    prescription_id: str | None = field(default=None, compare=False)

    @classmethod
    def from_line(cls, line: MedicationLine, *, until: date | None = None,
                  prescription_id: str | None = None) -> CurrentMedication:
        return cls(line.label, line.cis, line.cip13, line.posology, until, prescription_id)


# -- ports -----------------------------------------------------------------------------------
class DrugFacts(Protocol):
    """What the checks read from a drug database (``ReferentialFacts`` for the BDPM).

    An adapter may also offer ``prefetch(cis=..., cip13=...)``: the checks then announce
    every code of the draft and of the current treatment before asking for them one by one,
    so that they can be read in one round trip.
    """

    def drug(self, cis: str | None = None, cip13: str | None = None) -> DrugInfo | None:
        """The specialty of a CIS or of a CIP13's presentation; None when unknown."""


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
