"""Renewing a treatment from the resident's file, driven through Textual's pilot at 80x24
with the real pieces (pcscd and a virtual CPS card, the printer emulator, a SQLite file):
the README's figure for a 6-line treatment renewed unchanged, keys counted one by one; then
ticking lines, stopping one with a reason and taking the stop back."""

from __future__ import annotations

import html
import re
from datetime import timedelta
from decimal import Decimal

import pytest

from appliance.domain.posology import Duration, Posology
from appliance.domain.prescription import MedicationLine, State
from appliance.domain.qr import EpuPayload
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
    sign_with_card,
    text_of,
    until,
)

pytestmark = pytest.mark.integration
SHARED_FIXTURES = (kiosk_bdpm, kiosk_env)  # from test_kiosk, for pytest to find them

MAX_KEYSTROKES = 8
TREATMENT = (("DOLIPRANE 1000 mg, comprimé", "60234100", ("matin", "midi", "soir")),
             ("KARDEGIC 75 mg, poudre pour solution buvable en sachet-dose", "64755969",
              ("midi",)),
             ("LEVOTHYROX 50 microgrammes, comprimé sécable", "65143010", ("matin",)),
             ("LASILIX 40 mg, comprimé sécable", "65606743", ("matin",)),
             ("INEXIUM 20 mg, comprimé gastro-résistant", "64578892", ("soir",)),
             ("SERESTA 10 mg, comprimé", "68269975", ("soir",)))


def six_lines() -> list[MedicationLine]:
    return [MedicationLine(label=label, cis=cis, quantity=Decimal(1),
                           posology=Posology(dose=Decimal(1),
                                             unit="sachet" if "sachet" in label else "comprimé",
                                             moments=moments, duration=Duration(1, "mois")))
            for label, cis, moments in TREATMENT]


def test_renewing_a_six_line_treatment_unchanged_within_8_keystrokes(kiosk_env, card_trust):
    set_am(kiosk_env)
    kiosk_env.vcards.insert("physician")
    first = sign_with_card(kiosk_env, card_trust, lines=six_lines(), resident=0)
    app, parts = make_kiosk(kiosk_env)
    counted = {}

    async def scenario():
        async with app.run_test(size=(80, 24)) as pilot:
            await log_in(pilot, app)
            await until(pilot, lambda: len(options(app, "#residents")) == 6)
            keys = Keys(pilot)                                   # the count starts here
            await keys.type("dup")
            await until(pilot, lambda: len(options(app, "#residents")) == 1)
            await keys("enter")                                  # the resident's file
            await until(pilot, lambda: screen_name(app) == "ResidentScreen")
            await until(pilot, lambda: len(app.screen.treatment.current) == 6,
                        what="the current treatment")
            rows = options(app, "#treatment")
            assert rows[0].startswith("[ ] DOLIPRANE 1000 mg : 1 comprimé matin, midi et soir fin ")
            assert all(len(row) <= 76 for row in rows)
            assert all("fin " in row and "Dr DUVAL" in row for row in rows[:6])
            assert "Traitement en cours : 6 ligne(s)" in text_of(app, "#treatment-title")
            await keys("f5")                                     # renew, all lines
            await until(pilot, lambda: screen_name(app) == "EditorScreen")
            lines = options(app, "#lines")
            assert len(lines) == 6 and all(row.split(". ", 1)[1].startswith("R ")
                                           for row in lines)
            assert "Renouvellement : 6 ligne(s)" in text_of(app, "#message")
            await keys("f10")                                    # review
            await until(pilot, lambda: screen_name(app) == "ReviewScreen")
            await until(pilot, lambda: "SERESTA" in text_of(app, "#preview"))
            await keys("enter")                                  # sign with the card, print
            await until(pilot, lambda: screen_name(app) == "DoneScreen", timeout=20)
            counted["keys"] = keys.count
            counted["pid"] = app.screen.result.prescription.id
            await until(pilot, lambda: app.screen.job_status == "done", timeout=20,
                        what="the printed order")

    try:
        run(scenario())
    finally:
        parts.close()

    count = counted["keys"]
    print(f"\nkeystrokes from the home screen to the printed renewal of 6 lines: {count}")
    assert count <= MAX_KEYSTROKES
    renewal = kiosk_env.uow.prescriptions.get(counted["pid"])
    assert renewal.state is State.SIGNED and renewal.lines == first.lines
    assert renewal.resident.ins == first.resident.ins
    today = renewal.signed_at.date()
    running = kiosk_env.uow.views.current_treatment(first.resident.ins.value, today)
    assert {t.prescription_id for t in running} == {renewal.id}  # the old lines replaced
    assert [s.replaced_by for s in kiosk_env.uow.stopped_lines.of(first.id)] == [renewal.id] * 6
    assert running[0].end >= today + timedelta(days=27)
    jobs = kiosk_env.emulator.wait_for_jobs(2)                   # the first order, then this
    printed = next(job for job in jobs if any("SERESTA" in line for line in job.text)
                   and EpuPayload.decode(job.qr_texts[0]).prescription_id == renewal.id)
    assert sum("1 comprimé le soir" in line.replace("\u00a0", " ") for line in printed.text) >= 2


def test_tick_lines_stop_one_with_a_reason_and_renew_the_ticked(kiosk_env, card_trust):
    set_am(kiosk_env)
    kiosk_env.vcards.insert("physician")
    first = sign_with_card(kiosk_env, card_trust, lines=six_lines(), resident=1)
    app, parts = make_kiosk(kiosk_env)
    made = {}

    async def scenario():
        async with app.run_test(size=(80, 24)) as pilot:
            await log_in(pilot, app)
            await until(pilot, lambda: len(options(app, "#residents")) == 6)
            await pilot.press(*"martin", "enter")
            await until(pilot, lambda: len(app.screen.treatment.current) == 6)
            await pilot.press("f7")                              # not in the treatment list
            await until(pilot, lambda: "traitement en cours" in text_of(app, "#message"))
            await pilot.press("shift+tab")                       # to the treatment
            await until(pilot, lambda: "Posologie : 1 comprimé matin, midi et soir"
                        in text_of(app, "#detail"))
            await pilot.press("down", "f7")                      # stop KARDEGIC
            await until(pilot, lambda: screen_name(app) == "StopLineScreen")
            await pilot.press("enter")                           # no reason: refused
            await until(pilot, lambda: "obligatoire" in text_of(app, "#message"))
            await pilot.press(*"chute", "enter")
            await until(pilot, lambda: screen_name(app) == "ResidentScreen")
            await until(pilot, lambda: len(app.screen.treatment.current) == 5)
            assert "Ligne arrêtée : KARDEGIC 75 mg" in text_of(app, "#message")
            rows = options(app, "#treatment")
            assert "Arrêtés, renouvelés ou terminés :" in rows
            assert any("KARDEGIC 75 mg - ARRÊTÉE le" in row and row.endswith(": chute")
                       for row in rows)
            assert not any("KARDEGIC" in row for row in rows[:5])
            await pilot.press("home", "space", "down", "down", "space")
            await until(pilot, lambda: "2 cochée(s)" in text_of(app, "#treatment-title"))
            assert options(app, "#treatment")[0].startswith("[x] DOLIPRANE")
            assert options(app, "#treatment")[2].startswith("[x] LASILIX")
            await pilot.press("f5")                              # renew the ticked ones
            await until(pilot, lambda: screen_name(app) == "EditorScreen")
            lines = options(app, "#lines")
            assert len(lines) == 2 and "R  DOLIPRANE" in lines[0] and "R  LASILIX" in lines[1]
            made["draft"] = app.screen.draft.id

    try:
        run(scenario())
    finally:
        parts.close()
    draft = kiosk_env.uow.prescriptions.get(made["draft"])
    assert [line.cis for line in draft.lines] == ["60234100", "65606743"]
    stopped = kiosk_env.uow.stopped_lines.of(first.id)
    assert [(s.line, s.reason, s.replaced_by) for s in stopped] == [(1, "chute", None)]
    entry = next(e for e in reversed(kiosk_env.uow.audit.entries())
                 if e.action == "prescription.line_stopped")
    assert (entry.subject, entry.details) == (first.id, {"line": 2})


def screen_text(app) -> str:
    """What the terminal shows, as text (from the screenshot Textual exports)."""
    svg = app.export_screenshot()
    rows: dict[str, list[str]] = {}
    for y, text in re.findall(r'<text[^>]* y="([\d.]+)"[^>]*>([^<]*)</text>', svg):
        rows.setdefault(y, []).append(html.unescape(text).replace("\u00a0", " "))
    return "\n".join("".join(parts) for _, parts in sorted(rows.items(),
                                                           key=lambda r: float(r[0])))


def test_a_stop_typed_with_brackets_shows_as_typed_and_can_be_taken_back(kiosk_env, card_trust):
    set_am(kiosk_env)
    kiosk_env.vcards.insert("physician")
    first = sign_with_card(kiosk_env, card_trust, lines=six_lines(), resident=1)
    app, parts = make_kiosk(kiosk_env)
    reason = "chute [/b] [x]"                     # text, never read as markup

    async def scenario():
        async with app.run_test(size=(80, 24)) as pilot:
            await log_in(pilot, app)
            await until(pilot, lambda: len(options(app, "#residents")) == 6)
            await pilot.press(*"martin", "enter")
            await until(pilot, lambda: len(app.screen.treatment.current) == 6)
            await pilot.press("shift+tab", "space", "down", "f7")  # tick DOLIPRANE, stop KARDEGIC
            await until(pilot, lambda: screen_name(app) == "StopLineScreen")
            await pilot.press(*reason, "enter")
            await until(pilot, lambda: len(app.screen.treatment.current) == 5)
            await pilot.pause()
            shown = screen_text(app)
            assert "[x] DOLIPRANE" in shown and f": {reason}" in shown
            await pilot.press("end")                              # the stopped line
            await until(pilot, lambda: "F7 : reprendre" in text_of(app, "#detail"))
            assert reason in text_of(app, "#detail")
            await pilot.press("f7")
            await until(pilot, lambda: screen_name(app) == "ConfirmScreen")
            await pilot.press("enter")
            await until(pilot, lambda: len(app.screen.treatment.current) == 6)
            assert "Ligne reprise : KARDEGIC 75 mg" in text_of(app, "#message")
            assert not any("ARRÊTÉE" in row for row in options(app, "#treatment"))

    try:
        run(scenario())
    finally:
        parts.close()
    assert kiosk_env.uow.stopped_lines.of(first.id) == []
    actions = [(e.action, e.details) for e in kiosk_env.uow.audit.entries()
               if e.subject == first.id and e.action.startswith("prescription.line_")]
    assert actions == [("prescription.line_stopped", {"line": 2}),
                       ("prescription.line_resumed", {"line": 2})]
