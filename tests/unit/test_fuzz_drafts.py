"""Fuzzing the prescription documents read from outside: the DUI's JSON draft
(``parse_draft``), posologies (``posology_from_dict``) and stored prescriptions and lines
(``Prescription.from_dict``, ``line_from_dict``).

A draft is a ``Draft`` or a ``DraftInvalid`` listing every problem with its JSON path; the
others return a valid object (that serialises back to the same document) or raise
``ValidationError`` naming the field.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from appliance.commands.prescribe import _load_json
from appliance.domain.posology import FreeTextPosology, Posology, posology_from_dict
from appliance.domain.prescription import (
    MAX_RENEWALS,
    ActLine,
    DeviceLine,
    MedicationLine,
    Prescription,
    line_from_dict,
)
from appliance.domain.prescription_id import PrescriptionIdGenerator
from appliance.errors import ValidationError
from appliance.services.drafts import Draft, DraftInvalid, parse_draft, resident_matcher
from tests.factories import prescription, resident
from tests.unit.test_fuzz_strategies import FUZZ, flip_bytes, json_values, mutated, outcome

PID = PrescriptionIdGenerator(clock_ms=lambda: 1_764_000_000_000).new()
R1 = resident(1)
R2 = resident(2, birth_name="MARTIN", used_name="DUPONT", first_names="Anne Marie")
FIND = resident_matcher(lambda: [R1, R2])


class Drugs:
    """A two-product referential."""

    def label_for_cip13(self, cip13):
        return {"3400935955838": ("60234100", "DOLIPRANE 1000 mg, comprimé")}.get(cip13)

    def label_for_cis(self, cis):
        return {"60234100": "DOLIPRANE 1000 mg", "67062525": "LEVOTHYROX 50"}.get(cis)


STRUCTURED = {"kind": "structured", "dose": "1", "unit": "comprimé", "moments": ["matin", "soir"],
              "duration": {"value": 7, "unit": "jour"}, "as_needed": False, "route": "orale"}
AS_NEEDED = {"kind": "structured", "dose": "0.5", "unit": "mL", "times_per_day": 3,
             "as_needed": True, "max_per_day": "2", "moment_doses": []}
PER_MOMENT = {"kind": "structured", "dose": "2", "unit": "gélules", "moments": ["soir", "matin"],
              "moment_doses": ["2", "1"]}
TEXT = {"kind": "text", "text": "1 le matin à jeun"}
POSOLOGIES = [STRUCTURED, AS_NEEDED, PER_MOMENT, TEXT]
DRAFT = {
    "resident": {"nir": R1.ins.value},
    "renewals": 2,
    "lines": [
        {"type": "medication", "cip13": "3400935955838", "posology": STRUCTURED, "quantity": "2",
         "non_substitution": "MTE", "ald": True, "instructions": "au cours du repas"},
        {"type": "medication", "cis": "67062525", "posology": TEXT},
        {"type": "device", "lpp": "1234567", "label": "Pansements", "quantity": "10"},
        {"type": "act", "text": "Kinésithérapie : 10 séances", "ald": False},
    ],
}
DRAFT_BY_IDENTITY = {**DRAFT, "resident": {"nom": "dupont", "prenoms": "anne",
                                           "date_naissance": "1940-01-15"}}


def _parse(data):
    return parse_draft(data, find_resident=FIND, drugs=Drugs())


@settings(FUZZ, max_examples=300)
@given(st.sampled_from([DRAFT, DRAFT_BY_IDENTITY]).flatmap(mutated) | json_values())
@example({**DRAFT, "lines": [{"type": []}]})
@example({**DRAFT, "lines": [{**DRAFT["lines"][0], "non_substitution": ["MTE"]}]})
@example({**DRAFT, "lines": [{"type": "act", "text": 5}]})
@example({**DRAFT, "lines": [{"type": "device", "label": {"x": 1}}]})
@example({**DRAFT_BY_IDENTITY, "resident": {"nom": "DUPONT", "prenoms": " ",
                                            "date_naissance": "1940-01-15"}})
@example({**DRAFT, "lines": [{"type": "act", "text": "Kin\ud800"}]})  # JSON "\ud800"
@example({**DRAFT, "lines": [{**DRAFT["lines"][0], "instructions": "\udcff"}]})
@example({**DRAFT, "lines": [{**DRAFT["lines"][1], "posology": {"kind": "text",
                                                                 "text": "\ud800"}}]})
def test_drafts_are_accepted_or_refused_with_every_problem_and_its_path(data):
    _check_draft(outcome(_parse, data))


def _check_draft(result: object) -> None:
    if isinstance(result, DraftInvalid):
        assert result.problems
        for problem in result.problems:
            assert problem.path.startswith("$") and problem.message.strip()
        return
    assert isinstance(result, Draft)
    assert result.resident in (R1, R2)
    assert result.lines
    for line in result.lines:
        assert isinstance(line, MedicationLine | DeviceLine | ActLine)
        assert 0 <= line.renewals <= MAX_RENEWALS
        assert line_from_dict(line.to_dict()) == line
    # what the card will sign can be computed
    assert prescription(PID, lines=tuple(result.lines), weight_kg=result.weight_kg,
                        resident=result.resident).canonical_bytes()


@settings(FUZZ, max_examples=300)
@given(st.sampled_from(POSOLOGIES).flatmap(mutated) | json_values())
@example({**STRUCTURED, "duration": {"value": 7, "unit": ["jour"]}})
@example({**STRUCTURED, "dose": "\u0663"})
@example({**STRUCTURED, "unit": "\udcff"})
def test_posologies_are_rebuilt_or_name_the_field(data):
    result = outcome(posology_from_dict, data)
    if isinstance(result, ValidationError):
        assert result.field.startswith("posology"), result.field
        return
    assert isinstance(result, Posology | FreeTextPosology)
    assert result.describe().strip()
    assert posology_from_dict(json.loads(json.dumps(result.to_dict()))) == result


# -- stored prescriptions and lines ----------------------------------------------------------------
STORED = prescription(PID).to_dict()


@settings(FUZZ, max_examples=300)
@given(mutated(STORED, 3))
@example({k: v for k, v in STORED.items() if k != "resident"})
@example({**STORED, "lines": [{"kind": "medication", "label": "X", "cis": "60234100"}]})
@example({**STORED, "lines": [{**STORED["lines"][0], "quantity": "abc"}]})
@example({**STORED, "lines": [{**STORED["lines"][0], "non_substitution": "XYZ"}]})
@example({**STORED, "lines": ["act"]})
@example({**STORED, "resident": {**STORED["resident"], "sex": "X"}})
@example({**STORED, "created_at": 5})
@example({**STORED, "lines": 3})
@example({**STORED, "prescriber": {**STORED["prescriber"], "last_name": "DURAND\ud800"}})
@example({**STORED, "resident": {**STORED["resident"], "ins": float("inf")}})  # longer run
@example({**STORED, "resident": {**STORED["resident"], "ins": None}})
@example({**STORED, "resident": {**STORED["resident"], "ins_oid": "1.2.3"}})
@example({**STORED, "resident": {**STORED["resident"], "objection": float("nan")}})
@example({**STORED, "prescriber": {**STORED["prescriber"], "profession": None}})
@example({**STORED, "resident": {**STORED["resident"], "first_names": "Jeanne\udcff"}})
def test_stored_prescriptions_load_or_name_the_field(data):
    result = outcome(Prescription.from_dict, data)
    if isinstance(result, ValidationError):
        assert result.field.strip() and result.expected.strip()
        return
    assert isinstance(result, Prescription)
    assert result.canonical_bytes()
    stored = json.dumps(result.to_dict(), sort_keys=True)  # compared as text: NaN != NaN
    assert json.dumps(Prescription.from_dict(json.loads(stored)).to_dict(),
                      sort_keys=True) == stored


@settings(FUZZ, max_examples=200)
@given(st.sampled_from(STORED["lines"]).flatmap(mutated) | json_values())
@example({"kind": "device", "label": "Lit", "quantity": []})
@example({"kind": "medication", "label": "X", "cis": "60234100", "posology": TEXT,
          "quantity": "1e999999999"})
def test_stored_lines_load_or_name_the_field(data):
    result = outcome(line_from_dict, data)
    if isinstance(result, ValidationError):
        assert result.field.strip() and result.expected.strip()
        return
    assert isinstance(result, MedicationLine | DeviceLine | ActLine)
    assert line_from_dict(json.loads(json.dumps(result.to_dict()))) == result


# -- the draft file as ``ordo`` reads it ----------------------------------------------------------
@pytest.fixture(scope="module")
def draft_path(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("fuzz-draft") / "draft.json"


@settings(FUZZ, max_examples=150)
@given(st.one_of(
    st.sampled_from([DRAFT, DRAFT_BY_IDENTITY]).flatmap(mutated).map(
        lambda doc: json.dumps(doc).encode("utf-8", "surrogatepass")),
    st.sampled_from([DRAFT]).map(lambda doc: json.dumps(doc).encode()).flatmap(flip_bytes),
    st.binary(max_size=200),
))
@example(b"[" * 5000)                                 # RecursionError in json.loads
@example(b'{"renewals": ' + b"9" * 5000 + b"}")       # ValueError: int over 4,300 digits
@example(b"\xef\xbb\xbf{}")
@example(b'{"lines": "\xe9"}')
def test_draft_files_load_or_are_refused_as_draft_invalid(draft_path, data):
    draft_path.write_bytes(data)
    result = outcome(_load_json, draft_path)
    if isinstance(result, DraftInvalid):
        assert result.problems and result.problems[0].path == "$"
        return
    _check_draft(outcome(_parse, result))
