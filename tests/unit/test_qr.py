"""The QR payload format (appliance.domain.qr): Base45, the signed part, the container,
and precise errors on malformed payloads. Signatures and certificates are opaque bytes here
(their checks are in tests/integration/test_print_signature.py)."""

import hashlib
import random
import zlib
from datetime import UTC, date, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from appliance.domain.prescription import State
from appliance.domain.prescription_id import PrescriptionIdGenerator
from appliance.domain.qr import (
    BASE45_ALPHABET,
    PREFIX,
    QrPayload,
    SignedOrder,
    b45decode,
    b45encode,
    content_hash,
)
from appliance.errors import ValidationError
from tests.factories import prescription

SIGNED_AT = datetime(2026, 11, 25, 9, 31, 12, 345000, tzinfo=UTC)
SIGNATURE = bytes(range(256))
CERT = b"0\x82\x03\x80" + random.Random(5).randbytes(896)  # as incompressible as a real one


@pytest.fixture
def signed():
    pid = PrescriptionIdGenerator(clock_ms=lambda: 1_764_000_000_000).new()
    return prescription(pid).transition(State.SIGNED, SIGNED_AT)


def _payload_of(container: bytes) -> str:
    return PREFIX + b45encode(zlib.compress(container))


# -- Base45 ------------------------------------------------------------------------------------
@pytest.mark.parametrize(("raw", "text"), [
    (b"AB", "BB8"), (b"Hello!!", "%69 VD92EX0"), (b"base-45", "UJCLQE7W581"),
    (b"ietf!", "QED8WEX0"), (b"", ""),
])
def test_base45_matches_rfc_9285_examples(raw, text):
    assert b45encode(raw) == text
    assert b45decode(text) == raw


@given(st.binary(max_size=300))
def test_base45_round_trips_and_stays_in_the_qr_alphanumeric_set(data):
    text = b45encode(data)
    assert set(text) <= set(BASE45_ALPHABET)
    assert b45decode(text) == data


@pytest.mark.parametrize(("text", "expected"), [
    ("GGW", "up to 65535"),  # 65536: RFC 9285 §4.2 requires an error
    ("ABCD", r"3k\+1"),
    ("AB\u00e9", "Base45 character"),
    ("abc", "Base45 character"),  # lower case is not Base45
    (":::", "up to 65535"),
    ("::", "final Base45 pair up to 255"),
])
def test_base45_refuses_what_rfc_9285_forbids(text, expected):
    with pytest.raises(ValidationError, match=expected) as err:
        b45decode(text)
    assert err.value.field == "qr.base45"


# -- the signed part -------------------------------------------------------------------------
def test_the_signed_part_carries_the_seed_fields_and_the_content_hash(signed):
    order = SignedOrder.from_prescription(signed)
    assert order.prescription_id == signed.id
    assert order.rpps == signed.prescriber.rpps
    assert order.am == "751234567"
    assert (order.last_name, order.first_names) == ("MARTIN", "Jeanne")
    assert order.birth_date == date(1940, 1, 15)
    assert order.issued_at == datetime(2026, 11, 25, 9, 31, 12, tzinfo=UTC)
    assert order.content_hash == hashlib.sha256(signed.canonical_bytes()).digest()
    fields = order.to_bytes().decode().split("\x1f")
    assert fields == ["1", signed.id, signed.prescriber.rpps, "751234567", "MARTIN", "Jeanne",
                      "19400115", "20261125093112", content_hash(signed).hex()]
    assert SignedOrder.from_bytes(order.to_bytes()) == order
    assert order.matches(signed)


def test_any_change_to_the_prescription_changes_its_hash(signed):
    order = SignedOrder.from_prescription(signed)
    other = prescription(signed.id, renewals=1).transition(State.SIGNED, SIGNED_AT)
    assert not order.matches(other)


def test_a_draft_has_no_signed_part_yet(signed):
    draft = prescription(signed.id)
    with pytest.raises(ValidationError, match="signed_at"):
        SignedOrder.from_prescription(draft)


def _part(**changes):
    fields = {"v": "1", "id": "01M8AA52X8ECJK0TE86HARRT", "rpps": "10001234565",
              "am": "751234567", "last": "MARTIN", "first": "Jeanne", "birth": "19400115",
              "issued": "20261125093112", "h": "ab" * 32}
    fields.update(changes)
    return "\x1f".join(fields.values()).encode()


def test_a_valid_hand_made_part_reads():
    assert SignedOrder.from_bytes(_part()).last_name == "MARTIN"


@pytest.mark.parametrize(("changes", "field"), [
    ({"v": "2"}, "qr.version"),
    ({"id": "01M8AA52X8ECJK0TE86HARRX"}, "qr.id"),
    ({"id": "01m8aa52x8ecjk0te86harrt"}, "qr.signed_part"),  # one text, one meaning
    ({"rpps": "10001234566"}, "qr.rpps"),
    ({"am": "75123456"}, "qr.am"),
    ({"last": ""}, "qr.last_name"),
    ({"birth": "19400230"}, "qr.birth_date"),
    ({"birth": "1940-01-15"}, "qr.birth_date"),
    ({"issued": "2026112509311"}, "qr.issued_at"),
    ({"h": "AB" * 32}, "qr.hash"),
    ({"h": "ab" * 16}, "qr.hash"),
])
def test_each_bad_field_is_named(changes, field):
    with pytest.raises(ValidationError) as err:
        SignedOrder.from_bytes(_part(**changes))
    assert err.value.field == field


def test_a_part_with_a_field_too_many_or_not_utf8_is_refused():
    with pytest.raises(ValidationError, match="9 fields"):
        SignedOrder.from_bytes(_part() + b"\x1fextra")
    with pytest.raises(ValidationError, match="UTF-8"):
        SignedOrder.from_bytes(b"\xff\xfe")


# -- the payload -------------------------------------------------------------------------------
def test_payload_round_trip_with_the_certificate(signed):
    order = SignedOrder.from_prescription(signed)
    payload = QrPayload.build(order, SIGNATURE, CERT)
    text = payload.encode()
    assert text.startswith("ORD1:")
    assert set(text) <= set(BASE45_ALPHABET)
    back = QrPayload.decode(text)
    assert back == payload
    assert back.order == order
    assert back.certificate == CERT
    assert back.certificate_fingerprint == hashlib.sha256(CERT).digest()


def test_payload_with_the_certificate_by_reference_is_much_shorter(signed):
    order = SignedOrder.from_prescription(signed)
    full = QrPayload.build(order, SIGNATURE, CERT).encode()
    ref = QrPayload.build(order, SIGNATURE, CERT, embed_certificate=False)
    back = QrPayload.decode(ref.encode())
    assert back.certificate is None
    assert back.certificate_sha256 == hashlib.sha256(CERT).digest()
    assert len(ref.encode()) < len(full)


def test_surrounding_white_space_from_a_scanner_is_ignored(signed):
    text = QrPayload.build(SignedOrder.from_prescription(signed), SIGNATURE, CERT).encode()
    assert QrPayload.decode(f"  {text}\r\n").signature == SIGNATURE


def _container(flags=0, signed=None, sig=SIGNATURE, tail=CERT):
    signed = _part() if signed is None else signed
    return (bytes([flags]) + len(signed).to_bytes(2, "big") + signed
            + len(sig).to_bytes(2, "big") + sig + tail)


@pytest.mark.parametrize(("text", "field"), [
    ("HC1:NCFOXN", "qr.prefix"),
    ("ORD1:abc", "qr.base45"),
    ("ORD1:" + b45encode(b"not zlib at all"), "qr.compression"),
    (PREFIX + b45encode(zlib.compress(b"x" * 20_000)), "qr.compression"),  # too big
    (PREFIX + b45encode(zlib.compress(_container()) + b"junk"), "qr.compression"),
    (PREFIX + b45encode(zlib.compress(_container())[:-5]), "qr.compression"),  # truncated
    (_payload_of(b"\x00\x00"), "qr.container"),
    (_payload_of(_container(flags=7)), "qr.container"),
    (_payload_of(_container()[:40]), "qr.signed_part"),
    (_payload_of(_container(sig=b"", tail=b"")), "qr.signature"),
    (_payload_of(_container(tail=b"")), "qr.certificate"),
    (_payload_of(_container(flags=1, tail=b"short")), "qr.certificate"),
    (_payload_of(_container(signed=_part(rpps="12"))), "qr.rpps"),
])
def test_malformed_payloads_name_the_broken_part(text, field):
    with pytest.raises(ValidationError) as err:
        QrPayload.decode(text)
    assert err.value.field == field


@given(st.data())
def test_one_changed_character_is_never_read_as_the_same_payload(data):
    signed_part = _part()
    text = QrPayload(signed_part, SIGNATURE, certificate=CERT).encode()
    pos = data.draw(st.integers(len(PREFIX), len(text) - 1))
    char = data.draw(st.sampled_from(BASE45_ALPHABET).filter(lambda c: c != text[pos]))
    changed = text[:pos] + char + text[pos + 1:]
    try:
        back = QrPayload.decode(changed)
    except ValidationError:
        return
    assert (back.signed_bytes, back.signature, back.certificate) != (
        signed_part, SIGNATURE, CERT)
