"""The alerts of the prescribing-safety checks and their inputs."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date
from enum import StrEnum
from typing import Protocol

from appliance.domain import JsonObject
from appliance.domain.drug_facts import Allergy
from appliance.domain.people import Resident
from appliance.domain.posology import FreeTextPosology, Posology
from appliance.domain.prescription import Line, MedicationLine
from appliance.ports.drugs import DrugFacts, Interaction, InteractionLevel, InteractionSource

# The drug database's port (``appliance.ports.drugs``) is re-exported for the checks' callers.
__all__ = ["Alert", "CurrentMedication", "DraftLike", "DrugFacts", "Interaction",
           "InteractionLevel", "InteractionSource", "ResidentProfile", "Severity",
           "sort_alerts"]


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

    def to_dict(self) -> JsonObject:
        return {"code": self.code, "key": self.key, "severity": self.severity.value,
                "message": self.message, "source": self.source, "line": self.line,
                "overridable": self.overridable}


def sort_alerts(alerts: Iterable[Alert]) -> list[Alert]:
    """Most severe first, then by line (draft-wide alerts first), then by code."""
    return sorted(alerts, key=lambda a: (SEVERITY_ORDER[a.severity],
                                         -1 if a.line is None else a.line, a.code))


# -- inputs ----------------------------------------------------------------------------------
class DraftLike(Protocol):
    """A draft or a prescription being written: its lines (each with its renewals)."""

    @property
    def lines(self) -> Sequence[Line]: ...


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
