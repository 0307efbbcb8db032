"""The card port: a CPS/CPE smart card in a reader, its readers' events, and the card as a
signer. ``drivers.card`` implements it over PC/SC (``pcsc``, ``cps``, ``monitor``) and over a
PKCS#11 module (``pkcs11``), chosen by ``appliance.bootstrap.card_backend``."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol, runtime_checkable

from appliance.errors import CardError, CardRemoved, PinBlocked, WrongPin

__all__ = ["SHA256_DIGEST_INFO_PREFIX", "CardCertificates", "CardError", "CardEvent",
           "CardEventKind", "CardReader", "CardRemoved", "CardSession", "CardWatcher",
           "PinBlocked", "PinStatus", "Signer", "WrongPin", "sha256_digest_info"]

# DER prefix of a DigestInfo for SHA-256 (RFC 8017 §9.2, note 1). ``authenticate`` and
# ``sign`` take such a DigestInfo; the card adds the PKCS#1 v1.5 padding.
SHA256_DIGEST_INFO_PREFIX = bytes.fromhex("3031300d060960864801650304020105000420")


def sha256_digest_info(data: bytes) -> bytes:
    """The DER DigestInfo of SHA-256(``data``), as sent to the card."""
    return SHA256_DIGEST_INFO_PREFIX + hashlib.sha256(data).digest()


@dataclass(frozen=True)
class PinStatus:
    """The PIN state read without spending a try (an empty VERIFY, or the PKCS#11 token
    flags). ``tries_left`` is None when the card does not tell."""

    tries_left: int | None
    verified: bool = False

    @property
    def blocked(self) -> bool:
        return self.tries_left == 0


@dataclass(frozen=True)
class CardCertificates:
    """DER certificates read from the card; ``signature`` is None on cards without a
    signature key (CPE)."""

    authentication: bytes
    signature: bytes | None


class CardEventKind(StrEnum):
    INSERTED = "inserted"
    REMOVED = "removed"
    READER_ADDED = "reader_added"
    READER_REMOVED = "reader_removed"
    SERVICE_LOST = "service_lost"
    SERVICE_BACK = "service_back"


@dataclass(frozen=True)
class CardEvent:
    """Something happened to a reader. ``at`` is ``time.monotonic()`` when it was seen;
    ``initial`` marks the snapshot taken when the watcher (re)connects to the service."""

    kind: CardEventKind
    reader: str = ""
    atr: bytes = b""
    at: float = 0.0
    initial: bool = False


@runtime_checkable
class CardSession(Protocol):
    """One connection to the card in one reader. Operations need the PIN verified first
    (except ``pin_status``, ``read_certificates`` and ``get_challenge``)."""

    @property
    def reader(self) -> str: ...

    @property
    def atr(self) -> bytes: ...

    def pin_status(self) -> PinStatus:
        """Tries left, without spending one."""
        ...

    def verify_pin(self, pin: str) -> None:
        """Raise ``WrongPin`` or ``PinBlocked`` on refusal."""
        ...

    def read_certificates(self) -> CardCertificates: ...

    def get_challenge(self, length: int = 8) -> bytes: ...

    def authenticate(self, digest_info: bytes) -> bytes:
        """RSA PKCS#1 v1.5 with the authentication key over a DER DigestInfo (an EC key
        signs the digest inside it with ECDSA and returns a DER ``ECDSA-Sig-Value``)."""
        ...

    def sign(self, digest_info: bytes) -> bytes:
        """RSA PKCS#1 v1.5 with the signature key over a DER DigestInfo (EC: as
        ``authenticate``)."""
        ...

    def close(self) -> None:
        """Disconnect and reset the card (the PIN must be typed again)."""
        ...


class CardReader(Protocol):
    """Opens a ``CardSession`` on the card in a reader slot (its index in ``readers()``).
    ``open`` raises ``CardRemoved`` when that reader holds no card."""

    def readers(self) -> list[str]: ...

    def open(self, slot: int = 0) -> CardSession: ...


class CardWatcher(Protocol):
    """Reports card and reader events, from its own thread, to its subscribers, and says
    what it saw last (the kiosk's status line)."""

    def subscribe(self, callback: Callable[[CardEvent], None]) -> None: ...

    def start(self) -> None: ...

    def stop(self) -> None: ...

    def cards(self) -> dict[str, bytes]:
        """Readers that hold a card now, with the card's ATR."""
        ...

    def readers(self) -> list[str]: ...

    @property
    def service_up(self) -> bool: ...


@runtime_checkable
class Signer(Protocol):
    """Signs the QR signed part with the physician's signature key.

    ``sign`` returns RSA-2048 PKCS#1 v1.5 over SHA-256 of ``data`` (a card adapter hashes
    ``data``, builds the DigestInfo with ``sha256_digest_info`` and calls
    ``CardSession.sign``). ``certificate_der`` is the certificate of that key.
    """

    @property
    def certificate_der(self) -> bytes: ...

    def sign(self, data: bytes) -> bytes: ...
