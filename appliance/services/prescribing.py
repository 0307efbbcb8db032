"""Use cases of prescribing, shared by the kiosk and the headless path (``ordo prescribe``).

- ``register_login``: the card holder goes into ``practitioners`` (names from the card; the
  N° AM, which the card does not carry, is kept from the table: ``set_am``).
- ``new_draft`` / ``update_draft`` / ``drafts_of`` / ``discard_draft``: a draft is saved as
  it is typed (the editor's half-typed line too, in ``meta`` under ``kiosk.form.<id>``), so
  after a lock or a crash the same physician gets it back.
- ``sign``: the domain transition, the card signature of the QR part
  (``appliance.services.signature``), then the prescription, its outbox row, its first print
  job, the signed bytes and the audit entry in one transaction (``record_signature``).
  A draft mixing secure lines (``appliance.domain.secure``: narcotics and the like, printed
  on secure paper only) with others is split first: the secure lines move to a new draft
  with its own ID (audited ``prescription.split``), and both are signed, two orders.
- ``cancel``: the prescriber who signed it, before any dispensation, with a reason: the state
  change, an outbox ``cancel`` row and the audit entry in one transaction; print jobs still
  queued for it are dropped.
- ``reprint``: a DUPLICATA job for a physician, a nurse or establishment staff.
- ``prescribe`` (headless) and ``import_drafts`` (``ordo drafts import``) start from a draft
  validated by ``appliance.services.drafts.parse_draft``.

Roles are enforced here, whatever the UI shows: only a prescriber's open session creates,
signs or cancels; a nurse or staff session only reprints. A locked session does nothing,
except that the draft it was typing may still be saved by its owner (no typed word is lost
when the card is pulled).

Prescription IDs come from ``IdAllocator``: ``PrescriptionIdGenerator`` whose ``last_ms``
is read from and written back to ``meta`` inside the write transaction that stores the
draft, so IDs stay monotonic across restarts and across processes sharing the store.
"""

from __future__ import annotations

import json
import logging
import secrets
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Protocol

from appliance.domain.ids import validate_am
from appliance.domain.people import Practitioner, Resident, Role
from appliance.domain.prescription import Line, Prescription, State
from appliance.domain.prescription_id import PrescriptionIdGenerator
from appliance.errors import OrdoError, StateError, StoreError, ValidationError
from appliance.services import printing
from appliance.services.drafts import Draft
from appliance.store import audit, repositories
from appliance.store.db import Store

if TYPE_CHECKING:
    import sqlite_utils

log = logging.getLogger(__name__)

ID_META_KEY = repositories.ID_FLOOR_KEY
FORM_META_PREFIX = "kiosk.form."
MAX_REASON = 500
REPRINT_ROLES = frozenset({Role.PRESCRIBER, Role.NURSE, Role.STAFF})


class Forbidden(OrdoError):
    """The session's role or identity does not allow this; the message is French."""


class AmRequired(OrdoError):
    """The prescriber has no N° AM on record: it must be entered once before signing."""

    def __init__(self, id_nat_ps: str) -> None:
        self.id_nat_ps = id_nat_ps
        super().__init__("N° AM du prescripteur inconnu : saisissez-le une fois "
                         f"(ordo practitioners set-am {id_nat_ps} NUMERO)")


class Holder(Protocol):
    id_nat_ps: str
    family_name: str
    given_name: str
    profession: str

    def as_practitioner(self, role: Role, am: str | None = None,
                        finess: str | None = None) -> Practitioner: ...


class Operator(Protocol):
    """What the use cases need from an authenticated session (``PractitionerSession``)."""

    practitioner: Holder
    role: Role
    locked: bool

    @property
    def can_sign(self) -> bool: ...

    @property
    def certificate_der(self) -> bytes: ...

    def touch(self) -> None: ...

    def sign(self, data: bytes) -> bytes: ...


def _now() -> datetime:
    return datetime.now(UTC)


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds")


def _signing_time(now: datetime | None) -> datetime:
    # Whole seconds: the QR carries the issue time, the store keeps milliseconds.
    return (now or _now()).astimezone(UTC).replace(microsecond=0)


# -- IDs -------------------------------------------------------------------------------------
class IdAllocator:
    """Prescription IDs, monotonic across restarts: ``new(db)`` runs inside the caller's
    write transaction and persists the generator's ``last_ms`` in ``meta``."""

    def __init__(self, clock_ms: Callable[[], int] | None = None,
                 random_bytes: Callable[[int], bytes] = secrets.token_bytes) -> None:
        self.generator = PrescriptionIdGenerator(
            clock_ms or (lambda: time.time_ns() // 1_000_000), random_bytes)

    def new(self, db: sqlite_utils.Database) -> str:
        if not db.conn.in_transaction:
            raise StoreError("IdAllocator.new needs a write transaction (store.write())")
        row = db.execute("SELECT value FROM meta WHERE key = ?", [ID_META_KEY]).fetchone()
        stored = int(row[0]) if row else 0
        if stored > self.generator.last_ms:
            self.generator.last_ms = stored
        pid = self.generator.new()
        _set_meta(db, ID_META_KEY, str(self.generator.last_ms))
        return pid


def _set_meta(db: sqlite_utils.Database, key: str, value: str) -> None:
    db.execute("INSERT INTO meta (key, value) VALUES (?, ?)"
               " ON CONFLICT (key) DO UPDATE SET value = excluded.value", [key, value])


# -- sessions and roles ---------------------------------------------------------------------
def _actor(session: Operator) -> str:
    return session.practitioner.id_nat_ps


def _require(session: Operator, roles: Iterable[Role], what: str) -> None:
    """An open session (not locked, not idle) with one of ``roles``."""
    if session.role not in set(roles):
        elided = "d'" if what[:1] in "aeiouéè" else "de "
        raise Forbidden(f"Votre profil ({_role_fr(session.role)}) ne permet pas {elided}{what}.")
    session.touch()  # AuthRefused('locked') when locked or idle


def _role_fr(role: Role) -> str:
    return {Role.PRESCRIBER: "médecin", Role.NURSE: "infirmier",
            Role.STAFF: "personnel d'établissement"}[role]


def register_login(store: Store, session: Operator) -> Practitioner | None:
    """Record the card holder (physician or nurse) in ``practitioners``, keeping the N° AM
    and FINESS already on record; returns it (None for staff: a CPE identifier is not an
    idNat_PS and is not recorded)."""
    if session.role is Role.STAFF:
        return None
    holder = session.practitioner
    known = repositories.get_practitioner(store, holder.id_nat_ps)
    practitioner = _with_contact(holder.as_practitioner(
        session.role, am=known.am if known else None,
        finess=known.finess if known else None), known)
    if known != practitioner:
        with store.write() as db:
            repositories.upsert_practitioner(db, practitioner)
    return practitioner


def _with_contact(practitioner: Practitioner, known: Practitioner | None) -> Practitioner:
    """The qualification, phone and e-mail on record (the card carries none of them)."""
    if known is None:
        return practitioner
    return replace(practitioner, qualification=known.qualification, phone=known.phone,
                   email=known.email)


def set_contact(store: Store, id_nat_ps: str, *, actor: str, qualification: str | None = None,
                phone: str | None = None, email: str | None = None) -> Practitioner:
    """Record what a prescriber's orders print beside the card's identity (qualification,
    phone, e-mail; ``""`` clears one); audited."""
    known = repositories.get_practitioner(store, id_nat_ps)
    if known is None:
        raise StoreError(f"praticien inconnu : {id_nat_ps} (connectez-vous une fois avec sa "
                         "carte, ou ordo practitioners add)")
    changes = {name: value or None for name, value in (
        ("qualification", qualification), ("phone", phone), ("email", email))
        if value is not None}
    updated = replace(known, **changes)  # validated (phone in +33 form) by Practitioner
    with store.write() as db:
        repositories.upsert_practitioner(db, updated)
        audit.append(db, actor=actor, action="practitioner.contact_set", subject=id_nat_ps,
                     details={"fields": sorted(changes)})
    return updated


def needs_am(store: Store, session: Operator) -> bool:
    """A prescriber without a N° AM on record (the kiosk asks for it once)."""
    if session.role is not Role.PRESCRIBER:
        return False
    known = repositories.get_practitioner(store, _actor(session))
    return known is None or not known.am


def set_am(store: Store, id_nat_ps: str, am: str, *, actor: str) -> Practitioner:
    """Set the N° AM of a known prescriber; audited."""
    value = validate_am(am, field="am")
    known = repositories.get_practitioner(store, id_nat_ps)
    if known is None:
        raise StoreError(f"praticien inconnu : {id_nat_ps} (connectez-vous une fois avec sa "
                         "carte, ou ordo practitioners add)")
    if known.role is not Role.PRESCRIBER:
        raise Forbidden(f"{id_nat_ps} n'est pas prescripteur : pas de N° AM à enregistrer")
    updated = replace(known, am=value)
    with store.write() as db:
        repositories.upsert_practitioner(db, updated)
        audit.append(db, actor=actor, action="practitioner.am_set", subject=id_nat_ps)
    return updated


def add_practitioner(store: Store, practitioner: Practitioner, *, actor: str) -> None:
    """Record a practitioner before their first login (``ordo practitioners add``)."""
    with store.write() as db:
        repositories.upsert_practitioner(db, practitioner)
        audit.append(db, actor=actor, action="practitioner.added",
                     subject=practitioner.id_nat_ps, details={"role": practitioner.role.value})


def list_practitioners(store: Store) -> list[Practitioner]:
    rows = store.query("SELECT id_nat_ps FROM practitioners ORDER BY last_name, first_name")
    found = (repositories.get_practitioner(store, row["id_nat_ps"]) for row in rows)
    return [p for p in found if p is not None]


def _prescriber(store: Store, session: Operator) -> Practitioner:
    known = repositories.get_practitioner(store, _actor(session))
    if known is not None and known.role is Role.PRESCRIBER:
        return _with_contact(session.practitioner.as_practitioner(
            Role.PRESCRIBER, am=known.am, finess=known.finess), known)
    registered = register_login(store, session)
    assert registered is not None
    return registered


# -- drafts ----------------------------------------------------------------------------------
def _resident(store: Store, ins: str) -> Resident:
    resident = repositories.get_resident(store, ins)
    if resident is None:
        raise StoreError("résident inconnu")
    if not resident.active:
        raise StateError("ce résident n'est plus actif : pas de nouvelle ordonnance")
    return resident


def _create(db: sqlite_utils.Database, ids: IdAllocator, doctor: Practitioner,
            resident: Resident,
            lines: Iterable[Line], now: datetime, actor: str,
            action: str, weight_kg: Decimal | None = None) -> Prescription:
    draft = Prescription(id=ids.new(db), prescriber=doctor, resident=resident, created_at=now,
                         lines=tuple(lines), weight_kg=weight_kg)
    repositories.save_draft(db, draft)
    audit.append(db, actor=actor, action=action, subject=draft.id,
                 details={"lines": len(draft.lines)})
    return draft


def new_draft(store: Store, session: Operator, resident_ins: str, *, ids: IdAllocator,
              now: datetime | None = None) -> Prescription:
    """An empty draft for a resident, stored at once (physician only)."""
    _require(session, {Role.PRESCRIBER}, "rédiger une ordonnance")
    doctor = _prescriber(store, session)
    resident = _resident(store, resident_ins)
    with store.write() as db:
        return _create(db, ids, doctor, resident, (), now or _now(), doctor.id_nat_ps,
                       "prescription.draft_created")


def _own_draft(store: Store, session: Operator, prescription_id: str) -> Prescription:
    p = repositories.get_prescription(store, prescription_id)
    if p is None:
        raise StoreError(f"ordonnance inconnue : {prescription_id}")
    if p.prescriber.id_nat_ps != _actor(session):
        raise Forbidden("Cette ordonnance a été commencée par un autre prescripteur.")
    if p.state is not State.DRAFT:
        raise StateError(f"l'ordonnance {prescription_id} est déjà "
                         f"{p.state.value} : elle ne se modifie plus")
    return p


def update_draft(store: Store, session: Operator, draft: Prescription, *,
                 form: Mapping[str, Any] | None = None) -> Prescription:
    """Save the draft as typed (lines, weight) and the editor's half-typed line (``form``).

    The owner's session may have locked meanwhile: what was typed before is still saved."""
    if session.role is not Role.PRESCRIBER:
        raise Forbidden("Seul un médecin modifie une ordonnance.")
    stored = _own_draft(store, session, draft.id)
    updated = replace(stored, lines=tuple(draft.lines), weight_kg=draft.weight_kg)
    with store.write() as db:
        repositories.save_draft(db, updated)
        key = FORM_META_PREFIX + draft.id
        if form:
            _set_meta(db, key, json.dumps(dict(form), ensure_ascii=False))
        else:
            db.execute("DELETE FROM meta WHERE key = ?", [key])
    return updated


def draft_form(store: Store, prescription_id: str) -> dict[str, Any] | None:
    """The editor's half-typed line saved with a draft, if any."""
    rows = store.query("SELECT value FROM meta WHERE key = ?",
                       (FORM_META_PREFIX + prescription_id,))
    if not rows:
        return None
    try:
        value = json.loads(rows[0]["value"])
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def drafts_of(store: Store, id_nat_ps: str) -> list[Prescription]:
    """A physician's drafts, most recently touched first."""
    rows = store.query("SELECT body FROM prescriptions WHERE state = 'draft'"
                       " AND prescriber_id = ? ORDER BY updated_at DESC", (id_nat_ps,))
    return [Prescription.from_dict(json.loads(row["body"])) for row in rows]


def discard_draft(store: Store, session: Operator, prescription_id: str) -> None:
    """Delete one of the physician's drafts (never a signed prescription); audited."""
    if session.role is not Role.PRESCRIBER:
        raise Forbidden("Seul un médecin supprime un brouillon.")
    _own_draft(store, session, prescription_id)
    with store.write() as db:
        db.execute("DELETE FROM prescriptions WHERE id = ? AND state = 'draft'",
                   [prescription_id])
        db.execute("DELETE FROM meta WHERE key = ?", [FORM_META_PREFIX + prescription_id])
        audit.append(db, actor=_actor(session), action="prescription.draft_discarded",
                     subject=prescription_id)


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


def _split_secure(store: Store, draft: Prescription, ids: IdAllocator, actor: str,
                  now: datetime) -> Prescription:
    """Move the secure lines of a mixed draft to a new draft (its own ID); return it."""
    from appliance.domain.secure import split_lines

    other, secure = split_lines(draft.lines, [line.secure for line in draft.lines])
    with store.write() as db:
        repositories.save_draft(db, replace(draft, lines=tuple(other)))
        split = _create(db, ids, draft.prescriber, draft.resident, secure, now, actor,
                        "prescription.draft_created", draft.weight_kg)
        audit.append(db, actor=actor, action="prescription.split", subject=draft.id,
                     details={"secure": split.id, "lines": len(secure)})
    return split


def sign(store: Store, session: Operator, prescription_id: str, *,
         now: datetime | None = None, ids: IdAllocator | None = None) -> SignResult:
    """Sign a draft with the session's card and store it with its outbox row, print job,
    signed bytes and audit entry, in one transaction. A draft mixing secure lines with
    others becomes two orders (see the module doc): the result carries the second in
    ``also``."""
    _require(session, {Role.PRESCRIBER}, "signer une ordonnance")
    if not session.can_sign:
        raise Forbidden("Cette carte ne porte pas de clé de signature.")
    draft = _own_draft(store, session, prescription_id)
    doctor = _prescriber(store, session)
    if not doctor.am:
        raise AmRequired(doctor.id_nat_ps)
    draft = replace(draft, prescriber=doctor)
    draft.check_signable()
    if draft.mixes_secure:
        split = _split_secure(store, draft, ids or IdAllocator(), doctor.id_nat_ps,
                              now or _now())
        first = sign(store, session, prescription_id, now=now)
        return replace(first, also=(sign(store, session, split.id, now=now),))
    # Imported here: cryptography is loaded by the card login before any signing, and the
    # kiosk's lock screen, which imports this module, does not wait for it.
    from appliance.services.signature import record_signature, sign_prescription

    signed = sign_prescription(draft, session, _signing_time(now))
    with store.write() as db:
        job = record_signature(db, signed, actor=doctor.id_nat_ps)
        db.execute("DELETE FROM meta WHERE key = ?", [FORM_META_PREFIX + prescription_id])
    log.info("prescription signed and queued", extra={"fields": {
        "prescription": prescription_id, "job": job, "lines": len(draft.lines)}})
    return SignResult(signed.prescription, job, signed.payload.encode())


def prescribe(store: Store, session: Operator, draft: Draft, *, ids: IdAllocator,
              now: datetime | None = None) -> SignResult:
    """The headless path: a validated draft becomes a signed, queued prescription."""
    _require(session, {Role.PRESCRIBER}, "signer une ordonnance")
    if not session.can_sign:
        raise Forbidden("Cette carte ne porte pas de clé de signature.")
    doctor = _prescriber(store, session)
    if not doctor.am:
        raise AmRequired(doctor.id_nat_ps)
    resident = _resident(store, draft.resident.ins.value)
    with store.write() as db:
        created = _create(db, ids, doctor, resident, draft.lines, now or _now(),
                          doctor.id_nat_ps, "prescription.draft_created", draft.weight_kg)
    return sign(store, session, created.id, now=now, ids=ids)


def import_drafts(store: Store, drafts: Iterable[tuple[str, Draft]], *, ids: IdAllocator,
                  actor: str, now: datetime | None = None) -> list[Prescription]:
    """Create drafts from the DUI for their prescribers (``(idNat_PS, draft)``), all or
    none; each physician reviews and signs them in the kiosk."""
    made = []
    items = list(drafts)
    doctors = {}
    for id_nat_ps, _ in items:
        doctor = repositories.get_practitioner(store, id_nat_ps)
        if doctor is None:
            raise ValidationError("prescriber.idNat_PS", id_nat_ps,
                                  "a prescriber known to this appliance (first login or "
                                  "ordo practitioners add)")
        if doctor.role is not Role.PRESCRIBER:
            raise ValidationError("prescriber.idNat_PS", id_nat_ps, "a prescriber")
        doctors[id_nat_ps] = doctor
    with store.write() as db:
        for id_nat_ps, draft in items:
            resident = repositories.get_resident(store, draft.resident.ins.value)
            if resident is None or not resident.active:
                raise ValidationError("resident", None, "an active resident")
            made.append(_create(db, ids, doctors[id_nat_ps], resident, draft.lines,
                                now or _now(), actor, "prescription.draft_imported",
                                draft.weight_kg))
    return made


# -- after signing ---------------------------------------------------------------------------
def dispensation_count(store: Store, prescription_id: str) -> int:
    return store.query("SELECT count(*) AS n FROM dispensations WHERE prescription_id = ?",
                       (prescription_id,))[0]["n"]


def cancel(store: Store, session: Operator, prescription_id: str, reason: str, *,
           now: datetime | None = None) -> Prescription:
    """Cancel a signed prescription before any dispensation (its prescriber only)."""
    _require(session, {Role.PRESCRIBER}, "annuler une ordonnance")
    reason = " ".join((reason or "").split())
    if not reason:
        raise ValidationError("motif", reason, "le motif de l'annulation")
    if len(reason) > MAX_REASON:
        raise ValidationError("motif", reason[:40], f"au plus {MAX_REASON} caractères")
    p = repositories.get_prescription(store, prescription_id)
    if p is None:
        raise StoreError(f"ordonnance inconnue : {prescription_id}")
    if p.prescriber.id_nat_ps != _actor(session):
        raise Forbidden("Seul le prescripteur de cette ordonnance peut l'annuler.")
    if p.state is State.DRAFT:
        raise StateError("un brouillon ne s'annule pas : supprimez-le")
    if dispensation_count(store, prescription_id) or not p.can_become(State.CANCELLED):
        raise StateError("ordonnance déjà délivrée (tout ou partie) : elle ne peut plus "
                         "être annulée")
    when = now or _now()
    cancelled = p.transition(State.CANCELLED, when, reason)
    with store.write() as db:
        row = db.execute("SELECT state FROM prescriptions WHERE id = ?",
                         [prescription_id]).fetchone()
        dispensed = db.execute("SELECT count(*) FROM dispensations WHERE prescription_id = ?",
                               [prescription_id]).fetchone()[0]
        if row is None or row[0] != p.state.value or dispensed:
            raise StateError("l'ordonnance a changé entre-temps (délivrance reçue ?) : "
                             "rien n'a été annulé")
        repositories.update_state(db, cancelled, actor=_actor(session))
        db["outbox"].insert({"prescription_id": prescription_id, "kind": "cancel",
                             "created_at": _iso(when)})
        db.execute("UPDATE print_jobs SET status = 'failed', last_error = ?,"
                   " claimed_by = NULL, claimed_until = NULL"
                   " WHERE prescription_id = ? AND status = 'queued'",
                   ["ordonnance annulée avant impression", prescription_id])
    log.info("prescription cancelled", extra={"fields": {"prescription": prescription_id}})
    return cancelled


def reprint(store: Store, session: Operator, prescription_id: str, *,
            now: datetime | None = None) -> int:
    """Queue a DUPLICATA (physician, nurse or staff with an open session)."""
    _require(session, REPRINT_ROLES, "réimprimer une ordonnance")
    return printing.request_reprint(store, prescription_id, actor=_actor(session),
                                    role=session.role.value, at=now)


# -- the drug referential as the draft parser sees it -----------------------------------------
class ReferentialDrugs:
    """``DrugLookup`` (``appliance.services.drafts``) over the BDPM referential."""

    def __init__(self, referential: Any) -> None:
        self.referential = referential

    def label_for_cip13(self, cip13: str) -> tuple[str, str] | None:
        found = self.referential.by_cip13(cip13)
        return (found.cis, found.name) if found is not None else None

    def label_for_cis(self, cis: str) -> str | None:
        found = self.referential.by_cis(cis)
        return found[0].name if found else None

    def facts(self, cis: str) -> Any:
        """Common name and conditions (``appliance.store.referential.composition``)."""
        from appliance.store.referential.composition import drug_facts

        return drug_facts(self.referential.path, cis)


def dispensation_alerts(store: Store, limit: int = 20) -> list[dict[str, Any]]:
    """The latest dispensations that differ from the order (substitution or partial fill),
    newest first, with the resident's room and names (for the kiosk's alerts screen)."""
    return store.query(
        "SELECT d.prescription_id, d.line_no, d.product_label, d.substituted,"
        " d.substitution_type, d.substitution_reason, d.complete, d.handed_over_at,"
        " r.room, r.birth_name, r.used_name, r.first_names"
        " FROM dispensations d LEFT JOIN prescriptions p ON p.id = d.prescription_id"
        " LEFT JOIN residents r ON r.ins = p.resident_ins"
        " WHERE d.substituted = 1 OR d.complete = 0"
        " ORDER BY d.received_at DESC, d.registry_id LIMIT ?", (limit,))
