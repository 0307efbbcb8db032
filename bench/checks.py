"""Benchmark of the prescribing checks: a 10-line draft against a 15-line current treatment.

Run from the repository root::

    python -m bench.checks [--bdpm DIR] [--rounds 1000]

The referential is imported from the real extract (``../shared/data/bdpm``; the repository's
BDPM fixture when it is absent) into a temporary directory. A draft of 10 lines and a current
treatment of 15 are built from 25 different specialties of the test sets (structured
posologies, as a physician types them), for a resident of 85 with two allergies. Timed, in
``--rounds`` rounds after a warm-up, interleaved:

- ``check_warm``: ``check()`` with the drug facts already read (the editor re-checks as the
  physician types: the drugs are cached after the first check);
- ``check_cold``: the same with the drug-facts cache emptied first (the first check of a
  draft: 25 specialties read from SQLite);
- anchor ``lookups_cold``: the referential lookups alone, as the checks make them, with the
  cache emptied: ``ReferentialFacts.prefetch()`` of the 25 specialties (four queries), then
  ``drug()`` for each (what the checks cannot do without).

``ratio``: each percentile of ``check_cold`` over the anchor's. Goal (prescribing safety):
p95 ≤ 5 ms (both warm and cold). When the real extract is there, the JSON also gives the
figures of the test sets (``tests/data/checks``): alerts on the 200 ordinary prescriptions
by severity and code, and the dangers caught among the 100 dangerous ones. Prints JSON only.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from pathlib import Path

from appliance.domain.drug_facts import Allergy
from appliance.domain.posology import Duration, Posology
from appliance.domain.prescription import MedicationLine
from appliance.errors import DraftInvalid
from appliance.services.checks import CurrentMedication, ResidentProfile, check
from appliance.services.referential import import_bdpm
from appliance.store.referential.build import referential_path
from appliance.store.referential.facts import ReferentialFacts
from bench.common import emit, machine, percentiles_ms
from tests.harness import safety_sets

DRAFT_LINES, CURRENT_LINES = 10, 15
TODAY = date(2025, 1, 15)
RESIDENT = ResidentProfile(date(1939, 6, 2), (
    Allergy("05248", "AMOXICILLINE", date(2021, 3, 12), "dossier médical"),
    Allergy("02202", "CODÉINE", date(2019, 1, 5), "déclaration de la famille")))
POSOLOGIES = [
    Posology(dose=Decimal(1), unit="comprimé", moments=("matin",), duration=Duration(1, "mois")),
    Posology(dose=Decimal(1), unit="gélule", moments=("matin", "soir")),
    Posology(dose=Decimal(1), unit="comprimé", moments=("matin", "midi", "soir"),
             duration=Duration(7, "jour")),
    Posology(dose=Decimal(1), unit="sachet", moments=("midi",)),
    Posology(dose=Decimal(1), unit="comprimé", interval_hours=8, as_needed=True,
             max_per_day=Decimal(3)),
]


@dataclass
class Draft:
    lines: list


def _specialties(facts: ReferentialFacts, count: int) -> list[tuple[str, str]]:
    """(CIS, name) of ``count`` different specialties of the ordinary set, in order."""
    _, cases = safety_sets.load("ordinary")
    seen: dict[str, str] = {}
    for case in cases:
        for item in case["draft"]["lines"] + case["current"]:
            drug = facts.drug(cip13=item["cip13"])
            if drug is not None and drug.cis not in seen:
                seen[drug.cis] = drug.name
    if len(seen) < count:
        raise SystemExit(f"the referential holds {len(seen)} specialties of the sets, "
                         f"{count} needed")
    return list(seen.items())[:count]


def _forget(facts: ReferentialFacts) -> None:
    """Empty the drug cache, keeping the open connection (as after a new draft is opened)."""
    facts._drugs.clear()
    facts._cis_of.clear()


def _set_figures(source: Path, work: Path) -> dict:
    """Alerts on the test sets, run as the tests run them (real draft parser, residents)."""
    today, ordinary = safety_sets.load("ordinary")
    _, dangerous = safety_sets.load("dangerous")
    subset = safety_sets.real_subset(work / "bdpm-subset", safety_sets.cip13s(
        ordinary + dangerous), source)
    env = safety_sets.prepare(subset, work / "sets", today)
    try:
        severities: Counter[str] = Counter()
        info_codes: Counter[str] = Counter()
        cases_with_serious = 0
        for case in ordinary:
            alerts = safety_sets.run(env, case, today)
            severities.update(a.severity.value for a in alerts)
            info_codes.update(a.code for a in alerts if a.severity.value == "info")
            cases_with_serious += bool(safety_sets.serious(alerts))
        caught = refused = 0
        by_danger: Counter[str] = Counter()
        for case in dangerous:
            try:
                keys = {a.key for a in safety_sets.run(env, case, today)}
            except DraftInvalid:  # refused at the door (a legal limit of the line): caught
                refused += 1
                caught += 1
                by_danger[case["danger"]] += 1
                continue
            if all(key in keys for key in case["expect"]):
                caught += 1
                by_danger[case["danger"]] += 1
    finally:
        env.close()
    return {"ordinary": {"cases": len(ordinary), "cases_with_serious_alerts": cases_with_serious,
                         "alerts_by_severity": dict(severities),
                         "info_by_code": dict(info_codes)},
            "dangerous": {"cases": len(dangerous), "caught": caught,
                          "refused_as_invalid_input": refused,
                          "caught_by_danger": dict(by_danger)}}


def run(source: Path, rounds: int) -> dict:
    work = Path(tempfile.mkdtemp(prefix="ordo-bench-checks-"))
    started = time.perf_counter()
    import_bdpm(work, source, referential_date="2022-06-03")
    import_seconds = time.perf_counter() - started
    facts = ReferentialFacts(referential_path(work))
    chosen = _specialties(facts, DRAFT_LINES + CURRENT_LINES)
    lines = [MedicationLine(label=name, cis=cis, posology=POSOLOGIES[i % len(POSOLOGIES)],
                            renewals=2) for i, (cis, name) in enumerate(chosen[:DRAFT_LINES])]
    current = [CurrentMedication(name, cis=cis, posology=POSOLOGIES[i % len(POSOLOGIES)])
               for i, (cis, name) in enumerate(chosen[DRAFT_LINES:])]
    draft = Draft(lines)
    alerts = check(draft, RESIDENT, current, facts, today=TODAY)  # warm-up (tables loaded)
    warm: list[float] = []
    cold: list[float] = []
    lookups: list[float] = []
    codes = [cis for cis, _ in chosen]
    clock = time.perf_counter
    for i in range(rounds):
        order = ("warm", "cold", "lookups") if i % 2 else ("lookups", "cold", "warm")
        for what in order:
            if what == "warm":
                check(draft, RESIDENT, current, facts, today=TODAY)  # cache filled
                t = clock()
                check(draft, RESIDENT, current, facts, today=TODAY)
                warm.append(clock() - t)
            elif what == "cold":
                _forget(facts)
                t = clock()
                check(draft, RESIDENT, current, facts, today=TODAY)
                cold.append(clock() - t)
            else:
                _forget(facts)
                t = clock()
                facts.prefetch(cis=codes)
                for cis in codes:
                    facts.drug(cis=cis)
                lookups.append(clock() - t)
    facts.close()
    cold_ms, lookups_ms, warm_ms = (percentiles_ms(x) for x in (cold, lookups, warm))
    result = {
        "benchmark": "checks", "machine": machine(), "source": str(source),
        "import_seconds": round(import_seconds, 2),
        "draft_lines": DRAFT_LINES, "current_lines": CURRENT_LINES, "rounds": rounds,
        "alerts_on_the_timed_draft": Counter(a.severity.value for a in alerts),
        "latency_ms": {"check_warm": warm_ms, "check_cold": cold_ms,
                       "lookups_cold": lookups_ms},
        "ratio": {k: round(cold_ms[k] / lookups_ms[k], 2) for k in ("p50", "p95")},
        "goals": {"p95_le_5ms": cold_ms["p95"] <= 5 and warm_ms["p95"] <= 5},
    }
    if source.resolve() == safety_sets.REAL_BDPM.resolve():
        result["sets"] = _set_figures(source, work)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bdpm", type=Path, default=None,
                        help="BDPM directory (default: ../shared/data/bdpm, else the fixture)")
    parser.add_argument("--rounds", type=int, default=1000)
    args = parser.parse_args(argv)
    source = args.bdpm or (safety_sets.REAL_BDPM if safety_sets.REAL_BDPM.is_dir()
                           else safety_sets.FIXTURE_BDPM)
    emit(run(source, args.rounds))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
