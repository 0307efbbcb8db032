"""What a printed order needs from the BDPM for one specialty: its common name (DC) and
its prescription conditions.

- Common name (Code de la santé publique L5121-1-2: the DC is printed on every order):
  the substances of ``CIS_COMPO_bdpm.txt`` with their strengths, "paracétamol 1000 mg",
  "amlodipine 5 mg + valsartan 80 mg". Within an element, a therapeutic fraction (FT)
  replaces the active substance (SA) it is linked to ("TRAMADOL 200 mg" rather than the
  salt "CHLORHYDRATE DE TRAMADOL", whose row has no strength), as the ANSM writes the
  prescribable form. Names are put in lower case (the BDPM writes them in capitals; a DC
  is written in lower case on a prescription), trailing decimal zeros dropped
  ("100,00 mg" → "100 mg").
- Conditions: the rows of ``CIS_CPD_bdpm.txt`` as written, for
  ``appliance.domain.secure`` (secure paper, legal limits).

Reads the referential file read-only (``build.readonly_uri``), one short connection per
call: it runs when a line is added to a draft, not as the physician types.
"""

from __future__ import annotations

import re
import sqlite3
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from appliance.domain.ids import validate_cis
from appliance.errors import StoreError
from appliance.store.referential.build import readonly_uri

MAX_COMMON_NAME = 200
_ZEROS = re.compile(r"(\d),0+(?!\d)")
_DECIMAL_ZEROS = re.compile(r"(\d,\d*?[1-9])0+(?!\d)")


@dataclass(frozen=True)
class CompositionRow:
    element: str
    substance: str
    dosage: str
    nature: str  # SA (active substance) or FT (therapeutic fraction)
    link: int


@dataclass(frozen=True)
class DrugFacts:
    common_name: str | None
    conditions: tuple[str, ...]


def _strength(dosage: str) -> str:
    text = " ".join(dosage.split())
    return _DECIMAL_ZEROS.sub(r"\1", _ZEROS.sub(r"\1", text))


def common_name(rows: Iterable[CompositionRow]) -> str | None:
    """The DC of a specialty from its composition rows (see the module doc)."""
    groups: dict[tuple[str, int], list[CompositionRow]] = defaultdict(list)
    for row in rows:
        groups[(row.element, row.link)].append(row)
    parts: list[str] = []
    for group in groups.values():
        fractions = [row for row in group if row.nature == "FT"]
        for row in fractions or group:
            name = " ".join(row.substance.split()).lower()
            part = f"{name} {_strength(row.dosage)}".strip()
            if name and part not in parts:
                parts.append(part)
    if not parts:
        return None
    text = " + ".join(parts)
    return text if len(text) <= MAX_COMMON_NAME else text[:MAX_COMMON_NAME - 1] + "…"


def drug_facts(path: Path, cis: str) -> DrugFacts:
    """The common name and the conditions of a specialty (empty when the referential has
    no composition for it)."""
    code = validate_cis(cis)
    try:
        conn = sqlite3.connect(readonly_uri(path), uri=True)
    except sqlite3.Error as exc:
        raise StoreError(f"cannot open the referential {path}: {exc}") from exc
    try:
        tables = {name for (name,) in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table'")}
        rows = []
        if "composition" in tables:
            rows = [CompositionRow(*row) for row in conn.execute(
                "SELECT element, substance, dosage, nature, link FROM composition"
                " WHERE cis = ? ORDER BY rowid", (code,))]
        conditions: list[str] = []
        if "condition" in tables:
            conditions = [text for (text,) in conn.execute(
                "SELECT text FROM condition WHERE cis = ? ORDER BY rowid", (code,))]
    except sqlite3.Error as exc:
        raise StoreError(f"referential query failed ({path}): {exc}") from exc
    finally:
        conn.close()
    return DrugFacts(common_name(rows), tuple(conditions))
