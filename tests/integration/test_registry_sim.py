"""The reference registry itself, over real HTTP(S) on 127.0.0.1: mutual TLS, plain HTTP only
on loopback, idempotent create, 409 and 422 with their reasons, FHIR-valid answers, the
pharmacy and auditor CLI, seeded faults, and a signature check that agrees with the
appliance's own ``verify_payload``."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime

import httpx
import pytest
from click.testing import CliRunner
from cryptography import x509
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.capabilitystatement import CapabilityStatement
from fhir.resources.R4B.operationoutcome import OperationOutcome
from fhir.resources.R4B.parameters import Parameters

from appliance.cli import main
from appliance.errors import ConfigError, RegistryMisconfigured
from appliance.ports.registry import SignatureProof
from appliance.services import sync
from appliance.services.signature import InvalidOrder, sign_prescription, verify_payload
from appliance.services.trust import load_trust_store
from sync import fhir
from sync.client import RegistryClient
from sync.registry_sim import Faults, RegistrySim, SimConfig
from sync.registry_sim.faults import FaultPlan
from sync.registry_sim.verify import SignatureRejected, verify_submission
from tests.factories import prescription

pytestmark = pytest.mark.integration

FHIR = {"Content-Type": "application/fhir+json"}


def bundle_of(orders, profile="physician", **fields):
    doctor = orders.practitioner(profile)
    signed = sign_prescription(prescription(orders.ids.new(), prescriber=doctor, **fields),
                               orders.signers[profile], datetime.now(UTC))
    proof = SignatureProof(signed.signature, signed.certificate_der, signed.payload.signed_bytes)
    return signed, fhir.prescription_bundle(signed.prescription, proof)


def post(sim, body) -> httpx.Response:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    return httpx.post(sim.url, content=data, headers=FHIR, timeout=10)


def reason(response: httpx.Response) -> str:
    OperationOutcome.model_validate(response.json())
    return fhir.outcome_reason(response.json())


# -- mutual TLS -----------------------------------------------------------------------------------
def tls_client(sim, card_pki, **overrides) -> RegistryClient:
    est = card_pki.establishment
    options = {"ca_file": str(est / "ca.pem"), "client_cert": str(est / "client.pem"),
               "client_key": str(est / "client.key"), **overrides}
    return RegistryClient(sim.url, **options)


def test_mutual_tls_with_the_establishment_certificate(orders, registry_tls, card_pki, make_engine):
    [p] = orders.sign_many()
    est = card_pki.establishment
    engine = make_engine(registry_tls.url, client_options={
        "ca_file": str(est / "ca.pem"), "client_cert": str(est / "client.pem"),
        "client_key": str(est / "client.key")})
    assert engine.push().acknowledged == 1
    [held] = registry_tls.db.list_prescriptions()
    assert held["id"] == p.id and "EHPAD ORDO TEST" in held["submitter"]


@pytest.mark.parametrize("who", ["no certificate", "untrusted certificate"])
def test_mutual_tls_refuses_a_client_without_a_valid_certificate(
        orders, registry_tls, card_pki, make_engine, store, who, uow):
    orders.sign_many(2)
    ca = card_pki.directory / "ca"
    options = {"client_cert": "", "client_key": ""} if who == "no certificate" else {
        "client_cert": str(ca / "untrusted-professionnels.pem"),
        "client_key": str(ca / "untrusted-professionnels.key")}
    client = tls_client(registry_tls, card_pki, **options)
    try:  # the establishment's certificate is a setting to fix, not an outage
        with pytest.raises(RegistryMisconfigured, match="certificat") as refused:
            client.capabilities()
        assert refused.value.key == "registry.client_cert"
    finally:
        client.close()
    est = card_pki.establishment
    report = make_engine(registry_tls.url, unreachable_after=2, client_options={
        "ca_file": str(est / "ca.pem"), **options}).push()
    assert report.misconfigured_key == "registry.client_cert" and not report.unreachable
    assert report.acknowledged == report.quarantined == 0 and report.remaining == 2
    assert registry_tls.db.count() == 0
    assert registry_tls.stats()["counts"]["tls_refused"] >= 2
    status = sync.status(uow)
    assert status.misconfigured and status.link_key == "registry.client_cert"
    assert "TLS" in status.last_error


def test_the_client_refuses_a_registry_its_ca_did_not_issue(registry_tls, card_pki):
    client = tls_client(registry_tls, card_pki,
                        ca_file=str(card_pki.directory / "ca" / "untrusted-root.pem"))
    try:
        with pytest.raises(RegistryMisconfigured, match="n'est pas reconnu") as wrong:
            client.capabilities()
        assert wrong.value.key == "registry.ca_file"
    finally:
        client.close()


def test_plain_http_only_on_loopback_and_only_when_asked(tmp_path, sync_trust):
    with pytest.raises(ConfigError, match="loopback"):
        RegistrySim(SimConfig(db_path=tmp_path / "r.sqlite", host="0.0.0.0", plain_http=True),
                    trust=sync_trust).start()
    with pytest.raises(ConfigError, match="plain-http"):
        RegistrySim(SimConfig(db_path=tmp_path / "r.sqlite"), trust=sync_trust).start()
    with pytest.raises(ConfigError, match="loopback"):
        RegistryClient("http://192.0.2.10/fhir")
    result = CliRunner().invoke(main, ["--data-dir", str(tmp_path), "registry-sim", "--db",
                                       str(tmp_path / "r.sqlite"), "--plain-http", "--host",
                                       "0.0.0.0", "--trust-root", __file__])
    assert result.exit_code == 4 and "Erreur : " in result.output and "loopback" in result.output


# -- create: idempotent, 409, 422, 400 ----------------------------------------------------------
def test_same_id_and_content_gives_the_original_receipt(orders, registry_sim):
    _, bundle = bundle_of(orders)
    first, again = post(registry_sim, bundle), post(registry_sim, bundle)
    assert first.status_code == again.status_code == 200
    for answer in (first, again):
        Bundle.model_validate(answer.json())
    assert first.json()["identifier"] == again.json()["identifier"]
    assert {e["response"]["status"] for e in first.json()["entry"]} == {"201 Created"}
    assert {e["response"]["status"] for e in again.json()["entry"]} == {"200 OK"}
    assert registry_sim.db.count() == 1


def test_same_id_other_content_is_409(orders, registry_sim):
    signed, bundle = bundle_of(orders)
    assert post(registry_sim, bundle).status_code == 200
    other = sign_prescription(prescription(signed.prescription.id, prescriber=orders.practitioner(),
                                           renewals=2),
                              orders.signers["physician"], datetime.now(UTC))
    conflict = post(registry_sim, fhir.prescription_bundle(other.prescription, SignatureProof(
        other.signature, other.certificate_der, other.payload.signed_bytes)))
    assert conflict.status_code == 409 and "other content" in reason(conflict)


def _tamper(bundle, kind, change):
    for entry in bundle["entry"]:
        if entry["resource"]["resourceType"] == kind:
            change(entry["resource"])
            return bundle
    raise AssertionError(kind)


def _flip_signature(provenance):
    sig = bytearray(base64.b64decode(provenance["signature"][0]["data"]))
    sig[10] ^= 1
    provenance["signature"][0]["data"] = base64.b64encode(bytes(sig)).decode()


def _other_code(request):
    request["medicationCodeableConcept"]["coding"][0]["code"] = "3400930000001"


def _other_patient(patient):
    patient["identifier"][0]["value"] = "299999999999999"


@pytest.mark.parametrize(("profile", "kind", "change", "expected"), [
    ("physician", "Provenance", _flip_signature, "signature does not verify"),
    ("physician", "MedicationRequest", _other_code, "medication code differs"),
    ("physician", "Patient", _other_patient, "INS differs"),
    ("untrusted", None, None, "no trusted root"),
    ("revoked", None, None, "revoked"),
    ("expired", None, None, "not valid on"),
])
def test_a_bad_signature_or_altered_content_is_422_with_the_reason(
        orders, registry_sim, profile, kind, change, expected):
    _, bundle = bundle_of(orders, profile)
    if kind:
        _tamper(bundle, kind, change)
    refused = post(registry_sim, bundle)
    assert refused.status_code == 422 and expected in reason(refused)
    assert registry_sim.db.count() == 0


def test_malformed_requests_are_400(registry_sim, orders):
    assert post(registry_sim, b"{not json").status_code == 400
    _, bundle = bundle_of(orders)
    bundle["type"] = "batch"
    assert post(registry_sim, bundle).status_code == 400
    assert httpx.post(registry_sim.url, headers=FHIR, timeout=5).status_code in (400, 411)


# -- answers are FHIR ---------------------------------------------------------------------------
def test_cancel_feed_and_metadata_answers_are_valid_fhir(orders, registry_sim, make_engine):
    [p] = orders.sign_many(2)[:1]
    make_engine(registry_sim.url).push()
    registry_sim.db.dispense(p.id, line=1)
    feed = httpx.get(registry_sim.url + "/MedicationDispense?_count=10", timeout=5).json()
    Bundle.model_validate(feed)
    assert [e["resource"]["resourceType"] for e in feed["entry"]] == ["MedicationDispense"]
    assert [link["relation"] for link in feed["link"]] == ["self", "next"]
    CapabilityStatement.model_validate(httpx.get(registry_sim.url + "/metadata",
                                                 timeout=5).json())
    other = orders.store.query("SELECT id FROM prescriptions WHERE id != ?", (p.id,))[0]["id"]
    cancelled = httpx.post(registry_sim.url + "/MedicationRequest/$cancel", headers=FHIR,
                           content=json.dumps(fhir.cancel_parameters(other, "doublon")),
                           timeout=5)
    assert cancelled.status_code == 200
    Parameters.model_validate(cancelled.json())
    unknown = httpx.post(registry_sim.url + "/MedicationRequest/$cancel", headers=FHIR,
                         content=json.dumps(fhir.cancel_parameters("0" * 24, "x")), timeout=5)
    assert unknown.status_code == 404


# -- pharmacy and auditor CLI ----------------------------------------------------------------------
def test_cli_dispense_and_list(orders, registry_sim, make_engine, store, tmp_path):
    [p] = orders.sign_many()
    make_engine(registry_sim.url).push()
    db = str(registry_sim.config.db_path)
    runner = CliRunner()
    base = ["--data-dir", str(tmp_path / "sim-cli"), "registry-sim"]
    done = runner.invoke(main, [*base, "dispense", p.id.lower(), "--db", db, "--line", "2",
                                "--partial", "--quantity", "1", "--json"],
                         catch_exceptions=False)
    assert done.exit_code == 0, done.output
    [d] = json.loads(done.stdout)
    assert (d["line"], d["complete"], d["quantity"]) == (2, False, "1")
    again = runner.invoke(main, [*base, "dispense", p.id, "--db", db, "--substitute",
                                 "3400930000001", "--substitute-label", "GENERIQUE",
                                 "--reason", "rupture"], catch_exceptions=False)
    assert again.exit_code == 0 and "substituted (G)" in again.output
    refused = runner.invoke(main, [*base, "dispense", p.id, "--db", db])
    assert refused.exit_code == 4 and "already dispensed" in refused.output
    listed = runner.invoke(main, [*base, "list", "--db", db, "--json"], catch_exceptions=False)
    [row] = json.loads(listed.stdout)
    assert (row["id"], row["status"], row["dispensations"]) == (p.id, "active", 3)
    assert make_engine(registry_sim.url).pull().received == 3
    assert orders.state(p.id) == "dispensed"


def test_cli_dispense_unknown_prescription(tmp_path, registry_sim):
    result = CliRunner().invoke(main, ["--data-dir", str(tmp_path), "registry-sim", "dispense",
                                       "0" * 24, "--db", str(registry_sim.config.db_path)])
    assert result.exit_code == 4 and "unknown prescription" in result.output


# -- faults are reproducible --------------------------------------------------------
def test_faults_are_deterministic_with_a_seed():
    faults = Faults(seed=11, error_rate=0.2, throttle_rate=0.05, reset_rate=0.05, drop_rate=0.05)

    def draws(f: Faults) -> list[str]:
        plan = FaultPlan(f)
        return [plan.decide().outcome for _ in range(400)]

    runs = [draws(faults), draws(faults)]
    assert runs[0] == runs[1]
    assert draws(Faults(**{**faults.__dict__, "seed": 12})) != runs[0]
    counts = {o: runs[0].count(o) for o in set(runs[0])}
    assert set(counts) == {"ok", "500", "503", "429", "reset", "drop"}
    assert 0.55 < counts["ok"] / 400 < 0.8
    with pytest.raises(ValueError, match="at most 1"):
        Faults(error_rate=0.8, reset_rate=0.5)


def test_faults_can_be_changed_over_http(registry_sim):
    answer = httpx.put(registry_sim.url.replace("/fhir", "/_sim/faults"),
                       content=json.dumps({"script": ["503"]}), timeout=5)
    assert answer.status_code == 200
    assert httpx.get(registry_sim.url + "/metadata", timeout=5).status_code == 503
    assert httpx.get(registry_sim.url + "/metadata", timeout=5).status_code == 200


# -- the registry's verifier agrees with the appliance's ----------------------------------------
@pytest.mark.parametrize("profile", ["physician", "untrusted", "revoked", "expired"])
def test_the_registry_verifier_agrees_with_verify_payload(orders, card_pki, sync_trust, profile):
    signed, _ = bundle_of(orders, profile)
    trust = load_trust_store(card_pki.trust_roots, card_pki.crls)
    try:
        verify_payload(signed.payload.encode(), [*trust.roots, *trust.intermediates],
                       list(trust.crls), certificates=[
                           x509.load_der_x509_certificate(signed.certificate_der)])
        appliance_ok = True
    except InvalidOrder:
        appliance_ok = False
    try:
        verify_submission(signed_part=signed.payload.signed_bytes, signature=signed.signature,
                          cert_der=signed.certificate_der,
                          canonical=signed.prescription.canonical_bytes(),
                          content=signed.prescription.content(), trust=sync_trust)
        registry_ok = True
    except SignatureRejected:
        registry_ok = False
    assert appliance_ok == registry_ok == (profile == "physician")


# -- the largest prescription ---------------------------------------------------------------------
def _largest_lines():
    """MAX_LINES lines, every text at its longest, in 4-byte UTF-8 characters."""
    from decimal import Decimal

    from appliance.domain.posology import FreeTextPosology
    from appliance.domain.prescription import MAX_LINES, MedicationLine

    pill = "\U0001f48a"
    return tuple(MedicationLine(label=pill * 200, cis="60234100",
                                posology=FreeTextPosology(pill * 500),
                                instructions=pill * 500, quantity=Decimal(1000), ald=n % 2 == 0)
                 for n in range(MAX_LINES))


def test_the_largest_prescription_the_appliance_signs_is_accepted(orders, registry_sim):
    from appliance.domain.prescription import MAX_LINES
    from sync.registry_sim.server import MAX_BODY

    _, bundle = bundle_of(orders, lines=_largest_lines())
    body = json.dumps(bundle, ensure_ascii=False).encode()
    assert len(body) < MAX_BODY / 4, len(body)  # far from the registry's request limit
    answer = post(registry_sim, body)
    assert answer.status_code == 200, answer.text
    assert [e["response"]["status"] for e in answer.json()["entry"]] == ["201 Created"] * (
        MAX_LINES + 3)
    # One line more is what the appliance refuses to sign; the registry refuses it too.
    from sync import codes

    provenance = next(e["resource"] for e in bundle["entry"]
                      if e["resource"]["resourceType"] == "Provenance")
    canonical = next(b for b in provenance["contained"] if b["id"] == codes.CANONICAL_BINARY_ID)
    content = json.loads(base64.b64decode(canonical["data"]))
    content["lines"].append(content["lines"][0])
    canonical["data"] = base64.b64encode(json.dumps(content).encode()).decode()
    refused = post(registry_sim, bundle)
    assert refused.status_code == 422
    assert reason(refused) == f"{MAX_LINES + 1} lines: a prescription has at most {MAX_LINES}"
