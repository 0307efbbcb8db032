"""The clinical tables the checks read, kept as CSV files beside this module.

- ``max_daily_doses.csv``: maximum daily dose of a substance for an adult and, when the
  product information gives one, for the elderly; each row cites the SmPC (RCP) section 4.2
  of a named specialty (with its CIS), says which published text was actually read
  (``checked``) and when (``verified_on``). A row without both is refused: a value nobody
  re-read against a published text must not raise an alert.
- ``laroche_2007.csv``: potentially inappropriate medications for people aged 75 and over
  (Laroche ML, Charmes JP, Merle L. Eur J Clin Pharmacol 2007;63:725-731; its table as
  published in French, Rev Med Interne 2009;30:592-601), with the reason and the suggested
  alternative. A criterion is active only once its row says which text of
  the list was read (``checked``) and when (``verified_on``); ``load_tables`` leaves the
  others out, so a criterion transcribed but not re-read raises no alert.

A row names its substances by BDPM substance code (``bdpm_codes``) and by name; a drug's
component matches a row by code, or by its moiety (``moiety_key``) against the row's names.
The files are read once per process (``load_tables``); a malformed file raises
``TableError`` naming the file, the line and the column.
"""

from __future__ import annotations

import csv
import functools
import io
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date
from decimal import Decimal, InvalidOperation
from importlib import resources
from typing import TypeVar

from appliance.domain.drug_facts import (
    IU_UNIT,
    MASS_UNIT,
    Component,
    DrugInfo,
    folded,
    moiety_key,
)
from appliance.domain.people import fold
from appliance.errors import TableError

DOSES_FILE = "max_daily_doses.csv"
PIM_FILE = "laroche_2007.csv"
LIST_SEPARATOR = "|"
MEMO_SIZE = 8192
_UNIT_FACTORS = {"mg": (Decimal(1), MASS_UNIT), "g": (Decimal(1000), MASS_UNIT),
                 "µg": (Decimal("0.001"), MASS_UNIT), "UI": (Decimal(1), IU_UNIT)}
DOSE_COLUMNS = ("substance", "bdpm_codes", "bdpm_names", "max_daily", "unit",
                "elderly_max_daily", "elderly_from_age", "routes", "form_includes",
                "form_excludes", "reference_cis", "source", "checked", "verified_on", "note")
PIM_COLUMNS = ("id", "criterion", "substances", "bdpm_codes", "max_daily", "unit", "routes",
               "form_excludes", "reason", "alternative", "source", "checked", "verified_on")


def _split(value: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in value.split(LIST_SEPARATOR) if part.strip())


@dataclass(frozen=True)
class _Selector:
    """Which components and which specialties a row is about.

    A component matches by BDPM code or by exact (folded) name; with ``by_moiety`` also by
    its moiety, i.e. any salt of the substance. Amounts are only compared on exact matches:
    a maximum written for a base must not be compared with the heavier salt.
    """

    codes: frozenset[str]
    names: frozenset[str]
    moieties: frozenset[str]
    routes: frozenset[str]
    form_includes: tuple[str, ...]
    form_excludes: tuple[str, ...]

    def applies_to(self, drug: DrugInfo) -> bool:
        if self.routes and not self.routes & set(drug.routes):
            return False
        form = folded(drug.form)
        if self.form_includes and not any(part in form for part in self.form_includes):
            return False
        return not any(part in form for part in self.form_excludes)

    def matches(self, component: Component, by_moiety: bool = False) -> bool:
        return (component.substance_code in self.codes
                or folded(component.substance) in self.names
                or (by_moiety and component.moiety in self.moieties))


@dataclass(frozen=True)
class DoseLimit:
    """A maximum daily dose, in mg or UI (``unit``)."""

    substance: str
    selector: _Selector
    max_daily: Decimal
    unit: str
    elderly_max_daily: Decimal | None
    elderly_from_age: int | None
    source: str
    note: str
    reference_cis: str
    line_no: int
    checked: str = ""
    verified_on: date | None = None


@dataclass(frozen=True)
class PimCriterion:
    """A criterion of the Laroche list: substances (and a daily dose above which the
    medication is inappropriate, when the criterion has one)."""

    id: str
    criterion: str
    substances: tuple[str, ...]
    selector: _Selector
    max_daily: Decimal | None
    unit: str | None
    reason: str
    alternative: str
    source: str
    line_no: int
    checked: str = ""
    verified_on: date | None = None

    @property
    def active(self) -> bool:
        """Re-read against the published list: only then may it raise an alert."""
        return self.verified_on is not None


class Tables:
    """Both tables, indexed by substance code, folded name and moiety."""

    def __init__(self, doses: tuple[DoseLimit, ...], pims: tuple[PimCriterion, ...]) -> None:
        self.doses, self.pims = doses, pims
        self._doses = _index(doses, by_moiety=False)
        self._pims = _index(pims, by_moiety=True)
        # rows that may concern a substance, by (code, name): the same few hundred come back
        self._dose_memo: dict[tuple[str, str], list[DoseLimit]] = {}
        self._pim_memo: dict[tuple[str, str], list[PimCriterion]] = {}

    def dose_limits(self, drug: DrugInfo, component: Component) -> list[DoseLimit]:
        """The limits that apply to this component of this drug (exact substance)."""
        return [d for d in _memoised(self._dose_memo, self._doses, component)
                if d.selector.matches(component) and d.selector.applies_to(drug)]

    def pim_criteria(self, drug: DrugInfo, component: Component) -> list[PimCriterion]:
        """The Laroche criteria this component of this drug falls under (any salt)."""
        return [p for p in _memoised(self._pim_memo, self._pims, component)
                if p.selector.matches(component, by_moiety=True)
                and p.selector.applies_to(drug)]


# A row of either table: both have a selector and a line number.
_Row = TypeVar("_Row", DoseLimit, PimCriterion)


def _memoised(memo: dict[tuple[str, str], list[_Row]], index: dict[str, list[_Row]],
              component: Component) -> list[_Row]:
    key = (component.substance_code, component.substance)
    found = memo.get(key)
    if found is None:
        if len(memo) > MEMO_SIZE:
            memo.clear()
        found = memo[key] = _candidates(index, component)
    return found


def _index(rows: tuple[_Row, ...], by_moiety: bool) -> dict[str, list[_Row]]:
    index: dict[str, list[_Row]] = {}
    for row in rows:
        keys = set(row.selector.codes) | {"n:" + n for n in row.selector.names}
        if by_moiety:
            keys |= {"m:" + m for m in row.selector.moieties}
        for key in keys:
            index.setdefault(key, []).append(row)
    return index


def _candidates(index: dict[str, list[_Row]], component: Component) -> list[_Row]:
    found: dict[int, _Row] = {}
    for key in (component.substance_code, "n:" + folded(component.substance),
                "m:" + component.moiety):
        for row in index.get(key, ()):
            found.setdefault(id(row), row)
    return sorted(found.values(), key=lambda r: r.line_no)  # table order


def _rows(name: str, text: str,
          columns: tuple[str, ...]) -> Iterable[tuple[int, dict[str, str]]]:
    reader = csv.DictReader(io.StringIO(text, newline=""))
    if tuple(reader.fieldnames or ()) != columns:
        raise TableError(f"{name}: header {reader.fieldnames} is not {list(columns)}")
    for row in reader:
        if None in row or any(v is None for v in row.values()):
            raise TableError(f"{name}:{reader.line_num}: {len(columns)} columns expected")
        yield reader.line_num, {k: v.strip() for k, v in row.items()}


def _amount(name: str, line: int, column: str, value: str,
            unit: str) -> tuple[Decimal, str] | None:
    if not value:
        return None
    if unit not in _UNIT_FACTORS:
        raise TableError(f"{name}:{line}: unit {unit!r}: expected one of {list(_UNIT_FACTORS)}")
    try:
        amount = Decimal(value)
    except InvalidOperation:
        raise TableError(f"{name}:{line}: {column} {value!r} is not a number") from None
    if not amount.is_finite() or amount <= 0:
        raise TableError(f"{name}:{line}: {column} {value!r} must be positive")
    factor, canonical = _UNIT_FACTORS[unit]
    return amount * factor, canonical


def _required(name: str, line: int, row: dict[str, str], *columns: str) -> None:
    for column in columns:
        if not row[column]:
            raise TableError(f"{name}:{line}: column {column} is empty")


def _selector(row: dict[str, str], names: tuple[str, ...]) -> _Selector:
    return _Selector(
        codes=frozenset(_split(row["bdpm_codes"])),
        names=frozenset(fold(n) for n in names),
        moieties=frozenset(moiety_key(n) for n in names),
        routes=frozenset(_split(row["routes"])),
        form_includes=tuple(fold(f) for f in _split(row.get("form_includes", ""))),
        form_excludes=tuple(fold(f) for f in _split(row["form_excludes"])))


def parse_doses(text: str, name: str = DOSES_FILE) -> tuple[DoseLimit, ...]:
    out = []
    for line, row in _rows(name, text, DOSE_COLUMNS):
        _required(name, line, row, "substance", "bdpm_codes", "max_daily", "unit", "source",
                  "reference_cis", "checked", "verified_on")
        verified_on = _date(name, line, row["verified_on"])
        max_daily = _amount(name, line, "max_daily", row["max_daily"], row["unit"])
        elderly = _amount(name, line, "elderly_max_daily", row["elderly_max_daily"],
                          row["unit"])
        assert max_daily is not None  # required above
        age = None
        if elderly is not None:
            if not row["elderly_from_age"].isdigit():
                raise TableError(f"{name}:{line}: elderly_from_age: a whole number of years")
            age = int(row["elderly_from_age"])
            if elderly[0] > max_daily[0]:
                raise TableError(f"{name}:{line}: elderly_max_daily above max_daily")
        out.append(DoseLimit(
            substance=row["substance"],
            selector=_selector(row, _split(row["bdpm_names"]) or (row["substance"],)),
            max_daily=max_daily[0], unit=max_daily[1],
            elderly_max_daily=elderly[0] if elderly else None, elderly_from_age=age,
            source=row["source"], note=row["note"], reference_cis=row["reference_cis"],
            line_no=line, checked=row["checked"], verified_on=verified_on))
    return tuple(out)


def _date(name: str, line: int, value: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise TableError(f"{name}:{line}: verified_on {value!r} is not a date "
                         "(YYYY-MM-DD)") from None


def parse_pims(text: str, name: str = PIM_FILE) -> tuple[PimCriterion, ...]:
    """Every criterion of the file, active or not (``PimCriterion.active``)."""
    out = []
    for line, row in _rows(name, text, PIM_COLUMNS):
        _required(name, line, row, "id", "criterion", "substances", "reason", "source")
        verified_on = None
        if row["verified_on"]:
            _required(name, line, row, "checked")
            verified_on = _date(name, line, row["verified_on"])
        substances = _split(row["substances"])
        amount = _amount(name, line, "max_daily", row["max_daily"], row["unit"])
        out.append(PimCriterion(
            id=row["id"], criterion=row["criterion"], substances=substances,
            selector=_selector(row, substances),
            max_daily=amount[0] if amount else None, unit=amount[1] if amount else None,
            reason=row["reason"], alternative=row["alternative"], source=row["source"],
            line_no=line, checked=row["checked"], verified_on=verified_on))
    return tuple(out)


def _read(name: str) -> str:
    return resources.files(__package__).joinpath("data", name).read_text("utf-8")


@functools.cache
def load_tables() -> Tables:
    """The tables shipped with Ordo, read once: every dose row, the active criteria."""
    pims = tuple(p for p in parse_pims(_read(PIM_FILE)) if p.active)
    return Tables(parse_doses(_read(DOSES_FILE)), pims)
