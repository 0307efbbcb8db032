"""Strengths and their references as CIS_COMPO writes them, parsed for the checks."""

from __future__ import annotations

from decimal import Decimal

import pytest

from appliance.store.referential.facts import parse_dosage, parse_reference


@pytest.mark.parametrize(("text", "expected"), [
    ("1000 mg", (Decimal(1000), "mg")), ("0,5 g", (Decimal(500), "mg")),
    ("25 microgrammes", (Decimal("0.025"), "mg")), ("50 000 UI", (Decimal(50000), "UI")),
    ("1 M.U.I.", (Decimal(1_000_000), "UI")), ("5 mg,", (Decimal(5), "mg")),
    ("2CH à 30CH et 4DH à 60DH", None), ("qsp 100 mg", None), ("10 mg/ml", None), ("", None),
])
def test_dosages(text, expected) -> None:
    found = parse_dosage(text)
    assert (found if found is None else (found[0].normalize(), found[1])) == (
        expected if expected is None else (expected[0].normalize(), expected[1]))


@pytest.mark.parametrize(("text", "expected"), [
    ("un comprimé", ("comprimé", None)), ("une gélule", ("gélule", None)),
    ("une capsule", ("gélule", None)), ("un sachet-dose", ("sachet", None)),
    ("un comprrimé", ("comprimé", None)), ("100 ml", (None, Decimal(100))),
    ("1 mL de solution", (None, Decimal(1))), ("1 l de solution", (None, Decimal(1000))),
    ("une ampoule de 2 ml", ("ampoule", Decimal(2))), ("un sachet de 5 g", ("sachet", None)),
    ("100 g de crème", (None, None)), ("un dispositif transdermique", (None, None)),
])
def test_references(text, expected) -> None:
    assert parse_reference(text) == expected
