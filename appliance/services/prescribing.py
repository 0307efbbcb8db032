"""Use cases of prescribing, shared by the kiosk and the headless path (``ordo prescribe``).

- ``register_login``: the card holder goes into ``practitioners`` (names from the card; the
  N° AM, which the card does not carry, is kept from the table: ``set_am``).
- ``new_draft`` / ``update_draft`` / ``drafts_of`` / ``discard_draft``: a draft is saved as
  it is typed (the editor's half-typed line too, in ``meta`` under ``kiosk.form.<id>``), so
  after a lock or a crash the same physician gets it back.
- ``sign``: the domain transition, the card signature of the QR part
  (``appliance.services.signature``), then the prescription, its outbox row, its first print
  job, its message to the partner pharmacy (``mail``), the signed bytes and the audit entry
  in one transaction (``record_signature``).
  A draft mixing secure lines (``appliance.domain.secure``: narcotics and the like, printed
  on secure paper only) with others becomes two orders: the secure lines get their own ID,
  the card signs both, and both are stored in that one transaction (audited
  ``prescription.split``): all of it or none of it.
- ``cancel``: the prescriber who signed it, before any dispensation, with a reason: the state
  change, an outbox ``cancel`` row and the audit entry in one transaction; print jobs still
  queued for it are dropped.
- ``reprint``: a DUPLICATA job for a physician, a nurse or establishment staff.
- renewing a treatment and stopping a line: ``appliance.services.treatment`` (signing a
  renewal there takes the lines it renewed out of the current treatment).
- ``prescribe`` (headless) and ``import_drafts`` (``ordo drafts import``) start from a draft
  validated by ``appliance.services.drafts.parse_draft``.
- The prescribing-safety checks (``appliance.services.checks``): ``sign`` and ``prescribe``
  take the ``Decision`` on the draft's alerts; one that does not allow signing is refused
  (``AlertsRefused``) before the card signs, and the alerts the prescription is signed with,
  what the physician did with each and the audit entry of the acknowledgements and overrides
  are written in the signing transaction. ``import_drafts`` keeps each draft's alerts for its
  review in the kiosk; ``discard_draft`` removes them with the draft.

Roles are enforced here, whatever the UI shows: only a prescriber's open session creates,
signs or cancels; a nurse or staff session only reprints. A locked session does nothing,
except that the draft it was typing may still be saved by its owner (no typed word is lost
when the card is pulled).

Every use case takes a unit of work (``appliance.ports.uow``) and writes in one ``with uow:``
block. Prescription IDs come from ``IdAllocator``: ``PrescriptionIdGenerator`` whose
``last_ms`` is read from and written back to ``meta`` inside the block that stores the
draft, so IDs stay monotonic across restarts and across processes sharing the store.
"""

from __future__ import annotations

import json
import logging
import secrets
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Protocol, TypedDict

from appliance.domain import Json, JsonObject
from appliance.domain.ids import validate_am
from appliance.domain.people import ROLE_LABELS_FR, Practitioner, Resident, Role
from appliance.domain.prescription import Line, Prescription, State
from appliance.domain.prescription_id import PrescriptionIdGenerator
from appliance.errors import AmRequired, Forbidden, StateError, StoreError, ValidationError
from appliance.ports.clock import utc_now
from appliance.ports.uow import UnitOfWork
from appliance.services.drafts import Draft, SpecialtyFacts

if TYPE_CHECKING:
    from appliance.services.checks import Alert, Decision
    from appliance.services.mailbox import MailPolicy

# The alerts of a draft as the checks find them, read in the caller's block.
DraftChecker = Callable[[UnitOfWork, Draft], "Sequence[Alert]"]

log = logging.getLogger(__name__)

ID_META_KEY = "prescription_id.last_ms"
FORM_META_PREFIX = "kiosk.form."
RENEWAL_META_PREFIX = "renewal."  # the lines a draft renews (appliance.services.treatment)
MAX_REASON = 500
REPRINT_ROLES = frozenset({Role.PRESCRIBER, Role.NURSE, Role.STAFF})
CANCELLED_BEFORE_PRINT = "ordonnance annulée avant impression"

__all__ = ["AmRequired", "Forbidden"]  # raised here, defined in appliance.errors


class Holder(Protocol):
    # Read-only: the card's holder (``CardHolder``) is a frozen record.
    @property
    def id_nat_ps(self) -> str: ...
    @property
    def family_name(self) -> str: ...
    @property
    def given_name(self) -> str: ...
    @property
    def profession(self) -> str: ...

    def as_practitioner(self, role: Role, am: str | None = None,
                        finess: str | None = None) -> Practitioner: ...


class Operator(Protocol):
    """What the use cases need from an authenticated session (``PractitionerSession``)."""

    role: Role
    locked: bool

    @property
    def practitioner(self) -> Holder: ...

    @property
    def can_sign(self) -> bool: ...

    @property
    def certificate_der(self) -> bytes: ...

    def touch(self) -> None: ...

    def sign(self, data: bytes) -> bytes: ...


if TYPE_CHECKING:  # the type checker proves that the card session is an operator
    from appliance.services.auth import PractitionerSession

    _IMPLEMENTS: type[Operator] = PractitionerSession


def _signing_time(now: datetime | None) -> datetime:
    # Whole seconds: the QR carries the issue time, the store keeps milliseconds.
    return (now or utc_now()).astimezone(UTC).replace(microsecond=0)


# -- IDs -------------------------------------------------------------------------------------
class IdAllocator:
    """Prescription IDs, monotonic across restarts: ``new(uow)`` runs inside the caller's
    ``with uow:`` block and persists the generator's ``last_ms`` in ``meta``."""

    def __init__(self, clock_ms: Callable[[], int] | None = None,
                 random_bytes: Callable[[int], bytes] = secrets.token_bytes) -> None:
        self.generator = PrescriptionIdGenerator(
            clock_ms or (lambda: time.time_ns() // 1_000_000), random_bytes)

    def new(self, uow: UnitOfWork) -> str:
        stored = int(uow.meta.get(ID_META_KEY) or 0)
        if stored > self.generator.last_ms:
            self.generator.last_ms = stored
        pid = self.generator.new()
        uow.meta.set(ID_META_KEY, str(self.generator.last_ms))
        return pid


# -- sessions and roles ---------------------------------------------------------------------
def _actor(session: Operator) -> str:
    return session.practitioner.id_nat_ps


def _require(session: Operator, roles: Iterable[Role], what: str) -> None:
    """An open session (not locked, not idle) with one of ``roles``."""
    if session.role not in set(roles):
        elided = "d'" if what[:1] in "aeiouéè" else "de "
        raise Forbidden(f"Votre profil ({ROLE_LABELS_FR[session.role]}) ne permet pas "
                        f"{elided}{what}.")
    session.touch()  # AuthRefused('locked') when locked or idle


def record_transition(uow: UnitOfWork, prescription: Prescription, *, actor: str) -> None:
    """Persist a state change (already validated by the domain) and audit it, in the
    caller's block."""
    before = uow.prescriptions.save_state(prescription)
    uow.audit.append(actor=actor, action=f"prescription.{prescription.state.value}",
                     subject=prescription.id, details={"from": before.value})


def register_login(uow: UnitOfWork, session: Operator) -> Practitioner | None:
    """Record the card holder (physician or nurse) in ``practitioners``, keeping the N° AM
    and FINESS already on record; returns it (None for staff: a CPE identifier is not an
    idNat_PS and is not recorded)."""
    if session.role is Role.STAFF:
        return None
    holder = session.practitioner
    with uow:
        known = uow.practitioners.get(holder.id_nat_ps)
        practitioner = _with_contact(holder.as_practitioner(
            session.role, am=known.am if known else None,
            finess=known.finess if known else None), known)
        if known != practitioner:
            practitioner.check_input()  # the card's holder name, new input
            uow.practitioners.upsert(practitioner)
            uow.commit()
    return practitioner


def _with_contact(practitioner: Practitioner, known: Practitioner | None) -> Practitioner:
    """The qualification, phone and e-mail on record (the card carries none of them)."""
    if known is None:
        return practitioner
    return replace(practitioner, qualification=known.qualification, phone=known.phone,
                   email=known.email)


class _Contact(TypedDict, total=False):
    """What ``set_contact`` changes (None clears a field)."""

    qualification: str | None
    phone: str | None
    email: str | None


def set_contact(uow: UnitOfWork, id_nat_ps: str, *, actor: str,
                qualification: str | None = None, phone: str | None = None,
                email: str | None = None) -> Practitioner:
    """Record what a prescriber's orders print beside the card's identity (qualification,
    phone, e-mail; ``""`` clears one); audited."""
    changes: _Contact = {}
    if qualification is not None:
        changes["qualification"] = qualification or None
    if phone is not None:
        changes["phone"] = phone or None
    if email is not None:
        changes["email"] = email or None
    with uow:
        known = uow.practitioners.get(id_nat_ps)
        if known is None:
            raise StoreError(f"praticien inconnu : {id_nat_ps} (connectez-vous une fois avec "
                             "sa carte, ou ordo practitioners add)")
        updated = replace(known, **changes)  # validated (phone in +33 form) by Practitioner
        uow.practitioners.upsert(updated)
        uow.audit.append(actor=actor, action="practitioner.contact_set", subject=id_nat_ps,
                         details={"fields": sorted(changes)})
        uow.commit()
    return updated


def needs_am(uow: UnitOfWork, session: Operator) -> bool:
    """A prescriber without a N° AM on record (the kiosk asks for it once)."""
    if session.role is not Role.PRESCRIBER:
        return False
    known = uow.practitioners.get(_actor(session))
    return known is None or not known.am


def set_am(uow: UnitOfWork, id_nat_ps: str, am: str, *, actor: str) -> Practitioner:
    """Set the N° AM of a known prescriber; audited."""
    value = validate_am(am, field="am")
    with uow:
        known = uow.practitioners.get(id_nat_ps)
        if known is None:
            raise StoreError(f"praticien inconnu : {id_nat_ps} (connectez-vous une fois avec "
                             "sa carte, ou ordo practitioners add)")
        if known.role is not Role.PRESCRIBER:
            raise Forbidden(f"{id_nat_ps} n'est pas prescripteur : pas de N° AM à enregistrer")
        updated = replace(known, am=value)
        uow.practitioners.upsert(updated)
        uow.audit.append(actor=actor, action="practitioner.am_set", subject=id_nat_ps)
        uow.commit()
    return updated


def add_practitioner(uow: UnitOfWork, practitioner: Practitioner, *, actor: str) -> None:
    """Record a practitioner before their first login (``ordo practitioners add``)."""
    practitioner.check_input()
    with uow:
        uow.practitioners.upsert(practitioner)
        uow.audit.append(actor=actor, action="practitioner.added",
                         subject=practitioner.id_nat_ps,
                         details={"role": practitioner.role.value})
        uow.commit()


def list_practitioners(uow: UnitOfWork) -> list[Practitioner]:
    return uow.practitioners.all()


def _on_record(uow: UnitOfWork, session: Operator) -> Practitioner | None:
    """The session's prescriber as on record (with the N° AM), or None if not recorded."""
    known = uow.practitioners.get(_actor(session))
    if known is not None and known.role is Role.PRESCRIBER:
        return _with_contact(session.practitioner.as_practitioner(
            Role.PRESCRIBER, am=known.am, finess=known.finess), known)
    return None


def _prescriber(uow: UnitOfWork, session: Operator) -> Practitioner:
    """The session's prescriber as on record, recorded if new: inside the caller's block."""
    known = _on_record(uow, session)
    if known is not None:
        return known
    practitioner = session.practitioner.as_practitioner(Role.PRESCRIBER)
    practitioner.check_input()
    uow.practitioners.upsert(practitioner)
    return practitioner


# -- drafts ----------------------------------------------------------------------------------
def check_new_lines(lines: Iterable[Line]) -> None:
    """Lines as they enter a draft (kiosk, JSON draft, import): no control or bidirectional
    character in their texts. Lines already stored are not checked again."""
    for line in lines:
        line.check_input()


def _resident(uow: UnitOfWork, ins: str) -> Resident:
    resident = uow.residents.get(ins)
    if resident is None:
        raise StoreError("résident inconnu")
    if not resident.active:
        raise StateError("ce résident n'est plus actif : pas de nouvelle ordonnance")
    return resident


def _create(uow: UnitOfWork, ids: IdAllocator, doctor: Practitioner, resident: Resident,
            lines: Iterable[Line], now: datetime, actor: str,
            action: str, weight_kg: Decimal | None = None) -> Prescription:
    lines = tuple(lines)
    check_new_lines(lines)
    draft = Prescription(id=ids.new(uow), prescriber=doctor, resident=resident, created_at=now,
                         lines=tuple(lines), weight_kg=weight_kg)
    uow.prescriptions.save_draft(draft)
    uow.audit.append(actor=actor, action=action, subject=draft.id,
                     details={"lines": len(draft.lines)})
    return draft


def new_draft(uow: UnitOfWork, session: Operator, resident_ins: str, *, ids: IdAllocator,
              now: datetime | None = None) -> Prescription:
    """An empty draft for a resident, stored at once (physician only)."""
    _require(session, {Role.PRESCRIBER}, "rédiger une ordonnance")
    with uow:
        doctor = _prescriber(uow, session)
        resident = _resident(uow, resident_ins)
        draft = _create(uow, ids, doctor, resident, (), now or utc_now(), doctor.id_nat_ps,
                        "prescription.draft_created")
        uow.commit()
    return draft


def _own_draft(uow: UnitOfWork, session: Operator, prescription_id: str) -> Prescription:
    p = uow.prescriptions.get(prescription_id)
    if p is None:
        raise StoreError(f"ordonnance inconnue : {prescription_id}")
    if p.prescriber.id_nat_ps != _actor(session):
        raise Forbidden("Cette ordonnance a été commencée par un autre prescripteur.")
    if p.state is not State.DRAFT:
        raise StateError(f"l'ordonnance {prescription_id} est déjà "
                         f"{p.state.value} : elle ne se modifie plus")
    return p


def _still_draft(uow: UnitOfWork, prescription_id: str) -> None:
    """In the signing transaction: the draft ``_own_draft`` read before the card signed
    is still a draft (its state only: a draft's prescriber never changes, see
    ``update_draft``, and what was signed is the body read then)."""
    state = uow.prescriptions.state_of(prescription_id)
    if state is None:
        raise StoreError(f"ordonnance inconnue : {prescription_id}")
    if state is not State.DRAFT:
        raise StateError(f"l'ordonnance {prescription_id} est déjà "
                         f"{state.value} : elle ne se modifie plus")


def update_draft(uow: UnitOfWork, session: Operator, draft: Prescription, *,
                 form: Mapping[str, Json] | None = None) -> Prescription:
    """Save the draft as typed (lines, weight) and the editor's half-typed line (``form``).

    The owner's session may have locked meanwhile: what was typed before is still saved."""
    if session.role is not Role.PRESCRIBER:
        raise Forbidden("Seul un médecin modifie une ordonnance.")
    with uow:
        stored = _own_draft(uow, session, draft.id)
        check_new_lines(line for line in draft.lines if line not in stored.lines)
        updated = replace(stored, lines=tuple(draft.lines), weight_kg=draft.weight_kg)
        uow.prescriptions.save_draft(updated)
        key = FORM_META_PREFIX + draft.id
        if form:
            uow.meta.set(key, json.dumps(dict(form), ensure_ascii=False))
        else:
            uow.meta.delete(key)
        uow.commit()
    return updated


def draft_form(uow: UnitOfWork, prescription_id: str) -> JsonObject | None:
    """The editor's half-typed line saved with a draft, if any."""
    raw = uow.meta.get(FORM_META_PREFIX + prescription_id)
    if raw is None:
        return None
    try:
        value = json.loads(raw)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def drafts_of(uow: UnitOfWork, id_nat_ps: str) -> list[Prescription]:
    """A physician's drafts, most recently touched first."""
    return uow.prescriptions.drafts_of(id_nat_ps)


def discard_draft(uow: UnitOfWork, session: Operator, prescription_id: str) -> None:
    """Delete one of the physician's drafts (never a signed prescription); audited."""
    if session.role is not Role.PRESCRIBER:
        raise Forbidden("Seul un médecin supprime un brouillon.")
    with uow:
        _own_draft(uow, session, prescription_id)
        uow.prescriptions.delete_draft(prescription_id)
        uow.prescription_alerts.delete(prescription_id)
        uow.meta.delete(FORM_META_PREFIX + prescription_id)
        uow.meta.delete(RENEWAL_META_PREFIX + prescription_id)
        uow.audit.append(actor=_actor(session), action="prescription.draft_discarded",
                         subject=prescription_id)
        uow.commit()


# -- signing ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class SignResult:
    prescription: Prescription
    print_job: int
    qr_payload: str  # the signed payload (``[print] qr = "signed"``)
    also: tuple[SignResult, ...] = ()  # the secure order split from this one

    @property
    def secure(self) -> bool:
        """Printed as a PDF on secure paper, not on the receipt."""
        return self.prescription.secure

    @property
    def orders(self) -> tuple[SignResult, ...]:
        return (self, *self.also)


def _split_secure(uow: UnitOfWork, draft: Prescription, ids: IdAllocator
                  ) -> tuple[Prescription, Prescription]:
    """The ordinary and the secure part of a mixed draft, in memory: the ordinary lines
    keep the draft's ID, the secure ones get a new ID. Only the ID generator's floor is
    written here (its own short block: the ID must exist before the card signs it); the
    parts are stored by ``sign``'s one transaction."""
    from appliance.domain.secure import split_lines

    other, secure = split_lines(draft.lines, [line.secure for line in draft.lines])
    with uow:
        secure_id = ids.new(uow)
        uow.commit()
    return (replace(draft, lines=tuple(other)),
            replace(draft, id=secure_id, lines=tuple(secure)))


def sign(uow: UnitOfWork, session: Operator, prescription_id: str, *,
         now: datetime | None = None, ids: IdAllocator | None = None,
         mail: MailPolicy | None = None, decision: Decision | None = None) -> SignResult:
    """Sign a draft with the session's card and store it with its outbox row, print job,
    signed bytes, message to the partner pharmacy (``mail``: the composition root's
    ``App.mail_policy``) and audit entry, in one transaction. The card signs before the write
    transaction opens (the card is slow; the lock is not held meanwhile); the transaction
    checks again that the prescription is still this draft.

    A draft mixing secure lines with others becomes two orders (see the module doc), both
    signed by the card first, then stored together in that one transaction (with the
    ``prescription.split`` audit entry): after a crash there is either the mixed draft,
    untouched, or both orders with their outbox rows and print jobs, never one without the
    other. The result carries the secure order in ``also``.

    ``decision``: the physician's acknowledgements and overrides of the draft's alerts
    (``appliance.services.checks.decide``); one that does not allow signing raises
    ``AlertsRefused`` before anything is signed, and the alerts go with the prescription."""
    if decision is not None and not decision.may_sign:
        raise decision.refusal()
    _require(session, {Role.PRESCRIBER}, "signer une ordonnance")
    if not session.can_sign:
        raise Forbidden("Cette carte ne porte pas de clé de signature.")
    draft = _own_draft(uow, session, prescription_id)
    doctor = _on_record(uow, session)
    if doctor is None:
        with uow:
            doctor = _prescriber(uow, session)
            uow.commit()
    if not doctor.am:
        raise AmRequired(doctor.id_nat_ps)
    draft = replace(draft, prescriber=doctor)
    draft.check_signable()
    parts = [draft]
    if draft.mixes_secure:
        parts = list(_split_secure(uow, draft, ids or IdAllocator()))
    # Imported here: cryptography is loaded by the card login before any signing, and the
    # kiosk's lock screen, which imports this module, does not wait for it.
    from appliance.services.signature import record_signature, sign_prescription
    from appliance.services.treatment import record_renewal

    at = _signing_time(now)
    signed = [sign_prescription(part, session, at) for part in parts]
    with uow:
        _still_draft(uow, prescription_id)
        if len(signed) > 1:
            secure = signed[1].prescription
            uow.audit.append(actor=doctor.id_nat_ps, action="prescription.split",
                             subject=prescription_id,
                             details={"secure": secure.id, "lines": len(secure.lines)})
        jobs = [record_signature(uow, one, actor=doctor.id_nat_ps, mail=mail) for one in signed]
        if decision is not None:
            from appliance.services.checks import record_review

            record_review(uow, prescription_id, decision, actor=doctor.id_nat_ps,
                          at=signed[0].prescription.signed_at or at)
        uow.meta.delete(FORM_META_PREFIX + prescription_id)
        record_renewal(uow, prescription_id, [one.prescription for one in signed],
                       actor=doctor.id_nat_ps, at=signed[0].prescription.signed_at or at)
        uow.commit()
    results = [SignResult(one.prescription, job, one.payload.encode())
               for one, job in zip(signed, jobs, strict=True)]
    for result in results:
        log.info("prescription signed and queued", extra={"fields": {
            "prescription": result.prescription.id, "job": result.print_job,
            "lines": len(result.prescription.lines)}})
    return replace(results[0], also=tuple(results[1:]))


def prescribe(uow: UnitOfWork, session: Operator, draft: Draft, *, ids: IdAllocator,
              now: datetime | None = None, mail: MailPolicy | None = None,
              decision: Decision | None = None) -> SignResult:
    """The headless path: a validated draft becomes a signed, queued prescription (with
    ``decision`` on its alerts, as ``sign``)."""
    if decision is not None and not decision.may_sign:
        raise decision.refusal()
    _require(session, {Role.PRESCRIBER}, "signer une ordonnance")
    if not session.can_sign:
        raise Forbidden("Cette carte ne porte pas de clé de signature.")
    with uow:
        doctor = _prescriber(uow, session)
        if not doctor.am:
            raise AmRequired(doctor.id_nat_ps)
        resident = _resident(uow, draft.resident.ins.value)
        created = _create(uow, ids, doctor, resident, draft.lines, now or utc_now(),
                          doctor.id_nat_ps, "prescription.draft_created", draft.weight_kg)
        uow.commit()
    return sign(uow, session, created.id, now=now, ids=ids, mail=mail, decision=decision)


def import_drafts(uow: UnitOfWork, drafts: Iterable[tuple[str, Draft]], *, ids: IdAllocator,
                  actor: str, now: datetime | None = None,
                  checker: DraftChecker | None = None) -> list[Prescription]:
    """Create drafts from the DUI for their prescribers (``(idNat_PS, draft)``), all or
    none; each physician reviews and signs them in the kiosk. ``checker`` gives each
    draft's alerts, kept with it (``PrescriptionAlerts``, read by
    ``Views.prescription_alerts``) for the review screen."""
    made = []
    with uow:
        for id_nat_ps, draft in list(drafts):
            doctor = uow.practitioners.get(id_nat_ps)
            if doctor is None:
                raise ValidationError("prescriber.idNat_PS", id_nat_ps,
                                      "a prescriber known to this appliance (first login or "
                                      "ordo practitioners add)")
            if doctor.role is not Role.PRESCRIBER:
                raise ValidationError("prescriber.idNat_PS", id_nat_ps, "a prescriber")
            resident = uow.residents.get(draft.resident.ins.value)
            if resident is None or not resident.active:
                raise ValidationError("resident", None, "an active resident")
            created = _create(uow, ids, doctor, resident, draft.lines, now or utc_now(),
                              actor, "prescription.draft_imported", draft.weight_kg)
            if checker is not None:
                from appliance.services.checks import keep_draft_alerts

                keep_draft_alerts(uow, created.id, checker(uow, draft), now or utc_now())
            made.append(created)
        uow.commit()
    return made


# -- after signing ---------------------------------------------------------------------------
def cancel(uow: UnitOfWork, session: Operator, prescription_id: str, reason: str, *,
           now: datetime | None = None) -> Prescription:
    """Cancel a signed prescription before any dispensation (its prescriber only): the
    state change, an outbox ``cancel`` row and the audit entry in one transaction; print
    jobs still queued for it are dropped."""
    _require(session, {Role.PRESCRIBER}, "annuler une ordonnance")
    reason = " ".join((reason or "").split())
    if not reason:
        raise ValidationError("motif", reason, "le motif de l'annulation")
    if len(reason) > MAX_REASON:
        raise ValidationError("motif", reason[:40], f"au plus {MAX_REASON} caractères")
    when = now or utc_now()
    with uow:
        p = uow.prescriptions.get(prescription_id)
        if p is None:
            raise StoreError(f"ordonnance inconnue : {prescription_id}")
        if p.prescriber.id_nat_ps != _actor(session):
            raise Forbidden("Seul le prescripteur de cette ordonnance peut l'annuler.")
        if p.state is State.DRAFT:
            raise StateError("un brouillon ne s'annule pas : supprimez-le")
        if uow.dispensations.count_for(prescription_id) or not p.can_become(State.CANCELLED):
            raise StateError("ordonnance déjà délivrée (tout ou partie) : elle ne peut plus "
                             "être annulée")
        cancelled = p.transition(State.CANCELLED, when, reason)
        record_transition(uow, cancelled, actor=_actor(session))
        uow.outbox.add(prescription_id, "cancel", when)
        uow.print_jobs.drop_queued(prescription_id, CANCELLED_BEFORE_PRINT)
        uow.commit()
    log.info("prescription cancelled", extra={"fields": {"prescription": prescription_id}})
    return cancelled


def reprint(uow: UnitOfWork, session: Operator, prescription_id: str, *,
            now: datetime | None = None) -> int:
    """Queue a DUPLICATA (physician, nurse or staff with an open session)."""
    _require(session, REPRINT_ROLES, "réimprimer une ordonnance")
    from appliance.services import printing

    return printing.request_reprint(uow, prescription_id, actor=_actor(session),
                                    role=session.role.value, at=now)


# -- the drug referential as the draft parser sees it -----------------------------------------
class _Drug(Protocol):
    @property
    def cis(self) -> str: ...

    @property
    def name(self) -> str: ...


class DrugReferential(Protocol):
    """What the draft parser reads of the referential (``Referential``)."""

    def by_cip13(self, code: str) -> _Drug | None: ...

    def by_cis(self, code: str) -> Sequence[_Drug]: ...

    def facts(self, cis: str) -> SpecialtyFacts: ...


class ReferentialDrugs:
    """``DrugLookup`` (``appliance.services.drafts``) over the BDPM referential."""

    def __init__(self, referential: DrugReferential) -> None:
        self.referential = referential

    def label_for_cip13(self, cip13: str) -> tuple[str, str] | None:
        found = self.referential.by_cip13(cip13)
        return (found.cis, found.name) if found is not None else None

    def label_for_cis(self, cis: str) -> str | None:
        found = self.referential.by_cis(cis)
        return found[0].name if found else None

    def facts(self, cis: str) -> SpecialtyFacts:
        """Common name and conditions (the referential's ``facts``)."""
        return self.referential.facts(cis)
