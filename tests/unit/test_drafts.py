"""The DUI's JSON draft: valid drafts become lines; every error comes with its JSON path."""

import pytest

from appliance.domain.posology import FreeTextPosology, Posology
from appliance.domain.prescription import ActLine, DeviceLine, MedicationLine, NonSubstitution
from appliance.services.drafts import DraftInvalid, parse_draft, resident_matcher
from tests.factories import nir, resident


class Drugs:
    """A two-product referential (pure logic test: a fake is fine here)."""

    def label_for_cip13(self, cip13):
        return {"3400935955838": ("60234100", "DOLIPRANE 1000 mg, comprimé")}.get(cip13)

    def label_for_cis(self, cis):
        return {"60234100": "DOLIPRANE 1000 mg", "67062525": "LEVOTHYROX 50"}.get(cis)


R1 = resident(1)
R2 = resident(2, birth_name="MARTIN", used_name="DUPONT", first_names="Anne Marie")
FIND = resident_matcher(lambda: [R1, R2])
STRUCTURED = {"kind": "structured", "dose": "1", "unit": "comprimé", "moments": ["matin", "soir"],
              "duration": {"value": 7, "unit": "jour"}}


def parse(data):
    return parse_draft(data, find_resident=FIND, drugs=Drugs())


def good():
    return {
        "resident": {"nir": R1.ins.value},
        "renewals": 2,
        "lines": [
            {"type": "medication", "cip13": "3400935955838", "posology": STRUCTURED,
             "quantity": "2", "non_substitution": "MTE", "ald": True},
            {"type": "medication", "cis": "67062525",
             "posology": {"kind": "text", "text": "1 le matin à jeun"}},
            {"type": "device", "label": "Déambulateur", "lpp": "1234567"},
            {"type": "act", "text": "Kinésithérapie : 10 séances"},
        ],
    }


def test_valid_draft():
    draft = parse(good())
    assert draft.resident == R1
    assert [line.renewals for line in draft.lines] == [2, 2, 2, 2]  # the top-level default
    med, med2, device, act = draft.lines
    assert isinstance(med, MedicationLine) and med.cis == "60234100"
    assert med.label == "DOLIPRANE 1000 mg, comprimé"
    assert isinstance(med.posology, Posology) and med.non_substitution is NonSubstitution.MTE
    assert med.posology.describe() == "1 comprimé matin et soir pendant 7 jours"
    assert isinstance(med2.posology, FreeTextPosology) and med2.label == "LEVOTHYROX 50"
    assert isinstance(device, DeviceLine) and device.lpp == "1234567"
    assert isinstance(act, ActLine)


class DrugsWithFacts(Drugs):
    """The same, with the BDPM facts of a narcotic (CIS_CPD rows as written there)."""

    def label_for_cis(self, cis):
        return {"60108518": "OXYCODONE SANDOZ 20 mg, gélule"}.get(cis) or \
            super().label_for_cis(cis)

    def facts(self, cis):
        from appliance.store.referential.composition import DrugFacts

        return {"60108518": DrugFacts("oxycodone 17,93 mg", (
            "prescription limitée à 4 semaines",
            "prescription en toutes lettres sur ordonnance sécurisée", "stupéfiants")),
            "60234100": DrugFacts("paracétamol 1000 mg", ())}.get(cis)


def test_renewals_per_line_weight_common_name_and_prescription_in_dc():
    data = good()
    data["weight_kg"] = "61.5"
    data["lines"][0]["renewals"] = 0
    data["lines"][0]["prescribed_as"] = "dc"
    data["lines"][3]["renewals"] = 5
    draft = parse_draft(data, find_resident=FIND, drugs=DrugsWithFacts())
    assert [line.renewals for line in draft.lines] == [0, 2, 2, 5]
    assert str(draft.weight_kg) == "61.5"
    med = draft.lines[0]
    assert (med.common_name, med.by_brand) == ("paracétamol 1000 mg", False)


def test_a_secure_line_beyond_its_legal_duration_is_refused_with_its_path():
    line = {"type": "medication", "cis": "60108518",
            "posology": {**STRUCTURED, "duration": {"value": 5, "unit": "semaine"}}}
    data = {**good(), "lines": [line, {**line, "posology": {"kind": "text", "text": "x"}}],
            "weight_kg": 0}
    with pytest.raises(DraftInvalid) as err:
        parse_draft(data, find_resident=FIND, drugs=DrugsWithFacts())
    assert [p.path for p in err.value.problems] == [
        "$.weight_kg", "$.lines[0].posology", "$.lines[1].posology"]
    assert "at most 28 days" in str(err.value) and "in full words" in str(err.value)
    ok = {**line, "posology": {**STRUCTURED, "duration": {"value": 28, "unit": "jour"}}}
    secure = parse_draft({**good(), "lines": [ok]}, find_resident=FIND,
                         drugs=DrugsWithFacts()).lines[0]
    assert secure.secure and secure.rules.max_days == 28


@pytest.mark.parametrize("ident", [
    {"ins": None, "oid": "1.2.250.1.213.1.4.8"},
    {"nom": "dupont", "prenoms": "anne", "date_naissance": "1940-01-15"},
    {"nom": "Martin", "prenoms": "Anne", "date_naissance": "1940-01-15"},
])
def test_resident_by_ins_or_identity(ident):
    if "ins" in ident:
        ident["ins"] = R2.ins.value
    assert parse({**good(), "resident": ident}).resident == R2


def test_every_error_has_its_json_path():
    data = good()
    data["renewals"] = 40
    data["extra"] = 1
    data["lines"][0]["cip13"] = "3400935955839"
    data["lines"][0]["posology"] = {**STRUCTURED, "times_per_day": 3}
    data["lines"][1]["cis"] = "99999999"
    data["lines"][1]["non_substitution"] = "XYZ"
    data["lines"][2]["lpp"] = "12"
    data["lines"][2]["quantity"] = 1.5
    data["lines"][3] = {"type": "act", "text": "", "colour": "red"}
    data["lines"].append({"type": "surgery"})
    with pytest.raises(DraftInvalid) as err:
        parse(data)
    paths = [p.path for p in err.value.problems]
    assert paths == [
        "$.extra", "$.renewals",
        "$.lines[0].cip13", "$.lines[0].posology.times_per_day",
        "$.lines[1].cis", "$.lines[1].non_substitution",
        "$.lines[2].lpp", "$.lines[2].quantity",
        "$.lines[3].colour", "$.lines[3].text",
        "$.lines[4].type",
    ]
    assert "is not in the drug referential" in str(err.value)


@pytest.mark.parametrize(("resident_json", "message"), [
    ({"nir": "123"}, "$.resident.nir"),
    ({"nir": nir("2990175123001")}, "no active resident matches"),
    ({"nom": "MARTIN", "prenoms": "Jeanne"}, "missing date_naissance"),
    ({"ins": "x", "oid": "1.2.3"}, "$.resident.oid"),
    ("Jeanne", "expected an object"),
])
def test_resident_problems(resident_json, message):
    with pytest.raises(DraftInvalid, match=message.replace("$", r"\$").replace(".", r"\.")):
        parse({**good(), "resident": resident_json})


def test_empty_or_not_an_object():
    with pytest.raises(DraftInvalid, match=r"\$: expected a JSON object"):
        parse([])
    with pytest.raises(DraftInvalid, match=r"\$\.lines: expected a non-empty list"):
        parse({**good(), "lines": []})
