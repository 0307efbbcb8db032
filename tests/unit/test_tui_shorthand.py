"""What the physician types in the editor's posology, duration and quantity fields."""

from decimal import Decimal

import pytest

from appliance.domain.posology import Duration, FreeTextPosology, Posology
from appliance.errors import ValidationError
from appliance.tui.shorthand import (
    PATTERNS,
    parse_duration,
    parse_posology,
    parse_quantity,
    pattern_hint,
    unit_for,
)


@pytest.mark.parametrize(("typed", "wording"), [
    ("1", "1 comprimé le matin"),
    ("2", "1 comprimé matin et soir"),
    ("3", "1 comprimé matin, midi et soir"),
    ("4", "1 comprimé le soir"),
    ("5", "1 comprimé au coucher"),
    ("6", "1 comprimé si besoin, sans dépasser 3 comprimés par jour"),
    ("7", "1 comprimé 3 fois par jour"),
    ("8", "1 comprimé tous les 2 jours"),
    ("9", "1 comprimé 1 fois par semaine"),
    ("3 5j", "1 comprimé matin, midi et soir pendant 5 jours"),
    ("2 pendant 1 mois", "1 comprimé matin et soir pendant 1 mois"),
    ("1-0-1", "1 comprimé matin et soir"),
    ("1-1-1-1", "1 comprimé matin, midi, soir et au coucher"),
    ("1/2-0-1 7 jours", "1/2 comprimé le matin et 1 comprimé le soir pendant 7 jours"),
    ("0,5-0-0", "1/2 comprimé le matin"),
    ("2-1-0-1", "2 comprimés le matin, 1 comprimé le midi et 1 comprimé au coucher"),
    ("3/j pdt 10 jours", "1 comprimé 3 fois par jour pendant 10 jours"),
    ("2x 3s", "1 comprimé 2 fois par jour pendant 3 semaines"),
])
def test_patterns_and_shorthands_become_structured_posologies(typed, wording):
    posology = parse_posology(typed, "comprimé")
    assert isinstance(posology, Posology)
    assert posology.describe() == wording


def test_every_pattern_is_listed_in_the_hint():
    hint = pattern_hint()
    assert [key for key in PATTERNS] == [str(n) for n in range(1, 10)]
    for pattern in PATTERNS.values():
        assert f"{pattern.key} {pattern.hint}" in hint


@pytest.mark.parametrize("typed", ["selon INR", "1 comprimé matin pendant 10 jours", "7j",
                                   "10", "1-0", "matin et soir"])
def test_anything_else_is_kept_as_free_text(typed):
    posology = parse_posology(f"  {typed}  ", "comprimé")
    assert posology == FreeTextPosology(typed)


def test_the_unit_follows_the_drug():
    posology = parse_posology("2", "sachet")
    assert posology.describe() == "1 sachet matin et soir"
    assert parse_posology("1-0-1", "mL").describe() == "1 mL matin et soir"


@pytest.mark.parametrize("typed", ["", "   ", "0-0-0", "3 400j"])
def test_refused_with_a_reason(typed):
    with pytest.raises(ValidationError):
        parse_posology(typed, "comprimé")


def test_durations_and_quantities():
    assert parse_duration("7") == Duration(7, "jour")
    assert parse_duration("2 s") == Duration(2, "semaine")
    assert parse_duration("3 mois") == Duration(3, "mois")
    assert parse_duration("") is None
    with pytest.raises(ValidationError):
        parse_duration("une semaine")
    assert parse_quantity("2") == Decimal(2)
    assert parse_quantity("1,5") == Decimal("1.5")
    assert parse_quantity(" ") is None
    with pytest.raises(ValidationError):
        parse_quantity("0")


@pytest.mark.parametrize(("name", "form", "unit"), [
    ("DOLIPRANE 1000 mg, comprimé", "comprimé", "comprimé"),
    ("DOLIPRANE 1000 mg, gélule", "gélule", "gélule"),
    ("KARDEGIC 75 mg, poudre pour solution buvable en sachet-dose",
     "poudre pour solution buvable", "sachet"),
    ("LASILIX 10 mg/ml, solution buvable", "solution buvable", "mL"),
    ("DOLIPRANE 150 mg, suppositoire", "suppositoire", "suppositoire"),
    ("DUROGESIC 12 µg/h, dispositif transdermique", "dispositif transdermique", "patch"),
    ("X, crème", "crème", "application"),
    ("Y", "", "dose"),
])
def test_unit_of_intake_from_the_name_or_the_form(name, form, unit):
    assert unit_for(name, form) == unit
