"""Cancellations pushed to the reference registry: accepted before any dispensation, refused
(409, quarantined with the reason) after; never sent before the create they cancel."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from appliance.domain.prescription import State
from appliance.services import sync
from appliance.services.prescribing import record_transition
from appliance.store import audit
from sync.registry_sim.db import Conflict

pytestmark = pytest.mark.integration


def cancel_locally(uow, prescription_id: str, reason: str = "erreur de saisie") -> None:
    """What the kiosk's cancel use case does: the state change and its outbox row together
    (here without the prescriber's session that ``prescribing.cancel`` asks for)."""
    with uow:
        p = uow.prescriptions.get(prescription_id)
        record_transition(uow, p.transition(State.CANCELLED, datetime.now(UTC), reason),
                          actor="8100")
        uow.outbox.add(prescription_id, "cancel", datetime.now(UTC))
        uow.commit()


def registry_row(sim, prescription_id):
    return next(r for r in sim.db.list_prescriptions() if r["id"] == prescription_id)


def test_cancellation_before_dispensation(orders, registry_sim, make_engine, store, uow):
    [p] = orders.sign_many()
    make_engine(registry_sim.url).push()
    cancel_locally(uow, p.id)
    report = make_engine(registry_sim.url).push()
    assert report.acknowledged == 1
    assert registry_row(registry_sim, p.id)["status"] == "cancelled"
    cancel = next(r for r in orders.outbox() if r["kind"] == "cancel")
    assert cancel["status"] == "acknowledged" and cancel["receipt"]
    assert orders.state(p.id) == "cancelled"
    with pytest.raises(Conflict, match="cancelled"):
        registry_sim.db.dispense(p.id)
    assert "registry.cancel.acknowledged" in [e.action for e in audit.entries(store)]


def test_cancellation_after_dispensation_is_refused_and_shown(
        orders, registry_sim, make_engine, store, uow):
    [p] = orders.sign_many()
    make_engine(registry_sim.url).push()
    registry_sim.db.dispense(p.id)  # the pharmacy was faster
    cancel_locally(uow, p.id)
    engine = make_engine(registry_sim.url)
    report = engine.push()
    assert (report.quarantined, report.acknowledged) == (1, 0)
    cancel = next(r for r in orders.outbox() if r["kind"] == "cancel")
    assert cancel["status"] == "quarantined" and "already dispensed" in cancel["last_error"]
    assert registry_row(registry_sim, p.id)["status"] == "active"
    status = sync.status(uow)
    assert [r["kind"] for r in status.quarantined_records] == ["cancel"]
    # what was dispensed still comes back, and says so
    assert engine.pull().received == 2
    assert len(uow.dispensations.of(p.id)) == 2
    assert orders.state(p.id) == "cancelled"
    actions = [e.action for e in audit.entries(store)]
    assert "registry.dispensed_after_cancel" in actions
    assert "registry.cancel.quarantined" in actions


def test_a_cancellation_waits_for_its_create(orders, registry_sim, make_engine, store, uow):
    [p] = orders.sign_many()  # never sent yet
    cancel_locally(uow, p.id)
    report = make_engine(registry_sim.url).push()
    assert report.acknowledged == 2
    routes = [a[2] for a in registry_sim.arrivals]
    assert routes == ["", "/MedicationRequest/$cancel"]
    assert registry_row(registry_sim, p.id)["status"] == "cancelled"


def test_a_cancellation_is_sent_once_its_create_succeeds(orders, registry_sim, make_engine):
    from sync.registry_sim import Faults

    [p] = orders.sign_many()
    cancel_locally(orders.uow, p.id)
    registry_sim.set_faults(Faults(script=("503", "503")))  # the create fails twice
    report = make_engine(registry_sim.url).push()
    assert report.acknowledged == 2 and report.retried == 2
    routes = [a[2] for a in registry_sim.arrivals]
    assert routes == ["", "", "", "/MedicationRequest/$cancel"]
