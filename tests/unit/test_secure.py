"""Secure prescriptions: rules read from the BDPM conditions, quantities in French words,
legal maximum durations, the split of a mixed prescription; per-line renewals and the
format-1 content of prescriptions signed before them."""

import json
from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from appliance.domain.posology import Duration, FreeTextPosology, Posology
from appliance.domain.prescription import (
    ActLine,
    DeviceLine,
    MedicationLine,
    Prescription,
    State,
)
from appliance.domain.prescription_id import PrescriptionIdGenerator
from appliance.domain.secure import (
    SecureRules,
    decimal_words,
    number_words,
    relevant_conditions,
    split_lines,
)
from appliance.errors import ValidationError
from tests.factories import prescription

PID = PrescriptionIdGenerator(clock_ms=lambda: 1_764_000_000_000).new()

# Rows of CIS_CPD_bdpm.txt (ANSM BDPM extract of 2022-06-03), as written there.
OXYCODONE = ("prescription limitée à 4 semaines",
             "prescription en toutes lettres sur ordonnance sécurisée", "stupéfiants")
FENTANYL_PATCH = ("prescription limitée à 4 semaines", "délivrance fractionnée de 14 jours",
                  "prescription en toutes lettres sur ordonnance sécurisée", "stupéfiants")
MORPHINE_INJECTABLE = ("prescription limitée à 7 jours ou 28 jours",
                       "prescription en toutes lettres sur ordonnance sécurisée",
                       "stupéfiants")
HYPNOTIC = ("liste I", "prescription limitée à 4 semaines")
ANXIOLYTIC = ("liste I", "prescription limitée à 12 semaines")


@pytest.mark.parametrize(("n", "words"), [
    (0, "zéro"), (1, "un"), (16, "seize"), (17, "dix-sept"), (21, "vingt et un"),
    (22, "vingt-deux"), (28, "vingt-huit"), (30, "trente"), (71, "soixante et onze"),
    (72, "soixante-douze"), (80, "quatre-vingts"), (81, "quatre-vingt-un"),
    (90, "quatre-vingt-dix"), (91, "quatre-vingt-onze"), (99, "quatre-vingt-dix-neuf"),
    (100, "cent"), (101, "cent un"), (200, "deux cents"), (201, "deux cent un"),
    (280, "deux cent quatre-vingts"), (1000, "mille"), (1001, "mille un"),
    (2000, "deux mille"), (80000, "quatre-vingt mille"), (200000, "deux cent mille"),
    (1_000_000, "un million"), (2_000_000, "deux millions"), (365, "trois cent soixante-cinq"),
])
def test_numbers_in_french_words(n, words):
    assert number_words(n) == words


@pytest.mark.parametrize(("n", "words"), [
    (1, "une"), (21, "vingt et une"), (31, "trente et une"), (81, "quatre-vingt-une"),
    (101, "cent une"), (2, "deux"), (1000, "mille")])
def test_feminine_numbers(n, words):
    assert number_words(n, feminine=True) == words


@pytest.mark.parametrize("bad", [-1, 10**9, True, 1.5])
def test_numbers_out_of_range_are_refused(bad):
    with pytest.raises(ValidationError):
        number_words(bad)


@pytest.mark.parametrize(("amount", "words"), [
    ("0.5", "un demi"), ("0.25", "un quart"), ("0.75", "trois quarts"),
    ("2.5", "deux virgule cinq"), ("1.05", "un virgule zéro cinq"), ("10", "dix")])
def test_decimal_doses_in_words(amount, words):
    assert decimal_words(Decimal(amount)) == words


def test_posology_in_words_for_a_secure_prescription():
    pos = Posology(dose=Decimal(2), unit="comprimé", moments=("matin", "soir"),
                   duration=Duration(28, "jour"))
    assert pos.describe(words=True) == "deux comprimés matin et soir pendant vingt-huit jours"
    patch = Posology(dose=Decimal(1), unit="patch", every_days=3, duration=Duration(4, "semaine"))
    assert patch.describe(words=True) == "un patch tous les trois jours pendant quatre semaines"
    drops = Posology(dose=Decimal(21), unit="goutte", times_per_day=1,
                     duration=Duration(1, "semaine"))
    assert drops.describe(words=True) == \
        "vingt et une gouttes une fois par jour pendant une semaine"
    half = Posology(dose=Decimal("0.5"), unit="gélule", interval_hours=12, as_needed=True,
                    max_per_day=Decimal(1), duration=Duration(7, "jour"))
    assert half.describe(words=True) == ("une demi-gélule toutes les douze heures si besoin, "
                                         "sans dépasser une gélule par jour, pendant sept jours")
    ml = Posology(dose=Decimal("2.5"), unit="mL", times_per_day=4)
    assert ml.describe(words=True) == "deux virgule cinq millilitres quatre fois par jour"


def test_rules_from_the_bdpm_conditions():
    assert SecureRules.from_conditions(OXYCODONE) == SecureRules(True, 28, None)
    assert SecureRules.from_conditions(FENTANYL_PATCH) == SecureRules(True, 28, 14)
    assert SecureRules.from_conditions(MORPHINE_INJECTABLE) == SecureRules(True, 28, None)
    assert SecureRules.from_conditions(HYPNOTIC) == SecureRules(False, 28, None)
    assert SecureRules.from_conditions(ANXIOLYTIC) == SecureRules(False, 84, None)
    assert SecureRules.from_conditions(("prescription limitée à 6 mois",)).max_days == 180
    assert SecureRules.from_conditions(("liste II",)) == SecureRules()
    assert relevant_conditions(("liste I", " Stupéfiants ", "stupéfiants")) == ("stupéfiants",)
    assert SecureRules.from_conditions(FENTANYL_PATCH).mention() == (
        "Ordonnance sécurisée, prescription limitée à 28 jours, délivrance fractionnée de "
        "14 jours")


def _line(conditions=(), duration=None, **kw):
    duration = duration or Duration(28, "jour")
    pos = Posology(dose=Decimal(1), unit="gélule", moments=("matin", "soir"), duration=duration)
    return MedicationLine(label="OXYCODONE 10 mg, gélule", cis="60108518", posology=pos,
                          conditions=conditions, **kw)


def test_a_secure_line_needs_a_duration_within_its_limit():
    _line(OXYCODONE).check_limits()
    with pytest.raises(ValidationError, match="at most 28 days"):
        _line(OXYCODONE, duration=Duration(1, "mois")).check_limits()
    with pytest.raises(ValidationError, match="structured posology with a duration"):
        replace(_line(OXYCODONE), posology=FreeTextPosology("selon douleur")).check_limits()
    with pytest.raises(ValidationError, match="at most 84 days"):
        _line(ANXIOLYTIC, duration=Duration(13, "semaine")).check_limits()
    _line(ANXIOLYTIC, duration=Duration(12, "semaine")).check_limits()


def test_signing_checks_the_limits():
    p = prescription(PID, lines=(_line(OXYCODONE, duration=Duration(5, "semaine")),))
    with pytest.raises(ValidationError, match="at most 28 days"):
        p.transition(State.SIGNED, datetime(2026, 11, 25, tzinfo=UTC))


def test_a_mixed_prescription_is_split_in_order():
    doliprane = replace(_line(), label="DOLIPRANE", conditions=())
    act = ActLine("NFS")
    secure = _line(OXYCODONE)
    p = prescription(PID, lines=(doliprane, secure, act))
    assert p.mixes_secure and not p.secure
    assert split_lines(p.lines, [line.secure for line in p.lines]) == (
        [doliprane, act], [secure])
    assert prescription(PID, lines=(secure,)).secure


def test_renewals_are_per_line_and_in_the_signed_content():
    lines = (replace(_line(), renewals=2), ActLine("NFS"), DeviceLine("Pansements", renewals=1))
    p = prescription(PID, lines=lines)
    content = p.content()
    assert content["v"] == 2 and "renewals" not in content
    assert [line.get("renewals") for line in content["lines"]] == [2, None, 1]
    again = Prescription.from_dict(json.loads(json.dumps(p.to_dict())))
    assert again == p and again.canonical_bytes() == p.canonical_bytes()
    with pytest.raises(ValidationError, match="0 to 12"):
        replace(_line(), renewals=13)


def test_a_prescription_signed_in_format_1_keeps_its_exact_canonical_bytes():
    p = prescription(PID)
    old = {**p.to_dict(), "v": 1, "renewals": 3, "state": "signed",
           "signed_at": "2026-11-25T09:30:00.000+00:00"}
    old["lines"] = [{k: v for k, v in line.items() if k != "renewals"}
                    for line in old["lines"]]
    old_content = {k: v for k, v in old.items() if k in p.content() or k == "renewals"}
    loaded = Prescription.from_dict(old)
    assert loaded.canonical_version == 1
    assert [line.renewals for line in loaded.lines] == [3, 3, 3, 3]
    import rfc8785

    assert loaded.canonical_bytes() == rfc8785.dumps(old_content)
    draft = Prescription.from_dict({**old, "state": "draft", "signed_at": None})
    assert draft.canonical_version == 2  # drafts move to the current format
    with pytest.raises(ValidationError, match="format 1"):
        replace(loaded, lines=(replace(loaded.lines[0], renewals=1), *loaded.lines[1:]))


def test_the_weight_is_part_of_the_content_when_given():
    p = prescription(PID, weight_kg=Decimal("52.5"))
    assert p.content()["weight_kg"] == "52.5"
    with pytest.raises(ValidationError):
        prescription(PID, weight_kg=Decimal(900))
