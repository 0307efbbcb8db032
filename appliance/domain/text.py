"""Characters refused in every text that enters Ordo.

- C0 controls U+0000..U+001F (NUL, BEL, ESC, TAB, CR, LF...), DEL U+007F and the C1
  controls U+0080..U+009F: an ESC in a resident's name is an escape sequence on the
  terminal and a command to the ESC/POS printer; NUL truncates C strings.
- The bidirectional embeddings and overrides U+202A..U+202E and isolates U+2066..U+2069
  (Unicode Standard Annex #9): they reorder what is displayed and printed, so that a
  text reads otherwise than it is stored ("Trojan Source", CVE-2021-42574).
- Lone surrogates U+D800..U+DFFF (a JSON ``"\\ud800"``): no UTF-8 document can carry them.

Free texts (a free-text posology, instructions, an act, a cancellation reason) may hold a
line feed; names, rooms and labels may not.

The refusal applies where text comes in: the residents CSV, the JSON drafts, the kiosk's
fields, ``ordo practitioners add`` and the card's holder name, the settings (each calls
``check_characters`` or a ``check_input`` method of the domain). It never applies when a
stored row is loaded: a prescription signed before a rule existed still loads, prints and
reprints as it was signed (the domain's constructors do not check these characters).
"""

from __future__ import annotations

import re

from appliance.errors import ValidationError

_OTHERS = "\x7f-\x9f\u202a-\u202e\u2066-\u2069\ud800-\udfff"
_ANY = re.compile(f"[\x00-\x1f{_OTHERS}]")
_BUT_LINE_FEED = re.compile(f"[\x00-\x09\x0b-\x1f{_OTHERS}]")  # LF is U+000A
_SURROGATE = re.compile("[\ud800-\udfff]")


def has_surrogate(value: str) -> bool:
    """Whether ``value`` holds a surrogate code point (a JSON ``"\\ud800"``), which no UTF-8
    document can carry. Checked by the constructors, stored rows included (one search in
    C, nothing for ASCII: every stored text is checked at every load)."""
    return not value.isascii() and _SURROGATE.search(value) is not None


def first_forbidden(value: str, *, line_feed: bool = False) -> tuple[str, int] | None:
    """``("U+001B", 3)``: the first refused character and its position (1-based), or
    ``None``."""
    found = (_BUT_LINE_FEED if line_feed else _ANY).search(value)
    if found is None:
        return None
    return f"U+{ord(found.group()):04X}", found.start() + 1


def forbidden_character(value: str, *, line_feed: bool = False) -> str | None:
    """``"U+001B at position 3"`` for the first refused character, or ``None``."""
    found = first_forbidden(value, line_feed=line_feed)
    return None if found is None else f"{found[0]} at position {found[1]}"


def check_characters(field: str, value: str, what: str, *, line_feed: bool = False) -> str:
    """``value`` unchanged, or ``ValidationError`` naming ``field`` and the character."""
    found = forbidden_character(value, line_feed=line_feed)
    if found is not None:
        raise ValidationError(field, value, f"{what} without control or bidirectional "
                                            f"characters ({found})")
    return value
