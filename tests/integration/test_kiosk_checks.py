"""The prescribing checks in the kiosk, driven through Textual's pilot with the real pieces
(pcscd and a virtual CPS card, the printer emulator, SQLite, a BDPM referential): the
editor marks a line with an alert as it is added, the review lists the alerts and refuses
to sign until each blocking one is overridden with a typed reason and the important ones
acknowledged; a resident's allergy is recorded from the resident's file and blocks the
drug."""

from __future__ import annotations

import pytest

from appliance.services.checks.review import AUDIT_ACTION
from appliance.store import audit
from tests.integration.test_kiosk import (
    Keys,
    demo_residents,
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
DOCTOR = "899700000013"


async def _new_prescription_for_dupont(pilot, app, keys: Keys) -> None:
    await until(pilot, lambda: len(options(app, "#residents")) == 6)
    await keys.type("dup")
    await until(pilot, lambda: len(options(app, "#residents")) == 1)
    await keys("f2")
    await until(pilot, lambda: screen_name(app) == "EditorScreen")


async def _add_doliprane(pilot, app, keys: Keys, posology: str, lines: int) -> None:
    await keys.type("doli")
    await until(pilot, lambda: app.screen.results_for == "doli"
                and len(options(app, "#results")) > 0)
    assert options(app, "#results")[0].startswith("DOLIPRANE 1000 mg, comprimé")
    await keys("enter")
    await until(pilot, lambda: "DOLIPRANE 1000 mg, comprimé" in text_of(app, "#chosen"))
    await keys.type(posology)
    await keys("enter")
    await until(pilot, lambda: len(app.screen.draft.lines) == lines)


def test_an_overdose_is_marked_and_blocks_signing_until_overridden(kiosk_env):
    set_am(kiosk_env)
    kiosk_env.vcards.insert("physician")
    app, parts = make_kiosk(kiosk_env)

    async def scenario():
        async with app.run_test(size=(80, 24)) as pilot:
            keys = Keys(pilot)
            await log_in(pilot, app)
            await _new_prescription_for_dupont(pilot, app, keys)
            await _add_doliprane(pilot, app, keys, "2-2-2-2 5j", 1)   # 8 g a day
            await until(pilot, lambda: options(app, "#lines")[0].startswith("!! 1. "),
                        what="the line marked as blocking")
            await until(pilot, lambda: "Alerte bloquant" in text_of(app, "#message"))
            await keys("f10")
            await until(pilot, lambda: screen_name(app) == "ReviewScreen")
            await until(pilot, lambda: "BLOQUANT" in text_of(app, "#alerts"),
                        what="the alerts listed")
            listed = text_of(app, "#alerts")
            assert "Source :" in listed and "RCP" in listed
            review = app.screen
            assert review.query_one("#reason-row").display
            await keys("enter")          # in the reason field: an empty reason is refused
            assert screen_name(app) == "ReviewScreen"
            review.action_sign()         # and the signature waits for the override
            assert "Alerte bloquante" in text_of(app, "#message")
            assert not review.busy
            await keys.type("ok")        # too short
            await keys("enter")
            await until(pilot, lambda: "Motif refusé (dose.max_daily@1)"
                        in text_of(app, "#message"))
            await keys("backspace", "backspace")
            await keys.type("douleur rebelle, avis palliatif")
            await keys("enter")
            await until(pilot, lambda: "[levée]" in text_of(app, "#alerts"))
            assert not review.query_one("#reason-row").display
            if review.decision().needs_acknowledgement:
                await keys("enter")
                assert "F2" in text_of(app, "#message") and screen_name(app) == "ReviewScreen"
                await keys("f2")
                await until(pilot, lambda: "[acquittée]" in text_of(app, "#alerts"))
            await keys("enter")          # sign with the card and print
            await until(pilot, lambda: screen_name(app) == "DoneScreen", timeout=20)

    try:
        run(scenario())
    finally:
        parts.close()
    [row] = kiosk_env.store.query("SELECT id FROM prescriptions WHERE state != 'draft'")
    kept = {a.key: a for a in kiosk_env.uow.views.prescription_alerts(row["id"])}
    assert kept["dose.max_daily@1"].status == "overridden"
    assert kept["dose.max_daily@1"].reason == "douleur rebelle, avis palliatif"
    [entry] = [e for e in audit.entries(kiosk_env.store) if e.action == AUDIT_ACTION]
    assert entry.subject == row["id"] and entry.actor == DOCTOR
    assert "dose.max_daily@1" in entry.details["overridden"]
    assert "palliatif" not in str(entry.details)


def test_an_allergy_added_from_the_resident_file_blocks_the_drug(kiosk_env):
    set_am(kiosk_env)
    kiosk_env.vcards.insert("physician")
    app, parts = make_kiosk(kiosk_env)
    dupont = next(r for r in demo_residents() if r.used_name == "DUPONT")

    async def scenario():
        async with app.run_test(size=(80, 24)) as pilot:
            keys = Keys(pilot)
            await log_in(pilot, app)
            await until(pilot, lambda: len(options(app, "#residents")) == 6)
            await keys.type("dup")
            await until(pilot, lambda: len(options(app, "#residents")) == 1)
            await keys("enter")
            await until(pilot, lambda: screen_name(app) == "ResidentScreen")
            await keys("f6")
            await until(pilot, lambda: screen_name(app) == "AllergyScreen")
            await keys.type("substance inconnue")
            await keys("enter")
            await keys.type("famille")
            await keys("enter")
            await until(pilot, lambda: screen_name(app) == "ResidentScreen")
            await until(pilot, lambda: "Substance inconnue du référentiel"
                        in text_of(app, "#message"))
            await keys("f6")
            await until(pilot, lambda: screen_name(app) == "AllergyScreen")
            await keys.type("paracetamol")
            await keys("enter")
            await keys("enter")                                   # no source: refused
            await until(pilot, lambda: "source est obligatoire" in text_of(app, "#message"))
            await keys.type("famille")
            await keys("enter")
            await until(pilot, lambda: screen_name(app) == "ResidentScreen")
            await until(pilot, lambda: "Allergie enregistrée" in text_of(app, "#message"))
            await until(pilot, lambda: "Allergies : PARAC" in text_of(app, "#alerts"))
            await keys("f2")
            await until(pilot, lambda: screen_name(app) == "EditorScreen")
            await _add_doliprane(pilot, app, keys, "1 5j", 1)
            await until(pilot, lambda: options(app, "#lines")[0].startswith("!! 1. "),
                        what="the line marked as blocking")
            await until(pilot, lambda: "allergique" in text_of(app, "#message"))

    try:
        run(scenario())
    finally:
        parts.close()
    [allergy] = kiosk_env.uow.allergies.of_resident(dupont.ins.value)
    assert allergy.substance.upper().startswith("PARAC") and allergy.source == "famille"
    assert [e.action for e in audit.entries(kiosk_env.store)].count("allergy.recorded") == 1
