"""Fuzzing what a card answers: response APDUs (``drivers.card.apdu``), the CPS protocol
on top of them (``drivers.card.cps``), and the authentication use case fed by a card whose
certificates are damaged (``appliance.services.auth``).

A card (or something pretending to be one) may answer anything: every operation returns its
documented result or raises a ``CardError`` (``WrongPin``, ``PinBlocked``, ``AuthRefused``
included), with a message.
"""

from __future__ import annotations

import functools
from datetime import timedelta

from cryptography.hazmat.primitives import serialization
from hypothesis import example, given, settings
from hypothesis import strategies as st

from appliance.errors import CardError
from appliance.ports.card import SHA256_DIGEST_INFO_PREFIX, CardCertificates, PinStatus
from appliance.services.auth import PractitionerSession, authenticate
from appliance.services.trust import TrustStore
from drivers.card import cps
from drivers.card.apdu import Response, check, describe
from drivers.card.cps import CpsCard
from drivers.card.pki import PROFILES, build_pki
from drivers.card.virtual import VirtualCard
from tests.unit.test_fuzz_strategies import FUZZ, outcome

PIN = "4321"
DIGEST_INFO = SHA256_DIGEST_INFO_PREFIX + bytes(32)

# Status words with a meaning for the protocol (ISO 7816-4 §5.6) and their neighbours.
STATUS_WORDS = st.sampled_from([0x9000, 0x6282, 0x6100, 0x6101, 0x61FF, 0x6C00, 0x6C08,
                                0x6CFF, 0x63C0, 0x63C2, 0x63CF, 0x6300, 0x6983, 0x6A82,
                                0x6B00, 0x6700, 0x6F00, 0x9001, 0x0000, 0xFFFF]) \
    | st.integers(0, 0xFFFF)
DATA = st.sampled_from([b"", b"\x00", bytes(8), bytes(255), bytes(256), bytes(257)]) \
    | st.binary(max_size=300)
RESPONSES = st.one_of(
    st.tuples(DATA, STATUS_WORDS).map(lambda r: r[0] + r[1].to_bytes(2, "big")),
    st.binary(max_size=6),
)


class ScriptedTransport:
    """A reader whose card answers the given bytes in order, then only garbage (b"")."""

    reader = "fuzz"
    atr = cps.CPX_ATR

    def __init__(self, answers: list[bytes]) -> None:
        self.answers = list(answers)
        self.sent: list[bytes] = []

    def transmit(self, apdu: bytes) -> bytes:
        self.sent.append(apdu)
        return self.answers.pop(0) if self.answers else b""

    def close(self) -> None:
        pass


class VirtualTransport:
    """The in-memory virtual card behind ``CpsCard`` (as in test_card_auth_service)."""

    reader = "slot-0"
    atr = cps.CPX_ATR

    def __init__(self, vcard: VirtualCard) -> None:
        self.vcard = vcard

    def transmit(self, apdu: bytes) -> bytes:
        return self.vcard.handle(apdu)

    def close(self) -> None:
        self.vcard.reset()


def _card_error(result: object) -> bool:
    if isinstance(result, CardError):
        assert str(result).strip()
        return True
    return False


# -- response APDUs ---------------------------------------------------------------------------
@settings(FUZZ, max_examples=150)
@given(raw=RESPONSES, allow=st.frozensets(STATUS_WORDS, max_size=3))
def test_response_apdus_parse_and_check_into_data_or_a_card_error(raw, allow):
    response = outcome(Response.parse, raw)
    if _card_error(response):
        assert len(raw) < 2
        return
    assert response.encode() == raw
    assert describe(response.sw).strip()
    data = outcome(check, response, "FUZZ", allow=allow)
    if not _card_error(data):
        assert data == response.data and (response.ok or response.sw in allow)


# -- the CPS protocol over a card that answers anything ------------------------------------------
OPERATIONS = {
    "select": lambda card: card.select(),
    "read_file": lambda card: card.read_file(cps.EF_CERT_AUTH),
    "read_certificates": lambda card: card.read_certificates(),
    "pin_status": lambda card: card.pin_status(),
    "verify_pin": lambda card: card.verify_pin(PIN),
    "get_challenge": lambda card: card.get_challenge(),
    "authenticate": lambda card: card.authenticate(DIGEST_INFO),
    "sign": lambda card: card.sign(DIGEST_INFO),
}


@settings(FUZZ, max_examples=300)
@given(operation=st.sampled_from(sorted(OPERATIONS)),
       answers=st.lists(RESPONSES, max_size=6), chunks=st.integers(0, 3))
@example(operation="read_file", answers=[b"\x90\x00"] + [bytes(256) + b"\x90\x00"] * 3,
         chunks=0)
@example(operation="get_challenge", answers=[b"\x6c\x00", bytes(256) + b"\x90\x00"], chunks=0)
def test_cps_operations_give_their_result_or_a_card_error(operation, answers, chunks):
    # ``chunks`` full 256-byte chunks first, so that READ BINARY goes on to later offsets
    transport = ScriptedTransport([b"\x90\x00"] + [bytes(256) + b"\x90\x00"] * chunks + answers)
    card = CpsCard(transport)
    result = outcome(OPERATIONS[operation], card)
    if _card_error(result):
        return
    if operation in {"select", "verify_pin"}:
        assert result is None
    elif operation == "read_file":
        assert isinstance(result, bytes) and len(result) <= cps.MAX_EF_SIZE + 64 * 256
    elif operation == "read_certificates":
        assert isinstance(result, CardCertificates)
    elif operation == "pin_status":
        assert isinstance(result, PinStatus)
        assert result.tries_left is None or 0 <= result.tries_left <= 15
    elif operation == "get_challenge":
        assert isinstance(result, bytes) and len(result) == cps.CHALLENGE_LENGTH
    else:
        assert isinstance(result, bytes) and result


def test_a_card_that_always_has_more_data_is_given_up():
    transport = ScriptedTransport([b"\x61\x10"] * 200)
    assert _card_error(outcome(CpsCard(transport).select))


def test_a_card_whose_file_never_ends_is_given_up():
    transport = ScriptedTransport([b"\x90\x00"] + [bytes(256) + b"\x90\x00"] * 200)
    result = outcome(CpsCard(transport).read_file, cps.EF_CERT_AUTH)
    assert _card_error(result) and "larger than" in str(result)


# -- authentication with a card whose certificates are damaged -------------------------------------
@functools.cache
def _pki():
    pki = build_pki(profiles={"physician": PROFILES["physician"]})
    material = pki.cards["physician"]
    trust = TrustStore.from_certificates([pki.root.cert, pki.professionals.cert],
                                         [pki.crl_professionals])
    now = material.auth.cert.not_valid_before_utc + timedelta(days=30)
    return pki, material, trust, now


def _login(auth_der: bytes, sign_der: bytes | None) -> object:
    _, material, trust, now = _pki()
    assert material.sign is not None
    vcard = VirtualCard(auth_cert=auth_der, auth_key=material.auth.key, sign_cert=sign_der,
                        sign_key=material.sign.key, pin=PIN)
    card = CpsCard(VirtualTransport(vcard))
    card.select()
    return outcome(authenticate, card, PIN, trust, audit=lambda **entry: None, now=now)


def _der(cert) -> bytes:
    return cert.public_bytes(serialization.Encoding.DER)


def test_the_undamaged_card_logs_in():
    _, material, _, _ = _pki()
    assert material.sign is not None
    assert isinstance(_login(_der(material.auth.cert), _der(material.sign.cert)),
                      PractitionerSession)


def _damaged(der: bytes, flips: list[tuple[int, int]], cut: int | None,
             swap: tuple[bytes, bytes] | None) -> bytes:
    data = bytearray(der)
    for pos, mask in flips:
        data[pos % len(data)] ^= mask
    if swap is not None:
        assert swap[0] in data
        data = bytearray(bytes(data).replace(*swap, 1))
    return bytes(data[:cut] if cut is not None else data) or b"\x00"


# Found by this test: the version 3 certificate said version 4 (x509.InvalidVersion at load,
# not a ValueError), and the RSA key's SEQUENCE retagged as a SET (ValueError from
# ``public_key()`` in the chain check, the key being parsed lazily).
VERSION_4 = (b"\xa0\x03\x02\x01\x02", b"\xa0\x03\x02\x01\x03")
# Found by a longer random run: the surname retagged from UTF8String to BIT STRING made
# ``cert.subject`` raise TypeError ("oid must be X500_UNIQUE_IDENTIFIER for BitString").
SURNAME_AS_BITS = (b"\x06\x03U\x04\x04\x0c\x05DUVAL", b"\x06\x03U\x04\x04\x03\x05DUVAL")
KEY_RETAGGED = (b"\x03\x82\x01\x0f\x00\x30\x82\x01\x0a", b"\x03\x82\x01\x0f\x00\x31\x82\x01\x0a")


@settings(FUZZ, max_examples=150)
@given(which=st.sampled_from(["auth", "sign"]),
       flips=st.lists(st.tuples(st.integers(0, 4095), st.integers(1, 255)), max_size=3),
       cut=st.none() | st.integers(0, 1200), swap=st.none())
@example(which="auth", flips=[], cut=None, swap=VERSION_4)
@example(which="auth", flips=[], cut=None, swap=KEY_RETAGGED)
@example(which="sign", flips=[], cut=None, swap=KEY_RETAGGED)
@example(which="auth", flips=[], cut=None, swap=SURNAME_AS_BITS)
def test_a_damaged_card_certificate_is_refused_as_a_card_error(which, flips, cut, swap):
    _, material, _, _ = _pki()
    assert material.sign is not None
    auth, sign = _der(material.auth.cert), _der(material.sign.cert)
    if which == "auth":
        auth = _damaged(auth, flips, cut, swap)
    else:
        sign = _damaged(sign, flips, cut, swap)
    result = _login(auth, sign)
    if not _card_error(result):
        assert isinstance(result, PractitionerSession)


@settings(FUZZ, max_examples=150)
@given(answers=st.lists(RESPONSES, max_size=12))
def test_authenticating_against_a_card_that_answers_anything_is_a_card_error(answers):
    _, _, trust, now = _pki()
    card = CpsCard(ScriptedTransport(answers))
    result = outcome(authenticate, card, PIN, trust, audit=lambda **entry: None, now=now)
    assert _card_error(result)
