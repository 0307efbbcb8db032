"""An in-memory unit of work (``appliance.ports.uow.UnitOfWork``) for unit tests of the use
cases: the same rules as the SQLite one where the use cases rely on them (writes only inside
``with uow:``, a block left without ``commit()`` leaves nothing, a draft never overwrites a
signed prescription, an outbox cancel waits for its create, a print job is leased), no SQL.

``uow.committed`` counts the commits; ``uow.state`` is everything stored, as plain values.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from types import TracebackType
from typing import Any, Self

from appliance.domain.drug_facts import Allergy
from appliance.domain.people import Practitioner, Resident, fold
from appliance.domain.prescription import MedicationLine, Prescription, State
from appliance.domain.treatment import line_span
from appliance.errors import AuditChainBroken, StoreError
from appliance.ports.clock import iso
from appliance.ports.registry import Dispensation, RegistryReceipt
from appliance.ports.uow import (
    ALERT_STATUSES,
    MATCHED_BY,
    AuditAnchor,
    AuditEntry,
    DispensationAlert,
    DraftRow,
    ExternalPrescription,
    FileEntry,
    HistoryRow,
    MailRecord,
    MailStatus,
    OutboxRecord,
    PrintJob,
    ReceivedPrescription,
    SignedRow,
    StoppedLine,
    StoredAlert,
    SyncKeys,
    SyncStatus,
    Trail,
    Treatment,
    TreatmentLine,
)


@dataclass
class _Row:
    prescription: Prescription
    updated_at: str
    signature: bytes | None = None
    signer_cert: bytes | None = None
    signed_payload: bytes | None = None
    receipt: str | None = None


@dataclass
class _Outbox:
    seq: int
    prescription_id: str
    kind: str
    created_at: str
    status: str = "pending"
    attempts: int = 0
    next_attempt_at: str | None = None
    last_error: str | None = None
    receipt: str | None = None


@dataclass
class _Mail:
    seq: int
    prescription_id: str
    recipient: str
    created_at: str
    message_id: str | None = None
    status: str = "pending"
    attempts: int = 0
    next_attempt_at: str | None = None
    last_error: str | None = None
    sent_at: str | None = None

    def record(self) -> MailRecord:
        return MailRecord(self.seq, self.prescription_id, self.recipient, self.message_id,
                          self.attempts)


@dataclass
class _Job:
    id: int
    prescription_id: str
    kind: str
    requested_by: str
    created_at: datetime
    status: str = "queued"
    attempts: int = 0
    last_error: str | None = None
    done_at: datetime | None = None
    claimed_by: str | None = None
    claimed_until: datetime | None = None

    def record(self) -> PrintJob:
        return PrintJob(self.id, self.prescription_id, self.kind, self.requested_by,
                        self.created_at, self.status, self.attempts, self.last_error,
                        self.done_at)


@dataclass
class State_:
    residents: dict[str, Resident] = field(default_factory=dict)
    practitioners: dict[str, Practitioner] = field(default_factory=dict)
    prescriptions: dict[str, _Row] = field(default_factory=dict)
    outbox: list[_Outbox] = field(default_factory=list)
    certificates: dict[str, tuple[int, bytes]] = field(default_factory=dict)
    jobs: list[_Job] = field(default_factory=list)
    meta: dict[str, str] = field(default_factory=dict)
    audit: list[AuditEntry] = field(default_factory=list)
    dispensations: dict[str, tuple[Dispensation, datetime]] = field(default_factory=dict)
    mails: list[_Mail] = field(default_factory=list)
    received: list[tuple[int, ReceivedPrescription]] = field(default_factory=list)
    allergies: list[tuple[str, Allergy, str]] = field(default_factory=list)
    alerts: dict[str, list[StoredAlert]] = field(default_factory=dict)
    missing_guards: list[str] = field(default_factory=list)  # audit triggers a test dropped
    stopped: dict[tuple[str, int], StoppedLine] = field(default_factory=dict)


class _Part:
    def __init__(self, uow: FakeUnitOfWork) -> None:
        self._uow = uow

    @property
    def _s(self) -> State_:
        return self._uow.state

    def _write(self, what: str) -> None:
        if not self._uow.in_block:
            raise StoreError(f"{what} needs a write transaction (with uow: ... uow.commit())")


class FakeResidents(_Part):
    def get(self, ins: str) -> Resident | None:
        return self._s.residents.get(ins)

    def search(self, query: str = "", active_only: bool = True) -> list[Resident]:
        words = fold(query).split()
        found = [r for r in self._s.residents.values()
                 if (r.active or not active_only) and all(w in r.search_key for w in words)]
        return sorted(found, key=lambda r: (r.used_name or r.birth_name, r.first_names))

    def born_on(self, birth_date: date) -> list[Resident]:
        return sorted((r for r in self._s.residents.values() if r.birth_date == birth_date),
                      key=lambda r: r.ins.value)

    def upsert(self, residents: Iterable[Resident]) -> tuple[int, int]:
        self._write("residents")
        created = updated = 0
        for r in residents:
            if r.ins.value in self._s.residents:
                updated += 1
            else:
                created += 1
            self._s.residents[r.ins.value] = r
        return created, updated

    def import_lines(self, rows: Iterable[tuple[int, Resident]],
                     duplicate: Callable[[int, int], None]) -> tuple[int, int]:
        seen: dict[str, int] = {}

        def first_seen() -> Iterable[Resident]:
            for line, resident in rows:
                if resident.ins.value in seen:
                    duplicate(line, seen[resident.ins.value])
                else:
                    seen[resident.ins.value] = line
                    yield resident

        return self.upsert(first_seen())


class FakePractitioners(_Part):
    def get(self, id_nat_ps: str) -> Practitioner | None:
        return self._s.practitioners.get(id_nat_ps)

    def all(self) -> list[Practitioner]:
        return sorted(self._s.practitioners.values(), key=lambda p: (p.last_name, p.first_name))

    def upsert(self, practitioner: Practitioner) -> None:
        self._write("practitioners")
        self._s.practitioners[practitioner.id_nat_ps] = practitioner


class FakePrescriptions(_Part):
    def get(self, prescription_id: str) -> Prescription | None:
        row = self._s.prescriptions.get(prescription_id)
        return None if row is None else row.prescription

    def state_of(self, prescription_id: str) -> State | None:
        p = self.get(prescription_id)
        return None if p is None else p.state

    def drafts_of(self, id_nat_ps: str) -> list[Prescription]:
        rows = [r for r in self._s.prescriptions.values()
                if r.prescription.state is State.DRAFT
                and r.prescription.prescriber.id_nat_ps == id_nat_ps]
        return [r.prescription for r in sorted(rows, key=lambda r: r.updated_at, reverse=True)]

    def of_resident(self, ins: str) -> list[Prescription]:
        found = [r.prescription for r in self._s.prescriptions.values()
                 if r.prescription.resident.ins.value == ins]
        return sorted(found, key=lambda p: p.created_at, reverse=True)

    def signed_rows(self, prescription_ids: Iterable[str]) -> dict[str, SignedRow]:
        rows = {}
        for pid in prescription_ids:
            row = self._s.prescriptions.get(pid)
            if row is not None:
                rows[pid] = SignedRow(pid, json.dumps(row.prescription.to_dict()),
                                      row.signature, row.signer_cert, row.signed_payload)
        return rows

    def cancel_reason(self, prescription_id: str) -> str:
        p = self.get(prescription_id)
        return (p.cancel_reason or "") if p else ""

    def _refuse_unless_draft(self, p: Prescription) -> None:
        existing = self.state_of(p.id)
        if existing is not None and existing is not State.DRAFT:
            raise StoreError(f"prescription {p.id} is already {existing.value}")

    def save_draft(self, draft: Prescription) -> None:
        self._write("prescriptions")
        if draft.state is not State.DRAFT:
            raise StoreError(f"prescription {draft.id} is {draft.state.value}, not a draft")
        self._refuse_unless_draft(draft)
        self._s.prescriptions[draft.id] = _Row(draft, self._uow.tick())

    def delete_draft(self, prescription_id: str) -> bool:
        self._write("prescriptions")
        if self.state_of(prescription_id) is State.DRAFT:
            del self._s.prescriptions[prescription_id]
            return True
        return False

    def add_signed(self, prescription: Prescription, *, signature: bytes, signer_cert: bytes,
                   signed_payload: bytes | None) -> None:
        self._write("prescriptions")
        if prescription.state is not State.SIGNED:
            raise StoreError(f"prescription {prescription.id} is not signed")
        self._refuse_unless_draft(prescription)
        self._s.prescriptions[prescription.id] = _Row(prescription, self._uow.tick(),
                                                      signature, signer_cert, signed_payload)

    def save_state(self, prescription: Prescription) -> State:
        self._write("prescriptions")
        row = self._s.prescriptions.get(prescription.id)
        if row is None:
            raise StoreError(f"unknown prescription {prescription.id}")
        before = row.prescription.state
        row.prescription, row.updated_at = prescription, self._uow.tick()
        return before

    def set_registry_receipt(self, prescription_id: str, receipt_id: str) -> None:
        self._write("prescriptions")
        self._s.prescriptions[prescription_id].receipt = receipt_id

    def record_receipts(self, receipts: Mapping[str, str], at: datetime, *,
                        promote: tuple[State, State]) -> set[str]:
        self._write("prescriptions")
        moved = set()
        for pid, receipt in receipts.items():
            row = self._s.prescriptions.get(pid)
            if row is None:
                continue
            row.receipt = receipt
            if row.prescription.state is promote[0]:
                row.prescription = row.prescription.transition(promote[1], at)
                row.updated_at = self._uow.tick()
                moved.add(pid)
        return moved


class FakeCertificates(_Part):
    def intern(self, der: bytes) -> int:
        self._write("certificates")
        known = self._s.certificates
        return known.setdefault(hashlib.sha256(der).hexdigest(), (len(known) + 1, der))[0]

    def get(self, cert_id: int) -> bytes | None:
        return next((der for i, der in self._s.certificates.values() if i == cert_id), None)

    def count(self) -> int:
        return len(self._s.certificates)


class FakeOutbox(_Part):
    def add(self, prescription_id: str, kind: str, at: datetime) -> int:
        self._write("outbox")
        if any(o.prescription_id == prescription_id and o.kind == kind for o in self._s.outbox):
            raise StoreError(f"UNIQUE constraint failed: outbox {prescription_id} {kind}")
        seq = len(self._s.outbox) + 1
        self._s.outbox.append(_Outbox(seq, prescription_id, kind, iso(at)))
        return seq

    def _eligible(self) -> list[_Outbox]:
        creates = {o.prescription_id for o in self._s.outbox
                   if o.kind == "create" and o.status == "pending"}
        return [o for o in self._s.outbox if o.status == "pending"
                and (o.kind == "create" or o.prescription_id not in creates)]

    def due(self, now: datetime, limit: int, after: int = 0) -> list[OutboxRecord]:
        due = [o for o in self._eligible() if o.seq > after
               and (o.next_attempt_at is None or o.next_attempt_at <= iso(now))]
        return [OutboxRecord(o.seq, o.prescription_id, o.kind, o.attempts, o.created_at)
                for o in due[:limit]]

    def next_due_at(self) -> datetime | None:
        eligible = self._eligible()
        if not eligible:
            return None
        earliest = min(o.next_attempt_at or "" for o in eligible)
        return datetime.fromisoformat(earliest) if earliest else datetime.min.replace(tzinfo=UTC)

    def pending_count(self) -> int:
        return sum(o.status == "pending" for o in self._s.outbox)

    def create_status(self, prescription_id: str) -> str | None:
        return next((o.status for o in self._s.outbox
                     if o.prescription_id == prescription_id and o.kind == "create"), None)

    def _pending(self, seq: int) -> _Outbox | None:
        return next((o for o in self._s.outbox if o.seq == seq and o.status == "pending"), None)

    def acknowledge(self, record: OutboxRecord, receipt: RegistryReceipt,
                    at: datetime) -> bool:
        self._write("outbox")
        o = self._pending(record.seq)
        if o is None:
            return False
        o.status, o.attempts, o.receipt = "acknowledged", o.attempts + 1, receipt.receipt_id
        o.last_error = o.next_attempt_at = None
        return True

    def acknowledge_many(self, items: Sequence[tuple[OutboxRecord, RegistryReceipt]],
                         at: datetime) -> set[int]:
        return {record.seq for record, receipt in items
                if self.acknowledge(record, receipt, at)}

    def retry(self, record: OutboxRecord, error: str, at: datetime | None) -> None:
        self._write("outbox")
        o = self._pending(record.seq)
        if o is not None:
            o.attempts, o.last_error = o.attempts + 1, error[:500]
            o.next_attempt_at = None if at is None else iso(at)

    def retry_many(self, items: Sequence[tuple[OutboxRecord, str, datetime | None]]) -> None:
        for record, error, at in items:
            self.retry(record, error, at)

    def quarantine(self, record: OutboxRecord, reason: str) -> bool:
        self._write("outbox")
        o = self._pending(record.seq)
        if o is None:
            return False
        o.status, o.attempts, o.last_error = "quarantined", o.attempts + 1, reason[:1000]
        o.next_attempt_at = None
        return True

    def release(self, seq: int) -> OutboxRecord | None:
        self._write("outbox")
        o = next((o for o in self._s.outbox if o.seq == seq and o.status == "quarantined"),
                 None)
        if o is None:
            return None
        o.status, o.next_attempt_at = "pending", None
        return OutboxRecord(o.seq, o.prescription_id, o.kind, o.attempts, o.created_at)


class FakePrintJobs(_Part):
    def add(self, prescription_id: str, kind: str, requested_by: str, at: datetime) -> int:
        self._write("print_jobs")
        job = _Job(len(self._s.jobs) + 1, prescription_id, kind, requested_by, at)
        self._s.jobs.append(job)
        return job.id

    def get(self, job_id: int) -> PrintJob | None:
        return next((j.record() for j in self._s.jobs if j.id == job_id), None)

    def list(self, prescription_id: str | None = None,
             status: str | None = None) -> list[PrintJob]:
        return [j.record() for j in self._s.jobs
                if prescription_id in (None, j.prescription_id) and status in (None, j.status)]

    def counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for j in self._s.jobs:
            counts[j.status] = counts.get(j.status, 0) + 1
        return counts

    def claim(self, worker: str, now: datetime, until: datetime) -> PrintJob | None:
        self._write("print_jobs")
        for j in self._s.jobs:
            if j.status == "queued" and (j.claimed_until is None or j.claimed_until < now):
                j.claimed_by, j.claimed_until = worker, until
                return j.record()
        return None

    def _job(self, job_id: int) -> _Job:
        return next(j for j in self._s.jobs if j.id == job_id)

    def release(self, job_id: int, error: str) -> None:
        self._write("print_jobs")
        j = self._job(job_id)
        j.attempts, j.last_error, j.claimed_by, j.claimed_until = j.attempts + 1, error, None, None

    def done(self, job_id: int, at: datetime) -> None:
        self._write("print_jobs")
        j = self._job(job_id)
        j.status, j.attempts, j.last_error, j.done_at = "done", j.attempts + 1, None, at
        j.claimed_by = j.claimed_until = None

    def fail(self, job_id: int, error: str) -> None:
        self._write("print_jobs")
        j = self._job(job_id)
        j.status, j.attempts, j.last_error = "failed", j.attempts + 1, error
        j.claimed_by = j.claimed_until = None

    def drop_queued(self, prescription_id: str, reason: str) -> int:
        self._write("print_jobs")
        dropped = 0
        for j in self._s.jobs:
            if j.prescription_id == prescription_id and j.status == "queued":
                j.status, j.last_error, j.claimed_by, j.claimed_until = "failed", reason, None, None
                dropped += 1
        return dropped


class FakeMeta(_Part):
    def get(self, key: str) -> str | None:
        return self._s.meta.get(key)

    def with_prefix(self, prefix: str) -> dict[str, str]:
        return {k: v for k, v in self._s.meta.items() if k.startswith(prefix)}

    def set(self, key: str, value: str) -> None:
        self._write("meta")
        self._s.meta[key] = value

    def delete(self, key: str) -> None:
        self._write("meta")
        self._s.meta.pop(key, None)


class FakeAudit(_Part):
    """A chain of SHA-256 over the JSON of each entry (the SQLite one uses RFC 8785)."""

    def append(self, *, actor: str, action: str, subject: str = "",
               details: Mapping[str, Any] | None = None, at: datetime | None = None) -> int:
        self._write("audit.append")
        prev = self._s.audit[-1].hash if self._s.audit else "0" * 64
        seq = len(self._s.audit) + 1
        when = iso(at or self._uow.now())
        body = json.dumps([seq, when, actor, action, subject, dict(details or {})],
                          sort_keys=True, default=str)
        digest = hashlib.sha256((prev + body).encode()).hexdigest()
        self._s.audit.append(AuditEntry(seq, when, actor, action, subject,
                                        dict(details or {}), prev, digest))
        return seq

    def append_many(self, items: Sequence[tuple[str, str, str, Mapping[str, Any] | None]],
                    at: datetime | None = None) -> list[int]:
        return [self.append(actor=actor, action=action, subject=subject, details=details,
                            at=at) for actor, action, subject, details in items]

    def head(self) -> tuple[int, str]:
        last = self._s.audit[-1] if self._s.audit else None
        return (last.seq, last.hash) if last else (0, "0" * 64)

    def hash_at(self, seq: int) -> str | None:
        return next((e.hash for e in self._s.audit if e.seq == seq), None)

    def entries(self, since: int = 0) -> list[AuditEntry]:
        return [e for e in self._s.audit if e.seq > since]

    def verify(self) -> int:
        prev = "0" * 64
        for e in self._s.audit:
            if e.prev_hash != prev:
                raise AuditChainBroken(e.seq, "does not follow the previous entry")
            prev = e.hash
        return len(self._s.audit)

    def guard_problems(self) -> list[str]:
        return [f"trigger {name} is missing" for name in self._s.missing_guards]

    def restore_guards(self, *, actor: str) -> dict[str, list[str]]:
        self._write("audit.restore_guards")
        if not self._s.missing_guards:
            return {}
        done = {"created": list(self._s.missing_guards), "removed": []}
        self._s.missing_guards.clear()
        self.append(actor=actor, action="audit.guards_restored", details=done)
        return done

    def anchor(self) -> AuditAnchor | None:
        return None


class FakeDispensations(_Part):
    def add(self, dispensation: Dispensation, resource: Mapping[str, Any],
            received_at: datetime) -> bool:
        self._write("dispensations")
        if dispensation.registry_id in self._s.dispensations:
            return False
        self._s.dispensations[dispensation.registry_id] = (dispensation, received_at)
        return True

    def of(self, prescription_id: str) -> list[Dispensation]:
        found = [d for d, _ in self._s.dispensations.values()
                 if d.prescription_id == prescription_id]
        return sorted(found, key=lambda d: (d.handed_over_at, d.registry_id))

    def complete_lines(self, prescription_id: str) -> set[int]:
        return {d.line for d in self.of(prescription_id) if d.complete}

    def count_for(self, prescription_id: str) -> int:
        return len(self.of(prescription_id))


class FakeMailOutbox(_Part):
    def add(self, prescription_id: str, recipient: str, at: datetime) -> int:
        self._write("mail_outbox")
        for m in self._s.mails:
            if (m.prescription_id, m.recipient) == (prescription_id, recipient):
                return m.seq
        seq = len(self._s.mails) + 1
        self._s.mails.append(_Mail(seq, prescription_id, recipient, iso(at)))
        return seq

    def due(self, now: datetime, limit: int, after: int = 0) -> list[MailRecord]:
        return [m.record() for m in self._s.mails if m.status == "pending" and m.seq > after
                and (m.next_attempt_at is None or m.next_attempt_at <= iso(now))][:limit]

    def pending_count(self) -> int:
        return sum(m.status == "pending" for m in self._s.mails)

    def _mail(self, seq: int) -> _Mail | None:
        return next((m for m in self._s.mails if m.seq == seq), None)

    def set_message_id(self, seq: int, message_id: str) -> str:
        self._write("mail_outbox")
        m = self._mail(seq)
        if m is None:
            raise StoreError(f"unknown mail {seq}")
        if m.message_id is None:
            m.message_id = message_id
        return m.message_id

    def _pending(self, seq: int) -> _Mail | None:
        m = self._mail(seq)
        return m if m is not None and m.status == "pending" else None

    def sent(self, record: MailRecord, at: datetime) -> bool:
        self._write("mail_outbox")
        m = self._pending(record.seq)
        if m is None:
            return False
        m.status, m.sent_at, m.attempts = "sent", iso(at), m.attempts + 1
        m.last_error = m.next_attempt_at = None
        return True

    def retry(self, record: MailRecord, error: str, at: datetime) -> None:
        self._write("mail_outbox")
        m = self._pending(record.seq)
        if m is not None:
            m.attempts, m.last_error, m.next_attempt_at = m.attempts + 1, error[:500], iso(at)

    def quarantine(self, record: MailRecord, reason: str) -> bool:
        self._write("mail_outbox")
        m = self._pending(record.seq)
        if m is None:
            return False
        m.status, m.attempts, m.last_error = "quarantined", m.attempts + 1, reason[:500]
        m.next_attempt_at = None
        return True

    def release(self, seq: int) -> MailRecord | None:
        self._write("mail_outbox")
        m = self._mail(seq)
        if m is None or m.status != "quarantined":
            return None
        record = m.record()
        m.status, m.next_attempt_at, m.attempts = "pending", None, 0
        return record


class FakeExternalPrescriptions(_Part):
    def known(self, message_id: str, document_id: str | None = None) -> bool:
        return any(r.message_id == message_id
                   or (document_id is not None and r.document_id == document_id)
                   for _, r in self._s.received)

    def add(self, received: ReceivedPrescription) -> int | None:
        self._write("external_prescriptions")
        if received.matched_by not in MATCHED_BY:
            raise StoreError(f"unknown match {received.matched_by!r}")
        if self.known(received.message_id, received.document_id):
            return None
        ext_id = len(self._s.received) + 1
        self._s.received.append((ext_id, received))
        return ext_id

    def attach(self, external_id: int, resident_ins: str) -> bool:
        self._write("external_prescriptions")
        for i, (ext_id, r) in enumerate(self._s.received):
            if ext_id == external_id:
                self._s.received[i] = (ext_id, replace(r, resident_ins=resident_ins,
                                                       matched_by="hand"))
                return True
        return False

    def documents(self, external_id: int) -> tuple[bytes | None, bytes | None] | None:
        return next(((r.cda, r.pdf) for ext_id, r in self._s.received
                     if ext_id == external_id), None)


class FakeAllergies(_Part):
    def add(self, ins: str, allergy: Allergy, *, recorded_by: str) -> int | None:
        self._write("allergies")
        if ins not in self._s.residents:
            raise StoreError("FOREIGN KEY constraint failed: allergies.resident_ins")
        if any(i == ins and a.substance_code == allergy.substance_code
               for i, a, _ in self._s.allergies):
            return None
        record = len(self._s.allergies) + 1
        self._s.allergies.append((ins, replace(allergy, id=record), recorded_by))
        return record

    def of_resident(self, ins: str) -> list[Allergy]:
        found = [a for i, a, _ in self._s.allergies if i == ins]
        return sorted(found, key=lambda a: (a.recorded_on, a.id or 0))


class FakePrescriptionAlerts(_Part):
    def replace(self, prescription_id: str, alerts: Iterable[StoredAlert]) -> None:
        self._write("prescription_alerts")
        kept = list(alerts)
        for a in kept:
            if a.status not in ALERT_STATUSES or a.prescription_id != prescription_id:
                raise StoreError(f"alert {a.key}: status {a.status!r}")
        self._s.alerts[prescription_id] = kept

    def delete(self, prescription_id: str) -> int:
        self._write("prescription_alerts")
        return len(self._s.alerts.pop(prescription_id, []))


class FakeStoppedLines(_Part):
    def add(self, stopped: StoppedLine) -> bool:
        self._write("stopped_lines")
        if stopped.prescription_id not in self._s.prescriptions:
            raise StoreError("FOREIGN KEY constraint failed: stopped_lines.prescription_id")
        key = (stopped.prescription_id, stopped.line)
        if key in self._s.stopped:
            return False
        self._s.stopped[key] = stopped
        return True

    def of(self, prescription_id: str) -> list[StoppedLine]:
        return sorted((s for (pid, _), s in self._s.stopped.items() if pid == prescription_id),
                      key=lambda s: s.line)

    def remove(self, prescription_id: str, line: int) -> bool:
        self._write("stopped_lines")
        found = self._s.stopped.get((prescription_id, line))
        if found is None or found.replaced_by is not None:
            return False
        del self._s.stopped[(prescription_id, line)]
        return True


class FakeViews(_Part):
    def _signed_lines(self, ins: str) -> list[TreatmentLine]:
        running = {State.SIGNED, State.REGISTERED, State.PARTIALLY_DISPENSED, State.DISPENSED}
        found = [p for p in self._uow.prescriptions.of_resident(ins)
                 if p.state in running and p.signed_at is not None]
        found.sort(key=lambda p: (p.signed_at, p.id), reverse=True)
        out = []
        for p in found:
            signed_on = p.signed_at.astimezone(UTC).date() if p.signed_at else date.min
            for index, line in enumerate(p.lines):
                if not isinstance(line, MedicationLine):
                    continue
                renewals = getattr(line, "renewals", None)
                renewals = p.renewals if renewals is None else renewals
                span = line_span(line.posology, signed_on, renewals)
                out.append(TreatmentLine(
                    p.id, index, line.label, line.cis, line.cip13, line.posology,
                    line.posology.describe(), signed_on, span.end, span.open_ended,
                    renewals, p.prescriber.id_nat_ps, p.prescriber.display_name, p.state))
        return out

    def current_treatment(self, ins: str, today: date) -> list[TreatmentLine]:
        return [t for t in self._signed_lines(ins) if t.signed_on <= today <= t.end
                and (t.prescription_id, t.line) not in self._s.stopped]

    def treatment(self, ins: str, today: date, ended_days: int = 90) -> Treatment:
        since = today - timedelta(days=ended_days)
        current, taken_out, ended = [], [], []
        for t in self._signed_lines(ins):
            if t.signed_on > today or t.end < since:
                continue
            record = self._s.stopped.get((t.prescription_id, t.line))
            if record is not None:
                taken_out.append((t, record))
            elif t.end >= today:
                current.append(t)
            else:
                ended.append(t)
        taken_out.sort(key=lambda pair: pair[1].stopped_at, reverse=True)
        ended.sort(key=lambda t: t.end, reverse=True)
        return Treatment(current, taken_out, ended)

    def prescription_alerts(self, prescription_id: str) -> list[StoredAlert]:
        return list(self._s.alerts.get(prescription_id, []))

    def history(self, ins: str) -> list[HistoryRow]:
        return [HistoryRow(p.id, p.state, p.created_at, p.signed_at, p.prescriber.id_nat_ps)
                for p in self._uow.prescriptions.of_resident(ins)]

    def resident_file(self, ins: str) -> list[FileEntry]:
        entries = []
        for row in self.history(ins):
            entry = FileEntry(row)
            create = next((o for o in self._s.outbox
                           if o.prescription_id == row.id and o.kind == "create"), None)
            if create is not None and create.status != "acknowledged":
                entry.registry, entry.registry_error = create.status, create.last_error
            if row.state is not State.DRAFT:
                entry.dispensations = self._uow.dispensations.of(row.id)
            entries.append(entry)
        return entries

    def trail(self, prescription_id: str) -> Trail:
        create = next((o for o in self._s.outbox
                       if o.prescription_id == prescription_id and o.kind == "create"), None)
        return Trail(create.status if create else None, create.last_error if create else None,
                     [(j.kind, j.status, j.last_error) for j in self._s.jobs
                      if j.prescription_id == prescription_id])

    def sync_status(self, now: datetime) -> SyncStatus:
        pending = [o for o in self._s.outbox if o.status == "pending"]
        quarantined = [o for o in self._s.outbox if o.status == "quarantined"]
        oldest = min((o.created_at for o in pending), default=None)
        age = (now - datetime.fromisoformat(oldest)).total_seconds() if oldest else None
        meta = self._s.meta
        return SyncStatus(
            queue_depth=len(pending), pending_creates=sum(o.kind == "create" for o in pending),
            pending_cancels=sum(o.kind == "cancel" for o in pending), oldest_pending_at=oldest,
            oldest_pending_age_s=None if age is None else round(max(age, 0.0), 3),
            next_attempt_at=(min(o.next_attempt_at or "" for o in pending) or iso(now))
            if pending else None,
            acknowledged=sum(o.status == "acknowledged" for o in self._s.outbox),
            quarantined=len(quarantined), last_success_at=meta.get(SyncKeys.LAST_SUCCESS),
            last_error=meta.get(SyncKeys.LAST_ERROR),
            last_error_at=meta.get(SyncKeys.LAST_ERROR_AT),
            last_push_at=meta.get(SyncKeys.LAST_PUSH), last_pull_at=meta.get(SyncKeys.LAST_PULL),
            dispense_cursor=meta.get(SyncKeys.CURSOR),
            dispensations=len(self._s.dispensations),
            quarantined_records=[{"seq": o.seq, "prescription_id": o.prescription_id,
                                  "kind": o.kind, "attempts": o.attempts,
                                  "created_at": o.created_at, "reason": o.last_error}
                                 for o in quarantined],
            link=meta.get(SyncKeys.LINK), link_detail=meta.get(SyncKeys.LINK_DETAIL),
            link_key=meta.get(SyncKeys.LINK_KEY) or None,
            link_since=meta.get(SyncKeys.LINK_SINCE))

    def drafts(self, id_nat_ps: str | None = None) -> list[DraftRow]:
        rows = [r for r in self._s.prescriptions.values() if r.prescription.state is State.DRAFT
                and id_nat_ps in (None, r.prescription.prescriber.id_nat_ps)]
        return [DraftRow(r.prescription.id, r.prescription.prescriber.id_nat_ps,
                         iso(r.prescription.created_at), r.updated_at)
                for r in sorted(rows, key=lambda r: r.updated_at, reverse=True)]

    def dispensation_alerts(self, limit: int = 20) -> list[DispensationAlert]:
        alerts = []
        for d, _received in sorted(self._s.dispensations.values(), key=lambda x: x[1],
                                  reverse=True):
            if not d.substituted and d.complete:
                continue
            p = self._uow.prescriptions.get(d.prescription_id)
            r = p.resident if p else None
            alerts.append(DispensationAlert(
                d.prescription_id, d.line, d.product_label, d.substituted, d.substitution_type,
                d.substitution_reason, d.complete, iso(d.handed_over_at),
                r.room if r else None, r.birth_name if r else None,
                r.used_name if r else None, r.first_names if r else None, d.product_code))
        return alerts[:limit]

    def latest_registered(self) -> str | None:
        found = [p for p in (r.prescription for r in self._s.prescriptions.values())
                 if p.state is State.REGISTERED]
        found.sort(key=lambda p: p.signed_at or p.created_at, reverse=True)
        return found[0].id if found else None

    def mail_status(self) -> MailStatus:
        mails = self._s.mails
        errors = [m.last_error for m in mails if m.status == "pending" and m.last_error]
        return MailStatus(
            pending=sum(m.status == "pending" for m in mails),
            sent=sum(m.status == "sent" for m in mails),
            quarantined=sum(m.status == "quarantined" for m in mails),
            last_error=errors[-1] if errors else None,
            quarantined_records=[{"seq": m.seq, "prescription_id": m.prescription_id,
                                  "recipient": m.recipient, "attempts": m.attempts,
                                  "reason": m.last_error}
                                 for m in mails if m.status == "quarantined"])

    def external_prescriptions(self, ins: str | None = None, *, unmatched: bool = False,
                               limit: int = 200) -> list[ExternalPrescription]:
        rows = [(ext_id, r) for ext_id, r in self._s.received
                if (r.resident_ins == ins if ins is not None
                    else r.resident_ins is None if unmatched else True)]
        rows.sort(key=lambda x: (x[1].received_at, x[0]), reverse=ins is not None or not unmatched)
        return [ExternalPrescription(
            ext_id, r.message_id, r.document_id, r.resident_ins, r.matched_by, r.sender,
            r.author, r.author_id, r.issued_at, r.received_at, r.lines, r.cda is not None,
            r.pdf is not None, r.patient) for ext_id, r in rows[:limit]]

    def unmatched_count(self) -> int:
        return sum(r.resident_ins is None for _, r in self._s.received)


class FakeUnitOfWork:
    """``appliance.ports.uow.UnitOfWork`` in memory (see the module docstring)."""

    def __init__(self, state: State_ | None = None, *,
                 now: datetime = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)) -> None:
        self.state = state or State_()
        self.committed = 0
        self.closed = False
        self._clock = now
        self._ticks = 0
        self._saved: list[State_] = []
        self._done: list[bool] = []
        self.residents = FakeResidents(self)
        self.practitioners = FakePractitioners(self)
        self.prescriptions = FakePrescriptions(self)
        self.certificates = FakeCertificates(self)
        self.outbox = FakeOutbox(self)
        self.print_jobs = FakePrintJobs(self)
        self.meta = FakeMeta(self)
        self.audit = FakeAudit(self)
        self.dispensations = FakeDispensations(self)
        self.mail_outbox = FakeMailOutbox(self)
        self.external_prescriptions = FakeExternalPrescriptions(self)
        self.allergies = FakeAllergies(self)
        self.prescription_alerts = FakePrescriptionAlerts(self)
        self.stopped_lines = FakeStoppedLines(self)
        self.views = FakeViews(self)

    def now(self) -> datetime:
        return self._clock

    def tick(self) -> str:
        """A strictly increasing ``updated_at``."""
        self._ticks += 1
        return f"{iso(self._clock)}#{self._ticks:08d}"

    @property
    def in_block(self) -> bool:
        return bool(self._saved)

    def __enter__(self) -> Self:
        self._saved.append(copy.deepcopy(self.state))
        self._done.append(False)
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        saved, done = self._saved.pop(), self._done.pop()
        if not done:
            self.state = saved

    @contextlib.contextmanager
    def light(self) -> Iterator[Self]:
        if self._saved:
            raise StoreError("a light write block cannot be nested in another one")
        with self:
            yield self

    def commit(self) -> None:
        if not self._done or self._done[-1]:
            raise StoreError("commit() outside a 'with uow:' block (or twice)")
        self._done[-1] = True
        self.committed += 1

    def rollback(self) -> None:
        if self._done and not self._done[-1]:
            self.state = copy.deepcopy(self._saved[-1])
            self._done[-1] = True

    def housekeeping(self) -> None:
        """Nothing to tidy in memory."""

    def close(self) -> None:
        self.closed = True
