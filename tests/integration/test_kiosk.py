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
from appliance.store import repositories
from appliance.tui.demo_data import demo_residents, write_bdpm_subset, write_fallback_bdpm

pytestmark = pytest.mark.integration

REAL_BDPM = Path(__file__).resolve().parents[3] / "shared" / "data" / "bdpm"
# Every specialty whose name starts with these: the searches below rank as in the full BDPM.
BRANDS = ("DOLIPRANE", "KARDEGIC", "LEVOTHYROX", "SERESTA", "LASILIX", "INEXIUM", "MOVICOL",
          "ELIQUIS", "AMOXICILLINE")
AM = "751234567"


@pytest.fixture(scope="session")
def kiosk_bdpm(tmp_path_factory):
    folder = tmp_path_factory.mktemp("kiosk-bdpm") / "bdpm"
    if REAL_BDPM.is_dir():
        return write_bdpm_subset(REAL_BDPM, folder, BRANDS)
    return write_fallback_bdpm(folder)


@dataclass
class KioskEnv:
    app: App
    emulator: Any
    data_dir: Path
    vcards: Any

    @property
    def store(self):
        return self.app.store

    def jobs(self) -> list[dict]:
        return self.store.query("SELECT * FROM print_jobs ORDER BY id")


def write_settings(data_dir: Path, pki_paths, printer_uri: str) -> Path:
    toml = data_dir / "ordo.toml"
    roots = ", ".join(f'"{p}"' for p in pki_paths.trust_roots)
    crls = ", ".join(f'"{p}"' for p in pki_paths.crls)
    toml.write_text(
        '[establishment]\nname = "EHPAD Test"\nfiness = "750000001"\n'
        f'[printer]\nuri = "{printer_uri}"\n'
        '[registry]\nurl = "http://127.0.0.1:9/fhir"\n'
        f"[security]\ntrust_roots = [{roots}]\ncrls = [{crls}]\n", "utf-8")
    return toml


@pytest.fixture
def kiosk_env(card_data_dir, card_pki, vcards, emulators, kiosk_bdpm):
    emulator = emulators()
    toml = write_settings(card_data_dir, card_pki, emulator.uri)
    app = bootstrap(load_settings(config_file=toml, data_dir=card_data_dir, environ={}))
    import_bdpm(card_data_dir, kiosk_bdpm, referential_date="2022-06-03")
    with app.store.write() as db:
        repositories.upsert_residents(db, demo_residents())
    yield KioskEnv(app, emulator, card_data_dir, vcards)
    app.close()


def set_am(env: KioskEnv, profile: str = "physician") -> None:
    from appliance.domain.people import Practitioner, Role
    from appliance.services import prescribing
    from drivers.card.pki import PROFILES

    p = PROFILES[profile]
    prescribing.add_practitioner(env.store, Practitioner(
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

    ctx, parts = build_context(env.app, console=False, **options)
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
            await until(pilot, lambda: "Carte : absente" in app.status_line
                        and "BDPM 03/06/2022" in app.status_line, what="the status bar")
            kiosk_env.vcards.insert("physician")
            await log_in(pilot, app, home="AmScreen")  # first login: no N° AM on record
            await pilot.press(*AM, "enter")
            await until(pilot, lambda: screen_name(app) == "HomeScreen")
            assert "Claire DUVAL (médecin)" in text_of(app, "#title")
            await until(pilot, lambda: len(options(app, "#residents")) == 6)
            await until(pilot, lambda: "Carte : présente" in app.status_line)

    try:
        run(scenario())
    finally:
        parts.close()
    doctor = repositories.get_practitioner(kiosk_env.store, "899700000013")
    assert doctor is not None and doctor.am == AM
