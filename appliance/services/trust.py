"""Certificate trust, shared by card login and QR/prescription signature checks.

Only the configured roots are trusted (``security.trust_roots``: PEM or DER bundles; the
self-signed certificates in them are anchors, the others intermediates usable to build a
path) with their CRLs (``security.crls``). ``validate_chain`` checks, for one moment:

1. the leaf: RSA ≥ 2048 bits and the key usage asked for; validity at that moment;
2. a path leaf → intermediates → anchor, each link by issuer name *and* signature;
3. each CA: ``basicConstraints`` CA (and its path length), ``keyCertSign``, valid too;
4. no certificate of the path revoked by a CRL its issuer signed (a stale CRL still applies:
   the appliance is offline-first; the log says so).

``holder_id_nat_ps`` reads whom a card certificate belongs to (one rule for the login and
for the signature checks).

A refusal is a ``CertificateRejected`` with a machine ``reason`` (``no_trust_roots``,
``untrusted``, ``expired``, ``not_yet_valid``, ``revoked``, ``key_usage``) and an English
sentence naming the certificate; callers turn it into their own error.
"""

from __future__ import annotations

import itertools
import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import TypeVar, get_args

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPublicKeyTypes
from cryptography.x509.oid import NameOID

from appliance.domain.ids import validate_id_nat_ps
from appliance.errors import ConfigError, InvalidIdentifier, OrdoError

log = logging.getLogger(__name__)

MIN_RSA_BITS = 2048
MAX_CHAIN_DEPTH = 6


class Usage(StrEnum):
    AUTHENTICATION = "authentication"  # digitalSignature
    SIGNATURE = "signature"            # nonRepudiation (contentCommitment)
    ANY_SIGNATURE = "any_signature"    # either: what a verifier of a signed order accepts


class CertificateRejected(OrdoError):
    def __init__(self, reason: str, message: str, **facts: datetime) -> None:
        self.reason, self.facts = reason, facts
        super().__init__(message)


def subject(cert: x509.Certificate) -> str:
    return cert.subject.rfc4514_string()


CPE_ID_NAT = re.compile(r"3(?:[0-9]{2}|2[AB])[0-9]{7}/[0-9A-Za-z]{1,20}")
"""idNat of establishment staff (CPE cards): ``3`` + FINESS + ``/`` + local identifier."""


def id_nat(value: str) -> str | None:
    """The normalised idNat_PS (``8`` + RPPS with its Luhn key, ``0`` + ADELI, or a CPE
    idNat), or None when ``value`` is not one."""
    value = value.strip()
    if value.startswith("3"):
        return value if CPE_ID_NAT.fullmatch(value) else None
    try:
        return validate_id_nat_ps(value)
    except InvalidIdentifier:
        return None


def holder_id_nat_ps(cert: x509.Certificate) -> str | None:
    """Whom a card certificate belongs to: the first valid idNat of the subject's
    ``serialNumber`` (CPS cards and the test PKI), else ``UID``, else the part of the ``CN``
    before ``/`` (older CPS templates); None when none is one."""
    name = cert.subject
    candidates = [a.value for a in name.get_attributes_for_oid(NameOID.SERIAL_NUMBER)]
    candidates += [a.value for a in name.get_attributes_for_oid(NameOID.USER_ID)]
    candidates += [str(a.value).split("/", 1)[0]
                   for a in name.get_attributes_for_oid(NameOID.COMMON_NAME)]
    for value in candidates:
        found = id_nat(value.decode("utf-8", "replace") if isinstance(value, bytes)
                       else str(value))
        if found is not None:
            return found
    return None


def issued_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    """``issuer`` signed ``cert`` (name and signature)."""
    if cert.issuer != issuer.subject:
        return False
    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def self_signed(cert: x509.Certificate) -> bool:
    return issued_by(cert, cert)


E = TypeVar("E", bound=x509.ExtensionType)
# The keys that can sign a certificate or a CRL (not X25519 / X448).
_ISSUER_KEYS = get_args(CertificateIssuerPublicKeyTypes)


def _extension(cert: x509.Certificate, kind: type[E]) -> E | None:
    try:
        return cert.extensions.get_extension_for_class(kind).value
    except x509.ExtensionNotFound:
        return None


@dataclass(frozen=True)
class TrustStore:
    """Trust anchors (self-signed), intermediates usable to build a path, and CRLs."""

    roots: tuple[x509.Certificate, ...] = ()
    intermediates: tuple[x509.Certificate, ...] = ()
    crls: tuple[x509.CertificateRevocationList, ...] = ()

    @classmethod
    def from_certificates(cls, certs: Iterable[x509.Certificate],
                          crls: Iterable[x509.CertificateRevocationList] = ()) -> TrustStore:
        certs = list(certs)
        return cls(roots=tuple(c for c in certs if self_signed(c)),
                   intermediates=tuple(c for c in certs if not self_signed(c)),
                   crls=tuple(crls))

    def with_intermediates(self, extra: Iterable[x509.Certificate]) -> TrustStore:
        more = tuple(c for c in extra if not self_signed(c) and c not in self.intermediates)
        return TrustStore(self.roots, self.intermediates + more, self.crls)


def _read(key: str, path: str | Path) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError(key, str(path), f"un fichier lisible ({exc.strerror})") from exc


def load_trust_store(root_files: Iterable[str | Path],
                     crl_files: Iterable[str | Path] = ()) -> TrustStore:
    """Load PEM (or DER) certificate bundles and CRLs named in the settings."""
    certs: list[x509.Certificate] = []
    for path in root_files:
        data = _read("security.trust_roots", path)
        try:
            certs.extend(x509.load_pem_x509_certificates(data) if b"-----BEGIN" in data
                         else [x509.load_der_x509_certificate(data)])
        except ValueError as exc:
            raise ConfigError("security.trust_roots", str(path),
                              f"des certificats PEM ou DER ({exc})") from exc
    crls: list[x509.CertificateRevocationList] = []
    for path in crl_files:
        data = _read("security.crls", path)
        try:
            crls.append(x509.load_pem_x509_crl(data) if b"-----BEGIN" in data
                        else x509.load_der_x509_crl(data))
        except ValueError as exc:
            raise ConfigError("security.crls", str(path), f"une CRL PEM ou DER ({exc})") from exc
    return TrustStore.from_certificates(certs, crls)


def _check_dates(cert: x509.Certificate, at: datetime) -> None:
    if at > cert.not_valid_after_utc:
        raise CertificateRejected(
            "expired", f"the certificate of {subject(cert)} was not valid on "
            f"{at:%Y-%m-%d %H:%M:%S} UTC (expired {cert.not_valid_after_utc:%Y-%m-%d})",
            date=cert.not_valid_after_utc)
    if at < cert.not_valid_before_utc:
        raise CertificateRejected(
            "not_yet_valid", f"the certificate of {subject(cert)} was not valid on "
            f"{at:%Y-%m-%d %H:%M:%S} UTC (valid from {cert.not_valid_before_utc:%Y-%m-%d})",
            date=cert.not_valid_before_utc)


def _usage_ok(cert: x509.Certificate, usage: Usage) -> bool:
    ku = _extension(cert, x509.KeyUsage)
    if ku is None:
        return False
    if usage is Usage.AUTHENTICATION:
        return ku.digital_signature
    if usage is Usage.SIGNATURE:
        return ku.content_commitment
    return ku.digital_signature or ku.content_commitment


def _ca_problem(ca: x509.Certificate, below: int) -> str | None:
    """Why ``ca`` may not issue a path with ``below`` CAs under it, or None."""
    constraints = _extension(ca, x509.BasicConstraints)
    if constraints is None or not constraints.ca:
        return "is not a certification authority"
    if constraints.path_length is not None and below > constraints.path_length:
        return "exceeds its path length constraint"
    usage = _extension(ca, x509.KeyUsage)
    if usage is not None and not usage.key_cert_sign:
        return "may not sign certificates (key usage)"
    return None


def _revocation(child: x509.Certificate, issuer: x509.Certificate, trust: TrustStore,
                at: datetime) -> x509.RevokedCertificate | None:
    for crl in trust.crls:
        key = issuer.public_key()  # a chain's issuer signed its child: a key that can sign
        if (crl.issuer != issuer.subject or not isinstance(key, _ISSUER_KEYS)
                or not crl.is_signature_valid(key)):
            continue
        if crl.next_update_utc is not None and crl.next_update_utc < at:
            log.warning("the CRL of %s is past its next update; still applied",
                        crl.issuer.rfc4514_string())
        revoked = crl.get_revoked_certificate_by_serial_number(child.serial_number)
        if revoked is not None:
            return revoked
    return None


def validate_chain(cert: x509.Certificate, trust: TrustStore, at: datetime,
                   usage: Usage | str = Usage.AUTHENTICATION) -> list[x509.Certificate]:
    """The path leaf first, anchor last; or ``CertificateRejected``."""
    usage = Usage(usage)
    if not trust.roots:
        raise CertificateRejected("no_trust_roots", "no trust root configured")
    public = cert.public_key()
    if not isinstance(public, rsa.RSAPublicKey) or public.key_size < MIN_RSA_BITS:
        raise CertificateRejected("key_usage", f"the key of {subject(cert)} is not RSA "
                                  f"≥ {MIN_RSA_BITS} bits")
    if not _usage_ok(cert, usage):
        raise CertificateRejected("key_usage", f"the certificate of {subject(cert)} is not "
                                  f"for {usage.value.replace('_', ' ')} (key usage)")
    _check_dates(cert, at)
    path = [cert]
    while True:
        current = path[-1]
        root = next((r for r in trust.roots if issued_by(current, r)), None)
        if root is not None:
            path.append(root)
            break
        parent = next((i for i in trust.intermediates
                       if i not in path and issued_by(current, i)), None)
        if parent is None or len(path) > MAX_CHAIN_DEPTH:
            raise CertificateRejected(
                "untrusted", f"no trusted root issued the certificate of {subject(current)} "
                f"(issuer {current.issuer.rfc4514_string()})")
        path.append(parent)
    for below, ca in enumerate(path[1:]):
        problem = _ca_problem(ca, below)
        if problem:
            raise CertificateRejected("untrusted", f"{subject(ca)} {problem}")
        _check_dates(ca, at)
    for child, issuer in itertools.pairwise(path):
        revoked = _revocation(child, issuer, trust, at)
        if revoked is not None:
            raise CertificateRejected(
                "revoked", f"the certificate of {subject(child)} was revoked on "
                f"{revoked.revocation_date_utc:%Y-%m-%d}", date=revoked.revocation_date_utc)
    return path
