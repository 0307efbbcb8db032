"""Pure parsing of an LPP code list (medical devices) into typed records.

The Assurance Maladie's open data publishes the LPP (Liste des Produits et Prestations
remboursables, article L165-1 du code de la sécurité sociale) as a ``;``-separated file
with a header row; the two columns read here are ``CODE_LPP`` (7 digits) and
``L_CODE_LPP`` (label); other columns are ignored. Encoding UTF-8 (with or without BOM)
or cp1252. A malformed line is reported (file, line, reason) and skipped.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass

from appliance.domain.ids import validate_lpp
from appliance.errors import InvalidIdentifier, ValidationError
from appliance.store.referential.bdpm import ParsedFile, RowError, split_lines

CODE_COLUMN = "CODE_LPP"
LABEL_COLUMN = "L_CODE_LPP"
DELIMITER = ";"


@dataclass(frozen=True, slots=True)
class DeviceRow:
    """One LPP code and its label."""

    code: str
    label: str


def _cells(line: str) -> list[str]:
    return [cell.strip() for cell in next(csv.reader([line], delimiter=DELIMITER))]


def parse_devices(data: bytes, name: str) -> ParsedFile[DeviceRow]:
    """Parse the CSV ``data``; the header must name ``CODE_LPP`` and ``L_CODE_LPP``."""
    parsed: ParsedFile[DeviceRow] = ParsedFile(name)
    columns: tuple[int, int] | None = None
    seen: dict[str, int] = {}
    for number, line in split_lines(name, data):
        parsed.lines = number
        if isinstance(line, RowError):
            if columns is None:
                raise ValidationError(name, line.reason, "a readable header line")
            parsed.errors.append(line)
            continue
        if columns is None:
            try:
                header = [cell.upper() for cell in _cells(line)]
            except csv.Error as exc:
                raise ValidationError(f"{name}:{number}", line[:80],
                                      f"a readable CSV header ({exc})") from None
            if CODE_COLUMN not in header or LABEL_COLUMN not in header:
                raise ValidationError(
                    f"{name}:{number}", line[:80],
                    f"a header naming {CODE_COLUMN} and {LABEL_COLUMN}, separated by "
                    f"{DELIMITER!r}")
            columns = (header.index(CODE_COLUMN), header.index(LABEL_COLUMN))
            parsed.header = number
            continue
        try:
            cells = _cells(line) if line.strip() else []
        except csv.Error as exc:  # a lone CR inside the line, a field over csv's size limit
            parsed.errors.append(RowError(name, number, f"unreadable CSV line ({exc})"))
            continue
        error = None
        if not cells:
            error = "empty line"
        elif len(cells) <= max(columns):
            error = f"{len(cells)} fields, expected at least {max(columns) + 1}"
        else:
            code, label = cells[columns[0]], cells[columns[1]]
            try:
                code = validate_lpp(code)
            except InvalidIdentifier as exc:
                error = f"bad LPP code {code!r}: {exc.expected}"
            else:
                if not label:
                    error = "empty label"
                elif code in seen:
                    error = f"duplicate key {code} (first at line {seen[code]})"
                else:
                    seen[code] = number
                    parsed.records.append(DeviceRow(code, label))
        if error:
            parsed.errors.append(RowError(name, number, error))
    if columns is None:
        raise ValidationError(name, "", f"a header naming {CODE_COLUMN} and {LABEL_COLUMN}")
    return parsed
