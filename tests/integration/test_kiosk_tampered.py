"""The kiosk's resident file refuses to show a signed prescription altered in the database
after signing: an alert instead of its lines, an audit entry; its queued print job fails
instead of printing."""

from __future__ import annotations

import pytest

from appliance.services.signature import TAMPERED_ACTION
from appliance.store import audit
from tests.integration.test_kiosk import (
    kiosk_bdpm,
    kiosk_env,
    log_in,
    make_kiosk,
    options,
    run,
    screen_name,
    set_am,
    sign_with_card,
    text_of,
    until,
)
from tests.integration.test_tampered_prescription import tamper

pytestmark = pytest.mark.integration
SHARED_FIXTURES = (kiosk_bdpm, kiosk_env)  # from test_kiosk, for pytest to find them


def test_the_resident_file_shows_an_alert_instead_of_an_altered_order(kiosk_env, card_trust):
    set_am(kiosk_env)
    kiosk_env.vcards.insert("physician")
    signed = sign_with_card(kiosk_env, card_trust)
    tamper(kiosk_env.store.path, signed.id)
    app, parts = make_kiosk(kiosk_env)

    async def scenario():
        async with app.run_test(size=(80, 24)) as pilot:
            await log_in(pilot, app)
            await until(pilot, lambda: len(options(app, "#residents")) == 6)
            await pilot.press("enter")
            await until(pilot, lambda: screen_name(app) == "ResidentScreen")
            await until(pilot, lambda: len(options(app, "#rx")) == 1)
            await until(pilot, lambda: "ALERTE" in text_of(app, "#detail"),
                        what="the alert")
            detail = text_of(app, "#detail")
            assert "modifiée dans la base après sa signature" in detail
            assert "40 séances" not in detail and "10 séances" not in detail
            assert "modifiée dans la base" in text_of(app, "#message")
            await until(pilot, lambda: [j["status"] for j in kiosk_env.jobs()] == ["failed"],
                        what="the original print job refused")

    try:
        run(scenario())
    finally:
        parts.close()
    assert kiosk_env.emulator.jobs == []
    entries = [e for e in audit.entries(kiosk_env.store) if e.action == TAMPERED_ACTION]
    assert {e.subject for e in entries} == {signed.id}
    assert {e.details["during"] for e in entries} == {"kiosk", "print"}
