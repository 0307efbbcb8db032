"""Barcode-scanner input: GS1 element strings typed by a keyboard-wedge scanner.

A drug box carries a GS1 DataMatrix (GS1-128 on older boxes) whose element string
starts with AI ``01`` and the GTIN-14 ``0`` + CIP13, often followed by ``17`` (expiry,
YYMMDD), ``10`` (lot) and ``21`` (serial number); see the GS1 General Specifications,
section 3 (application identifiers) and 7.8 (FNC1 as the group separator, ASCII 29).
A keyboard wedge types the separator as ``\\x1d`` or as text (``<GS>``, ``[GS]``,
``{GS}``, ``^]``, ``␝``), may prefix the AIM symbology identifier (``]d2`` DataMatrix,
``]C1`` GS1-128, ``]Q3`` QR, ``]e0`` DataBar, ISO/IEC 15424) and may print the human
readable form with parentheses: ``(01)03400949497294(17)250131(10)LOT``.

Decoding of the AIs is python-stdnum's ``gs1_128.info``; this module only puts the
typed text back into the form it expects.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date

from stdnum import gs1_128
from stdnum.exceptions import ValidationError as StdnumError

from appliance.domain.ids import validate_cip13
from appliance.errors import InvalidIdentifier

GS = "\x1d"
_SEPARATORS = re.compile(r"<GS>|\[GS\]|\{GS\}|\^\]|\u241d", re.IGNORECASE)
_AIM_PREFIX = re.compile(r"^\][A-Za-z][0-9A-Za-z]")
_BRACKETED = re.compile(r"\((\d{2,4})\)([^()]*)")
AI_GTIN = "01"
AI_EXPIRY = "17"
AI_LOT = "10"
AI_SERIAL = "21"
GTIN14_LENGTH = 14


@dataclass(frozen=True, slots=True)
class Scan:
    """What a box's barcode says: the GTIN-14 and, when present, expiry, lot, serial."""

    gtin: str
    expiry: date | None = None
    lot: str | None = None
    serial: str | None = None

    @property
    def cip13(self) -> str | None:
        """The CIP13 inside a French GTIN (``0`` + CIP13), else ``None``."""
        if not self.gtin.startswith("0"):
            return None
        try:
            return validate_cip13(self.gtin[1:])
        except InvalidIdentifier:
            return None


def _element_string(text: str) -> str:
    text = _AIM_PREFIX.sub("", text.strip())
    text = _SEPARATORS.sub(GS, text).strip(GS + " ")
    if text.startswith("("):
        pairs = _BRACKETED.findall(text)
        if "".join(f"({ai}){value}" for ai, value in pairs) != text:
            return ""
        text = GS.join(ai + value for ai, value in pairs)
    return text


def looks_like_scan(text: str) -> bool:
    """Cheap test, run on every keystroke before trying to decode."""
    stripped = text.lstrip()
    return ((len(stripped) >= 2 + GTIN14_LENGTH and stripped[:1] in "(0]")
            or GS in text or "<GS>" in text.upper())


def parse_scan(text: str) -> Scan | None:
    """Decode scanner input carrying AI 01; ``None`` if the text is not such a scan."""
    element = _element_string(text)
    if not element:
        return None
    try:
        data = gs1_128.info(element, separator=GS)
    except (StdnumError, ValueError, KeyError, ArithmeticError):  # Decimal("") for "(3103)"
        return None
    gtin = data.get(AI_GTIN)
    if not isinstance(gtin, str) or len(gtin) != GTIN14_LENGTH:
        return None
    expiry = data.get(AI_EXPIRY)
    return Scan(
        gtin=gtin,
        expiry=expiry if isinstance(expiry, date) else None,
        lot=data.get(AI_LOT),
        serial=data.get(AI_SERIAL),
    )
