"""Input refused at the door, in the domain's own validators (so that the CSV import, the
JSON drafts and the kiosk all refuse it): control characters and bidirectional overrides
in names, rooms and every text of a prescription; a JSON draft naming a key twice; more
lines than a prescription may have."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import pytest

from appliance.domain.posology import FreeTextPosology
from appliance.domain.prescription import (
    MAX_LINES,
    ActLine,
    DeviceLine,
    MedicationLine,
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


@pytest.mark.parametrize("char", FORBIDDEN)
@pytest.mark.parametrize("field", ["birth_name", "first_names", "used_name", "room"])
def test_resident_names_and_room(field, char):
    with pytest.raises(ValidationError) as err:
        resident(**{field: f"MAR{char}TIN"})
    assert err.value.field == {"birth_name": "nom", "first_names": "prenoms",
                               "used_name": "nom_usage", "room": "chambre"}[field]
    assert f"U+{ord(char):04X}" in err.value.expected


def test_practitioner_names():
    with pytest.raises(ValidationError, match="U\\+202E"):
        physician(last_name="DURAND\u202e")


def test_a_room_has_at_most_30_characters():
    assert resident(room="Bâtiment A — 2e étage, 204").room == "Bâtiment A — 2e étage, 204"
    with pytest.raises(ValidationError) as err:
        resident(room="x" * 31)
    assert err.value.field == "chambre" and "30" in err.value.expected


TEXT = FreeTextPosology("1 le matin")
MAKERS = {
    "medication.label": lambda t: MedicationLine(label=t, cis="60234100", posology=TEXT),
    "medication.instructions": lambda t: MedicationLine(label="X", cis="60234100",
                                                        posology=TEXT, instructions=t),
    "device.label": lambda t: DeviceLine(label=t),
    "act.text": lambda t: ActLine(text=t),
    "text": lambda t: FreeTextPosology(t),
}


@pytest.mark.parametrize("char", ["\x1b", "\x07", "\x00", "\u202e", "\u2066"])
@pytest.mark.parametrize("field", MAKERS)
def test_every_text_of_a_prescription(field, char):
    with pytest.raises(ValidationError) as err:
        MAKERS[field](f"Kiné{char}sithérapie")
    assert err.value.field.endswith(field) and f"U+{ord(char):04X}" in err.value.expected


def test_a_line_feed_is_kept_in_free_texts_only():
    for field in ("medication.instructions", "act.text", "text"):
        MAKERS[field]("deux lignes\nde texte")
    for field in ("medication.label", "device.label"):
        with pytest.raises(ValidationError, match="U\\+000A"):
            MAKERS[field]("deux lignes\nde texte")


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
