"""What the physician types in the editor, turned into domain objects (pure, no Textual).

Posology field (``parse_posology``), for a line whose unit comes from the drug's form
(``unit_for``):

- a pattern number ``1`` to ``9`` (``PATTERNS``, shown next to the field): ``2`` is
  "1 comprimé matin et soir";
- the French habit ``matin-midi-soir[-coucher]``: ``1-0-1``, ``1/2-0-1``, ``2-1-0-1``;
- ``N/j`` or ``Nx`` (N intakes a day): ``3/j`` is "1 comprimé 3 fois par jour";
- anything else is kept as free text, exactly as typed.

Each form may end with a duration: ``7j``, ``2s``, ``3m``, ``10 jours``, ``pendant 1 mois``
(``pdt`` too). Without one, the line has no duration (a quantity may be given instead).

Other fields: ``parse_duration`` (``7``, ``7j``, ``2 semaines``), ``parse_quantity``
(``2``, ``1,5``).
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

from appliance.domain.posology import Duration, FreeTextPosology, Posology
from appliance.errors import ValidationError

__all__ = ["PATTERNS", "Pattern", "format_posology", "format_quantity", "parse_duration",
           "parse_posology", "parse_quantity", "pattern_hint", "unit_for"]


@dataclass(frozen=True)
class Pattern:
    key: str
    hint: str  # short, for the hint line at 80 columns
    moments: tuple[str, ...] = ()
    times_per_day: int | None = None
    every_days: int | None = None
    times_per_week: int | None = None
    as_needed: bool = False
    max_per_day: int | None = None


PATTERNS: dict[str, Pattern] = {p.key: p for p in (
    Pattern("1", "matin", moments=("matin",)),
    Pattern("2", "matin+soir", moments=("matin", "soir")),
    Pattern("3", "matin+midi+soir", moments=("matin", "midi", "soir")),
    Pattern("4", "soir", moments=("soir",)),
    Pattern("5", "coucher", moments=("coucher",)),
    Pattern("6", "si besoin (3/j max)", as_needed=True, max_per_day=3),
    Pattern("7", "3 fois/j", times_per_day=3),
    Pattern("8", "1 j sur 2", every_days=2),
    Pattern("9", "1 fois/sem.", times_per_week=1),
)}

_DURATION_WORDS = {
    "j": "jour", "jour": "jour", "jours": "jour",
    "s": "semaine", "sem": "semaine", "semaine": "semaine", "semaines": "semaine",
    "m": "mois", "mois": "mois",
}
_DURATION_RE = re.compile(
    r"(?:^|\s)(?:pendant\s+|pdt\s+)?(\d{1,3})\s*(j|jours?|s|sem|semaines?|m|mois)\.?$",
    re.IGNORECASE)
_MOMENTS_RE = re.compile(r"^[\d.,/]+(?:-[\d.,/]+){2,3}$")
_PER_DAY_RE = re.compile(r"^(\d{1,2})\s*(?:/\s*j(?:our)?|x|fois(?:\s*/\s*j|\s+par\s+jour)?)$",
                         re.IGNORECASE)
_MOMENT_ORDER = ("matin", "midi", "soir", "coucher")


def pattern_hint() -> str:
    """``1 matin  2 matin+soir  ...`` for the hint line."""
    return "  ".join(f"{p.key} {p.hint}" for p in PATTERNS.values())


def _amount(text: str, field: str) -> Decimal:
    text = text.strip().replace(",", ".")
    try:
        if "/" in text:
            num, _, den = text.partition("/")
            value = Decimal(num) / Decimal(den)
        else:
            value = Decimal(text)
    except (InvalidOperation, ZeroDivisionError):
        raise ValidationError(field, text, "un nombre (1, 0,5 ou 1/2)") from None
    if not value.is_finite() or value < 0:
        raise ValidationError(field, text, "un nombre positif")
    return _plain(value.quantize(Decimal("0.001")).normalize())


def _plain(value: Decimal) -> Decimal:
    """``value`` without an exponent (``normalize`` turns 10 into ``1E+1``)."""
    return value.quantize(Decimal(1)) if value == value.to_integral_value() else value


def format_quantity(value: Decimal) -> str:
    """A number as the physician types and reads it: ``10``, ``1,5``."""
    return format(_plain(value.normalize()), "f").replace(".", ",")


def _split_duration(text: str) -> tuple[str, Duration | None]:
    match = _DURATION_RE.search(text)
    if match is None:
        return text, None
    head = text[:match.start()].strip()
    if not head:  # the whole text is a duration: not a posology
        return text, None
    unit = _DURATION_WORDS[match.group(2).lower()]
    return head, Duration(int(match.group(1)), unit)


def _structured(head: str, unit: str, duration: Duration | None) -> Posology | None:
    pattern = PATTERNS.get(head)
    if pattern is not None:
        return Posology(dose=Decimal(1), unit=unit, moments=pattern.moments,
                        times_per_day=pattern.times_per_day, every_days=pattern.every_days,
                        times_per_week=pattern.times_per_week, as_needed=pattern.as_needed,
                        max_per_day=Decimal(pattern.max_per_day) if pattern.max_per_day
                        else None, duration=duration)
    if _MOMENTS_RE.match(head):
        doses = [_amount(part, "posologie") for part in head.split("-")]
        taken = [(m, d) for m, d in zip(_MOMENT_ORDER, doses, strict=False) if d > 0]
        if not taken:
            raise ValidationError("posologie", head, "au moins une prise")
        moments = tuple(m for m, _ in taken)
        values = [d for _, d in taken]
        if len(set(values)) == 1:
            return Posology(dose=values[0], unit=unit, moments=moments, duration=duration)
        return Posology(dose=max(values), unit=unit, moments=moments,
                        moment_doses=tuple(values), duration=duration)
    match = _PER_DAY_RE.match(head)
    if match is not None:
        return Posology(dose=Decimal(1), unit=unit, times_per_day=int(match.group(1)),
                        duration=duration)
    return None


def parse_posology(text: str, unit: str) -> Posology | FreeTextPosology:
    """The posology typed in the editor (see the module docstring); ``ValidationError``
    (French ``expected``) when it is empty or a structured form is out of bounds."""
    text = " ".join(unicodedata.normalize("NFC", text or "").split())
    if not text:
        raise ValidationError("posologie", text, "une posologie (1 à 9, 1-0-1 ou du texte)")
    head, duration = _split_duration(text)
    structured = _structured(head, unit, duration)
    if structured is not None:
        return structured
    return FreeTextPosology(text)


def parse_duration(text: str) -> Duration | None:
    """``7`` (days), ``7j``, ``2 s``, ``3 mois``; empty gives None."""
    text = " ".join((text or "").split())
    if not text:
        return None
    if text.isdigit():
        return Duration(int(text), "jour")
    match = _DURATION_RE.fullmatch(text) or _DURATION_RE.fullmatch(" " + text)
    if match is None:
        raise ValidationError("durée", text, "une durée : 7, 7j, 2s ou 3m")
    return Duration(int(match.group(1)), _DURATION_WORDS[match.group(2).lower()])


def parse_quantity(text: str) -> Decimal | None:
    """A number of boxes (``2``, ``1,5``); empty gives None."""
    text = (text or "").strip()
    if not text:
        return None
    value = _amount(text, "quantité")
    if value <= 0:
        raise ValidationError("quantité", text, "un nombre supérieur à 0")
    return value


# Words of the drug's name or form -> unit of intake (first match wins).
_UNIT_WORDS = (
    ("sachet", "sachet"), ("gélule", "gélule"), ("capsule", "gélule"),
    ("lyophilisat", "comprimé"), ("comprimé", "comprimé"), ("suppositoire", "suppositoire"),
    ("collyre", "goutte"), ("gouttes", "goutte"), ("transdermique", "patch"),
    ("patch", "patch"), ("inhalation", "bouffée"), ("crème", "application"),
    ("pommade", "application"), ("gel", "application"), ("stylo", "stylo"),
    ("injectable", "ampoule"), ("ovule", "ovule"), ("buvable", "mL"), ("sirop", "mL"),
)


def unit_for(name: str, form: str = "") -> str:
    """The unit of intake for a drug, from its name then its form ("dose" otherwise)."""
    for text in (name, form):
        words = text.casefold()
        for word, unit in _UNIT_WORDS:
            if re.search(rf"\b{word}", words):
                return unit
    return "dose"


_DURATION_SHORT = {"jour": "j", "semaine": "s", "mois": "m"}


def format_posology(posology: Posology | FreeTextPosology) -> str | None:
    """What to type in the posology field to get ``posology`` back (a pattern number,
    ``1-0-1``, ``3/j``, free text; then the duration), or None when the shorthand cannot
    say it (the line keeps it as long as the field is not changed)."""
    if isinstance(posology, FreeTextPosology):
        return posology.text
    p = posology
    tail = f" {p.duration.value}{_DURATION_SHORT[p.duration.unit]}" if p.duration else ""
    heads = list(PATTERNS)
    if p.moments:
        doses = dict(zip(p.moments, p.moment_doses or (p.dose,) * len(p.moments),
                         strict=False))
        order = _MOMENT_ORDER if "coucher" in doses else _MOMENT_ORDER[:3]
        heads.append("-".join(format_quantity(doses.get(m, Decimal(0))) for m in order))
    if p.times_per_day:
        heads.append(f"{p.times_per_day}/j")
    for head in heads:
        try:
            if parse_posology(head + tail, p.unit) == p:
                return head + tail
        except ValidationError:
            continue
    return None
