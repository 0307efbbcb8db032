"""No posology, draft, drug fact or treatment makes the checker crash (hypothesis)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from appliance.domain.drug_facts import Allergy, Component, DrugInfo
from appliance.domain.posology import (
    DURATION_UNITS,
    KNOWN_ROUTES,
    KNOWN_UNITS,
    MEASURE_UNITS,
    MOMENTS,
    Duration,
    FreeTextPosology,
    Posology,
)
from appliance.domain.prescription import MedicationLine
from appliance.errors import ValidationError
from appliance.services.checks import CurrentMedication, ResidentProfile, check, decide
from tests.unit.test_fuzz_strategies import FUZZ

CODES = ["02202", "86571", "25975", "39727", "93748", "02087", "00093", "12345", "05248"]
NAMES = ["PARACÉTAMOL", "CHLORHYDRATE DE TRAMADOL", "TARTRATE DE ZOLPIDEM", "AMLODIPINE",
         "BÉSILATE D'AMLODIPINE", "HYDROXYZINE (DICHLORHYDRATE DE)", "CHLORURE DE POTASSIUM",
         "", "(", "X (Y DE", "ÉÈ’ DE D'"]
CONDITIONS = ["réservé à l'usage HOSPITALIER", "prescription limitée à 4 semaines",
              "prescription limitée à 7 jours ou 28 jours", "stupéfiants", "liste I",
              "prescription initiale hospitalière", "médicament nécessitant une surveillance "
              "particulière pendant le traitement", "délivrance fractionnée de 7 jours", ""]
FORMS = ["comprimé", "gélule", "sirop", "poudre pour solution buvable", "dispositif", "",
         "solution buvable en gouttes", "suppositoire", "capsule molle"]
ROUTES = ["orale", "transdermique", "ophtalmique", "cutanée", "intraveineuse", "rectale"]
TEXTS = ["999 comprimés", "1 cp matin et soir", "jusqu'à 6 comprimés par jour", "1/0 sachet",
         "6 comprimés en 3 prises", "dix gouttes", "½ cp", "3,5 gélules", "1/2 sachet"]
decimals = st.decimals(min_value=Decimal("0.001"), max_value=Decimal(1_000_000), places=3,
                       allow_nan=False, allow_infinity=False)


@st.composite
def components(draw):
    amount = draw(st.none() | decimals)
    return Component(
        draw(st.sampled_from(CODES)), draw(st.sampled_from(NAMES)),
        draw(st.sampled_from(["SA", "FT", ""])), draw(st.sampled_from(["comprimé", ""])),
        draw(st.integers(0, 3)), amount, draw(st.sampled_from(["mg", "UI", None])),
        draw(st.sampled_from(["comprimé", "gélule", "sachet", "patch", None])),
        draw(st.none() | decimals), "")


@st.composite
def drugs(draw, cis):
    return DrugInfo(cis, draw(st.sampled_from(NAMES)), draw(st.sampled_from(FORMS)),
                    tuple(draw(st.lists(st.sampled_from(ROUTES), max_size=2))),
                    tuple(draw(st.lists(st.sampled_from(CONDITIONS), max_size=4))),
                    tuple(draw(st.lists(components(), max_size=4))))


@st.composite
def posologies(draw):
    if draw(st.booleans()):
        text = draw(st.sampled_from(TEXTS) | st.text(min_size=1, max_size=60))
        try:
            return FreeTextPosology(text)
        except ValidationError:
            return FreeTextPosology("999 comprimés jusqu'à 6/j")
    kind = draw(st.sampled_from(["moments", "times_per_day", "interval_hours", "every_days",
                                 "times_per_week", None]))
    kw = {}
    if kind == "moments":
        kw["moments"] = tuple(draw(st.lists(st.sampled_from(MOMENTS), min_size=1, max_size=4,
                                            unique=True)))
    elif kind == "times_per_day":
        kw[kind] = draw(st.integers(1, 24))
    elif kind == "interval_hours":
        kw[kind] = draw(st.integers(1, 168))
    elif kind == "every_days":
        kw[kind] = draw(st.integers(2, 366))
    elif kind == "times_per_week":
        kw[kind] = draw(st.integers(1, 6))
    as_needed = draw(st.booleans()) or (kind is None and draw(st.booleans()))
    dose = draw(decimals)
    if as_needed:
        kw["as_needed"] = True
        if draw(st.booleans()):
            kw["max_per_day"] = min(dose + draw(decimals), Decimal(1_000_000))
    if (kind or as_needed) and draw(st.booleans()):
        unit = draw(st.sampled_from(DURATION_UNITS))
        kw["duration"] = Duration(draw(st.integers(1, {"jour": 366, "semaine": 52,
                                                       "mois": 12}[unit])), unit)
    if draw(st.booleans()):
        kw["route"] = draw(st.sampled_from(KNOWN_ROUTES))
    unit = draw(st.sampled_from([*KNOWN_UNITS, *MEASURE_UNITS, "injection"]))
    return Posology(dose=dose, unit=unit, **kw)


@dataclass
class Facts:
    drugs: dict

    def drug(self, cis=None, cip13=None):
        return self.drugs.get(cis)


@dataclass
class Draft:
    lines: list
    renewals: int


@settings(FUZZ, max_examples=80)
@given(data=st.data())
def test_no_draft_crashes_the_checker(data) -> None:
    ciss = [f"6000000{i}" for i in range(6)]
    known = {cis: data.draw(drugs(cis)) for cis in ciss[:4]}  # the last two are unknown
    lines = [MedicationLine(label=data.draw(st.sampled_from(["DOLIPRANE", "X" * 200, "é"])),
                            cis=data.draw(st.sampled_from(ciss)),
                            posology=data.draw(posologies()))
             for _ in range(data.draw(st.integers(0, 6)))]
    current = [CurrentMedication("en cours", cis=data.draw(st.sampled_from(ciss)),
                                 posology=data.draw(st.none() | posologies()),
                                 until=data.draw(st.none() | st.dates()))
               for _ in range(data.draw(st.integers(0, 4)))]
    allergies = tuple(Allergy(data.draw(st.sampled_from(CODES)),
                              data.draw(st.sampled_from(NAMES)), date(2020, 1, 1), "test")
                      for _ in range(data.draw(st.integers(0, 2))))
    born = data.draw(st.none() | st.dates(min_value=date(1900, 1, 1), max_value=date(2024, 1, 1)))
    today = data.draw(st.dates(min_value=date(2024, 1, 2), max_value=date(2030, 1, 1)))
    alerts = check(Draft(lines, data.draw(st.integers(0, 12))),
                   ResidentProfile(born, allergies), current, Facts(known), today=today)
    for alert in alerts:
        assert alert.message.startswith("Ligne ") and alert.source
        assert alert.line is not None and 0 <= alert.line < len(lines)
    decision = decide(alerts, [a.code for a in alerts],
                      {a.key: "motif saisi au test" for a in alerts})
    assert decision.may_sign is not any(not a.overridable for a in alerts)
