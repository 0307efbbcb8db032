"""Running the prescribing checks' test sets (``tests/data/checks``) as the product would.

A set's drafts are in the format of ``ordo prescribe``; each goes through the real draft
parser (``parse_draft``) against a real referential file built by ``import_bdpm`` from BDPM
files (the repository's small fixture, or the rows of the real extract the sets need), the
residents come from ``residents.csv`` read by the residents' importer with its ``allergies``
column, and the current treatment is parsed the same way. ``run`` returns the alerts of
each case.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

from appliance.domain.drug_facts import Allergy
from appliance.domain.people import Resident
from appliance.domain.prescription import MedicationLine
from appliance.services.checks import Alert, CurrentMedication, ResidentProfile, check
from appliance.services.drafts import parse_draft, resident_matcher
from appliance.services.prescribing import ReferentialDrugs
from appliance.services.referential import import_bdpm, open_referential
from appliance.services.residents import ALLERGY_SOURCE, read_residents
from appliance.store.referential.build import referential_path
from appliance.store.referential.facts import ReferentialFacts

ROOT = Path(__file__).resolve().parents[2]
SETS = ROOT / "tests" / "data" / "checks"
FIXTURE_BDPM = SETS / "bdpm"
REAL_BDPM = ROOT.parent / "shared" / "data" / "bdpm"
BDPM_FILES = ("CIS_bdpm.txt", "CIS_CIP_bdpm.txt", "CIS_COMPO_bdpm.txt", "CIS_GENER_bdpm.txt",
              "CIS_CPD_bdpm.txt")
SERIOUS = {"bloquant", "important"}


def load(name: str) -> tuple[date, list[dict[str, Any]]]:
    """(the day the set is checked on, its cases) of ``ordinary`` or ``dangerous``."""
    data = json.loads((SETS / f"{name}.json").read_text("utf-8"))
    return date.fromisoformat(data["today"]), data["cases"]


def cip13s(cases: Iterable[dict[str, Any]]) -> set[str]:
    return {item["cip13"] for case in cases
            for item in case["draft"]["lines"] + case["current"]}


def real_subset(target: Path, cip13: set[str], source: Path = REAL_BDPM) -> Path:
    """The rows of the real extract for the specialties of these presentations (bytes
    unchanged), so that the sets import in a fraction of the full import's time."""
    wanted: set[bytes] = set()
    for raw in (source / "CIS_CIP_bdpm.txt").read_bytes().split(b"\n"):
        fields = raw.split(b"\t")
        if len(fields) > 6 and fields[6].strip().decode("ascii", "replace") in cip13:
            wanted.add(fields[0].strip())
    target.mkdir(parents=True, exist_ok=True)
    for name in BDPM_FILES:
        column = 2 if name == "CIS_GENER_bdpm.txt" else 0
        kept = [raw for raw in (source / name).read_bytes().split(b"\n")
                if len(fields := raw.split(b"\t")) > column and fields[column].strip() in wanted]
        (target / name).write_bytes(b"\n".join(kept) + b"\n")
    return target


@dataclass
class Env:
    """A referential file and the residents, ready to check drafts."""

    facts: ReferentialFacts
    drugs: ReferentialDrugs
    residents: dict[str, tuple[Resident, tuple[Allergy, ...]]]
    referential: Any

    def close(self) -> None:
        self.facts.close()
        self.referential.close()


def prepare(bdpm: Path, data_dir: Path, today: date) -> Env:
    import_bdpm(data_dir, bdpm, referential_date="2022-06-03")
    facts = ReferentialFacts(referential_path(data_dir))
    referential = open_referential(data_dir)
    good, errors = read_residents((SETS / "residents.csv").read_bytes(), facts)
    if errors:
        raise AssertionError(f"residents.csv: {[str(e) for e in errors]}")
    residents = {r.ins.value: (r, tuple(Allergy(code, name, today, ALLERGY_SOURCE)
                                        for code, name in allergies))
                 for _, r, allergies in good}
    return Env(facts, ReferentialDrugs(referential), residents, referential)


def run(env: Env, case: dict[str, Any], today: date) -> list[Alert]:
    """The alerts of one case, the draft and the current treatment parsed as drafts are."""
    everyone = [resident for resident, _ in env.residents.values()]
    finder = resident_matcher(lambda: everyone)
    draft = parse_draft(case["draft"], find_resident=finder, drugs=env.drugs)
    current: list[CurrentMedication] = []
    if case["current"]:
        taken = parse_draft({**case["draft"], "lines": case["current"]}, find_resident=finder,
                            drugs=env.drugs)
        current = [CurrentMedication.from_line(line) for line in taken.lines
                   if isinstance(line, MedicationLine)]
    resident, allergies = env.residents[draft.resident.ins.value]
    return check(draft, ResidentProfile.of(resident, allergies), current, env.facts,
                 today=today)


def serious(alerts: Iterable[Alert]) -> list[Alert]:
    return [a for a in alerts if a.severity.value in SERIOUS]
