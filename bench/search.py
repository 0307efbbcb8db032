"""Benchmark of the drug search: as-you-type latency against a bare FTS5 trigram query,
and how often real-world queries get the intended drug first.

Run from the repository root::

    python -m bench.search [--data-dir DIR] [--source BDPM_DIR_ZIP_OR_URL] [--names 40]
                           [--queries tests/data/drug_queries.csv]

It imports the BDPM (default: the real extract in ``../shared/data/bdpm``) into
``DIR`` (default: a fresh temporary directory, so the import is a full one; an existing
referential with the same data makes it a no-op, reported as such), then types, letter
by letter (up to 30 characters each), real specialty names from the referential
("names") and the physicians' queries of the query set ("shapes": glued units such as
"1000mg" and "25µg", typos, abbreviated forms such as "cp" and "gél"), and times
``Referential.search(prefix, 20)`` for every prefix, in ``ROUNDS`` rounds after a
warm-up round: ``search`` is the referential as the kiosk uses it (result objects
cached), ``search_uncached`` builds every result object again. In the same run and
interleaved, it times the bare FTS5 trigram query on the same database,
``SELECT rowid FROM drug_doc_tri WHERE drug_doc_tri MATCH '"<folded prefix>"' LIMIT 20``,
for the prefixes of three characters or more (trigrams need three): ``ratio_to_bare``
divides the percentiles of ``search`` by those of the bare query over those prefixes
(all of them, and the shapes alone), ``per_query_ratio`` is the distribution of the
per-prefix ratios of medians. Then each query of the set, typed whole, is scored: is
the first result one of its expected codes? Last, the spelling tolerance's two ways
of finding the word a typo was meant to be are timed on the query set's misspelt
words: edit-distance-1 variants looked up in the vocabulary (what the search uses) and
trigram similarity with a bounded edit distance. Prints JSON only.

Goals: p95 ≤ 2 ms, p95 ≤ 3 × the bare query's p95 (all prefixes, and the shapes alone),
import ≤ 10 s, ≥ 90 % of the query set right first.
"""

from __future__ import annotations

import argparse
import random
import sqlite3
import statistics
import sys
import time
from pathlib import Path

from appliance.services.referential import import_bdpm, open_referential
from appliance.store.referential.build import readonly_uri, referential_path
from appliance.store.referential.search import Referential
from appliance.store.referential.terms import parse_query
from appliance.store.referential.text import search_key
from bench.common import bench_run
from tests import drug_queries

DEFAULT_SOURCE = Path(__file__).resolve().parents[2] / "shared" / "data" / "bdpm"
MAX_TYPED = 30
LIMIT = 20
ROUNDS = 3
SEED = 4
BARE_SQL = "SELECT rowid FROM drug_doc_tri WHERE drug_doc_tri MATCH ? LIMIT ?"


def percentiles(samples_ns: list[int]) -> dict[str, float]:
    ordered = sorted(samples_ns)
    cuts = statistics.quantiles(ordered, n=100, method="inclusive")
    return {"p50": round(cuts[49] / 1e6, 4), "p95": round(cuts[94] / 1e6, 4),
            "p99": round(cuts[98] / 1e6, 4), "max": round(ordered[-1] / 1e6, 4),
            "n": len(ordered)}


def keystroke_prefixes(db: Path, names: int) -> list[str]:
    """Prefixes of ``names`` distinct specialty names, typed letter by letter."""
    conn = sqlite3.connect(readonly_uri(db), uri=True)
    try:
        all_names = [row[0] for row in conn.execute(
            "SELECT DISTINCT name FROM drug_doc WHERE name != '' ORDER BY name")]
    finally:
        conn.close()
    picked = random.Random(SEED).sample(all_names, min(names, len(all_names)))
    return typed(picked)


def typed(texts: list[str]) -> list[str]:
    """Every prefix of each text, as typed letter by letter (up to ``MAX_TYPED``)."""
    return [text[:length] for text in texts
            for length in range(1, min(len(text), MAX_TYPED) + 1)]


def _ratios(search: dict[str, float], bare: dict[str, float]) -> dict[str, float]:
    return {cut: round(search[cut] / bare[cut], 2) for cut in ("p50", "p95", "p99")}


def spelling_methods(ref: Referential, queries: list[drug_queries.DrugQuery]) -> dict:
    """Time the two ways of finding the known word a misspelt one was meant to be, on
    the query set's words that start no known word: edit-distance-1 variants looked up
    in the vocabulary (``corrections``, what the search uses) and trigram similarity
    with an edit distance of 1 at most (``near``)."""
    vocabulary = ref.vocabulary()
    words = list(dict.fromkeys(word for q in queries for word in parse_query(q.text).words
                               if vocabulary.needs_correction(word)))
    found: dict[str, int] = {"edit_distance_1": 0, "trigram_similarity": 0}
    timings: dict[str, list[int]] = {"edit_distance_1": [], "trigram_similarity": []}
    methods = {"edit_distance_1": vocabulary.corrections,
               "trigram_similarity": lambda word: vocabulary.near(word, bound=1)}
    for method in methods.values():  # warm-up (the trigram index is built on first use)
        method(words[0] if words else "doliprane")
    clock = time.perf_counter_ns
    for word in words:
        for name, method in methods.items():
            best = None
            for _ in range(ROUNDS):
                t0 = clock()
                candidates = method(word)
                elapsed = clock() - t0
                best = elapsed if best is None else min(best, elapsed)
            timings[name].append(best or 0)
            found[name] += bool(candidates)
    return {"words": len(words),
            **{name: {"median_us": round(statistics.median(samples) / 1000, 1)
                      if samples else None,
                      "max_us": round(max(samples) / 1000, 1) if samples else None,
                      "words_with_a_candidate": found[name]}
               for name, samples in timings.items()}}


def run(data_dir: Path, source: str, names: int, query_path: Path) -> dict:
    started = time.perf_counter()
    report = import_bdpm(data_dir, source)
    import_seconds = time.perf_counter() - started
    db = referential_path(data_dir)
    queries = drug_queries.load(query_path)
    groups = {"names": keystroke_prefixes(db, names), "shapes": typed([q.text for q in queries])}

    cached = open_referential(data_dir)
    uncached = Referential(db, cache_size=0)
    bare = sqlite3.connect(readonly_uri(db), uri=True)
    for prefixes in groups.values():  # warm the page cache, the statement and result caches
        for prefix in prefixes:
            cached.search(prefix, LIMIT)
            uncached.search(prefix, LIMIT)

    timings: dict[str, list[int]] = {"search": [], "search_uncached": [],
                                     "search_3plus": [], "bare_trigram": [],
                                     "search_shapes": [], "search_shapes_3plus": [],
                                     "bare_trigram_shapes": []}
    pairs: dict[str, list[tuple[int, int]]] = {}
    clock = time.perf_counter_ns
    for _ in range(ROUNDS):
        for group, prefixes in groups.items():
            shapes = group == "shapes"
            for prefix in prefixes:
                key = search_key(prefix)
                t0 = clock()
                cached.search(prefix, LIMIT)
                t1 = clock()
                uncached.search(prefix, LIMIT)
                t2 = clock()
                timings["search"].append(t1 - t0)
                timings["search_uncached"].append(t2 - t1)
                if shapes:
                    timings["search_shapes"].append(t1 - t0)
                if len(key) >= 3:
                    phrase = '"' + key + '"'
                    t3 = clock()
                    bare.execute(BARE_SQL, (phrase, LIMIT)).fetchall()
                    t4 = clock()
                    timings["search_3plus"].append(t1 - t0)
                    timings["bare_trigram"].append(t4 - t3)
                    if shapes:
                        timings["search_shapes_3plus"].append(t1 - t0)
                        timings["bare_trigram_shapes"].append(t4 - t3)
                    pairs.setdefault(prefix, []).append((t1 - t0, t4 - t3))
    bare.close()
    # Per prefix: median search time over median bare time, then their distribution.
    per_query = [statistics.median(s for s, _ in runs) / statistics.median(b for _, b in runs)
                 for runs in pairs.values()]
    per_query_cuts = statistics.quantiles(per_query, n=100, method="inclusive")

    stats = {name: percentiles(samples) for name, samples in timings.items()}
    ratio = _ratios(stats["search_3plus"], stats["bare_trigram"])
    ratio_shapes = _ratios(stats["search_shapes_3plus"], stats["bare_trigram_shapes"])
    right, wrong = drug_queries.score(lambda text: cached.search(text, LIMIT), queries)
    spelling = spelling_methods(cached, queries)
    info = cached.info()
    return {
        "import": {"seconds": round(import_seconds, 2), "unchanged": report.unchanged,
                   "malformed_rows": len(report.errors), "source": report.source},
        "database": {"path": str(db), "size_bytes": info.size_bytes,
                     "presentations": info.counts.get("presentation", 0)},
        "queries": {"names": names, "query_set": len(queries),
                    "prefixes": sum(len(p) for p in groups.values()),
                    "name_prefixes": len(groups["names"]),
                    "shape_prefixes": len(groups["shapes"]), "rounds": ROUNDS,
                    "short_prefixes_1_2_chars": sum(len(search_key(p)) < 3
                                                    for p in groups["names"] + groups["shapes"]),
                    "limit": LIMIT},
        "latency_ms": stats,
        "ratio_to_bare_trigram": ratio,
        "ratio_to_bare_trigram_shapes": ratio_shapes,
        "per_query_ratio_to_bare_trigram": {"p50": round(per_query_cuts[49], 2),
                                            "p95": round(per_query_cuts[94], 2),
                                            "max": round(max(per_query), 2)},
        "query_set": {"file": str(query_path), "queries": len(queries), "right_first": right,
                      "share": round(right / len(queries), 3), "wrong": wrong},
        "spelling": spelling,
        "goals": {
            "search_p95_le_2ms": stats["search"]["p95"] <= 2.0,
            "search_p95_le_3x_bare": ratio["p95"] <= 3.0,
            "shapes_p95_le_2ms": stats["search_shapes"]["p95"] <= 2.0,
            "shapes_p95_le_3x_bare": ratio_shapes["p95"] <= 3.0,
            "import_le_10s": report.unchanged or import_seconds <= 10.0,
            "query_set_ge_90pct": right >= 0.9 * len(queries),
        },
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, help="data directory (default: a temp dir)")
    parser.add_argument("--source", default=str(DEFAULT_SOURCE),
                        help="BDPM directory, zip or URL (default: the shared 2022 extract)")
    parser.add_argument("--names", type=int, default=40, help="names typed (default 40)")
    parser.add_argument("--queries", type=Path, default=drug_queries.QUERIES,
                        help="query set, CSV 'query,expected[,note]' (default: the tests')")
    args = parser.parse_args(argv)
    with bench_run(args.data_dir, "ordo-bench-search-") as (work, result):
        result.update(run(work, args.source, args.names, args.queries))
    return 0


if __name__ == "__main__":
    sys.exit(main())
