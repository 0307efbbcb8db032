"""Fuzzing the identifier validators (``appliance.domain.ids``) and the prescription ID
(``appliance.domain.prescription_id``): typed, scanned or imported text of any shape.

Each validator returns the normalised identifier (which validates again to itself) or raises
``InvalidIdentifier`` naming the field it was given.
"""

from __future__ import annotations

from hypothesis import example, given, settings
from hypothesis import strategies as st

from appliance.domain import ids
from appliance.domain.prescription_id import (
    ALPHABET,
    PrescriptionIdGenerator,
    format_id,
    id_timestamp_ms,
    validate_prescription_id,
)
from appliance.errors import InvalidIdentifier
from tests.factories import nir, rpps
from tests.unit.test_fuzz_strategies import FUZZ, ODD_CHARS, mutated, odd_text, outcome

VALID = {
    "nir": nir("2400175123001"),
    "nir_corsica": nir("185022A123456"),
    "rpps": rpps(),
    "id_nat_ps": "8" + rpps(),
    "adeli": "0123456789",
    "am": "751234567",
    "finess": "750712184",
    "cis": "60234100",
    "cip13": "3400935955838",
    "cip7": "3595583",
    "lpp": "1234567",
    "prescription_id": PrescriptionIdGenerator(clock_ms=lambda: 1_764_000_000_000).new(),
}

VALIDATORS = {
    "nir": ids.validate_nir,
    "rpps": ids.validate_rpps,
    "id_nat_ps": ids.validate_id_nat_ps,
    "am": ids.validate_am,
    "finess": ids.validate_finess,
    "cis": ids.validate_cis,
    "cip13": ids.validate_cip13,
    "cip7": ids.validate_cip7,
    "lpp": ids.validate_lpp,
    "prescription_id": validate_prescription_id,
}

not_text = st.none() | st.integers() | st.floats() | st.binary(max_size=8) \
    | st.lists(st.integers(), max_size=3) | st.dictionaries(st.text(max_size=3), st.none())
digits_like = st.text(alphabet="0123456789 \t\u00a0-2ABab\u00b2\u0663\U0001d7d8", max_size=20)
id_like = st.text(alphabet=ALPHABET + ALPHABET.lower() + "ILOU -\t\u00df\u0131\ufb01",
                  max_size=30)
near_valid = st.sampled_from(sorted(set(VALID.values()))).flatmap(lambda v: mutated(v, 3))


def _check(name: str, value: object) -> None:
    validate = VALIDATORS[name]
    field = f"fuzz.{name}"
    result = outcome(validate, value, field=field)
    if isinstance(result, InvalidIdentifier):
        assert result.field == field, (result.field, field)
        assert result.expected.strip()
        return
    assert isinstance(result, str)
    assert validate(result) == result  # normalised form is a fixed point


values = st.one_of(odd_text(30), digits_like, id_like, near_valid, not_text,
                   st.sampled_from(ODD_CHARS))


@settings(FUZZ, max_examples=120)
@given(name=st.sampled_from(sorted(VALIDATORS)), value=values)
@example(name="nir", value="2400175123001\u00b230")
@example(name="finess", value="2A" + "0" * 7)
@example(name="prescription_id", value="\u00df" * 12)  # upper-cases to 24 characters
def test_validators_return_a_fixed_point_or_name_the_field(name, value):
    _check(name, value)


@settings(FUZZ, max_examples=60)
@given(value=odd_text(30) | near_valid, oid=odd_text(25) | st.sampled_from(ids.INS_OIDS))
def test_ins_names_the_oid_or_the_value(value, oid):
    result = outcome(ids.validate_ins, value, oid, field="fuzz.ins")
    if isinstance(result, InvalidIdentifier):
        assert result.field in {"fuzz.ins", "fuzz.ins.oid"}
    else:
        assert result.oid in ids.INS_OIDS


@settings(FUZZ, max_examples=80)
@given(id_like | mutated(VALID["prescription_id"], 2) | odd_text(30))
def test_prescription_id_helpers_agree_with_the_validator(text):
    result = outcome(format_id, text)
    if isinstance(result, InvalidIdentifier):
        assert isinstance(outcome(id_timestamp_ms, text), InvalidIdentifier)
        return
    assert result.replace(" ", "") == validate_prescription_id(text)
    assert 0 <= id_timestamp_ms(text) < 2**50
