"""Fuzzing the QR payload readers: Base45, the ePU payload, the signed payload (``ORD2``),
the legacy ``QrPayload.decode``, ``SignedOrder.from_bytes`` and the offline verification
``verify_payload`` (a real signature of the test PKI).

Whatever is scanned, the answer is a payload (that re-encodes to an equivalent one), a
``ValidationError`` naming a ``qr.*`` part, or for ``verify_payload`` an ``InvalidOrder``.
"""

from __future__ import annotations

import functools
import zlib
from datetime import timedelta

from hypothesis import example, given, settings
from hypothesis import strategies as st

from appliance.domain.prescription_id import PrescriptionIdGenerator
from appliance.domain.qr import (
    BASE45_ALPHABET,
    PREFIX,
    SIGNED_PREFIX,
    EpuPayload,
    QrPayload,
    SignedOrder,
    SignedPayload,
    b45decode,
    b45encode,
    decode_payload,
)
from appliance.errors import ValidationError
from appliance.services.signature import (
    InvalidOrder,
    SoftwareSigner,
    VerifiedOrder,
    sign_prescription,
    verify_payload,
)
from drivers.card.pki import PROFILES, build_pki
from tests.factories import physician, prescription
from tests.unit.test_fuzz_strategies import FUZZ, flip_bytes, odd_text, outcome

b45_text = st.text(alphabet=BASE45_ALPHABET, max_size=90)


@functools.cache
def signed_material():
    """One prescription signed with the physician card of a fresh test PKI: its payload,
    container and signed part, the trust roots, and a time inside the validity."""
    profile = PROFILES["physician"]
    pki = build_pki(profiles={"physician": profile})
    card = pki.cards["physician"]
    assert card.sign is not None
    pid = PrescriptionIdGenerator(clock_ms=lambda: 1_764_000_000_000).new()
    at = card.sign.cert.not_valid_before_utc + timedelta(days=30)
    p = prescription(pid, prescriber=physician(id_nat_ps=profile.id_nat_ps),
                     created_at=at - timedelta(minutes=5))
    signed = sign_prescription(p, SoftwareSigner(card.sign.key, card.sign.cert), at)
    roots = [pki.root.cert, pki.professionals.cert]
    legacy = QrPayload.build(signed.payload.signed_bytes, signed.signature,
                             signed.certificate_der)
    return legacy, roots, signed, card.sign.cert


def _valid_payload() -> QrPayload:
    return signed_material()[0]


def _check_decoded(result: object) -> None:
    """A decoded payload is complete and re-encodes to the same payload; an error names a
    ``qr.*`` part."""
    if isinstance(result, ValidationError):
        assert result.field.startswith("qr."), result.field
        return
    assert isinstance(result, QrPayload)
    assert isinstance(result.order, SignedOrder)
    assert QrPayload.decode(result.encode()) == result


def _compressed(container: bytes) -> str:
    return PREFIX + b45encode(zlib.compress(container, 9))


# -- Base45 ----------------------------------------------------------------------------------
@settings(FUZZ, max_examples=150)
@given(odd_text(60) | b45_text)
@example("GGW")  # 3 characters worth 65536 or more (RFC 9285 §4.2)
@example("::")   # a final pair over 255
def test_base45_decoding_returns_bytes_or_names_the_field(text):
    result = outcome(b45decode, text)
    if isinstance(result, ValidationError):
        assert result.field == "qr.base45"
    else:
        assert b45encode(result) == text


# -- the payload -------------------------------------------------------------------------------
@settings(FUZZ, max_examples=200)
@given(st.one_of(
    odd_text(80),
    b45_text.map(lambda t: PREFIX + t),
    st.binary(max_size=120).map(lambda b: PREFIX + b45encode(b)),
    st.binary(max_size=200).map(_compressed),
))
@example("ORD1:" + b45encode(zlib.compress(b"\x00" * 20000)))  # a decompression bomb
@example("ORD1:" + b45encode(zlib.compress(b"\x01\x00\x00") + b"tail"))
@example(" ORD1: ")
def test_garbage_payloads_are_refused_by_part(text):
    _check_decoded(outcome(QrPayload.decode, text))


@st.composite
def mutated_payload_text(draw):
    """The text of a real payload with characters changed, dropped, added or cut."""
    text = _valid_payload().encode()
    chars = list(text)
    for _ in range(draw(st.integers(1, 3))):
        if not chars:
            break
        pos = draw(st.integers(0, len(chars) - 1))
        action = draw(st.sampled_from(["set", "drop", "insert", "cut"]))
        if action == "set":
            chars[pos] = draw(st.sampled_from(BASE45_ALPHABET + "a\x00\u00e9"))
        elif action == "drop":
            del chars[pos]
        elif action == "insert":
            chars.insert(pos, draw(st.sampled_from(BASE45_ALPHABET)))
        else:
            del chars[pos:]
    return "".join(chars)


@settings(FUZZ, max_examples=150)
@given(mutated_payload_text())
def test_mutated_payload_texts_are_refused_or_still_complete(text):
    _check_decoded(outcome(QrPayload.decode, text))


@settings(FUZZ, max_examples=200)
@given(st.data())
def test_mutated_containers_are_refused_by_part(data):
    """Valid zlib around a damaged container: lengths, flags, fields, certificate."""
    container = _valid_payload().container()
    damaged = data.draw(flip_bytes(container, 4))
    _check_decoded(outcome(QrPayload.decode, _compressed(damaged)))


# -- the signed part ---------------------------------------------------------------------------
@st.composite
def mutated_signed_part(draw):
    """The 9 fields of a real signed part, some of them replaced, dropped or doubled."""
    fields = _valid_payload().signed_bytes.decode("utf-8").split("\x1f")
    for _ in range(draw(st.integers(1, 3))):
        pos = draw(st.integers(0, len(fields) - 1))
        action = draw(st.sampled_from(["replace", "drop", "double", "case", "digits"]))
        if action == "replace":
            fields[pos] = draw(odd_text(30))
        elif action == "drop" and len(fields) > 1:
            del fields[pos]
        elif action == "double":
            fields.insert(pos, fields[pos])
        elif action == "case":
            fields[pos] = fields[pos].swapcase()
        else:
            fields[pos] = draw(st.sampled_from(["00000000", "99999999", "20261231246060",
                                                "00010101000000", "\u0663" * 8, "0" * 64,
                                                "F" * 64, ""]))
    return "\x1f".join(fields).encode("utf-8", "surrogatepass")


@settings(FUZZ, max_examples=200)
@given(mutated_signed_part() | st.binary(max_size=200))
@example(b"1" + b"\x1f" * 8)
@example(b"\xff\xfe")
def test_signed_parts_parse_or_name_the_field(data):
    result = outcome(SignedOrder.from_bytes, data)
    if isinstance(result, ValidationError):
        assert result.field.startswith("qr."), result.field
    else:
        assert result.to_bytes() == data


@settings(FUZZ, max_examples=60)
@given(mutated_signed_part())
def test_payloads_with_damaged_fields_are_refused_by_field(signed):
    payload = _valid_payload()
    container = (bytes([1]) + len(signed).to_bytes(2, "big") + signed
                 + len(payload.signature).to_bytes(2, "big") + payload.signature
                 + payload.certificate_fingerprint)
    if len(signed) <= 0xFFFF:
        _check_decoded(outcome(QrPayload.decode, _compressed(container)))


# -- offline verification ----------------------------------------------------------------------
def _check_verified(result: object) -> None:
    if isinstance(result, InvalidOrder):
        assert result.reason.strip()
        return
    assert isinstance(result, VerifiedOrder)


def test_the_valid_payload_verifies():
    payload, roots, signed, cert = signed_material()
    assert isinstance(verify_payload(payload.encode(), roots), VerifiedOrder)
    assert isinstance(verify_payload(signed.payload.encode(), roots, certificates=[cert]),
                      VerifiedOrder)


@settings(FUZZ, max_examples=80)
@given(mutated_payload_text() | odd_text(40))
def test_verifying_damaged_texts_gives_invalid_order(text):
    _, roots, _, cert = signed_material()
    _check_verified(outcome(verify_payload, text, roots, certificates=[cert]))


def _damaged(der: bytes, flips: list[tuple[int, int]], cut: int | None,
             swap: tuple[bytes, bytes] | None) -> bytes:
    data = bytearray(der)
    for pos, mask in flips:
        data[pos % len(data)] ^= mask
    if swap is not None:
        data = bytearray(bytes(data).replace(*swap, 1))
    return bytes(data[:cut] if cut is not None else data) or b"\x00"


# Found by this test: the issuer's CN retagged from UTF8String (0x0C) to tag 13 made
# ``cert.issuer`` raise ValueError in the chain check (cryptography parses names lazily).
ISSUER_RETAGGED = (b"\x0c TEST AC IGC-SANTE PROFESSIONNELS",
                   b"\x0d TEST AC IGC-SANTE PROFESSIONNELS")
# Found by tests/unit/test_fuzz_card.py on the card side, same parser: the surname retagged
# as a BIT STRING made ``cert.subject`` raise TypeError.
SURNAME_AS_BITS = (b"\x06\x03U\x04\x04\x0c\x05DUVAL", b"\x06\x03U\x04\x04\x03\x05DUVAL")


@settings(FUZZ, max_examples=150)
@given(flips=st.lists(st.tuples(st.integers(0, 4095), st.integers(1, 255)), max_size=3),
       cut=st.none() | st.integers(0, 1200), swap=st.none())
@example(flips=[], cut=None, swap=ISSUER_RETAGGED)
@example(flips=[], cut=None, swap=SURNAME_AS_BITS)
def test_verifying_a_damaged_certificate_gives_invalid_order(flips, cut, swap):
    """Bytes of the embedded certificate changed, the signed part and signature intact: the
    certificate parser, the signature check and the chain see a corrupt DER."""
    payload, roots, _, _ = signed_material()
    assert payload.certificate is not None
    der = _damaged(payload.certificate, flips, cut, swap)
    damaged = QrPayload(payload.signed_bytes, payload.signature, certificate=der)
    _check_verified(outcome(verify_payload, damaged.encode(), roots))


# -- the ePU and ORD2 payloads ---------------------------------------------------------------
def _epu_text() -> str:
    return EpuPayload.from_prescription(signed_material()[2].prescription).encode()


@st.composite
def mutated_text(draw, valid: str, alphabet: str):
    chars = list(valid)
    for _ in range(draw(st.integers(1, 3))):
        if not chars:
            break
        pos = draw(st.integers(0, len(chars) - 1))
        action = draw(st.sampled_from(["set", "drop", "insert", "cut"]))
        if action == "set":
            chars[pos] = draw(st.sampled_from(alphabet + "a\x00\u00e9'"))
        elif action == "drop":
            del chars[pos]
        elif action == "insert":
            chars.insert(pos, draw(st.sampled_from(alphabet)))
        else:
            del chars[pos:]
    return "".join(chars)


EPU_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ *-."


@settings(FUZZ, max_examples=200)
@given(st.deferred(lambda: mutated_text(_epu_text(), EPU_ALPHABET))
       | odd_text(80).map(lambda t: "EPU1*" + t))
@example("EPU1*" + "*" * 5000)
@example("EPU1******")
def test_epu_payloads_parse_or_name_the_field(text):
    result = outcome(EpuPayload.decode, text)
    if isinstance(result, ValidationError):
        assert result.field.startswith("qr."), result.field
    else:
        assert EpuPayload.decode(result.encode()) == result


@settings(FUZZ, max_examples=150)
@given(st.deferred(lambda: mutated_text(signed_material()[2].payload.encode(),
                                        BASE45_ALPHABET))
       | st.binary(max_size=400).map(lambda b: SIGNED_PREFIX + b45encode(b)))
@example(SIGNED_PREFIX + "0" * 5000)
def test_signed_payloads_parse_or_name_the_field(text):
    result = outcome(SignedPayload.decode, text)
    if isinstance(result, ValidationError):
        assert result.field.startswith("qr."), result.field
    else:
        assert SignedPayload.decode(result.encode()) == result
        _, roots, _, cert = signed_material()
        _check_verified(outcome(verify_payload, text, roots, certificates=[cert]))


@settings(FUZZ, max_examples=100)
@given(odd_text(120) | st.sampled_from(["EPU1*", "ORD2:", "ORD1:"]).flatmap(
    lambda prefix: odd_text(60).map(lambda t: prefix + t)))
def test_any_text_is_a_payload_or_a_named_error(text):
    result = outcome(decode_payload, text)
    if isinstance(result, ValidationError):
        assert result.field.startswith("qr."), result.field
