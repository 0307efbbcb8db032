"""The error tree of Ordo. Every error raised on purpose is an ``OrdoError``.

    OrdoError
    ├── ConfigError                a setting is missing or invalid (key, value, expected)
    ├── ValidationError            bad input: a field, its value, what was expected
    │   ├── InvalidIdentifier      NIR, RPPS, CIP13, prescription ID... with the reason
    │   └── ImportRefused          a drug import refused as a whole, nothing written
    │                              (too few rows, too many specialties removed, a bomb)
    ├── DraftInvalid               a JSON draft with every problem and its JSON path
    ├── AlertsRefused              the prescribing checks refuse the signature: an alert
    │                              not acknowledged, not overridden, or not overridable
    ├── TableError                 a clinical table of the checks is malformed (file, line)
    ├── StateError                 an illegal state transition of a prescription
    ├── StoreError                 the local database refused an operation, or cannot be
    │   │                          opened (missing, read-only or corrupt data directory)
    │   ├── AuditChainBroken       the audit chain does not verify (names the entry)
    │   └── TamperedPrescription   a signed prescription whose stored body no longer
    │                              matches its signature: never printed, shown or sent
    ├── CardError                  the CPS card or the reader (drivers translate pyscard)
    │   ├── WrongPin               the card refused the PIN (tries left)
    │   ├── PinBlocked             the PIN is blocked
    │   ├── CardRemoved            the card or the reader service went away
    │   ├── StatusWordError        an unexpected ISO 7816 status word (drivers.card.apdu)
    │   └── AuthRefused            login or session operation refused, French reason
    │                              (appliance.services.auth)
    ├── Forbidden                  the session's role or identity does not allow this
    │   └── AmRequired             the prescriber's N° AM must be entered once
    ├── CertificateRejected        a certificate fails its chain, dates, usage or CRL
    │                              (appliance.services.trust)
    ├── InvalidOrder               a scanned QR payload that does not verify
    │                              (appliance.services.signature)
    ├── PrinterError               the printer is offline, out of paper, or refused the job
    │   ├── PrinterUnavailable     the job stays queued and is retried
    │   │                          (appliance.ports.printer: it carries a PrinterState)
    │   └── QrTooLarge             the QR payload does not fit the medium
    │                              (drivers.printer.layout)
    ├── PkiError                   the TEST PKI or its SoftHSM2 tokens cannot be made (one
    │                              exists already, a tool is missing or failed)
    ├── RegistryError              the national registry (or its link) failed
    │   ├── RegistryUnavailable    transient: network, TLS, timeout, 408, 5xx; retry later
    │   │   └── RegistryThrottled  429 (or 503) with Retry-After: wait ``retry_after`` s
    │   ├── RegistryMisconfigured  the link is set up wrong (URL, certificates, a server
    │   │                          that is not the FHIR registry): pause, name the key
    │   └── RegistryRejected       permanent: this record will never be accepted as is
    │       └── RegistryConflict   409: same ID, other content; or cancel after dispensing
    ├── SyncAlreadyRunning         another sync process holds the data directory's lock
    ├── MailError                  the MSSanté link (or one of its mail servers) failed
    │   ├── MailUnavailable        transient: network, TLS, 4xx, login refused; retry later
    │   └── MailRejected           permanent (5xx): this message will never be accepted
    ├── DocumentRefused            a received attachment (ZIP, CDA, PDF) that is hostile or
    │                              unreadable, with the reason
    └── CdaNotApplicable           an order with no line an eP-MED-DM document carries
                                   (acts only: the pharmacy gets the PDF alone)

Every class is defined here except the five that carry data of their own module (named
above with it). Adapters translate library errors at the boundary (``raise CardError(...)
from exc``; ``OSError`` and ``sqlite3.Error`` from the data directory become
``StoreError``); the CLI (``appliance.cli``) turns every ``OrdoError`` into one French
line and an exit code from one table, the kiosk into a French message on screen.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from appliance.domain import Json


class OrdoError(Exception):
    """Root of every error Ordo raises on purpose."""


class ConfigError(OrdoError):
    """A setting is invalid: names the key, the value and what is expected."""

    def __init__(self, key: str, value: object, expected: str) -> None:
        self.key, self.value, self.expected = key, value, expected
        super().__init__(f"réglage invalide {key} = {value!r} : attendu {expected}")


class ValidationError(OrdoError):
    """Bad input: names the field, the value and what is expected (``message``: the
    sentence for the user, when the default one does not fit)."""

    def __init__(self, field: str, value: object, expected: str, *,
                 message: str | None = None) -> None:
        self.field, self.value, self.expected = field, value, expected
        super().__init__(message or f"{field}: {value!r} is invalid: {expected}")


class InvalidIdentifier(ValidationError):
    """An identifier (NIR, RPPS, CIP13, prescription ID...) fails its format or key."""


class ImportRefused(ValidationError):
    """A referential import refused as a whole before anything was written; ``french``
    says why and what to do (the user's message starts with "import refusé");
    ``removed``/``previous``: the specialties it would have removed, of how many."""

    def __init__(self, field: str, value: object, expected: str, french: str, *,
                 removed: int = 0, previous: int = 0) -> None:
        super().__init__(field, value, expected,
                         message=f"import refusé, référentiel inchangé : {french}")
        self.french, self.removed, self.previous = french, removed, previous


@dataclass(frozen=True)
class DraftProblem:
    """One problem of a JSON draft, with its JSON path (``$.lines[1].posology``)."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


class DraftInvalid(OrdoError):
    """A draft with one or more problems, each with its JSON path."""

    def __init__(self, problems: Sequence[DraftProblem]) -> None:
        self.problems = list(problems)
        super().__init__("; ".join(str(p) for p in self.problems))


class AlertsRefused(OrdoError):
    """The prescribing-safety checks refuse the signature: an ``important`` alert not
    acknowledged, a ``bloquant`` one not overridden, or one that cannot be overridden (a
    hospital-only drug). ``obstacles``: one French line per alert in the way; ``alerts``:
    every alert of the draft, as plain values (code, key, severity, message, source, line,
    overridable)."""

    def __init__(self, obstacles: Sequence[str],
                 alerts: Sequence[Mapping[str, Json]] = ()) -> None:
        self.obstacles = list(obstacles)
        self.alerts = [dict(a) for a in alerts]
        super().__init__(f"signature refusée par les contrôles de prescription : "
                         f"{len(self.obstacles)} alerte(s) à traiter")


class TableError(OrdoError):
    """A clinical table of the checks is malformed (a packaging or editing mistake)."""


class StateError(OrdoError):
    """A transition that the prescription state machine forbids."""


class StoreError(OrdoError):
    """The local store refused an operation, or cannot be opened."""


class TamperedPrescription(StoreError):
    """A signed prescription altered in the database after signing: its stored body no
    longer matches the signed hash or the signature (``appliance.integrity``)."""

    def __init__(self, prescription_id: str, detail: str) -> None:
        self.prescription_id, self.detail = prescription_id, detail
        super().__init__(f"ordonnance {prescription_id} modifiée dans la base après sa "
                         f"signature ({detail}) : refusée, ni imprimée, ni affichée, ni "
                         "envoyée ; prévenez le responsable de l'appareil")


class AuditChainBroken(StoreError):
    """The audit chain does not verify; ``seq`` is the first broken entry."""

    def __init__(self, seq: int, reason: str) -> None:
        self.seq, self.reason = seq, reason
        super().__init__(f"audit entry {seq}: {reason}")


class CardError(OrdoError):
    """The CPS card or the reader failed or refused."""


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


class Forbidden(OrdoError):
    """The session's role or identity does not allow this; the message is French."""


class AmRequired(Forbidden):
    """The prescriber has no N° AM on record: it must be entered once before signing."""

    def __init__(self, id_nat_ps: str) -> None:
        self.id_nat_ps = id_nat_ps
        super().__init__("N° AM du prescripteur inconnu : saisissez-le une fois "
                         f"(ordo practitioners set-am {id_nat_ps} NUMERO)")


class PrinterError(OrdoError):
    """The printer is unreachable, out of paper, or refused the job."""


class PkiError(OrdoError):
    """The test PKI (``drivers.card.pki``) or its SoftHSM2 tokens (``drivers.card.softhsm``)
    cannot be made: one exists already, SoftHSM2 is missing, a tool failed. Test material
    only; the message is French."""


class RegistryError(OrdoError):
    """The registry link failed or the registry refused."""


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


class RegistryMisconfigured(RegistryError):
    """The registry link is set up wrong, whatever the record: a URL that does not lead to
    the FHIR base (404 there, a redirection, an answer that is not FHIR), a certificate
    refused (401/403, TLS name mismatch, unknown or expired authority). Nothing is
    quarantined: the queue waits until the setting ``key`` is fixed. ``detail`` is French."""

    def __init__(self, key: str, detail: str, *, status: int | None = None) -> None:
        self.key, self.detail, self.status = key, detail, status
        super().__init__(f"registre mal configuré : {detail} (réglage {key})")


class RegistryRejected(RegistryError):
    """The registry refused this record for good (a 4xx other than 408 and 429);
    ``reason`` is the registry's own explanation (OperationOutcome diagnostics)."""

    def __init__(self, status: int, reason: str) -> None:
        self.status, self.reason = status, reason
        super().__init__(f"registry refused ({status}): {reason}")


class RegistryConflict(RegistryRejected):
    """HTTP 409: the registry holds other content under this prescription ID, or refuses
    to cancel a prescription that was already dispensed."""


class SyncAlreadyRunning(OrdoError):
    """Another sync process holds the data directory's sync lock."""


class MailError(OrdoError):
    """The MSSanté link failed or one of its mail servers refused."""


class MailUnavailable(MailError):
    """The mail server could not take the message now (network, TLS, 4xx, the
    establishment's login refused): every message waits and is retried later."""


class MailRejected(MailError):
    """The mail server refused this message for good (5xx); ``code`` and the server's
    text."""

    def __init__(self, code: int, reason: str) -> None:
        self.code, self.reason = code, reason
        super().__init__(f"refus définitif du serveur ({code}) : {reason}")


class DocumentRefused(OrdoError):
    """A received attachment that is not read: a ZIP bomb, a path traversal, a DTD or an
    XML entity, a document that is not a readable CDA or PDF; the message says why."""


class CdaNotApplicable(OrdoError):
    """The order has no medication or device line: no eP-MED-DM document for it."""
