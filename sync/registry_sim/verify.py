"""The reference registry's check of a card signature, written independently of the appliance.

The registry is another party: it checks what the appliance sends with its own code (plain
``cryptography`` calls), which also cross-checks the appliance's signing service. The same
rules as ``appliance.services.signature.verify_payload`` apply (a test keeps them in step):

1. the signed part parses (``appliance.domain.qr.SignedOrder``, the published format);
2. the signature is RSASSA-PKCS1-v1_5 with SHA-256 (RFC 8017 §8.2) over its exact bytes,
   with the signer certificate's RSA key;
3. the certificate chains to a self-signed trust root, through the intermediates found in
   the trust bundle (issuer name and signature, CA basic constraint, ``keyCertSign``);
4. the signer's key usage allows ``nonRepudiation`` or ``digitalSignature``; no
   certificate of the chain is revoked by a CRL its issuer signed;
5. every certificate was valid at the issue time of the signed part;
6. the certificate's idNat_PS (subject ``serialNumber``, else ``UID``) is ``8`` + RPPS;
7. the signed part names this prescription: its ID, its prescriber, and ``H`` equals
   SHA-256 of the canonical bytes received.

Certificates, chains and revocation are checked once per certificate and cached (the same
card signs many prescriptions).
"""

from __future__ import annotations

import hashlib
import itertools
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID

from appliance.domain.qr import SignedOrder
from appliance.errors import ValidationError

MAX_CHAIN = 6


class SignatureRejected(Exception):
    """The submission's signature does not hold; ``reason`` goes back in the 422."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


def _issued_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    if cert.issuer != issuer.subject:
        return False
    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def _ext(cert: x509.Certificate, kind: type) -> Any:
    try:
        return cert.extensions.get_extension_for_class(kind).value
    except x509.ExtensionNotFound:
        return None


def _name(cert: x509.Certificate) -> str:
    return cert.subject.rfc4514_string()


@dataclass
class TrustStore:
    """Self-signed roots (anchors), intermediates and CRLs, read once."""

    anchors: tuple[x509.Certificate, ...]
    intermediates: tuple[x509.Certificate, ...] = ()
    crls: tuple[x509.CertificateRevocationList, ...] = ()
    _chains: dict[bytes, tuple[x509.Certificate, list[x509.Certificate], str | None]] = \
        field(default_factory=dict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @classmethod
    def from_certificates(cls, certs: Iterable[x509.Certificate],
                          crls: Iterable[x509.CertificateRevocationList] = ()) -> TrustStore:
        certs = list(certs)
        anchors = tuple(c for c in certs if _issued_by(c, c))
        return cls(anchors, tuple(c for c in certs if c not in anchors), tuple(crls))

    @classmethod
    def load(cls, roots: Sequence[str | Path], crls: Sequence[str | Path] = ()) -> TrustStore:
        certs: list[x509.Certificate] = []
        for path in roots:
            data = Path(path).read_bytes()
            certs += (x509.load_pem_x509_certificates(data) if b"-----BEGIN" in data
                      else [x509.load_der_x509_certificate(data)])
        lists: list[x509.CertificateRevocationList] = []
        marker = b"-----BEGIN X509 CRL-----"
        for path in crls:
            data = Path(path).read_bytes()
            lists += ([x509.load_pem_x509_crl(marker + b) for b in data.split(marker)[1:]]
                      if marker in data else [x509.load_der_x509_crl(data)])
        return cls.from_certificates(certs, lists)

    def signer(self, cert_der: bytes) -> tuple[x509.Certificate, list[x509.Certificate],
                                                str | None]:
        """The signer's certificate, its chain (leaf, intermediates..., anchor) and its
        idNat_PS: checked once per certificate, then cached."""
        fingerprint = hashlib.sha256(cert_der).digest()
        with self._lock:
            cached = self._chains.get(fingerprint)
        if cached is not None:
            return cached
        try:
            leaf = x509.load_der_x509_certificate(cert_der)
        except ValueError:
            raise SignatureRejected("the signer's certificate is unreadable") from None
        chain = self._build(leaf)
        for below, ca in enumerate(chain[1:]):
            constraints = _ext(ca, x509.BasicConstraints)
            if not isinstance(constraints, x509.BasicConstraints) or not constraints.ca:
                raise SignatureRejected(f"{_name(ca)} is not a certification authority")
            if constraints.path_length is not None and below > constraints.path_length:
                raise SignatureRejected(f"{_name(ca)} exceeds its path length constraint")
            usage = _ext(ca, x509.KeyUsage)
            if isinstance(usage, x509.KeyUsage) and not usage.key_cert_sign:
                raise SignatureRejected(f"{_name(ca)} may not sign certificates")
        for cert, issuer in itertools.pairwise(chain):
            for crl in self.crls:
                if crl.issuer != issuer.subject or not crl.is_signature_valid(issuer.public_key()):
                    continue
                revoked = crl.get_revoked_certificate_by_serial_number(cert.serial_number)
                if revoked is not None:
                    raise SignatureRejected(
                        f"the certificate of {_name(cert)} was revoked on "
                        f"{revoked.revocation_date_utc:%Y-%m-%d}")
        usage = _ext(leaf, x509.KeyUsage)
        if isinstance(usage, x509.KeyUsage) and not (usage.content_commitment
                                                     or usage.digital_signature):
            raise SignatureRejected("the signer's certificate is not for signatures")
        entry = (leaf, chain, _owner(leaf))
        with self._lock:
            self._chains[fingerprint] = entry
        return entry

    def _build(self, leaf: x509.Certificate) -> list[x509.Certificate]:
        if not self.anchors:
            raise SignatureRejected("the registry has no trust root")
        chain, current = [leaf], leaf
        while len(chain) <= MAX_CHAIN:
            anchor = next((a for a in self.anchors if _issued_by(current, a)), None)
            if anchor is not None:
                return [*chain, anchor]
            parent = next((c for c in self.intermediates
                           if c not in chain and _issued_by(current, c)), None)
            if parent is None:
                raise SignatureRejected(
                    f"no trusted root issued the certificate of {_name(current)}")
            chain.append(parent)
            current = parent
        raise SignatureRejected("certificate chain too long")


def _owner(cert: x509.Certificate) -> str | None:
    for oid in (NameOID.SERIAL_NUMBER, NameOID.USER_ID):
        for attribute in cert.subject.get_attributes_for_oid(oid):
            return str(attribute.value)
    return None


def verify_submission(*, signed_part: bytes, signature: bytes, cert_der: bytes,
                      canonical: bytes, content: Mapping[str, Any],
                      trust: TrustStore) -> SignedOrder:
    """Check a submission's signature (see the module docstring) or raise
    ``SignatureRejected`` with the reason."""
    try:
        order = SignedOrder.from_bytes(signed_part)
    except ValidationError as exc:
        raise SignatureRejected(f"malformed signed part: {exc}") from None
    leaf, chain, owner = trust.signer(cert_der)
    key = leaf.public_key()
    if not isinstance(key, rsa.RSAPublicKey):
        raise SignatureRejected("the signer's key is not RSA")
    try:
        key.verify(signature, signed_part, padding.PKCS1v15(), hashes.SHA256())
    except InvalidSignature:
        raise SignatureRejected("the signature does not verify with the signer's "
                                "certificate") from None
    for cert in chain:
        if not cert.not_valid_before_utc <= order.issued_at <= cert.not_valid_after_utc:
            raise SignatureRejected(
                f"the certificate of {_name(cert)} was not valid on "
                f"{order.issued_at:%Y-%m-%d %H:%M:%S} UTC")
    if owner != "8" + order.rpps:
        raise SignatureRejected(f"the certificate belongs to {owner or 'nobody known'}, "
                                f"not to RPPS {order.rpps}")
    if order.prescription_id != content.get("id"):
        raise SignatureRejected(f"the signature is for prescription {order.prescription_id}, "
                                f"not {content.get('id')}")
    if order.content_hash != hashlib.sha256(canonical).digest():
        raise SignatureRejected("the signed hash does not match the prescription's "
                                "canonical bytes")
    prescriber = content.get("prescriber")
    if not isinstance(prescriber, Mapping) or prescriber.get("id_nat_ps") != "8" + order.rpps:
        raise SignatureRejected("the signer is not the prescriber of this prescription")
    return order
