"""The README's figure: a typical 3-line prescription (two medications found by name, one
free-text act) from the home screen to the printed order, keys counted one by one."""

from __future__ import annotations

import asyncio

import pytest

from appliance.domain.prescription import ActLine, MedicationLine, State
from appliance.services.signature import verify_payload
from tests.integration.test_kiosk import (
    Keys,
    kiosk_bdpm,
    kiosk_env,
    log_in,
    make_kiosk,
    options,
    run,
    screen_name,
    set_am,
    text_of,
    until,
)

pytestmark = pytest.mark.integration
SHARED_FIXTURES = (kiosk_bdpm, kiosk_env)  # from test_kiosk, for pytest to find them

MAX_KEYSTROKES = 40


def test_three_line_prescription_within_40_keystrokes(kiosk_env, card_trust, registry_sim):
    """...then, end to end: the ticket's QR decodes and verifies, the sync engine sends the
    order to the registry, a pharmacy substitutes a generic, and the physician sees it."""
    from appliance.services.sync import EngineConfig, SyncEngine
    from sync.client import RegistryClient
    from sync.registry_sim.db import Substitute

    set_am(kiosk_env)
    kiosk_env.vcards.insert("physician")
    app, parts = make_kiosk(kiosk_env)
    keys_used = {}
    uow = kiosk_env.app.new_uow()  # its own connection, as the sync process has
    client = RegistryClient(registry_sim.url)
    engine = SyncEngine(uow, client, EngineConfig(backoff_base_s=0.01, max_wait_s=2))

    def pharmacy_and_sync(pid: str) -> None:
        assert engine.push().acknowledged == 1
        registry_sim.db.dispense(pid, line=1, substitute=Substitute(
            code="3400936381865", label="PARACETAMOL BIOGARAN 1 g, comprimé"))
        assert engine.pull().received == 1

    async def scenario():
        async with app.run_test(size=(80, 24)) as pilot:
            await log_in(pilot, app)
            await until(pilot, lambda: len(options(app, "#residents")) == 6)
            keys = Keys(pilot)                                   # the count starts here
            await keys.type("dup")
            await until(pilot, lambda: len(options(app, "#residents")) == 1)
            await keys("f2")                                      # new prescription
            await until(pilot, lambda: screen_name(app) == "EditorScreen")

            await keys.type("doli")
            await until(pilot, lambda: app.screen.results_for == "doli"
                        and len(options(app, "#results")) == 6)
            # adult tablets first, with the box size and the reimbursement
            assert options(app, "#results")[0].startswith("DOLIPRANE 1000 mg, comprimé · ")
            await keys("enter")
            await until(pilot, lambda: "DOLIPRANE 1000 mg, comprimé" in text_of(app, "#chosen"))
            await keys.type("3 5j")
            await keys("enter")
            await until(pilot, lambda: len(app.screen.draft.lines) == 1)

            await keys.type("kard 75")
            await keys("enter")                                   # picks once results are in
            await until(pilot, lambda: "KARDEGIC 75 mg" in text_of(app, "#chosen"))
            await keys.type("1")
            await keys("enter")
            await until(pilot, lambda: len(app.screen.draft.lines) == 2)

            await keys("f4")                                      # free-text act
            await keys.type("NFS, CRP")
            await keys("enter")
            await until(pilot, lambda: len(app.screen.draft.lines) == 3)

            await keys("f10")                                     # review
            await until(pilot, lambda: screen_name(app) == "ReviewScreen")
            await until(pilot, lambda: "NFS, CRP" in text_of(app, "#preview"))
            preview = " ".join(text_of(app, "#preview").split())  # wrapped at 48 columns
            assert "1 comprimé matin, midi et soir pendant 5 jours" in preview
            assert "N° AM 751234567" in preview
            await keys("enter")                                   # sign with the card, print
            await until(pilot, lambda: screen_name(app) == "DoneScreen", timeout=20)
            keys_used["count"] = keys.count
            await until(pilot, lambda: app.screen.job_status == "done", timeout=20,
                        what="the printed order")
            assert "imprimée" in text_of(app, "#print-state")
            pid = app.screen.result.prescription.id

            await asyncio.to_thread(pharmacy_and_sync, pid)      # the sync service's work
            await pilot.press("enter")                            # back home, then the file
            await until(pilot, lambda: screen_name(app) == "HomeScreen")
            await pilot.press("enter")
            await until(pilot, lambda: screen_name(app) == "ResidentScreen")
            await until(pilot, lambda: "! substitution" in options(app, "#rx")[0])
            detail = text_of(app, "#detail")
            assert "partiellement délivrée" in detail and "reçue par le registre" in detail
            assert "PARACETAMOL BIOGARAN 1 g, comprimé (délivrance complète)" in detail

    try:
        run(scenario())
    finally:
        parts.close()
        client.close()
        uow.close()

    count = keys_used["count"]
    print(f"\nkeystrokes from the home screen to the printed order: {count}")
    assert count <= MAX_KEYSTROKES
    rows = kiosk_env.store.query("SELECT id FROM prescriptions WHERE state != 'draft'")
    assert len(rows) == 1
    signed = kiosk_env.uow.prescriptions.get(rows[0]["id"])
    assert signed.state is State.PARTIALLY_DISPENSED and signed.resident.used_name == "DUPONT"
    first, second, act = signed.lines
    assert isinstance(first, MedicationLine) and first.cis == "60234100"
    assert first.posology.describe() == "1 comprimé matin, midi et soir pendant 5 jours"
    assert isinstance(second, MedicationLine) and second.label.startswith("KARDEGIC 75 mg")
    assert second.posology.describe() == "1 sachet le matin"
    assert isinstance(act, ActLine) and act.text == "NFS, CRP"
    assert [(j["kind"], j["status"]) for j in kiosk_env.jobs()] == [("original", "done")]
    outbox = kiosk_env.store.query("SELECT kind, status FROM outbox")
    assert outbox == [{"kind": "create", "status": "acknowledged"}]
    job = kiosk_env.emulator.wait_for_jobs(1)[0]
    assert any("NFS, CRP" in line for line in job.text)
    verified = verify_payload(job.qr_texts[0], [*card_trust.roots, *card_trust.intermediates],
                              card_trust.crls)
    assert verified.fields.prescription_id == signed.id
