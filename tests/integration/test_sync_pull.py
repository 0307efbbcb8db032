"""Pull against the reference registry: dispensations come back by cursor and move the local
prescriptions; substitutions and quantity changes are kept and shown; residents who objected
are left out by the registry."""

from __future__ import annotations

from decimal import Decimal

import pytest
from click.testing import CliRunner
from stdnum import ean

from appliance.cli import main
from appliance.services import sync
from appliance.store import audit
from sync.client import RegistryClient
from sync.registry_sim import Substitute
from tests.factories import resident

pytestmark = pytest.mark.integration

GENERIC_CIP13 = "340093000001" + ean.calc_check_digit("340093000001")


def registered(orders, sim, make_engine, n=1, **fields):
    made = orders.sign_many(n, **fields)
    assert make_engine(sim.url).push().acknowledged == n
    return made


def test_a_substitution_comes_back_and_shows(orders, registry_sim, make_engine, store,
                                             tmp_path, uow):
    [p] = registered(orders, registry_sim, make_engine)
    registry_sim.db.dispense(p.id, line=1, substitute=Substitute(
        code=GENERIC_CIP13, label="PARACETAMOL BIOGARAN 1000 mg, comprimé", type="G",
        reason="générique disponible"), pharmacy="Pharmacie du Centre")
    engine = make_engine(registry_sim.url)
    report = engine.pull()
    assert (report.received, report.prescriptions) == (1, [p.id])
    [d] = uow.dispensations.of(p.id)
    assert (d.line, d.complete, d.substituted, d.substitution_type) == (1, True, True, "G")
    assert (d.product_code, d.product_label) == (GENERIC_CIP13,
                                                 "PARACETAMOL BIOGARAN 1000 mg, comprimé")
    assert d.substitution_reason == "générique disponible"
    assert d.pharmacy == "Pharmacie du Centre"
    # line 2 (a medication too) is still open
    assert orders.state(p.id) == "partially_dispensed"
    text = sync.describe_fr(d)
    assert "substitution (générique)" in text and "PARACETAMOL BIOGARAN" in text
    shown = CliRunner().invoke(main, ["--data-dir", str(store.path.parent), "sync",
                                      "dispensations",
                                      p.id], catch_exceptions=False)
    assert shown.exit_code == 0 and "substitution (générique)" in shown.output
    registry_sim.db.dispense(p.id)  # the rest
    assert engine.pull().received == 1
    assert orders.state(p.id) == "dispensed"
    actions = [e.action for e in audit.entries(store)]
    assert actions.count("registry.dispensation") == 2
    assert "prescription.dispensed" in actions


def test_a_partial_fill_and_a_quantity_change(orders, registry_sim, make_engine, store, uow):
    [p] = registered(orders, registry_sim, make_engine)
    registry_sim.db.dispense(p.id, line=1, complete=False, quantity="1", unit="boîte")
    engine = make_engine(registry_sim.url)
    engine.pull()
    [d] = uow.dispensations.of(p.id)
    assert (d.complete, d.quantity, d.unit, d.substituted) == (False, Decimal(1), "boîte", False)
    assert orders.state(p.id) == "partially_dispensed"
    registry_sim.db.dispense(p.id, line=1, quantity="2")
    engine.pull()
    assert orders.state(p.id) == "partially_dispensed"  # line 2 still open
    registry_sim.db.dispense(p.id, line=2)
    engine.pull()
    assert orders.state(p.id) == "dispensed"
    assert [(d.line, d.complete) for d in uow.dispensations.of(p.id)] == [
        (1, False), (1, True), (2, True)]


def test_residents_who_objected_are_left_out(orders, registry_sim, make_engine, store, uow):
    [objecting] = registered(orders, registry_sim, make_engine,
                             resident=resident(2, objection=True))
    [at_pharmacy, plain] = registered(orders, registry_sim, make_engine, n=2,
                                      resident=resident(3))
    registry_sim.db.dispense(objecting.id)
    registry_sim.db.dispense(at_pharmacy.id, objection=True)  # objects at the counter
    registry_sim.db.dispense(plain.id)
    report = make_engine(registry_sim.url).pull()
    assert report.prescriptions == [plain.id]
    assert uow.dispensations.of(objecting.id) == []
    assert uow.dispensations.of(at_pharmacy.id) == []
    assert orders.state(objecting.id) == orders.state(at_pharmacy.id) == "registered"
    assert orders.state(plain.id) == "dispensed"
    # the registry holds them all; only the feed leaves them out
    held = {row["id"]: row["dispensations"] for row in registry_sim.db.list_prescriptions()}
    assert held[objecting.id] == 2 and held[at_pharmacy.id] == 2


def test_pages_follow_the_cursor_and_each_dispensation_comes_once(
        orders, registry_sim, make_engine, store, uow):
    made = registered(orders, registry_sim, make_engine, n=12)
    for p in made:
        registry_sim.db.dispense(p.id, line=1)
    engine = make_engine(registry_sim.url, page_size=5)
    report = engine.pull()
    assert report.received == 12 and report.pages >= 3
    cursor = uow.meta.get(sync.CURSOR_KEY)
    assert cursor is not None
    assert engine.pull().received == 0
    assert uow.meta.get(sync.CURSOR_KEY) == cursor
    registry_sim.db.dispense(made[0].id, line=2)
    assert engine.pull().received == 1
    assert store.query("SELECT count(*) AS n FROM dispensations")[0]["n"] == 13


def test_a_dispensation_before_our_acknowledgement_registers_then_dispenses(
        orders, registry_sim, make_engine, store, uow):
    [p] = orders.sign_many()
    signed = uow.prescriptions.signed_rows([p.id])[p.id].load()
    client = RegistryClient(registry_sim.url)
    try:  # the registry holds it, but our acknowledgement was lost
        receipt = client.register(signed.prescription, signed.proof)
    finally:
        client.close()
    registry_sim.db.dispense(p.id)
    engine = make_engine(registry_sim.url)
    engine.pull()
    assert orders.state(p.id) == "dispensed"
    report = engine.push()
    assert (report.acknowledged, report.replayed) == (1, 1)
    assert orders.state(p.id) == "dispensed"
    assert store.query("SELECT registry_receipt FROM prescriptions")[0][
        "registry_receipt"] == receipt.receipt_id
