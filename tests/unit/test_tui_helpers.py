"""Pure parts of the kiosk: search results, line wording, the sync screen's text, error
messages, key names the console can draw, and the review's text from the printer layout."""

from dataclasses import dataclass, replace
from datetime import UTC, datetime
from decimal import Decimal

from textual.binding import Binding

from appliance.domain.posology import Posology
from appliance.domain.prescription import (
    ActLine,
    DeviceLine,
    MedicationLine,
    NonSubstitution,
    State,
)
from appliance.domain.prescription_id import format_id
from appliance.errors import StoreError, ValidationError
from appliance.ports.uow import DispensationAlert
from appliance.services.auth import AuthRefused
from appliance.tui.app import OrdoApp, PlainScrollBarRender
from appliance.tui.context import KioskContext
from appliance.tui.screens.base import describe_error
from appliance.tui.screens.editor import Chosen, distinct_specialties, names_the_box
from appliance.tui.screens.home import resident_row
from appliance.tui.screens.resident import describe_line
from appliance.tui.screens.sync import render_sync
from tests.factories import prescription, resident
from tests.fakes import FakeUnitOfWork

PID = "01KAX5JDE0000G40R40M30EH"


@dataclass
class P:
    cis: str
    name: str


def test_one_result_per_specialty_in_order():
    found = [P("1", "A 8 cp"), P("1", "A 30 cp"), P("2", "B"), P("3", "C"), P("2", "B 2")]
    assert [p.name for p in distinct_specialties(found, limit=2)] == ["A 8 cp", "B"]
    assert [p.cis for p in distinct_specialties(found)] == ["1", "2", "3"]


def test_a_scan_or_a_code_names_the_box():
    box = type("Box", (), {"cip13": "3400935955838", "cip7": "3595583"})()
    for query in ("3400935955838", "]d2010340093595583817261231\x1d10LOT", " 3595583",
                  "(01)03400935955838(10)A1"):
        assert names_the_box(query, box), query
    for query in ("doli 1000", "", "12", "3400930000000", "60234100"):
        assert not names_the_box(query, box), query


def test_the_half_typed_choice_round_trips():
    chosen = Chosen("drug", "DOLIPRANE 1000 mg, comprimé", cis="60234100", unit="comprimé")
    from dataclasses import asdict

    assert Chosen.from_dict(asdict(chosen)) == chosen
    assert Chosen.from_dict({"kind": "device", "label": "Canne"}).unit == "dose"


def test_lines_read_back_with_their_flags():
    med = MedicationLine(label="DOLIPRANE 1000 mg, comprimé", cis="60234100",
                         posology=Posology(dose=Decimal(1), unit="comprimé",
                                           moments=("matin",)),
                         quantity=Decimal(2), non_substitution=NonSubstitution.MTE, ald=True)
    assert describe_line(med) == ("DOLIPRANE 1000 mg, comprimé : 1 comprimé le matin, qté 2 "
                                  "[ALD] [non substituable (MTE)]")
    assert describe_line(DeviceLine(label="Canne", lpp="1234567")) == \
        "Dispositif : Canne (LPP 1234567), qté 1"
    assert describe_line(ActLine(text="ECG")) == "Acte : ECG"


def test_resident_rows_fit_80_columns():
    long = resident(birth_name="DE LA TOUR D'AUVERGNE-LAURAGUAIS", used_name="MONTMORENCY "
                    "LAVAL", first_names="Marie Thérèse Charlotte")
    assert len(resident_row(long)) <= 78
    assert resident_row(resident()).startswith("MARTIN Jeanne")


@dataclass
class Status:
    queue_depth: int = 2
    pending_creates: int = 1
    pending_cancels: int = 1
    acknowledged: int = 5
    last_success_at: str | None = "2026-11-25T09:00:00+00:00"
    last_error: str | None = "registre injoignable"
    last_error_at: str | None = "2026-11-25T10:00:00+00:00"
    quarantined: int = 1
    quarantined_records: tuple = ({"prescription_id": PID, "kind": "create",
                                   "reason": "registry refused (422): bad INS"},)


def test_the_sync_screen_text():
    alert = DispensationAlert(
        prescription_id=PID, line_no=2, product_label="PARACETAMOL 1 g", substituted=True,
        substitution_type="G", substitution_reason=None, complete=True,
        handed_over_at="2026-11-25T10:00:00+00:00", room="12", birth_name="LEFEBVRE",
        used_name="DUPONT", first_names="Marie")
    text = render_sync(Status(), [alert])
    assert "En attente d'envoi : 2 (1 création(s), 1 annulation(s))" in text
    assert "dernier échange réussi : 25/11 10:00" in text      # Paris time
    assert "registre injoignable" in text
    assert f"! {format_id(PID)} (création) : refus du registre (code 422) : bad INS" in text
    assert "ch. 12 DUPONT Marie" in text and "ligne 2 : substitution -> PARACETAMOL" in text
    assert "état inconnu" in render_sync(None, [])
    flagged = render_sync(Status(), [alert], {(PID, 2, "3400936381865")})
    assert "ligne 2 : substitution" in flagged                # not this product
    alert = replace(alert, product_code="3400936381865")
    flagged = render_sync(Status(), [alert], {(PID, 2, "3400936381865")})
    assert " ! 25/11 11:00 ch. 12 DUPONT Marie" in flagged
    assert "ligne 2 : AUTRE SUBSTANCE que la prescrite -> PARACETAMOL 1 g" in flagged


def test_errors_become_french_messages_never_tracebacks():
    assert describe_error(AuthRefused("wrong_pin", tries_left=2)) == \
        "Code PIN incorrect : 2 essai(s) restant(s)."
    assert describe_error(ValidationError("posologie", "", "une posologie")) == \
        "Saisie refusée - Posologie : une posologie."
    assert describe_error(StoreError("résident inconnu")) == "résident inconnu"
    assert describe_error(ZeroDivisionError()).startswith("Erreur interne")


def test_key_names_in_french_and_in_the_console_font():
    app = OrdoApp(KioskContext(new_uow=FakeUnitOfWork, login=lambda reader, pin: None))
    shown = [app.get_key_display(Binding(key, "x")) for key in
             ("f2", "f10", "escape", "enter", "ctrl+q", "up")]
    assert shown == ["F2", "F10", "Échap", "Entrée", "Ctrl+Q", "Haut"]
    for text in shown:
        text.encode("latin-1")
    assert set(PlainScrollBarRender.VERTICAL_BARS) == {" "}


def test_the_kiosk_draws_its_own_scroll_bars_and_leaves_textuals_default():
    import asyncio

    from textual.scrollbar import ScrollBar, ScrollBarRender

    app = OrdoApp(KioskContext(new_uow=FakeUnitOfWork, login=lambda reader, pin: None))

    async def scenario() -> None:
        async with app.run_test(size=(80, 24)):
            assert app.screen.vertical_scrollbar.renderer is PlainScrollBarRender

    asyncio.run(scenario())
    assert ScrollBar.renderer is ScrollBarRender  # other apps of the process keep it


def test_the_review_is_the_printed_layout_with_a_placeholder_for_the_qr():
    from appliance.commands.kiosk import make_preview
    from appliance.config import load_settings
    from drivers.printer.layout import (
        Letterhead,
        OrderDocument,
        media_for,
        receipt_tickets,
        ticket_text,
    )

    settings = load_settings(environ={})
    draft = prescription(PID)
    signed = draft.transition(State.SIGNED, datetime(2026, 11, 25, 10, 0, tzinfo=UTC))
    lines = make_preview(settings)(signed)
    printed = ticket_text(receipt_tickets(OrderDocument(
        signed, "EPU1*X", Letterhead.from_settings(settings)), media_for("80mm"))[0])
    assert [line.strip() for line in lines if line.strip() and "code QR" not in line
            and "coupe" not in line and "code-barres" not in line
            and set(line) - {"-", "="}] == [line.strip() for line in printed if line.strip()]
    assert "[ code QR ]" in "\n".join(lines) and "[ code-barres ]" in "\n".join(lines)
    assert any(format_id(PID) in line for line in lines)
    assert any("Ordonnance du 25/11/2026 à 11:00" in line.replace("\u00a0", " ")
               for line in lines)
