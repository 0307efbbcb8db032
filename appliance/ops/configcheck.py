"""``ordo config check``: what loading the settings cannot see.

Loading already checks types and formats. This checks the settings against the machine
and the appliance's needs: the establishment's FINESS (with its check digit) and address,
the registry over TLS, and every file the settings name (client certificate and key, CA
file, CPS trust roots, CRLs, backup key): absolute path, present, readable by the
appliance's user, of the right kind, not expired, not readable by everyone when secret;
and with the PKCS#11 card backend, a module that exists and loads.
Each finding is a ``ConfigError`` (key, value, expected) with a level: ``error`` makes
``ordo config check`` and the doctor fail, ``warning`` does not.
"""

from __future__ import annotations

import ipaddress
import os
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from appliance.config import SYSTEM_USER, Settings, listen_address
from appliance.domain.ids import validate_finess
from appliance.errors import ConfigError, InvalidIdentifier
from appliance.ops.backup import KEY_EXPECTED, parse_key
from appliance.ops.files import readable_by, service_user

ERROR, WARNING = "error", "warning"
EXPIRY_WARNING = timedelta(days=30)
DEFAULT_NAME = "EHPAD"


@dataclass(frozen=True)
class Finding:
    level: str
    error: ConfigError

    def __str__(self) -> str:
        e = self.error
        return f"{self.level.upper():<7} {e.key} = {e.value!r}: expected {e.expected}"


def _loopback(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _certificates(data: bytes) -> list[x509.Certificate]:
    if b"-----BEGIN" in data:
        return x509.load_pem_x509_certificates(data)
    return [x509.load_der_x509_certificate(data)]


def _crl(data: bytes) -> x509.CertificateRevocationList:
    if b"-----BEGIN" in data:
        return x509.load_pem_x509_crl(data)
    return x509.load_der_x509_crl(data)


class _Checker:
    def __init__(self, settings: Settings, now: datetime) -> None:
        self.settings = settings
        self.now = now
        self.findings: list[Finding] = []
        self.user = service_user() if os.geteuid() == 0 else None

    def add(self, level: str, key: str, value: Any, expected: str) -> None:
        self.findings.append(Finding(level, ConfigError(key, value, expected)))

    def file(self, key: str, value: str, what: str, *, secret: bool = False,
             parse: Callable[[bytes], Any] | None = None) -> Any:
        """Check one named file; return what ``parse`` made of it, or None."""
        path = Path(value)
        if not path.is_absolute():
            self.add(ERROR, key, value, f"an absolute path to {what}")
            return None
        try:
            st = path.stat()
            data = path.read_bytes()
        except FileNotFoundError:
            self.add(ERROR, key, value, f"an existing file: {what}")
            return None
        except OSError as exc:
            self.add(ERROR, key, value, f"a readable file: {what} ({exc.strerror})")
            return None
        if not stat.S_ISREG(st.st_mode):
            self.add(ERROR, key, value, f"a regular file: {what}")
            return None
        if self.user is not None and not readable_by(path, self.user):
            self.add(ERROR, key, value, f"a file readable by the user {SYSTEM_USER} "
                                        f"(chgrp {SYSTEM_USER} {value}; chmod 640 {value})")
        if secret and st.st_mode & (stat.S_IROTH | stat.S_IWOTH):
            self.add(ERROR, key, value, f"a secret readable by its owner and group only "
                                        f"(chmod 640 {value})")
        if parse is None:
            return data
        try:
            return parse(data)
        except ValueError as exc:
            self.add(ERROR, key, value, f"{what} ({exc})")
            return None

    def certificate_validity(self, key: str, value: str, cert: x509.Certificate) -> None:
        if cert.not_valid_after_utc < self.now:
            self.add(ERROR, key, value,
                     f"a valid certificate (expired on {cert.not_valid_after_utc:%Y-%m-%d})")
        elif cert.not_valid_after_utc < self.now + EXPIRY_WARNING:
            self.add(WARNING, key, value, f"a certificate valid for more than "
                                          f"{EXPIRY_WARNING.days} days (expires on "
                                          f"{cert.not_valid_after_utc:%Y-%m-%d}): renew it")
        if cert.not_valid_before_utc > self.now:
            self.add(ERROR, key, value, f"a certificate already valid (from "
                                        f"{cert.not_valid_before_utc:%Y-%m-%d}; is the clock "
                                        "right?)")


def check_settings(settings: Settings, now: datetime | None = None) -> list[Finding]:
    """Every problem found in ``settings``, errors first."""
    checker = _Checker(settings, now or datetime.now(UTC))
    for step in (_establishment, _prescriber, _pharmacy, _registry, _security, _card,
                 _metrics, _data_dir):
        for level, key, value, expected in step(checker):
            checker.add(level, key, value, expected)
    return sorted(checker.findings, key=lambda f: f.level != ERROR)


Problem = tuple[str, str, Any, str]


def _establishment(c: _Checker) -> Iterator[Problem]:
    e = c.settings.establishment
    if not e.finess:
        yield ERROR, "establishment.finess", e.finess, (
            "the establishment's FINESS number (9 characters), printed on every order")
    else:
        try:
            validate_finess(e.finess, "establishment.finess")
        except InvalidIdentifier as exc:
            yield ERROR, "establishment.finess", e.finess, exc.expected
    if e.name.strip() == DEFAULT_NAME:
        yield WARNING, "establishment.name", e.name, "the establishment's real name"
    if not e.address.strip():
        yield ERROR, "establishment.address", e.address, (
            "the establishment's postal address, printed on every order")
    if not e.phone.strip():
        yield WARNING, "establishment.phone", e.phone, (
            "the establishment's phone number, printed on every order (R5132-3)")
    if not e.email.strip():
        yield WARNING, "establishment.email", e.email, (
            "the establishment's e-mail address, printed on every order (R5132-3)")


def _prescriber(c: _Checker) -> Iterator[Problem]:
    d = c.settings.prescriber
    if not d.qualification.strip():
        yield WARNING, "prescriber.qualification", d.qualification, (
            'the qualification printed under a prescriber\'s name, e.g. "Médecin généraliste" '
            "(or per prescriber: ordo practitioners set-contact ID --qualification ...)")
    if not d.phone.strip() and not c.settings.establishment.phone.strip():
        yield WARNING, "prescriber.phone", d.phone, (
            "a phone number at which the prescriber is reached, printed on every order "
            "(or per prescriber: ordo practitioners set-contact ID --phone ...)")


def _pharmacy(c: _Checker) -> Iterator[Problem]:
    p = c.settings.pharmacy
    if not p.name.strip():
        yield WARNING, "pharmacy.name", p.name, "the partner pharmacy's name"
    if p.finess:
        try:
            validate_finess(p.finess, "pharmacy.finess")
        except InvalidIdentifier as exc:
            yield ERROR, "pharmacy.finess", p.finess, exc.expected


def _registry(c: _Checker) -> Iterator[Problem]:
    r = c.settings.registry
    https = urlsplit(r.url).scheme == "https"
    if not https:
        level = WARNING if _loopback(r.url) else ERROR
        yield level, "registry.url", r.url, "an https URL (plain HTTP only for a local test " \
                                            "registry)"
    if not https:
        return
    cert = None
    if not r.client_cert:
        yield ERROR, "registry.client_cert", r.client_cert, (
            "the PEM file of the establishment's client certificate")
    else:
        certs = c.file("registry.client_cert", r.client_cert, "a PEM certificate",
                       parse=x509.load_pem_x509_certificates)
        if certs:
            cert = certs[0]
            c.certificate_validity("registry.client_cert", r.client_cert, cert)
    if not r.client_key:
        yield ERROR, "registry.client_key", r.client_key, (
            "the PEM file of the client certificate's private key")
    else:
        key = c.file("registry.client_key", r.client_key, "an unencrypted PEM private key",
                     secret=True,
                     parse=lambda data: serialization.load_pem_private_key(data, None))
        if key is not None and cert is not None and (
                key.public_key().public_bytes(serialization.Encoding.DER,
                                              serialization.PublicFormat.SubjectPublicKeyInfo)
                != cert.public_key().public_bytes(
                    serialization.Encoding.DER,
                    serialization.PublicFormat.SubjectPublicKeyInfo)):
            yield ERROR, "registry.client_key", r.client_key, (
                "the private key of registry.client_cert (this key does not match it)")
    if not r.ca_file:
        yield ERROR, "registry.ca_file", r.ca_file, (
            "the PEM bundle of the authority that signs the registry's certificate")
    else:
        c.file("registry.ca_file", r.ca_file, "a PEM certificate bundle",
               parse=x509.load_pem_x509_certificates)


def _security(c: _Checker) -> Iterator[Problem]:
    s = c.settings.security
    if not s.trust_roots:
        yield ERROR, "security.trust_roots", list(s.trust_roots), (
            "the certificate files of the CPS authorities (no card is trusted without them)")
    for index, path in enumerate(s.trust_roots):
        certs = c.file(f"security.trust_roots[{index}]", path, "a PEM or DER certificate",
                       parse=_certificates)
        for cert in certs or ():
            c.certificate_validity(f"security.trust_roots[{index}]", path, cert)
    if not s.crls:
        yield WARNING, "security.crls", [], (
            "the CRLs of the CPS authorities (without them a revoked card is accepted)")
    for index, path in enumerate(s.crls):
        crl = c.file(f"security.crls[{index}]", path, "a PEM or DER CRL", parse=_crl)
        if crl is not None and crl.next_update_utc and crl.next_update_utc < c.now:
            yield WARNING, f"security.crls[{index}]", path, (
                f"a current CRL (its next update was due on {crl.next_update_utc:%Y-%m-%d}): "
                "download it again")
    if not s.backup_key:
        yield ERROR, "security.backup_key", s.backup_key, KEY_EXPECTED
    else:
        c.file("security.backup_key", s.backup_key, KEY_EXPECTED, secret=True,
               parse=lambda data: parse_key(data.decode("ascii", "replace")))


def _card(c: _Checker) -> Iterator[Problem]:
    """With the PKCS#11 backend, the module must exist and load (in a child process)."""
    from appliance.errors import CardError
    from appliance.ops import probes

    card = c.settings.card
    if card.backend != "pkcs11":
        return
    path = card.pkcs11_module or probes.default_pkcs11_module()
    if not path:
        yield ERROR, "card.pkcs11_module", card.pkcs11_module, (
            "the path of a PKCS#11 module: OpenSC's is not installed (apt-get install "
            "opensc-pkcs11), or give the ANS middleware's (libcps3_pkcs11_lux.so)")
        return
    if not Path(path).is_file():
        yield ERROR, "card.pkcs11_module", path, "an existing PKCS#11 module file"
        return
    try:
        probes.pkcs11_module(path, card.token_label)
    except CardError as exc:
        yield ERROR, "card.pkcs11_module", path, f"a PKCS#11 module that loads ({exc})"


def _metrics(c: _Checker) -> Iterator[Problem]:
    """The metrics endpoint is not authenticated: never on every interface at once."""
    listen = c.settings.metrics.listen
    address = listen_address(listen)
    if address is not None and ipaddress.ip_address(address[0]).is_unspecified:
        yield WARNING, "metrics.listen", listen, (
            "a loopback address (127.0.0.1:9464) or the address of the VPN the central "
            "Prometheus comes through: the endpoint is not authenticated, and this address "
            "serves it on every network interface")


def _data_dir(c: _Checker) -> Iterator[Problem]:
    path = c.settings.data_dir
    if path.exists() and not path.is_dir():
        yield ERROR, "data_dir", str(path), "a directory"
    elif path.is_dir() and path.stat().st_mode & 0o077:
        yield WARNING, "data_dir", str(path), (
            f"a directory closed to others (chmod 700 {path}): it holds health data")
