"""Posology: French wording of every rule, validation refusals, and the exact JSON round trip."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from appliance.domain.posology import (
    DURATION_UNITS,
    KNOWN_ROUTES,
    KNOWN_UNITS,
    MEASURE_UNITS,
    MOMENTS,
    Duration,
    FreeTextPosology,
    Posology,
    posology_from_dict,
)
from appliance.errors import ValidationError

D = Decimal
NBSP = "\u00a0"


def P(dose: str | int, unit: str = "comprimé", **kw: Any) -> Posology:
    return Posology(dose=D(dose), unit=unit, **kw)


WORDING = [
    # the brief's examples
    (P(1, moments=("matin", "soir"), duration=Duration(7, "jour")),
     "1 comprimé matin et soir pendant 7 jours"),
    (P(2, "gélule", times_per_day=3, duration=Duration(5, "jour")),
     "2 gélules 3 fois par jour pendant 5 jours"),
    (P(1, interval_hours=6, as_needed=True, max_per_day=D(4)),
     "1 comprimé toutes les 6 heures si besoin, sans dépasser 4 comprimés par jour"),
    (P("0.5", moments=("soir",)), "1/2 comprimé le soir"),
    (P(10, "goutte", moments=("matin", "midi", "soir")), "10 gouttes matin, midi et soir"),
    (P(1, "sachet", times_per_day=1), "1 sachet 1 fois par jour"),
    # decimal comma, fractions, plural from 2
    (P("2.5", "mL", times_per_day=3), "2,5 mL 3 fois par jour"),
    (P("0.25", moments=("matin",)), "1/4 comprimé le matin"),
    (P("0.75", moments=("midi",)), "3/4 comprimé le midi"),
    (P("1.5", moments=("matin",)), "1,5 comprimé le matin"),
    (P(2, moments=("matin",)), "2 comprimés le matin"),
    (P("2.5", moments=("soir",)), "2,5 comprimés le soir"),
    (P("0.5", "mL", times_per_day=2), "0,5 mL 2 fois par jour"),
    (P("0.125", "mg", times_per_day=1), "0,125 mg 1 fois par jour"),
    (P("0.5", "pulvérisation", times_per_day=2), "0,5 pulvérisation 2 fois par jour"),
    (P(3, "pulvérisation", times_per_day=2), "3 pulvérisation 2 fois par jour"),
    (P(2, "patch", times_per_week=2), "2 patchs 2 fois par semaine"),
    (P(2, "cuillère à soupe", times_per_day=3), "2 cuillères à soupe 3 fois par jour"),
    (P(1, "cuillère à café", moments=("soir",)), "1 cuillère à café le soir"),
    (P(2, "bouffée", moments=("matin", "soir"), route="inhalée"),
     "2 bouffées par voie inhalée matin et soir"),
    (P(2, "suppositoire", times_per_day=2, route="rectale"),
     "2 suppositoires par voie rectale 2 fois par jour"),
    (P(2, "UI", times_per_day=1), "2 UI 1 fois par jour"),
    (P(100000, "UI", every_days=90, route="orale"),
     f"100{NBSP}000 UI par voie orale tous les 90 jours"),
    (P(2500, "UI", times_per_day=2), "2500 UI 2 fois par jour"),
    (P(1000, "mg", interval_hours=8), "1000 mg toutes les 8 heures"),
    # moments, alone and together
    (P(1, moments=("matin",)), "1 comprimé le matin"),
    (P(1, moments=("midi",)), "1 comprimé le midi"),
    (P(1, moments=("coucher",)), "1 comprimé au coucher"),
    (P(1, moments=("soir", "coucher")), "1 comprimé soir et au coucher"),
    (P(1, moments=MOMENTS), "1 comprimé matin, midi, soir et au coucher"),
    (P(1, moments=("soir", "matin")), "1 comprimé matin et soir"),
    # different doses per moment
    (P(2, moments=("matin", "soir"), moment_doses=(D(1), D(2))),
     "1 comprimé le matin et 2 comprimés le soir"),
    (P(2, moments=("coucher", "matin", "midi"), moment_doses=(D(2), D("0.5"), D(1))),
     "1/2 comprimé le matin, 1 comprimé le midi et 2 comprimés au coucher"),
    (P(2, moments=("matin", "soir"), moment_doses=(D(2), D(1)), route="orale",
       duration=Duration(1, "mois")),
     "2 comprimés le matin et 1 comprimé le soir par voie orale pendant 1 mois"),
    # other frequencies
    (P(1, times_per_day=3), "1 comprimé 3 fois par jour"),
    (P(1, times_per_day=1), "1 comprimé 1 fois par jour"),
    (P(1, interval_hours=8), "1 comprimé toutes les 8 heures"),
    (P(1, interval_hours=1), "1 comprimé toutes les heures"),
    (P(1, "patch", interval_hours=72, route="transdermique"),
     "1 patch par voie transdermique toutes les 72 heures"),
    (P(1, every_days=2), "1 comprimé tous les 2 jours"),
    (P(1, times_per_week=1), "1 comprimé 1 fois par semaine"),
    (P(1, "stylo", times_per_week=2), "1 stylo 2 fois par semaine"),
    # as needed, maximum, duration placement
    (P(1, as_needed=True), "1 comprimé si besoin"),
    (P(1, as_needed=True, max_per_day=D(3)),
     "1 comprimé si besoin, sans dépasser 3 comprimés par jour"),
    (P(1, as_needed=True, max_per_day=D(1)),
     "1 comprimé si besoin, sans dépasser 1 comprimé par jour"),
    (P("0.5", as_needed=True, max_per_day=D("1.5")),
     "1/2 comprimé si besoin, sans dépasser 1,5 comprimé par jour"),
    (P(1, route="sublinguale", as_needed=True, max_per_day=D(3), duration=Duration(5, "jour")),
     "1 comprimé par voie sublinguale si besoin, sans dépasser 3 comprimés par jour, "
     "pendant 5 jours"),
    (P(1, times_per_day=3, as_needed=True, duration=Duration(2, "semaine")),
     "1 comprimé 3 fois par jour si besoin pendant 2 semaines"),
    (P(1, "application", moments=("soir",), route="cutanée", duration=Duration(1, "semaine")),
     "1 application par voie cutanée le soir pendant 1 semaine"),
    (P(1, moments=("matin",), duration=Duration(3, "mois")),
     "1 comprimé le matin pendant 3 mois"),
    (P(1, moments=("matin",), duration=Duration(1, "jour")), "1 comprimé le matin pendant 1 jour"),
    (P(1, "ampoule", route="sous-cutanée", times_per_day=1),
     "1 ampoule par voie sous-cutanée 1 fois par jour"),
    (P(2, "goutte", route="ophtalmique", times_per_day=4),
     "2 gouttes par voie ophtalmique 4 fois par jour"),
    # single intake
    (P(1, "sachet"), "1 sachet en prise unique"),
    (P(1, "sachet", route="orale"), "1 sachet par voie orale en prise unique"),
]


@pytest.mark.parametrize(("posology", "expected"), WORDING, ids=[w for _, w in WORDING])
def test_wording(posology: Posology, expected: str) -> None:
    assert posology.describe() == expected


@pytest.mark.parametrize(
    ("duration", "expected"),
    [
        (Duration(7, "jour"), "7 jours"),
        (Duration(1, "jour"), "1 jour"),
        (Duration(1, "mois"), "1 mois"),
        (Duration(3, "mois"), "3 mois"),
        (Duration(2, "semaine"), "2 semaines"),
        (Duration(1, "semaine"), "1 semaine"),
    ],
)
def test_duration_wording(duration: Duration, expected: str) -> None:
    assert duration.describe() == expected


@pytest.mark.parametrize(
    ("given_unit", "stored"),
    [
        ("comprimés", "comprimé"),
        ("Comprimé", "comprimé"),
        ("  gélules ", "gélule"),
        ("ml", "mL"),
        ("ML", "mL"),
        ("ui", "UI"),
        ("\u03bcg", "\u00b5g"),  # Greek mu typed instead of the micro sign
        ("patchs", "patch"),
        ("cuillères  à  café", "cuillère à café"),
        ("cuillère\tà soupe\n", "cuillère à soupe"),
        ("pulvérisation", "pulvérisation"),
        ("Cuillère-mesure", "Cuillère-mesure"),
        ("come\u0301prime\u0301", "coméprimé"),  # NFC: combining accents are composed
    ],
)
def test_unit_is_normalised(given_unit: str, stored: str) -> None:
    assert P(1, given_unit).unit == stored


@pytest.mark.parametrize(
    ("given_route", "stored"),
    [("Orale", "orale"), ("voie orale", "orale"), ("par voie cutanée", "cutanée"),
     ("SOUS-CUTANÉE", "sous-cutanée"), ("intradermique", "intradermique")],
)
def test_route_is_normalised(given_route: str, stored: str) -> None:
    posology = P(1, times_per_day=1, route=given_route)
    assert posology.route == stored
    assert posology.describe() == f"1 comprimé par voie {stored} 1 fois par jour"


def test_values_are_normalised() -> None:
    posology = Posology(dose=D("2.50"), unit="mL", moments=["soir", "matin"], times_per_day=None)
    assert posology == P("2.5", "mL", moments=("matin", "soir"))
    assert posology.moments == ("matin", "soir")
    assert str(posology.dose) == "2.5"
    assert str(Posology(dose=D("1E+1"), unit="mL", times_per_day=1).dose) == "10"
    assert Posology(dose=3, unit="comprimé", times_per_day=1).dose == D(3)
    # moments reordered together with their doses
    p = P(2, moments=("soir", "matin"), moment_doses=(D(2), D(1)))
    assert p.moments == ("matin", "soir") and p.moment_doses == (D(1), D(2))


INVALID = [
    ({"dose": D(0)}, "posology.dose"),
    ({"dose": D(-1)}, "posology.dose"),
    ({"dose": D("NaN")}, "posology.dose"),
    ({"dose": D("Infinity")}, "posology.dose"),
    ({"dose": D("0.0001")}, "posology.dose"),
    ({"dose": D(1_000_001)}, "posology.dose"),
    ({"dose": 0.5}, "posology.dose"),
    ({"dose": "1"}, "posology.dose"),
    ({"dose": True}, "posology.dose"),
    ({"unit": ""}, "posology.unit"),
    ({"unit": "   "}, "posology.unit"),
    ({"unit": "comprimé 500"}, "posology.unit"),
    ({"unit": "x" * 41}, "posology.unit"),
    ({"unit": "-mg"}, "posology.unit"),
    ({"unit": "mg\x00"}, "posology.unit"),
    ({"unit": "mg;"}, "posology.unit"),
    ({"unit": 3}, "posology.unit"),
    ({"moments": ("matin", "nuit")}, "posology.moments"),
    ({"moments": ("matin", "matin")}, "posology.moments"),
    ({"moments": "matin"}, "posology.moments"),
    ({"moments": ("matin",), "times_per_day": 1}, "posology.times_per_day"),
    ({"times_per_day": 2, "interval_hours": 8}, "posology.interval_hours"),
    ({"every_days": 2, "times_per_week": 1}, "posology.times_per_week"),
    ({"times_per_day": 0}, "posology.times_per_day"),
    ({"times_per_day": 25}, "posology.times_per_day"),
    ({"times_per_day": 2.0}, "posology.times_per_day"),
    ({"times_per_day": True}, "posology.times_per_day"),
    ({"interval_hours": 0}, "posology.interval_hours"),
    ({"interval_hours": 169}, "posology.interval_hours"),
    ({"every_days": 1}, "posology.every_days"),
    ({"times_per_week": 7}, "posology.times_per_week"),
    ({"moments": ("matin", "soir"), "moment_doses": (D(1),)}, "posology.moment_doses"),
    ({"moments": ("matin",), "moment_doses": (D(1),)}, "posology.moment_doses"),
    ({"moment_doses": (D(1), D(2))}, "posology.moment_doses"),
    ({"moments": ("matin", "soir"), "moment_doses": (D(1), D(1))}, "posology.moment_doses"),
    ({"moments": ("matin", "soir"), "moment_doses": (D(1), D(0))}, "posology.moment_doses"),
    ({"dose": D(1), "moments": ("matin", "soir"), "moment_doses": (D(1), D(2))}, "posology.dose"),
    ({"max_per_day": D(4), "times_per_day": 3}, "posology.max_per_day"),
    ({"max_per_day": D("0.5"), "as_needed": True}, "posology.max_per_day"),
    ({"max_per_day": D(0), "as_needed": True}, "posology.max_per_day"),
    ({"as_needed": 1}, "posology.as_needed"),
    ({"duration": Duration(7, "jour")}, "posology.duration"),
    ({"duration": {"value": 7, "unit": "jour"}, "times_per_day": 1}, "posology.duration"),
    ({"route": ""}, "posology.route"),
    ({"route": "orale2"}, "posology.route"),
    ({"route": 1}, "posology.route"),
]


@pytest.mark.parametrize(("changes", "field"), INVALID, ids=[repr(c) for c, _ in INVALID])
def test_invalid_posology(changes: dict[str, Any], field: str) -> None:
    kwargs: dict[str, Any] = {"dose": D(2), "unit": "comprimé"} | changes
    with pytest.raises(ValidationError) as info:
        Posology(**kwargs)
    assert info.value.field == field
    assert info.value.expected
    assert field in str(info.value)


@pytest.mark.parametrize(
    ("value", "unit", "field"),
    [
        (0, "jour", "posology.duration.value"),
        (367, "jour", "posology.duration.value"),
        (53, "semaine", "posology.duration.value"),
        (13, "mois", "posology.duration.value"),
        (7.0, "jour", "posology.duration.value"),
        ("7", "jour", "posology.duration.value"),
        (7, "jours", "posology.duration.unit"),
        (7, "an", "posology.duration.unit"),
    ],
)
def test_invalid_duration(value: Any, unit: Any, field: str) -> None:
    with pytest.raises(ValidationError) as info:
        Duration(value, unit)
    assert info.value.field == field


@pytest.mark.parametrize(
    "text", ["", "   ", "x" * 501, "1 cp\x00", "1 cp\tle soir", 42, None]
)
def test_invalid_free_text(text: Any) -> None:
    with pytest.raises(ValidationError) as info:
        FreeTextPosology(text)
    assert info.value.field == "posology.text"


def test_free_text() -> None:
    posology = FreeTextPosology("  1 comprimé le lundi, le mercredi et le vendredi\n(à jeun)  ")
    assert posology.describe() == "1 comprimé le lundi, le mercredi et le vendredi\n(à jeun)"
    assert posology.to_dict() == {"kind": "text", "text": posology.text}
    assert posology_from_dict(posology.to_dict()) == posology
    assert len(FreeTextPosology("x" * 500).text) == 500


def test_to_dict_shape() -> None:
    posology = P(2, moments=("soir", "matin"), moment_doses=(D("2.0"), D("0.5")),
                 as_needed=True, max_per_day=D("2.5"), duration=Duration(7, "jour"),
                 route="orale")
    assert posology.to_dict() == {
        "kind": "structured",
        "dose": "2",
        "unit": "comprimé",
        "moments": ["matin", "soir"],
        "moment_doses": ["0.5", "2"],
        "duration": {"value": 7, "unit": "jour"},
        "as_needed": True,
        "max_per_day": "2.5",
        "route": "orale",
    }
    assert P("0.5", times_per_day=3).to_dict() == {
        "kind": "structured", "dose": "0.5", "unit": "comprimé", "times_per_day": 3,
        "as_needed": False,
    }
    assert P(10, "mL", every_days=2).to_dict()["dose"] == "10"


def test_from_dict_accepts_integers_nulls_and_missing_optionals() -> None:
    d = {"kind": "structured", "dose": 1, "unit": "comprimés", "times_per_day": 2,
         "route": None, "interval_hours": None}
    assert posology_from_dict(d) == P(1, times_per_day=2)


FROM_DICT_INVALID = [
    ([], "posology"),
    ({}, "posology.kind"),
    ({"kind": "pill"}, "posology.kind"),
    ({"kind": "text"}, "posology.text"),
    ({"kind": "text", "text": 3}, "posology.text"),
    ({"kind": "text", "text": "1 cp", "dose": "1"}, "posology.dose"),
    ({"kind": "structured", "unit": "comprimé"}, "posology.dose"),
    ({"kind": "structured", "dose": "1"}, "posology.unit"),
    ({"kind": "structured", "dose": 0.5, "unit": "comprimé"}, "posology.dose"),
    ({"kind": "structured", "dose": "0,5", "unit": "comprimé"}, "posology.dose"),
    ({"kind": "structured", "dose": "1e3", "unit": "comprimé"}, "posology.dose"),
    ({"kind": "structured", "dose": "NaN", "unit": "comprimé"}, "posology.dose"),
    ({"kind": "structured", "dose": " 1", "unit": "comprimé"}, "posology.dose"),
    ({"kind": "structured", "dose": True, "unit": "comprimé"}, "posology.dose"),
    ({"kind": "structured", "dose": "1", "unit": ["comprimé"]}, "posology.unit"),
    ({"kind": "structured", "dose": "1", "unit": "cp", "moments": "matin"}, "posology.moments"),
    ({"kind": "structured", "dose": "1", "unit": "cp", "moments": [1]}, "posology.moments"),
    ({"kind": "structured", "dose": "2", "unit": "cp", "moments": ["matin", "soir"],
      "moment_doses": [1.0, "2"]}, "posology.moment_doses"),
    ({"kind": "structured", "dose": "2", "unit": "cp", "moments": ["matin", "soir"],
      "moment_doses": "1,2"}, "posology.moment_doses"),
    ({"kind": "structured", "dose": "1", "unit": "cp", "times_per_day": "3"},
     "posology.times_per_day"),
    ({"kind": "structured", "dose": "1", "unit": "cp", "every_days": 2.5}, "posology.every_days"),
    ({"kind": "structured", "dose": "1", "unit": "cp", "times_per_day": 1,
      "duration": {"value": 7}}, "posology.duration"),
    ({"kind": "structured", "dose": "1", "unit": "cp", "times_per_day": 1,
      "duration": "7 jours"}, "posology.duration"),
    ({"kind": "structured", "dose": "1", "unit": "cp", "times_per_day": 1,
      "duration": {"value": "7", "unit": "jour"}}, "posology.duration.value"),
    ({"kind": "structured", "dose": "1", "unit": "cp", "as_needed": "true"},
     "posology.as_needed"),
    ({"kind": "structured", "dose": "1", "unit": "cp", "as_needed": None},
     "posology.as_needed"),
    ({"kind": "structured", "dose": "1", "unit": "cp", "as_needed": True,
      "max_per_day": 4.0}, "posology.max_per_day"),
    ({"kind": "structured", "dose": "1", "unit": "cp", "route": 5}, "posology.route"),
    ({"kind": "structured", "dose": "1", "unit": "cp", "max_per_jour": "4"},
     "posology.max_per_jour"),
]


@pytest.mark.parametrize(
    ("document", "field"), FROM_DICT_INVALID, ids=[repr(d) for d, _ in FROM_DICT_INVALID]
)
def test_from_dict_refuses(document: Any, field: str) -> None:
    with pytest.raises(ValidationError) as info:
        posology_from_dict(document)
    assert info.value.field == field


@pytest.mark.parametrize(("posology", "expected"), WORDING, ids=[w for _, w in WORDING])
def test_examples_round_trip_through_json(posology: Posology, expected: str) -> None:
    back = posology_from_dict(json.loads(json.dumps(posology.to_dict())))
    assert back == posology
    assert back.describe() == expected


# --- property: every valid posology round-trips and reads as a clean French sentence ----------

_amounts = st.decimals(min_value=D("0.001"), max_value=D(1_000_000), places=3)
_units = st.sampled_from([*KNOWN_UNITS, *MEASURE_UNITS, "pulvérisation", "compresse"])


@st.composite
def structured(draw: st.DrawFn) -> Posology:
    dose = draw(_amounts)
    kw: dict[str, Any] = {}
    kind = draw(st.sampled_from(
        ["none", "moments", "times_per_day", "interval_hours", "every_days", "times_per_week"]
    ))
    if kind == "moments":
        moments = draw(st.lists(st.sampled_from(MOMENTS), min_size=1, max_size=4, unique=True))
        kw["moments"] = tuple(moments)
        if len(moments) >= 2 and draw(st.booleans()):
            doses = draw(st.lists(_amounts, min_size=len(moments), max_size=len(moments)))
            assume(len(set(doses)) > 1)
            kw["moment_doses"] = tuple(doses)
            dose = max(doses)
    elif kind == "times_per_day":
        kw[kind] = draw(st.integers(1, 24))
    elif kind == "interval_hours":
        kw[kind] = draw(st.integers(1, 168))
    elif kind == "every_days":
        kw[kind] = draw(st.integers(2, 366))
    elif kind == "times_per_week":
        kw[kind] = draw(st.integers(1, 6))
    kw["as_needed"] = draw(st.booleans())
    if kw["as_needed"] and draw(st.booleans()):
        kw["max_per_day"] = min(dose * draw(st.integers(1, 6)), D(1_000_000))
    if kind != "none" or kw["as_needed"]:
        unit = draw(st.sampled_from(DURATION_UNITS))
        top = {"jour": 366, "semaine": 52, "mois": 12}[unit]
        kw["duration"] = draw(st.none() | st.builds(Duration, st.integers(1, top), st.just(unit)))
    kw["route"] = draw(st.none() | st.sampled_from(KNOWN_ROUTES))
    return Posology(dose=dose, unit=draw(_units), **kw)


@st.composite
def free_text(draw: st.DrawFn) -> FreeTextPosology:
    text = draw(st.text(st.characters(exclude_categories=["Cs", "Cc"]) | st.just("\n"),
                        min_size=1, max_size=500))
    try:
        return FreeTextPosology(text)
    except ValidationError:
        assume(False)
        raise


@given(structured() | free_text())
def test_round_trip_and_clean_sentence(posology: Posology | FreeTextPosology) -> None:
    document = json.loads(json.dumps(posology.to_dict(), ensure_ascii=False))
    back = posology_from_dict(document)
    assert back == posology
    assert back.to_dict() == posology.to_dict()
    assert back.describe() == posology.describe()
    if isinstance(posology, Posology):
        sentence = posology.describe()
        assert not sentence.endswith((".", " ", ","))
        assert "  " not in sentence and "½" not in sentence and "." not in sentence
        assert sentence[0].isdigit()
