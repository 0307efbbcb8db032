"""The authentication use case on the in-memory virtual card: decisions, audit, session
locking rules. (The same flows run against the real pcscd in tests/integration.)"""

import json
from datetime import timedelta

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding

from appliance.ports.card import CardEvent, CardEventKind
from appliance.services.auth import (
    AuthRefused,
    Role,
    SessionGuard,
    authenticate,
)
from appliance.services.trust import TrustStore
from drivers.card import cps
from drivers.card.cps import CpsCard
from drivers.card.pki import build_pki
from drivers.card.virtual import VirtualCard

PIN = "4321"
DER = serialization.Encoding.DER


class Transport:
    atr = cps.CPX_ATR

    def __init__(self, vcard, reader="slot-0"):
        self.vcard, self.reader, self.closed = vcard, reader, False

    def transmit(self, apdu):
        return self.vcard.handle(apdu)

    def close(self):
        self.closed = True
        self.vcard.reset()


@pytest.fixture(scope="module")
def pki():
    return build_pki()


@pytest.fixture(scope="module")
def now(pki):
    return pki.root.cert.not_valid_before_utc + timedelta(days=5 * 365)


@pytest.fixture(scope="module")
def trust(pki):
    return TrustStore.from_certificates([pki.root.cert, pki.professionals.cert],
                                        [pki.crl_professionals])


def card_for(pki, profile, *, auth_key=None, sign_from=None, reader="slot-0"):
    material = pki.cards[profile]
    sign = pki.cards[sign_from].sign if sign_from else material.sign
    vcard = VirtualCard(
        auth_cert=material.auth.cert.public_bytes(DER), auth_key=auth_key or material.auth.key,
        sign_cert=sign.cert.public_bytes(DER) if sign else None,
        sign_key=sign.key if sign else None, pin=PIN,
        tries=material.profile.initial_tries)
    card = CpsCard(Transport(vcard, reader))
    card.select()
    return vcard, card


class Audit(list):
    def __call__(self, **entry):
        self.append(entry)

    @property
    def actions(self):
        return [e["action"] for e in self]


class Clock:
    def __init__(self):
        self.t = 1000.0

    def __call__(self):
        return self.t


def login(pki, trust, now, profile="physician", pin=PIN, **kwargs):
    audit = Audit()
    vcard, card = card_for(pki, profile, **kwargs)
    try:
        session = authenticate(card, pin, trust, audit=audit, now=now)
    except AuthRefused as exc:
        return None, exc, audit, vcard
    return session, None, audit, vcard


def test_physician_gets_a_signing_session(pki, trust, now):
    session, _, audit, _ = login(pki, trust, now)
    assert session.role is Role.PRESCRIBER and session.can_sign
    assert session.practitioner.id_nat_ps == pki.cards["physician"].profile.id_nat_ps
    assert audit.actions == ["auth.login"]
    assert audit[0]["details"]["role"] == "prescriber"
    signature = session.sign(b"canonical bytes")
    pki.cards["physician"].sign.cert.public_key().verify(
        signature, b"canonical bytes", padding.PKCS1v15(), hashes.SHA256())
    assert session.certificate_der == pki.cards["physician"].sign.cert.public_bytes(DER)


def test_wrong_pin_is_audited_without_the_pin(pki, trust, now):
    _, exc, audit, vcard = login(pki, trust, now, pin="9876")
    assert exc.reason == "wrong_pin" and exc.tries_left == 2
    assert "2 essai(s) restant(s)" in str(exc)
    assert audit.actions == ["auth.wrong_pin"]
    assert audit[0]["details"] == {"tries_left": 2}
    assert "9876" not in json.dumps(audit) and PIN not in json.dumps(audit)
    assert vcard.tries == 2


def test_last_wrong_pin_reports_the_card_blocked(pki, trust, now):
    audit = Audit()
    vcard, card = card_for(pki, "physician")
    reasons = []
    for _ in range(4):
        with pytest.raises(AuthRefused) as exc:
            authenticate(card, "0000", trust, audit=audit, now=now)
        reasons.append(exc.value.reason)
    assert reasons == ["wrong_pin", "wrong_pin", "blocked", "blocked"]
    assert audit.actions == ["auth.wrong_pin", "auth.wrong_pin", "auth.wrong_pin",
                             "auth.card_blocked", "auth.card_blocked"]
    assert vcard.tries == 0


@pytest.mark.parametrize(("profile", "reason"), [
    ("expired", "expired"), ("revoked", "revoked"), ("untrusted", "untrusted"),
    ("blocked", "blocked"),
])
def test_refused_cards_do_not_spend_a_pin_try(pki, trust, now, profile, reason):
    _, exc, audit, vcard = login(pki, trust, now, profile)
    assert exc.reason == reason
    assert vcard.tries == pki.cards[profile].profile.initial_tries
    assert audit[-1]["details"]["reason"] == reason


def test_pin_format_is_checked_before_the_card(pki, trust, now):
    _, exc, _, vcard = login(pki, trust, now, pin="12")
    assert exc.reason == "pin_format" and vcard.tries == 3


def test_key_that_does_not_match_the_certificate_fails_the_challenge(pki, trust, now):
    _, exc, audit, _ = login(pki, trust, now, auth_key=pki.cards["nurse"].auth.key)
    assert exc.reason == "challenge"
    assert audit.actions == ["auth.refused"]


def test_signature_certificate_of_someone_else(pki, trust, now):
    _, exc, _, _ = login(pki, trust, now, sign_from="nurse")
    assert exc.reason == "holder_mismatch"


@pytest.mark.parametrize(("profile", "role"), [("nurse", Role.NURSE), ("cpe", Role.STAFF)])
def test_nurse_and_cpe_cannot_sign(pki, trust, now, profile, role):
    session, _, _, _ = login(pki, trust, now, profile)
    assert session.role is role and not session.can_sign
    for forbidden in (lambda: session.sign(b"x"), lambda: session.certificate_der):
        with pytest.raises(AuthRefused) as exc:
            forbidden()
        assert exc.value.reason == "forbidden"


def _session(pki, trust, now, clock=None):
    audit = Audit()
    vcard, card = card_for(pki, "physician")
    kwargs = {"clock": clock, "idle_timeout_s": 300} if clock else {}
    return authenticate(card, PIN, trust, audit=audit, now=now, **kwargs), audit, vcard


@pytest.mark.parametrize(("event", "reason"), [
    (CardEvent(CardEventKind.REMOVED, "slot-0"), "card_removed"),
    (CardEvent(CardEventKind.READER_REMOVED, "slot-0"), "reader_removed"),
    (CardEvent(CardEventKind.SERVICE_LOST), "service_lost"),
    (CardEvent(CardEventKind.INSERTED, "slot-1"), "other_card"),
])
def test_guard_locks_on_card_events(pki, trust, now, event, reason):
    session, audit, vcard = _session(pki, trust, now)
    seen = []
    session.on_lock(lambda s: seen.append(s.lock_reason))
    SessionGuard(session)(event)
    assert session.locked and seen == [reason]
    assert audit[-1]["action"] == "auth.session_locked"
    assert audit[-1]["details"] == {"reason": reason}
    assert not vcard.verified            # the card was reset: the PIN is needed again
    with pytest.raises(AuthRefused) as exc:
        session.sign(b"x")
    assert exc.value.reason == "locked"


@pytest.mark.parametrize("event", [
    CardEvent(CardEventKind.REMOVED, "slot-1"),
    CardEvent(CardEventKind.INSERTED, "slot-1", initial=True),
    CardEvent(CardEventKind.INSERTED, "slot-0"),
    CardEvent(CardEventKind.READER_ADDED, "slot-2"),
    CardEvent(CardEventKind.SERVICE_BACK),
])
def test_guard_ignores_other_events(pki, trust, now, event):
    session, _, _ = _session(pki, trust, now)
    SessionGuard(session)(event)
    assert not session.locked


def test_idle_timeout_locks_once(pki, trust, now):
    clock = Clock()
    session, audit, _ = _session(pki, trust, now, clock)
    clock.t += 299
    assert not session.check_idle()
    session.sign(b"activity")            # activity moves the deadline
    clock.t += 299
    assert not session.check_idle()
    clock.t += 2
    assert session.check_idle() and session.lock_reason == "idle"
    session.lock("card_removed")         # already locked: no second entry
    assert audit.actions.count("auth.session_locked") == 1
