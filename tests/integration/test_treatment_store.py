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
