"""Ports: the interfaces that the services need and that drivers and sync implement.

Services depend on these ``typing.Protocol`` classes only; the composition root
(``appliance.bootstrap`` / the CLI) picks the concrete adapters. One section per port;
add yours below the existing ones.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from appliance.errors import CardError, PrinterError, RegistryError

if TYPE_CHECKING:
    from appliance.domain.prescription import Prescription

# ---------------------------------------------------------------------------------------
# Card: a CPS/CPE smart card in a PC/SC reader (drivers.card implements it)
# ---------------------------------------------------------------------------------------


# DER prefix of a DigestInfo for SHA-256 (RFC 8017 §9.2, note 1). ``authenticate`` and
# ``sign`` take such a DigestInfo; the card adds the PKCS#1 v1.5 padding.
SHA256_DIGEST_INFO_PREFIX = bytes.fromhex("3031300d060960864801650304020105000420")


def sha256_digest_info(data: bytes) -> bytes:
    """The DER DigestInfo of SHA-256(``data``), as sent to the card."""
    return SHA256_DIGEST_INFO_PREFIX + hashlib.sha256(data).digest()


class WrongPin(CardError):
    """The card refused the PIN (ISO 7816-4 SW ``63Cx``); ``tries_left`` may be 0, or None
    when the card does not tell (a PKCS#11 token says only "final try" and "locked")."""

    def __init__(self, tries_left: int | None) -> None:
        self.tries_left = tries_left
        left = "unknown" if tries_left is None else tries_left
        super().__init__(f"wrong PIN: {left} tries left")


class PinBlocked(CardError):
    """The PIN is blocked (ISO 7816-4 SW ``6983``): the card will refuse every try."""

    def __init__(self) -> None:
        super().__init__("the PIN is blocked")


class CardRemoved(CardError):
    """The card was removed (or the reader service went away) during an operation."""


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
    """Opens a ``CardSession`` on the card in a reader slot (its index in ``readers()``)."""

    def readers(self) -> list[str]: ...

    def readers_with_card(self) -> list[str]:
        """The readers that hold a card now (without connecting to it)."""
        ...

    def open(self, slot: int = 0) -> CardSession: ...


class CardWatcher(Protocol):
    """Reports card and reader events, from its own thread, to its subscribers."""

    def subscribe(self, callback: Callable[[CardEvent], None]) -> None: ...

    def start(self) -> None: ...

    def stop(self) -> None: ...


# ---------------------------------------------------------------------------------------
# Registry: the national e-prescription base (sync.client implements it over FHIR R4)
# ---------------------------------------------------------------------------------------
#
#     RegistryError                      (appliance.errors)
#     ├── RegistryUnavailable            transient: network, TLS, timeout, 408, 5xx; retry later
#     │   └── RegistryThrottled          429 (or 503) with Retry-After: wait ``retry_after`` s
#     └── RegistryRejected               permanent: this record will never be accepted as is
#         └── RegistryConflict           409: same ID, other content; or cancel after dispensing


class RegistryUnavailable(RegistryError):
    """The registry could not be reached or answered with a transient failure.

    ``connect`` is true when no connection could be made at all (the registry is down or
    unreachable, or TLS refused): the caller should stop sending and back off as a whole.
    """

    def __init__(self, message: str, *, connect: bool = False, status: int | None = None,
                 retry_after: float | None = None) -> None:
        self.connect, self.status, self.retry_after = connect, status, retry_after
        super().__init__(message)


class RegistryThrottled(RegistryUnavailable):
    """The registry asked to slow down (HTTP 429, or 503 with ``Retry-After``)."""


class RegistryRejected(RegistryError):
    """The registry refused this record for good (a 4xx other than 408 and 429);
    ``reason`` is the registry's own explanation (OperationOutcome diagnostics)."""

    def __init__(self, status: int, reason: str) -> None:
        self.status, self.reason = status, reason
        super().__init__(f"registry refused ({status}): {reason}")


class RegistryConflict(RegistryRejected):
    """HTTP 409: the registry holds other content under this prescription ID, or refuses
    to cancel a prescription that was already dispensed."""


@dataclass(frozen=True)
class SignatureProof:
    """What the registry needs to check the physician's card signature.

    ``signed_part`` is the exact byte string the card signed (the QR payload's signed part,
    which carries SHA-256 of ``canonical_bytes()``); ``None`` means the card signed
    ``prescription.canonical_bytes()`` itself. ``signer_cert`` is DER.
    """

    signature: bytes
    signer_cert: bytes
    signed_part: bytes | None = None


@dataclass(frozen=True)
class RegistryReceipt:
    """The registry's acknowledgement (accusé de réception). ``replayed`` is true when the
    registry already held the same content and returned its original receipt."""

    receipt_id: str
    received_at: datetime
    replayed: bool = False


@dataclass(frozen=True)
class Dispensation:
    """One dispensation recorded by a pharmacy against one line of a prescription.

    ``line`` is the 1-based position of the line in the prescription. ``complete`` is false
    for a partial fill. The product is what was actually handed over: with
    ``substituted`` it differs from the prescribed one (``substitution_type`` is an HL7 v3
    substanceAdminSubstitution code, e.g. ``G`` generic).
    """

    registry_id: str
    prescription_id: str
    line: int
    complete: bool
    handed_over_at: datetime
    product_label: str
    product_code: str | None = None
    product_system: str | None = None
    quantity: Decimal | None = None
    unit: str | None = None
    substituted: bool = False
    substitution_type: str | None = None
    substitution_reason: str | None = None
    pharmacy: str | None = None


@dataclass(frozen=True)
class DispensationPage:
    """A page of the dispensation feed; ``cursor`` is where the next page starts and
    ``more`` says whether one may follow right away."""

    items: tuple[Dispensation, ...]
    cursor: str | None
    more: bool
    raw: tuple[dict, ...] = ()


class Registry(Protocol):
    """The national registry as the sync engine sees it."""

    def register(self, prescription: Prescription, proof: SignatureProof) -> RegistryReceipt:
        """Record a signed prescription, idempotently on its ID."""
        ...

    def cancel(self, prescription_id: str, reason: str) -> RegistryReceipt:
        """Cancel a prescription not yet dispensed (``RegistryConflict`` after)."""
        ...

    def dispensations(self, cursor: str | None, limit: int) -> DispensationPage:
        """Dispensations recorded after ``cursor`` (oldest first), residents who objected
        left out by the registry."""
        ...

    def close(self) -> None: ...


# ---------------------------------------------------------------------------------------
# Signature and printing (issue 5): the card as a signer, the order printer.
# appliance.services.signature and appliance.services.printing use these;
# drivers.printer implements OrderPrinter.
# ---------------------------------------------------------------------------------------


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


class PrinterState(StrEnum):
    READY = "ready"
    PAPER_LOW = "paper_low"
    PAPER_OUT = "paper_out"
    OFFLINE = "offline"  # answers but does not print (cover open, error)
    UNREACHABLE = "unreachable"  # no connection at all
    UNKNOWN = "unknown"  # write-only link (file://) or the printer does not answer status


PRINTER_STATE_LABELS_FR: dict[PrinterState, str] = {
    PrinterState.READY: "Imprimante prête",
    PrinterState.PAPER_LOW: "Imprimante prête, fin de rouleau proche",
    PrinterState.PAPER_OUT: "Plus de papier dans l'imprimante",
    PrinterState.OFFLINE: "Imprimante hors ligne (capot ouvert ou erreur)",
    PrinterState.UNREACHABLE: "Imprimante injoignable",
    PrinterState.UNKNOWN: "État de l'imprimante inconnu",
}


@dataclass(frozen=True)
class PrinterStatus:
    """What the printer says about itself; ``message`` is French, for the UI."""

    state: PrinterState
    detail: str = ""

    @property
    def can_print(self) -> bool:
        return self.state in {PrinterState.READY, PrinterState.PAPER_LOW, PrinterState.UNKNOWN}

    @property
    def message(self) -> str:
        label = PRINTER_STATE_LABELS_FR[self.state]
        return f"{label} : {self.detail}" if self.detail else label


class PrinterUnavailable(PrinterError):
    """The printer did not take the whole job (offline, no paper, connection lost): the
    job stays queued and is retried. The message is French, for the UI. ``sent_some``: part
    of the job may have reached the printer (a partial ticket may have come out)."""

    def __init__(self, state: PrinterState, message: str, *, sent_some: bool = False) -> None:
        self.state = state
        self.sent_some = sent_some
        super().__init__(message)


@dataclass(frozen=True)
class PrintRequest:
    """One order to print: the signed prescription and its QR payload.

    ``duplicate_at`` is set on reprints (the time the duplicate was asked for): the ticket
    then says DUPLICATA with that time.
    """

    job_id: int
    prescription: Prescription
    qr_payload: str
    duplicate_at: datetime | None = None


@dataclass(frozen=True)
class PrintReceipt:
    """What happened on the wire. ``confirmed`` is False on write-only links (file://)."""

    bytes_sent: int
    tickets: int
    seconds: float
    confirmed: bool


class OrderPrinter(Protocol):
    """Prints orders. ``print_order`` returns only once the printer accepted every byte;
    otherwise it raises ``PrinterUnavailable`` (retry later) or ``PrinterError``."""

    @property
    def qr_capacity(self) -> int:
        """The longest QR payload (alphanumeric characters) the medium takes at ≥ 3 dots
        per module."""
        ...

    @property
    def description(self) -> str:
        """URI and medium, for the audit trail (no secret in it)."""
        ...

    def status(self) -> PrinterStatus: ...

    def print_order(self, request: PrintRequest) -> PrintReceipt: ...
