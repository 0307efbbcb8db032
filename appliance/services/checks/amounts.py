"""Arithmetic of a structured posology against a specialty's strength.

Everything here errs low: when a figure cannot be known for sure (a free-text posology,
drops, a dose in mg of a combination, "si besoin" without a maximum) it is ``None`` and no
dose alert follows; when a posology allows a range, the smaller reading is taken (one intake
every 5 hours is 4.8 intakes a day, not 5; a month lasts at least 28 days).
"""

from __future__ import annotations

from decimal import Decimal

from appliance.domain.drug_facts import IU_UNIT, MASS_UNIT, Component, DrugInfo
from appliance.domain.posology import Posology

HOURS_PER_DAY = Decimal(24)
MASS_UNITS = {"mg": Decimal(1), "g": Decimal(1000), "\u00b5g": Decimal("0.001")}
# Posology units that count units of a presentation, and the presentation unit they count.
COUNTED_UNITS = {"comprimé": "comprimé", "gélule": "gélule", "sachet": "sachet",
                 "suppositoire": "suppositoire", "ampoule": "ampoule", "ovule": "ovule",
                 "patch": "patch", "dose": "dose", "flacon": "flacon", "stylo": "stylo"}
SOLID_UNITS = frozenset({"comprimé", "gélule", "sachet", "suppositoire", "ovule"})
DAYS_MIN = {"jour": 1, "semaine": 7, "mois": 28}
DAYS_MAX = {"jour": 1, "semaine": 7, "mois": 31}


def intakes_per_day(p: Posology) -> Decimal | None:
    """Intakes on a day of treatment by the frequency alone (None: single intake or "si
    besoin" without a frequency); every N hours counts 24/N (the lower reading)."""
    if p.moments:
        return Decimal(len(p.moments))
    if p.times_per_day is not None:
        return Decimal(p.times_per_day)
    if p.interval_hours is not None:
        return HOURS_PER_DAY / p.interval_hours if p.interval_hours <= 24 else Decimal(1)
    if p.every_days is not None or p.times_per_week is not None:
        return Decimal(1)
    return None


def units_per_day(p: Posology) -> Decimal | None:
    """The most units the posology allows on one day of treatment.

    "Si besoin" counts its daily maximum when given, else its frequency; without either it
    is unknown. A single intake is its dose.
    """
    if p.as_needed and p.max_per_day is not None:
        return p.max_per_day
    if p.moment_doses:
        return sum(p.moment_doses, Decimal(0))
    count = intakes_per_day(p)
    if count is None:
        return None if p.as_needed else p.dose
    return p.dose * count


def largest_intake(p: Posology) -> Decimal:
    """The largest single intake, in the posology's unit."""
    return max((p.dose, *p.moment_doses))


def _mass_ratio(component: Component, drug: DrugInfo) -> Decimal | None:
    """How much of ``component`` one mg of the drug's labelled moiety holds: the component's
    amount over the largest amount of its group (a salt weighs more than its base, so a dose
    written in mg is read as the salt's: the lower reading of the base)."""
    if component.amount is None or component.amount_unit != MASS_UNIT:
        return None
    group = [c.amount for c in drug.components
             if c.group == component.group and c.amount is not None
             and c.amount_unit == MASS_UNIT and c.per_unit == component.per_unit
             and c.per_ml == component.per_ml]
    largest = max(group, default=None)
    if not largest:
        return None
    return component.amount / largest


SINGLE_SOLID_UNITS = frozenset({"comprimé", "gélule"})


def amount_in(component: Component, drug: DrugInfo, quantity: Decimal, unit: str,
              form_unit: str | None = None) -> tuple[Decimal, str] | None:
    """How much of ``component`` (in mg or UI) ``quantity`` ``unit`` of the drug hold, or
    None when it cannot be known.

    ``form_unit``: the unit the presentation is taken in (its form). When the posology counts
    that unit and the strength is given for one tablet or capsule, the strength is read as
    one unit's even if CIS_COMPO names the other (a few gélules there are "un comprimé").
    """
    if unit in MASS_UNITS:
        if not drug.single_substance:
            return None
        ratio = _mass_ratio(component, drug)
        return None if ratio is None else (quantity * MASS_UNITS[unit] * ratio, MASS_UNIT)
    if component.amount is None or component.amount_unit is None:
        return None
    if unit == IU_UNIT:
        if drug.single_substance and component.amount_unit == IU_UNIT:
            return quantity, IU_UNIT
        return None
    if unit == "mL":
        if component.per_ml:
            return quantity * component.amount / component.per_ml, component.amount_unit
        return None
    counted = COUNTED_UNITS.get(unit)
    if counted is not None and component.per_unit == counted:
        return quantity * component.amount, component.amount_unit
    if (counted is not None and counted == form_unit and counted in SINGLE_SOLID_UNITS
            and component.per_unit in SINGLE_SOLID_UNITS):
        return quantity * component.amount, component.amount_unit
    return None


def duration_days(p: Posology, renewals: int) -> tuple[int, int] | None:
    """Least and most days the line lasts with its renewals, or None without a duration."""
    if p.duration is None:
        return None
    times = 1 + max(0, renewals)
    value, unit = p.duration.value, p.duration.unit
    return value * DAYS_MIN[unit] * times, value * DAYS_MAX[unit] * times
