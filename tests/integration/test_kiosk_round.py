"""The morning round at 80x24, as a hurried physician goes through it: the traps of the
home screen and the editor (wrong resident, lost or phantom drafts, posology typed into the
drug search, English or internal names on screen), each driven through the pilot with the
real pieces of ``test_kiosk`` (pcscd and a virtual CPS card, the printer emulator, SQLite,
the BDPM rows of ``tests/data``)."""

from __future__ import annotations

import pytest

from tests.integration.test_kiosk import (
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


def physician_kiosk(env):
    set_am(env)
    env.vcards.insert("physician")
    return make_kiosk(env)


async def home(pilot, app) -> None:
    await log_in(pilot, app)
    await until(pilot, lambda: len(options(app, "#residents")) == 6, what="the residents")


def drafts_in_store(env) -> list[dict]:
    return env.store.query("SELECT id FROM prescriptions WHERE state = 'draft'")


def test_typing_after_a_draft_goes_to_the_search_and_f2_opens_the_resident_shown(kiosk_env):
    """Back from a draft with Échap, "roux" typed reaches the search wherever the focus
    was, and F2 pressed at once opens ROUX, never the resident highlighted before; the
    editor's title names the resident with birth date and room."""
    app, parts = physician_kiosk(kiosk_env)

    async def scenario():
        async with app.run_test(size=(80, 24)) as pilot:
            await home(pilot, app)
            await pilot.press("f2")                                 # DUPONT, highlighted
            await until(pilot, lambda: screen_name(app) == "EditorScreen")
            await pilot.press("f4", *"ECG", "enter")
            await until(pilot, lambda: len(app.screen.draft.lines) == 1)
            await pilot.press("escape")
            await until(pilot, lambda: screen_name(app) == "HomeScreen"
                        and len(options(app, "#drafts")) == 1, what="the draft listed")
            await pilot.press("f3", "enter")                        # the draft, from its list
            await until(pilot, lambda: screen_name(app) == "EditorScreen")
            await pilot.press("escape")
            await until(pilot, lambda: screen_name(app) == "HomeScreen")
            await pilot.press(*"roux", "f2")                        # no pause: as typed
            await until(pilot, lambda: screen_name(app) == "EditorScreen", what="the editor")
            assert app.screen.draft.resident.birth_name == "ROUX"
            title = text_of(app, "#title")
            assert "ROUX Odette" in title and "30/11/1928" in title and "ch. 15" in title

            await pilot.press("escape")                             # empty: discarded
            await until(pilot, lambda: screen_name(app) == "HomeScreen")
            assert app.screen.query_one("#search").value == "roux"
            await pilot.press("backspace", "backspace", "backspace", "backspace",
                              *"zzz", "f2")                         # nobody matches
            await until(pilot, lambda: "Aucun résident" in text_of(app, "#message"))
            await pilot.pause(0.3)
            assert screen_name(app) == "HomeScreen"

    try:
        run(scenario())
    finally:
        parts.close()
