"""Drug facts for the prescribing-safety checks, read from the referential file (BDPM).

``ReferentialFacts.drug(cis=..., cip13=...)`` gives a ``DrugInfo``: the specialty's name,
form, routes, prescription conditions (CIS_CPD) and active components (CIS_COMPO) with
their strength parsed into mg or UI per counted unit ("un comprimé") or per mL ("100 ml",
"une ampoule de 2 ml"). A strength written any other way ("2CH à 30CH", "qsp", "1 mole",
"0,2 g" per "100 g de crème") is kept as text only: the checks then know the substance but
not the amount, and raise no dose alert for it.

``substances(text)`` resolves an allergy written by name or by BDPM substance code to the
substances of the referential (same moiety: "amoxicilline" finds AMOXICILLINE and
AMOXICILLINE TRIHYDRATÉE).

The file is opened read-only on first use, reopened when an import has replaced it, and
each specialty is read once (three indexed queries) then kept: the checks run as the
physician types.
"""

from __future__ import annotations

import os
import re
import sqlite3
import threading
import time
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterable, Iterator, Sequence
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from appliance.domain.drug_facts import IU_UNIT, MASS_UNIT, Component, DrugInfo, moiety_key
from appliance.domain.ids import validate_cip13, validate_cis
from appliance.domain.people import fold
from appliance.errors import InvalidIdentifier, StoreError
from appliance.store.referential.build import LIST_SEPARATOR, readonly_uri

CACHE_SIZE = 4096
# How long a cached answer is served before the file is looked at again (an import
# replaces it; the next query after this delay reopens it and forgets the cache).
RECHECK_S = 1.0
_NUMBER = r"(\d{1,3}(?:[ \u00a0\u202f]\d{3})+|\d+)(?:[.,](\d+))?"
_DOSAGE = re.compile(rf"^{_NUMBER}\s*(mg|g|µg|μg|microgrammes?|ui|u\.i\.|mui|m\.u\.i\.)[\s,.]*$",
                     re.IGNORECASE)
_MASS_FACTORS = {"mg": Decimal(1), "g": Decimal(1000), "µg": Decimal("0.001"),
                 "μg": Decimal("0.001"), "microgramme": Decimal("0.001"),
                 "microgrammes": Decimal("0.001")}
_IU_FACTORS = {"ui": Decimal(1), "u.i.": Decimal(1), "mui": Decimal(1_000_000),
               "m.u.i.": Decimal(1_000_000)}
# Counted units of CIS_COMPO's reference ("un comprimé", "une gélule", ...), as the
# posology's units name them. Misspellings found in the 2022 extract are listed too.
_COUNTED = {
    "comprimé": "comprimé", "comprimés": "comprimé", "comprrimé": "comprimé",
    "comrpimé": "comprimé", "gélule": "gélule", "capsule": "gélule", "sachet": "sachet",
    "sachet-dose": "sachet", "suppositoire": "suppositoire", "ampoule": "ampoule",
    "ovule": "ovule", "patch": "patch", "dose": "dose", "flacon": "flacon",
    "stylo": "stylo", "lyophilisat": "lyophilisat",
}
_REFERENCE_COUNTED = re.compile(
    r"^(?:(?:un|une|1)\s+)?(?P<unit>[a-zéèêàç-]+)(?:\s+(?:de|d')\s*(?P<ml>\d+(?:[.,]\d+)?)"
    r"\s*(?P<l>ml|l)\b)?", re.IGNORECASE)
_REFERENCE_VOLUME = re.compile(r"^(?P<ml>\d+(?:[.,]\d+)?)\s*(?P<l>ml|l|litre)\b",
                               re.IGNORECASE)


MAX_PARAMETERS = 500
_PRESENTATIONS_SQL = "SELECT cip13, cis FROM presentation WHERE cip13 IN ({})"
_SPECIALTIES_SQL = "SELECT cis, name, form, routes FROM specialty WHERE cis IN ({})"
_COMPONENTS_SQL = ("SELECT cis, element, substance_code, substance, dosage, dosage_reference,"
                   " nature, link FROM composition WHERE cis IN ({}) ORDER BY rowid")
_CONDITIONS_SQL = "SELECT cis, text FROM condition WHERE cis IN ({}) ORDER BY rowid"


def _in(template: str, count: int) -> str:
    """``template`` with ``count`` parameter marks in its ``IN (...)``."""
    return template.format(",".join("?" * count))


def _chunks(codes: list[str]) -> Iterator[list[str]]:
    for start in range(0, len(codes), MAX_PARAMETERS):
        yield codes[start:start + MAX_PARAMETERS]


def _valid(validate: Callable[[str], str], code: str) -> bool:
    try:
        return validate(code) == code
    except InvalidIdentifier:
        return False


def parse_dosage(text: str) -> tuple[Decimal, str] | None:
    """'1000 mg' -> (1000, 'mg'); '0,5 g' -> (500, 'mg'); '50 000 UI' -> (50000, 'UI')."""
    match = _DOSAGE.match(text.strip())
    if not match:
        return None
    whole, decimals, unit = match.groups()
    try:
        value = Decimal("".join(whole.split()).replace("\u202f", "") + "." + (decimals or "0"))
    except InvalidOperation:
        return None
    unit = unit.lower()
    if unit in _MASS_FACTORS:
        return value * _MASS_FACTORS[unit], MASS_UNIT
    return value * _IU_FACTORS[unit], IU_UNIT


def _volume(number: str, unit: str) -> Decimal:
    value = Decimal(number.replace(",", "."))
    return value * 1000 if unit.lower() in {"l", "litre"} else value


def parse_reference(text: str) -> tuple[str | None, Decimal | None]:
    """The quantity a strength refers to: ('comprimé', None) for 'un comprimé', (None, 100)
    for '100 ml', ('ampoule', 2) for 'une ampoule de 2 ml'; (None, None) otherwise."""
    text = " ".join(text.split())
    volume = _REFERENCE_VOLUME.match(text)
    if volume:
        amount = _volume(volume["ml"], volume["l"])
        return None, amount if amount > 0 else None
    counted = _REFERENCE_COUNTED.match(text)
    if counted and counted["unit"].lower() in _COUNTED:
        per_ml = None
        if counted["ml"]:
            per_ml = _volume(counted["ml"], counted["l"])
        return _COUNTED[counted["unit"].lower()], per_ml if per_ml else None
    return None, None


# A row of the referential file: its column types are the schema's (``sqlite3`` rows are Any).
_Row = tuple[Any, ...]


def component(row: Sequence[Any]) -> Component:
    """A ``Component`` from a ``composition`` row (element, code, substance, dosage,
    reference, nature, link)."""
    element, code, substance, dosage, reference, nature, link = row
    amount = parse_dosage(dosage) if dosage else None
    per_unit, per_ml = parse_reference(reference) if reference else (None, None)
    if amount is None or (per_unit is None and per_ml is None):
        return Component(code, substance, nature, element, link, dosage_text=dosage)
    return Component(code, substance, nature, element, link, amount[0], amount[1], per_unit,
                     per_ml, dosage)


class ReferentialFacts:
    """``DrugFacts`` (``appliance.services.checks``) over ``referential.sqlite``.

    Thread-safe; nothing is opened by the constructor. ``StoreError`` when there is no
    referential file or it cannot be read.
    """

    def __init__(self, path: Path | str, cache_size: int = CACHE_SIZE,
                 recheck_s: float = RECHECK_S) -> None:
        self.path = Path(path)
        self.cache_size = cache_size
        self.recheck_s = recheck_s
        self._conn: sqlite3.Connection | None = None
        self._identity: tuple[int, int] | None = None
        self._drugs: OrderedDict[str, DrugInfo | None] = OrderedDict()
        self._cis_of: dict[str, str | None] = {}
        self._moieties: dict[str, dict[str, Counter[str]]] | None = None
        self._checked_at = float("-inf")
        self._lock = threading.Lock()

    # --- connection -------------------------------------------------------------------

    def _db(self) -> sqlite3.Connection:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            raise StoreError(
                f"no drug referential at {self.path}: run `ordo drugs import`") from None
        identity = (st.st_dev, st.st_ino)
        if self._conn is None or identity != self._identity:
            self.close()
            try:
                self._conn = sqlite3.connect(readonly_uri(self.path), uri=True,
                                             check_same_thread=False)
            except sqlite3.Error as exc:
                raise StoreError(f"cannot open the referential {self.path}: {exc}") from exc
            self._identity = identity
        self._checked_at = time.monotonic()
        return self._conn

    def _fresh(self) -> None:
        """Reopen (and forget the cache) if an import replaced the file; looked at once
        every ``recheck_s`` at most, since every keystroke of the editor asks again."""
        if time.monotonic() - self._checked_at >= self.recheck_s:
            self._db()

    def _rows(self, sql: str, params: Sequence[str] = ()) -> list[_Row]:
        try:
            return self._db().execute(sql, params).fetchall()
        except sqlite3.Error as exc:
            raise StoreError(f"referential query failed ({self.path}): {exc}") from exc

    def close(self) -> None:
        self._drugs.clear()
        self._cis_of.clear()
        self._moieties = None
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    # --- drugs ------------------------------------------------------------------------

    def drug(self, cis: str | None = None, cip13: str | None = None) -> DrugInfo | None:
        """The specialty of a CIS, or of a CIP13's presentation; None if unknown or if the
        code is malformed."""
        with self._lock:
            self._fresh()
            if cip13 and cip13 in self._cis_of:
                cis = self._cis_of[cip13]
                return self._cached(cis) if cis else None
            if not cip13 and cis is not None and cis in self._drugs:
                return self._cached(cis)
            if cip13:
                try:
                    code = validate_cip13(cip13)
                except InvalidIdentifier:
                    return None
                if code not in self._cis_of:
                    found = self._rows("SELECT cis FROM presentation WHERE cip13 = ?", (code,))
                    self._cis_of[code] = found[0][0] if found else None
                cis = self._cis_of[code]
                if cis is None:
                    return None
            if not cis:
                return None
            try:
                cis = validate_cis(cis)
            except InvalidIdentifier:
                return None
            if cis in self._drugs:
                return self._cached(cis)
            info = self._read(cis)
            self._drugs[cis] = info
            if len(self._drugs) > self.cache_size:
                self._drugs.popitem(last=False)
            return info

    def prefetch(self, cis: Iterable[str] = (), cip13: Iterable[str] = ()) -> None:
        """Read the specialties of these codes that are not cached yet, in four queries
        whatever their number (a draft and a current treatment: one round trip)."""
        with self._lock:
            self._fresh()
            presentations = sorted({c for c in cip13 if c and c not in self._cis_of
                                    and _valid(validate_cip13, c)})
            for chunk in _chunks(presentations):
                found: dict[str, str | None] = dict(
                    self._rows(_in(_PRESENTATIONS_SQL, len(chunk)), chunk))
                for code in chunk:
                    self._cis_of[code] = found.get(code)
            wanted = {c for c in cis if c and _valid(validate_cis, c)}
            wanted |= {known for c in cip13 if (known := self._cis_of.get(c))}
            missing = sorted(c for c in wanted if c not in self._drugs)
            for chunk in _chunks(missing):
                for code, info in self._read_many(chunk).items():
                    self._drugs[code] = info
            while len(self._drugs) > self.cache_size:
                self._drugs.popitem(last=False)

    def _read_many(self, codes: list[str]) -> dict[str, DrugInfo | None]:
        n = len(codes)
        specialties = {row[0]: row[1:] for row in self._rows(_in(_SPECIALTIES_SQL, n), codes)}
        components: dict[str, list[Component]] = {}
        for row in self._rows(_in(_COMPONENTS_SQL, n), codes):
            components.setdefault(row[0], []).append(component(row[1:]))
        conditions: dict[str, list[str]] = {}
        for code, text in self._rows(_in(_CONDITIONS_SQL, n), codes):
            conditions.setdefault(code, []).append(text)
        out: dict[str, DrugInfo | None] = {}
        for code in codes:
            if code not in specialties and code not in components:
                out[code] = None
                continue
            name, form, routes = specialties.get(code, ("", "", ""))
            out[code] = DrugInfo(cis=code, name=name, form=form,
                                 routes=tuple(r for r in routes.split(LIST_SEPARATOR) if r),
                                 conditions=tuple(conditions.get(code, ())),
                                 components=tuple(components.get(code, ())))
        return out

    def _cached(self, cis: str) -> DrugInfo | None:
        if cis not in self._drugs:  # a cip13 known, its specialty pushed out of the cache
            self._drugs[cis] = self._read(cis)
        self._drugs.move_to_end(cis)
        return self._drugs[cis]

    def _read(self, cis: str) -> DrugInfo | None:
        return self._read_many([cis])[cis]

    # --- substances -------------------------------------------------------------------

    def substances(self, text: str) -> list[tuple[str, str]]:
        """(code, name) of the substances that ``text`` names, best first: an exact BDPM
        substance code; else the substances of the same moiety, the one whose name is
        exactly ``text`` first, then the most used. Empty when nothing matches."""
        query = " ".join(text.split())
        if not query:
            return []
        with self._lock:
            index = self._moiety_index()
        if query.isdigit():
            for names in index.values():
                if query in names:
                    return [(query, names[query].most_common(1)[0][0])]
            return []
        by_code = index.get(moiety_key(query), {})
        folded = fold(query)

        def rank(item: tuple[str, Counter[str]]) -> tuple[bool, int, str]:
            code, names = item
            exact = any(fold(name) == folded for name in names)
            return (not exact, -sum(names.values()), code)

        def shown(names: Counter[str]) -> str:
            exact = [name for name in names if fold(name) == folded]
            return exact[0] if exact else names.most_common(1)[0][0]

        return [(code, shown(names)) for code, names in sorted(by_code.items(), key=rank)]

    def _moiety_index(self) -> dict[str, dict[str, Counter[str]]]:
        """moiety key -> substance code -> names (with their number of rows)."""
        self._db()
        if self._moieties is None:
            index: dict[str, dict[str, Counter[str]]] = {}
            for code, name, count in self._rows(
                    "SELECT substance_code, substance, count(*) FROM composition"
                    " GROUP BY substance_code, substance"):
                index.setdefault(moiety_key(name), {}).setdefault(code, Counter())[name] = count
            self._moieties = index
        return self._moieties
