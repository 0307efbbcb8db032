"""The kiosk, driven through Textual's pilot at 80x24 with the real pieces: pcscd and a
virtual CPS card, the printer emulator over TCP, a real SQLite store, a BDPM referential.

The fixtures here (``kiosk_env``, ``kiosk``) are shared with the other ``test_kiosk_*``
modules."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from appliance.bootstrap import App, bootstrap
from appliance.config import load_settings
from appliance.services.referential import import_bdpm
from appliance.tui.demo_data import demo_residents

pytestmark = pytest.mark.integration

# Real BDPM rows carried in the repository (tests/data/README.md): every specialty of a few
# brands, so that the searches below rank as in the full BDPM, whatever lies beside the clone.
TEST_BDPM = Path(__file__).resolve().parents[1] / "data" / "bdpm"
AM = "751234567"


@pytest.fixture(scope="session")
def kiosk_bdpm():
    return TEST_BDPM


@dataclass
class KioskEnv:
    app: App
    emulator: Any
    data_dir: Path
    vcards: Any

    @property
    def uow(self):
        return self.app.uow

    @property
    def store(self):
        """The SQLite connection under ``uow``, for the tests' own queries."""
        return self.app.uow.store

    def jobs(self) -> list[dict]:
        return self.store.query("SELECT * FROM print_jobs ORDER BY id")


def write_settings(data_dir: Path, pki_paths, printer_uri: str) -> Path:
    from appliance.config import write_config

    return write_config(data_dir / "ordo.toml", {
        "establishment": {"name": "EHPAD Test", "finess": "750000001"},
        "printer": {"uri": printer_uri},
        "registry": {"url": "http://127.0.0.1:9/fhir"},
        "security": {"trust_roots": [str(p) for p in pki_paths.trust_roots],
                     "crls": [str(p) for p in pki_paths.crls]},
    })


@pytest.fixture
def kiosk_env(card_data_dir, card_pki, vcards, emulators, kiosk_bdpm):
    emulator = emulators()
    toml = write_settings(card_data_dir, card_pki, emulator.uri)
    app = bootstrap(load_settings(config_file=toml, data_dir=card_data_dir, environ={}))
    import_bdpm(card_data_dir, kiosk_bdpm, referential_date="2022-06-03")
    with app.uow:
        app.uow.residents.upsert(demo_residents())
        app.uow.commit()
    yield KioskEnv(app, emulator, card_data_dir, vcards)
    app.close()


def set_am(env: KioskEnv, profile: str = "physician") -> None:
    from appliance.domain.people import Practitioner, Role
    from appliance.services import prescribing
    from drivers.card.pki import PROFILES

    p = PROFILES[profile]
    prescribing.add_practitioner(env.uow, Practitioner(
        id_nat_ps=p.id_nat_ps, last_name=p.family_name, first_name=p.given_name,
        profession=p.profession, role=Role.PRESCRIBER, am=AM), actor="test")


class Keys:
    """Presses keys through the pilot and counts them."""

    def __init__(self, pilot) -> None:
        self.pilot = pilot
        self.count = 0

    async def __call__(self, *keys: str) -> None:
        self.count += len(keys)
        await self.pilot.press(*keys)

    async def type(self, text: str) -> None:
        await self(*[{" ": "space", ",": "comma", "-": "minus", "/": "slash", ".": "full_stop"}
                     .get(c, c) for c in text])


async def until(pilot, condition, timeout: float = 15.0, what: str = "") -> None:
    """Wait (not sleep) until ``condition()`` holds."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if condition():
                return
        except Exception:  # a widget not mounted yet
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or condition}")
        await pilot.pause(0.02)


def screen_name(app) -> str:
    return type(app.screen).__name__


def text_of(app, selector: str) -> str:
    from textual.widgets import Static

    return str(app.screen.query_one(selector, Static).render())


def options(app, selector: str) -> list[str]:
    from textual.widgets import OptionList

    listing = app.screen.query_one(selector, OptionList)
    return [str(listing.get_option_at_index(i).prompt) for i in range(listing.option_count)]


def run(coro) -> Any:
    return asyncio.run(coro)


def make_kiosk(env: KioskEnv, **options):
    from appliance.commands.kiosk import build_context
    from appliance.tui.app import make_app

    options.setdefault("console", False)
    ctx, parts = build_context(env.app, **options)
    return make_app(ctx), parts


async def log_in(pilot, app, pin: str = "1234", home: str = "HomeScreen") -> None:
    await until(pilot, lambda: screen_name(app) == "PinScreen", what="the PIN screen")
    await pilot.press(*pin, "enter")
    await until(pilot, lambda: screen_name(app) == home, what=home)


# -- tests ---------------------------------------------------------------------------------------
def test_lock_screen_then_pin_opens_home(kiosk_env):
    app, parts = make_kiosk(kiosk_env)

    async def scenario():
        async with app.run_test(size=(80, 24)) as pilot:
            await until(pilot, lambda: screen_name(app) == "LockScreen")
            assert "Insérez votre carte CPS" in text_of(app, "#lock-prompt")
            await until(pilot, lambda: "Carte absente" in app.status_line
                        and "BDPM 03/06/2022" in app.status_line, what="the status bar")
            kiosk_env.vcards.insert("physician")
            await log_in(pilot, app, home="AmScreen")  # first login: no N° AM on record
            await pilot.press(*AM, "enter")
            await until(pilot, lambda: screen_name(app) == "HomeScreen")
            assert "Claire DUVAL (médecin)" in text_of(app, "#title")
            await until(pilot, lambda: len(options(app, "#residents")) == 6)
            await until(pilot, lambda: "Carte présente" in text_of(app, "StatusBar"))
            bar = app.screen.query_one("StatusBar").region
            assert (bar.y, bar.height) == (22, 1)                 # right above the footer

    try:
        run(scenario())
    finally:
        parts.close()
    doctor = kiosk_env.uow.practitioners.get("899700000013")
    assert doctor is not None and doctor.am == AM


def sign_with_card(env: KioskEnv, trust, lines=None, resident=0, pin: str = "1234"):
    """A prescription signed through the service with the card in slot 0 (as the kiosk
    does), for the tests that start from a signed order."""
    from appliance.domain.prescription import ActLine
    from appliance.services import prescribing
    from appliance.services.drafts import Draft

    session = env.app.login(pin, slot=0)
    try:
        prescribing.register_login(env.uow, session)
        draft = Draft(resident=demo_residents()[resident],
                      lines=list(lines or [ActLine(text="Kinésithérapie : 10 séances")]))
        return prescribing.prescribe(env.uow, session, draft,
                                     ids=prescribing.IdAllocator()).prescription
    finally:
        session.logout()


def test_wrong_pin_shows_the_tries_left(kiosk_env):
    set_am(kiosk_env)
    kiosk_env.vcards.insert("physician")
    app, parts = make_kiosk(kiosk_env, console=True)      # as on the Linux console

    async def scenario():
        async with app.run_test(size=(80, 24)) as pilot:
            await until(pilot, lambda: screen_name(app) == "PinScreen")
            assert app.theme == "ansi-dark"
            await until(pilot, lambda: "3 essai(s) de code PIN" in text_of(app, "#pin-holder"))
            await pilot.press(*"9999", "enter")
            await until(pilot, lambda: "2 essai(s) restant(s)" in text_of(app, "#message"))
            assert screen_name(app) == "PinScreen"
            await pilot.press(*"0000", "enter")
            await until(pilot, lambda: "1 essai(s) restant(s)" in text_of(app, "#message"))
            await pilot.press(*"1234", "enter")                  # the counter resets
            await until(pilot, lambda: screen_name(app) == "HomeScreen")

    try:
        run(scenario())
    finally:
        parts.close()
    from appliance.store import audit

    actions = [e.action for e in audit.entries(kiosk_env.store)]
    assert actions.count("auth.wrong_pin") == 2 and "auth.login" in actions


def test_residents_search_by_name_room_and_without_accents(kiosk_env):
    set_am(kiosk_env)
    kiosk_env.vcards.insert("physician")
    app, parts = make_kiosk(kiosk_env)

    async def search(pilot, text: str) -> list[str]:
        app.screen.query_one("#search").value = text           # typing is tested elsewhere
        await until(pilot, lambda: app.screen.shown_for == text)
        return options(app, "#residents")

    async def scenario():
        async with app.run_test(size=(80, 24)) as pilot:
            await log_in(pilot, app)
            await until(pilot, lambda: len(options(app, "#residents")) == 6)
            rows = options(app, "#residents")
            assert rows[0].startswith("DUPONT née LEFEBVRE Marie Louise")  # used name first
            assert all(len(row) <= 78 for row in rows)
            assert [r.split()[0] for r in await search(pilot, "lamb")] == ["LAMBERT"]
            assert [r.split()[0] for r in await search(pilot, "23b")] == ["LAMBERT"]
            assert [r.split()[0] for r in await search(pilot, "andre")] == ["PETIT"]  # André
            assert [r.split()[0] for r in await search(pilot, "lefebvre")] == ["DUPONT"]
            await search(pilot, "zzz")
            assert "Aucun résident" in text_of(app, "#message")
            await search(pilot, "mar")                    # MARTIN and Marie Louise DUPONT
            await pilot.press("down", "enter")
            await until(pilot, lambda: screen_name(app) == "ResidentScreen")
            assert "MARTIN Jean" in text_of(app, "#title")

    try:
        run(scenario())
    finally:
        parts.close()


def test_card_removal_locks_and_the_draft_comes_back(kiosk_env):
    from appliance.services import prescribing

    set_am(kiosk_env)
    kiosk_env.vcards.insert("physician")
    app, parts = make_kiosk(kiosk_env)

    async def scenario():
        async with app.run_test(size=(80, 24)) as pilot:
            await log_in(pilot, app)
            await until(pilot, lambda: len(options(app, "#residents")) == 6)
            await pilot.press("f2")
            await until(pilot, lambda: screen_name(app) == "EditorScreen")
            draft_id = app.screen.draft.id
            await pilot.press("f4", *"ECG", "enter")            # one line, saved at once
            await until(pilot, lambda: len(app.screen.draft.lines) == 1)
            await pilot.press("f2", *"doli")
            # the list must be the one for "doli", not an earlier prefix's answer that a
            # later one replaces (and resets the highlight) while the keys below are pressed
            await until(pilot, lambda: app.screen.results_for == "doli"
                        and len(options(app, "#results")) > 2)
            await pilot.press("enter", "2")                      # typed, not yet added
            await until(pilot, lambda: (prescribing.draft_form(kiosk_env.uow, draft_id)
                                        or {}).get("posology") == "2",
                        what="the half-typed line saved")
            kiosk_env.vcards.remove()
            await until(pilot, lambda: screen_name(app) == "LockScreen", timeout=5,
                        what="the lock screen after removal")
            assert len(app.screen_stack) == 1 and app.session is None
            assert "Carte retirée" in text_of(app, "#lock-reason")

            kiosk_env.vcards.insert("physician")
            await log_in(pilot, app)
            await until(pilot, lambda: len(options(app, "#drafts")) == 1,
                        what="the draft offered back")
            await pilot.press("f3", "enter")
            await until(pilot, lambda: screen_name(app) == "EditorScreen")
            editor = app.screen
            assert editor.draft.id == draft_id and len(editor.draft.lines) == 1
            assert editor.query_one("#posology").value == "2"
            assert "DOLIPRANE 1000 mg, comprimé" in text_of(app, "#chosen")
            editor.query_one("#posology").focus()
            await pilot.press("enter")
            await until(pilot, lambda: len(editor.draft.lines) == 2)

    try:
        run(scenario())
    finally:
        parts.close()
    from appliance.store import audit

    locks = [e.details.get("reason") for e in audit.entries(kiosk_env.store)
             if e.action == "auth.session_locked"]
    assert locks[0] == "card_removed"


def test_idle_session_locks_and_enter_asks_for_the_pin_again(kiosk_env):
    set_am(kiosk_env)
    kiosk_env.vcards.insert("physician")
    app, parts = make_kiosk(kiosk_env)

    async def scenario():
        async with app.run_test(size=(80, 24)) as pilot:
            await log_in(pilot, app)
            session = app.session
            session.last_activity -= session.idle_timeout_s + 1  # as if idle for 5 minutes
            await until(pilot, lambda: screen_name(app) == "LockScreen", timeout=5)
            assert session.locked and session.lock_reason == "idle"
            assert "inactivité" in text_of(app, "#lock-reason")
            await pilot.press("enter")                           # the card is still in
            await until(pilot, lambda: screen_name(app) == "PinScreen")

    try:
        run(scenario())
    finally:
        parts.close()


def test_nurse_cannot_write_or_sign_but_reprints_a_duplicate(kiosk_env, card_trust):
    from appliance.services import prescribing
    from appliance.services.prescribing import Forbidden

    set_am(kiosk_env)
    kiosk_env.vcards.insert("physician")
    signed = sign_with_card(kiosk_env, card_trust)
    kiosk_env.vcards.remove()
    kiosk_env.vcards.insert("nurse")

    nurse = kiosk_env.app.login("1234", slot=0)   # the service refuses
    try:
        with pytest.raises(Forbidden):
            prescribing.new_draft(kiosk_env.uow, nurse, demo_residents()[0].ins.value,
                                  ids=prescribing.IdAllocator())
        with pytest.raises(Forbidden):
            prescribing.cancel(kiosk_env.uow, nurse, signed.id, "erreur")
        with pytest.raises(Forbidden):
            prescribing.update_draft(kiosk_env.uow, nurse, signed)
    finally:
        nurse.logout()

    app, parts = make_kiosk(kiosk_env)

    async def scenario():
        async with app.run_test(size=(80, 24)) as pilot:
            await log_in(pilot, app)                             # no N° AM asked of a nurse
            assert "Luc BERNARD (infirmier)" in text_of(app, "#title")
            footer = " ".join(str(k.render()) for k in app.screen.query("FooterKey"))
            assert "Nouvelle" not in footer
            await until(pilot, lambda: len(options(app, "#residents")) == 6)
            await pilot.press("f2")                              # nothing happens
            await pilot.pause(0.3)
            assert screen_name(app) == "HomeScreen"
            await pilot.press("enter")
            await until(pilot, lambda: screen_name(app) == "ResidentScreen")
            await until(pilot, lambda: len(options(app, "#rx")) == 1)
            await pilot.press("f2", "f8")                        # hidden for a nurse
            await pilot.pause(0.3)
            assert screen_name(app) == "ResidentScreen"
            await pilot.press("f9")
            await until(pilot, lambda: "Duplicata demandé" in text_of(app, "#message"))
            await until(pilot, lambda: [j["status"] for j in kiosk_env.jobs()]
                        == ["queued", "done"] or [j["status"] for j in kiosk_env.jobs()]
                        == ["done", "done"], what="the duplicate printed")

    try:
        run(scenario())
    finally:
        parts.close()
    jobs = kiosk_env.jobs()
    assert jobs[-1]["kind"] == "duplicate" and jobs[-1]["requested_by"] == "899700000021"
    printed = kiosk_env.emulator.wait_for_jobs(2)
    assert any("DUPLICATA" in line for line in printed[-1].text)
    assert signed.prescriber.id_nat_ps == "899700000013"


def test_physician_cancels_with_a_reason(kiosk_env, card_trust):
    set_am(kiosk_env)
    kiosk_env.vcards.insert("physician")
    signed = sign_with_card(kiosk_env, card_trust, resident=1)
    app, parts = make_kiosk(kiosk_env)

    async def scenario():
        async with app.run_test(size=(80, 24)) as pilot:
            await log_in(pilot, app)
            await until(pilot, lambda: len(options(app, "#residents")) == 6)
            await pilot.press(*"martin", "enter")
            await until(pilot, lambda: len(options(app, "#rx")) == 1)
            assert "signée" in options(app, "#rx")[0]
            await pilot.press("f8")
            await until(pilot, lambda: screen_name(app) == "CancelScreen")
            await pilot.press("enter")                           # no reason: refused
            await until(pilot, lambda: "obligatoire" in text_of(app, "#message"))
            await pilot.press(*"erreur de patient", "enter")
            await until(pilot, lambda: "annulée" in text_of(app, "#message"))
            await until(pilot, lambda: "annulée" in options(app, "#rx")[0])
            assert "erreur de patient" in text_of(app, "#detail")

    try:
        run(scenario())
    finally:
        parts.close()
    row = kiosk_env.store.query("SELECT state, cancel_reason FROM prescriptions WHERE id = ?",
                                (signed.id,))[0]
    assert row == {"state": "cancelled", "cancel_reason": "erreur de patient"}
    assert kiosk_env.store.query("SELECT kind FROM outbox ORDER BY seq") == [
        {"kind": "create"}, {"kind": "cancel"}]


def test_sync_screen_shows_refused_records_and_substitutions(kiosk_env, card_trust):
    set_am(kiosk_env)
    kiosk_env.vcards.insert("physician")
    signed = sign_with_card(kiosk_env, card_trust)
    with kiosk_env.store.write() as db:
        db.execute("UPDATE outbox SET status = 'quarantined', last_error = ?",
                   ["registry refused (422): bad INS"])
        db.execute(
            "INSERT INTO dispensations (registry_id, prescription_id, line_no, complete,"
            " product_label, substituted, substitution_type, handed_over_at, received_at,"
            " resource) VALUES ('MD1', ?, 1, 1, 'PARACETAMOL BIOGARAN 1 g', 1, 'G',"
            " '2026-11-25T10:00:00+00:00', '2026-11-25T10:05:00+00:00', '{}')", [signed.id])
    app, parts = make_kiosk(kiosk_env)

    async def scenario():
        async with app.run_test(size=(80, 24)) as pilot:
            await log_in(pilot, app)
            await until(pilot, lambda: "1 rejet" in app.status_line, what="the status bar")
            await pilot.press("f6")
            await until(pilot, lambda: "quarantaine) : 1" in text_of(app, "#sync"))
            text = text_of(app, "#sync")
            assert "bad INS" in text
            assert "substitution -> PARACETAMOL BIOGARAN 1 g" in text
            assert "ch. 12 DUPONT Marie Louise" in text

    try:
        run(scenario())
    finally:
        parts.close()


def test_editor_scan_device_flags_renewals_and_delete(kiosk_env):
    from appliance.domain.prescription import DeviceLine, NonSubstitution
    from appliance.services import prescribing

    set_am(kiosk_env)
    kiosk_env.vcards.insert("physician")
    app, parts = make_kiosk(kiosk_env)
    scan = "]d2010340093595583817261231" + "10LOT42"           # a GS1 DataMatrix, typed

    async def scenario():
        async with app.run_test(size=(80, 24)) as pilot:
            await log_in(pilot, app)
            await until(pilot, lambda: len(options(app, "#residents")) == 6)
            await pilot.press("f2")
            await until(pilot, lambda: screen_name(app) == "EditorScreen")
            editor = app.screen
            await pilot.press(*"kardegic cp")                    # no such form: a hint
            await until(pilot, lambda: any("« kardegic » existe en poudre" in option
                                           for option in options(app, "#results")))
            editor.query_one("#search").value = ""
            await pilot.press(*scan, "enter")                    # Enter before any result
            await until(pilot, lambda: "DOLIPRANE 1000 mg, comprimé" in text_of(app, "#chosen"))
            await pilot.press("f6", "f7")                        # ALD, non substituable (MTE)
            assert "F6 ALD, F7 non substituable (MTE)" in text_of(app, "#flags")
            await pilot.press("f10")                             # a line is half typed
            await until(pilot, lambda: "Une ligne est en cours" in text_of(app, "#message"))
            await pilot.press(*"1-0-1 1m", "tab", "2", "enter")  # 2 boxes
            await until(pilot, lambda: len(editor.draft.lines) == 1)
            await pilot.press("f3", *"Fauteuil roulant", "enter", "enter", "f5", "f5")
            await until(pilot, lambda: len(editor.draft.lines) == 2)
            assert "Renouvellements (ligne 2) : 2" in text_of(app, "#flags")  # this line
            await pilot.press("f4", *"Bilan", "enter")
            await until(pilot, lambda: len(editor.draft.lines) == 3)
            assert "Renouvellements (ligne 3) : 0" in text_of(app, "#flags")
            search = editor.query_one("#search")
            search.value = "Kiné\x1b[2J 10 séances"                # pasted, with an ESC
            await pilot.press("enter")
            await until(pilot, lambda: "Saisie refusée - Acte" in text_of(app, "#message")
                        and "U+001B" in text_of(app, "#message"))
            assert len(editor.draft.lines) == 3
            search.value = ""
            await pilot.press("f8")                              # removes the last line
            await until(pilot, lambda: len(editor.draft.lines) == 2)
            await until(pilot, lambda: len(kiosk_env.store.query(
                "SELECT body FROM prescriptions WHERE body LIKE '%Fauteuil%'"
                " AND body NOT LIKE '%Bilan%' AND body LIKE '%\"renewals\": 2%'")) == 1,
                        what="the draft saved as typed")
            await pilot.press("escape")
            await until(pilot, lambda: screen_name(app) == "HomeScreen")
            return editor.draft.id

    try:
        draft_id = run(scenario())
    finally:
        parts.close()
    draft = kiosk_env.uow.prescriptions.get(draft_id)
    med, device = draft.lines
    assert med.cip13 == "3400935955838" and med.cis == "60234100"      # the scanned box
    assert med.ald and med.non_substitution is NonSubstitution.MTE
    assert med.posology.describe() == "1 comprimé matin et soir pendant 1 mois"
    assert str(med.quantity) == "2"
    assert isinstance(device, DeviceLine) and device.label == "Fauteuil roulant"
    assert (med.renewals, device.renewals) == (0, 2)
    form = prescribing.draft_form(kiosk_env.uow, draft_id)       # left in act mode, empty
    assert form["mode"] == "act" and not (form["search"] or form["posology"])
