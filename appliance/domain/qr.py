"""The QR payloads of a printed order: what they carry, how they are packed and read back.

Two payloads, chosen by ``[print] qr``:

- ``epu`` (default), **the national design's content** (seed, "Contenu du QR Code"): the
  prescription ID, the prescriber's N° AM and RPPS, the resident's birth name, first
  names and birth date, and a version marker; nothing else. The pharmacist's software
  fetches the rest from the registry with the ID. About 90 characters: a QR version 5-6.
  See ``EpuPayload`` and the README ("QR content") for the byte-by-byte layout.
- ``signed``: the same fields plus the issue time and ``H`` (below), the card's signature
  over them, and the signer's certificate *by reference* (issuer and serial number), so
  that whoever holds the trust roots and the certificate can check the order offline.
  ``ORD2:`` + Base45 of a binary container, about 560 characters: ``SignedPayload``.

Older orders carry ``ORD1:`` payloads (zlib container with the whole certificate or its
SHA-256): ``QrPayload`` still reads and checks them.

One card signature per prescription covers both the QR and the full prescription: the card
signs the *signed part* below, which carries the fields a pharmacist needs plus ``H``, the
SHA-256 of ``Prescription.canonical_bytes()``. Whoever holds the trust roots can check the
signed QR offline (``appliance.services.signature.verify_payload``); whoever also holds the
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

The card computes RSA-2048 PKCS#1 v1.5 over SHA-256 of exactly these bytes. The ``ORD2``
container does not carry these bytes verbatim: it carries the fields in binary, and the
verifier rebuilds the signed part from them (one text, one meaning: ``SignedOrder``).

Legacy payload ``ORD1:`` + Base45 (RFC 9285) of zlib (RFC 1950, level 9) of the container::

    flags     1 byte: 0 = the signer's certificate follows in DER,
                      1 = only its SHA-256 follows (32 bytes)
    u16 BE    length of the signed part, then the signed part
    u16 BE    length of the signature, then the signature
    rest      the certificate (DER) or its SHA-256

Base45 uses exactly the 45 characters of the QR alphanumeric mode, so every payload here is
encoded in that mode (5.5 bits per character) and has no scanner-dependent character set
issue.

Pure: stdlib only. Decoding errors are ``ValidationError`` naming the part that is wrong.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
import zlib
from dataclasses import dataclass
from datetime import UTC, date, datetime

from appliance.domain.ids import validate_am, validate_rpps
from appliance.domain.prescription import Prescription
from appliance.domain.prescription_id import ALPHABET as ID_ALPHABET
from appliance.domain.prescription_id import ID_LENGTH, validate_prescription_id
from appliance.errors import ValidationError

__all__ = [
    "BASE45_ALPHABET",
    "EPU_MARKER",
    "MAX_INPUT",
    "PREFIX",
    "SIGNED_PART_VERSION",
    "SIGNED_PREFIX",
    "CertificateRef",
    "EpuPayload",
    "QrPayload",
    "SignedOrder",
    "SignedPayload",
    "b45decode",
    "b45encode",
    "content_hash",
    "decode_payload",
    "qr_name",
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


# -- the ePU payload (the national design's QR content) ------------------------------------
EPU_MARKER = "EPU1"
EPU_SEPARATOR = "*"
EPU_APOSTROPHE = "."  # the apostrophe of a name, which the QR alphanumeric mode lacks
EPU_FIELDS = 7
MAX_EPU = 400  # 62 fixed characters + two names of at most 100 (and a margin)
MAX_INPUT = 4096  # what a reader of a scanned payload accepts at most, any payload

# Letters that NFKD does not decompose into a base letter plus accents.
_LETTERS = str.maketrans({"Æ": "AE", "æ": "AE", "Œ": "OE", "œ": "OE", "ß": "SS", "ẞ": "SS",
                          "Ø": "O", "ø": "O", "Đ": "D", "đ": "D", "Ł": "L", "ł": "L",
                          "Þ": "TH", "þ": "TH", "Ð": "D", "ð": "D", "ı": "I", "Ŀ": "L",
                          "ŀ": "L", "Ħ": "H", "ħ": "H", "Ŧ": "T", "ŧ": "T"})
_APOSTROPHES = "'\u2019\u2018\u02bc\u00b4`\u2032"
_HYPHENS = "-\u2010\u2011\u2012\u2013\u2014\u2212"
_NAME_RE = re.compile(r"(?:[A-Z'-]+(?: [A-Z'-]+)*)?")
_WIRE_NAME_RE = re.compile(r"(?:[A-Z.-]+(?: [A-Z.-]+)*)?")
_DIGITS8 = re.compile(r"\d{8}")


def qr_name(text: str) -> str:
    """A name as the ePU payload carries it: upper-case Latin letters without diacritics,
    spaces, hyphens and apostrophes (the form of the INS reference traits).

    NFKD then diacritics dropped ("Thérèse" → "THERESE"); Æ Œ ß Ø Ł Đ Þ ı written with
    base letters (AE, OE, SS, O, L, D, TH, I); the typographic apostrophes become ``'``
    and the dashes ``-``; every other character (digits, punctuation, other scripts)
    becomes a space; runs of spaces become one and the ends are trimmed."""
    out = []
    for ch in unicodedata.normalize("NFKD", text.translate(_LETTERS)):
        if unicodedata.combining(ch):
            continue
        if ch in _APOSTROPHES:
            out.append("'")
        elif ch in _HYPHENS:
            out.append("-")
        else:
            up = ch.upper()
            out.append(up if len(up) == 1 and "A" <= up <= "Z" else " ")
    return " ".join("".join(out).split())


def _strict_id(value: str, field: str) -> str:
    pid = validate_prescription_id(value, field=field)  # format and check character
    if pid != value:
        raise ValidationError(field, value, f"the {ID_LENGTH}-character ID in canonical form")
    return pid


def _date8(field: str, value: str) -> date:
    if not _DIGITS8.fullmatch(value):
        raise ValidationError(field, value, "YYYYMMDD")
    try:
        return datetime.strptime(value, "%Y%m%d").date()
    except ValueError:
        raise ValidationError(field, value, "an existing date (YYYYMMDD)") from None


@dataclass(frozen=True)
class EpuPayload:
    """The ePU QR content: ``EPU1*ID*AM*RPPS*NOM*PRENOMS*YYYYMMDD``.

    Fields, in this order, joined by ``*``; only QR alphanumeric characters::

        EPU1       version marker (a reader refuses another marker)
        ID         the prescription ID, 24 characters, check character included
        AM         the prescriber's N° AM, 9 digits
        RPPS       the prescriber's RPPS, 11 digits (Luhn key included)
        NOM        the resident's birth name, ``qr_name`` form, apostrophe written ``.``
        PRENOMS    the resident's first names as registered, same form
        YYYYMMDD   the resident's birth date

    ``*`` never occurs in a field (names are reduced to A-Z, space, ``-`` and ``'``), so
    nothing else needs escaping: a ``;`` or a newline in a registered name became a space.
    Names are kept here in their readable form (``'``); ``encode`` writes ``.``.
    """

    prescription_id: str
    am: str
    rpps: str
    last_name: str
    first_names: str
    birth_date: date

    def __post_init__(self) -> None:
        _strict_id(self.prescription_id, "qr.id")
        validate_am(self.am, field="qr.am")
        validate_rpps(self.rpps, field="qr.rpps")
        for field, value in (("qr.last_name", self.last_name),
                             ("qr.first_names", self.first_names)):
            if not _NAME_RE.fullmatch(value):
                raise ValidationError(field, value, "upper-case letters A-Z, spaces, - and '")
        if not isinstance(self.birth_date, date):
            raise ValidationError("qr.birth_date", self.birth_date, "a date")

    @classmethod
    def from_prescription(cls, prescription: Prescription) -> EpuPayload:
        p = prescription
        if p.prescriber.rpps is None:
            raise ValidationError("prescriber.id_nat_ps", p.prescriber.id_nat_ps,
                                  "an RPPS-based idNat_PS (8 + RPPS)")
        if not p.prescriber.am:
            raise ValidationError("prescriber.am", None, "the prescriber's N° AM")
        r = p.resident
        return cls(prescription_id=p.id, am=p.prescriber.am, rpps=p.prescriber.rpps,
                   last_name=qr_name(r.birth_name), first_names=qr_name(r.first_names),
                   birth_date=r.birth_date)

    def encode(self) -> str:
        fields = [EPU_MARKER, self.prescription_id, self.am, self.rpps,
                  self.last_name.replace("'", EPU_APOSTROPHE),
                  self.first_names.replace("'", EPU_APOSTROPHE),
                  self.birth_date.strftime("%Y%m%d")]
        return EPU_SEPARATOR.join(fields)

    @classmethod
    def decode(cls, text: str) -> EpuPayload:
        """Read a scanned ePU payload; ``ValidationError`` names the wrong field."""
        text = text.strip()
        if len(text) > MAX_EPU:
            raise ValidationError("qr.length", len(text), f"at most {MAX_EPU} characters")
        fields = text.split(EPU_SEPARATOR)
        if fields[0] != EPU_MARKER:
            raise ValidationError("qr.version", fields[0][:8], f"the marker {EPU_MARKER}")
        if len(fields) != EPU_FIELDS:
            raise ValidationError("qr.fields", len(fields),
                                  f"{EPU_FIELDS} fields separated by {EPU_SEPARATOR}")
        _, pid, am, rpps, last, first, birth = fields
        for field, value in (("qr.last_name", last), ("qr.first_names", first)):
            if not _WIRE_NAME_RE.fullmatch(value):
                raise ValidationError(field, value, "upper-case letters A-Z, spaces, - and .")
        return cls(prescription_id=pid, am=am, rpps=rpps,
                   last_name=last.replace(EPU_APOSTROPHE, "'"),
                   first_names=first.replace(EPU_APOSTROPHE, "'"),
                   birth_date=_date8("qr.birth_date", birth))

    def mismatches(self, prescription: Prescription) -> list[str]:
        """The fields that differ from ``prescription`` (empty when it is this order)."""
        expected = EpuPayload.from_prescription(prescription)
        return [name for name in ("prescription_id", "am", "rpps", "last_name",
                                  "first_names", "birth_date")
                if getattr(self, name) != getattr(expected, name)]


# -- the compact signed payload (ORD2) -----------------------------------------------------
SIGNED_PREFIX = "ORD2:"
ISSUER_HASH_LENGTH = 16
MAX_SERIAL_BYTES = 20  # RFC 5280 §4.1.2.2
SIGNATURE_SIZES = (128, 192, 256, 384, 512)  # RSA-1024 to RSA-4096: a cut payload shows
_ID_VALUE = {c: i for i, c in enumerate(ID_ALPHABET)}


def issuer_hash(issuer_der: bytes) -> bytes:
    """The first 16 bytes of SHA-256 of a certificate issuer's DER-encoded Name."""
    return hashlib.sha256(issuer_der).digest()[:ISSUER_HASH_LENGTH]


@dataclass(frozen=True)
class CertificateRef:
    """The signer's certificate by reference: its issuer (SHA-256 of the issuer's DER Name,
    first 16 bytes, as OCSP names an issuer by hash) and its serial number."""

    issuer_hash: bytes
    serial: int

    def __post_init__(self) -> None:
        if len(self.issuer_hash) != ISSUER_HASH_LENGTH:
            raise ValidationError("qr.issuer", self.issuer_hash.hex(),
                                  f"{ISSUER_HASH_LENGTH} bytes")
        if not 0 < self.serial < 1 << (8 * MAX_SERIAL_BYTES):
            raise ValidationError("qr.serial", self.serial,
                                  f"a positive serial number of at most {MAX_SERIAL_BYTES} bytes")

    @classmethod
    def of(cls, issuer_der: bytes, serial: int) -> CertificateRef:
        return cls(issuer_hash(issuer_der), serial)

    def matches(self, issuer_der: bytes, serial: int) -> bool:
        return serial == self.serial and issuer_hash(issuer_der) == self.issuer_hash


def _id_bytes(pid: str) -> bytes:
    value = 0
    for ch in pid:
        value = value << 5 | _ID_VALUE[ch]
    return value.to_bytes(5 * ID_LENGTH // 8, "big")


def _id_text(raw: bytes) -> str:
    value = int.from_bytes(raw, "big")
    chars = [ID_ALPHABET[(value >> (5 * k)) & 31] for k in range(ID_LENGTH)]
    return "".join(reversed(chars))


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    def take(self, n: int, field: str) -> bytes:
        chunk = self.data[self.pos : self.pos + n]
        if len(chunk) != n:
            raise ValidationError(field, len(self.data), f"{n} more bytes at offset {self.pos}")
        self.pos += n
        return chunk

    def number(self, n: int, field: str) -> int:
        return int.from_bytes(self.take(n, field), "big")


@dataclass(frozen=True)
class SignedPayload:
    """The offline-verifiable payload: ``ORD2:`` + Base45 (RFC 9285) of this container::

        offset  size  what
        0       15    ID: its 24 base32 characters, 5 bits each, big-endian
        15      5     RPPS as an unsigned integer (11 digits with leading zeros)
        20      4     N° AM as an unsigned integer (9 digits with leading zeros)
        24      4     birth date: YYYYMMDD as an unsigned integer
        28      4     issue time: seconds since 1970-01-01 UTC, unsigned
        32      32    H: SHA-256 of the canonical prescription
        64      2+n   birth name: u16 length, then UTF-8 (as registered)
        ...     2+n   first names: u16 length, then UTF-8
        ...     16    issuer of the signer's certificate (``CertificateRef``)
        ...     1+n   serial number: length (1 to 20), then big-endian bytes
        ...     rest  the card's signature (RSA PKCS#1 v1.5 over the signed part: 256
                      bytes for the RSA-2048 keys of CPS cards; 128 to 512 accepted)

    All integers are big-endian. The verifier rebuilds the signed part (``SignedOrder``)
    from the fields and checks the signature over its bytes.
    """

    order: SignedOrder
    signature: bytes
    certificate: CertificateRef

    def __post_init__(self) -> None:
        if len(self.signature) not in SIGNATURE_SIZES:
            raise ValidationError("qr.signature", len(self.signature),
                                  "an RSA signature of 128, 192, 256, 384 or 512 bytes")

    @property
    def signed_bytes(self) -> bytes:
        return self.order.to_bytes()

    def container(self) -> bytes:
        o, ref = self.order, self.certificate
        last, first = o.last_name.encode("utf-8"), o.first_names.encode("utf-8")
        serial = ref.serial.to_bytes((ref.serial.bit_length() + 7) // 8, "big")
        return b"".join([
            _id_bytes(o.prescription_id), int(o.rpps).to_bytes(5, "big"),
            int(o.am).to_bytes(4, "big"), int(o.birth_date.strftime("%Y%m%d")).to_bytes(4, "big"),
            int(o.issued_at.timestamp()).to_bytes(4, "big"), o.content_hash,
            len(last).to_bytes(2, "big"), last, len(first).to_bytes(2, "big"), first,
            ref.issuer_hash, bytes([len(serial)]), serial, self.signature])

    def encode(self) -> str:
        return SIGNED_PREFIX + b45encode(self.container())

    @classmethod
    def decode(cls, text: str) -> SignedPayload:
        text = text.strip()
        if len(text) > MAX_INPUT:
            raise ValidationError("qr.length", len(text), f"at most {MAX_INPUT} characters")
        if not text.startswith(SIGNED_PREFIX):
            raise ValidationError("qr.prefix", text[:8], f"a payload starting with "
                                                         f"{SIGNED_PREFIX}")
        r = _Reader(b45decode(text[len(SIGNED_PREFIX):]))
        pid = validate_prescription_id(_id_text(r.take(15, "qr.id")), field="qr.id")
        rpps = str(r.number(5, "qr.rpps")).zfill(11)
        am = str(r.number(4, "qr.am")).zfill(9)
        birth = _date8("qr.birth_date", str(r.number(4, "qr.birth_date")).zfill(8))
        issued = datetime.fromtimestamp(r.number(4, "qr.issued_at"), UTC)
        digest = r.take(SHA256_LENGTH, "qr.hash")
        names = []
        for field in ("qr.last_name", "qr.first_names"):
            raw = r.take(r.number(2, field), field)
            try:
                names.append(raw.decode("utf-8"))
            except UnicodeDecodeError:
                raise ValidationError(field, raw[:20], "UTF-8 text") from None
        issuer = r.take(ISSUER_HASH_LENGTH, "qr.issuer")
        size = r.number(1, "qr.serial")
        if not 1 <= size <= MAX_SERIAL_BYTES:
            raise ValidationError("qr.serial", size, f"1 to {MAX_SERIAL_BYTES} bytes")
        serial = r.number(size, "qr.serial")
        signature = r.data[r.pos:]
        order = SignedOrder(prescription_id=pid, rpps=rpps, am=am, last_name=names[0],
                            first_names=names[1], birth_date=birth, issued_at=issued,
                            content_hash=digest)
        return cls(order, signature, CertificateRef(issuer, serial))


def decode_payload(text: str) -> EpuPayload | SignedPayload | QrPayload:
    """Any payload Ordo prints or printed, by its marker; ``ValidationError`` otherwise.

    Reads at most ``MAX_INPUT`` characters: a longer text is refused before any parsing."""
    if len(text) > MAX_INPUT:
        raise ValidationError("qr.length", len(text), f"at most {MAX_INPUT} characters")
    text = text.strip()
    if text.startswith(EPU_MARKER + EPU_SEPARATOR):
        return EpuPayload.decode(text)
    if text.startswith(SIGNED_PREFIX):
        return SignedPayload.decode(text)
    if text.startswith(PREFIX):
        return QrPayload.decode(text)
    raise ValidationError("qr.prefix", text[:8],
                          f"a payload starting with {EPU_MARKER}{EPU_SEPARATOR}, "
                          f"{SIGNED_PREFIX} or {PREFIX}")
