"""Pure parsing of the BDPM files (ANSM public drug database) into typed records.

Source of the layout: ANSM, "Contenu et format des fichiers téléchargeables dans la
base de données publique des médicaments" (v1, 2014-12-15), checked against the real
2022 extract: tab-separated, no header, one record per line.

What the real files do, and what this parser does about it:

- encoding cp1252 (byte 0x92 is a right quote, so not Latin-1); a file that decodes
  as UTF-8 is read as UTF-8 (with or without BOM); a line with a byte undefined in
  cp1252 is reported and skipped;
- CRLF in most files, LF in ``CIS_CIP_bdpm.txt``: both are accepted, per line;
- a trailing tab on every line of ``CIS_COMPO`` and ``CIS_GENER`` (an empty last field);
- a few rows with extra fields (embedded tabs) in ``CIS_COMPO`` and ``CIS_GENER``:
  reported and skipped;
- decimal commas in prices, with commas as thousands separators too (``1,234,56``);
- reimbursement rates written ``65%`` and ``65 %``, several joined by ``;``.

Each parser returns a ``ParsedFile``: the records, and one ``RowError`` (file, line,
reason) per malformed line; ``len(records) + len(errors) == lines``. Nothing here does
I/O: the caller passes the file's bytes.
"""

from __future__ import annotations

import codecs
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date
from typing import Generic, TypeVar

from appliance.domain.ids import validate_cip7, validate_cip13, validate_cis
from appliance.errors import InvalidIdentifier

T = TypeVar("T")

SPECIALTIES = "CIS_bdpm.txt"
PRESENTATIONS = "CIS_CIP_bdpm.txt"
COMPOSITIONS = "CIS_COMPO_bdpm.txt"
GENERICS = "CIS_GENER_bdpm.txt"
CONDITIONS = "CIS_CPD_bdpm.txt"
FILE_NAMES = (SPECIALTIES, PRESENTATIONS, COMPOSITIONS, GENERICS, CONDITIONS)

MARKETED_SPECIALTY = "Commercialisée"
MARKETED_PRESENTATION = "Déclaration de commercialisation"
ACTIVE_PRESENTATION = "Présentation active"
COMPONENT_NATURES = frozenset({"SA", "FT"})  # substance active, fraction thérapeutique

_DATE = re.compile(r"(\d{2})/(\d{2})/(\d{4})")
# Decimal comma with two decimals; digits before it may be grouped by 3 with a comma,
# a dot or a space ("1,234,56" in the 2022 extract).
_PRICE = re.compile(r"(\d{1,3}(?:[,. \u00a0\u202f]\d{3})+|\d+)(?:[,.](\d{2}))?")
_RATE = re.compile(r"(\d{1,3})\s*%")
# The longest line of the 2022 release has 1,752 bytes (CIS_CIP_bdpm.txt); a longer one is
# refused unread, and a field quoted in a message is cut to SHOWN_CHARS.
MAX_LINE_BYTES = 16_384
SHOWN_CHARS = 40
# A file that has given this many malformed lines, and more malformed lines than good
# rows, is junk: it is read no further (and the import refused, ``guards.check_rows``).
MAX_MALFORMED = 1_000


def _q(value: str) -> str:
    """``value`` quoted for a message, cut to ``SHOWN_CHARS`` characters."""
    return repr(value if len(value) <= SHOWN_CHARS else value[:SHOWN_CHARS] + "…")


@dataclass(frozen=True, slots=True)
class RowError:
    """A malformed line: the file, its 1-based line number and why it was refused."""

    file: str
    line: int
    reason: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.reason}"


class RowRefused(ValueError):
    """Raised by a row converter; becomes a ``RowError`` for that line."""


@dataclass(frozen=True, slots=True)
class SpecialtyRow:
    """A row of CIS_bdpm.txt."""

    cis: str
    name: str
    form: str
    routes: tuple[str, ...]
    amm_status: str
    amm_procedure: str
    marketing: str
    amm_date: date | None
    bdm_status: str
    eu_number: str
    holders: tuple[str, ...]
    reinforced_monitoring: bool

    @property
    def marketed(self) -> bool:
        return self.marketing == MARKETED_SPECIALTY


@dataclass(frozen=True, slots=True)
class PresentationRow:
    """A row of CIS_CIP_bdpm.txt (a box: CIP13, CIP7, reimbursement, price)."""

    cis: str
    cip7: str
    label: str
    admin_status: str
    marketing: str
    marketing_date: date | None
    cip13: str
    collectivities: str
    reimbursement_rates: tuple[int, ...]
    price_cents: int | None
    price_with_fee_cents: int | None
    fee_cents: int | None
    indications: str

    @property
    def marketed(self) -> bool:
        return (self.admin_status == ACTIVE_PRESENTATION
                and self.marketing == MARKETED_PRESENTATION)


@dataclass(frozen=True, slots=True)
class CompositionRow:
    """A row of CIS_COMPO_bdpm.txt: one substance of one pharmaceutical element."""

    cis: str
    element: str
    substance_code: str
    substance: str
    dosage: str
    dosage_reference: str
    nature: str
    link: int


@dataclass(frozen=True, slots=True)
class GenericRow:
    """A row of CIS_GENER_bdpm.txt: a specialty's place in a generic group.

    ``kind``: 0 princeps, 1 generic, 2 generic by posology complement, 4 substitutable.
    """

    group_id: int
    group_label: str
    cis: str
    kind: int
    sort: int


@dataclass(frozen=True, slots=True)
class ConditionRow:
    """A row of CIS_CPD_bdpm.txt: a prescription or dispensing condition."""

    cis: str
    text: str


@dataclass
class ParsedFile(Generic[T]):
    """One file's records and malformed lines.

    ``lines`` counts every line read, ``header`` the header lines among them (none in the
    BDPM): ``rows == len(records) + len(errors)``.
    """

    name: str
    records: list[T] = field(default_factory=list)
    errors: list[RowError] = field(default_factory=list)
    lines: int = 0
    header: int = 0
    abandoned_at: int | None = None  # the line where reading stopped: more junk than rows

    @property
    def rows(self) -> int:
        return self.lines - self.header


# One parsed BDPM file, whatever its rows.
SomeParsedFile = (ParsedFile[SpecialtyRow] | ParsedFile[PresentationRow]
                  | ParsedFile[CompositionRow] | ParsedFile[GenericRow] | ParsedFile[ConditionRow])


@dataclass
class Bdpm:
    """The five parsed files of one BDPM release."""

    specialties: ParsedFile[SpecialtyRow]
    presentations: ParsedFile[PresentationRow]
    compositions: ParsedFile[CompositionRow]
    generics: ParsedFile[GenericRow]
    conditions: ParsedFile[ConditionRow]

    def files(self) -> tuple[SomeParsedFile, ...]:
        return (self.specialties, self.presentations, self.compositions, self.generics,
                self.conditions)

    @property
    def errors(self) -> list[RowError]:
        return [error for parsed in self.files() for error in parsed.errors]


# --- field converters --------------------------------------------------------------


def _code(validate: Callable[[str], str], value: str, what: str) -> str:
    try:
        return validate(value)
    except InvalidIdentifier as exc:
        raise RowRefused(f"bad {what} {_q(value)}: {exc.expected}") from None


def parse_date(value: str, what: str = "date") -> date | None:
    """``JJ/MM/AAAA`` or empty."""
    if not value:
        return None
    match = _DATE.fullmatch(value)
    if match is None:
        raise RowRefused(f"bad {what} {_q(value)}: expected DD/MM/YYYY")
    day, month, year = (int(part) for part in match.groups())
    try:
        return date(year, month, day)
    except ValueError:
        raise RowRefused(f"bad {what} {_q(value)}: no such day") from None


def parse_price(value: str, what: str = "price") -> int | None:
    """A euro amount with a decimal comma, in cents; empty means no price."""
    if not value:
        return None
    match = _PRICE.fullmatch(value)
    if match is None:
        raise RowRefused(f"bad {what} {_q(value)}: expected euros with a decimal comma")
    units = re.sub(r"\D", "", match.group(1))
    if len(units) > 9:  # int() refuses 4300 digits, SQLite's INTEGER far fewer
        raise RowRefused(f"bad {what} {_q(value[:20])}: more than 9 digits of euros")
    return int(units) * 100 + int(match.group(2) or 0)


def parse_rates(value: str) -> tuple[int, ...]:
    """``65%``, ``65 %`` or several joined by ``;``; empty means not reimbursed."""
    rates = []
    for part in value.split(";"):
        part = part.strip()
        if not part:
            continue
        match = _RATE.fullmatch(part)
        if match is None or int(match.group(1)) > 100:
            raise RowRefused(f"bad reimbursement rate {_q(part)}: expected a percentage")
        rates.append(int(match.group(1)))
    return tuple(rates)


def _int(value: str, what: str) -> int:
    # ASCII digits only ("²" passes isdigit but not int), few enough for SQLite's INTEGER
    if not (value.isascii() and value.isdigit()) or len(value) > 9:
        raise RowRefused(f"bad {what} {_q(value)}: expected a number of at most 9 digits")
    return int(value)


def _list(value: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in value.split(";") if part.strip())


# --- rows ---------------------------------------------------------------------------


def _specialty(f: list[str]) -> SpecialtyRow:
    return SpecialtyRow(
        cis=_code(validate_cis, f[0], "CIS"), name=_required(f[1], "name"), form=f[2],
        routes=_list(f[3]), amm_status=f[4], amm_procedure=f[5], marketing=f[6],
        amm_date=parse_date(f[7], "AMM date"), bdm_status=f[8], eu_number=f[9],
        holders=_list(f[10]), reinforced_monitoring=f[11].lower() == "oui",
    )


def _presentation(f: list[str]) -> PresentationRow:
    cip7 = _code(validate_cip7, f[1], "CIP7")
    cip13 = _code(validate_cip13, f[6], "CIP13")
    if cip13[5:12] != cip7:
        raise RowRefused(f"CIP7 {cip7} does not match CIP13 {cip13}")
    return PresentationRow(
        cis=_code(validate_cis, f[0], "CIS"), cip7=cip7, label=f[2], admin_status=f[3],
        marketing=f[4], marketing_date=parse_date(f[5], "marketing date"), cip13=cip13,
        collectivities=f[7], reimbursement_rates=parse_rates(f[8]),
        price_cents=parse_price(f[9]), price_with_fee_cents=parse_price(f[10], "price"),
        fee_cents=parse_price(f[11], "dispensing fee"),
        indications=f[12] if len(f) > 12 else "",
    )


def _composition(f: list[str]) -> CompositionRow:
    if f[6] not in COMPONENT_NATURES:
        raise RowRefused(f"bad component nature {_q(f[6])}: expected SA or FT")
    return CompositionRow(
        cis=_code(validate_cis, f[0], "CIS"), element=f[1], substance_code=f[2],
        substance=_required(f[3], "substance name"), dosage=f[4], dosage_reference=f[5],
        nature=f[6], link=_int(f[7], "SA/FT link number"),
    )


def _generic(f: list[str]) -> GenericRow:
    return GenericRow(
        group_id=_int(f[0], "generic group id"), group_label=f[1],
        cis=_code(validate_cis, f[2], "CIS"), kind=_int(f[3], "generic type"),
        sort=_int(f[4], "sort number"),
    )


def _condition(f: list[str]) -> ConditionRow:
    return ConditionRow(cis=_code(validate_cis, f[0], "CIS"), text=_required(f[1], "condition"))


def _required(value: str, what: str) -> str:
    if not value:
        raise RowRefused(f"empty {what}")
    return value


# --- files --------------------------------------------------------------------------


def _decoder(data: bytes) -> tuple[bytes, str]:
    """The encoding of a whole file: UTF-8 if it decodes as such, else cp1252 (checked a
    megabyte at a time, without a decoded copy of the whole file)."""
    if data.startswith(b"\xef\xbb\xbf"):
        return data[3:], "utf-8"
    decoder = codecs.getincrementaldecoder("utf-8")()
    view = memoryview(data)
    try:
        for start in range(0, len(data), 1 << 20):
            decoder.decode(view[start:start + (1 << 20)])
        decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        return data, "cp1252"
    return data, "utf-8"


def _raw_lines(data: bytes) -> Iterator[bytes]:
    """The lines of ``data`` one at a time (``bytes.split`` would build a list of every
    line at once: millions of objects for a file of short junk lines)."""
    start, size = 0, len(data)
    while start < size:
        end = data.find(b"\n", start)
        if end == -1:
            end = size
        yield data[start:end]
        start = end + 1


def split_lines(name: str, data: bytes) -> Iterator[tuple[int, str | RowError]]:
    """Yield ``(line number, text)`` or ``(line number, RowError)`` for undecodable lines
    and lines longer than ``MAX_LINE_BYTES`` (reported by their length, never decoded).

    Lines end with LF or CRLF; a final line without its newline is kept.
    """
    data, encoding = _decoder(data)
    for number, raw in enumerate(_raw_lines(data), start=1):
        if raw.endswith(b"\r"):
            raw = raw[:-1]
        if len(raw) > MAX_LINE_BYTES:
            yield number, RowError(name, number, f"a line of {len(raw)} bytes, more than the "
                                                 f"{MAX_LINE_BYTES} a BDPM row may have")
            continue
        try:
            yield number, raw.decode(encoding)
        except UnicodeDecodeError as exc:
            byte = raw[exc.start]
            yield number, RowError(
                name, number, f"byte 0x{byte:02X} at column {exc.start + 1} is not "
                f"valid {encoding}")


def parse_file(
    name: str,
    data: bytes,
    columns: int,
    convert: Callable[[list[str]], T],
    optional_last: bool = False,
    key: Callable[[T], str] | None = None,
) -> ParsedFile[T]:
    """Parse tab-separated ``data``: ``columns`` fields per line, trailing empties ignored.

    Stops at ``abandoned_at`` once ``MAX_MALFORMED`` malformed lines outnumber the good
    rows. ``optional_last``: the last column may be absent. ``key``: records must be unique by
    it; a repeated key is refused, naming the line that had it first.
    """
    parsed: ParsedFile[T] = ParsedFile(name)
    seen: dict[str, int] = {}
    for number, line in split_lines(name, data):
        if (len(parsed.errors) >= MAX_MALFORMED
                and len(parsed.errors) > len(parsed.records)):
            parsed.abandoned_at = number  # junk, not a BDPM file: read no further
            break
        parsed.lines = number
        if isinstance(line, RowError):
            parsed.errors.append(line)
            continue
        fields = [part.strip() for part in line.split("\t")]
        count = len(fields)
        while len(fields) > columns and fields[-1] == "":
            fields.pop()
        least = columns - 1 if optional_last else columns
        if not line.strip():
            reason = "empty line"
        elif len(fields) > columns:
            reason = f"{count} fields, expected {columns} (a tab inside a field?)"
        elif len(fields) < least:
            reason = f"{len(fields)} fields, expected {columns} (missing fields)"
        else:
            try:
                record = convert(fields)
            except RowRefused as exc:
                reason = str(exc)
            else:
                if key is not None:
                    value = key(record)
                    if value in seen:
                        parsed.errors.append(RowError(
                            name, number, f"duplicate key {value} (first at line {seen[value]})"))
                        continue
                    seen[value] = number
                parsed.records.append(record)
                continue
        parsed.errors.append(RowError(name, number, reason))
    return parsed


def parse_specialties(data: bytes, name: str = SPECIALTIES) -> ParsedFile[SpecialtyRow]:
    return parse_file(name, data, 12, _specialty, key=lambda r: r.cis)


def parse_presentations(data: bytes, name: str = PRESENTATIONS) -> ParsedFile[PresentationRow]:
    return parse_file(name, data, 13, _presentation, optional_last=True,
                      key=lambda r: r.cip13)


def parse_compositions(data: bytes, name: str = COMPOSITIONS) -> ParsedFile[CompositionRow]:
    return parse_file(name, data, 8, _composition)


def parse_generics(data: bytes, name: str = GENERICS) -> ParsedFile[GenericRow]:
    return parse_file(name, data, 5, _generic)


def parse_conditions(data: bytes, name: str = CONDITIONS) -> ParsedFile[ConditionRow]:
    return parse_file(name, data, 2, _condition)


def parse_bdpm(files: dict[str, bytes]) -> Bdpm:
    """Parse the five files, given as ``{file name: bytes}`` (names as in ``FILE_NAMES``)."""
    return Bdpm(
        specialties=parse_specialties(files[SPECIALTIES]),
        presentations=parse_presentations(files[PRESENTATIONS]),
        compositions=parse_compositions(files[COMPOSITIONS]),
        generics=parse_generics(files[GENERICS]),
        conditions=parse_conditions(files[CONDITIONS]),
    )
