"""The test PKI: IGC-Santé-like test CAs, CPS/CPE card certificates, CRL, establishment
certificates. TEST ONLY: its roots are never in the default configuration.

``build_pki()`` makes everything in memory (unit tests); ``init_pki(dir)`` writes it:

    ca/root.pem, root.key                       TEST AC RACINE IGC-SANTE
    ca/professionnels.pem, .key                 TEST AC IGC-SANTE PROFESSIONNELS (cards)
    ca/organisations.pem, .key                  TEST AC IGC-SANTE ORGANISATIONS (servers)
    ca/cps-trust.pem                            root + professionnels: security.trust_roots
    ca/untrusted-root.pem, untrusted-professionnels.pem   a look-alike chain, not trusted
    crl/professionnels.crl, crl/root.crl        PEM CRLs: security.crls
    cards/<profile>/auth.der, auth.key, sign.der, sign.key, card.json
    establishment/server.pem (+ chain), server.key, client.pem (+ chain), client.key,
                 ca.pem (root + organisations)  the registry link (TLS and mTLS)
    trust.toml                                  the settings to use these files

End-entity subject (documented in PROTOCOL.md): ``serialNumber`` = idNat_PS (``8`` + RPPS
for CPS; ``3`` + FINESS + ``/`` + staff number for CPE), ``surname``, ``givenName``,
``title`` = profession (``Médecin``, ``Infirmier``, CPE: ``Personnel d'établissement``),
``CN`` = given name + family name, ``O``/``C``. Keys are RSA-2048, signatures SHA-256.
"""

from __future__ import annotations

import ipaddress
import json
import os
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from stdnum import luhn

from appliance.errors import PkiError

KEY_SIZE = 2048
PUBLIC_EXPONENT = 65537
TEST_ORGANISATION = "EHPAD ORDO TEST"
ROOT_CN = "TEST AC RACINE IGC-SANTE"
PROFESSIONALS_CN = "TEST AC IGC-SANTE PROFESSIONNELS"
ORGANISATIONS_CN = "TEST AC IGC-SANTE ORGANISATIONS"
UNTRUSTED_ROOT_CN = "TEST AC RACINE NON RECONNUE"
PKI_OU = "IGC-SANTE TEST"
DEFAULT_TRIES = 3


def rpps_with_key(first_ten: str) -> str:
    """An 11-digit RPPS: 10 digits then their Luhn key."""
    return first_ten + luhn.calc_check_digit(first_ten)


# ANS test cards use RPPS numbers in the 99700... range; the FINESS is fictitious.
TEST_FINESS = "75000000" + luhn.calc_check_digit("75000000")


@dataclass(frozen=True)
class Profile:
    """A virtual card: its holder and what is wrong with it, if anything."""

    name: str
    family_name: str
    given_name: str
    profession: str
    id_nat_ps: str
    card_type: str = "CPS"
    signature_key: bool = True
    expired: bool = False
    revoked: bool = False
    untrusted: bool = False
    initial_tries: int = DEFAULT_TRIES
    description: str = ""


def _physician(name: str, family: str, given: str, n: int, description: str,
               **flags: object) -> Profile:
    return Profile(name, family, given, "Médecin", "8" + rpps_with_key(f"99700{n:05d}"),
                   description=description, **flags)  # type: ignore[arg-type]


PROFILES: dict[str, Profile] = {p.name: p for p in (
    _physician("physician", "DUVAL", "Claire", 1, "médecin, carte valide"),
    Profile("nurse", "BERNARD", "Luc", "Infirmier", "8" + rpps_with_key("9970000002"),
            description="infirmier, carte CPS valide"),
    Profile("cpe", "PETIT", "Sofia", "Personnel d'établissement",
            f"3{TEST_FINESS}/CPE0001", card_type="CPE", signature_key=False,
            description="personnel d'établissement, carte CPE sans clé de signature"),
    _physician("expired", "EXPIRE", "Paul", 4, "médecin, certificats expirés", expired=True),
    _physician("revoked", "REVOQUE", "Anne", 5, "médecin, certificats révoqués (CRL)",
               revoked=True),
    _physician("untrusted", "INCONNU", "Marc", 6,
               "médecin, émise par une autorité non reconnue", untrusted=True),
    _physician("blocked", "BLOQUE", "Julie", 7, "médecin, code PIN bloqué", initial_tries=0),
)}


@dataclass
class Issued:
    cert: x509.Certificate
    key: rsa.RSAPrivateKey


@dataclass
class CardMaterial:
    profile: Profile
    auth: Issued
    sign: Issued | None


@dataclass
class PkiMaterial:
    root: Issued
    professionals: Issued
    organisations: Issued
    untrusted_root: Issued
    untrusted_professionals: Issued
    crl_professionals: x509.CertificateRevocationList
    crl_root: x509.CertificateRevocationList
    server: Issued
    client: Issued
    cards: dict[str, CardMaterial] = field(default_factory=dict)


@dataclass(frozen=True)
class PkiPaths:
    """Where ``init_pki`` wrote what; ``settings()`` gives the matching Ordo settings."""

    directory: Path

    @property
    def trust_roots(self) -> tuple[Path, ...]:
        return (self.directory / "ca" / "cps-trust.pem",)

    @property
    def crls(self) -> tuple[Path, ...]:
        return (self.directory / "crl" / "professionnels.crl", self.directory / "crl" / "root.crl")

    @property
    def trust_toml(self) -> Path:
        return self.directory / "trust.toml"

    def card_dir(self, profile: str) -> Path:
        return self.directory / "cards" / profile

    @property
    def establishment(self) -> Path:
        return self.directory / "establishment"

    def environment(self) -> dict[str, str]:
        """``ORDO_*`` variables that point Ordo at this PKI (comma-separated lists)."""
        est = self.establishment
        return {
            "ORDO_SECURITY_TRUST_ROOTS": ",".join(str(p) for p in self.trust_roots),
            "ORDO_SECURITY_CRLS": ",".join(str(p) for p in self.crls),
            "ORDO_REGISTRY_CA_FILE": str(est / "ca.pem"),
            "ORDO_REGISTRY_CLIENT_CERT": str(est / "client.pem"),
            "ORDO_REGISTRY_CLIENT_KEY": str(est / "client.key"),
        }


def _new_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=PUBLIC_EXPONENT, key_size=KEY_SIZE)


def _ca_name(cn: str) -> x509.Name:
    return x509.Name([
        x509.NameAttribute(NameOID.COUNTRY_NAME, "FR"),
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "ORDO TEST"),
        x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, PKI_OU),
        x509.NameAttribute(NameOID.COMMON_NAME, cn),
    ])


def holder_name(profile: Profile) -> x509.Name:
    return x509.Name([
        x509.NameAttribute(NameOID.COUNTRY_NAME, "FR"),
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, TEST_ORGANISATION),
        x509.NameAttribute(NameOID.TITLE, profile.profession),
        x509.NameAttribute(NameOID.SURNAME, profile.family_name),
        x509.NameAttribute(NameOID.GIVEN_NAME, profile.given_name),
        x509.NameAttribute(NameOID.SERIAL_NUMBER, profile.id_nat_ps),
        x509.NameAttribute(NameOID.COMMON_NAME, f"{profile.given_name} {profile.family_name}"),
    ])


def _builder(subject: x509.Name, issuer: Issued | None, key: rsa.RSAPrivateKey,
             not_before: datetime, not_after: datetime) -> x509.CertificateBuilder:
    issuer_name = issuer.cert.subject if issuer else subject
    issuer_public = issuer.key.public_key() if issuer else key.public_key()
    return (x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(issuer_name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(not_before)
            .not_valid_after(not_after)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                           critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_public),
                           critical=False))


def _ca(cn: str, issuer: Issued | None, now: datetime, years: int) -> Issued:
    key = _new_key()
    cert = (_builder(_ca_name(cn), issuer, key, now - timedelta(days=5 * 365),
                     now + timedelta(days=years * 365))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None if issuer is None
                                                 else 0), critical=True)
            .add_extension(x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
                encipher_only=False, decipher_only=False), critical=True)
            .sign((issuer.key if issuer else key), hashes.SHA256()))
    return Issued(cert, key)


def _key_usage(*, signature: bool = False, nonrepudiation: bool = False,
               encipherment: bool = False) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=signature, content_commitment=nonrepudiation,
        key_encipherment=encipherment, data_encipherment=False, key_agreement=False,
        key_cert_sign=False, crl_sign=False, encipher_only=False, decipher_only=False)


def _end_entity(subject: x509.Name, issuer: Issued, now: datetime, *, usage: x509.KeyUsage,
                eku: list[x509.ObjectIdentifier], expired: bool = False,
                san: list[x509.GeneralName] | None = None) -> Issued:
    key = _new_key()
    if expired:
        not_before, not_after = now - timedelta(days=3 * 365), now - timedelta(days=1)
    else:
        not_before, not_after = now - timedelta(days=1), now + timedelta(days=3 * 365)
    builder = (_builder(subject, issuer, key, not_before, not_after)
               .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
               .add_extension(usage, critical=True))
    if eku:
        builder = builder.add_extension(x509.ExtendedKeyUsage(eku), critical=False)
    if san:
        builder = builder.add_extension(x509.SubjectAlternativeName(san), critical=False)
    return Issued(builder.sign(issuer.key, hashes.SHA256()), key)


def _card(profile: Profile, issuer: Issued, now: datetime) -> CardMaterial:
    subject = holder_name(profile)
    auth = _end_entity(subject, issuer, now, usage=_key_usage(signature=True, encipherment=True),
                       eku=[ExtendedKeyUsageOID.CLIENT_AUTH], expired=profile.expired)
    sign = None
    if profile.signature_key:
        sign = _end_entity(subject, issuer, now, usage=_key_usage(nonrepudiation=True), eku=[],
                           expired=profile.expired)
    return CardMaterial(profile, auth, sign)


def _crl(issuer: Issued, now: datetime,
         revoked: list[x509.Certificate]) -> x509.CertificateRevocationList:
    builder = (x509.CertificateRevocationListBuilder()
               .issuer_name(issuer.cert.subject)
               .last_update(now - timedelta(hours=1))
               .next_update(now + timedelta(days=30))
               .add_extension(x509.CRLNumber(1), critical=False))
    for cert in revoked:
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder()
            .serial_number(cert.serial_number)
            .revocation_date(now - timedelta(hours=1))
            .add_extension(x509.CRLReason(x509.ReasonFlags.key_compromise), critical=False)
            .build())
    return builder.sign(issuer.key, hashes.SHA256())


def build_pki(now: datetime | None = None,
              profiles: dict[str, Profile] | None = None) -> PkiMaterial:
    """Make the whole test PKI in memory (about twenty RSA-2048 keys)."""
    now = (now or datetime.now(UTC)).replace(microsecond=0)
    profiles = PROFILES if profiles is None else profiles
    root = _ca(ROOT_CN, None, now, 20)
    professionals = _ca(PROFESSIONALS_CN, root, now, 10)
    organisations = _ca(ORGANISATIONS_CN, root, now, 10)
    untrusted_root = _ca(UNTRUSTED_ROOT_CN, None, now, 20)
    # Same name as the trusted intermediate, other keys: name matching alone must not pass.
    untrusted_professionals = _ca(PROFESSIONALS_CN, untrusted_root, now, 10)
    cards = {name: _card(p, untrusted_professionals if p.untrusted else professionals, now)
             for name, p in profiles.items()}
    revoked = [c for m in cards.values() if m.profile.revoked
               for c in (m.auth.cert, m.sign.cert if m.sign else None) if c is not None]
    server = _end_entity(
        x509.Name([x509.NameAttribute(NameOID.COUNTRY_NAME, "FR"),
                   x509.NameAttribute(NameOID.ORGANIZATION_NAME, "REGISTRE TEST"),
                   x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]),
        organisations, now, usage=_key_usage(signature=True, encipherment=True),
        eku=[ExtendedKeyUsageOID.SERVER_AUTH],
        san=[x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))])
    client = _end_entity(
        x509.Name([x509.NameAttribute(NameOID.COUNTRY_NAME, "FR"),
                   x509.NameAttribute(NameOID.ORGANIZATION_NAME, TEST_ORGANISATION),
                   x509.NameAttribute(NameOID.SERIAL_NUMBER, f"FINESS {TEST_FINESS}"),
                   x509.NameAttribute(NameOID.COMMON_NAME, f"{TEST_ORGANISATION} {TEST_FINESS}")]),
        organisations, now, usage=_key_usage(signature=True, encipherment=True),
        eku=[ExtendedKeyUsageOID.CLIENT_AUTH])
    return PkiMaterial(root=root, professionals=professionals, organisations=organisations,
                   untrusted_root=untrusted_root, untrusted_professionals=untrusted_professionals,
                   crl_professionals=_crl(professionals, now, revoked),
                   crl_root=_crl(root, now, []), server=server, client=client, cards=cards)


# -- writing -------------------------------------------------------------------------------

def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _write(path: Path, data: bytes, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
    os.chmod(tmp, mode)
    os.replace(tmp, path)


def _write_key(path: Path, key: rsa.RSAPrivateKey) -> None:
    _write(path, key.private_bytes(serialization.Encoding.PEM,
                                   serialization.PrivateFormat.PKCS8,
                                   serialization.NoEncryption()), mode=0o600)


def _toml_list(paths: tuple[Path, ...]) -> str:
    return "[" + ", ".join(json.dumps(str(p)) for p in paths) + "]"


def write_pki(pki: PkiMaterial, directory: Path) -> PkiPaths:
    directory = Path(directory).resolve()
    paths = PkiPaths(directory)
    ca, crl, est = directory / "ca", directory / "crl", paths.establishment
    for name, issued in (("root", pki.root), ("professionnels", pki.professionals),
                         ("organisations", pki.organisations),
                         ("untrusted-root", pki.untrusted_root),
                         ("untrusted-professionnels", pki.untrusted_professionals)):
        _write(ca / f"{name}.pem", _pem(issued.cert))
        _write_key(ca / f"{name}.key", issued.key)
    _write(ca / "cps-trust.pem", _pem(pki.root.cert) + _pem(pki.professionals.cert))
    _write(crl / "professionnels.crl", pki.crl_professionals.public_bytes(
        serialization.Encoding.PEM))
    _write(crl / "root.crl", pki.crl_root.public_bytes(serialization.Encoding.PEM))
    for name, material in pki.cards.items():
        card_dir = paths.card_dir(name)
        _write(card_dir / "auth.der", material.auth.cert.public_bytes(serialization.Encoding.DER))
        _write_key(card_dir / "auth.key", material.auth.key)
        if material.sign is not None:
            _write(card_dir / "sign.der",
                   material.sign.cert.public_bytes(serialization.Encoding.DER))
            _write_key(card_dir / "sign.key", material.sign.key)
        profile = material.profile
        _write(card_dir / "card.json", json.dumps({
            "profile": profile.name, "card_type": profile.card_type,
            "initial_tries": profile.initial_tries, "description": profile.description,
        }, ensure_ascii=False, indent=2).encode("utf-8"))
    chain = _pem(pki.organisations.cert)
    _write(est / "server.pem", _pem(pki.server.cert) + chain)
    _write_key(est / "server.key", pki.server.key)
    _write(est / "client.pem", _pem(pki.client.cert) + chain)
    _write_key(est / "client.key", pki.client.key)
    _write(est / "ca.pem", _pem(pki.root.cert) + chain)
    _write(paths.trust_toml, (
        "# Ordo TEST PKI - for the demo and the tests only, never in production.\n"
        "# Use: ordo --config trust.toml ..., or copy these keys into your ordo.toml.\n"
        "[security]\n"
        f"trust_roots = {_toml_list(paths.trust_roots)}\n"
        f"crls = {_toml_list(paths.crls)}\n\n"
        "[registry]\n"
        f"ca_file = {json.dumps(str(est / 'ca.pem'))}\n"
        f"client_cert = {json.dumps(str(est / 'client.pem'))}\n"
        f"client_key = {json.dumps(str(est / 'client.key'))}\n").encode())
    return paths


def pki_exists(directory: Path) -> bool:
    return (Path(directory) / "ca" / "root.pem").is_file()


def init_pki(directory: Path, *, force: bool = False, now: datetime | None = None) -> PkiPaths:
    """Create the test PKI in ``directory``; refuse to overwrite one unless ``force``."""
    directory = Path(directory)
    if pki_exists(directory) and not force:
        raise PkiError(f"une PKI de test existe déjà dans {directory} "
                       "(--force pour la remplacer)")
    return write_pki(build_pki(now), directory)
