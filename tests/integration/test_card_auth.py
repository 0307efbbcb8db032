"""CPS authentication through the real pcscd and the virtual card in the vpcd reader."""

import pytest
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding

from appliance.errors import CardError
from appliance.ports.card import sha256_digest_info
from appliance.services.auth import AuthRefused, Role, authenticate
from appliance.store import audit
from drivers.card.apdu import StatusWordError
from drivers.card.cps import CPX_ATR
from drivers.card.pcsc import PcscReader

pytestmark = pytest.mark.integration


def _login(trust, audit_log, pin="1234", slot=0):
    card = PcscReader().open(slot)
    try:
        return authenticate(card, pin, trust, audit=audit_log)
    except BaseException:
        card.close()
        raise


def _actions(store):
    return [(e.action, e.details.get("reason"), e.details.get("tries_left"))
            for e in audit.entries(store)]


def test_good_pin_opens_a_prescriber_session(vcards, card_trust, card_audit, store,
                                            card_pki):
    vcards.insert("physician")
    session = _login(card_trust, card_audit)
    try:
        who = session.practitioner
        assert session.role is Role.PRESCRIBER and session.can_sign
        assert who.id_nat_ps.startswith("8") and who.rpps == who.id_nat_ps[1:]
        assert (who.given_name, who.family_name, who.profession) == ("Claire", "DUVAL",
                                                                     "Médecin")
        assert session.reader == "Virtual PCD 00 00"
        assert session.card.atr == CPX_ATR
    finally:
        session.logout()
    entries = audit.entries(store)
    assert [e.action for e in entries] == ["auth.login", "auth.session_locked"]
    assert entries[0].actor == who.id_nat_ps and entries[0].details["role"] == "prescriber"
    assert audit.verify(store) == 2


def test_certificates_read_through_pcscd_match_the_pki_files(vcards, card_pki):
    vcards.insert("physician")
    card = PcscReader().open(0)
    try:
        certs = card.read_certificates()
    finally:
        card.close()
    files = card_pki.card_dir("physician")
    assert certs.authentication == (files / "auth.der").read_bytes()
    assert len(certs.authentication) > 256       # several READ BINARY at increasing offsets
    assert certs.signature == (files / "sign.der").read_bytes()


def test_wrong_pin_three_times_blocks_the_card(vcards, card_trust, card_audit, store):
    vcards.insert("physician")
    refusals = []
    for _ in range(4):      # a new connection each time: the counter lives on the card
        with pytest.raises(AuthRefused) as exc:
            _login(card_trust, card_audit, pin="0000")
        refusals.append((exc.value.reason, exc.value.tries_left))
    assert refusals == [("wrong_pin", 2), ("wrong_pin", 1), ("blocked", None),
                        ("blocked", None)]
    assert "bloquée" in str(exc.value)
    with pytest.raises(AuthRefused) as exc:
        _login(card_trust, card_audit, pin="1234")        # the right PIN: never retried
    assert exc.value.reason == "blocked"
    card = PcscReader().open(0)
    try:
        assert card.pin_status().blocked
    finally:
        card.close()
    assert _actions(store) == [
        ("auth.wrong_pin", None, 2), ("auth.wrong_pin", None, 1), ("auth.wrong_pin", None, 0),
        ("auth.card_blocked", "blocked", None), ("auth.card_blocked", "blocked", None),
        ("auth.card_blocked", "blocked", None)]
    assert "0000" not in str([e.details for e in audit.entries(store)])


@pytest.mark.parametrize(("profile", "reason", "words"), [
    ("expired", "expired", "expiré"),
    ("revoked", "revoked", "révoqué"),
    ("untrusted", "untrusted", "autorité non reconnue"),
    ("blocked", "blocked", "bloquée"),
])
def test_refused_cards_with_the_reason(vcards, card_trust, card_audit, store, profile,
                                       reason, words):
    vcards.insert(profile)
    with pytest.raises(AuthRefused) as exc:
        _login(card_trust, card_audit)
    assert exc.value.reason == reason and words in str(exc.value)
    action = "auth.card_blocked" if reason == "blocked" else "auth.refused"
    assert _actions(store) == [(action, reason, None)]
    card = PcscReader().open(0)
    try:                     # refused before the PIN: no try spent
        assert card.pin_status().tries_left == (0 if profile == "blocked" else 3)
    finally:
        card.close()


@pytest.mark.parametrize(("profile", "role"), [("nurse", Role.NURSE), ("cpe", Role.STAFF)])
def test_nurse_and_cpe_cannot_sign(vcards, card_trust, card_audit, profile, role):
    vcards.insert(profile)
    session = _login(card_trust, card_audit)
    try:
        assert session.role is role and not session.can_sign
        with pytest.raises(AuthRefused) as exc:
            session.sign(b"prescription")
        assert exc.value.reason == "forbidden"
        if profile == "cpe":     # and the card itself has no signature key
            with pytest.raises(StatusWordError) as sw:
                session.card.sign(sha256_digest_info(b"prescription"))
            assert sw.value.sw == 0x6A88
    finally:
        session.logout()


def test_signature_verifies_with_the_card_certificate(vcards, card_trust, card_audit,
                                                      card_pki):
    vcards.insert("physician")
    session = _login(card_trust, card_audit)
    data = b'{"id":"ORD-TEST","lines":[]}'
    try:
        signature = session.sign(data)
    finally:
        session.logout()
    cert = x509.load_der_x509_certificate(session.certificate_der)
    assert session.certificate_der == (card_pki.card_dir("physician") / "sign.der").read_bytes()
    cert.public_key().verify(signature, data, padding.PKCS1v15(), hashes.SHA256())
    assert len(signature) == 256                                  # RSA-2048
    with pytest.raises(InvalidSignature):
        cert.public_key().verify(signature, data + b" ", padding.PKCS1v15(), hashes.SHA256())


def test_session_holds_the_card_exclusively_and_logout_resets_it(vcards, card_trust,
                                                                 card_audit):
    vcards.insert("physician")
    session = _login(card_trust, card_audit)
    try:
        with pytest.raises(CardError, match="in use by another application"):
            PcscReader().open(0)
    finally:
        session.logout()
    card = PcscReader().open(0)
    try:     # the PIN state did not survive the session
        assert not card.pin_status().verified
        with pytest.raises(StatusWordError) as exc:
            card.sign(sha256_digest_info(b"x"))
        assert exc.value.sw == 0x6982
    finally:
        card.close()


def test_no_card_in_the_reader(pcscd):
    with pytest.raises(CardError, match="no card"):
        PcscReader().open(1)
