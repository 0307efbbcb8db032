"""Posology of a prescription line: the structured model, its plain-French wording, its JSON form.

A line's posology is either structured (``Posology``) or free text (``FreeTextPosology``).
``describe()`` gives the sentence the physician reads back before signing and that is printed on
the order, e.g. "1 comprimé matin et soir pendant 7 jours". ``to_dict()`` / ``posology_from_dict()``
give a JSON-safe form that round-trips exactly; ``posology_from_dict`` also validates documents
written by other software and raises ``ValidationError`` naming the offending field.

Rules of the structured model (enforced in ``__post_init__``):

- ``dose`` is the amount per intake: a ``Decimal`` (an ``int`` is accepted and converted),
  greater than 0, at most 1 000 000, at most 3 decimal places, stored normalised (2.50 -> 2.5).
- ``unit`` is a word. Known forms (comprimé, gélule, ...) are matched ignoring case and accepting
  their plural, and stored in their canonical singular ("Comprimés" -> "comprimé", "ml" -> "mL",
  Greek "μg" -> micro sign "µg"). Unknown units are accepted (letters, spaces, ``' - . /``, at
  most 40 characters, no digit: the number belongs in ``dose``) and printed invariable.
- At most one frequency kind: ``moments``, ``times_per_day``, ``interval_hours``, ``every_days`` or
  ``times_per_week``. ``moments`` are stored in the canonical order of ``MOMENTS``, without
  duplicates.
- ``moment_doses`` (one dose per moment, only when doses differ) needs two moments or more, one
  dose per moment, not all equal; ``dose`` must then be the largest of them (the largest single
  intake, which safety checks use).
- ``as_needed`` ("si besoin") stands alone or qualifies one frequency. ``max_per_day`` only goes
  with ``as_needed`` and is at least the largest single intake.
- No frequency and not as needed means a single intake ("1 sachet en prise unique"); such a
  posology takes no duration.
- ``duration`` is a ``Duration``: at most 366 days, 52 weeks or 12 months (a French prescription is
  valid for one year at most).
- ``route`` is a word such as "orale"; known routes are matched ignoring case, and a leading
  "voie " or "par voie " is dropped (it is part of the wording).

Wording conventions (French, no trailing period):

- Decimal comma: "2,5 mL", "1,5 comprimé". Integers of 10 000 and more are grouped by thousands
  with a no-break space (U+00A0, present in Latin-1 and the printer code pages) so that
  "100 000 UI" never reads as "10 000 UI" and never wraps inside the number.
- Quarters below one are written as fractions for countable forms: 0.25 -> "1/4", 0.5 -> "1/2",
  0.75 -> "3/4" ("1/2 comprimé"). Above one, the decimal comma is used ("1,5 comprimé", not
  "1 et 1/2"), and measuring units (mL, mg, g, µg, UI) and unknown units always use decimals
  ("0,5 mL"). The "½" glyph is never used: the Linux console font lacks it.
- Plural from 2 (French rule): "1,5 comprimé", "2 comprimés"; "patch" -> "patchs"; "cuillère à
  café" -> "cuillères à café"; measuring units are invariable.
- Moments: "le matin", "le midi", "le soir", "au coucher" alone; several without article, bedtime
  keeping its "au": "matin et soir", "matin, midi et soir", "soir et au coucher",
  "matin, midi, soir et au coucher". Different doses per moment:
  "1 comprimé le matin et 2 comprimés le soir".
- Other frequencies: "3 fois par jour", "1 fois par jour", "toutes les 8 heures",
  "toutes les heures", "tous les 2 jours", "1 fois par semaine".
- Sentence order: quantity, "par voie <route>", frequency, "si besoin", ", sans dépasser <max>
  par jour", then "pendant <duration>" (after a comma when a maximum precedes it, so that the
  duration does not read as part of the maximum): "2 gélules par voie orale 3 fois par jour
  pendant 5 jours". With doses per moment the route follows the list of moments.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from appliance.domain import JsonObject
from appliance.domain.secure import decimal_words, number_words
from appliance.domain.text import forbidden_character
from appliance.errors import ValidationError

__all__ = [
    "DURATION_UNITS",
    "KNOWN_ROUTES",
    "KNOWN_UNITS",
    "MEASURE_UNITS",
    "MOMENTS",
    "Duration",
    "FreeTextPosology",
    "Posology",
    "posology_from_dict",
]

MOMENTS = ("matin", "midi", "soir", "coucher")
DURATION_UNITS = ("jour", "semaine", "mois")

# Countable forms: singular -> plural.
KNOWN_UNITS: dict[str, str] = {
    "comprimé": "comprimés",
    "gélule": "gélules",
    "sachet": "sachets",
    "goutte": "gouttes",
    "bouffée": "bouffées",
    "application": "applications",
    "suppositoire": "suppositoires",
    "ampoule": "ampoules",
    "cuillère à café": "cuillères à café",
    "cuillère à soupe": "cuillères à soupe",
    "dose": "doses",
    "patch": "patchs",
    "unité": "unités",
    "ovule": "ovules",
    "stylo": "stylos",
    "flacon": "flacons",
}
# Measuring units: invariable, always written with decimals. "µ" is U+00B5 (MICRO SIGN).
MEASURE_UNITS = ("mL", "mg", "g", "\u00b5g", "UI")

KNOWN_ROUTES = (
    "orale",
    "sublinguale",
    "buccale",
    "cutanée",
    "transdermique",
    "rectale",
    "vaginale",
    "inhalée",
    "nasale",
    "ophtalmique",
    "auriculaire",
    "sous-cutanée",
    "intramusculaire",
    "intraveineuse",
)

_MOMENT_ALONE = {"matin": "le matin", "midi": "le midi", "soir": "le soir", "coucher": "au coucher"}
_MOMENT_IN_LIST = {"matin": "matin", "midi": "midi", "soir": "soir", "coucher": "au coucher"}
_DURATION_PLURAL = {"jour": "jours", "semaine": "semaines", "mois": "mois"}
_FEMININE_UNITS = frozenset({"gélule", "goutte", "bouffée", "application", "ampoule",
                             "cuillère à café", "cuillère à soupe", "dose", "unité"})
# A French prescription is valid one year at most (renewals included).
_DURATION_MAX = {"jour": 366, "semaine": 52, "mois": 12}
_FRACTIONS = {Decimal("0.25"): "1/4", Decimal("0.5"): "1/2", Decimal("0.75"): "3/4"}

_MAX_DOSE = Decimal(1_000_000)
_MAX_DECIMALS = 3
_MAX_WORD = 40
_MAX_TEXT = 500
_NBSP = "\u00a0"

# Bounds of each frequency kind (inclusive). A daily cadence is times_per_day, a weekly one
# times_per_week=1, so every_days starts at 2 and times_per_week stops at 6.
_FREQ_BOUNDS = {
    "times_per_day": (1, 24),
    "interval_hours": (1, 168),
    "every_days": (2, 366),
    "times_per_week": (1, 6),
}
_FREQ_KINDS = ("moments", "times_per_day", "interval_hours", "every_days", "times_per_week")

_UNIT_LOOKUP: dict[str, str] = {}
for _singular, _plural in KNOWN_UNITS.items():
    _UNIT_LOOKUP[_singular.casefold()] = _singular
    _UNIT_LOOKUP[_plural.casefold()] = _singular
for _measure in MEASURE_UNITS:
    _UNIT_LOOKUP[_measure.casefold()] = _measure
_ROUTE_LOOKUP = {r.casefold(): r for r in KNOWN_ROUTES}

_WORD_CHARS_RE = re.compile(r"(?:[^\W\d_]|[ '’\-./])+")
_DECIMAL_RE = re.compile(r"\d{1,7}(?:\.\d{1,3})?")


# --- checks shared by the constructors and the JSON reader -----------------------------------


def _fail(field: str, value: object, expected: str) -> ValidationError:
    return ValidationError(f"posology.{field}", value, expected)


def _check_int(field: str, value: object, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _fail(field, value, f"a whole number from {low} to {high}")
    if not low <= value <= high:
        raise _fail(field, value, f"a whole number from {low} to {high}")
    return value


def _check_amount(field: str, value: object) -> Decimal:
    """A dose-like amount: Decimal or int, finite, > 0, <= 1 000 000, <= 3 decimals; normalised."""
    expected = "a Decimal greater than 0, at most 1000000, with at most 3 decimal places"
    if isinstance(value, bool) or not isinstance(value, Decimal | int):
        raise _fail(field, value, expected + " (a float is refused: use Decimal)")
    amount = Decimal(value)
    if not amount.is_finite() or amount <= 0 or amount > _MAX_DOSE:
        raise _fail(field, value, expected)
    if amount == amount.to_integral_value():
        return amount.quantize(Decimal(1))
    amount = amount.normalize()
    exponent = amount.as_tuple().exponent
    assert isinstance(exponent, int)  # finite, checked above
    if -exponent > _MAX_DECIMALS:
        raise _fail(field, value, expected)
    return amount


def _clean_text(value: str) -> str:
    return unicodedata.normalize("NFC", value).strip()


def _check_word(
    field: str, value: object, lookup: Mapping[str, str], strip_prefixes: tuple[str, ...] = ()
) -> str:
    expected = (
        f"a word of at most {_MAX_WORD} characters: letters, spaces and ' - . / only, no digit"
    )
    if not isinstance(value, str):
        raise _fail(field, value, expected)
    word = " ".join(_clean_text(value).split())
    for prefix in strip_prefixes:
        if word.casefold().startswith(prefix):
            word = word[len(prefix) :]
    known = lookup.get(word.casefold())
    if known is not None:
        return known
    if not word or len(word) > _MAX_WORD or not _WORD_CHARS_RE.fullmatch(word):
        raise _fail(field, value, expected)
    if not word[0].isalpha():
        raise _fail(field, value, expected + ", starting with a letter")
    return word


# --- wording -----------------------------------------------------------------------------------


def _group(digits: str) -> str:
    if len(digits) < 5:
        return digits
    head = len(digits) % 3 or 3
    parts = [digits[:head]] + [digits[i : i + 3] for i in range(head, len(digits), 3)]
    return _NBSP.join(parts)


def _number(amount: Decimal, fractions: bool) -> str:
    if fractions and amount in _FRACTIONS:
        return _FRACTIONS[amount]
    whole, _, decimals = format(amount, "f").partition(".")
    return _group(whole) + ("," + decimals if decimals else "")


def _quantity(amount: Decimal, unit: str, words: bool = False) -> str:
    """'1/2 comprimé', '2 comprimés', '2,5 mL', '1,5 comprimé' (plural from 2).

    ``words``: in full French words, as a secure prescription needs them ("deux comprimés",
    "une demi-gélule", "trois quarts de comprimé", "deux virgule cinq millilitres")."""
    if words:
        return _quantity_words(amount, unit)
    countable = unit in KNOWN_UNITS
    word = KNOWN_UNITS[unit] if countable and amount >= 2 else unit
    return f"{_number(amount, countable)} {word}"


# Units written in words: (singular, plural, feminine). Unknown units are kept as typed.
_UNIT_WORDS: dict[str, tuple[str, str, bool]] = {
    "mL": ("millilitre", "millilitres", False), "mg": ("milligramme", "milligrammes", False),
    "g": ("gramme", "grammes", False), "\u00b5g": ("microgramme", "microgrammes", False),
    "UI": ("unité internationale", "unités internationales", True),
    **{singular: (singular, plural, singular in _FEMININE_UNITS)
       for singular, plural in KNOWN_UNITS.items()},
}


def _unit_words(unit: str) -> tuple[str, str, bool]:
    return _UNIT_WORDS.get(unit, (unit, unit, False))


def _quantity_words(amount: Decimal, unit: str) -> str:
    singular, plural, feminine = _unit_words(unit)
    countable = unit in KNOWN_UNITS
    if countable and amount == Decimal("0.5"):
        return f"{'une' if feminine else 'un'} demi-{singular}"
    if countable and amount in (Decimal("0.25"), Decimal("0.75")):
        of = "d'" if singular[:1] in "aeiouéèh" else "de "
        return f"{decimal_words(amount)} {of}{singular}"
    return f"{decimal_words(amount, feminine)} {plural if amount >= 2 else singular}"


def _join(items: list[str]) -> str:
    if len(items) == 1:
        return items[0]
    return ", ".join(items[:-1]) + " et " + items[-1]


def _moments(moments: tuple[str, ...]) -> str:
    if len(moments) == 1:
        return _MOMENT_ALONE[moments[0]]
    return _join([_MOMENT_IN_LIST[m] for m in moments])


# --- the model ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Duration:
    """How long the treatment lasts: ``value`` units of ``jour``, ``semaine`` or ``mois``."""

    value: int
    unit: str

    def __post_init__(self) -> None:
        if self.unit not in DURATION_UNITS:
            raise _fail("duration.unit", self.unit, f"one of {', '.join(DURATION_UNITS)}")
        _check_int("duration.value", self.value, 1, _DURATION_MAX[self.unit])

    def describe(self, words: bool = False) -> str:
        word = self.unit if self.value == 1 else _DURATION_PLURAL[self.unit]
        if words:
            return f"{number_words(self.value, feminine=self.unit == 'semaine')} {word}"
        return f"{self.value} {word}"

    @property
    def days(self) -> int:
        """The duration in days (a week is 7, a month 30)."""
        return self.value * {"jour": 1, "semaine": 7, "mois": 30}[self.unit]

    def to_dict(self) -> JsonObject:
        return {"value": self.value, "unit": self.unit}


@dataclass(frozen=True)
class Posology:
    """A structured posology; see the module docstring for the rules and the wording."""

    dose: Decimal
    unit: str
    moments: tuple[str, ...] = ()
    moment_doses: tuple[Decimal, ...] = ()
    times_per_day: int | None = None
    interval_hours: int | None = None
    every_days: int | None = None
    times_per_week: int | None = None
    duration: Duration | None = None
    as_needed: bool = False
    max_per_day: Decimal | None = None
    route: str | None = None

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        set_(self, "dose", _check_amount("dose", self.dose))
        set_(self, "unit", _check_word("unit", self.unit, _UNIT_LOOKUP))
        moments, doses = self._checked_moments()
        set_(self, "moments", moments)
        set_(self, "moment_doses", doses)
        for name, (low, high) in _FREQ_BOUNDS.items():
            if getattr(self, name) is not None:
                _check_int(name, getattr(self, name), low, high)
        kinds = [k for k in _FREQ_KINDS if getattr(self, k) not in (None, ())]
        if len(kinds) > 1:
            raise _fail(
                kinds[1],
                getattr(self, kinds[1]),
                f"a single frequency kind, but {kinds[0]} is also given "
                f"(choose one of {', '.join(_FREQ_KINDS)})",
            )
        if not isinstance(self.as_needed, bool):
            raise _fail("as_needed", self.as_needed, "true or false")
        if self.duration is not None:
            if not isinstance(self.duration, Duration):
                raise _fail("duration", self.duration, "a Duration")
            if not kinds and not self.as_needed:
                raise _fail(
                    "duration",
                    self.duration,
                    "no duration for a single intake (give a frequency, or as_needed)",
                )
        if self.max_per_day is not None:
            set_(self, "max_per_day", _check_amount("max_per_day", self.max_per_day))
            if not self.as_needed:
                raise _fail("max_per_day", self.max_per_day, "only with as_needed (si besoin)")
            if self.max_per_day < self.dose:
                raise _fail(
                    "max_per_day",
                    self.max_per_day,
                    f"at least the largest single intake ({self.dose})",
                )
        if self.route is not None:
            set_(self, "route", _check_word(
                "route", self.route, _ROUTE_LOOKUP, ("par voie ", "voie ")
            ))

    def _checked_moments(self) -> tuple[tuple[str, ...], tuple[Decimal, ...]]:
        raw_moments, raw_doses = self.moments, self.moment_doses
        if not isinstance(raw_moments, tuple | list):
            raise _fail("moments", raw_moments, f"a sequence of {', '.join(MOMENTS)}")
        for moment in raw_moments:
            if moment not in MOMENTS:
                raise _fail("moments", raw_moments, f"each one of {', '.join(MOMENTS)}")
        if len(set(raw_moments)) != len(raw_moments):
            raise _fail("moments", raw_moments, "each moment at most once")
        if not isinstance(raw_doses, tuple | list):
            raise _fail("moment_doses", raw_doses, "a sequence of Decimal doses")
        if not raw_doses:
            return tuple(sorted(raw_moments, key=MOMENTS.index)), ()
        doses = [_check_amount("moment_doses", d) for d in raw_doses]
        if len(raw_moments) < 2 or len(doses) != len(raw_moments):
            raise _fail(
                "moment_doses", raw_doses, "one dose per moment, with two moments or more"
            )
        if len(set(doses)) == 1:
            raise _fail(
                "moment_doses", raw_doses, "doses that differ (otherwise give dose alone)"
            )
        if self.dose != max(doses):
            raise _fail(
                "dose", self.dose, f"the largest of moment_doses ({max(doses)}) when they are given"
            )
        pairs = sorted(zip(raw_moments, doses, strict=True), key=lambda p: MOMENTS.index(p[0]))
        return tuple(m for m, _ in pairs), tuple(d for _, d in pairs)

    def _schedule(self, words: bool = False) -> str:
        """Dose, route and frequency: '1 comprimé par voie orale matin et soir'.

        With different doses per moment the route follows the whole list:
        '1 comprimé le matin et 2 comprimés le soir par voie orale'.
        """
        route = f" par voie {self.route}" if self.route is not None else ""
        if self.moment_doses:
            each = [
                f"{_quantity(d, self.unit, words)} {_MOMENT_ALONE[m]}"
                for m, d in zip(self.moments, self.moment_doses, strict=True)
            ]
            return _join(each) + route
        quantity = _quantity(self.dose, self.unit, words) + route

        def count(n: int, feminine: bool = False) -> str:
            return number_words(n, feminine) if words else str(n)

        if self.moments:
            return f"{quantity} {_moments(self.moments)}"
        if self.times_per_day is not None:
            return f"{quantity} {count(self.times_per_day, True)} fois par jour"
        if self.interval_hours is not None:
            if self.interval_hours == 1:
                return f"{quantity} toutes les heures"
            return f"{quantity} toutes les {count(self.interval_hours, True)} heures"
        if self.every_days is not None:
            return f"{quantity} tous les {count(self.every_days)} jours"
        if self.times_per_week is not None:
            return f"{quantity} {count(self.times_per_week, True)} fois par semaine"
        if self.as_needed:
            return quantity
        return f"{quantity} en prise unique"

    def describe(self, words: bool = False) -> str:
        """The plain-French sentence, e.g. '1 comprimé matin et soir pendant 7 jours'.

        ``words``: every number in full French words, as a secure prescription needs it:
        'deux comprimés matin et soir pendant vingt-huit jours'."""
        text = self._schedule(words)
        if self.as_needed:
            text += " si besoin"
        if self.max_per_day is not None:
            text += f", sans dépasser {_quantity(self.max_per_day, self.unit, words)} par jour"
        if self.duration is not None:
            text += "," if self.max_per_day is not None else ""
            text += f" pendant {self.duration.describe(words)}"
        return text

    def to_dict(self) -> JsonObject:
        """JSON-safe: decimals as strings ("0.5"), tuples as lists, None and () omitted."""
        out: JsonObject = {"kind": "structured", "dose": _decimal_str(self.dose)}
        out["unit"] = self.unit
        if self.moments:
            out["moments"] = list(self.moments)
        if self.moment_doses:
            out["moment_doses"] = [_decimal_str(d) for d in self.moment_doses]
        for name in _FREQ_BOUNDS:
            if getattr(self, name) is not None:
                out[name] = getattr(self, name)
        if self.duration is not None:
            out["duration"] = self.duration.to_dict()
        out["as_needed"] = self.as_needed
        if self.max_per_day is not None:
            out["max_per_day"] = _decimal_str(self.max_per_day)
        if self.route is not None:
            out["route"] = self.route
        return out


@dataclass(frozen=True)
class FreeTextPosology:
    """A posology the structured model cannot express, typed by the physician (<= 500 chars).

    The text is stored NFC-normalised and stripped; ``describe()`` returns it as typed. Control
    characters other than a line feed are refused; bidirectional overrides are refused as new
    input (``check_input``, ``appliance.domain.text``), and a stored text loads as it is.
    """

    text: str

    def __post_init__(self) -> None:
        expected = f"a non-empty text of at most {_MAX_TEXT} characters, without control characters"
        if not isinstance(self.text, str):
            raise _fail("text", self.text, expected)
        text = _clean_text(self.text)
        # Cs: a lone surrogate (JSON "\ud800") that no UTF-8 document can carry
        if not text or len(text) > _MAX_TEXT:
            raise _fail("text", self.text, expected)
        bad = next((i for i, c in enumerate(text)
                    if unicodedata.category(c) in ("Cc", "Cs") and c != "\n"), None)
        if bad is not None:
            raise _fail("text", self.text,
                        f"{expected} (U+{ord(text[bad]):04X} at position {bad + 1})")
        object.__setattr__(self, "text", text)

    def check_input(self) -> None:
        found = forbidden_character(self.text, line_feed=True)
        if found is not None:
            raise _fail("text", self.text, "a text without control characters other than a "
                                           f"line feed, or bidirectional overrides ({found})")

    def describe(self, words: bool = False) -> str:
        return self.text

    def to_dict(self) -> JsonObject:
        return {"kind": "text", "text": self.text}


# --- JSON reader -------------------------------------------------------------------------------


def _decimal_str(amount: Decimal) -> str:
    return format(amount, "f")


def _read_decimal(field: str, value: object) -> Decimal:
    if isinstance(value, int) and not isinstance(value, bool):
        return Decimal(value)
    if isinstance(value, str) and _DECIMAL_RE.fullmatch(value):
        return Decimal(value)
    raise _fail(field, value, 'a decimal number written as a string with a dot, e.g. "0.5"')


def _read_list(field: str, value: object) -> list[object]:
    if not isinstance(value, list):
        raise _fail(field, value, "a list")
    return value


_STRUCTURED_KEYS = frozenset(
    {"kind", "dose", "unit", "moments", "moment_doses", "duration", "as_needed", "max_per_day"}
    | {"route", *_FREQ_BOUNDS}
)


def posology_from_dict(d: object) -> Posology | FreeTextPosology:
    """Rebuild a posology from ``to_dict()`` output (or equivalent JSON from other software).

    Strict: unknown keys, missing required keys and wrong types raise ``ValidationError`` naming
    the field (``posology.<field>``). Decimals are strings ("0.5") or integers; floats are refused.
    """
    if not isinstance(d, Mapping):
        raise ValidationError("posology", d, "an object with a kind")
    kind = d.get("kind")
    if kind == "text":
        extra = set(d) - {"kind", "text"}
        if extra:
            raise _fail(sorted(extra)[0], d[sorted(extra)[0]], "no such field for a text posology")
        if "text" not in d:
            raise _fail("text", None, "a text (required)")
        return FreeTextPosology(text=d["text"])
    if kind != "structured":
        raise _fail("kind", kind, '"structured" or "text"')
    extra = set(d) - _STRUCTURED_KEYS
    if extra:
        name = sorted(extra)[0]
        known = ", ".join(sorted(_STRUCTURED_KEYS))
        raise _fail(name, d[name], f"one of the known fields: {known}")
    for required in ("dose", "unit"):
        if required not in d:
            raise _fail(required, None, "a value (required)")
    kwargs: dict[str, Any] = {"dose": _read_decimal("dose", d["dose"]), "unit": d["unit"]}
    if "moments" in d:
        moments = _read_list("moments", d["moments"])
        for moment in moments:
            if not isinstance(moment, str):
                raise _fail("moments", d["moments"], f"each one of {', '.join(MOMENTS)}")
        kwargs["moments"] = tuple(moments)
    if "moment_doses" in d:
        doses = _read_list("moment_doses", d["moment_doses"])
        kwargs["moment_doses"] = tuple(_read_decimal("moment_doses", x) for x in doses)
    for name in _FREQ_BOUNDS:
        if d.get(name) is not None:
            kwargs[name] = d[name]
    if d.get("duration") is not None:
        kwargs["duration"] = _read_duration(d["duration"])
    if "as_needed" in d:
        kwargs["as_needed"] = d["as_needed"]
    if d.get("max_per_day") is not None:
        kwargs["max_per_day"] = _read_decimal("max_per_day", d["max_per_day"])
    if d.get("route") is not None:
        kwargs["route"] = d["route"]
    return Posology(**kwargs)


def _read_duration(value: object) -> Duration:
    if not isinstance(value, Mapping) or set(value) != {"value", "unit"}:
        raise _fail("duration", value, 'an object {"value": <int>, "unit": "jour|semaine|mois"}')
    return Duration(value=value["value"], unit=value["unit"])
