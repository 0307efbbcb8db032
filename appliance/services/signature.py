"""Sign a prescription with the physician's card, and verify a scanned QR payload offline.

Signing (``sign_prescription``): the prescription becomes ``signed`` at ``at``; the card
(any ``Signer``) signs the QR signed part (``appliance.domain.qr``), which carries ``H`` =
SHA-256 of the canonical prescription: one signature covers the QR and the whole order.
The signature is checked against the certificate's public key before it is kept.

Verification (``verify_payload``), with nothing but the trust roots (and, for a payload
that names its certificate by reference, the certificate):

1. the payload decodes (``ORD2:`` or the older ``ORD1:``; Base45, container, fields);
2. the signer's certificate: ``ORD2`` names it by issuer and serial number, found among
   ``certificates`` (the caller gives the certificates it holds: the one stored with the
   prescription, the trust configuration, files); ``ORD1`` embeds it, or gives its
   SHA-256, found the same way;
3. the signature (RSA PKCS#1 v1.5, SHA-256) over the signed part's exact bytes;
4. the chain: from the signer's certificate up to a self-signed certificate of
   ``trust_roots``, through intermediates. The payload has no room for intermediates:
   they travel with the trust roots (a PEM bundle: every certificate of ``trust_roots``
   that is not self-signed is used as an intermediate, never as an anchor), or in
   ``intermediates``. Each link: issuer name and signature, CA basic constraint and
   ``keyCertSign`` on issuers, validity of every certificate at the issue time;
   the signer's key usage allows ``nonRepudiation`` or ``digitalSignature``;
5. revocation: a certificate listed in a CRL of ``crls`` that its issuer signed is
   refused, whatever the revocation date (the issue time is the signer's own claim, so a
   compromised key could backdate). CRL freshness is not enforced (offline use);
6. the certificate's holder (``trust.holder_id_nat_ps``: subject ``serialNumber``, else
   ``UID``, else the part before ``/`` in ``CN``) is ``8`` + the RPPS of the payload;
7. the certificate is valid at the issue time.

Any failure raises ``InvalidOrder`` whose ``reason`` is printed as ``INVALID: reason``;
``fields`` carries the decoded fields when the payload could be read.
"""

from __future__ import annotations

import functools
import hashlib
import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.serialization import Encoding

from appliance.domain import Json
from appliance.domain.prescription import Prescription, State
from appliance.domain.qr import (
    CertificateRef,
    EpuPayload,
    QrPayload,
    SignedOrder,
    SignedPayload,
    decode_payload,
)
from appliance.errors import OrdoError, TamperedPrescription, ValidationError
from appliance.ports.card import Signer
from appliance.ports.clock import utc_now
from appliance.services.trust import (
    CertificateRejected,
    TrustStore,
    Usage,
    holder_id_nat_ps,
    subject,
    validate_chain,
)

if TYPE_CHECKING:
    from appliance.ports.uow import Signed, SignedRow, UnitOfWork
    from appliance.services.mailbox import MailPolicy

log = logging.getLogger(__name__)



class InvalidOrder(OrdoError):
    """A payload that does not verify. ``reason`` says why (English, technical: it is
    printed after ``INVALID:``); ``fields`` are the decoded fields when readable."""

    def __init__(self, reason: str, fields: SignedOrder | EpuPayload | None = None) -> None:
        self.reason = reason
        self.fields = fields
        super().__init__(f"INVALID: {reason}")


@dataclass(frozen=True)
class VerifiedOrder:
    """A payload whose signature, chain, signer and dates check out."""

    fields: SignedOrder
    signer_subject: str
    signer_id_nat_ps: str
    certificate_sha256: bytes
    chain: tuple[str, ...] = field(default=())  # subjects, signer first, anchor last


@dataclass(frozen=True)
class SignedPrescription:
    prescription: Prescription
    signature: bytes
    certificate_der: bytes
    payload: SignedPayload  # the signed QR payload (``[print] qr = "signed"``)


def certificate_ref(certificate_der: bytes) -> CertificateRef:
    """The issuer and serial number of a DER certificate, as the signed QR names it."""
    cert = _load_certificate(certificate_der)
    return CertificateRef.of(cert.issuer.public_bytes(), cert.serial_number)


def signed_payload(signed_bytes: bytes, signature: bytes, certificate_der: bytes
                   ) -> SignedPayload:
    """The ``ORD2`` payload of a stored signature (the exact bytes the card signed)."""
    order = SignedOrder.from_bytes(signed_bytes)
    return SignedPayload(order, signature, certificate_ref(certificate_der))


# -- signing ---------------------------------------------------------------------------------
class SoftwareSigner:
    """A ``Signer`` over an RSA key in memory: tests, the demo, never production."""

    def __init__(self, key: rsa.RSAPrivateKey, certificate: x509.Certificate) -> None:
        self._key = key
        self._der = certificate.public_bytes(Encoding.DER)

    @property
    def certificate_der(self) -> bytes:
        return self._der

    def sign(self, data: bytes) -> bytes:
        return self._key.sign(data, padding.PKCS1v15(), hashes.SHA256())


@functools.lru_cache(maxsize=32)
def _load_certificate(der: bytes) -> x509.Certificate:
    """The parsed certificate (kept: the card's certificate is parsed at every signature,
    twice; a refused one is parsed again each time)."""
    try:
        cert = x509.load_der_x509_certificate(der)
        # cryptography parses these on first access: a corrupt one is refused here, not
        # with a ValueError in the middle of the chain check.
        _ = cert.issuer, cert.subject, cert.extensions, cert.public_key()
    except (ValueError, TypeError, x509.InvalidVersion, x509.DuplicateExtension,
            x509.UnsupportedGeneralNameType, UnsupportedAlgorithm) as exc:
        raise InvalidOrder(f"the signer's certificate is unreadable ({exc})") from None
    return cert


def _check_signature(cert: x509.Certificate, signature: bytes, data: bytes) -> None:
    key = cert.public_key()
    if not isinstance(key, rsa.RSAPublicKey):
        raise InvalidOrder("the signer's key is not RSA")
    try:
        key.verify(signature, data, padding.PKCS1v15(), hashes.SHA256())
    except InvalidSignature:
        raise InvalidOrder("the signature does not match the signed fields") from None


def sign_prescription(prescription: Prescription, signer: Signer, at: datetime
                      ) -> SignedPrescription:
    """Make the prescription ``signed`` at ``at`` and have the card sign its QR part.

    Refuses a certificate that is not the prescriber's (idNat_PS) and a signature that
    does not verify with the certificate (a card or reader fault), before anything is kept.
    """
    signed = prescription.transition(State.SIGNED, at)
    order = SignedOrder.from_prescription(signed)
    data = order.to_bytes()
    cert_der = signer.certificate_der
    cert = _load_certificate(cert_der)
    owner = certificate_id_nat_ps(cert)
    if owner != signed.prescriber.id_nat_ps:
        raise ValidationError("certificate", owner,
                              f"the prescriber's certificate ({signed.prescriber.id_nat_ps})")
    signature = signer.sign(data)
    _check_signature(cert, signature, data)
    log.info("prescription signed", extra={"fields": {"prescription": signed.id,
                                                      "signer": owner}})
    return SignedPrescription(signed, signature, cert_der,
                              SignedPayload(order, signature, certificate_ref(cert_der)))


# -- verification ----------------------------------------------------------------------------
certificate_id_nat_ps = holder_id_nat_ps  # whom the signer's certificate belongs to


def verify_payload(payload: str, trust_roots: Sequence[x509.Certificate],
                   crls: Iterable[x509.CertificateRevocationList] = (), *,
                   intermediates: Sequence[x509.Certificate] = (),
                   certificates: Sequence[x509.Certificate] = ()) -> VerifiedOrder:
    """Check a scanned signed payload offline; return its fields or raise ``InvalidOrder``."""
    try:
        decoded = decode_payload(payload)
    except ValidationError as exc:
        raise InvalidOrder(f"malformed payload: {exc}") from None
    if not isinstance(decoded, SignedPayload | QrPayload):
        raise InvalidOrder("not a signed payload (ORD2: or ORD1:)")
    fields = decoded.order
    try:
        leaf: x509.Certificate | None
        if isinstance(decoded, SignedPayload):
            ref = decoded.certificate
            leaf = next((c for c in [*certificates, *intermediates, *trust_roots]
                         if ref.matches(c.issuer.public_bytes(), c.serial_number)), None)
            if leaf is None:
                raise InvalidOrder(f"the signer's certificate (serial {ref.serial:x}) is not "
                                   "among the known certificates")
        elif decoded.certificate is not None:
            leaf = _load_certificate(decoded.certificate)
        else:
            sha = decoded.certificate_sha256
            leaf = next((c for c in certificates
                         if hashlib.sha256(c.public_bytes(Encoding.DER)).digest() == sha), None)
            if leaf is None:
                raise InvalidOrder("the signer's certificate is not in the payload and not "
                                   "among the known certificates")
        _check_signature(leaf, decoded.signature, decoded.signed_bytes)
        owner = certificate_id_nat_ps(leaf)
        expected = "8" + fields.rpps
        if owner != expected:
            raise InvalidOrder(f"the certificate belongs to idNat_PS {owner or 'unknown'}, "
                               f"not to RPPS {fields.rpps}")
        trust = TrustStore.from_certificates([*trust_roots, *intermediates], crls)
        try:
            chain = validate_chain(leaf, trust, fields.issued_at, Usage.ANY_SIGNATURE)
        except CertificateRejected as exc:
            raise InvalidOrder(str(exc)) from None
    except InvalidOrder as exc:
        raise InvalidOrder(exc.reason, fields) from None
    return VerifiedOrder(fields=fields, signer_subject=subject(leaf), signer_id_nat_ps=owner,
                         certificate_sha256=hashlib.sha256(
                             leaf.public_bytes(Encoding.DER)).digest(),
                         chain=tuple(subject(c) for c in chain))


@dataclass(frozen=True)
class KnownOrder:
    """An ePU payload whose order is known and not cancelled."""

    fields: EpuPayload
    state: State


def verify_epu(payload: str, lookup: Callable[[str], Prescription | None]) -> KnownOrder:
    """Check a scanned ePU payload against the orders ``lookup`` knows (the store, or the
    registry): the format and the ID's check character, then that the order exists, is
    signed, is not cancelled, and carries these very fields."""
    try:
        decoded = decode_payload(payload)
    except ValidationError as exc:
        raise InvalidOrder(f"malformed payload: {exc}") from None
    if not isinstance(decoded, EpuPayload):
        raise InvalidOrder("not an ePU payload (EPU1*)")
    found = lookup(decoded.prescription_id)
    if found is None or found.state is State.DRAFT:
        raise InvalidOrder("no signed order with this ID is known here", decoded)
    if found.state is State.CANCELLED:
        raise InvalidOrder(f"the order was cancelled ({found.cancel_reason or 'no reason'})",
                           decoded)
    wrong = decoded.mismatches(found)
    if wrong:
        raise InvalidOrder(f"the QR does not match the order: {', '.join(wrong)}", decoded)
    return KnownOrder(decoded, found.state)


def record_signature(uow: UnitOfWork, signed: SignedPrescription, *, actor: str,
                     at: datetime | None = None, mail: MailPolicy | None = None) -> int:
    """Store a signed prescription with the exact bytes the card signed, its outbox row,
    its first print job, its message to the partner pharmacy (when ``mail`` has an
    address) and its audit entry, in the caller's ``with uow:`` block: after a crash
    either all of them exist or none does. Returns the print job."""
    p = signed.prescription
    now = at or utc_now()
    uow.prescriptions.add_signed(p, signature=signed.signature,
                                 signer_cert=signed.certificate_der,
                                 signed_payload=signed.payload.signed_bytes)
    uow.outbox.add(p.id, "create", now)
    job = uow.print_jobs.add(p.id, "original", actor, now)
    details: dict[str, Json] = {"lines": len(p.lines), "print_job": job}
    if mail is not None and (queued := mail.queue(uow, p.id, now)) is not None:
        details["mail"] = queued
    uow.audit.append(actor=actor, action="prescription.signed", subject=p.id,
                     details=details)
    return job


# -- a stored signed prescription that no longer matches its signature ---------------------
TAMPERED_ACTION = "prescription_tampered"


def load_checked(uow: UnitOfWork, row: SignedRow, *, actor: str, during: str) -> Signed | None:
    """``row.load()`` (which checks the body against the signature); when the body was
    altered after signing, the refusal is audited (``prescription_tampered``, the
    prescription's ID only) and ``TamperedPrescription`` raised. Call it outside a write
    block: the audit entry is committed on its own."""
    try:
        return row.load()
    except TamperedPrescription as exc:
        record_tampering(uow, exc.prescription_id, actor=actor, during=during)
        raise


def checked_prescription(uow: UnitOfWork, prescription_id: str, *, actor: str,
                         during: str) -> Prescription | None:
    """A stored prescription to show: a signed one is checked against its signature
    (``load_checked``: an altered one is audited and refused), a draft is read as is."""
    row = uow.prescriptions.signed_rows([prescription_id]).get(prescription_id)
    if row is None:
        return None
    signed = load_checked(uow, row, actor=actor, during=during)
    return signed.prescription if signed is not None else uow.prescriptions.get(prescription_id)


def record_tampering(uow: UnitOfWork, prescription_id: str, *, actor: str,
                     during: str) -> None:
    """Audit (and log) a refused altered prescription, in its own transaction (or the
    caller's ``with uow:`` block when one is open)."""
    log.error("signed prescription altered in the database: refused", extra={"fields": {
        "prescription": prescription_id, "during": during}})
    with uow:
        uow.audit.append(actor=actor, action=TAMPERED_ACTION, subject=prescription_id,
                         details={"during": during})
        uow.commit()
