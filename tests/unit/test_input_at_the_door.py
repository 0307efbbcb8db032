"""Input refused at the door, by the domain's input checks that the CSV import, the JSON
drafts, the kiosk and the use cases call where text comes in: control characters and
bidirectional overrides in names, rooms and every text of a prescription; a JSON draft
naming a key twice; more lines than a prescription may have. What is already stored is
never checked again: it loads as it was written."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import pytest

from appliance.domain.people import check_resident_texts
from appliance.domain.posology import FreeTextPosology
from appliance.domain.prescription import (
    MAX_LINES,
    ActLine,
    DeviceLine,
    MedicationLine,
    Prescription,
    line_from_dict,
)
from appliance.domain.text import forbidden_character
from appliance.errors import ValidationError
from appliance.services.drafts import DraftInvalid, load_draft_json
from tests.factories import physician, prescription, resident
from tests.unit.test_drafts import good, parse

# ESC (terminal and ESC/POS commands), BEL, NUL, DEL, a C1 control (NEL), the bidi
# embeddings and overrides U+202A..U+202E and isolates U+2066..U+2069.
FORBIDDEN = ["\x1b", "\x07", "\x00", "\x7f", "\x85", "\x9b", "\u202a", "\u202b", "\u202c",
             "\u202d", "\u202e", "\u2066", "\u2067", "\u2068", "\u2069", "\t"]
PID = "01M8AA52X8ECJK0TE86HARRT"


@pytest.mark.parametrize("char", FORBIDDEN)
def test_forbidden_characters_are_named_by_code_point(char):
    found = forbidden_character(f"ab{char}cd")
    assert found == f"U+{ord(char):04X} at position 3"
    assert forbidden_character("Jeanne-Marie d'Arc, 2e étage — Œil") is None


COLUMNS = {"birth_name": "nom", "first_names": "prenoms", "used_name": "nom_usage",
           "room": "chambre"}


@pytest.mark.parametrize("char", FORBIDDEN)
@pytest.mark.parametrize("field", ["birth_name", "first_names", "used_name", "room"])
def test_resident_names_and_room(field, char):
    """Refused as they come in (the CSV's values, by column); a resident stored with them
    still loads."""
    with pytest.raises(ValidationError) as err:
        check_resident_texts({COLUMNS[field]: f"MAR{char}TIN"})
    assert err.value.field == COLUMNS[field]
    assert f"U+{ord(char):04X}" in err.value.expected
    check_resident_texts({COLUMNS[field]: "MARTIN"})
    assert resident(**{field: f"MAR{char}TIN"}).ins  # loads


def test_practitioner_names():
    with pytest.raises(ValidationError, match="U\\+202E"):
        physician(last_name="DURAND\u202e").check_input()
    physician(last_name="DURAND").check_input()


def test_a_room_has_at_most_30_characters():
    check_resident_texts({"chambre": "Bâtiment A — 2e étage, 204"})
    with pytest.raises(ValidationError) as err:
        check_resident_texts({"chambre": "x" * 31})
    assert err.value.field == "chambre" and "30" in err.value.expected
    assert resident(room="x" * 31).room == "x" * 31  # one stored longer still loads


TEXT = FreeTextPosology("1 le matin")
MAKERS = {
    "medication.label": lambda t: MedicationLine(label=t, cis="60234100", posology=TEXT),
    "medication.instructions": lambda t: MedicationLine(label="X", cis="60234100",
                                                        posology=TEXT, instructions=t),
    "device.label": lambda t: DeviceLine(label=t),
    "act.text": lambda t: ActLine(text=t),
    "text": lambda t: MedicationLine(label="X", cis="60234100",
                                     posology=FreeTextPosology(t)),
}


@pytest.mark.parametrize("char", ["\x1b", "\x07", "\x00", "\u202e", "\u2066"])
@pytest.mark.parametrize("field", MAKERS)
def test_every_text_of_a_prescription(field, char):
    with pytest.raises(ValidationError) as err:
        MAKERS[field](f"Kiné{char}sithérapie").check_input()
    assert err.value.field.endswith(field) and f"U+{ord(char):04X}" in err.value.expected


@pytest.mark.parametrize("char", ["\x1b", "\t", "\u202e"])
@pytest.mark.parametrize("field", ["medication.label", "medication.instructions",
                                   "device.label", "act.text"])
def test_a_line_stored_with_such_a_character_still_loads(field, char):
    line = MAKERS[field](f"Kiné{char}sithérapie")
    assert line_from_dict(line.to_dict()) == line


def test_a_line_feed_is_kept_in_free_texts_only():
    for field in ("medication.instructions", "act.text", "text"):
        MAKERS[field]("deux lignes\nde texte").check_input()
    for field in ("medication.label", "device.label"):
        with pytest.raises(ValidationError, match="U\\+000A"):
            MAKERS[field]("deux lignes\nde texte").check_input()


def test_a_cancel_reason():
    signed = prescription(PID).transition("signed", datetime.now(UTC))
    with pytest.raises(ValidationError, match="U\\+001B"):
        signed.transition("cancelled", datetime.now(UTC), reason="erreur\x1b[2J")


# -- the JSON draft ----------------------------------------------------------------------
def test_a_key_named_twice_is_refused_with_its_path():
    text = ('{"resident": {"nir": "1"}, "lines": [{"type": "act", "text": "a", "text": "b"}],'
            ' "renewals": 0, "renewals": 3}')
    with pytest.raises(DraftInvalid) as err:
        load_draft_json(text)
    assert [(p.path, p.message) for p in err.value.problems] == [
        ("$.lines[0].text", "key named twice in the same object (the last one would win)"),
        ("$.renewals", "key named twice in the same object (the last one would win)")]
    assert load_draft_json('{"a": [{"b": 1}, {"b": 2}]}') == {"a": [{"b": 1}, {"b": 2}]}


def test_at_most_max_lines_in_a_draft_and_at_signing():
    draft = good()
    draft["lines"] = [{"type": "act", "text": f"acte {n}"} for n in range(30_000)]
    with pytest.raises(DraftInvalid) as err:
        parse(draft)
    assert [(p.path, p.message) for p in err.value.problems] == [
        ("$.lines", f"30000 lines: a prescription has at most {MAX_LINES}")]
    draft["lines"] = draft["lines"][:MAX_LINES]
    assert len(parse(draft).lines) == MAX_LINES
    lines = tuple(ActLine(text=f"acte {n}") for n in range(MAX_LINES + 1))
    with pytest.raises(ValidationError, match=f"at most {MAX_LINES} lines"):
        replace(prescription(PID), lines=lines).check_signable()
    replace(prescription(PID), lines=lines[:MAX_LINES]).check_signable()
    assert MAX_LINES == 50  # the number the README and the registry give


def test_control_characters_in_a_draft_are_named_by_their_json_path():
    draft = good()
    draft["lines"][1]["posology"]["text"] = "1 le matin\u202e"
    draft["lines"][3]["text"] = "Kiné\x1b[2J"
    draft["lines"][0]["instructions"] = "à jeun\ndeux lignes"  # a line feed is fine
    with pytest.raises(DraftInvalid) as err:
        parse(draft)
    assert [(p.path, "U+202E" in p.message or "U+001B" in p.message)
            for p in err.value.problems] == [("$.lines[1].posology.text", True),
                                             ("$.lines[3].text", True)]


# -- the use cases: new lines are checked, stored ones are not --------------------------
def test_a_draft_takes_no_new_line_with_a_control_character_but_keeps_its_old_ones():
    from appliance.services import prescribing
    from tests.fakes import FakeUnitOfWork
    from tests.unit.test_use_cases import DOCTOR, CardSession

    uow = FakeUnitOfWork()
    old = ActLine(text="Kiné\tgarde le tab d'avant")  # stored by an earlier version
    with uow:
        uow.residents.upsert([resident()])
        uow.practitioners.upsert(DOCTOR)
        uow.prescriptions.save_draft(prescription(PID, lines=(old,)))
        uow.commit()
    session = CardSession(signer=None)
    draft = uow.prescriptions.get(PID)
    kept = prescribing.update_draft(uow, session, replace(
        draft, lines=(*draft.lines, ActLine(text="Soins infirmiers"))))
    assert kept.lines[0] == old and len(kept.lines) == 2
    with pytest.raises(ValidationError, match="U\\+001B"):
        prescribing.update_draft(uow, session, replace(
            kept, lines=(*kept.lines, ActLine(text="Soins\x1b[2J"))))
    assert uow.prescriptions.get(PID).lines == kept.lines


def test_a_stored_prescription_with_a_tab_loads_byte_for_byte():
    p = replace(prescription(PID), lines=(
        ActLine(text="Kinésithérapie :\t10 séances"),
        MedicationLine(label="DOLIPRANE\t1000", cis="60234100", posology=TEXT,
                       instructions="à jeun\tle matin")))
    loaded = Prescription.from_dict(p.to_dict())
    assert loaded == p and loaded.canonical_bytes() == p.canonical_bytes()
