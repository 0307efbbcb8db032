"""The local database port: a unit of work with one repository per table, and the read
models of the screens.

A use case writes like this (``appliance.store.uow.SqliteUnitOfWork`` over SQLite, a fake in
memory in the unit tests)::

    with uow:                           # BEGIN IMMEDIATE
        draft = uow.prescriptions.get(pid)
        ...
        uow.prescriptions.save_draft(updated)
        uow.audit.append(actor=..., action="prescription.draft_saved", subject=pid)
        uow.commit()                    # leaving the block without commit rolls back

Writes outside ``with uow:`` are refused (``StoreError``). Reads may run outside a block
(each in its own snapshot) or inside one (the writer's view). Every table has one
repository here and one owner module in ``appliance.store`` that writes it; several writes
in one block land together or not at all. ``uow.views`` answers the screens' questions in a
few queries, whatever the number of rows.

A unit of work is one connection: give each thread its own (``close()`` it after).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import asdict, dataclass, field
from datetime import date, datetime
from types import TracebackType
from typing import TYPE_CHECKING, Protocol, Self, TypedDict

from appliance.domain import Json, JsonObject
from appliance.domain.drug_facts import Allergy
from appliance.domain.posology import FreeTextPosology, Posology
from appliance.domain.prescription import Prescription
from appliance.integrity import check_rebuilt, check_signed
from appliance.ports.clock import iso
from appliance.ports.mail import ExternalLine
from appliance.ports.registry import SignatureProof

if TYPE_CHECKING:
    from appliance.domain.people import Practitioner, Resident
    from appliance.domain.prescription import State
    from appliance.ports.registry import Dispensation, RegistryReceipt

__all__ = [
    "ALERT_STATUSES",
    "Allergies",
    "AuditAnchor",
    "AuditEntry",
    "AuditLog",
    "Certificates",
    "DispensationAlert",
    "Dispensations",
    "DraftRow",
    "ExternalPrescription",
    "ExternalPrescriptions",
    "FileEntry",
    "HistoryRow",
    "MailOutbox",
    "MailRecord",
    "MailStatus",
    "Meta",
    "Outbox",
    "OutboxRecord",
    "Practitioners",
    "PrescriptionAlerts",
    "Prescriptions",
    "PrintJob",
    "PrintJobs",
    "QuarantinedMail",
    "QuarantinedRecord",
    "ReceivedPrescription",
    "Residents",
    "Signed",
    "SignedRow",
    "StoppedLine",
    "StoppedLines",
    "StoredAlert",
    "SyncKeys",
    "SyncStatus",
    "Trail",
    "Treatment",
    "TreatmentLine",
    "UnitOfWork",
    "Views",
]


# -- records ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Signed:
    """A signed prescription as stored, with what the registry needs to check it."""

    prescription: Prescription
    proof: SignatureProof


@dataclass(frozen=True, slots=True)
class SignedRow:
    """A stored prescription with its signature columns, not parsed yet: a batch of them is
    read in one query and each parsed on its own (``load``), so that one body that no
    longer loads does not stop the others."""

    id: str
    body: str
    signature: bytes | None
    signer_cert: bytes | None
    signed_payload: bytes | None

    def load(self) -> Signed | None:
        """The signed prescription, ``None`` when it is not signed; raises the domain's
        ``ValidationError`` when the body no longer loads, ``TamperedPrescription`` when it
        is not what the signature covers (``appliance.integrity``). The signed part is the
        stored one, else the QR signed part rebuilt from the prescription (byte for byte
        what the card signed)."""
        if self.signature is None or self.signer_cert is None:
            return None
        prescription = Prescription.from_dict(json.loads(self.body))
        if self.signed_payload is None:  # the one rebuilt from the body: not stored
            signed_part, canonical = check_rebuilt(self.id, prescription, self.signature,
                                                   self.signer_cert)
        else:
            signed_part = self.signed_payload
            canonical = check_signed(self.id, prescription, signed_part, self.signature,
                                     self.signer_cert)
        return Signed(prescription, SignatureProof(signature=self.signature,
                                                   signer_cert=self.signer_cert,
                                                   signed_part=signed_part,
                                                   canonical=canonical))


@dataclass(slots=True)
class HistoryRow:
    """One line of a resident's history, read from the index without the body.

    Slotted and not frozen: a frozen dataclass sets each field through
    ``object.__setattr__`` (about 1.7 µs a row against 0.2 µs here), which was a third of
    listing 500 prescriptions. Rows are snapshots: nothing writes them back.
    """

    id: str
    state: State
    created_at: datetime
    signed_at: datetime | None
    prescriber_id: str


@dataclass(slots=True)
class FileEntry:
    """One prescription of a resident's file as the kiosk lists it: its history row, the
    registry's answer to its creation while the registry has not acknowledged it
    (``pending``, ``quarantined``; None once acknowledged: ``Trail`` says it), its print
    jobs ``(kind, status, last_error)`` in order when they were read (the list does not
    read them: ``Trail``), and what the pharmacy handed over. Slotted, and empty tuples
    rather than a new list each for the two sequences: a file makes one per prescription,
    and fewer objects mean fewer garbage collections while it loads."""

    row: HistoryRow
    registry: str | None = None
    registry_error: str | None = None
    prints: Sequence[tuple[str, str, str | None]] = ()
    dispensations: Sequence[Dispensation] = ()


@dataclass(frozen=True)
class Trail:
    """What the file shows of one prescription once it is opened, besides its body: the
    registry's answer to its creation (None for a draft) and its print jobs
    ``(kind, status, last_error)`` in order."""

    registry: str | None
    registry_error: str | None
    prints: list[tuple[str, str, str | None]]


@dataclass(frozen=True)
class OutboxRecord:
    seq: int
    prescription_id: str
    kind: str
    attempts: int
    created_at: str


@dataclass(frozen=True)
class PrintJob:
    id: int
    prescription_id: str
    kind: str  # original | duplicate
    requested_by: str
    created_at: datetime
    status: str  # queued | done | failed
    attempts: int
    last_error: str | None
    done_at: datetime | None

    def as_dict(self) -> dict[str, object]:
        return {"job": self.id, "prescription_id": self.prescription_id, "kind": self.kind,
                "requested_by": self.requested_by, "created_at": iso(self.created_at),
                "status": self.status, "attempts": self.attempts,
                "last_error": self.last_error,
                "done_at": iso(self.done_at) if self.done_at else None}


@dataclass(frozen=True)
class AuditEntry:
    seq: int
    at: str
    actor: str
    action: str
    subject: str
    details: JsonObject
    prev_hash: str
    hash: str


@dataclass(frozen=True)
class AuditAnchor:
    """Where the audit chain starts after the retention policy cut its oldest entries, and
    who says so: ``recorded_by``/``recorded_at``/``cutoff`` come from the newest
    ``retention.applied`` entry if it records this very anchor (``None`` otherwise:
    nothing on the box explains the cut, which is a broken chain)."""

    seq: int
    prev_hash: str
    recorded_by: int | None = None
    recorded_at: str | None = None
    cutoff: str | None = None

    @property
    def recorded(self) -> bool:
        return self.recorded_by is not None


@dataclass(frozen=True)
class DraftRow:
    id: str
    prescriber_id: str
    created_at: str
    updated_at: str

    def as_dict(self) -> dict[str, str]:
        return asdict(self)


@dataclass(frozen=True)
class DispensationAlert:
    """A dispensation that differs from the order (substitution or partial fill), with the
    resident's room and names, for the kiosk's alerts screen; ``product_code``: the CIP13
    handed over, when the pharmacy gave one."""

    prescription_id: str
    line_no: int
    product_label: str
    substituted: bool
    substitution_type: str | None
    substitution_reason: str | None
    complete: bool
    handed_over_at: str
    room: str | None
    birth_name: str | None
    used_name: str | None
    first_names: str | None
    product_code: str | None = None


class SyncKeys:
    """The sync bookkeeping in ``meta``: written by the sync use case, read back by
    ``Views.sync_status``."""

    PREFIX = "sync."
    CURSOR = "sync.dispense_cursor"
    LAST_SUCCESS = "sync.last_success_at"
    LAST_ERROR = "sync.last_error"
    LAST_ERROR_AT = "sync.last_error_at"
    LAST_PUSH = "sync.last_push_at"
    LAST_PULL = "sync.last_pull_at"
    LINK = "sync.link"                   # up, down or misconfigured
    LINK_DETAIL = "sync.link_detail"     # what is wrong (French)
    LINK_KEY = "sync.link_key"           # the setting to fix, when misconfigured
    LINK_SINCE = "sync.link_since"
    ANCHOR_SEQ = "sync.audit_anchor_seq"         # the audit entry the registry holds
    ANCHOR_HASH = "sync.audit_anchor_hash"
    ANCHOR_RECEIPT = "sync.audit_anchor_receipt"  # the registry's receipt of that anchor
    ANCHOR_AT = "sync.audit_anchor_at"


class QuarantinedRecord(TypedDict):
    """An outbox record the registry refused for good, as the sync screens list it."""

    seq: int
    prescription_id: str
    kind: str
    attempts: int
    created_at: str
    reason: str | None


@dataclass(frozen=True)
class SyncStatus:
    """Queue depth, oldest pending age, last success, last error, quarantined records."""

    queue_depth: int
    pending_creates: int
    pending_cancels: int
    oldest_pending_at: str | None
    oldest_pending_age_s: float | None
    next_attempt_at: str | None
    acknowledged: int
    quarantined: int
    last_success_at: str | None
    last_error: str | None
    last_error_at: str | None
    last_push_at: str | None
    last_pull_at: str | None
    dispense_cursor: str | None
    dispensations: int
    quarantined_records: list[QuarantinedRecord] = field(default_factory=list)
    link: str | None = None          # up, down, misconfigured (None: never exchanged)
    link_detail: str | None = None
    link_key: str | None = None      # the setting to fix when misconfigured
    link_since: str | None = None

    @property
    def misconfigured(self) -> bool:
        return self.link == "misconfigured"

    def to_dict(self) -> JsonObject:
        return asdict(self)


@dataclass(frozen=True)
class MailRecord:
    """A message waiting for the partner pharmacy (one per signed order)."""

    seq: int
    prescription_id: str
    recipient: str
    message_id: str | None  # fixed at the first attempt, then kept
    attempts: int


class QuarantinedMail(TypedDict):
    """A message the mail server refused for good, as the sync screens list it."""

    seq: int
    prescription_id: str
    recipient: str
    attempts: int
    reason: str | None


@dataclass(frozen=True)
class MailStatus:
    """The MSSanté mail outbox: messages by status, the last transient error, the
    quarantined ones with their reason."""

    pending: int
    sent: int
    quarantined: int
    last_error: str | None
    quarantined_records: list[QuarantinedMail] = field(default_factory=list)

    def to_dict(self) -> JsonObject:
        return asdict(self)


MATCHED_BY = ("ins", "identity", "hand", "none")


@dataclass(frozen=True)
class ReceivedPrescription:
    """A prescription received by MSSanté, to keep: the documents as received, who sent
    and wrote it, and the resident it belongs to (``matched_by`` one of ``MATCHED_BY``:
    ``ins``, ``identity`` (birth name, first name, birth date), ``hand``, or ``none`` with
    ``resident_ins`` ``None`` until someone attaches it)."""

    message_id: str
    document_id: str | None
    resident_ins: str | None
    matched_by: str
    sender: str
    author: str
    author_id: str | None
    issued_at: datetime | None
    received_at: datetime
    lines: tuple[ExternalLine, ...]
    patient: dict[str, str | None]  # the identity as the document writes it (to attach by hand)
    cda: bytes | None = field(default=None, repr=False)
    pdf: bytes | None = field(default=None, repr=False)


@dataclass(frozen=True)
class ExternalPrescription:
    """A received prescription as the kiosk and ``ordo mss received`` list it (without its
    documents)."""

    id: int
    message_id: str
    document_id: str | None
    resident_ins: str | None
    matched_by: str
    sender: str
    author: str
    author_id: str | None
    issued_at: datetime | None
    received_at: datetime
    lines: tuple[ExternalLine, ...]
    has_cda: bool
    has_pdf: bool
    patient: dict[str, str | None]

    def as_dict(self) -> JsonObject:
        return {"id": self.id, "resident_ins": self.resident_ins,
                "matched_by": self.matched_by, "author": self.author, "sender": self.sender,
                "issued_at": iso(self.issued_at) if self.issued_at else None,
                "received_at": iso(self.received_at), "has_cda": self.has_cda,
                "has_pdf": self.has_pdf, "lines": [asdict(line) for line in self.lines]}
# What the physician did with an alert: ``open`` (nothing yet: a draft's), ``acknowledged``
# (important), ``overridden`` (bloquant, with a typed reason), ``shown`` (info).
ALERT_STATUSES = ("open", "acknowledged", "overridden", "shown")


@dataclass(frozen=True)
class StoredAlert:
    """An alert of the prescribing checks kept with its prescription (``Alert`` of
    ``appliance.services.checks`` as stored): what was found when the draft was imported
    (``open``), or what it was signed with and what the physician did with it. ``line`` is
    the 0-based index of the draft line (None: the whole draft); ``reason`` the override's
    typed reason."""

    prescription_id: str
    code: str
    severity: str
    message: str
    source: str
    line: int | None
    overridable: bool
    status: str
    checked_at: str
    reason: str | None = None

    @property
    def key(self) -> str:
        return self.code if self.line is None else f"{self.code}@{self.line + 1}"

    def as_dict(self) -> JsonObject:
        return {"code": self.code, "key": self.key, "severity": self.severity,
                "message": self.message, "source": self.source, "line": self.line,
                "overridable": self.overridable, "status": self.status,
                "reason": self.reason, "checked_at": self.checked_at}


@dataclass(frozen=True)
class TreatmentLine:
    """A medication line of the resident's current treatment, as the checks read it and a
    screen shows it: the line (0-based ``line`` of its prescription), its drug, its posology
    and its wording, the day it was signed, its last day (duration × (renewals + 1); when
    the line gives no duration, ``open_ended`` and the last day of the year the
    prescription is valid for) and who prescribed it."""

    prescription_id: str
    line: int
    label: str
    cis: str | None
    cip13: str | None
    posology: Posology | FreeTextPosology
    posology_text: str
    signed_on: date
    end: date
    open_ended: bool
    renewals: int
    prescriber_id: str
    prescriber_name: str
    state: State


@dataclass(frozen=True)
class StoppedLine:
    """A signed line taken out of the resident's treatment before its end: stopped by a
    physician (with the reason typed), or replaced by a signed renewal (``replaced_by``:
    the renewal's ID). ``line`` is the 0-based index of the line in its prescription."""

    prescription_id: str
    line: int
    reason: str
    stopped_at: datetime
    stopped_by: str
    replaced_by: str | None = None


@dataclass(frozen=True)
class Treatment:
    """A resident's treatment as the resident's file shows it: the lines running on the
    day (what ``Views.current_treatment`` answers); the lines taken out before their end
    (each with its ``StoppedLine``: stopped by a physician, or replaced by a renewal), most
    recently stopped first; and the lines that ended by themselves. Stopped and ended lines
    are those whose last day is at most ``ended_days`` before the day."""

    current: list[TreatmentLine]
    stopped: list[tuple[TreatmentLine, StoppedLine]]
    ended: list[TreatmentLine]


# -- repositories ----------------------------------------------------------------------------
class Residents(Protocol):
    def get(self, ins: str) -> Resident | None: ...

    def search(self, query: str = "", active_only: bool = True) -> list[Resident]:
        """Sorted by name; ``query`` matches names or room, accents and case ignored."""
        ...

    def born_on(self, birth_date: date) -> list[Resident]:
        """Every resident born that day (active or not)."""
        ...

    def upsert(self, residents: Iterable[Resident]) -> tuple[int, int]:
        """Insert or update by INS, ``residents`` consumed as a stream; returns (created,
        updated)."""
        ...

    def import_lines(self, rows: Iterable[tuple[int, Resident]],
                     duplicate: Callable[[int, int], None]) -> tuple[int, int]:
        """Upsert the (line number, resident) rows of one file as a stream; a row whose INS
        an earlier row of the same file had is not written: ``duplicate(line, first_line)``
        is called instead. Returns (created, updated). The INS already seen are kept by
        the store, not in memory: an import of a million rows holds one at a time."""
        ...


class Practitioners(Protocol):
    def get(self, id_nat_ps: str) -> Practitioner | None: ...

    def all(self) -> list[Practitioner]:
        """By name."""
        ...

    def upsert(self, practitioner: Practitioner) -> None: ...


class Prescriptions(Protocol):
    def get(self, prescription_id: str) -> Prescription | None: ...

    def state_of(self, prescription_id: str) -> State | None: ...

    def drafts_of(self, id_nat_ps: str) -> list[Prescription]:
        """A physician's drafts, most recently touched first."""
        ...

    def of_resident(self, ins: str) -> list[Prescription]:
        """Newest first."""
        ...

    def signed_rows(self, prescription_ids: Iterable[str]) -> dict[str, SignedRow]:
        """Several prescriptions by ID in a few queries; unknown IDs are left out."""
        ...

    def cancel_reason(self, prescription_id: str) -> str: ...

    def save_draft(self, draft: Prescription) -> None:
        """Create or update a draft (refused when the ID is no longer a draft)."""
        ...

    def delete_draft(self, prescription_id: str) -> bool: ...

    def add_signed(self, prescription: Prescription, *, signature: bytes,
                   signer_cert: bytes, signed_payload: bytes | None) -> None:
        """Store a signed prescription over its draft (refused for any other state)."""
        ...

    def save_state(self, prescription: Prescription) -> State:
        """Persist a state change the domain validated; returns the previous state."""
        ...

    def set_registry_receipt(self, prescription_id: str, receipt_id: str) -> None: ...

    def record_receipts(self, receipts: Mapping[str, str], at: datetime, *,
                        promote: tuple[State, State]) -> set[str]:
        """Store the registry's receipt of each prescription (ID → receipt) and move those
        still in state ``promote[0]`` to ``promote[1]`` at ``at`` (a transition the caller
        checked with the domain); returns the IDs moved. A batch in a few statements."""
        ...


class Certificates(Protocol):
    """Signer certificates, each kept once (prescriptions refer to them)."""

    def intern(self, der: bytes) -> int:
        """The id of this DER certificate, stored if new."""
        ...

    def get(self, cert_id: int) -> bytes | None: ...

    def count(self) -> int: ...


class Outbox(Protocol):
    """What waits to go to the registry: a ``create`` per signed prescription, a ``cancel``
    per cancellation (which waits until the create is no longer pending)."""

    def add(self, prescription_id: str, kind: str, at: datetime) -> int: ...

    def due(self, now: datetime, limit: int, after: int = 0) -> list[OutboxRecord]:
        """Pending records whose time has come, oldest first, after number ``after``."""
        ...

    def next_due_at(self) -> datetime | None:
        """When the earliest eligible pending record is due (``None``: nothing pending)."""
        ...

    def pending_count(self) -> int: ...

    def create_status(self, prescription_id: str) -> str | None: ...

    def acknowledge(self, record: OutboxRecord, receipt: RegistryReceipt,
                    at: datetime) -> bool:
        """False when another process acknowledged it first (nothing written)."""
        ...

    def acknowledge_many(self, items: Sequence[tuple[OutboxRecord, RegistryReceipt]],
                         at: datetime) -> set[int]:
        """``acknowledge`` for a batch; returns the numbers of the records acknowledged
        (those another process acknowledged first are left out)."""
        ...

    def retry(self, record: OutboxRecord, error: str, at: datetime) -> None: ...

    def retry_many(self, items: Sequence[tuple[OutboxRecord, str, datetime | None]]) -> None:
        """Count a failed attempt of each ``(record, error, next time)``; a next time of
        ``None`` lets the record go as soon as the registry answers again."""
        ...

    def quarantine(self, record: OutboxRecord, reason: str) -> bool: ...

    def release(self, seq: int) -> OutboxRecord | None:
        """Put a quarantined record back in the queue; ``None`` if there is none."""
        ...


class MailOutbox(Protocol):
    """What waits to go to the partner pharmacy by MSSanté: one message per signed order,
    queued with the signature, sent once the mail server accepted it."""

    def add(self, prescription_id: str, recipient: str, at: datetime) -> int:
        """Queue the order's message; the same order to the same address keeps one row."""
        ...

    def due(self, now: datetime, limit: int, after: int = 0) -> list[MailRecord]:
        """Pending messages whose time has come, oldest first, after number ``after``."""
        ...

    def pending_count(self) -> int: ...

    def set_message_id(self, seq: int, message_id: str) -> str:
        """Fix the row's Message-ID unless it has one; returns the one that stays."""
        ...

    def sent(self, record: MailRecord, at: datetime) -> bool:
        """False when it was no longer pending (nothing written)."""
        ...

    def retry(self, record: MailRecord, error: str, at: datetime) -> None: ...

    def quarantine(self, record: MailRecord, reason: str) -> bool: ...

    def release(self, seq: int) -> MailRecord | None:
        """Put a quarantined message back in the queue; ``None`` if there is none."""
        ...


class ExternalPrescriptions(Protocol):
    """Prescriptions received from other prescribers (GPs, hospitals) by MSSanté."""

    def known(self, message_id: str, document_id: str | None = None) -> bool:
        """Whether this message, or this CDA document, was already received."""
        ...

    def add(self, received: ReceivedPrescription) -> int | None:
        """Keep it; ``None`` when it was already kept (same Message-ID or document ID)."""
        ...

    def attach(self, external_id: int, resident_ins: str) -> bool:
        """Attach it to a resident by hand; False when there is no such one."""
        ...

    def documents(self, external_id: int) -> tuple[bytes | None, bytes | None] | None:
        """Its CDA and PDF as received; ``None`` when there is no such one."""
        ...


class PrintJobs(Protocol):
    def add(self, prescription_id: str, kind: str, requested_by: str, at: datetime) -> int: ...

    def get(self, job_id: int) -> PrintJob | None: ...

    def list(self, prescription_id: str | None = None,
             status: str | None = None) -> list[PrintJob]: ...

    def counts(self) -> dict[str, int]:
        """Jobs by status."""
        ...

    def claim(self, worker: str, now: datetime, until: datetime) -> PrintJob | None:
        """Lease the oldest queued job nobody holds (or whose lease expired)."""
        ...

    def release(self, job_id: int, error: str) -> None: ...

    def done(self, job_id: int, at: datetime) -> None: ...

    def fail(self, job_id: int, error: str) -> None: ...

    def drop_queued(self, prescription_id: str, reason: str) -> int: ...


class Meta(Protocol):
    """Small named values: the ID generator's floor, sync bookkeeping, editor forms."""

    def get(self, key: str) -> str | None: ...

    def with_prefix(self, prefix: str) -> dict[str, str]: ...

    def set(self, key: str, value: str) -> None: ...

    def delete(self, key: str) -> None: ...


class AuditLog(Protocol):
    """The append-only audit chain; ``details`` never carry a PIN or a resident's
    identity."""

    def append(self, *, actor: str, action: str, subject: str = "",
               details: Mapping[str, Json] | None = None, at: datetime | None = None) -> int: ...

    def append_many(self, items: Sequence[tuple[str, str, str, Mapping[str, Json] | None]],
                    at: datetime | None = None) -> list[int]:
        """Append ``(actor, action, subject, details)`` entries in order, all at ``at``;
        returns their sequence numbers (the head read and written once)."""
        ...

    def entries(self, since: int = 0) -> list[AuditEntry]: ...

    def verify(self) -> int:
        """The number of entries, or ``AuditChainBroken`` naming the first bad one."""
        ...

    def guard_problems(self) -> list[str]:
        """What is wrong with the append-only guards (missing, altered or added triggers);
        ``[]`` when they are as created. Nothing restores them on its own."""
        ...

    def restore_guards(self, *, actor: str) -> dict[str, list[str]]:
        """Put the guards back as created, inside ``with uow:``, and record it in the chain:
        ``{"created": [...], "removed": [...]}``, or ``{}`` (no entry) when intact."""
        ...

    def anchor(self) -> AuditAnchor | None:
        """Where the chain starts after a retention cut; ``None`` if it starts at entry 1."""
        ...

    def head(self) -> tuple[int, str]:
        """The recorded head: (number of the last entry, its hash); (0, genesis) if none."""
        ...

    def hash_at(self, seq: int) -> str | None:
        """The hash stored with entry ``seq``; ``None`` when there is no such entry."""
        ...


class Dispensations(Protocol):
    def add(self, dispensation: Dispensation, resource: Mapping[str, Json],
            received_at: datetime) -> bool:
        """Store it once (by the registry's ID); False when it was already there."""
        ...

    def of(self, prescription_id: str) -> list[Dispensation]:
        """In the order they happened."""
        ...

    def complete_lines(self, prescription_id: str) -> set[int]: ...

    def count_for(self, prescription_id: str) -> int: ...


class Allergies(Protocol):
    """Residents' allergies and intolerances, one per resident and substance."""

    def add(self, ins: str, allergy: Allergy, *, recorded_by: str) -> int | None:
        """Record it; its number, or None when the resident already has this substance
        recorded (the first record, its day and source, stays)."""
        ...

    def of_resident(self, ins: str) -> list[Allergy]:
        """Oldest record first."""
        ...


class PrescriptionAlerts(Protocol):
    """The checks' alerts kept with a prescription (read back by
    ``Views.prescription_alerts``)."""

    def replace(self, prescription_id: str, alerts: Iterable[StoredAlert]) -> None:
        """The prescription's alerts become these (in this order)."""
        ...

    def delete(self, prescription_id: str) -> int: ...


class StoppedLines(Protocol):
    """Signed lines taken out of the treatment before their end (read back by
    ``Views.current_treatment``, which leaves them out, and ``Views.treatment``)."""

    def add(self, stopped: StoppedLine) -> bool:
        """Record it; False when the line was already stopped (the first record stays)."""
        ...

    def of(self, prescription_id: str) -> list[StoppedLine]:
        """In line order."""
        ...

    def remove(self, prescription_id: str, line: int) -> bool:
        """Take back a physician's stop (never a renewal's replacement); False when the
        line has no such stop."""
        ...


class Views(Protocol):
    """Read models of the screens and commands (a few queries each, never one per row)."""

    def current_treatment(self, ins: str, today: date) -> list[TreatmentLine]:
        """The medication lines of the resident's signed, not cancelled prescriptions that
        have not ended by ``today`` and were not stopped, most recently signed first."""
        ...

    def treatment(self, ins: str, today: date, ended_days: int = 90) -> Treatment:
        """The resident's current treatment with the stopped and recently ended lines."""
        ...

    def prescription_alerts(self, prescription_id: str) -> list[StoredAlert]:
        """The checks' alerts kept with a prescription (a draft's: for its review)."""
        ...

    def history(self, ins: str) -> list[HistoryRow]: ...

    def resident_file(self, ins: str) -> list[FileEntry]: ...

    def trail(self, prescription_id: str) -> Trail: ...

    def sync_status(self, now: datetime) -> SyncStatus: ...

    def drafts(self, id_nat_ps: str | None = None) -> list[DraftRow]: ...

    def dispensation_alerts(self, limit: int = 20) -> list[DispensationAlert]: ...

    def latest_registered(self) -> str | None:
        """The latest prescription the registry holds (the demo's pharmacy)."""
        ...

    def mail_status(self) -> MailStatus: ...

    def external_prescriptions(self, ins: str | None = None, *, unmatched: bool = False,
                               limit: int = 200) -> list[ExternalPrescription]:
        """Received prescriptions, newest first: a resident's (``ins``), those attached to
        nobody (``unmatched``, oldest first), or the latest ``limit`` of all."""
        ...

    def unmatched_count(self) -> int:
        """Received prescriptions attached to no resident yet (the kiosk's alert)."""
        ...


class UnitOfWork(Protocol):
    # Read-only: an adapter's repository is its own class, which implements the port's.
    @property
    def residents(self) -> Residents: ...
    @property
    def practitioners(self) -> Practitioners: ...
    @property
    def prescriptions(self) -> Prescriptions: ...
    @property
    def certificates(self) -> Certificates: ...
    @property
    def outbox(self) -> Outbox: ...
    @property
    def print_jobs(self) -> PrintJobs: ...
    @property
    def meta(self) -> Meta: ...
    @property
    def audit(self) -> AuditLog: ...
    @property
    def dispensations(self) -> Dispensations: ...
    @property
    def mail_outbox(self) -> MailOutbox: ...
    @property
    def external_prescriptions(self) -> ExternalPrescriptions: ...
    @property
    def allergies(self) -> Allergies: ...
    @property
    def prescription_alerts(self) -> PrescriptionAlerts: ...
    @property
    def stopped_lines(self) -> StoppedLines: ...
    @property
    def views(self) -> Views: ...

    def __enter__(self) -> Self: ...

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None: ...

    def commit(self) -> None: ...

    def rollback(self) -> None: ...

    def light(self) -> AbstractContextManager[Self]:
        """A write block (``with uow.light(): ... uow.commit()``) whose commit a power
        failure may undo (a crash of the process does not): for records that are written
        again anyway, such as a print job's lease, so that they do not wait for the disk.
        Not inside another block."""
        ...

    def housekeeping(self) -> None:
        """Tidy the storage (the sync service does it every hour, outside any block)."""
        ...

    def close(self) -> None: ...
