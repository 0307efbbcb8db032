"""Renewing a treatment and stopping a line, on the in-memory unit of work: what the new
draft holds, what the audit records, what the current treatment shows afterwards."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import replace
from datetime import date, timedelta
from decimal import Decimal

import pytest

from appliance.domain.people import Role
from appliance.domain.posology import Duration, Posology
from appliance.domain.prescription import ActLine, MedicationLine
from appliance.errors import Forbidden, StateError, ValidationError
from appliance.services import prescribing, treatment
from appliance.services.drafts import Draft
from appliance.services.prescribing import IdAllocator
from appliance.store.views import treatment_lines
from tests import factories
from tests.unit.test_use_cases import NOW, CardSession, signer, uow

SHARED_FIXTURES = (signer, uow)  # from test_use_cases, for pytest to find them
TODAY = NOW.date()
INS = factories.resident().ins.value
DRUGS = (("DOLIPRANE 1000 mg, comprimé", "60234100"), ("KARDEGIC 75 mg", "64755969"),
         ("LEVOTHYROX 50 microgrammes", "65143010"), ("LASILIX 40 mg", "65606743"),
         ("INEXIUM 20 mg", "64578892"), ("SERESTA 10 mg", "68269975"))


def six_lines(days: int = 30) -> list[MedicationLine]:
    return [MedicationLine(label=label, cis=cis, quantity=Decimal(n % 2 + 1),
                           posology=Posology(dose=Decimal(1), unit="comprimé",
                                             moments=("matin",) if n % 2 else ("soir",),
                                             duration=Duration(days, "jour")))
            for n, (label, cis) in enumerate(DRUGS)]


def signed(uow, session, lines, *, renewals: int = 0, at=NOW):
    lines = [dataclasses.replace(line, renewals=renewals) for line in lines]
    draft = Draft(resident=factories.resident(), lines=lines)
    return prescribing.prescribe(uow, session, draft, ids=IdAllocator(), now=at).prescription


def test_renewing_makes_a_draft_of_the_running_lines_as_signed(uow, signer):
    session = CardSession(signer)
    first = signed(uow, session, [*six_lines(), ActLine(text="NFS")], renewals=2)
    running = uow.views.current_treatment(INS, TODAY)
    assert [(t.prescription_id, t.line) for t in running] == [(first.id, n) for n in range(6)]
    draft, sources = treatment.renew(uow, session, INS, ids=IdAllocator(),
                                     now=NOW + timedelta(days=20))
    # posology, duration, quantity and the renewals of each line kept
    assert draft.lines == tuple(dataclasses.replace(line, renewals=2) for line in six_lines())
    assert draft.state.value == "draft"
    assert [(s.prescription_id, s.line) for s in sources] == [(first.id, n) for n in range(6)]
    assert treatment.renewal_sources(uow, draft.id) == sources
    assert treatment.renewal_marks(draft.lines, sources) == [treatment.SAME] * 6
    entry = uow.audit.entries()[-1]
    assert (entry.action, entry.subject, entry.details) == (
        "prescription.draft_renewed", draft.id, {"lines": 6})


def test_renewing_only_the_ticked_lines_and_each_line_once(uow, signer):
    session = CardSession(signer)
    first = signed(uow, session, six_lines())
    again = signed(uow, session, six_lines()[:1], at=NOW + timedelta(days=1))
    assert len(uow.views.current_treatment(INS, TODAY + timedelta(days=1))) == 7
    draft, _ = treatment.renew(uow, session, INS, ids=IdAllocator(),
                               now=NOW + timedelta(days=2))
    assert len(draft.lines) == 6                        # DOLIPRANE twice: renewed once
    ticked = {(again.id, 0), (first.id, 3)}
    draft, sources = treatment.renew(uow, session, INS, ids=IdAllocator(), only=ticked,
                                     now=NOW + timedelta(days=2))
    assert [line.label for line in draft.lines] == ["DOLIPRANE 1000 mg, comprimé",
                                                    "LASILIX 40 mg"]
    assert {(s.prescription_id, s.line) for s in sources} == ticked


def test_a_stopped_line_leaves_the_treatment_and_the_next_renewal_and_is_audited(uow, signer):
    session = CardSession(signer)
    first = signed(uow, session, six_lines())
    stopped = treatment.stop_line(uow, session, first.id, 1, "  saignement   digestif ",
                                  now=NOW + timedelta(days=3))
    assert stopped.reason == "saignement digestif"
    entry = uow.audit.entries()[-1]
    assert (entry.action, entry.subject, entry.details) == (
        "prescription.line_stopped", first.id, {"line": 2})
    audit_text = json.dumps([e.details for e in uow.audit.entries()]) + entry.subject
    resident = factories.resident()
    for private in (resident.birth_name, resident.first_names, resident.ins.value,
                    "saignement"):
        assert private not in audit_text
    today = TODAY + timedelta(days=3)
    assert [t.line for t in uow.views.current_treatment(INS, today)] == [0, 2, 3, 4, 5]
    view = treatment.resident_treatment(uow, INS, today=today)
    assert [(t.line, s.reason, s.replaced_by) for t, s in view.stopped] == [
        (1, "saignement digestif", None)]
    assert len(view.current) == 5 and view.ended == []
    draft, _ = treatment.renew(uow, session, INS, ids=IdAllocator(),
                               now=NOW + timedelta(days=4))
    assert "KARDEGIC 75 mg" not in [line.label for line in draft.lines]
    assert len(draft.lines) == 5
    with pytest.raises(StateError, match="déjà arrêtée"):
        treatment.stop_line(uow, session, first.id, 1, "encore", now=NOW)


def test_stopping_needs_a_reason_a_running_medication_line_and_a_physician(uow, signer):
    session = CardSession(signer)
    first = signed(uow, session, [*six_lines(days=5), ActLine(text="NFS")])
    with pytest.raises(ValidationError, match="motif"):
        treatment.stop_line(uow, session, first.id, 0, "  ", now=NOW)
    with pytest.raises(ValidationError, match="ligne"):
        treatment.stop_line(uow, session, first.id, 6, "acte", now=NOW)
    with pytest.raises(StateError, match="pas en cours"):
        treatment.stop_line(uow, session, first.id, 0, "fini", now=NOW + timedelta(days=6))
    with pytest.raises(Forbidden):
        treatment.stop_line(uow, replace(session, role=Role.NURSE), first.id, 0, "non",
                            now=NOW)
    with pytest.raises(Forbidden):
        treatment.renew(uow, replace(session, role=Role.NURSE), INS, ids=IdAllocator(),
                        now=NOW)
    assert uow.stopped_lines.of(first.id) == []
    assert not any(e.action == "prescription.line_stopped" for e in uow.audit.entries())


def test_a_line_stopped_by_mistake_runs_again_until_its_own_end(uow, signer):
    session = CardSession(signer)
    first = signed(uow, session, six_lines(days=10))
    treatment.stop_line(uow, session, first.id, 1, "erreur de ligne", now=NOW)
    with pytest.raises(Forbidden):
        treatment.resume_line(uow, replace(session, role=Role.NURSE), first.id, 1, now=NOW)
    with pytest.raises(StateError, match="pas arrêtée"):
        treatment.resume_line(uow, session, first.id, 2, now=NOW)
    back = treatment.resume_line(uow, session, first.id, 1, now=NOW + timedelta(days=1))
    assert (back.prescription_id, back.line, back.label) == (first.id, 1, "KARDEGIC 75 mg")
    assert uow.stopped_lines.of(first.id) == []
    today = TODAY + timedelta(days=1)
    assert [t.line for t in uow.views.current_treatment(INS, today)] == list(range(6))
    entry = uow.audit.entries()[-1]
    assert (entry.action, entry.subject, entry.details) == (
        "prescription.line_resumed", first.id, {"line": 2})
    treatment.stop_line(uow, session, first.id, 1, "chute", now=NOW + timedelta(days=2))
    assert [s.reason for s in uow.stopped_lines.of(first.id)] == ["chute"]


def test_an_ended_or_renewed_line_cannot_come_back(uow, signer):
    session = CardSession(signer)
    first = signed(uow, session, six_lines(days=5))
    treatment.stop_line(uow, session, first.id, 0, "nausées", now=NOW)
    with pytest.raises(StateError, match="terminée"):   # its last day has passed
        treatment.resume_line(uow, session, first.id, 0, now=NOW + timedelta(days=6))
    assert [s.line for s in uow.stopped_lines.of(first.id)] == [0]   # the stop stays
    draft, _ = treatment.renew(uow, session, INS, ids=IdAllocator(),
                               now=NOW + timedelta(days=1))
    prescribing.sign(uow, session, draft.id, now=NOW + timedelta(days=1))
    with pytest.raises(StateError, match="renouvelée"):
        treatment.resume_line(uow, session, first.id, 1, now=NOW + timedelta(days=1))
    assert not any(e.action == "prescription.line_resumed" for e in uow.audit.entries())


def test_nothing_to_renew_is_a_clear_error(uow, signer):
    session = CardSession(signer)
    signed(uow, session, six_lines(days=5))
    with pytest.raises(StateError, match="aucune ligne en cours"):
        treatment.renew(uow, session, INS, ids=IdAllocator(), now=NOW + timedelta(days=6))
    view = treatment.resident_treatment(uow, INS, today=TODAY + timedelta(days=6))
    assert view.current == [] and len(view.ended) == 6
    assert view.ended[0].end == TODAY + timedelta(days=4)


def test_a_signed_renewal_replaces_the_lines_it_renewed(uow, signer):
    session = CardSession(signer)
    first = signed(uow, session, six_lines())
    later = NOW + timedelta(days=28)
    draft, sources = treatment.renew(uow, session, INS, ids=IdAllocator(), now=later)
    changed = replace(draft.lines[0], posology=replace(draft.lines[0].posology,
                                                       dose=Decimal(2)))
    edited = prescribing.update_draft(uow, session, replace(
        draft, lines=(changed, *draft.lines[1:5])))        # one changed, the last one left out
    assert treatment.renewal_marks(edited.lines, sources) == [
        treatment.CHANGED, *[treatment.SAME] * 4]
    prescribing.sign(uow, session, draft.id, now=later)
    assert treatment.renewal_sources(uow, draft.id) == []
    entry = uow.audit.entries()[-1]
    assert (entry.action, entry.subject) == ("prescription.lines_renewed", draft.id)
    assert entry.details == {"renewed": [f"{first.id}/{n}" for n in range(1, 6)]}
    today = later.date()
    running = uow.views.current_treatment(INS, today)
    assert sorted((t.prescription_id, t.line) for t in running) == sorted(
        [(draft.id, n) for n in range(5)] + [(first.id, 5)])
    view = treatment.resident_treatment(uow, INS, today=today)
    assert {(t.line, s.replaced_by) for t, s in view.stopped} == {
        (n, draft.id) for n in range(5)}


def test_discarding_a_renewal_forgets_its_sources(uow, signer):
    session = CardSession(signer)
    signed(uow, session, six_lines())
    draft, _ = treatment.renew(uow, session, INS, ids=IdAllocator(), now=NOW)
    prescribing.discard_draft(uow, session, draft.id)
    assert uow.meta.get(prescribing.RENEWAL_META_PREFIX + draft.id) is None
    assert treatment.renewal_sources(uow, draft.id) == []


def test_a_line_with_its_own_renewals_runs_for_them():
    line = {"kind": "medication", "label": "KARDEGIC 75 mg", "cis": "64755969",
            "posology": Posology(dose=Decimal(1), unit="sachet", moments=("midi",),
                                 duration=Duration(1, "mois")).to_dict()}
    body = {"prescriber": {"id_nat_ps": "899700000013", "first_name": "Claire",
                           "last_name": "DUVAL"}, "renewals": 1,
            "lines": [line, {**line, "renewals": 3}]}
    first, second = treatment_lines("P", prescribing.State.SIGNED,
                                    "2026-03-10T09:00:00+00:00", body)
    assert (first.renewals, first.end) == (1, date(2026, 5, 9))
    assert (second.renewals, second.end) == (3, date(2026, 7, 9))


def test_a_renewal_is_not_its_own_duplicate_but_a_new_line_of_the_same_drug_is(uow, signer):
    from appliance.domain.drug_facts import Component, DrugInfo
    from appliance.services.checks import check_draft

    paracetamol = Component("02202", "PARACÉTAMOL", "SA", "comprimé", 1, Decimal(1000), "mg",
                            "comprimé", None, "1000 mg")
    doliprane = DrugInfo("60234100", "DOLIPRANE 1000 mg, comprimé", "comprimé", ("orale",),
                         (), (paracetamol,))

    class Facts:
        def drug(self, cis=None, cip13=None):
            return doliprane if cis == doliprane.cis else None

    session = CardSession(signer)
    signed(uow, session, six_lines()[:1])
    draft, _ = treatment.renew(uow, session, INS, ids=IdAllocator(),
                               now=NOW + timedelta(days=2))
    resident = factories.resident()
    later = TODAY + timedelta(days=2)
    assert [a.code for a in check_draft(uow, Facts(), draft, resident, today=later)
            if a.code.startswith("duplicate")] == []
    # the same line written by hand, not as a renewal, is a duplicate of the running one
    fresh = Draft(resident=resident, lines=list(draft.lines))
    assert any(a.code.startswith("duplicate")
               for a in check_draft(uow, Facts(), fresh, resident, today=later))
