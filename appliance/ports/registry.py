"""The registry port: the national e-prescription base as the sync use case sees it.
``sync.client`` implements it over FHIR R4. Its failures are ``RegistryError``s
(``appliance.errors``): ``RegistryUnavailable`` (transient, ``RegistryThrottled`` with a
``retry_after``) and ``RegistryRejected`` (for good, ``RegistryConflict`` on a 409)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from appliance.domain import JsonObject
from appliance.errors import (
    RegistryConflict,
    RegistryError,
    RegistryMisconfigured,
    RegistryRejected,
    RegistryThrottled,
    RegistryUnavailable,
)

if TYPE_CHECKING:
    from appliance.domain.prescription import Prescription

__all__ = ["AuditHead", "Dispensation", "DispensationPage", "EncodingRegistry", "Registry",
           "RegistryConflict", "RegistryError", "RegistryMisconfigured", "RegistryReceipt",
           "RegistryRejected",
           "RegistryThrottled", "RegistryUnavailable", "SignatureProof"]


@dataclass(frozen=True)
class SignatureProof:
    """What the registry needs to check the physician's card signature.

    ``signed_part`` is the exact byte string the card signed (the QR payload's signed part,
    which carries SHA-256 of ``canonical_bytes()``); ``None`` means the card signed
    ``prescription.canonical_bytes()`` itself. ``signer_cert`` is DER. ``canonical`` is
    ``prescription.canonical_bytes()`` when whoever built the proof already computed them
    and checked them against the signed hash (``SignedRow.load``); None: computed when
    needed. It is derived data: it takes no part in comparisons.
    """

    signature: bytes
    signer_cert: bytes
    signed_part: bytes | None = None
    canonical: bytes | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class RegistryReceipt:
    """The registry's acknowledgement (accusé de réception). ``replayed`` is true when the
    registry already held the same content and returned its original receipt."""

    receipt_id: str
    received_at: datetime
    replayed: bool = False


@dataclass(frozen=True)
class AuditHead:
    """The audit chain's head as the registry holds it: entry ``seq`` had hash ``digest``;
    ``receipt_id`` and ``received_at`` are the registry's receipt of that anchor."""

    seq: int
    digest: str
    receipt_id: str = ""
    received_at: str = ""


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
    ``more`` says whether one may follow right away. ``raw`` holds the registry's own
    resources, one per item, kept as received."""

    items: tuple[Dispensation, ...]
    cursor: str | None
    more: bool
    raw: tuple[JsonObject, ...] = ()


class Registry(Protocol):
    """The national registry as the sync use case sees it."""

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

    def anchor_audit(self, finess: str, seq: int, digest: str) -> AuditHead:
        """Send the audit chain's head (entry ``seq``, its hash) for the establishment
        ``finess``; returns it with the registry's receipt."""
        ...

    def audit_anchors(self, finess: str) -> list[AuditHead]:
        """Every head the registry holds for ``finess``, oldest first."""
        ...

    def check(self) -> None:
        """A cheap probe of the link (``GET [base]/metadata``): returns when the registry
        answers; ``RegistryUnavailable`` (network) or ``RegistryMisconfigured`` (the setting
        to fix) otherwise."""
        ...

    def close(self) -> None: ...


@runtime_checkable
class EncodingRegistry(Protocol):
    """A registry whose create body can be built ahead of sending (``RegistryClient``): the
    sync use case builds the bodies of a batch while the previous one is on the wire."""

    def encode_registration(self, prescription: Prescription, proof: SignatureProof
                            ) -> bytes: ...

    def register_bundle(self, body: bytes) -> RegistryReceipt: ...
