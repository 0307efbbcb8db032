"""What the kiosk writes on screen, as pure functions: errors in French naming the field,
the registry's refusals in French, editor rows cut without hiding the duration, the
posology taken back into its field, and the drug query that may pick a drug."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

import pytest

from appliance.domain.posology import Duration, Posology
from appliance.domain.prescription import DeviceLine, MedicationLine
from appliance.errors import ValidationError
from appliance.tui.screens.base import describe_error, registry_text_fr
from appliance.tui.screens.editor import line_row, meant_query
from appliance.tui.shorthand import format_posology, format_quantity, parse_posology, parse_quantity


@dataclass(frozen=True)
class Box:
    name: str
    cis: str = "60000000"
    cip13: str = "3400900000000"
    cip7: str = "3000000"
    substances: tuple[str, ...] = ()


GLIVEC = Box("GLIVEC 100 mg, comprimé pelliculé sécable", substances=("IMATINIB",))
DOLIPRANE = Box("DOLIPRANE 1000 mg, comprimé", substances=("PARACÉTAMOL",))


@pytest.mark.parametrize(("query", "box", "meant"), [
    ("1 matin", GLIVEC, False),            # a posology typed in the drug field
    ("matin", GLIVEC, False),              # imatinib contains "matin", does not start so
    ("glivec", GLIVEC, True),
    ("imatinib 100", GLIVEC, True),
    ("paracetamol 1g", DOLIPRANE, True),   # the substance, without its accent
    ("Doli", DOLIPRANE, True),
    ("3400900000000", DOLIPRANE, True),    # the box's code
    ("60000000", DOLIPRANE, True),         # the specialty's code
    ("2 5j", DOLIPRANE, False),
])
def test_a_drug_is_picked_only_for_a_query_meant_for_it(query, box, meant):
    assert meant_query(query, box) is meant


def test_a_field_error_is_french_and_names_the_field_as_the_screen_does():
    with pytest.raises(ValidationError) as caught:
        Duration(400, "jour")
    said = describe_error(caught.value)
    assert said == "Saisie refusée - Durée : un nombre entier de 1 à 366 (saisi : 400)."


def test_a_control_character_is_never_echoed_in_the_error():
    said = describe_error(ValidationError("act.text", "Kiné\x1b[2J", "a text without control "
                                          "or bidirectional characters (U+001B at position 5)"))
    assert "\x1b" not in said and said.startswith("Saisie refusée - Acte : ")
    assert "U+001B en position 5" in said


def test_an_unknown_english_expectation_is_not_shown():
    said = describe_error(ValidationError("line.kind", "x", "medication, device or act"))
    assert "medication" not in said and said.startswith("Saisie refusée - ")


def test_the_registry_refusal_reads_in_french():
    assert registry_text_fr("registry refused (422): INS inconnu du registre") == (
        "refus du registre (code 422) : INS inconnu du registre")
    assert registry_text_fr(None) == "?"


KARDEGIC = "KARDEGIC 75 mg, poudre pour solution buvable en sachet-dose"


def test_a_cut_row_ends_with_an_ellipsis_and_keeps_the_duration():
    line = MedicationLine(label=KARDEGIC, cis="64755969", posology=parse_posology(
        "1 30j", "sachet"))
    row = line_row(1, line, 76)
    assert len(row) <= 76 and row.endswith("1 sachet le matin pendant 30 jours")
    assert row.startswith("1. KARDEGIC 75 mg") and "…" in row


def test_a_long_free_posology_keeps_its_duration_at_the_end():
    posology = parse_posology("1 comprimé à écraser dans une compote le matin, sauf si "
                              "vomissements ou refus du résident 10j", "comprimé")
    row = line_row(2, MedicationLine(label=KARDEGIC, cis="64755969", posology=posology), 76)
    assert len(row) <= 76 and "…" in row and row.endswith("du résident 10j"), row


def test_a_device_quantity_of_ten_reads_10():
    quantity = parse_quantity("10")
    assert str(quantity) == "10" and format_quantity(quantity) == "10"
    assert line_row(1, DeviceLine(label="Fauteuil roulant", quantity=quantity), 76) == (
        "1. Dispositif : Fauteuil roulant, qté 10")
    assert format_quantity(Decimal("1.5")) == "1,5"


@pytest.mark.parametrize("typed", ["1", "2 5j", "1-0-1 1m", "0,5-0-1", "2-1-0-1", "3/j 7j",
                                   "6", "9 2s", "selon INR"])
def test_a_posology_taken_back_reads_as_it_can_be_typed_again(typed):
    posology = parse_posology(typed, "comprimé")
    text = format_posology(posology)
    assert text is not None and parse_posology(text, "comprimé") == posology


def test_a_posology_the_shorthand_cannot_say_is_none():
    posology = Posology(dose=Decimal(2), unit="comprimé", times_per_day=3)
    assert format_posology(posology) is None
