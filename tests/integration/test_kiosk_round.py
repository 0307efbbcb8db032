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


def test_an_empty_draft_left_with_escape_is_never_listed(kiosk_env):
    """F2 then Échap with no line discards the draft: neither the home screen nor the
    resident's file lists it, not even for a moment."""
    app, parts = physician_kiosk(kiosk_env)

    async def never_listed(pilot, selector: str, seconds: float = 1.0) -> None:
        for _ in range(int(seconds / 0.05)):
            assert not any("brouillon" in row or "ligne(s)" in row
                           for row in options(app, selector)), options(app, selector)
            await pilot.pause(0.05)

    async def scenario():
        async with app.run_test(size=(80, 24)) as pilot:
            await home(pilot, app)
            for _ in range(3):
                await pilot.press("f2")
                await until(pilot, lambda: screen_name(app) == "EditorScreen")
                await pilot.press("escape")
                await until(pilot, lambda: screen_name(app) == "HomeScreen")
                await never_listed(pilot, "#drafts", 0.5)
            await until(pilot, lambda: not drafts_in_store(kiosk_env), what="no draft kept")
            await pilot.press("enter")                              # DUPONT's file
            await until(pilot, lambda: screen_name(app) == "ResidentScreen")
            await pilot.press("f2")
            await until(pilot, lambda: screen_name(app) == "EditorScreen")
            await pilot.press("escape")
            await until(pilot, lambda: screen_name(app) == "ResidentScreen")
            await never_listed(pilot, "#rx")

    try:
        run(scenario())
    finally:
        parts.close()
    from appliance.store import audit

    actions = [e.action for e in audit.entries(kiosk_env.store)]
    assert actions.count("prescription.draft_discarded") == 4
    assert not drafts_in_store(kiosk_env)


def test_a_draft_is_discarded_on_purpose_after_a_confirmation(kiosk_env):
    app, parts = physician_kiosk(kiosk_env)

    async def scenario():
        async with app.run_test(size=(80, 24)) as pilot:
            await home(pilot, app)
            await pilot.press("f2")
            await until(pilot, lambda: screen_name(app) == "EditorScreen")
            await pilot.press("f4", *"ECG", "enter")
            await until(pilot, lambda: len(app.screen.draft.lines) == 1)
            footer = " ".join(str(k.render()) for k in app.screen.query("FooterKey"))
            assert "Jeter" in footer
            await pilot.press("f11")
            await until(pilot, lambda: screen_name(app) == "ConfirmScreen")
            assert "1 ligne" in text_of(app, "#confirm-text")
            await pilot.press("escape")                             # no: kept
            await until(pilot, lambda: screen_name(app) == "EditorScreen")
            assert len(app.screen.draft.lines) == 1 and len(drafts_in_store(kiosk_env)) == 1
            await pilot.press("f11")
            await until(pilot, lambda: screen_name(app) == "ConfirmScreen")
            await pilot.press("enter")                              # yes
            await until(pilot, lambda: screen_name(app) == "HomeScreen")
            await until(pilot, lambda: "Brouillon jeté" in text_of(app, "#message"))
            await until(pilot, lambda: not drafts_in_store(kiosk_env), what="the draft gone")
            assert not options(app, "#drafts")

    try:
        run(scenario())
    finally:
        parts.close()
    from appliance.store import audit

    assert [e.action for e in audit.entries(kiosk_env.store)].count(
        "prescription.draft_discarded") == 1


def test_an_existing_line_is_edited_in_place(kiosk_env):
    from appliance.domain.prescription import ActLine, MedicationLine

    app, parts = physician_kiosk(kiosk_env)

    async def scenario():
        async with app.run_test(size=(80, 24)) as pilot:
            await home(pilot, app)
            await pilot.press("f2")
            await until(pilot, lambda: screen_name(app) == "EditorScreen")
            editor = app.screen
            await pilot.press(*"doli")
            await until(pilot, lambda: editor.results_for == "doli"
                        and len(options(app, "#results")) > 2)
            await pilot.press("enter", "1", "enter")
            await until(pilot, lambda: len(editor.draft.lines) == 1)
            await pilot.press("f4", *"ECG", "enter", "f2")
            await until(pilot, lambda: len(editor.draft.lines) == 2)
            await pilot.press("up")                                 # the first line
            assert editor.query_one("#lines").highlighted == 0
            await pilot.press("f9")                                 # back in the fields
            await until(pilot, lambda: editor.query_one("#posology").value == "1")
            assert "DOLIPRANE 1000 mg, comprimé" in text_of(app, "#chosen")
            assert "Modification de la ligne 1" in text_of(app, "#message")
            assert editor.focused is editor.query_one("#posology")
            await pilot.press("backspace", *"2 5j", "enter")
            await until(pilot, lambda: "pendant 5 jours" in str(editor.draft.lines[0]
                                                                 .posology.describe()))
            first, second = editor.draft.lines
            assert isinstance(first, MedicationLine) and first.cis == "60234100"
            assert first.posology.describe() == "1 comprimé matin et soir pendant 5 jours"
            assert isinstance(second, ActLine) and second.text == "ECG"
            assert "Ligne 1 modifiée" in text_of(app, "#message")

    try:
        run(scenario())
    finally:
        parts.close()


def test_a_posology_typed_in_the_drug_field_never_picks_a_drug(kiosk_env):
    """After a line, the focus is back in the drug field: "1 matin" typed there and Entrée
    pick nothing and say why."""
    app, parts = physician_kiosk(kiosk_env)

    async def scenario():
        async with app.run_test(size=(80, 24)) as pilot:
            await home(pilot, app)
            await pilot.press("f2")
            await until(pilot, lambda: screen_name(app) == "EditorScreen")
            editor = app.screen
            await pilot.press(*"kard 75")
            await until(pilot, lambda: editor.results_for == "kard 75")
            await pilot.press("enter", "1", "enter")
            await until(pilot, lambda: len(editor.draft.lines) == 1)
            await pilot.press(*"1 matin")
            await until(pilot, lambda: editor.results_for == "1 matin", what="its search")
            await pilot.press("enter")
            await until(pilot, lambda: "posologie" in text_of(app, "#message"))
            assert editor.chosen is None and editor.focused is editor.query_one("#search")
            assert len(editor.draft.lines) == 1

    try:
        run(scenario())
    finally:
        parts.close()


def test_a_restored_draft_resumes_where_the_typing_stopped(kiosk_env):
    app, parts = physician_kiosk(kiosk_env)

    async def scenario():
        async with app.run_test(size=(80, 24)) as pilot:
            await home(pilot, app)
            await pilot.press("f2")
            await until(pilot, lambda: screen_name(app) == "EditorScreen")
            editor = app.screen
            await pilot.press(*"doli")
            await until(pilot, lambda: editor.results_for == "doli"
                        and len(options(app, "#results")) > 2)
            await pilot.press("enter", "2")                         # posology half typed
            await pilot.press("escape")
            await until(pilot, lambda: screen_name(app) == "HomeScreen"
                        and len(options(app, "#drafts")) == 1)
            await pilot.press("f3", "enter")
            await until(pilot, lambda: screen_name(app) == "EditorScreen")
            editor = app.screen
            assert editor.focused is editor.query_one("#posology")
            await pilot.press("space", *"5j", "enter")              # typing goes on
            await until(pilot, lambda: len(editor.draft.lines) == 1)
            assert editor.draft.lines[0].posology.describe() == (
                "1 comprimé matin et soir pendant 5 jours")

    try:
        run(scenario())
    finally:
        parts.close()


def test_messages_are_french_name_the_field_and_never_hide_the_duration(kiosk_env):
    app, parts = physician_kiosk(kiosk_env)

    def message_classes() -> set[str]:
        return set(app.screen.query_one("#message").classes)

    async def scenario():
        async with app.run_test(size=(80, 24)) as pilot:
            await home(pilot, app)
            await pilot.press("f2")
            await until(pilot, lambda: screen_name(app) == "EditorScreen")
            editor = app.screen
            await pilot.press(*"kard 75")
            await until(pilot, lambda: editor.results_for == "kard 75")
            await pilot.press("enter", "1", "space", *"400j", "enter")  # over a year
            await until(pilot, lambda: "Saisie refusée" in text_of(app, "#message"))
            said = text_of(app, "#message")
            assert "Durée" in said and "un nombre entier de 1 à 366" in said, said
            assert "posology" not in said and "whole number" not in said
            refused = message_classes()
            assert "-error" in refused
            await pilot.press(*["backspace"] * 4, *"30j", "enter")
            await until(pilot, lambda: len(editor.draft.lines) == 1)
            assert "-ok" in message_classes() and "-error" not in message_classes()
            row = options(app, "#lines")[0]
            assert len(row) <= 76 and "…" in row, row
            assert row.endswith("1 sachet le matin pendant 30 jours"), row
            await pilot.press("f3", *"Fauteuil roulant", "enter", "1", "0", "enter")
            await until(pilot, lambda: len(editor.draft.lines) == 2)
            assert options(app, "#lines")[1].endswith("Fauteuil roulant, qté 10"), \
                options(app, "#lines")
            footer = app.screen.query_one("Footer").region
            keys = " ".join(str(k.render()) for k in app.screen.query("FooterKey"))
            assert "F8 Suppr " in keys and footer.width == 80

    try:
        run(scenario())
    finally:
        parts.close()


def test_the_pin_screen_agrees_on_the_tries_left_and_warns_before_the_last(kiosk_env):
    app, parts = physician_kiosk(kiosk_env)

    async def scenario():
        async with app.run_test(size=(80, 24)) as pilot:
            await until(pilot, lambda: screen_name(app) == "PinScreen")
            await until(pilot, lambda: "3 essai(s)" in text_of(app, "#pin-holder"))
            await pilot.press(*"9999", "enter")
            await until(pilot, lambda: "2 essai(s) restant(s)" in text_of(app, "#message"))
            assert "2 essai(s) de code PIN" in text_of(app, "#pin-holder")
            await pilot.press(*"0000", "enter")
            await until(pilot, lambda: "1 essai(s) restant(s)" in text_of(app, "#message"))
            assert "dernier essai" in text_of(app, "#message")
            assert "1 essai(s) de code PIN (dernier)" in text_of(app, "#pin-holder")
            await pilot.press(*"1234", "enter")                     # the counter resets
            await until(pilot, lambda: screen_name(app) == "HomeScreen")

    try:
        run(scenario())
    finally:
        parts.close()


def test_lines_typed_into_a_draft_that_vanished_are_saved_in_a_new_one(kiosk_env):
    """Whatever removed the draft from the store behind the editor's back, the next line
    typed is not lost: it lands, with the earlier ones, in a new draft of the resident."""
    app, parts = physician_kiosk(kiosk_env)

    async def scenario():
        async with app.run_test(size=(80, 24)) as pilot:
            await home(pilot, app)
            await pilot.press("f2")
            await until(pilot, lambda: screen_name(app) == "EditorScreen")
            editor = app.screen
            await pilot.press("f4", *"ECG", "enter")
            await until(pilot, lambda: len(editor.draft.lines) == 1)
            gone = editor.draft.id
            await until(pilot, lambda: kiosk_env.store.query(
                "SELECT body FROM prescriptions WHERE id = ? AND body LIKE '%ECG%'",
                [gone]), what="the first line saved")
            with kiosk_env.store.write() as db:
                db.execute("DELETE FROM prescriptions WHERE id = ?", [gone])
            await pilot.press(*"NFS", "enter")
            await until(pilot, lambda: editor.draft.id != gone, what="a new draft")
            assert "nouveau brouillon" in text_of(app, "#message")
            await until(pilot, lambda: kiosk_env.store.query(
                "SELECT id FROM prescriptions WHERE state = 'draft' AND body LIKE '%ECG%'"
                " AND body LIKE '%NFS%'"), what="both lines saved")

    try:
        run(scenario())
    finally:
        parts.close()


def test_a_refresh_keeps_the_resident_highlighted(kiosk_env):
    """The list refreshes on its own (printer, sync, another screen's change): the
    resident the physician moved to stays highlighted, and F2 opens that one."""
    from appliance.tui.messages import DataChanged

    app, parts = physician_kiosk(kiosk_env)

    async def scenario():
        async with app.run_test(size=(80, 24)) as pilot:
            await home(pilot, app)
            await pilot.press("down")                               # LAMBERT
            searched = app.screen.residents
            app.post_message(DataChanged())
            await until(pilot, lambda: app.screen.residents is not searched,
                        what="the list refreshed")
            await pilot.press("f2")
            await until(pilot, lambda: screen_name(app) == "EditorScreen")
            assert app.screen.draft.resident.birth_name == "LAMBERT"

    try:
        run(scenario())
    finally:
        parts.close()
