"""Renewing and stopping on the real SQLite file (migration m010): the same use cases as
``tests/unit/test_treatment.py``, read back through the store's own read models."""

from __future__ import annotations

from datetime import timedelta

import pytest

from appliance.errors import StateError
from appliance.services import prescribing, treatment
from appliance.services.prescribing import IdAllocator
from appliance.store.migrations import applied
from tests import factories
from tests.unit.test_treatment import INS, TODAY, signed, six_lines
from tests.unit.test_use_cases import DOCTOR, NOW, CardSession, signer

SHARED_FIXTURES = (signer,)


def test_stop_renew_and_sign_on_the_store(store, uow, signer):
    assert "m010_stopped_lines" in applied(store)
    with uow:
        uow.residents.upsert([factories.resident()])
        uow.practitioners.upsert(DOCTOR)
        uow.commit()
    session = CardSession(signer)
    first = signed(uow, session, six_lines())
    stopped = treatment.stop_line(uow, session, first.id, 2, "TSH basse",
                                  now=NOW + timedelta(days=1))
    assert uow.stopped_lines.of(first.id) == [stopped]
    entry = uow.audit.entries()[-1]
    assert (entry.action, entry.subject, entry.details) == (
        "prescription.line_stopped", first.id, {"line": 3})
    later = NOW + timedelta(days=25)
    draft, sources = treatment.renew(uow, session, INS, ids=IdAllocator(), now=later)
    assert len(draft.lines) == 5 and [s.line for s in sources] == [0, 1, 3, 4, 5]
    assert treatment.renewal_sources(uow, draft.id) == sources
    prescribing.sign(uow, session, draft.id, now=later)
    view = treatment.resident_treatment(uow, INS, today=later.date())
    assert [(t.prescription_id, t.line) for t in view.current] == [
        (draft.id, n) for n in range(5)]
    assert [(t.line, s.reason, s.replaced_by) for t, s in view.stopped][-1] == (
        2, "TSH basse", None)
    assert sorted(t.line for t, s in view.stopped if s.replaced_by == draft.id) == [
        0, 1, 3, 4, 5]
    assert view.current[0].prescriber_name == "Paul DURAND"
    assert uow.views.current_treatment(INS, TODAY + timedelta(days=25)) == view.current
    # the renewal's replacements stay; the physician's stop is taken back only while the
    # line still runs (first's 30 days have passed here: the stop stays)
    with uow:
        assert not uow.stopped_lines.remove(first.id, 0)
    with pytest.raises(StateError, match="terminée"):
        treatment.resume_line(uow, session, first.id, 2, now=NOW + timedelta(days=31))
    assert [s.line for s in uow.stopped_lines.of(first.id)] == list(range(6))
    back = treatment.resume_line(uow, session, first.id, 2, now=later)
    assert back.line == 2 and uow.stopped_lines.of(first.id)[2].line == 3
    assert uow.audit.verify() == len(uow.audit.entries())


def _history(uow, session) -> None:
    """Five prescriptions over 40 days: six lines (two posologies, each on three lines) and
    a 5-day one signed together, a line stopped, the rest renewed, then a free-text line."""
    from decimal import Decimal

    from appliance.domain.posology import Duration, FreeTextPosology, Posology
    from appliance.domain.prescription import MedicationLine
    from appliance.ports.registry import Dispensation

    first = signed(uow, session, six_lines())
    with uow:                                   # the pharmacy's, in the order handed over
        for n, (line, label, substituted) in enumerate(((2, "KARDEGIC 75 mg", False),
                                                        (1, "PARACETAMOL 1000 mg", True))):
            uow.dispensations.add(Dispensation(
                f"D{n}", first.id, line, True, NOW + timedelta(hours=2 - n), label,
                substituted=substituted, substitution_type="G" if substituted else None),
                {}, NOW + timedelta(hours=3))
        uow.commit()
    short = MedicationLine(label="DOLIPRANE 500 mg, gélule", cis="60234100",
                           posology=Posology(dose=Decimal(2), unit="gélule",
                                             moments=("matin", "soir"),
                                             duration=Duration(5, "jour")))
    signed(uow, session, [short], at=NOW + timedelta(minutes=5))
    treatment.stop_line(uow, session, first.id, 2, "TSH basse", now=NOW + timedelta(days=1))
    later = NOW + timedelta(days=25)
    draft, _ = treatment.renew(uow, session, INS, ids=IdAllocator(), now=later)
    prescribing.sign(uow, session, draft.id, now=later)
    free = MedicationLine(label="AMOXICILLINE 500 mg, gélule", cis="60234100",
                          posology=FreeTextPosology("2 gélules 3 fois par jour"))
    signed(uow, session, [free, *six_lines(10)[:2]], renewals=1,
           at=NOW + timedelta(days=30))


def _shown(view) -> dict:
    """What the resident's file shows of a treatment, prescription IDs aside (each store
    makes its own)."""
    def line(t):
        return (t.line, t.label, t.cis, t.posology, t.posology_text, t.signed_on, t.end,
                t.open_ended, t.renewals, t.prescriber_id, t.prescriber_name, t.state)

    return {"current": [line(t) for t in view.current],
            "stopped": [(line(t), s.line, s.reason, s.replaced_by is None)
                        for t, s in view.stopped],
            "ended": [line(t) for t in view.ended]}


def test_the_file_on_the_store_shows_what_the_in_memory_reference_shows(store, uow, signer):
    """The same history on SQLite and on the in-memory unit of work: the same treatment
    (running, stopped or replaced, ended, in the same order, with posologies shared
    between lines read once) and the same list, day after day."""
    from tests.fakes import FakeUnitOfWork

    fake = FakeUnitOfWork()
    for each in (uow, fake):
        with each:
            each.residents.upsert([factories.resident()])
            each.practitioners.upsert(DOCTOR)
            each.commit()
        _history(each, CardSession(signer))
    for days in (0, 3, 26, 31, 45, 130):
        day = TODAY + timedelta(days=days)
        mine, reference = (treatment.resident_treatment(u, INS, today=day)
                           for u in (uow, fake))
        assert _shown(mine) == _shown(reference), days
        assert [(t.line, t.label) for t in uow.views.current_treatment(INS, day)] == [
            (t.line, t.label) for t in fake.views.current_treatment(INS, day)]
    shown = _shown(treatment.resident_treatment(uow, INS, today=TODAY + timedelta(days=31)))
    assert len(shown["current"]) == 8 and len(shown["stopped"]) == 6
    assert [s[2] for s in shown["stopped"]].count("TSH basse") == 1
    assert shown["ended"][0][1] == "DOLIPRANE 500 mg, gélule"
    files = [[(e.row.state, e.row.created_at, e.row.signed_at, e.registry, list(e.prints),
               [(d.line, d.product_label, d.substituted) for d in e.dispensations])
              for e in u.views.resident_file(INS)] for u in (uow, fake)]
    assert files[0] == files[1] and len(files[0]) == 4
    assert files[0][-1][-1] == [(1, "PARACETAMOL 1000 mg", True), (2, "KARDEGIC 75 mg", False)]
