"""The CPS protocol client against the virtual card's logic, in memory (no reader).

Covers the PIN counter, READ BINARY chaining, the signature commands, and that any
garbage answer becomes a ``CardError``.
"""

import contextlib
from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from appliance.errors import CardError, PinBlocked, ValidationError, WrongPin
from appliance.ports.card import CardSession, sha256_digest_info
from drivers.card import cps
from drivers.card.apdu import Command, StatusWordError
from drivers.card.cps import CpsCard, encode_pin
from drivers.card.virtual import VirtualCard

PIN = "1234"


@pytest.fixture(scope="module")
def keys():
    return [rsa.generate_private_key(public_exponent=65537, key_size=2048) for _ in range(2)]


def _cert(key, cn):
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    now = datetime.now(UTC)
    return (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(1)
            .not_valid_before(now).not_valid_after(now + timedelta(days=1))
            .sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.DER))


class MemoryTransport:
    """A transport that hands APDUs to a ``VirtualCard`` (or any answering function)."""

    reader = "memory"
    atr = cps.CPX_ATR

    def __init__(self, answer):
        self.answer = answer
        self.sent = []

    def transmit(self, apdu):
        self.sent.append(apdu)
        return self.answer(apdu)

    def close(self):
        pass


def make(keys, *, sign=True, tries=3, auth_cert=None):
    vcard = VirtualCard(auth_cert=auth_cert or _cert(keys[0], "auth"), auth_key=keys[0],
                        sign_cert=_cert(keys[1], "sign") if sign else None,
                        sign_key=keys[1] if sign else None, pin=PIN, tries=tries)
    transport = MemoryTransport(vcard.handle)
    card = CpsCard(transport)
    card.select()
    return vcard, card, transport


def test_cps_card_implements_the_port(keys):
    _, card, _ = make(keys)
    assert isinstance(card, CardSession)


@pytest.mark.parametrize(("pin", "block"), [("1234", "31323334FFFFFFFF"),
                                            ("12345678", "3132333435363738")])
def test_pin_block_is_ascii_padded_with_ff(pin, block):
    assert encode_pin(pin) == bytes.fromhex(block)


@pytest.mark.parametrize("pin", ["", "123", "123456789", "12a4", "１２３４"])
def test_bad_pin_format_is_refused_without_showing_it(pin):
    with pytest.raises(ValidationError) as exc:
        encode_pin(pin)
    assert "****" in str(exc.value)
    assert not pin or pin not in str(exc.value)


def test_empty_verify_reads_the_counter_without_spending_a_try(keys):
    vcard, card, transport = make(keys)
    for _ in range(5):
        assert card.pin_status().tries_left == 3
    assert transport.sent[-1] == bytes.fromhex("00200081")
    assert vcard.tries == 3


def test_wrong_pins_count_down_then_block(keys):
    vcard, card, _ = make(keys)
    for left in (2, 1, 0):
        with pytest.raises(WrongPin) as exc:
            card.verify_pin("0000")
        assert exc.value.tries_left == left
        assert card.pin_status().tries_left == left
    assert card.pin_status().blocked
    with pytest.raises(PinBlocked):
        card.verify_pin(PIN)            # even the right PIN: never retried
    assert not vcard.verified


def test_good_pin_resets_the_counter_and_survives_only_until_reset(keys):
    vcard, card, _ = make(keys)
    with pytest.raises(WrongPin):
        card.verify_pin("0000")
    card.verify_pin(PIN)
    status = card.pin_status()
    assert status.verified and vcard.tries == 3
    vcard.reset()                       # power cycle: PIN state lost, counter kept
    card.select()
    assert not card.pin_status().verified


def test_blocked_card_stays_blocked_across_resets(keys):
    vcard, card, _ = make(keys, tries=0)
    vcard.reset()
    card.select()
    assert card.pin_status().blocked


def test_read_binary_chains_chunks_until_the_end(keys):
    for size in (1000, 512, 256, 17):
        content = bytes(range(256)) * (size // 256) + bytes(size % 256)
        _, card, transport = make(keys, auth_cert=content)
        transport.sent.clear()
        assert card.read_file(cps.EF_CERT_AUTH) == content
        offsets = [int.from_bytes(a[2:4], "big") for a in transport.sent if a[1] == 0xB0]
        # a file ending on a chunk boundary needs one more read, answered 6B00
        assert offsets == list(range(0, size, 256)) + ([size] if size % 256 == 0 else [])


def test_certificates_and_cpe_without_signature_key(keys):
    _, card, _ = make(keys)
    certs = card.read_certificates()
    assert x509.load_der_x509_certificate(certs.authentication).subject.rfc4514_string() \
        == "CN=auth"
    assert certs.signature is not None
    _, cpe, _ = make(keys, sign=False)
    assert cpe.read_certificates().signature is None
    cpe.verify_pin(PIN)
    with pytest.raises(StatusWordError) as exc:
        cpe.sign(sha256_digest_info(b"x"))
    assert exc.value.sw == 0x6A88


def test_keys_need_the_pin_then_sign_a_sha256_digest_info(keys):
    _, card, _ = make(keys)
    digest_info = sha256_digest_info(b"ordonnance")
    for operation in (card.authenticate, card.sign):
        with pytest.raises(StatusWordError) as exc:
            operation(digest_info)
        assert exc.value.sw == 0x6982
    card.verify_pin(PIN)
    keys[0].public_key().verify(card.authenticate(digest_info), b"ordonnance",
                                padding.PKCS1v15(), hashes.SHA256())
    keys[1].public_key().verify(card.sign(digest_info), b"ordonnance",
                                padding.PKCS1v15(), hashes.SHA256())
    with pytest.raises(StatusWordError) as exc:
        card.sign(b"not a digest info")
    assert exc.value.sw == 0x6A80


def test_get_challenge_is_random_and_sized(keys):
    _, card, _ = make(keys)
    a, b = card.get_challenge(), card.get_challenge()
    assert len(a) == 8 and a != b


@pytest.mark.parametrize(("apdu", "sw"), [
    ("00", "6700"), ("80B0000000", "6E00"), ("00FF000000", "6D00"),
    ("00A4040C03010203", "6A82"), ("00B0000000", "6986"), ("0020000108" + "31" * 8, "6A86"),
    ("002A9E9B02AAAA00", "6A86"), ("00B0800000", "6A81"),
])
def test_virtual_card_answers_errors_by_the_table(keys, apdu, sw):
    vcard, _, _ = make(keys)
    assert vcard.handle(bytes.fromhex(apdu))[-2:] == bytes.fromhex(sw)


def test_select_of_another_application_is_not_a_cps_card():
    card = CpsCard(MemoryTransport(lambda apdu: bytes.fromhex("6A82")))
    with pytest.raises(CardError, match="not a CPS/CPE card"):
        card.select()


def test_get_response_and_wrong_le_are_followed(keys):
    answers = iter([bytes.fromhex("6104"), bytes.fromhex("AABBCCDD9000")])
    card = CpsCard(MemoryTransport(lambda apdu: next(answers)))
    assert card.get_challenge(4) == bytes.fromhex("AABBCCDD")
    answers2 = iter([bytes.fromhex("6C04"), bytes.fromhex("010203049000")])
    card2 = CpsCard(MemoryTransport(lambda apdu: next(answers2)))
    assert card2.get_challenge(4) == bytes.fromhex("01020304")


def test_endless_more_data_is_refused():
    card = CpsCard(MemoryTransport(lambda apdu: bytes.fromhex("AA6101")))
    with pytest.raises(CardError, match="more data"):
        card.get_challenge()


@settings(max_examples=300, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(answer=st.binary(max_size=300))
def test_garbage_answers_are_card_errors_never_crashes(answer):
    card = CpsCard(MemoryTransport(lambda apdu: answer))
    operations = [card.select, card.read_certificates, card.pin_status,
                  lambda: card.verify_pin(PIN), card.get_challenge,
                  lambda: card.authenticate(sha256_digest_info(b"x")),
                  lambda: card.sign(sha256_digest_info(b"x"))]
    for operation in operations:
        with contextlib.suppress(CardError):    # anything else fails the test
            operation()


def test_command_decode_is_what_the_card_sees(keys):
    _, card, transport = make(keys)
    card.verify_pin(PIN)
    sent = Command.decode(transport.sent[-1])
    assert (sent.ins, sent.p2, sent.data) == (cps.INS_VERIFY, cps.PIN_REFERENCE,
                                              encode_pin(PIN))
