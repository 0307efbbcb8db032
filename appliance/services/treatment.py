"""A resident's treatment: what runs now, renewing it in one step, stopping a line.

- ``resident_treatment``: the lines running today with their posology, last day and
  prescriber, apart from the lines stopped or replaced and the lines recently ended
  (``Views.treatment``).
- ``renew``: a new draft made of the running lines (all, or the ones picked), each line as
  signed (posology, duration, quantity, mentions), still editable in the editor. The draft
  remembers where each line came from (``renewal_sources``, kept in ``meta`` under
  ``renewal.<draft ID>`` until it is signed or discarded), so that the editor marks the
  renewed lines (``renewal_marks``) and, once the renewal is signed, the lines it renewed
  leave the current treatment as replaced by it (``record_renewal``) instead of running
  twice until their own end.
- ``stop_line``: a physician takes a running line out of the treatment, with a reason; the
  next renewal leaves it out. Audited (``prescription.line_stopped``: the prescription's ID
  and the line's number, never the reason or the resident).
- ``resume_line``: a physician takes a stop back (a line stopped by mistake runs again
  until its own end). Audited (``prescription.line_resumed``).
"""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from appliance.domain import JsonObject
from appliance.domain.people import Role
from appliance.domain.prescription import Line, MedicationLine, Prescription, local
from appliance.errors import StateError, StoreError, ValidationError
from appliance.ports.clock import utc_now
from appliance.ports.uow import StoppedLine, Treatment, TreatmentLine, UnitOfWork
from appliance.services.prescribing import (
    MAX_REASON,
    RENEWAL_META_PREFIX,
    IdAllocator,
    Operator,
    _actor,
    _create,
    _prescriber,
    _require,
    _resident,
)

ENDED_DAYS = 90  # how far back the resident's file shows stopped and ended lines
RENEWED = "renouvelée"
SAME, CHANGED = "R", "R*"  # the editor's marks: renewed as signed, renewed and changed


@dataclass(frozen=True)
class RenewalSource:
    """A line of a signed prescription that a draft renews, as it was signed."""

    prescription_id: str
    line: int
    cis: str | None
    cip13: str | None
    body: JsonObject  # the line's to_dict() as signed

    def mark(self, line: Line) -> str | None:
        """``SAME`` when ``line`` is this line unchanged, ``CHANGED`` when it is the same
        drug with another posology or quantity, else None."""
        if not isinstance(line, MedicationLine):
            return None
        if line.to_dict() == self.body:
            return SAME
        if (line.cis, line.cip13) == (self.cis, self.cip13):
            return CHANGED
        return None

    def as_dict(self) -> JsonObject:
        return {"prescription": self.prescription_id, "line": self.line, "cis": self.cis,
                "cip13": self.cip13, "body": self.body}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RenewalSource:  # JSON read back
        return cls(str(data["prescription"]), int(data["line"]), data.get("cis"),
                   data.get("cip13"), dict(data["body"]))


def today_of(now: datetime | None) -> date:
    """The day in the establishment's time zone."""
    return local(now or utc_now()).date()


def resident_treatment(uow: UnitOfWork, ins: str, *, today: date,
                       ended_days: int = ENDED_DAYS) -> Treatment:
    """What the resident takes now, and what was stopped or ended lately."""
    return uow.views.treatment(ins, today, ended_days)


def _picked(current: Sequence[TreatmentLine],
            only: Collection[tuple[str, int]] | None) -> list[TreatmentLine]:
    if only is None:
        return list(current)
    wanted = set(only)
    return [t for t in current if (t.prescription_id, t.line) in wanted]


def renew(uow: UnitOfWork, session: Operator, resident_ins: str, *, ids: IdAllocator,
          only: Collection[tuple[str, int]] | None = None,
          now: datetime | None = None) -> tuple[Prescription, list[RenewalSource]]:
    """A new draft for the resident made of the running lines (``only``: the
    ``(prescription ID, 0-based line)`` pairs picked; None: all), each as signed (its
    renewals included). A line that runs twice
    unchanged (signed again before the first ended) is renewed once. Lines stopped
    meanwhile are left out; nothing left to renew is a ``StateError``."""
    _require(session, {Role.PRESCRIBER}, "renouveler un traitement")
    when = now or utc_now()
    with uow:
        doctor = _prescriber(uow, session)
        resident = _resident(uow, resident_ins)
        picked = _picked(uow.views.current_treatment(resident_ins, today_of(when)), only)
        if not picked:
            raise StateError("aucune ligne en cours à renouveler (arrêtée ou terminée ?)")
        signed: dict[str, Prescription] = {}
        lines: list[Line] = []
        sources: list[RenewalSource] = []
        seen: set[str] = set()
        for t in picked:
            p = signed.get(t.prescription_id) or uow.prescriptions.get(t.prescription_id)
            if p is None:
                raise StoreError(f"ordonnance inconnue : {t.prescription_id}")
            signed[p.id] = p
            line = p.lines[t.line]
            body = line.to_dict()
            key = json.dumps(body, sort_keys=True)
            if not isinstance(line, MedicationLine) or key in seen:
                continue
            seen.add(key)
            lines.append(line)
            sources.append(RenewalSource(p.id, t.line, line.cis, line.cip13, body))
        draft = _create(uow, ids, doctor, resident, lines, when, doctor.id_nat_ps,
                        "prescription.draft_renewed")
        uow.meta.set(RENEWAL_META_PREFIX + draft.id,
                     json.dumps([s.as_dict() for s in sources], ensure_ascii=False))
        uow.commit()
    return draft, sources


def renewal_sources(uow: UnitOfWork, draft_id: str) -> list[RenewalSource]:
    """The signed lines a draft renews (none for a draft written from scratch)."""
    raw = uow.meta.get(RENEWAL_META_PREFIX + draft_id)
    if raw is None:
        return []
    try:
        return [RenewalSource.from_dict(item) for item in json.loads(raw)]
    except (ValueError, KeyError, TypeError):
        return []


def _assign(lines: Sequence[Line], sources: Sequence[RenewalSource]
            ) -> list[tuple[str, RenewalSource] | None]:
    """Each line's mark and source, a source marking one line at most: the same line as
    signed first, else the same drug."""
    left = list(sources)
    out: list[tuple[str, RenewalSource] | None] = []
    for line in lines:
        found = next((s for s in left if s.mark(line) == SAME), None) or next(
            (s for s in left if s.mark(line) == CHANGED), None)
        if found is None:
            out.append(None)
            continue
        left.remove(found)
        out.append((found.mark(line) or CHANGED, found))
    return out


def renewal_marks(lines: Sequence[Line], sources: Sequence[RenewalSource]
                  ) -> list[str | None]:
    """For each line of a draft: ``SAME`` (renewed as signed), ``CHANGED`` (renewed, its
    posology or quantity changed) or None (a new line)."""
    return [None if found is None else found[0] for found in _assign(lines, sources)]


def record_renewal(uow: UnitOfWork, draft_id: str, signed: Sequence[Prescription], *,
                   actor: str, at: datetime) -> list[tuple[str, int]]:
    """In the signing transaction of the draft ``draft_id``: the lines it renewed (still in
    the orders ``signed`` from it, as signed or changed; two orders when its secure lines
    were split off) leave the current treatment, replaced by the order that holds them;
    audited (``prescription.lines_renewed``, with the renewed lines as ``ID/number``).
    Returns them."""
    sources = renewal_sources(uow, draft_id)
    uow.meta.delete(RENEWAL_META_PREFIX + draft_id)
    owners = [p for p in signed for _ in p.lines]
    lines = [line for p in signed for line in p.lines]
    replaced = []
    for owner, found in zip(owners, _assign(lines, sources), strict=True):
        if found is None:
            continue
        s = found[1]
        if uow.stopped_lines.add(StoppedLine(s.prescription_id, s.line, RENEWED, at, actor,
                                             replaced_by=owner.id)):
            replaced.append((s.prescription_id, s.line))
    if replaced:
        uow.audit.append(actor=actor, action="prescription.lines_renewed", subject=draft_id,
                         details={"renewed": [f"{pid}/{line + 1}" for pid, line in replaced]})
    return replaced


def stop_line(uow: UnitOfWork, session: Operator, prescription_id: str, line: int,
              reason: str, *, now: datetime | None = None) -> StoppedLine:
    """Stop a running line (``line``: 0-based) of a signed prescription, with a reason
    (a physician's open session; any physician of the establishment)."""
    _require(session, {Role.PRESCRIBER}, "arrêter un traitement")
    reason = " ".join((reason or "").split())
    if not reason:
        raise ValidationError("motif", reason, "le motif de l'arrêt")
    if len(reason) > MAX_REASON:
        raise ValidationError("motif", reason[:40], f"au plus {MAX_REASON} caractères")
    when = now or utc_now()
    with uow:
        p = uow.prescriptions.get(prescription_id)
        if p is None:
            raise StoreError(f"ordonnance inconnue : {prescription_id}")
        if not 0 <= line < len(p.lines) or not isinstance(p.lines[line], MedicationLine):
            raise ValidationError("ligne", line + 1, "une ligne de médicament de l'ordonnance")
        if any(s.line == line for s in uow.stopped_lines.of(prescription_id)):
            raise StateError("cette ligne est déjà arrêtée")
        running = uow.views.current_treatment(p.resident.ins.value, today_of(when))
        if not any(t.prescription_id == prescription_id and t.line == line for t in running):
            raise StateError("cette ligne n'est pas en cours : rien à arrêter")
        stopped = StoppedLine(prescription_id, line, reason, when, _actor(session))
        uow.stopped_lines.add(stopped)
        uow.audit.append(actor=_actor(session), action="prescription.line_stopped",
                         subject=prescription_id, details={"line": line + 1})
        uow.commit()
    return stopped


def resume_line(uow: UnitOfWork, session: Operator, prescription_id: str, line: int, *,
                now: datetime | None = None) -> TreatmentLine:
    """Take back the stop of a line (``line``: 0-based) that a physician stopped: the line
    runs again until its own last day. A line replaced by a signed renewal, or whose last
    day has passed, cannot come back (prescribe it again). Returns the running line."""
    _require(session, {Role.PRESCRIBER}, "reprendre un traitement")
    today = today_of(now)
    with uow:
        p = uow.prescriptions.get(prescription_id)
        if p is None:
            raise StoreError(f"ordonnance inconnue : {prescription_id}")
        stop = next((s for s in uow.stopped_lines.of(prescription_id) if s.line == line), None)
        if stop is None:
            raise StateError("cette ligne n'est pas arrêtée : rien à reprendre")
        if stop.replaced_by is not None:
            raise StateError("cette ligne a été renouvelée : elle continue dans le "
                             "renouvellement")
        uow.stopped_lines.remove(prescription_id, line)
        running = uow.views.current_treatment(p.resident.ins.value, today)
        back = next((t for t in running
                     if t.prescription_id == prescription_id and t.line == line), None)
        if back is None:   # leaving the block without a commit keeps the stop
            raise StateError("cette ligne est terminée ou son ordonnance annulée : "
                             "prescrivez-la de nouveau")
        uow.audit.append(actor=_actor(session), action="prescription.line_resumed",
                         subject=prescription_id, details={"line": line + 1})
        uow.commit()
    return back
