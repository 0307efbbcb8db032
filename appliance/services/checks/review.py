"""The checks as the product runs them: on a draft of a resident, with the resident's
allergies and current treatment read through the unit of work.

- ``check_draft(uow, facts, draft, resident, today=...)``: the alerts of a draft (the
  current treatment is ``Views.current_treatment``: the resident's signed, not cancelled
  prescriptions still running);
- ``stored_alerts(prescription_id, alerts, decision, checked_at)``: the alerts as kept with
  the prescription (``PrescriptionAlerts``), each with what the physician did;
- ``record_review(uow, prescription_id, decision, ...)``: in the caller's signing block, the
  alerts signed with and the audit entry of the acknowledgements and overrides.

The audit entry (``prescription.alerts_reviewed``) carries the alert keys acknowledged and
overridden (``dose.max_daily@2``: a code and a line number) and nothing else: no drug, no
resident, and no override reason, which is typed text and may hold health data. The
reasons are kept with the prescription's alerts (``prescription_alerts.reason``), a table of
the same sensitivity as the prescription itself and removed with it by the retention policy.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import date, datetime

from appliance.domain.people import Resident
from appliance.ports.clock import iso
from appliance.ports.drugs import DrugFacts, InteractionSource
from appliance.ports.uow import StoredAlert, UnitOfWork
from appliance.services.checks.decision import Decision
from appliance.services.checks.engine import check
from appliance.services.checks.model import (
    Alert,
    CurrentMedication,
    DraftLike,
    ResidentProfile,
    Severity,
)

AUDIT_ACTION = "prescription.alerts_reviewed"


def current_medications(uow: UnitOfWork, ins: str, today: date,
                        leave_out: Iterable[str] = (),
                        renewed: Iterable[tuple[str, int]] = ()) -> list[CurrentMedication]:
    """The resident's current treatment as the checks read it, without the prescriptions
    ``leave_out`` names (those the draft replaces) nor the lines ``renewed`` names
    (``(prescription ID, 0-based line)``: those a renewal draft continues, which would
    otherwise be its own duplicates)."""
    skipped, continued = set(leave_out), set(renewed)
    return [CurrentMedication(t.label, t.cis, t.cip13, t.posology, until=t.end,
                              prescription_id=t.prescription_id)
            for t in uow.views.current_treatment(ins, today)
            if t.prescription_id not in skipped
            and (t.prescription_id, t.line) not in continued]


def check_draft(uow: UnitOfWork, facts: DrugFacts, draft: DraftLike, resident: Resident, *,
                today: date, interactions: InteractionSource | None = None,
                leave_out: Iterable[str] = ()) -> list[Alert]:
    """Every alert on ``draft`` for ``resident``, most severe first: the resident's recorded
    allergies and current treatment are read through ``uow`` (one snapshot each). A draft
    that renews the current treatment is not checked against the lines it renews."""
    from appliance.services.treatment import renewal_sources

    ins = resident.ins.value
    profile = ResidentProfile.of(resident, uow.allergies.of_resident(ins))
    draft_id = getattr(draft, "id", None)  # a stored draft; the DUI's JSON draft has none
    renewed = [(s.prescription_id, s.line)
               for s in (renewal_sources(uow, draft_id) if draft_id else ())]
    current = current_medications(uow, ins, today, leave_out, renewed)
    return check(draft, profile, current, facts, today=today, interactions=interactions)


def _status(alert: Alert, decision: Decision | None) -> str:
    if alert.severity is Severity.INFO:
        return "shown"
    if decision is None:
        return "open"
    if alert.key in decision.overridden:
        return "overridden"
    if alert.key in decision.acknowledged:
        return "acknowledged"
    return "open"


def stored_alerts(prescription_id: str, alerts: Sequence[Alert], decision: Decision | None,
                  checked_at: datetime) -> list[StoredAlert]:
    """The alerts as kept with the prescription, each with what the physician did."""
    reasons = decision.reasons if decision is not None else {}
    at = iso(checked_at)
    return [StoredAlert(prescription_id, a.code, a.severity.value, a.message, a.source, a.line,
                        a.overridable, _status(a, decision), at, reasons.get(a.key))
            for a in alerts]


def keep_draft_alerts(uow: UnitOfWork, prescription_id: str, alerts: Sequence[Alert],
                      checked_at: datetime) -> None:
    """In the caller's block: a draft's alerts, for its review in the kiosk."""
    uow.prescription_alerts.replace(prescription_id,
                                    stored_alerts(prescription_id, alerts, None, checked_at))


def record_review(uow: UnitOfWork, prescription_id: str, decision: Decision, *, actor: str,
                  at: datetime) -> None:
    """In the caller's signing block: the alerts the prescription is signed with, what the
    physician did with each, and one audit entry with the keys only."""
    uow.prescription_alerts.replace(
        prescription_id, stored_alerts(prescription_id, decision.alerts, decision, at))
    if decision.acknowledged or decision.overridden:
        uow.audit.append(actor=actor, action=AUDIT_ACTION, subject=prescription_id,
                         details=decision.audit_details(), at=at)
