"""Recording a resident's allergies and intolerances, for the prescribing checks.

An allergy is recorded against a substance of the drug referential: by its name or BDPM
substance code (``add_by_name``), or as the active substances of a drug the resident
reacted to (``add_from_drug``). Each record keeps the day, the source (who reported it)
and who recorded it; the audit chain gets the record's number only (an allergy is health
data). Adding a substance already recorded for the resident keeps the first record.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from appliance.domain.drug_facts import Allergy
from appliance.errors import StoreError, ValidationError
from appliance.ports.clock import utc_now
from appliance.ports.drugs import DrugFacts, SubstanceLookup
from appliance.ports.uow import UnitOfWork

MAX_SOURCE = 200

@dataclass(frozen=True)
class Added:
    """The outcome of recording one substance: its record id, or None if already known."""

    substance_code: str
    substance: str
    id: int | None


def resolve(lookup: SubstanceLookup, text: str) -> tuple[str, str]:
    """The substance (code, name) that ``text`` names; ``ValidationError`` if none."""
    found = lookup.substances(text) if text and text.strip() else []
    if not found:
        raise ValidationError("allergies", text,
                              "a substance of the drug referential (name or BDPM code)")
    return found[0]


def _source(source: str) -> str:
    text = " ".join((source or "").split())
    if not text or len(text) > MAX_SOURCE:
        raise ValidationError("source", source,
                              f"who reported the allergy, 1 to {MAX_SOURCE} characters")
    return text


def _record(uow: UnitOfWork, ins: str, substances: list[tuple[str, str]], *, source: str,
            actor: str, recorded_on: date | None) -> list[Added]:
    source = _source(source)
    when = recorded_on or utc_now().date()
    out = []
    with uow:
        if uow.residents.get(ins) is None:
            raise StoreError("résident inconnu")
        for code, name in substances:
            allergy = Allergy(substance_code=code, substance=name, recorded_on=when,
                              source=source)
            record = uow.allergies.add(ins, allergy, recorded_by=actor)
            if record is not None:
                uow.audit.append(actor=actor, action="allergy.recorded",
                                 details={"allergy": record})
            out.append(Added(code, name, record))
        uow.commit()
    return out


def add_by_name(uow: UnitOfWork, lookup: SubstanceLookup, *, ins: str, text: str,
                source: str, actor: str, recorded_on: date | None = None) -> Added:
    """Record an allergy to the substance ``text`` names (name or BDPM code)."""
    return _record(uow, ins, [resolve(lookup, text)], source=source, actor=actor,
                   recorded_on=recorded_on)[0]


def add_from_drug(uow: UnitOfWork, facts: DrugFacts, *, ins: str, source: str, actor: str,
                  cis: str | None = None, cip13: str | None = None,
                  recorded_on: date | None = None) -> list[Added]:
    """Record an allergy to each active substance of a drug (as a physician reads them:
    the base rather than its salt)."""
    drug = facts.drug(cis=cis, cip13=cip13)
    if drug is None or not drug.components:
        raise ValidationError("drug", cip13 or cis, "a drug of the referential")
    shown = drug.shown_substances()
    substances = list(dict.fromkeys((c.substance_code, c.substance) for c in drug.components
                                    if c.substance in shown))
    return _record(uow, ins, substances, source=source, actor=actor,
                   recorded_on=recorded_on)


def of_resident(uow: UnitOfWork, ins: str) -> list[Allergy]:
    return uow.allergies.of_resident(ins)
