"""The JSON draft used by the EHPAD's own software (DUI) and by ``ordo drafts import``.

Schema (version 1)::

    {
      "resident": {"nir": "2400175123001 30"}
               or {"ins": "240017512300130", "oid": "1.2.250.1.213.1.4.8"}
               or {"nom": "MARTIN", "prenoms": "Jeanne", "date_naissance": "1940-01-15"},
      "weight_kg": "62.5",                            # optional, the resident's weight
      "renewals": 0,                                  # optional, 0..12: the default of the
                                                      # lines that give none (older drafts)
      "lines": [
        {"type": "medication", "cip13": "3400935955838"  (or "cis": "60234100"),
         "posology": {"kind": "structured", "dose": "1", "unit": "comprimé",
                      "moments": ["matin", "soir"], "duration": {"value": 7, "unit": "jour"}}
                     or {"kind": "text", "text": "selon schéma"},
         "quantity": "2", "non_substitution": "MTE", "ald": false, "instructions": "...",
         "renewals": 2, "prescribed_as": "brand" (default) or "dc"},
        {"type": "device", "lpp": "1234567" (optional), "label": "...", "quantity": "1",
         "ald": false, "renewals": 0},
        {"type": "act", "text": "Kinésithérapie : 10 séances", "ald": false, "renewals": 0}
      ]
    }

Renewals are per line ("à renouveler N fois" on each line); the top-level ``renewals`` of
earlier drafts still works as the count of every line that does not give its own. A
medication gets its common name (DC) and its prescription conditions from the referential
(``DrugLookup.facts``); a line whose conditions limit its duration (or make it a secure
prescription, which needs a structured posology with a duration) is checked here.

Every error is collected with its JSON path (``$.lines[1].posology.times_per_day``) so the DUI
gets the whole list at once, not one error per round trip. A key named twice in one object is
refused (``load_draft_json``: Python's json would keep the last one silently), a draft has
at most ``MAX_LINES`` lines (the registry refuses a larger prescription), and its texts
hold no control or bidirectional character (a line feed in free texts only).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal, InvalidOperation
from typing import Any, Protocol, TypeVar

from appliance.domain.ids import INS_OIDS, validate_cip13, validate_cis, validate_lpp
from appliance.domain.people import Resident, fold
from appliance.domain.posology import posology_from_dict
from appliance.domain.prescription import (
    MAX_LINES,
    MAX_RENEWALS,
    ActLine,
    DeviceLine,
    Line,
    MedicationLine,
    NonSubstitution,
)
from appliance.errors import DraftInvalid, DraftProblem, ValidationError


class DrugLabel(Protocol):
    cis: str
    label: str


class SpecialtyFacts(Protocol):
    """The common name (DC) and the prescription conditions of a specialty."""

    @property
    def common_name(self) -> str | None: ...

    @property
    def conditions(self) -> Sequence[str]: ...


class DrugLookup(Protocol):
    """What the draft needs from the drug referential."""

    def label_for_cip13(self, cip13: str) -> tuple[str, str] | None:
        """(CIS, label) of a presentation, or None when unknown."""

    def label_for_cis(self, cis: str) -> str | None:
        """Specialty name, or None when unknown."""

    def facts(self, cis: str) -> SpecialtyFacts | None:
        """The common name and conditions of a specialty; optional (``facts_of``)."""


T = TypeVar("T")

ResidentFinder = Callable[[Mapping[str, object]], list[Resident]]


@dataclass
class Draft:
    resident: Resident
    lines: list[Line] = field(default_factory=list)
    weight_kg: Decimal | None = None


class _Collector:
    def __init__(self) -> None:
        self.problems: list[DraftProblem] = []

    def add(self, path: str, message: str) -> None:
        self.problems.append(DraftProblem(path, message))

    def validation(self, base: str, exc: ValidationError) -> None:
        name = exc.field.split(".", 1)[1] if "." in exc.field else ""
        path = f"{base}.{name}" if name and not base.endswith(name) else base
        self.add(path, f"{exc.value!r} is invalid: {exc.expected}")


def _decimal(value: object) -> Decimal:
    if isinstance(value, bool | float):
        raise ValidationError("quantity", value, 'a string like "2" or an integer')
    try:
        return Decimal(str(value))
    except InvalidOperation:
        raise ValidationError("quantity", value, "a number") from None


KNOWN_LINE_KEYS = {
    "medication": {"type", "cip13", "cis", "posology", "quantity", "non_substitution", "ald",
                   "instructions", "renewals", "prescribed_as"},
    "device": {"type", "lpp", "label", "quantity", "ald", "renewals"},
    "act": {"type", "text", "ald", "renewals"},
}


def _renewals(out: _Collector, path: str, value: object) -> int | None:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= MAX_RENEWALS:
        out.add(path, f"{value!r}: expected an integer from 0 to {MAX_RENEWALS}")
        return None
    return value


def _line(i: int, raw: object, drugs: DrugLookup, out: _Collector,
          default_renewals: int = 0) -> Line | None:
    """The line at ``$.lines[i]``, checked as new input (no control or bidirectional
    character in its texts: ``check_input``), or ``None`` with its problems in ``out``."""
    path = f"$.lines[{i}]"
    line = _build_line(path, raw, drugs, out, default_renewals)
    if line is None:
        return None
    try:
        line.check_input()
    except ValidationError as exc:
        out.validation(f"{path}.posology" if exc.field.startswith("posology.") else path, exc)
        return None
    return line


def _build_line(path: str, raw: object, drugs: DrugLookup, out: _Collector,
                default_renewals: int) -> Line | None:
    if not isinstance(raw, Mapping):
        out.add(path, "expected an object")
        return None
    kind = raw.get("type")
    if not isinstance(kind, str) or kind not in KNOWN_LINE_KEYS:  # [] is unhashable
        out.add(f"{path}.type", f"{kind!r}: expected medication, device or act")
        return None
    for key in sorted(set(raw) - KNOWN_LINE_KEYS[kind]):
        out.add(f"{path}.{key}", f"unknown field for a {kind} line")
    before = len(out.problems)
    ald = raw.get("ald", False)
    if not isinstance(ald, bool):
        out.add(f"{path}.ald", f"{ald!r}: expected true or false")
    renewals = _renewals(out, f"{path}.renewals", raw.get("renewals", default_renewals))
    try:
        if kind == "act":
            return None if len(out.problems) > before else ActLine(
                text=raw.get("text", ""), ald=ald, renewals=renewals or 0)
        if kind == "device":
            lpp = raw.get("lpp")
            if lpp is not None:
                lpp = _guard(out, f"{path}.lpp", lambda: validate_lpp(str(lpp)))
            quantity = _guard(out, f"{path}.quantity",
                              lambda: _decimal(raw.get("quantity", "1")))
            if len(out.problems) > before or quantity is None:  # None: a problem was added
                return None
            return DeviceLine(label=raw.get("label", ""), lpp=lpp, quantity=quantity, ald=ald,
                              renewals=renewals or 0)
        return _medication(path, raw, ald, drugs, out, before, renewals or 0)
    except ValidationError as exc:
        out.validation(path, exc)
        return None


def _guard(out: _Collector, path: str, func: Callable[[], T]) -> T | None:
    try:
        return func()
    except ValidationError as exc:
        out.add(path, f"{exc.value!r} is invalid: {exc.expected}")
        return None


def _medication(path: str, raw: Mapping[str, Any], ald: bool, drugs: DrugLookup,
                out: _Collector, before: int, renewals: int = 0) -> MedicationLine | None:
    cip13, cis, label = raw.get("cip13"), raw.get("cis"), None
    if cip13 is None and cis is None:
        out.add(path, "a medication needs a cip13 or a cis (codified drugs only)")
    if cip13 is not None:
        cip13 = _guard(out, f"{path}.cip13", lambda: validate_cip13(str(cip13)))
        if cip13:
            found = drugs.label_for_cip13(cip13)
            if found is None:
                out.add(f"{path}.cip13", f"{cip13!r} is not in the drug referential")
            else:
                found_cis, label = found
                if cis is not None and str(cis) != found_cis:
                    out.add(f"{path}.cis", f"{cis!r} does not match the CIP13 (CIS {found_cis})")
                cis = found_cis
    elif cis is not None:
        cis = _guard(out, f"{path}.cis", lambda: validate_cis(str(cis)))
        if cis:
            label = drugs.label_for_cis(cis)
            if label is None:
                out.add(f"{path}.cis", f"{cis!r} is not in the drug referential")
    posology = None
    if "posology" not in raw:
        out.add(f"{path}.posology", "required")
    else:
        try:
            posology = posology_from_dict(raw["posology"])
        except ValidationError as exc:
            out.validation(f"{path}.posology", exc)
    quantity = None
    if raw.get("quantity") is not None:
        quantity = _guard(out, f"{path}.quantity", lambda: _decimal(raw["quantity"]))
    ns = raw.get("non_substitution")
    if ns is not None and (not isinstance(ns, str) or ns not in NonSubstitution.__members__):
        out.add(f"{path}.non_substitution", f"{ns!r}: expected MTE, EFG or CIF")
    instructions = raw.get("instructions", "")
    if not isinstance(instructions, str):
        out.add(f"{path}.instructions", "expected a text")
    prescribed_as = raw.get("prescribed_as", "brand")
    if prescribed_as not in ("brand", "dc"):
        out.add(f"{path}.prescribed_as", f"{prescribed_as!r}: expected brand or dc")
    if len(out.problems) > before or posology is None or label is None:
        return None
    common, conditions = facts_of(drugs, cis)
    line = MedicationLine(label=label, cis=cis, cip13=cip13, posology=posology,
                          quantity=quantity, non_substitution=ns, ald=ald,
                          instructions=instructions, renewals=renewals, common_name=common,
                          by_brand=prescribed_as == "brand", conditions=conditions)
    try:
        line.check_limits()
    except ValidationError as exc:
        out.add(f"{path}.posology", f"{exc.value!r} is invalid: {exc.expected}")
        return None
    return line


def facts_of(drugs: object, cis: str | None) -> tuple[str | None, tuple[str, ...]]:
    """The common name and conditions of a specialty, when the lookup knows them."""
    lookup: Callable[[str], SpecialtyFacts | None] | None = getattr(drugs, "facts", None)
    if lookup is None or not cis:
        return None, ()
    found = lookup(cis)
    return (found.common_name, tuple(found.conditions)) if found is not None else (None, ())


def _resident(raw: object, find: ResidentFinder, out: _Collector) -> Resident | None:
    if not isinstance(raw, Mapping):
        out.add("$.resident", "expected an object with nir, ins or the full identity")
        return None
    query = dict(raw)
    if "oid" in query and query["oid"] not in INS_OIDS:
        out.add("$.resident.oid", f"{query['oid']!r}: expected one of {', '.join(INS_OIDS)}")
        return None
    if not ({"nir", "ins"} & set(query)):
        missing = [k for k in ("nom", "prenoms", "date_naissance") if not query.get(k)]
        if missing:
            out.add("$.resident", "needs nir, ins, or nom + prenoms + date_naissance "
                                  f"(missing {', '.join(missing)})")
            return None
        try:
            date.fromisoformat(str(query["date_naissance"]))
        except ValueError:
            out.add("$.resident.date_naissance", f"{query['date_naissance']!r}: expected "
                                                 "YYYY-MM-DD")
            return None
    try:
        found = find(query)
    except ValidationError as exc:
        out.add(f"$.resident.{exc.field.split('.')[-1]}",
                f"{exc.value!r} is invalid: {exc.expected}")
        return None
    if not found:
        out.add("$.resident", "no active resident matches")
        return None
    if len(found) > 1:
        out.add("$.resident", f"{len(found)} residents match: give the NIR or the INS")
        return None
    return found[0]


TWICE = "key named twice in the same object (the last one would win)"


class _Pairs(dict[str, object]):
    """A JSON object that remembers the keys it was given more than once."""

    twice: tuple[str, ...] = ()


def _pairs(pairs: list[tuple[str, object]]) -> dict[str, object]:
    obj = _Pairs(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        repeated = []
        for key, _ in pairs:
            if key in seen:
                repeated.append(key)
            seen.add(key)
        obj.twice = tuple(dict.fromkeys(repeated))
    return obj


def _twice(value: object, path: str) -> Iterator[str]:
    if isinstance(value, dict):
        for key in getattr(value, "twice", ()):
            yield f"{path}.{key}"
        for key, item in value.items():
            yield from _twice(item, f"{path}.{key}")
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _twice(item, f"{path}[{i}]")


def load_draft_json(text: str) -> object:
    """Parse a JSON draft document; ``DraftInvalid`` naming every key given twice in one
    object, with its path. Other JSON errors are the caller's (``json.JSONDecodeError``)."""
    data = json.loads(text, object_pairs_hook=_pairs)
    twice = sorted(_twice(data, "$"))
    if twice:
        raise DraftInvalid([DraftProblem(path, TWICE) for path in twice])
    return data


def parse_draft(data: object, *, find_resident: ResidentFinder, drugs: DrugLookup) -> Draft:
    """Validate a JSON draft; raise ``DraftInvalid`` with every problem found."""
    out = _Collector()
    if not isinstance(data, Mapping):
        raise DraftInvalid([DraftProblem("$", "expected a JSON object")])
    for key in sorted(set(data) - {"resident", "renewals", "lines", "weight_kg"}):
        out.add(f"$.{key}", "unknown field")
    resident = _resident(data.get("resident"), find_resident, out)
    renewals = _renewals(out, "$.renewals", data.get("renewals", 0))
    weight = None
    if data.get("weight_kg") is not None:
        weight = _guard(out, "$.weight_kg", lambda: _weight(data["weight_kg"]))
    raw_lines = data.get("lines")
    lines: list[Line] = []
    if not isinstance(raw_lines, list) or not raw_lines:
        out.add("$.lines", "expected a non-empty list of lines")
    elif len(raw_lines) > MAX_LINES:
        out.add("$.lines", f"{len(raw_lines)} lines: a prescription has at most {MAX_LINES}")
    else:
        for i, raw in enumerate(raw_lines):
            line = _line(i, raw, drugs, out, renewals or 0)
            if line is not None:
                lines.append(line)
    if out.problems or resident is None:
        raise DraftInvalid(out.problems)
    return Draft(resident=resident, lines=lines, weight_kg=weight)


def _weight(value: object) -> Decimal:
    amount = _decimal(value)
    if not amount.is_finite() or not 0 < amount <= 500:
        raise ValidationError("weight_kg", value, "a weight in kg greater than 0, up to 500")
    return amount


def resident_matcher(residents: Callable[[], list[Resident]]) -> ResidentFinder:
    """A finder over a list of residents: by NIR/INS, or by the full identity."""
    from appliance.domain.ids import validate_nir

    def find(query: Mapping[str, object]) -> list[Resident]:
        everyone = [r for r in residents() if r.active]
        if "nir" in query:
            nir = validate_nir(str(query["nir"]), field="resident.nir")
            return [r for r in everyone if r.ins.value == nir]
        if "ins" in query:
            ins = validate_nir(str(query["ins"]), field="resident.ins")
            oid = query.get("oid")
            return [r for r in everyone if r.ins.value == ins and (oid is None or
                                                                   r.ins.oid == oid)]
        born = date.fromisoformat(str(query["date_naissance"]))
        last, first = fold(str(query["nom"])), fold(str(query["prenoms"]))
        return [r for r in everyone if r.birth_date == born
                and last in {fold(r.birth_name), fold(r.used_name or "")}
                and fold(r.first_names).split()[:1] == first.split()[:1]]  # "" if blank

    return find
