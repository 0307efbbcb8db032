"""The QR payload of a printed order: what is signed, how it is packed, how it is read back.

One card signature per prescription covers both the QR and the full prescription: the card
signs the *signed part* below, which carries the fields a pharmacist needs plus ``H``, the
SHA-256 of ``Prescription.canonical_bytes()``. Whoever holds the trust roots can check the
QR offline (``appliance.services.signature.verify_payload``); whoever also holds the
prescription (the registry, the DMP PDF) can check that it is the one that was signed.

Signed part, format version 1: UTF-8 text, 9 fields joined by U+001F (UNIT SEPARATOR, which
``people._name`` can never leave in a name since ``str.split()`` treats it as white space)::

    1                  format version of the signed part
    ID                 prescription ID, 24 characters (``prescription_id``)
    RPPS               11 digits (idNat_PS minus its leading ``8``)
    N° AM              9 digits
    NOM                birth name (INS reference trait), upper case
    PRENOMS            first names as registered (INS reference trait)
    YYYYMMDD           birth date
    YYYYMMDDHHMMSS     issue time, UTC: the moment of signature (``signed_at``), to the second
    H                  SHA-256 of ``canonical_bytes()``, 64 lower-case hex digits (not truncated)

The card computes RSA-2048 PKCS#1 v1.5 over SHA-256 of exactly these bytes.

Payload: ``ORD1:`` + Base45 (RFC 9285) of zlib (RFC 1950, level 9) of the container::

    flags     1 byte: 0 = the signer's certificate follows in DER,
                      1 = only its SHA-256 follows (32 bytes): "certificate by reference",
                          used when the DER would not fit the medium; the verifier then
                          needs the certificate from elsewhere (e.g. the national directory)
    u16 BE    length of the signed part, then the signed part
    u16 BE    length of the signature, then the signature
    rest      the certificate (DER) or its SHA-256

Base45 uses exactly the 45 characters of the QR alphanumeric mode, so the QR is encoded in
that mode (5.5 bits per character, 8.25 bits per payload byte: 3 % more than byte mode,
and no scanner-dependent character set issue). zlib's Adler-32 makes most transmission
errors visible as such (``qr.compression``) before any signature check.

Size (test PKI, RSA-2048, 993-byte certificate): about 1.25 KiB compressed, 1 900 characters;
a QR version 26-27 at error-correction level L, which fits a 58 mm receipt (384 dots at
203 dpi) at 3 dots per module. The budget and the choices are in ``drivers/printer/layout.py``.

Pure: stdlib only. Decoding errors are ``ValidationError`` naming the part that is wrong.
"""

from __future__ import annotations

import hashlib
import re
import zlib
from dataclasses import dataclass
from datetime import UTC, date, datetime

from appliance.domain.ids import validate_am, validate_rpps
from appliance.domain.prescription import Prescription
from appliance.domain.prescription_id import validate_prescription_id
from appliance.errors import ValidationError

__all__ = [
    "BASE45_ALPHABET",
    "PREFIX",
    "SIGNED_PART_VERSION",
    "QrPayload",
    "SignedOrder",
    "b45decode",
    "b45encode",
    "content_hash",
]

PREFIX = "ORD1:"
SIGNED_PART_VERSION = 1
SEPARATOR = "\x1f"
FIELD_COUNT = 9
CERT_EMBEDDED = 0
CERT_REFERENCE = 1
SHA256_LENGTH = 32
MAX_CONTAINER = 16 * 1024  # decompression bound: a payload can never expand beyond this
MAX_NAME = 100

# RFC 9285 §4: the 45 characters of the QR alphanumeric mode, in this order.
BASE45_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ $%*+-./:"
_B45_VALUE = {c: i for i, c in enumerate(BASE45_ALPHABET)}

_DATE = re.compile(r"\d{8}")
_TIME = re.compile(r"\d{14}")
_HEX64 = re.compile(r"[0-9a-f]{64}")


# -- Base45 (RFC 9285) --------------------------------------------------------------------
def b45encode(data: bytes) -> str:
    """RFC 9285 §4: each 2 bytes ``a, b`` → ``n = a·256 + b`` → 3 characters (c, d, e) with
    ``n = c + d·45 + e·45²``; a last single byte → 2 characters."""
    out = []
    for i in range(0, len(data) - 1, 2):
        n = data[i] << 8 | data[i + 1]
        e, rest = divmod(n, 45 * 45)
        d, c = divmod(rest, 45)
        out.append(BASE45_ALPHABET[c] + BASE45_ALPHABET[d] + BASE45_ALPHABET[e])
    if len(data) % 2:
        d, c = divmod(data[-1], 45)
        out.append(BASE45_ALPHABET[c] + BASE45_ALPHABET[d])
    return "".join(out)


def b45decode(text: str, field: str = "qr.base45") -> bytes:
    """Strict RFC 9285 decoding: refuses unknown characters, a length of 3k+1 and
    values that do not fit (RFC 9285 §4.2: more than 65535 for 3 characters, 255 for 2)."""
    if len(text) % 3 == 1:
        raise ValidationError(field, len(text), "a Base45 text whose length is not 3k+1")
    values = []
    for pos, ch in enumerate(text, start=1):
        value = _B45_VALUE.get(ch)
        if value is None:
            raise ValidationError(field, ch, f"a Base45 character (position {pos})")
        values.append(value)
    out = bytearray()
    for i in range(0, len(values), 3):
        chunk = values[i : i + 3]
        if len(chunk) == 3:
            n = chunk[0] + chunk[1] * 45 + chunk[2] * 45 * 45
            if n > 0xFFFF:
                raise ValidationError(field, "".join(text[i : i + 3]),
                                      f"a Base45 triplet up to 65535 (position {i + 1})")
            out += n.to_bytes(2, "big")
        else:
            n = chunk[0] + chunk[1] * 45
            if n > 0xFF:
                raise ValidationError(field, text[i:], "a final Base45 pair up to 255")
            out.append(n)
    return bytes(out)


# -- the signed part ------------------------------------------------------------------------
def content_hash(prescription: Prescription) -> bytes:
    """``H``: SHA-256 of the prescription's RFC 8785 canonical bytes."""
    return hashlib.sha256(prescription.canonical_bytes()).digest()


def _clean_name(field: str, value: str) -> str:
    if not value or SEPARATOR in value or len(value) > MAX_NAME or not value.isprintable():
        raise ValidationError(field, value, f"a printable name of 1 to {MAX_NAME} characters")
    return value


@dataclass(frozen=True)
class SignedOrder:
    """The fields of the signed part, checked on construction."""

    prescription_id: str
    rpps: str
    am: str
    last_name: str
    first_names: str
    birth_date: date
    issued_at: datetime  # UTC, whole seconds
    content_hash: bytes
    version: int = SIGNED_PART_VERSION

    def __post_init__(self) -> None:
        if self.version != SIGNED_PART_VERSION:
            raise ValidationError("qr.version", self.version, f"{SIGNED_PART_VERSION}")
        object.__setattr__(self, "prescription_id",
                           validate_prescription_id(self.prescription_id, field="qr.id"))
        object.__setattr__(self, "rpps", validate_rpps(self.rpps, field="qr.rpps"))
        object.__setattr__(self, "am", validate_am(self.am, field="qr.am"))
        _clean_name("qr.last_name", self.last_name)
        _clean_name("qr.first_names", self.first_names)
        if self.issued_at.tzinfo is None:
            raise ValidationError("qr.issued_at", self.issued_at.isoformat(),
                                  "a timezone-aware time")
        object.__setattr__(self, "issued_at",
                           self.issued_at.astimezone(UTC).replace(microsecond=0))
        if len(self.content_hash) != SHA256_LENGTH:
            raise ValidationError("qr.hash", self.content_hash.hex(), "32 bytes (SHA-256)")

    @classmethod
    def from_prescription(cls, prescription: Prescription) -> SignedOrder:
        """The signed part of a prescription being signed (``signed_at`` set) or signed."""
        p = prescription
        if p.signed_at is None:
            raise ValidationError("signed_at", None, "the time of signature (sign first)")
        if p.prescriber.rpps is None:
            raise ValidationError("prescriber.id_nat_ps", p.prescriber.id_nat_ps,
                                  "an RPPS-based idNat_PS (8 + RPPS)")
        if not p.prescriber.am:
            raise ValidationError("prescriber.am", None, "the prescriber's N° AM")
        return cls(prescription_id=p.id, rpps=p.prescriber.rpps, am=p.prescriber.am,
                   last_name=p.resident.birth_name, first_names=p.resident.first_names,
                   birth_date=p.resident.birth_date, issued_at=p.signed_at,
                   content_hash=content_hash(p))

    def to_bytes(self) -> bytes:
        """The exact bytes the card signs."""
        fields = [str(self.version), self.prescription_id, self.rpps, self.am, self.last_name,
                  self.first_names, self.birth_date.strftime("%Y%m%d"),
                  self.issued_at.strftime("%Y%m%d%H%M%S"), self.content_hash.hex()]
        return SEPARATOR.join(fields).encode("utf-8")

    @classmethod
    def from_bytes(cls, data: bytes) -> SignedOrder:
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            raise ValidationError("qr.signed_part", data[:20], "UTF-8 text") from None
        fields = text.split(SEPARATOR)
        if len(fields) != FIELD_COUNT:
            raise ValidationError("qr.signed_part", len(fields), f"{FIELD_COUNT} fields")
        version, pid, rpps, am, last, first, birth, issued, digest = fields
        if version != str(SIGNED_PART_VERSION):
            raise ValidationError("qr.version", version, f"{SIGNED_PART_VERSION}")
        if not _DATE.fullmatch(birth):
            raise ValidationError("qr.birth_date", birth, "YYYYMMDD")
        if not _TIME.fullmatch(issued):
            raise ValidationError("qr.issued_at", issued, "YYYYMMDDHHMMSS (UTC)")
        if not _HEX64.fullmatch(digest):
            raise ValidationError("qr.hash", digest, "64 lower-case hex digits (SHA-256)")
        try:
            birth_date = datetime.strptime(birth, "%Y%m%d").date()
        except ValueError:
            raise ValidationError("qr.birth_date", birth, "an existing date") from None
        try:
            issued_at = datetime.strptime(issued, "%Y%m%d%H%M%S").replace(tzinfo=UTC)
        except ValueError:
            raise ValidationError("qr.issued_at", issued, "an existing date and time") from None
        order = cls(prescription_id=pid, rpps=rpps, am=am, last_name=last, first_names=first,
                    birth_date=birth_date, issued_at=issued_at,
                    content_hash=bytes.fromhex(digest))
        if order.to_bytes() != data:  # e.g. a lower-case or spaced ID: one text, one meaning
            raise ValidationError("qr.signed_part", text[:40], "fields in canonical form")
        return order

    def matches(self, prescription: Prescription) -> bool:
        """True when ``prescription`` is the one whose content this part signs."""
        return content_hash(prescription) == self.content_hash


# -- the payload ----------------------------------------------------------------------------
@dataclass(frozen=True)
class QrPayload:
    """A decoded (or to-be-encoded) payload. ``signed_bytes`` are kept as read: the
    signature is checked over them, never over a re-serialisation."""

    signed_bytes: bytes
    signature: bytes
    certificate: bytes | None = None  # DER, when embedded
    certificate_sha256: bytes | None = None  # when the certificate is by reference

    def __post_init__(self) -> None:
        if (self.certificate is None) == (self.certificate_sha256 is None):
            raise ValidationError("qr.certificate", None,
                                  "either the certificate or its SHA-256, not both")
        if self.certificate_sha256 is not None and len(self.certificate_sha256) != 32:
            raise ValidationError("qr.certificate", len(self.certificate_sha256),
                                  "a 32-byte SHA-256 reference")
        if not self.signature or len(self.signature) > 0xFFFF:
            raise ValidationError("qr.signature", len(self.signature), "1 to 65535 bytes")
        if len(self.signed_bytes) > 0xFFFF:
            raise ValidationError("qr.signed_part", len(self.signed_bytes), "at most 65535 bytes")

    @classmethod
    def build(cls, order: SignedOrder | bytes, signature: bytes, certificate_der: bytes,
              *, embed_certificate: bool = True) -> QrPayload:
        signed = order.to_bytes() if isinstance(order, SignedOrder) else order
        if embed_certificate:
            return cls(signed, signature, certificate=certificate_der)
        return cls(signed, signature,
                   certificate_sha256=hashlib.sha256(certificate_der).digest())

    @property
    def order(self) -> SignedOrder:
        return SignedOrder.from_bytes(self.signed_bytes)

    @property
    def certificate_fingerprint(self) -> bytes:
        """SHA-256 of the signer's certificate (computed when it is embedded)."""
        if self.certificate is not None:
            return hashlib.sha256(self.certificate).digest()
        assert self.certificate_sha256 is not None
        return self.certificate_sha256

    def container(self) -> bytes:
        if self.certificate is not None:
            flags, tail = CERT_EMBEDDED, self.certificate
        else:
            assert self.certificate_sha256 is not None
            flags, tail = CERT_REFERENCE, self.certificate_sha256
        return (bytes([flags]) + len(self.signed_bytes).to_bytes(2, "big") + self.signed_bytes
                + len(self.signature).to_bytes(2, "big") + self.signature + tail)

    def encode(self) -> str:
        """``ORD1:`` + Base45(zlib(container)): only QR alphanumeric characters."""
        return PREFIX + b45encode(zlib.compress(self.container(), 9))

    @classmethod
    def decode(cls, text: str) -> QrPayload:
        """Read a scanned payload; raise ``ValidationError`` naming the broken part."""
        text = text.strip()
        if not text.startswith(PREFIX):
            raise ValidationError("qr.prefix", text[:8], f"a payload starting with {PREFIX}")
        packed = b45decode(text[len(PREFIX):])
        inflater = zlib.decompressobj()
        try:
            data = inflater.decompress(packed, MAX_CONTAINER)
        except zlib.error as exc:
            raise ValidationError("qr.compression", str(exc), "zlib data (RFC 1950)") from None
        if inflater.unconsumed_tail:
            raise ValidationError("qr.compression", len(packed),
                                  f"at most {MAX_CONTAINER} bytes once decompressed")
        if not inflater.eof or inflater.unused_data:
            raise ValidationError("qr.compression", len(packed),
                                  "one complete zlib stream and nothing after it")
        return cls._from_container(data)

    @classmethod
    def _from_container(cls, data: bytes) -> QrPayload:
        if len(data) < 5:
            raise ValidationError("qr.container", len(data), "at least 5 bytes")
        flags = data[0]
        if flags not in (CERT_EMBEDDED, CERT_REFERENCE):
            raise ValidationError("qr.container", flags, "flags 0 (certificate) or 1 (reference)")
        pos = 1
        signed_len = int.from_bytes(data[pos : pos + 2], "big")
        pos += 2
        signed = data[pos : pos + signed_len]
        if len(signed) != signed_len:
            raise ValidationError("qr.signed_part", len(signed), f"{signed_len} bytes")
        pos += signed_len
        if len(data) < pos + 2:
            raise ValidationError("qr.signature", None, "a length then the signature")
        sig_len = int.from_bytes(data[pos : pos + 2], "big")
        pos += 2
        signature = data[pos : pos + sig_len]
        if len(signature) != sig_len or not sig_len:
            raise ValidationError("qr.signature", len(signature), f"{sig_len or 'some'} bytes")
        tail = data[pos + sig_len :]
        if flags == CERT_EMBEDDED:
            if not tail:
                raise ValidationError("qr.certificate", 0, "the signer's certificate (DER)")
            payload = cls(signed, signature, certificate=tail)
        else:
            if len(tail) != SHA256_LENGTH:
                raise ValidationError("qr.certificate", len(tail), "a 32-byte SHA-256")
            payload = cls(signed, signature, certificate_sha256=tail)
        SignedOrder.from_bytes(signed)  # parse the fields now, so that errors name them
        return payload
