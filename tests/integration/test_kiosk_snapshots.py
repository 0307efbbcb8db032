"""Snapshots of the kiosk's main screens at 80x24, in colour and as on the Linux console.

Each screen is reached as a physician reaches it (card in the reader, PIN typed, keys
pressed) in the app that ``ordo kiosk`` builds (``bootstrap``, ``build_context`` then ``make_app``),
with data that does not move: a real SQLite store and referential (the BDPM rows carried in
``tests/data``), the ESC/POS printer emulator over TCP, prescriptions signed by the test
PKI's physician card at fixed times with fixed IDs, and the kiosk's clock and ID generator
fixed. One adapter is replaced, through the composition root: the card backend. The virtual
CPS card answers in this process (``VirtualCard`` behind ``CpsCard``: the real card protocol
and signatures), in a reader that the card watcher below reports; no pcscd, so these tests
need no lock.

The console mode is chosen as on the appliance, by ``TERM=linux`` (``build_context`` reads
it): 16 colours, the ``ansi-dark`` theme, ASCII borders and scroll bars. Its screenshots are
reduced to the 16 colours the console shows, as Rich reduces them for ``TERM=linux``.

The reference SVGs (``__snapshots__/test_kiosk_snapshots/``) are reviewed like code;
``pytest --snapshot-update`` writes them again. The tests at the end check, on the 16-colour
screen, that the highlighted row of each list can be told from the others.
"""

from __future__ import annotations

import io
import random
import shutil
import threading
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from appliance.bootstrap import CardBackend, bootstrap
from appliance.config import load_settings
from appliance.domain.people import Practitioner, Role
from appliance.domain.posology import Duration, Posology
from appliance.domain.prescription import ActLine, MedicationLine, State
from appliance.ports.card import CardEvent, CardEventKind
from appliance.ports.clock import iso
from appliance.ports.registry import Dispensation, DispensationPage, RegistryReceipt
from appliance.ports.uow import SyncKeys
from appliance.services import prescribing, sync
from appliance.services.drafts import Draft
from appliance.services.referential import import_bdpm
from appliance.tui.demo_data import demo_residents
from sync.codes import CIP13_SYSTEM

pytestmark = pytest.mark.integration

TEST_BDPM = Path(__file__).resolve().parents[1] / "data" / "bdpm"
READER = "Lecteur CPS (test) 00 00"
PIN = "1234"
AM = "751234567"
NOW = datetime(2026, 11, 25, 7, 45, tzinfo=UTC)        # 08:45 in Paris
SIZE = (80, 24)
MODES = ["colour", "console"]


# -- the card: the virtual CPS card in this process, in one reader ------------------------------
class InProcessReader:
    """The transport of ``CpsCard``: APDUs go straight to a ``VirtualCard``."""

    def __init__(self, card, lock: threading.Lock, reader: str = READER) -> None:
        from drivers.card import cps

        self.vcard, self.reader, self.atr = card, reader, cps.CPX_ATR
        self._lock = lock

    def transmit(self, apdu: bytes) -> bytes:
        with self._lock:
            return self.vcard.handle(apdu)

    def close(self) -> None:
        self.vcard.reset()


class InProcessCards:
    """The ``CardReader`` port of a machine with one reader holding the virtual card of
    ``card_dir``: each ``open`` is a new connection (``CpsCard``) to the same card."""

    def __init__(self, card_dir: Path) -> None:
        from drivers.card.virtual import load_card

        self.vcard = load_card(card_dir, PIN)
        self._lock = threading.Lock()

    def readers(self) -> list[str]:
        return [READER]

    def open(self, slot: int = 0):
        from drivers.card.cps import CpsCard

        card = CpsCard(InProcessReader(self.vcard, self._lock))
        card.select()
        return card


class OneReaderWatcher:
    """The card watcher (``appliance.ports.card.CardWatcher``) of a kiosk with one reader,
    holding a card or not; ``start`` reports the card as the real monitor does."""

    def __init__(self, card_present: bool) -> None:
        self.present = card_present
        self._subscribers: list[Any] = []

    def subscribe(self, callback) -> None:
        self._subscribers.append(callback)

    def start(self) -> None:
        if self.present:
            from drivers.card import cps

            event = CardEvent(CardEventKind.INSERTED, READER, cps.CPX_ATR, 0.0, initial=True)
            for callback in self._subscribers:
                callback(event)

    def stop(self) -> None:
        self._subscribers.clear()

    def cards(self) -> dict[str, bytes]:
        from drivers.card import cps

        return {READER: cps.CPX_ATR} if self.present else {}

    def readers(self) -> list[str]:
        return [READER]

    @property
    def service_up(self) -> bool:
        return True


def physician_cards(card_pki, card_present: bool = True) -> CardBackend:
    """The card backend of the composition root: the test PKI's physician card."""
    return CardBackend(InProcessCards(card_pki.card_dir("physician")),
                       watcher=lambda: OneReaderWatcher(card_present))


def fixed_ids(at: datetime, seed: int):
    """Prescription IDs made at ``at`` (the generator keeps them increasing) from a seeded
    random source."""
    return prescribing.IdAllocator(clock_ms=lambda: int(at.timestamp() * 1000),
                                   random_bytes=random.Random(seed).randbytes)


# -- the data: residents, signed prescriptions, a dispensation, a refusal, a draft ----------------
def _line(label: str, cis: str, dose: str, unit: str, moments: tuple[str, ...],
          days: int | None = None, quantity: int | None = None) -> MedicationLine:
    return MedicationLine(label=label, cis=cis, posology=Posology(
        dose=Decimal(dose), unit=unit, moments=moments,
        duration=Duration(days, "jour") if days else None),
        quantity=None if quantity is None else Decimal(quantity))


LASILIX = ("LASILIX 40 mg, comprimé sécable", "65606743")
KARDEGIC = ("KARDEGIC 75 mg, poudre pour solution buvable en sachet-dose", "64755969")
LEVOTHYROX = ("LEVOTHYROX 50 microgrammes, comprimé sécable", "65143010")


def write_settings(data_dir: Path, card_pki, printer_uri: str) -> Path:
    roots = ", ".join(f'"{p}"' for p in card_pki.trust_roots)
    crls = ", ".join(f'"{p}"' for p in card_pki.crls)
    toml = data_dir / "ordo.toml"
    toml.write_text(
        '[establishment]\nname = "EHPAD Les Tilleuls"\nfiness = "750000001"\n'
        'address = "1 rue des Tilleuls, 75000 Paris"\n'
        f'[printer]\nuri = "{printer_uri}"\n'
        '[registry]\nurl = "http://127.0.0.1:9/fhir"\n'
        f"[security]\ntrust_roots = [{roots}]\ncrls = [{crls}]\n", "utf-8")
    return toml


def fill(data_dir: Path, card_pki) -> None:
    """The store of every snapshot: six residents, three signed prescriptions (one
    dispensed with substitutions, one refused by the registry, one waiting), two drafts."""
    from drivers.card.pki import PROFILES

    app = bootstrap(load_settings(config_file=write_settings(data_dir, card_pki,
                                                             "tcp://127.0.0.1:9"),
                                  data_dir=data_dir, environ={}),
                    card=physician_cards(card_pki))
    try:
        uow = app.uow
        import_bdpm(data_dir, TEST_BDPM, referential_date="2022-06-03")
        residents = demo_residents()
        with uow:
            uow.residents.upsert(residents)
            uow.commit()
        p = PROFILES["physician"]
        prescribing.add_practitioner(uow, Practitioner(
            id_nat_ps=p.id_nat_ps, last_name=p.family_name, first_name=p.given_name,
            profession=p.profession, role=Role.PRESCRIBER, am=AM), actor="test")
        session = app.login(PIN, reader=READER)

        def signed(resident, lines, at: datetime, seed: int):
            return prescribing.prescribe(uow, session, Draft(resident=resident, lines=lines),
                                         ids=fixed_ids(at, seed), now=at).prescription

        try:
            dispensed = signed(residents[0], [
                _line(*LASILIX, "1", "comprimé", ("matin",), 30, 1),
                _line(*KARDEGIC, "1", "sachet", ("midi",), 30, 1),
                ActLine(text="Ionogramme sanguin dans 15 jours")],
                NOW - timedelta(days=2, hours=1), 1)
            refused = signed(residents[1], [_line(*LEVOTHYROX, "1", "comprimé", ("matin",), 90)],
                             NOW - timedelta(days=1, hours=2), 2)
            signed(residents[0], [_line(*LEVOTHYROX, "1", "comprimé", ("matin",), 90)],
                   NOW - timedelta(minutes=40), 3)
            for n, (resident, act) in enumerate([
                    (residents[2], "Bilan de chute : radiographie du bassin"),
                    (residents[3], "Pansement de l'ulcère de jambe tous les 2 jours")]):
                at = NOW - timedelta(minutes=20 - 5 * n)
                draft = prescribing.new_draft(uow, session, resident.ins.value,
                                              ids=fixed_ids(at, 4 + n), now=at)
                prescribing.update_draft(uow, session, replace(draft, lines=(
                    ActLine(text=act),)))
        finally:
            session.logout()

        # What the sync use case writes when the registry acknowledges the first, refuses
        # the second, and the pharmacy dispenses the first with two substitutions.
        acknowledged = NOW - timedelta(days=2)
        pulled = NOW - timedelta(hours=2)
        items = (
            Dispensation(registry_id="MD-0001", prescription_id=dispensed.id, line=1,
                         complete=True, handed_over_at=NOW - timedelta(days=1, hours=3),
                         product_label="FUROSEMIDE ARROW 40 mg, comprimé sécable",
                         product_code="3400936476769",
                         product_system=CIP13_SYSTEM,
                         quantity=Decimal(1), unit="boîte", substituted=True,
                         substitution_type="G", substitution_reason="générique disponible",
                         pharmacy="Pharmacie du Centre"),
            Dispensation(registry_id="MD-0002", prescription_id=dispensed.id, line=2,
                         complete=True, handed_over_at=NOW - timedelta(days=1, hours=3),
                         product_label="PARACETAMOL BIOGARAN 1 g, comprimé",
                         product_code="3400936381865",
                         product_system=CIP13_SYSTEM,
                         quantity=Decimal(1), unit="boîte", substituted=True,
                         substitution_type="G", pharmacy="Pharmacie du Centre"),
        )
        with uow:
            records = {r.prescription_id: r for r in uow.outbox.due(NOW, 10)}
            uow.outbox.acknowledge(records[dispensed.id],
                                   RegistryReceipt("RCPT-0001", acknowledged), acknowledged)
            uow.prescriptions.set_registry_receipt(dispensed.id, "RCPT-0001")
            prescribing.record_transition(
                uow, dispensed.transition(State.REGISTERED, acknowledged), actor="sync")
            uow.outbox.quarantine(records[refused.id],
                                  "registry refused (422): INS inconnu du registre")
            sync.apply_dispensations(uow, DispensationPage(items, "c1", False), pulled)
            uow.meta.set(SyncKeys.LAST_SUCCESS, iso(pulled))
            uow.commit()
    finally:
        app.close()


@pytest.fixture(scope="module")
def snapshot_data(tmp_path_factory, card_pki) -> Path:
    """The data directory every snapshot starts from (copied, never used in place)."""
    data = tmp_path_factory.mktemp("snapshot-data") / "data"
    data.mkdir()
    fill(data, card_pki)
    return data


@dataclass
class Kiosk:
    app: Any
    parts: Any
    root: Any


@pytest.fixture
def kiosk(request, tmp_path, snapshot_data, card_pki, emulators, monkeypatch):
    """``kiosk(mode, card=True)``: the kiosk as ``ordo kiosk`` builds it, on a copy of the
    snapshot data, with the in-process card backend; ``mode`` "console" sets ``TERM=linux``
    before the context is built."""
    from appliance.commands.kiosk import build_context
    from appliance.tui.app import make_app

    made: list[Kiosk] = []

    def make(mode: str, card: bool = True) -> Kiosk:
        monkeypatch.setenv("TERM", "linux" if mode == "console" else "xterm-256color")
        monkeypatch.delenv("NO_COLOR", raising=False)     # Textual would drop the colours
        data = tmp_path / "data"
        shutil.copytree(snapshot_data, data, symlinks=True)
        emulator = emulators()
        toml = write_settings(data, card_pki, emulator.uri)
        root = bootstrap(load_settings(config_file=toml, data_dir=data, environ={}),
                         card=physician_cards(card_pki, card))
        ctx, parts = build_context(root)
        assert ctx.console is (mode == "console")
        # The screens' clock only: the login checks the card's certificates at the real
        # time (the test PKI's are valid from yesterday).
        ctx.now = lambda: NOW
        ctx.ids = fixed_ids(NOW, 5)
        kiosk = Kiosk(make_app(ctx), parts, root)
        made.append(kiosk)
        return kiosk

    yield make
    for k in made:
        k.parts.close()
        k.root.close()


# -- driving the app -----------------------------------------------------------------------------
async def until(pilot, condition, what: str, timeout: float = 15.0) -> None:
    import time

    deadline = time.monotonic() + timeout
    while True:
        try:
            if condition():
                return
        except Exception:  # a widget not mounted yet
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await pilot.pause(0.02)


def status(card: str) -> str:
    return f"{card} | Imprimante prête | Registre : 1 rejet(s) ! | BDPM 03/06/2022"


def screen_is(app, name: str) -> bool:
    return type(app.screen).__name__ == name


def text_of(app, selector: str) -> str:
    from textual.widgets import Static

    return str(app.screen.query_one(selector, Static).render())


def option_count(app, selector: str) -> int:
    from textual.widgets import OptionList

    return app.screen.query_one(selector, OptionList).option_count


async def settle(pilot, card: str = "Carte présente") -> None:
    """Wait for the status line and the print queue, then stop the cursor blinking."""
    from textual.widgets import Input

    app = pilot.app
    await until(pilot, lambda: app.status_line == status(card), "the status line",
                timeout=30)
    for widget in app.screen.query(Input):
        widget.cursor_blink = False
    await pilot.pause(0.1)


async def to_pin(pilot) -> None:
    app = pilot.app
    await until(pilot, lambda: screen_is(app, "PinScreen"), "the PIN screen")
    await until(pilot, lambda: "essai(s)" in text_of(app, "#pin-holder"), "the card holder")


async def to_home(pilot) -> None:
    app = pilot.app
    await to_pin(pilot)
    await pilot.press(*PIN, "enter")
    await until(pilot, lambda: screen_is(app, "HomeScreen"), "the home screen")
    await until(pilot, lambda: option_count(app, "#residents") == 6
                and option_count(app, "#drafts") == 2, "the residents and the drafts")
    # the print queue is empty: the screens below show the orders printed
    await until(pilot, lambda: app.status_line == status("Carte présente"),
                "the status line", timeout=30)


async def to_resident(pilot) -> None:
    app = pilot.app
    await to_home(pilot)
    await pilot.press(*"dup")
    await until(pilot, lambda: app.screen.shown_for == "dup", "the search")
    await pilot.press("enter")
    await until(pilot, lambda: screen_is(app, "ResidentScreen")
                and option_count(app, "#rx") == 2, "the resident file")
    await pilot.press("down")                                  # the dispensed one
    await until(pilot, lambda: "Délivrances" in text_of(app, "#detail"), "its detail")


async def to_editor(pilot) -> None:
    app = pilot.app
    await to_home(pilot)
    await pilot.press(*"dup")
    await until(pilot, lambda: app.screen.shown_for == "dup", "the search")
    await pilot.press("f2")
    await until(pilot, lambda: screen_is(app, "EditorScreen"), "the editor")
    await pilot.press(*"kard", "space", *"75")
    await until(pilot, lambda: app.screen.results_for == "kard 75", "the results")
    await pilot.press("enter", "1", "enter")
    await until(pilot, lambda: len(app.screen.draft.lines) == 1, "the first line")
    await pilot.press(*"doli")
    await until(pilot, lambda: app.screen.results_for == "doli"
                and option_count(app, "#results") == 6, "the results for doli")
    await pilot.press("down", "down")


async def to_review(pilot) -> None:
    app = pilot.app
    await to_editor(pilot)
    await pilot.press("enter", *"3", "space", *"5j", "enter")
    await until(pilot, lambda: len(app.screen.draft.lines) == 2, "the second line")
    await pilot.press("f10")
    await until(pilot, lambda: screen_is(app, "ReviewScreen")
                and "KARDEGIC" in text_of(app, "#preview"), "the review")


async def to_sync(pilot) -> None:
    app = pilot.app
    await to_home(pilot)
    await pilot.press("f6")
    await until(pilot, lambda: screen_is(app, "SyncScreen")
                and "Délivrances modifiées" in text_of(app, "#sync"), "the sync screen")


# -- screenshots ---------------------------------------------------------------------------------
def sixteen_colours(app) -> None:
    """Make ``app.export_screenshot`` draw what the Linux console shows: every colour
    reduced to the 16 of the console, as Rich reduces them for ``TERM=linux``."""
    from rich.color import ColorSystem
    from rich.console import Console
    from rich.segment import Segment
    from rich.style import Style

    def reduce(style: Style | None) -> Style | None:
        if style is None:
            return None
        color = style.color.downgrade(ColorSystem.STANDARD) if style.color else None
        bgcolor = style.bgcolor.downgrade(ColorSystem.STANDARD) if style.bgcolor else None
        return style + Style(color=color, bgcolor=bgcolor)

    class Reduced:
        def __init__(self, renderable) -> None:
            self.renderable = renderable

        def __rich_console__(self, console, options):
            for segment in console.render(self.renderable, options):
                if segment.control:
                    yield segment
                else:
                    yield Segment(segment.text, reduce(segment.style), segment.control)

    def export_screenshot(*, title: str | None = None, simplify: bool = False) -> str:
        width, height = app.size
        console = Console(width=width, height=height, file=io.StringIO(), force_terminal=True,
                          color_system="truecolor", record=True, legacy_windows=False,
                          safe_box=False)
        update = app.screen._compositor.render_update(
            full=True, screen_stack=app._background_screens, simplify=simplify)
        console.print(Reduced(update))
        return console.export_svg(title=title or app.title)

    app.export_screenshot = export_screenshot


def shoot(snap_compare, kiosk: Kiosk, mode: str, steps, card: str = "Carte présente") -> bool:
    if mode == "console":
        sixteen_colours(kiosk.app)

    async def run_before(pilot) -> None:
        await steps(pilot)
        await settle(pilot, card)

    return snap_compare(kiosk.app, terminal_size=SIZE, run_before=run_before)


@pytest.mark.parametrize("mode", MODES)
def test_lock_screen(snap_compare, kiosk, mode):
    async def nothing(pilot) -> None:
        await until(pilot, lambda: screen_is(pilot.app, "LockScreen"), "the lock screen")

    assert shoot(snap_compare, kiosk(mode, card=False), mode, nothing, card="Carte absente")


@pytest.mark.parametrize("mode", MODES)
def test_pin_entry(snap_compare, kiosk, mode):
    async def two_digits(pilot) -> None:
        await to_pin(pilot)
        await pilot.press("1", "2")

    assert shoot(snap_compare, kiosk(mode), mode, two_digits)


@pytest.mark.parametrize("mode", MODES)
def test_home_with_residents(snap_compare, kiosk, mode):
    async def second_resident(pilot) -> None:
        await to_home(pilot)
        await pilot.press("down")

    assert shoot(snap_compare, kiosk(mode), mode, second_resident)


@pytest.mark.parametrize("mode", MODES)
def test_resident_file(snap_compare, kiosk, mode):
    assert shoot(snap_compare, kiosk(mode), mode, to_resident)


@pytest.mark.parametrize("mode", MODES)
def test_editor_with_a_line_and_results(snap_compare, kiosk, mode):
    assert shoot(snap_compare, kiosk(mode), mode, to_editor)


@pytest.mark.parametrize("mode", MODES)
def test_review(snap_compare, kiosk, mode):
    assert shoot(snap_compare, kiosk(mode), mode, to_review)


@pytest.mark.parametrize("mode", MODES)
def test_sync_and_alerts(snap_compare, kiosk, mode):
    assert shoot(snap_compare, kiosk(mode), mode, to_sync)


# -- behaviour on the same data --------------------------------------------------------------------
def test_a_substitution_outside_the_prescribed_substance_is_an_alert(kiosk):
    """Paracetamol handed over for KARDEGIC is flagged on the sync screen and in the
    resident's file; a generic of LASILIX from its generic group is a plain substitution."""
    import asyncio

    from textual.widgets import OptionList

    app = kiosk("colour").app

    async def scenario() -> None:
        async with app.run_test(size=SIZE) as pilot:
            await to_sync(pilot)
            sync = " ".join(text_of(app, "#sync").split())
            assert ("ligne 2 : AUTRE SUBSTANCE que la prescrite -> PARACETAMOL BIOGARAN 1 g"
                    in sync)
            assert "ligne 1 : substitution -> FUROSEMIDE ARROW 40 mg" in sync
            await pilot.press("escape", *"dup", "enter")
            await until(pilot, lambda: screen_is(app, "ResidentScreen")
                        and "ligne 2" in text_of(app, "#alerts"), "the resident's alerts")
            assert text_of(app, "#alerts") == (
                "! Autre substance que la prescrite : ordonnance du 23/11/26, ligne 2")
            rows = app.screen.query_one("#rx", OptionList)
            assert str(rows.get_option_at_index(1).prompt).endswith("! autre substance")
            assert str(rows.get_option_at_index(0).prompt).rstrip().endswith("signée")

    asyncio.run(scenario())


# -- the highlighted row on the Linux console ------------------------------------------------------
def screen_cells(app) -> list[list[tuple[str, Any]]]:
    """The screen as the console shows it: rows of (character, style) in 16 colours."""
    from rich.color import ColorSystem
    from rich.console import Console
    from rich.segment import Segment
    from rich.style import Style

    width, height = app.size
    console = Console(width=width, height=height, file=io.StringIO(), force_terminal=True,
                      color_system="truecolor", legacy_windows=False)
    update = app.screen._compositor.render_update(full=True,
                                                  screen_stack=app._background_screens)
    segments = [s for s in console.render(update) if not s.control]
    rows = []
    for line in Segment.split_and_crop_lines(segments, width, pad=True):
        cells = []
        for segment in line:
            style = segment.style or Style()
            color = style.color.downgrade(ColorSystem.STANDARD) if style.color else None
            bgcolor = style.bgcolor.downgrade(ColorSystem.STANDARD) if style.bgcolor else None
            shown = (color, bgcolor, bool(style.reverse), bool(style.bold),
                     bool(style.underline))
            cells += [(char, shown) for char in segment.text]
        rows.append(cells)
    return rows[:height]


def highlight_stands_out(app, selector: str) -> bool:
    """The highlighted option of the list ``selector`` differs from every other option
    shown, in its colours or attributes (16-colour console) or by a leading marker."""
    from textual.widgets import OptionList

    listing = app.screen.query_one(selector, OptionList)
    region = listing.content_region
    top = region.y - int(listing.scroll_offset.y)
    highlighted = listing.highlighted
    assert highlighted is not None, f"nothing highlighted in {selector}"
    cells = screen_cells(app)

    def row(index: int) -> list[tuple[str, Any]]:
        return cells[top + index][region.x:region.x + region.width]

    def looks(index: int) -> tuple[frozenset, bool]:
        shown = row(index)
        styles = frozenset((style if char.strip() else (None, *style[1:]))
                           for char, style in shown)
        marked = "".join(char for char, _ in shown).lstrip().startswith((">", "\u25b6"))
        return styles, marked

    visible = [i for i in range(listing.option_count)
               if 0 <= top + i - region.y < region.height]
    others = [i for i in visible if i != highlighted]
    assert others, f"{selector}: one option only, nothing to compare with"
    return all(looks(i) != looks(highlighted) for i in others)


async def editor_lines(pilot) -> None:
    await to_editor(pilot)
    await pilot.press("enter", *"3", "space", *"5j", "enter")  # a second line
    await until(pilot, lambda: len(pilot.app.screen.draft.lines) == 2, "the second line")


async def home_drafts(pilot) -> None:
    await to_home(pilot)
    await pilot.press("f3", "down")


LISTS = {
    "residents": (lambda p: _home_second(p), "#residents"),
    "drafts": (home_drafts, "#drafts"),
    "prescriptions": (to_resident, "#rx"),
    "drug results": (to_editor, "#results"),
    "prescription lines": (editor_lines, "#lines"),
}


async def _home_second(pilot) -> None:
    await to_home(pilot)
    await pilot.press("down")


@pytest.mark.parametrize("which", [
    "residents", "drafts", "prescriptions", "drug results", "prescription lines"])
def test_the_highlighted_row_is_visible_on_the_linux_console(kiosk, which):
    import asyncio

    steps, selector = LISTS[which]
    app = kiosk("console").app

    async def scenario() -> bool:
        async with app.run_test(size=SIZE) as pilot:
            await steps(pilot)
            await settle(pilot)
            return highlight_stands_out(app, selector)

    assert asyncio.run(scenario()), f"{which}: the highlighted row looks like the others"
