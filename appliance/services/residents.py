"""Import residents from the EHPAD's CSV export, find them, and a resident's file.

CSV: a header row; ``;`` or ``,``; UTF-8 (with or without BOM) or cp1252. Columns ``nir``,
``nom``, ``nom_usage`` (optional), ``prenoms``, ``date_naissance`` (``YYYY-MM-DD`` or
``DD/MM/YYYY``), ``sexe`` (``M``/``F``), ``chambre``, ``opposition`` (optional ``oui``/``non``),
``allergies`` (optional: substances separated by ``|``, each a name or a BDPM substance code,
e.g. ``amoxicilline|paracétamol``, resolved against the drug referential).
Residents are upserted by INS (INS-NIR). A bad row is reported with its line, column and
reason and the other rows are imported. Allergies are added to those already recorded,
never removed.

The file is read as a stream, row by row, in one unit of work (one write transaction for
the whole file, with its audit entry): memory does not grow with its size (a first pass
only checks whether it is UTF-8). A line longer than ``MAX_LINE_CHARS`` is reported by its
number and length, never read whole; the first ``MAX_ERRORS_KEPT`` bad rows are listed,
the others counted; a NIR seen twice is found by the store (``Residents.import_lines``),
not in a dictionary of every NIR. Names and rooms holding a control or bidirectional
character, and rooms longer than ``MAX_ROOM``, are refused here, where they come in
(``check_resident_texts``). The allergies of the rows are kept until the rows are
upserted (a list as long as the rows that have allergies), then recorded in the same
transaction.
"""

from __future__ import annotations

import codecs
import contextlib
import csv
import io
import itertools
import logging
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import IO, BinaryIO

from appliance.domain.drug_facts import Allergy
from appliance.domain.ids import Ins
from appliance.domain.people import Resident, Sex, check_resident_texts
from appliance.domain.prescription import State
from appliance.errors import ValidationError
from appliance.ports.clock import utc_now
from appliance.ports.drugs import SubstanceLookup
from appliance.ports.uow import FileEntry, UnitOfWork

log = logging.getLogger(__name__)

REQUIRED = ("nir", "nom", "prenoms", "date_naissance", "sexe", "chambre")
OPTIONAL = ("nom_usage", "opposition", "allergies")
ALLERGY_SEPARATOR = "|"
ALLERGY_SOURCE = "import des résidents"
YES, NO = {"oui", "o", "yes", "1", "true"}, {"non", "n", "no", "0", "false", ""}
# A row is at most 9 columns of at most 100 characters: 16,384 leaves room for quotes
# and spaces, and bounds what one line can cost.
MAX_LINE_CHARS = 16_384
MAX_ERRORS_KEPT = 1_000
BOM = b"\xef\xbb\xbf"
_CHUNK = 1 << 20


@dataclass(frozen=True)
class RowError:
    line: int
    column: str
    reason: str

    def __str__(self) -> str:
        return f"line {self.line}, column {self.column}: {self.reason}"


@dataclass
class ImportReport:
    created: int = 0
    updated: int = 0
    allergies: int = 0  # allergies added (those already recorded are not counted)
    errors: list[RowError] = field(default_factory=list)
    omitted_errors: int = 0  # bad rows beyond the first MAX_ERRORS_KEPT, counted only

    @property
    def rejected(self) -> int:
        return len({e.line for e in self.errors}) + self.omitted_errors

    def add_error(self, error: RowError) -> None:
        if len(self.errors) < MAX_ERRORS_KEPT:
            self.errors.append(error)
        else:
            self.omitted_errors += 1

    def summary(self) -> str:
        return (f"{self.created} created, {self.updated} updated, "
                f"{self.rejected} rejected"
                + (f", {self.allergies} allergies added" if self.allergies else ""))


def decode(data: bytes) -> str:
    """UTF-8 (BOM or not), else cp1252 (the EHPAD software's Windows exports)."""
    if data.startswith(BOM):
        data = data[3:]  # a BOM then bytes that are not UTF-8: read them as cp1252 too
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("cp1252", errors="replace")


def _encoding(stream: BinaryIO) -> tuple[int, str]:
    """(offset of the text, encoding) of a seekable stream, read once in chunks: UTF-8
    if it all decodes as such, else cp1252; a BOM is skipped either way."""
    stream.seek(0)
    start = len(BOM) if stream.read(len(BOM)) == BOM else 0
    stream.seek(start)
    decoder = codecs.getincrementaldecoder("utf-8")()
    try:
        for chunk in iter(lambda: stream.read(_CHUNK), b""):
            decoder.decode(chunk)
        decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        return start, "cp1252"
    return start, "utf-8"


def _bounded_lines(text: IO[str], errors: Callable[[RowError], None]) -> Iterator[str]:
    """The lines of ``text``, each read with a bound: a longer one is reported by its
    number and length, skipped in chunks and given to the CSV reader as an empty line
    (so that line numbers stay right)."""
    for number in itertools.count(1):
        line = text.readline(MAX_LINE_CHARS + 2)  # room for a CR LF after the longest row
        if not line:
            return
        if len(line.rstrip("\r\n")) > MAX_LINE_CHARS:
            length = len(line)
            while line and not line.endswith(("\n", "\r")):
                line = text.readline(_CHUNK)
                length += len(line)
            length -= len(line) - len(line.rstrip("\r\n"))
            errors(RowError(number, "*", f"a line of {length} characters, more than the "
                                         f"{MAX_LINE_CHARS} a row may have (not read)"))
            yield "\n"
            continue
        yield line


_ISO_DATE = re.compile(r"(\d{4})-(\d{1,2})-(\d{1,2})", re.ASCII)
_FRENCH_DATE = re.compile(r"(\d{1,2})/(\d{1,2})/(\d{4})", re.ASCII)


def _birth_date(text: str) -> date:
    """``YYYY-MM-DD`` or ``DD/MM/YYYY`` (a regular expression: ``strptime`` cost a third
    of a million-row import)."""
    value = text.strip()
    iso, french = _ISO_DATE.fullmatch(value), _FRENCH_DATE.fullmatch(value)
    try:
        if iso:
            return date(int(iso[1]), int(iso[2]), int(iso[3]))
        if french:
            return date(int(french[3]), int(french[2]), int(french[1]))
    except ValueError:
        pass
    raise ValidationError("date_naissance", text, "a date YYYY-MM-DD or DD/MM/YYYY")


def _objection(text: str) -> bool:
    low = (text or "").strip().lower()
    if low in YES:
        return True
    if low in NO:
        return False
    raise ValidationError("opposition", text, "oui or non")


# What a row's allergies become: the callback gets (line, resident, [(code, name)]).
AllergiesFound = Callable[[int, Resident, list[tuple[str, str]]], None]


def _allergies(text: str, substances: SubstanceLookup | None) -> list[tuple[str, str]]:
    names = [n.strip() for n in text.split(ALLERGY_SEPARATOR) if n.strip()]
    if names and substances is None:
        raise ValidationError("allergies", text,
                              "allergies need the drug referential: run `ordo drugs import`")
    out = []
    for name in names:
        found = substances.substances(name) if substances is not None else []
        if not found:
            raise ValidationError("allergies", name, "a substance of the drug referential "
                                  "(name or BDPM substance code), several separated by |")
        out.append(found[0])
    return out


def iter_residents(stream: BinaryIO, errors: Callable[[RowError], None], *,
                   substances: SubstanceLookup | None = None,
                   allergies: AllergiesFound | None = None
                   ) -> Iterator[tuple[int, Resident]]:
    """Pure parsing of a seekable binary stream, row by row: yields (line number,
    resident) for good rows and passes every problem to ``errors`` (a NIR given twice is
    the caller's to find: ``Residents.import_lines``). ``substances`` resolves the
    ``allergies`` column (without it, a row that has allergies is rejected); a good row's
    allergies go to ``allergies`` before the row is yielded."""
    start, encoding = _encoding(stream)
    stream.seek(start)
    text = io.TextIOWrapper(stream, encoding=encoding, newline="",
                            errors="replace")  # the file may change after the check
    try:
        yield from _parse_rows(_bounded_lines(text, errors), errors, substances, allergies)
    finally:
        text.detach()  # the caller's stream stays open


def _parse_rows(lines: Iterator[str], errors: Callable[[RowError], None],
                substances: SubstanceLookup | None = None,
                allergies: AllergiesFound | None = None) -> Iterator[tuple[int, Resident]]:
    first = next(lines, "")
    delimiter = ";" if first.count(";") >= first.count(",") else ","
    reader = csv.DictReader(itertools.chain([first], lines), delimiter=delimiter)
    try:
        fieldnames = reader.fieldnames
    except csv.Error as exc:  # e.g. a field over csv's size limit
        errors(RowError(1, "*", f"unreadable header row ({exc})"))
        return
    header = [h.strip().lower() for h in (fieldnames or [])]
    missing = [c for c in REQUIRED if c not in header]
    if missing:
        errors(RowError(1, ",".join(missing), "missing from the header row"))
        return
    reader.fieldnames = header
    for row in _rows(reader, errors):
        line = reader.line_num
        if None in row:
            errors(RowError(line, "*", "more fields than the header"))
            continue
        values = {k: (v or "").strip() for k, v in row.items()}
        if not any(values.values()):
            continue
        try:
            check_resident_texts(values)  # as given: a tab is refused, not made a space
            resident = Resident(
                ins=Ins.from_nir(values["nir"]),
                birth_name=values["nom"], used_name=values.get("nom_usage") or None,
                first_names=values["prenoms"], birth_date=_birth_date(values["date_naissance"]),
                sex=_sex(values["sexe"]), room=values["chambre"],
                objection=_objection(values.get("opposition", "")))
            found = _allergies(values.get("allergies", ""), substances)
        except ValidationError as exc:
            errors(RowError(line, _column(exc.field), f"{exc.value!r}: {exc.expected}"))
            continue
        if found and allergies is not None:
            allergies(line, resident, found)
        yield line, resident


def parse_residents(data: bytes) -> tuple[list[tuple[int, Resident]], list[RowError]]:
    """Pure parsing of a whole file in memory: (line number, resident) for good rows,
    errors for the others."""
    good, errors = read_residents(data)
    return [(line, resident) for line, resident, _ in good], errors


def read_residents(data: bytes, substances: SubstanceLookup | None = None
                   ) -> tuple[list[tuple[int, Resident, list[tuple[str, str]]]], list[RowError]]:
    """Pure parsing with allergies, in memory: (line, resident, [(substance code, name)])
    for good rows, errors for the others. ``substances`` resolves the ``allergies``
    column."""
    seen: dict[str, int] = {}
    errors: list[RowError] = []
    found: dict[int, list[tuple[str, str]]] = {}
    good = []
    for line, resident in iter_residents(
            io.BytesIO(data), errors.append, substances=substances,
            allergies=lambda line, _, substances: found.__setitem__(line, substances)):
        first = seen.setdefault(resident.ins.value, line)
        if first != line:
            errors.append(RowError(line, "nir", f"same NIR as line {first}"))
        else:
            good.append((line, resident, found.get(line, [])))
    return good, errors


def _rows(reader: csv.DictReader[str],
          errors: Callable[[RowError], None]) -> Iterator[dict[str, str | None]]:
    """The reader's rows until one cannot be read (a stray quote that runs past csv's field
    size limit), which is reported and ends the file."""
    try:
        yield from reader
    except csv.Error as exc:
        errors(RowError(reader.line_num + 1, "*",  # the line it could not finish
                        f"unreadable from this line on ({exc})"))


def _sex(text: str) -> Sex:
    value = text.strip().upper()
    if value not in {"M", "F"}:
        raise ValidationError("sexe", text, "M or F")
    return Sex(value)


def _column(field_name: str) -> str:
    """Map a domain field name back to the CSV column."""
    name = field_name.split(".")[-1].split(":")[-1]
    return {"ins": "nir", "birth_name": "nom", "first_names": "prenoms"}.get(name, name)


@contextlib.contextmanager
def _opened(source: bytes | Path | BinaryIO) -> Iterator[BinaryIO]:
    if isinstance(source, bytes):
        yield io.BytesIO(source)
    elif isinstance(source, Path):
        try:
            handle = source.open("rb")
        except OSError as exc:
            raise ValidationError("FILE.csv", str(source),
                                  f"un fichier lisible ({exc.strerror or exc})") from exc
        with handle:
            yield handle
    else:
        yield source


def import_residents(uow: UnitOfWork, source: bytes | Path | BinaryIO, *, actor: str,
                     substances: SubstanceLookup | None = None) -> ImportReport:
    """Import a CSV (its bytes, its path, or a seekable binary stream) in one write
    transaction, streaming its rows: bad rows are reported and the others imported, all
    together with their allergies and the audit entry, or nothing if the import fails.
    ``substances`` (the drug referential) resolves the ``allergies`` column (without it, a
    row that has allergies is rejected)."""
    report = ImportReport()
    pending: dict[int, tuple[str, list[tuple[str, str]]]] = {}

    def duplicate(line: int, first: int) -> None:
        pending.pop(line, None)
        report.add_error(RowError(line, "nir", f"same NIR as line {first}"))

    def found(line: int, resident: Resident, substances: list[tuple[str, str]]) -> None:
        pending[line] = (resident.ins.value, substances)

    today = utc_now().date()
    with _opened(source) as stream, uow:
        rows = iter_residents(stream, report.add_error, substances=substances, allergies=found)
        report.created, report.updated = uow.residents.import_lines(rows, duplicate)
        for ins, substances_of_row in pending.values():
            for code, name in substances_of_row:
                record = uow.allergies.add(ins, Allergy(code, name, today, ALLERGY_SOURCE),
                                           recorded_by=actor)
                report.allergies += record is not None
        uow.audit.append(actor=actor, action="residents.imported",
                         details={"created": report.created, "updated": report.updated,
                                  "rejected": report.rejected, "allergies": report.allergies})
        uow.commit()
    log.info("residents imported", extra={"fields": {
        "created": report.created, "updated": report.updated, "rejected": report.rejected}})
    return report


def search(uow: UnitOfWork, query: str = "", *, active_only: bool = True) -> list[Resident]:
    """Residents sorted by name; ``query`` matches names or room, accents and case ignored."""
    return uow.residents.search(query, active_only)


def resident_file(uow: UnitOfWork, ins: str, viewer: str | None) -> list[FileEntry]:
    """A resident's prescriptions as the kiosk lists them, newest first, with the registry's
    answer, the print jobs and the dispensations of each; another physician's drafts are
    theirs alone (``viewer`` is the idNat_PS looking)."""
    return [entry for entry in uow.views.resident_file(ins)
            if entry.row.state is not State.DRAFT or entry.row.prescriber_id == viewer]
