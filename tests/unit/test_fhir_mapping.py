"""The FHIR mapping, validated with fhir.resources.

fhir.resources 8.x models FHIR R5 at its top level and R4B (4.3.0) in ``fhir.resources.R4B``;
it has no R4 (4.0.1) package. Every resource and element Ordo sends is unchanged between R4
and R4B, so the R4B models check the structure of what goes on the wire.
"""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.medicationdispense import MedicationDispense
from fhir.resources.R4B.parameters import Parameters
from hypothesis import given
from hypothesis import strategies as st

from appliance.domain.ids import INS_NIA_OID, Ins
from appliance.domain.posology import Duration, Posology
from appliance.domain.prescription import (
    ActLine,
    DeviceLine,
    MedicationLine,
    NonSubstitution,
    State,
)
from appliance.errors import ValidationError
from appliance.ports.registry import Dispensation, SignatureProof
from sync import codes, fhir
from tests.factories import lines, nir, prescription, resident

PID = "01KB2A3B4C5D6E7F8G9H0JKM"
SIGNED_AT = datetime(2026, 11, 25, 9, 31, tzinfo=UTC)
PROOF = SignatureProof(signature=b"\x01" * 256, signer_cert=b"cert-der",
                       signed_part=b"1\x1fsigned part")


@pytest.fixture(scope="module")
def pid():
    from appliance.domain.prescription_id import PrescriptionIdGenerator

    return PrescriptionIdGenerator(lambda: 1_764_000_000_000, lambda n: b"\x07" * n).new()


def signed(pid, **kw):
    return prescription(pid, **kw).transition(State.SIGNED, SIGNED_AT)


def resources(bundle, kind):
    return [e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == kind]


def test_the_bundle_is_a_valid_r4_transaction(pid):
    bundle = fhir.prescription_bundle(signed(pid), PROOF)
    Bundle.model_validate(bundle)
    assert bundle["type"] == "transaction"
    kinds = [e["resource"]["resourceType"] for e in bundle["entry"]]
    assert kinds == ["Patient", "Practitioner", "MedicationRequest", "MedicationRequest",
                     "DeviceRequest", "ServiceRequest", "Provenance"]
    assert all(e["request"]["method"] == "POST" for e in bundle["entry"])


def test_one_request_per_line_grouped_by_the_prescription_id(pid):
    bundle = fhir.prescription_bundle(signed(pid), PROOF)
    group = {"system": codes.PRESCRIPTION_ID_SYSTEM, "value": pid}
    meds = resources(bundle, "MedicationRequest")
    assert [m["groupIdentifier"] for m in meds] == [group, group]
    assert resources(bundle, "DeviceRequest")[0]["groupIdentifier"] == group
    assert resources(bundle, "ServiceRequest")[0]["requisition"] == group
    line_ids = [r["identifier"][0]["value"] for kind in
                ("MedicationRequest", "DeviceRequest", "ServiceRequest")
                for r in resources(bundle, kind)]
    assert line_ids == [f"{pid}-1", f"{pid}-2", f"{pid}-3", f"{pid}-4"]
    assert meds[0]["medicationCodeableConcept"]["coding"][0] == {
        "system": codes.CIP13_SYSTEM, "code": "3400935955838",
        "display": "DOLIPRANE 1000 mg, comprimé"}
    assert meds[1]["medicationCodeableConcept"]["coding"][0]["system"] == codes.CIS_SYSTEM
    assert resources(bundle, "ServiceRequest")[0]["code"]["text"].startswith("Soins")


def test_every_create_is_conditional_on_its_identifier(pid):
    bundle = fhir.prescription_bundle(signed(pid), PROOF)
    conditions = [e["request"].get("ifNoneExist") for e in bundle["entry"]]
    r = resident()
    assert conditions[0] == f"identifier=urn:oid:{r.ins.oid}|{r.ins.value}"
    assert conditions[1].startswith(f"identifier={codes.ID_NAT_PS_SYSTEM}|8")
    assert conditions[2] == f"identifier={codes.LINE_ID_SYSTEM}|{pid}-1"
    assert conditions[-1] is None  # the Provenance has no business identifier


def test_patient_carries_the_ins_with_its_oid_and_the_practitioner_the_id_nat_ps(pid):
    nia = resident(ins=Ins.from_nir(nir("1400175100012"), INS_NIA_OID), used_name="DURAND")
    bundle = fhir.prescription_bundle(signed(pid, resident=nia), PROOF)
    [patient] = resources(bundle, "Patient")
    assert patient["identifier"][0]["system"] == "urn:oid:1.2.250.1.213.1.4.9"
    assert patient["identifier"][0]["type"]["coding"][0]["code"] == "INS-NIA"
    assert [n["use"] for n in patient["name"]] == ["official", "usual"]
    assert patient["birthDate"] == "1940-01-15"
    [doctor] = resources(bundle, "Practitioner")
    assert doctor["identifier"][0]["system"] == "urn:oid:1.2.250.1.71.4.2.1"
    assert doctor["identifier"][1] == {"system": codes.AM_SYSTEM, "value": "751234567"}


def test_the_provenance_carries_signature_signed_part_certificate_and_canonical_bytes(pid):
    p = signed(pid)
    bundle = fhir.prescription_bundle(p, PROOF)
    [prov] = resources(bundle, "Provenance")
    assert base64.b64decode(prov["signature"][0]["data"]) == PROOF.signature
    contained = {b["id"]: base64.b64decode(b["data"]) for b in prov["contained"]}
    assert contained == {codes.CANONICAL_BINARY_ID: p.canonical_bytes(),
                         codes.SIGNER_CERT_BINARY_ID: PROOF.signer_cert,
                         codes.SIGNED_PART_BINARY_ID: PROOF.signed_part}
    targets = {t["reference"] for t in prov["target"]}
    requests = {e["fullUrl"] for e in bundle["entry"]
                if e["resource"]["resourceType"].endswith("Request")}
    assert targets == requests
    assert prov["signature"][0]["who"]["reference"] == bundle["entry"][1]["fullUrl"]
    assert prov["recorded"] == "2026-11-25T09:31:00.000+00:00"


def test_the_same_prescription_always_gives_the_same_bytes(pid):
    one = json.dumps(fhir.prescription_bundle(signed(pid), PROOF), sort_keys=True)
    two = json.dumps(fhir.prescription_bundle(signed(pid), PROOF), sort_keys=True)
    assert one == two
    other = json.dumps(fhir.prescription_bundle(signed(pid, renewals=1), PROOF), sort_keys=True)
    assert other != one


def test_posology_renewals_quantity_and_non_substitution(pid):
    line = MedicationLine(
        label="LEVOTHYROX 50 µg", cip13="3400935955838", quantity=Decimal(3),
        non_substitution=NonSubstitution.MTE, instructions="à jeun",
        posology=Posology(dose=Decimal("1.5"), unit="comprimé", moments=("matin", "soir"),
                          moment_doses=(Decimal(1), Decimal("1.5")),
                          duration=Duration(3, "mois")))
    prn = MedicationLine(label="DOLIPRANE", cis="60234100", posology=Posology(
        dose=Decimal(1), unit="comprimé", as_needed=True, interval_hours=6,
        max_per_day=Decimal(4), route="orale"))
    bundle = fhir.prescription_bundle(signed(pid, lines=(line, prn), renewals=2), PROOF)
    Bundle.model_validate(bundle)
    first, second = resources(bundle, "MedicationRequest")
    assert first["dispenseRequest"] == {"numberOfRepeatsAllowed": 2,
                                        "quantity": {"value": 3, "unit": "boîte"}}
    assert first["substitution"]["allowedBoolean"] is False
    assert first["substitution"]["reason"]["coding"][0]["code"] == "MTE"
    assert first["note"] == [{"text": "à jeun"}]
    doses = [(d["timing"]["repeat"]["when"], d["doseAndRate"][0]["doseQuantity"]["value"])
             for d in first["dosageInstruction"]]
    assert doses == [(["MORN"], 1), (["EVE"], 1.5)]
    assert first["dosageInstruction"][0]["timing"]["repeat"]["boundsDuration"]["code"] == "mo"
    [dosage] = second["dosageInstruction"]
    assert dosage["asNeededBoolean"] is True and dosage["route"] == {"text": "orale"}
    assert (dosage["timing"]["repeat"]["period"], dosage["timing"]["repeat"]["periodUnit"]) == \
        (6, "h")
    assert dosage["maxDosePerPeriod"]["numerator"]["value"] == 4
    assert dosage["text"].startswith("1 comprimé par voie orale toutes les 6 heures si besoin")


def test_ald_lines_and_devices(pid):
    bundle = fhir.prescription_bundle(signed(pid, lines=(
        DeviceLine(label="Lit médicalisé", lpp="1234567", ald=True),
        ActLine(text="Kinésithérapie : 10 séances", ald=True))), PROOF)
    Bundle.model_validate(bundle)
    [device] = resources(bundle, "DeviceRequest")
    assert device["codeCodeableConcept"]["coding"][0] == {
        "system": codes.LPP_SYSTEM, "code": "1234567", "display": "Lit médicalisé"}
    assert device["extension"] == [{"url": codes.ALD_EXTENSION, "valueBoolean": True}]
    [act] = resources(bundle, "ServiceRequest")
    assert act["category"][0]["coding"][0]["code"] == codes.CATEGORY_ALD


def test_cancel_parameters_are_valid():
    params = fhir.cancel_parameters(PID, "erreur de posologie")
    Parameters.model_validate(params)
    assert params["parameter"][0]["valueIdentifier"]["value"] == PID


# -- MedicationDispense, both ways ------------------------------------------------
DISPENSED = Dispensation(
    registry_id="MD-0001", prescription_id=PID, line=2, complete=False,
    handed_over_at=datetime(2026, 11, 26, 10, 0, tzinfo=UTC),
    product_label="AMOXICILLINE BIOGARAN 500 mg", product_code="3400930000001",
    product_system=codes.CIP13_SYSTEM, quantity=Decimal("1.5"), unit="boîte",
    substituted=True, substitution_type="G", substitution_reason="rupture",
    pharmacy="Pharmacie du Centre")


@pytest.mark.parametrize("d", [DISPENSED, Dispensation(
    registry_id="MD-0002", prescription_id=PID, line=1, complete=True,
    handed_over_at=datetime(2026, 11, 26, 10, 0, tzinfo=UTC), product_label="DOLIPRANE")])
@pytest.mark.parametrize("first_fill", [True, False])
def test_medication_dispense_round_trip(d, first_fill):
    resource = fhir.medication_dispense(d, first_fill=first_fill,
                                        request_reference="MedicationRequest/abc")
    MedicationDispense.model_validate(resource)
    assert fhir.dispensation_from_fhir(resource) == d
    code = resource["type"]["coding"][0]["code"]
    assert code == {(True, True): "FFC", (True, False): "FFP", (False, True): "RFC",
                    (False, False): "RFP"}[(first_fill, d.complete)]


def _broken(path: str, value):
    resource = fhir.medication_dispense(DISPENSED, first_fill=True)
    *parents, leaf = path.split(".")
    target = resource
    for key in parents:
        target = target[int(key)] if key.isdigit() else target[key]
    if value is KeyError:
        del target[leaf]
    else:
        target[leaf] = value
    return resource


@pytest.mark.parametrize(("path", "value"), [
    ("identifier", KeyError),
    ("authorizingPrescription.0.identifier.value", "no-line-here"),
    ("authorizingPrescription", "nope"),
    ("type.coding.0.code", "XX"),
    ("quantity.value", "lots"),
    ("quantity.value", -1),
    ("whenHandedOver", "yesterday"),
    ("whenHandedOver", "2026-11-26T10:00:00"),
    ("resourceType", "MedicationRequest"),
])
def test_a_malformed_dispense_is_a_validation_error(path, value):
    with pytest.raises(ValidationError):
        fhir.dispensation_from_fhir(_broken(path, value))


def test_receipts_are_read_strictly():
    answer = {"resourceType": "Bundle", "type": "transaction-response",
              "identifier": {"system": codes.RECEIPT_SYSTEM, "value": "AR-1"},
              "timestamp": "2026-11-25T09:31:00.000+00:00",
              "entry": [{"response": {"status": "200 OK"}}]}
    Bundle.model_validate(answer)
    receipt = fhir.parse_receipt(answer)
    assert (receipt.receipt_id, receipt.replayed) == ("AR-1", True)
    assert receipt.received_at == SIGNED_AT.replace(minute=31)
    for broken in ({**answer, "identifier": {"system": "x", "value": "AR-1"}},
                   {**answer, "type": "batch-response"}, {**answer, "timestamp": None},
                   [], {"resourceType": "OperationOutcome"}):
        with pytest.raises(ValidationError):
            fhir.parse_receipt(broken)


def test_a_dispensation_page_gives_its_cursor():
    page = fhir.dispensation_page({
        "resourceType": "Bundle", "type": "searchset",
        "link": [{"relation": "next", "url": "https://r/fhir/MedicationDispense?_cursor=42"}],
        "entry": [{"resource": fhir.medication_dispense(DISPENSED, first_fill=True)}]})
    assert (page.cursor, page.more, page.items) == ("42", True, (DISPENSED,))
    empty = fhir.dispensation_page({"resourceType": "Bundle", "type": "searchset"})
    assert (empty.cursor, empty.more, empty.items) == (None, False, ())
    with pytest.raises(ValidationError):
        fhir.dispensation_page({"resourceType": "Bundle", "type": "searchset",
                                "link": [{"relation": "next", "url": "https://r/?_cursor=x"}]})


def test_the_fast_canonical_bytes_are_rfc8785(pid):
    from appliance.domain.qr import SignedOrder

    # A line feed is the one control character a free text may hold (appliance.domain.text)
    tricky = ActLine(text='Guillemets " barre \\ saut\nfin é ü ß € 💊 \u2028 <&> /')
    p = signed(pid, lines=(*lines(), tricky), renewals=12)
    assert fhir.fast_canonical_bytes(p) == p.canonical_bytes()
    part = SignedOrder.from_prescription(p).to_bytes()
    assert fhir.signed_canonical_bytes(p, part) == p.canonical_bytes()
    assert fhir.signed_canonical_bytes(p, None) == p.canonical_bytes()


@given(st.text(max_size=40), st.sampled_from(["patient", "practitioner", "line", "provenance"]),
       st.integers(min_value=0, max_value=10**12))
def test_full_urls_are_the_rfc4122_name_based_uuids(prescription_id, kind, n):
    import uuid

    expected = uuid.uuid5(uuid.uuid5(uuid.NAMESPACE_URL, codes.PRESCRIPTION_ID_SYSTEM),
                          f"{prescription_id}|{kind}|{n}")
    assert fhir._full_url(prescription_id, kind, n) == f"urn:uuid:{expected}"


def test_the_body_sent_is_the_bundle_as_utf8_json(pid):
    from sync.client import RegistryClient

    p = signed(pid, lines=(*lines(), ActLine(text="Kiné à domicile « 3 fois »")))
    body = RegistryClient("http://127.0.0.1:9/fhir").encode_registration(p, PROOF)
    expected = json.dumps(fhir.prescription_bundle(p, PROOF), ensure_ascii=False)
    assert body == expected.encode("utf-8")
    assert "« 3 fois »".encode() in body  # raw UTF-8, not \u escapes
