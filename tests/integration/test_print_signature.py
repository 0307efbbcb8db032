"""Signing with a (software) card of the test PKI and verifying QR payloads offline:
every field, then each way a payload can be wrong."""

import hashlib
from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509

from appliance.domain.prescription import State
from appliance.domain.qr import QrPayload, SignedOrder, content_hash
from appliance.errors import ValidationError
from appliance.services.signature import (
    InvalidOrder,
    certificate_id_nat_ps,
    sign_prescription,
    verify_payload,
)
from appliance.store.uow import SqliteUnitOfWork
from tests.factories import prescription

pytestmark = pytest.mark.integration


KNOWN: list[x509.Certificate] = []


@pytest.fixture(autouse=True)
def _signer_certificates(signers):
    """The signed payload names its certificate: the verifier holds the test cards'."""
    KNOWN[:] = [x509.load_der_x509_certificate(s.certificate_der)
                for s in signers.values()]


def _verify(payload, print_trust, **kw):
    roots, crls = print_trust
    kw.setdefault("certificates", KNOWN)
    return verify_payload(payload, roots, crls, **kw)


def test_a_signed_order_verifies_and_gives_back_every_field(orders, print_trust):
    signed = orders.sign(renewals=1)
    p = signed.prescription
    result = _verify(signed.payload.encode(), print_trust)
    f = result.fields
    assert f.prescription_id == p.id
    assert (f.rpps, f.am) == (p.prescriber.rpps, p.prescriber.am)
    assert (f.last_name, f.first_names, f.birth_date) == ("MARTIN", "Jeanne",
                                                          p.resident.birth_date)
    assert f.issued_at == p.signed_at
    assert f.content_hash == content_hash(p) and f.matches(p)
    assert result.signer_id_nat_ps == p.prescriber.id_nat_ps
    assert [c.split(",")[0] for c in result.chain] == [
        "CN=Claire DUVAL", "CN=TEST AC IGC-SANTE PROFESSIONNELS", "CN=TEST AC RACINE IGC-SANTE"]
    assert result.certificate_sha256 == hashlib.sha256(signed.certificate_der).digest()


def test_the_payload_size_with_the_test_pki(orders):
    signed = orders.sign()
    text = signed.payload.encode()
    assert text.startswith("ORD2:") and 500 < len(text) <= 700  # certificate by reference


@pytest.mark.parametrize("position", [5, 6, 100, 700, 1500, -3, -1])
def test_one_flipped_character_makes_the_payload_invalid(orders, print_trust, position):
    text = orders.sign().payload.encode()
    pos = position % len(text)
    flipped = text[:pos] + ("A" if text[pos] != "A" else "B") + text[pos + 1:]
    with pytest.raises(InvalidOrder):
        _verify(flipped, print_trust)


def test_one_changed_byte_in_the_signed_fields_breaks_the_signature(orders, print_trust):
    signed = orders.sign()
    part = bytearray(signed.payload.signed_bytes)
    part[part.index(b"Jeanne")] = ord("L")  # "Leanne": still a well-formed payload
    forged = QrPayload(bytes(part), signed.signature, certificate=signed.certificate_der)
    with pytest.raises(InvalidOrder, match="signature does not match") as err:
        _verify(forged.encode(), print_trust)
    assert err.value.fields.first_names == "Leanne"


def test_one_changed_byte_in_the_signature_is_refused(orders, print_trust):
    signed = orders.sign()
    sig = bytearray(signed.signature)
    sig[10] ^= 0x01
    forged = QrPayload(signed.payload.signed_bytes, bytes(sig),
                       certificate=signed.certificate_der)
    with pytest.raises(InvalidOrder, match="signature does not match"):
        _verify(forged.encode(), print_trust)


def test_a_different_trust_root_makes_it_invalid(orders, card_pki):
    text = orders.sign().payload.encode()
    other_root = x509.load_pem_x509_certificate(
        (card_pki.directory / "ca" / "untrusted-root.pem").read_bytes())
    with pytest.raises(InvalidOrder, match="no trusted root issued"):
        verify_payload(text, [other_root], certificates=KNOWN)
    with pytest.raises(InvalidOrder, match="no trust root configured"):
        verify_payload(text, [], certificates=KNOWN)


def test_a_card_from_an_unknown_authority_is_invalid(orders, print_trust):
    # Its issuer has the same name as the trusted intermediate, other keys.
    with pytest.raises(InvalidOrder, match="no trusted root issued"):
        _verify(orders.sign("untrusted").payload.encode(), print_trust)


def test_an_expired_certificate_is_invalid_at_the_issue_date(orders, print_trust):
    with pytest.raises(InvalidOrder, match="was not valid on"):
        _verify(orders.sign("expired").payload.encode(), print_trust)


def test_a_revoked_certificate_is_invalid_when_the_crl_is_known(orders, print_trust):
    text = orders.sign("revoked").payload.encode()
    with pytest.raises(InvalidOrder, match="was revoked on"):
        _verify(text, print_trust)
    roots, _crls = print_trust
    assert verify_payload(text, roots, certificates=KNOWN).fields  # no CRL: not revoked


def test_the_certificate_must_belong_to_the_rpps_of_the_payload(orders, signers,
                                                                  print_trust):
    signed = orders.sign()
    nurse_rpps = orders.practitioner("nurse").rpps
    order = SignedOrder.from_prescription(signed.prescription)
    claimed = SignedOrder(**{**order.__dict__, "rpps": nurse_rpps})
    data = claimed.to_bytes()
    signer = signers["physician"]
    forged = QrPayload.build(data, signer.sign(data), signer.certificate_der)
    with pytest.raises(InvalidOrder, match=f"not to RPPS {nurse_rpps}"):
        _verify(forged.encode(), print_trust)


def test_the_issue_time_must_fall_within_the_certificate(orders, signers, print_trust):
    signer = signers["physician"]
    cert = x509.load_der_x509_certificate(signer.certificate_der)
    before = cert.not_valid_before_utc - timedelta(days=2)
    signed = orders.sign(at=before)
    with pytest.raises(InvalidOrder, match="was not valid on"):
        _verify(signed.payload.encode(), print_trust)


def test_a_certificate_by_reference_needs_the_certificate_from_elsewhere(orders, print_trust):
    signed = orders.sign()
    ref = QrPayload.build(signed.payload.signed_bytes, signed.signature,
                          signed.certificate_der, embed_certificate=False).encode()
    with pytest.raises(InvalidOrder, match="not among the known certificates"):
        _verify(ref, print_trust, certificates=[])
    with pytest.raises(InvalidOrder, match="not among the known certificates"):
        _verify(signed.payload.encode(), print_trust, certificates=[])
    cert = x509.load_der_x509_certificate(signed.certificate_der)
    assert _verify(ref, print_trust, certificates=[cert]).fields.prescription_id == \
        signed.prescription.id
    assert _verify(signed.payload.encode(), print_trust, certificates=[cert]).fields == \
        signed.payload.order


def test_signing_refuses_a_card_that_is_not_the_prescribers(orders, signers):
    doctor = orders.practitioner("physician")
    draft = prescription(orders.ids.new(), prescriber=doctor)
    with pytest.raises(ValidationError, match="the prescriber's certificate"):
        sign_prescription(draft, signers["nurse"], datetime.now(UTC))


def test_signing_refuses_a_signature_that_does_not_verify(orders, signers):
    class BrokenCard:
        certificate_der = signers["physician"].certificate_der

        def sign(self, data: bytes) -> bytes:
            return bytes(256)

    draft = prescription(orders.ids.new(), prescriber=orders.practitioner("physician"))
    with pytest.raises(InvalidOrder, match="signature does not match"):
        sign_prescription(draft, BrokenCard(), datetime.now(UTC))


def test_the_signed_prescription_is_stored_with_the_signed_bytes(orders, store):
    signed = orders.sign()
    row = store.query("SELECT state, signature, c.der AS signer_cert, signed_payload"
                      " FROM prescriptions p JOIN certificates c ON c.id = p.signer_cert_id"
                      " WHERE p.id = ?", (signed.prescription.id,))[0]
    assert row["state"] == State.SIGNED.value
    # the signed bytes are the ones the body rebuilds: not stored again, rebuilt on load
    assert row["signed_payload"] is None
    loaded = SqliteUnitOfWork(store, owns=False).prescriptions.signed_rows(
        [signed.prescription.id])[signed.prescription.id].load()
    assert loaded.proof.signed_part == signed.payload.signed_bytes
    assert bytes(row["signature"]) == signed.signature
    cert = x509.load_der_x509_certificate(bytes(row["signer_cert"]))
    assert certificate_id_nat_ps(cert) == signed.prescription.prescriber.id_nat_ps
    jobs = store.query("SELECT kind, status FROM print_jobs")
    assert jobs == [{"kind": "original", "status": "queued"}]
    # the certificate is kept once, however many prescriptions it signed
    orders.sign_many(3)
    assert store.query("SELECT count(*) AS n FROM certificates")[0]["n"] == 1
