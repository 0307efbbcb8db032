"""The real-world drug query set (``tests/data/drug_queries.csv``): loading and scoring.

Each row is a query as a physician types it and the codes it means: CIS (a specialty,
8 digits) or CIP13 (a box, 13 digits), several when any of them is right. A query is
answered right when the first result is one of them. Used by the integration test on
the full BDPM and by ``python -m bench.search``; another set of the same form can be
given with ``ORDO_DRUG_QUERIES=path`` (test) or ``--queries path`` (benchmark).
"""

from __future__ import annotations

import csv
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

QUERIES = Path(__file__).resolve().parent / "data" / "drug_queries.csv"


@dataclass(frozen=True)
class DrugQuery:
    text: str
    expected: frozenset[str]
    note: str = ""

    def answered_by(self, first: Any) -> bool:
        return first.cis in self.expected or first.cip13 in self.expected


def query_file() -> Path:
    return Path(os.environ.get("ORDO_DRUG_QUERIES") or QUERIES)


def load(path: Path | None = None) -> list[DrugQuery]:
    """The rows of a query file (``#`` lines are comments; the first row is a header)."""
    with (path or query_file()).open(encoding="utf-8", newline="") as handle:
        rows = [row for row in csv.reader(line for line in handle
                                          if line.strip() and not line.startswith("#"))]
    header, *body = rows
    if [cell.strip().lower() for cell in header[:2]] != ["query", "expected"]:
        raise ValueError(f"{path}: the first row must be 'query,expected[,note]'")
    queries = []
    for number, row in enumerate(body, start=2):
        codes = frozenset(row[1].split())
        if not row[0].strip() or not codes or not all(
                code.isdigit() and len(code) in (8, 13) for code in codes):
            raise ValueError(f"{path}: row {number} needs a query and CIS or CIP13 codes")
        queries.append(DrugQuery(row[0], codes, row[2] if len(row) > 2 else ""))
    return queries


def score(search: Callable[[str], Sequence[Any]],
          queries: Iterable[DrugQuery]) -> tuple[int, list[dict[str, Any]]]:
    """How many queries get an expected code first, and the others with what came."""
    right, wrong = 0, []
    for query in queries:
        results = search(query.text)
        if results and query.answered_by(results[0]):
            right += 1
        else:
            wrong.append({"query": query.text, "expected": sorted(query.expected)[:3],
                          "first": [f"{p.cis} {p.name}" for p in results[:2]]})
    return right, wrong
