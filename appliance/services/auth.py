"""Use case: authenticate a practitioner with the inserted CPS/CPE card and the PIN typed.

``authenticate(card, pin, trust, audit=...)``:

1. reads the card's certificates and the holder's identity from the subject
   (``serialNumber`` = idNat_PS, ``surname``, ``givenName``, ``title`` = profession);
2. refuses a blocked card before anything else touches the PIN (an empty VERIFY);
3. validates the authentication (and signature) certificate: validity dates, a chain to a
   configured trust root (``security.trust_roots``), CA constraints, key usage, and the
   CRLs when configured (``security.crls``);
4. maps the profession to a role: ``Médecin`` → prescriber; ``Infirmier``/``Infirmière``
   → nurse; a CPE card (idNat ``3``...) → staff; anything else is refused;
5. VERIFY the PIN (never stored, logged or audited), then a challenge-response: the card
   signs GET CHALLENGE + a host nonce with its authentication key, checked against the
   certificate's public key;
6. returns a ``PractitionerSession`` whose ``sign()`` works only for a prescriber; the
   session is then a ``Signer`` (``certificate_der`` + ``sign(data) -> bytes``).

Each refusal is an ``AuthRefused`` with a machine ``reason`` and a French message. Every
security event goes to ``audit`` (login ok, refused, wrong PIN, card blocked, lock):
``audit_log(new_uow)`` writes each entry in its own unit of work, from any thread.
``SessionGuard`` locks the session on card events (removal, service lost, another card).

``login(reader, pin, trust, ...)`` is the whole recipe: open the card (by reader name, by
slot, or the first reader holding one: ``open_card``), authenticate, and close the card
when that fails. The composition root (``appliance.bootstrap.App.login``) gives it the card
reader, the trust store and the audit log it built.
"""

from __future__ import annotations

import logging
import re
import secrets
import threading
import time
import unicodedata
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID

from appliance.domain import Json
from appliance.domain.people import Practitioner, Role
from appliance.errors import CardError, CardRemoved, PinBlocked, WrongPin
from appliance.ports.card import (
    CardEvent,
    CardEventKind,
    CardReader,
    CardSession,
    sha256_digest_info,
)
from appliance.ports.uow import UnitOfWork
from appliance.services.trust import (
    CertificateRejected,
    TrustStore,
    holder_id_nat_ps,
    validate_chain,
)

log = logging.getLogger(__name__)

Audit = Callable[..., object]
"""``audit(actor=..., action=..., subject=..., details={...})`` (``audit_log``). Never
receives a PIN or health data."""

HOST_NONCE_BYTES = 16
PIN_PATTERN = re.compile(r"[0-9]{4,8}")


# Profession (subject ``title``, accents and case ignored) → role. CPE cards → staff.
PROFESSION_ROLES: dict[str, Role] = {
    "medecin": Role.PRESCRIBER,
    "infirmier": Role.NURSE,
    "infirmiere": Role.NURSE,
}

REASONS: dict[str, str] = {
    "not_cps": "Carte non reconnue : ce n'est pas une carte CPS ou CPE lisible.",
    "blocked": "Carte bloquée : code PIN épuisé. Faites-la débloquer avant de l'utiliser.",
    "wrong_pin": "Code PIN incorrect : {tries_left} essai(s) restant(s).",
    "wrong_pin_untold": "Code PIN incorrect.",
    "pin_format": "Le code PIN comporte de 4 à 8 chiffres.",
    "expired": "Certificat de la carte expiré depuis le {date}.",
    "not_yet_valid": "Certificat de la carte pas encore valide (à partir du {date}).",
    "revoked": "Certificat de la carte révoqué.",
    "untrusted": "Certificat émis par une autorité non reconnue.",
    "no_trust_roots": "Aucune autorité de confiance configurée (security.trust_roots).",
    "key_usage": "Certificat de la carte inadapté à cet usage.",
    "holder_mismatch": "Les certificats de la carte ne désignent pas la même personne.",
    "profession": "Profession non autorisée sur ce poste : {profession}.",
    "challenge": "La carte n'a pas prouvé qu'elle détient la clé de son certificat.",
    "forbidden": "Ce profil ne peut pas signer de prescription.",
    "locked": "Session verrouillée : réinsérez la carte et saisissez le code PIN.",
}


class AuthRefused(CardError):
    """Authentication (or a session operation) refused; ``reason`` is a key of
    ``REASONS``; the message is French, for the practitioner."""

    def __init__(self, reason: str, **info: str | int | None) -> None:
        self.reason = reason
        self.info = info
        tries_left = info.get("tries_left")
        self.tries_left = tries_left if isinstance(tries_left, int) else None
        text = REASONS[reason]
        if reason == "wrong_pin" and self.tries_left is None:   # the card does not tell
            text = REASONS["wrong_pin_untold"]
        super().__init__(text.format(**info))


@dataclass(frozen=True)
class CardHolder:
    id_nat_ps: str
    family_name: str
    given_name: str
    profession: str
    card_type: str                  # "CPS" or "CPE"

    @property
    def rpps(self) -> str | None:
        """The RPPS number (idNat_PS ``8`` + RPPS), None for ADELI or CPE identifiers."""
        return self.id_nat_ps[1:] if self.id_nat_ps.startswith("8") else None

    @property
    def display_name(self) -> str:
        return f"{self.given_name} {self.family_name}".strip()

    def as_practitioner(self, role: Role, am: str | None = None,
                        finess: str | None = None) -> Practitioner:
        """The domain's practitioner, with the N° AM and FINESS the card does not carry."""
        return Practitioner(id_nat_ps=self.id_nat_ps, last_name=self.family_name,
                            first_name=self.given_name, profession=self.profession, role=role,
                            am=am, finess=finess)


# -- identity ------------------------------------------------------------------------------

def _attribute(name: x509.Name, oid: x509.ObjectIdentifier) -> str:
    values = name.get_attributes_for_oid(oid)
    value = values[0].value if values else ""
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value).strip()


def parse_practitioner(cert: x509.Certificate) -> CardHolder:
    """The holder of a card certificate; ``AuthRefused('not_cps')`` if it is not one."""
    subject = cert.subject
    id_nat = holder_id_nat_ps(cert)
    if id_nat is None:
        log.info("card certificate without a valid idNat_PS")
        raise AuthRefused("not_cps")
    return CardHolder(
        id_nat_ps=id_nat,
        family_name=_attribute(subject, NameOID.SURNAME),
        given_name=_attribute(subject, NameOID.GIVEN_NAME),
        profession=_attribute(subject, NameOID.TITLE),
        card_type="CPE" if id_nat.startswith("3") else "CPS",
    )


def _fold(text: str) -> str:
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c)).strip().lower()


def role_for(practitioner: CardHolder) -> Role | None:
    if practitioner.card_type == "CPE":
        return Role.STAFF
    return PROFESSION_ROLES.get(_fold(practitioner.profession))


# -- trust -----------------------------------------------------------------------------------

def validate_certificate(cert: x509.Certificate, trust: TrustStore, at: datetime,
                         usage: str = "authentication") -> list[x509.Certificate]:
    """``trust.validate_chain``, with its refusals as ``AuthRefused`` (French message)."""
    try:
        return validate_chain(cert, trust, at, usage)
    except CertificateRejected as exc:
        log.info("card certificate refused", extra={"fields": {"reason": exc.reason}})
        when = exc.facts.get("date")
        raise AuthRefused(exc.reason, **({"date": f"{when:%d/%m/%Y}"} if when else {})) \
            from None


# -- the session ---------------------------------------------------------------------------

@dataclass
class PractitionerSession:
    """An authenticated practitioner at a reader, until the session locks.

    Thread-safe: ``lock()`` may come from the card monitor's thread. Once locked it stays
    locked; the card is reset so the PIN must be typed again.
    """

    practitioner: CardHolder
    role: Role
    reader: str
    card: CardSession = field(repr=False)
    signature_certificate: x509.Certificate | None = field(repr=False)
    audit: Audit = field(repr=False)
    idle_timeout_s: float = 300.0
    clock: Callable[[], float] = time.monotonic
    locked: bool = False
    lock_reason: str = ""
    locked_at: float | None = None

    def __post_init__(self) -> None:
        self._state = threading.Lock()
        self._card_lock = threading.Lock()
        self._listeners: list[Callable[[PractitionerSession], None]] = []
        self._lock_done = threading.Event()
        self.last_activity = self.clock()

    @property
    def can_sign(self) -> bool:
        return self.role is Role.PRESCRIBER and self.signature_certificate is not None

    def on_lock(self, callback: Callable[[PractitionerSession], None]) -> None:
        self._listeners.append(callback)

    def touch(self) -> None:
        self._require_active()
        self.last_activity = self.clock()

    def check_idle(self) -> bool:
        """Lock after ``idle_timeout_s`` without activity; True if the session is locked.
        Call it periodically (the UI does it every second)."""
        if not self.locked and self.clock() - self.last_activity > self.idle_timeout_s:
            self.lock("idle")
        return self.locked

    def wait_locked(self, timeout_s: float | None = None) -> bool:
        """Wait until ``lock()`` has finished (listeners, audit entry, card reset)."""
        return self._lock_done.wait(timeout_s)

    def lock(self, reason: str) -> None:
        """End the session (idempotent): listeners first (the UI hides everything at
        once), then the audit entry, then the card is reset. May run in the monitor's
        thread: the ``audit`` given to ``authenticate`` must accept that."""
        with self._state:
            if self.locked:
                return
            self.locked, self.lock_reason, self.locked_at = True, reason, self.clock()
        log.info("session locked", extra={"fields": {"reason": reason, "reader": self.reader}})
        for callback in list(self._listeners):
            try:
                callback(self)
            except Exception:
                log.exception("session lock listener failed")
        try:
            self.audit(actor=self.practitioner.id_nat_ps, action="auth.session_locked",
                       subject=self.reader, details={"reason": reason})
        except Exception:
            log.exception("cannot audit the session lock")
        try:
            self.card.close()
        except CardError as exc:
            log.debug("closing the card after lock: %s", exc)
        finally:
            self._lock_done.set()

    def logout(self) -> None:
        self.lock("logout")

    def _require_active(self) -> None:
        if self.check_idle():
            raise AuthRefused("locked")

    @property
    def certificate_der(self) -> bytes:
        """DER of the signature certificate (``AuthRefused('forbidden')`` if none)."""
        if not self.can_sign or self.signature_certificate is None:
            raise AuthRefused("forbidden")
        return self.signature_certificate.public_bytes(Encoding.DER)

    def sign(self, data: bytes) -> bytes:
        """RSA-2048 PKCS#1 v1.5 over SHA-256(``data``) with the card's signature key; the
        signature is verified with the certificate before it is returned."""
        self._require_active()
        if not self.can_sign or self.signature_certificate is None:
            raise AuthRefused("forbidden")
        with self._card_lock:
            if self.locked:
                raise AuthRefused("locked")
            try:
                value = self.card.sign(sha256_digest_info(data))
            except CardRemoved as exc:
                self.lock("card_removed")
                raise AuthRefused("locked") from exc
        public = self.signature_certificate.public_key()
        assert isinstance(public, rsa.RSAPublicKey)
        try:
            public.verify(value, data, padding.PKCS1v15(), hashes.SHA256())
        except InvalidSignature as exc:
            raise CardError("the card's signature does not verify with its certificate") \
                from exc
        self.last_activity = self.clock()
        return value


class SessionGuard:
    """Subscribe it to the card watcher: it locks the session when its card is removed,
    its reader disappears, the PC/SC service goes away, or another card is inserted."""

    def __init__(self, session: PractitionerSession) -> None:
        self.session = session

    def __call__(self, event: CardEvent) -> None:
        reason = None
        mine = event.reader == self.session.reader
        if event.kind is CardEventKind.REMOVED and mine:
            reason = "card_removed"
        elif event.kind is CardEventKind.READER_REMOVED and mine:
            reason = "reader_removed"
        elif event.kind is CardEventKind.SERVICE_LOST:
            reason = "service_lost"
        elif event.kind is CardEventKind.INSERTED and not mine and not event.initial:
            reason = "other_card"
        if reason is not None:
            self.session.lock(reason)


# -- the use case ----------------------------------------------------------------------------

def load_card_certificate(der: bytes) -> x509.Certificate:
    """A card certificate, parsed whole (``AuthRefused('not_cps')`` if it is unreadable)."""
    try:
        cert = x509.load_der_x509_certificate(der)
        # cryptography parses these on first access: a corrupt one is refused here, not
        # with a ValueError in the middle of the chain check.
        _ = cert.issuer, cert.subject, cert.extensions, cert.public_key()
    except (ValueError, TypeError, x509.InvalidVersion, x509.DuplicateExtension,
            x509.UnsupportedGeneralNameType, UnsupportedAlgorithm) as exc:
        raise AuthRefused("not_cps") from exc
    return cert


def authenticate(card: CardSession, pin: str, trust: TrustStore, *, audit: Audit,
                 now: datetime | None = None, idle_timeout_s: float = 300.0,
                 clock: Callable[[], float] = time.monotonic) -> PractitionerSession:
    """Authenticate the holder of ``card`` with ``pin``; see the module docstring."""
    at = now or datetime.now(UTC)
    reader = card.reader
    certs = card.read_certificates()
    auth_cert = load_card_certificate(certs.authentication)
    try:
        practitioner = parse_practitioner(auth_cert)
    except AuthRefused:
        audit(actor="card", action="auth.refused", subject=reader,
              details={"reason": "not_cps"})
        raise
    actor = practitioner.id_nat_ps

    def refuse(reason: str, action: str = "auth.refused", /,
               **info: str | int | None) -> AuthRefused:
        details = {"reason": reason, "card_type": practitioner.card_type,
                   "serial": f"{auth_cert.serial_number:x}", **info}
        audit(actor=actor, action=action, subject=reader, details=details)
        return AuthRefused(reason, **info)

    if card.pin_status().blocked:
        raise refuse("blocked", "auth.card_blocked")
    sign_cert = None
    try:
        validate_certificate(auth_cert, trust, at, "authentication")
        if certs.signature is not None:
            sign_cert = load_card_certificate(certs.signature)
            if parse_practitioner(sign_cert).id_nat_ps != practitioner.id_nat_ps:
                raise AuthRefused("holder_mismatch")
            validate_certificate(sign_cert, trust, at, "signature")
    except AuthRefused as exc:
        raise refuse(exc.reason, **exc.info) from None
    role = role_for(practitioner)
    if role is None:
        raise refuse("profession", profession=practitioner.profession or "?")
    if not PIN_PATTERN.fullmatch(pin):
        raise AuthRefused("pin_format")
    try:
        card.verify_pin(pin)
    except WrongPin as exc:
        audit(actor=actor, action="auth.wrong_pin", subject=reader,
              details={"tries_left": exc.tries_left})
        if exc.tries_left == 0:
            raise refuse("blocked", "auth.card_blocked") from None
        raise AuthRefused("wrong_pin", tries_left=exc.tries_left) from None
    except PinBlocked:
        raise refuse("blocked", "auth.card_blocked") from None

    data = card.get_challenge() + secrets.token_bytes(HOST_NONCE_BYTES)
    signature = card.authenticate(sha256_digest_info(data))
    public = auth_cert.public_key()
    assert isinstance(public, rsa.RSAPublicKey)
    try:
        public.verify(signature, data, padding.PKCS1v15(), hashes.SHA256())
    except InvalidSignature:
        raise refuse("challenge") from None
    audit(actor=actor, action="auth.login", subject=reader,
          details={"role": role.value, "card_type": practitioner.card_type,
                   "serial": f"{auth_cert.serial_number:x}"})
    log.info("practitioner authenticated", extra={"fields": {"role": role.value,
                                                            "reader": reader}})
    return PractitionerSession(practitioner=practitioner, role=role, reader=reader, card=card,
                               signature_certificate=sign_cert, audit=audit,
                               idle_timeout_s=idle_timeout_s, clock=clock)


# -- the recipe --------------------------------------------------------------------------------

def audit_log(new_uow: Callable[[], UnitOfWork]) -> Audit:
    """``audit(**entry)`` for ``authenticate`` and the sessions it makes, callable from any
    thread (the card monitor's locks the session): each entry in its own unit of work."""

    def append(*, actor: str, action: str, subject: str = "",
               details: Mapping[str, Json] | None = None, at: datetime | None = None) -> int:
        uow = new_uow()
        try:
            with uow:
                seq = uow.audit.append(actor=actor, action=action, subject=subject,
                                       details=details, at=at)
                uow.commit()
            return seq
        finally:
            uow.close()

    return append


def open_card(reader: CardReader, name: str | None = None, slot: int | None = None
              ) -> CardSession:
    """The card in the reader called ``name``, else in ``slot``, else in the first reader
    that holds one."""
    if name is not None:
        names = reader.readers()
        if name not in names:
            raise CardError(f"lecteur introuvable : {name}")
        return reader.open(names.index(name))
    if slot is not None:
        return reader.open(slot)
    for index in range(len(reader.readers())):
        try:
            return reader.open(index)
        except CardRemoved:
            continue
    raise CardError("aucune carte dans les lecteurs : insérez la carte CPS")


def card_holder(reader: CardReader, name: str) -> tuple[CardHolder, int | None]:
    """Who holds the card in the reader ``name``, and the PIN tries left, read without
    spending a try (the PIN screen shows them before the PIN is typed)."""
    card = open_card(reader, name)
    try:
        tries = card.pin_status().tries_left
        cert = load_card_certificate(card.read_certificates().authentication)
    finally:
        card.close()
    return parse_practitioner(cert), tries


def login(reader: CardReader, pin: str, trust: TrustStore, *, audit: Audit,
          idle_timeout_s: float, name: str | None = None, slot: int | None = None,
          now: datetime | None = None) -> PractitionerSession:
    """Open the card (``open_card``) and authenticate its holder; the card is closed when
    that fails. Call it on the thread that owns the card."""
    card = open_card(reader, name, slot)
    try:
        return authenticate(card, pin, trust, audit=audit, now=now,
                            idle_timeout_s=idle_timeout_s)
    except BaseException:
        card.close()
        raise
