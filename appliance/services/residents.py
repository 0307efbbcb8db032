"""Import residents from the EHPAD's CSV export, find them, and a resident's file.

CSV: a header row; ``;`` or ``,``; UTF-8 (with or without BOM) or cp1252. Columns ``nir``,
``nom``, ``nom_usage`` (optional), ``prenoms``, ``date_naissance`` (``YYYY-MM-DD`` or
``DD/MM/YYYY``), ``sexe`` (``M``/``F``), ``chambre``, ``opposition`` (optional ``oui``/``non``),
``allergies`` (optional: substances separated by ``|``, each a name or a BDPM substance code,
e.g. ``amoxicilline|paracétamol``, resolved against the drug referential).
Residents are upserted by INS (INS-NIR). A bad row is reported with its line, column and
reason and the other rows are imported. Allergies are added to those already recorded,
never removed.
"""

from __future__ import annotations

import csv
import io
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from appliance.domain.drug_facts import Allergy
from appliance.domain.ids import Ins
from appliance.domain.people import Resident
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

    @property
    def rejected(self) -> int:
        return len({e.line for e in self.errors})

    def summary(self) -> str:
        return (f"{self.created} created, {self.updated} updated, "
                f"{self.rejected} rejected"
                + (f", {self.allergies} allergies added" if self.allergies else ""))


def decode(data: bytes) -> str:
    """UTF-8 (BOM or not), else cp1252 (the EHPAD software's Windows exports)."""
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]  # a BOM then bytes that are not UTF-8: read them as cp1252 too
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("cp1252", errors="replace")


def _birth_date(text: str) -> date:
    for fmt in ("%Y-%m-%d", "%d/%m/%Y"):
        try:
            return datetime.strptime(text.strip(), fmt).date()
        except ValueError:
            continue
    raise ValidationError("date_naissance", text, "a date YYYY-MM-DD or DD/MM/YYYY")


def _objection(text: str) -> bool:
    low = (text or "").strip().lower()
    if low in YES:
        return True
    if low in NO:
        return False
    raise ValidationError("opposition", text, "oui or non")


def parse_residents(data: bytes) -> tuple[list[tuple[int, Resident]], list[RowError]]:
    """Pure parsing: (line number, resident) for good rows, errors for the others."""
    good, errors = read_residents(data)
    return [(line, resident) for line, resident, _ in good], errors


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


def read_residents(data: bytes, substances: SubstanceLookup | None = None
                   ) -> tuple[list[tuple[int, Resident, list[tuple[str, str]]]], list[RowError]]:
    """Pure parsing with allergies: (line, resident, [(substance code, name)]) for good
    rows, errors for the others. ``substances`` resolves the ``allergies`` column."""
    text = decode(data)
    first = text.splitlines()[0] if text else ""
    delimiter = ";" if first.count(";") >= first.count(",") else ","
    reader = csv.DictReader(io.StringIO(text, newline=""), delimiter=delimiter)
    try:
        fieldnames = reader.fieldnames
    except csv.Error as exc:  # e.g. a field over csv's size limit
        return [], [RowError(1, "*", f"unreadable header row ({exc})")]
    header = [h.strip().lower() for h in (fieldnames or [])]
    missing = [c for c in REQUIRED if c not in header]
    if missing:
        return [], [RowError(1, ",".join(missing), "missing from the header row")]
    reader.fieldnames = header
    good: list[tuple[int, Resident, list[tuple[str, str]]]] = []
    errors: list[RowError] = []
    seen: dict[str, int] = {}
    for row in _rows(reader, errors):
        line = reader.line_num
        if None in row:
            errors.append(RowError(line, "*", "more fields than the header"))
            continue
        values = {k: (v or "").strip() for k, v in row.items()}
        if not any(values.values()):
            continue
        try:
            resident = Resident(
                ins=Ins.from_nir(values["nir"]),
                birth_name=values["nom"], used_name=values.get("nom_usage") or None,
                first_names=values["prenoms"], birth_date=_birth_date(values["date_naissance"]),
                sex=_sex(values["sexe"]), room=values["chambre"],
                objection=_objection(values.get("opposition", "")))
            allergies = _allergies(values.get("allergies", ""), substances)
        except ValidationError as exc:
            errors.append(RowError(line, _column(exc.field), f"{exc.value!r}: {exc.expected}"))
            continue
        if resident.ins.value in seen:
            errors.append(RowError(line, "nir", f"same NIR as line {seen[resident.ins.value]}"))
            continue
        seen[resident.ins.value] = line
        good.append((line, resident, allergies))
    return good, errors


def _rows(reader: csv.DictReader, errors: list[RowError]) -> Iterator[dict[str, Any]]:
    """The reader's rows until one cannot be read (a stray quote that runs past csv's field
    size limit), which is reported and ends the file."""
    try:
        yield from reader
    except csv.Error as exc:
        errors.append(RowError(reader.line_num + 1, "*",  # the line it could not finish
                               f"unreadable from this line on ({exc})"))


def _sex(text: str) -> str:
    value = text.strip().upper()
    if value not in {"M", "F"}:
        raise ValidationError("sexe", text, "M or F")
    return value


def _column(field_name: str) -> str:
    """Map a domain field name back to the CSV column."""
    name = field_name.split(".")[-1].split(":")[-1]
    return {"ins": "nir", "birth_name": "nom", "first_names": "prenoms"}.get(name, name)


def import_residents(uow: UnitOfWork, data: bytes, *, actor: str,
                     substances: SubstanceLookup | None = None) -> ImportReport:
    """Upsert the good rows and add their allergies, in one transaction; ``substances``
    (the drug referential) resolves the ``allergies`` column (without it, a row that has
    allergies is rejected)."""
    good, errors = read_residents(data, substances)
    report = ImportReport(errors=errors)
    today = utc_now().date()
    with uow:
        report.created, report.updated = uow.residents.upsert(r for _, r, _ in good)
        for _, resident, allergies in good:
            for code, name in allergies:
                record = uow.allergies.add(resident.ins.value,
                                           Allergy(code, name, today, ALLERGY_SOURCE),
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
