"""Secure prescriptions (ordonnance sécurisée): which lines need one, their legal limits, and
quantities written in full French words.

Source of the rules: the BDPM's prescription and dispensing conditions file
(``CIS_CPD_bdpm.txt``, ANSM — base de données publique des médicaments), one text per row,
copied on each medication line as ``MedicationLine.conditions`` when it is prescribed. Only
these texts are read (no list of drugs is kept here):

- ``stupéfiants`` (Code de la santé publique R5132-29: narcotics are prescribed on secure
  paper, quantities in full words) and ``prescription en toutes lettres sur ordonnance
  sécurisée`` (R5132-5 and arrêté du 31 mars 1999: secure paper, the number of units per
  intake, the number of intakes and the duration in full words) make a line *secure*;
- ``prescription limitée à N jours|semaines|mois`` gives the line's legal maximum duration
  (weeks are 7 days, months 30); ``prescription limitée à 7 jours ou 28 jours`` depends on
  the administration device (R5132-30), so the larger bound, 28 days, is applied: a bound
  Ordo cannot know is not enforced, since a false refusal is worse than none;
- ``délivrance fractionnée de N jours`` is printed on the order (the pharmacist hands
  over N days at a time), it limits nothing here.

A secure line is printed on secure paper (a PDF for the secure-paper printer), never on a
thermal receipt; a prescription mixing secure and other lines is split into two orders
(``split_lines``), each with its own ID.

French numbers (``number_words``): traditional spelling (before the 1990 reform): hyphens
between tens and units below one hundred, "et" before "un"/"onze" in 21 to 71
("vingt et un", "soixante et onze"), "quatre-vingts" and "cents" plural only at the end,
"mille" invariable, "un" becoming "une" before a feminine noun ("vingt et une gélules").

Pure: stdlib only.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import TypeVar

from appliance.errors import ValidationError

__all__ = [
    "SECURE_MARKERS",
    "SecureRules",
    "number_words",
    "relevant_conditions",
    "split_lines",
]

SECURE_MARKERS = ("stupéfiants", "prescription en toutes lettres sur ordonnance sécurisée")
DAYS_PER = {"jour": 1, "jours": 1, "semaine": 7, "semaines": 7, "mois": 30}
_LIMIT_RE = re.compile(r"prescription limitée à (\d+) (jours|jour|semaines|semaine|mois)"
                       r"(?: ou (\d+) (jours|jour|semaines|semaine|mois))?$")
_FRACTION_RE = re.compile(r"délivrance fractionnée de (\d+) jours?$")


def _clean(text: str) -> str:
    return " ".join(text.split()).casefold()


def relevant_conditions(conditions: Iterable[str]) -> tuple[str, ...]:
    """The conditions of a specialty that change its printed order (secure paper, limits,
    fractionation), as written in the BDPM, in their order, without duplicates."""
    out: list[str] = []
    for text in conditions:
        clean = _clean(text)
        if (clean in SECURE_MARKERS or _LIMIT_RE.match(clean) or _FRACTION_RE.match(clean)) \
                and clean not in out:
            out.append(clean)
    return tuple(out)


@dataclass(frozen=True)
class SecureRules:
    """What a line's BDPM conditions require."""

    secure: bool = False
    max_days: int | None = None
    fraction_days: int | None = None

    @classmethod
    def from_conditions(cls, conditions: Iterable[str]) -> SecureRules:
        secure, max_days, fraction = False, None, None
        for text in relevant_conditions(conditions):
            if text in SECURE_MARKERS:
                secure = True
            elif limit := _LIMIT_RE.match(text):
                days = int(limit[1]) * DAYS_PER[limit[2]]
                if limit[3]:  # "7 jours ou 28 jours": the larger bound
                    days = max(days, int(limit[3]) * DAYS_PER[limit[4]])
                max_days = days if max_days is None else min(max_days, days)
            elif fractioned := _FRACTION_RE.match(text):
                fraction = int(fractioned[1])
        return cls(secure, max_days, fraction)

    def mention(self) -> str:
        """The printed mention, e.g. "Délivrance fractionnée de 7 jours"."""
        parts = []
        if self.secure:
            parts.append("Ordonnance sécurisée")
        if self.max_days is not None:
            parts.append(f"prescription limitée à {self.max_days} jours")
        if self.fraction_days is not None:
            parts.append(f"délivrance fractionnée de {self.fraction_days} jours")
        text = ", ".join(parts)
        return text[:1].upper() + text[1:]


def duration_days(value: int, unit: str) -> int:
    """A treatment duration in days (a month counts 30)."""
    return value * DAYS_PER[unit]


L = TypeVar("L")


def split_lines(lines: Sequence[L], is_secure: Iterable[bool]) -> tuple[list[L], list[L]]:
    """(other lines, secure lines), each in the prescription's order."""
    other: list[L] = []
    secure: list[L] = []
    for line, flag in zip(lines, is_secure, strict=True):
        (secure if flag else other).append(line)
    return other, secure


# -- numbers in words ------------------------------------------------------------------------
_UNITS = ("zéro", "un", "deux", "trois", "quatre", "cinq", "six", "sept", "huit", "neuf",
          "dix", "onze", "douze", "treize", "quatorze", "quinze", "seize", "dix-sept",
          "dix-huit", "dix-neuf")
_TENS = {2: "vingt", 3: "trente", 4: "quarante", 5: "cinquante", 6: "soixante"}
MAX_WORDS = 999_999_999


def _below_100(n: int) -> str:
    if n < 20:
        return _UNITS[n]
    tens, unit = divmod(n, 10)
    if tens in _TENS:
        if unit == 0:
            return _TENS[tens]
        if unit == 1:
            return f"{_TENS[tens]} et un"
        return f"{_TENS[tens]}-{_UNITS[unit]}"
    if tens == 7:  # soixante-dix .. soixante-dix-neuf
        return "soixante et onze" if unit == 1 else f"soixante-{_UNITS[10 + unit]}"
    # 80 .. 99: quatre-vingts, quatre-vingt-un, quatre-vingt-dix, quatre-vingt-onze...
    rest = n - 80
    return "quatre-vingts" if rest == 0 else f"quatre-vingt-{_UNITS[rest]}"


def _below_1000(n: int, last: bool) -> str:
    """``last``: nothing follows (``cents`` and ``quatre-vingts`` keep their s only then)."""
    hundreds, rest = divmod(n, 100)
    words = []
    if hundreds:
        if hundreds == 1:
            words.append("cent")
        else:
            plural = rest == 0 and last
            words.append(f"{_UNITS[hundreds]} cent{'s' if plural else ''}")
    if rest:
        text = _below_100(rest)
        if text == "quatre-vingts" and not last:
            text = "quatre-vingt"
        words.append(text)
    return " ".join(words)


def _feminine(words: str) -> str:
    """"un" → "une" when it is the last word: "vingt et une", "cent une" (not "un million")."""
    if words == "un":
        return "une"
    if words.endswith(" un") or words.endswith("-un"):
        return words[:-2] + "une"
    return words


def number_words(n: int, feminine: bool = False) -> str:
    """A whole number from 0 to 999 999 999 in French words (traditional spelling)."""
    if isinstance(n, bool) or not isinstance(n, int) or not 0 <= n <= MAX_WORDS:
        raise ValidationError("number", n, f"a whole number from 0 to {MAX_WORDS}")
    if n == 0:
        return "zéro"
    millions, rest = divmod(n, 1_000_000)
    thousands, units = divmod(rest, 1000)
    words = []
    if millions:
        words.append(f"{_below_1000(millions, last=True)} million{'s' if millions > 1 else ''}")
    if thousands:
        words.append("mille" if thousands == 1 else f"{_below_1000(thousands, False)} mille")
    if units:
        words.append(_below_1000(units, last=True))
    text = " ".join(words)
    return _feminine(text) if feminine and units else text


_FRACTION_WORDS = {Decimal("0.25"): "un quart", Decimal("0.5"): "un demi",
                   Decimal("0.75"): "trois quarts"}


def decimal_words(amount: Decimal, feminine: bool = False) -> str:
    """A dose in words: whole numbers as ``number_words``, quarters below one as fractions
    ("un demi", "trois quarts"), other decimals with "virgule" ("deux virgule cinq")."""
    if amount in _FRACTION_WORDS:
        return _FRACTION_WORDS[amount]
    whole, _, decimals = format(amount.normalize(), "f").partition(".")
    text = number_words(int(whole), feminine and not decimals)
    if decimals:
        zeros = len(decimals) - len(decimals.lstrip("0"))
        tail = " ".join(["zéro"] * zeros + [number_words(int(decimals))]) if \
            decimals.strip("0") else ""
        text = f"{text} virgule {tail}".rstrip()
    return text
