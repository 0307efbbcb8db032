"""Benchmark of the drug search: as-you-type latency against a bare FTS5 trigram query.

Run from the repository root::

    python -m bench.search [--data-dir DIR] [--source BDPM_DIR_ZIP_OR_URL] [--names 40]

It imports the BDPM (default: the real extract in ``../shared/data/bdpm``) into
``DIR`` (default: a fresh temporary directory, so the import is a full one; an existing
referential with the same data makes it a no-op, reported as such), then types real
specialty names from the referential letter by letter (up to 30 characters each) and
times ``Referential.search(prefix, 20)`` for every prefix, in ``ROUNDS`` rounds after
a warm-up round: ``search`` is the referential as the kiosk uses it (result objects
cached), ``search_uncached`` builds every result object again. In the same run and
interleaved, it times the bare FTS5 trigram query on the same database,
``SELECT rowid FROM drug_doc_tri WHERE drug_doc_tri MATCH '"<folded prefix>"' LIMIT 20``,
for the prefixes of three characters or more (trigrams need three): ``ratio_to_bare``
divides the percentiles of ``search`` by those of the bare query over those prefixes,
``per_query_ratio`` is the distribution of the per-prefix ratios of medians. Prints
JSON only.

Goals (issue 4): p95 ≤ 2 ms, p95 ≤ 3 × the bare query's p95, import ≤ 10 s.
"""

from __future__ import annotations

import argparse
import os
import random
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

from appliance.services.referential import import_bdpm, open_referential
from appliance.store.referential.build import readonly_uri, referential_path
from appliance.store.referential.search import Referential
from appliance.store.referential.text import search_key
from bench.common import emit

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
    return [name[:length] for name in picked
            for length in range(1, min(len(name), MAX_TYPED) + 1)]


def run(data_dir: Path, source: str, names: int) -> dict:
    started = time.perf_counter()
    report = import_bdpm(data_dir, source)
    import_seconds = time.perf_counter() - started
    db = referential_path(data_dir)
    prefixes = keystroke_prefixes(db, names)

    cached = open_referential(data_dir)
    uncached = Referential(db, cache_size=0)
    bare = sqlite3.connect(readonly_uri(db), uri=True)
    for prefix in prefixes:  # warm the page cache, the statement and result caches
        cached.search(prefix, LIMIT)
        uncached.search(prefix, LIMIT)

    timings: dict[str, list[int]] = {"search": [], "search_uncached": [],
                                     "search_3plus": [], "bare_trigram": []}
    pairs: dict[str, list[tuple[int, int]]] = {}
    clock = time.perf_counter_ns
    for _ in range(ROUNDS):
        for prefix in prefixes:
            key = search_key(prefix)
            t0 = clock()
            cached.search(prefix, LIMIT)
            t1 = clock()
            uncached.search(prefix, LIMIT)
            t2 = clock()
            timings["search"].append(t1 - t0)
            timings["search_uncached"].append(t2 - t1)
            if len(key) >= 3:
                phrase = '"' + key + '"'
                t3 = clock()
                bare.execute(BARE_SQL, (phrase, LIMIT)).fetchall()
                t4 = clock()
                timings["search_3plus"].append(t1 - t0)
                timings["bare_trigram"].append(t4 - t3)
                pairs.setdefault(prefix, []).append((t1 - t0, t4 - t3))
    bare.close()
    # Per prefix: median search time over median bare time, then their distribution.
    per_query = [statistics.median(s for s, _ in runs) / statistics.median(b for _, b in runs)
                 for runs in pairs.values()]
    per_query_cuts = statistics.quantiles(per_query, n=100, method="inclusive")

    stats = {name: percentiles(samples) for name, samples in timings.items()}
    ratio = {cut: round(stats["search_3plus"][cut] / stats["bare_trigram"][cut], 2)
             for cut in ("p50", "p95", "p99")}
    info = cached.info()
    return {
        "machine": {"cpus": os.cpu_count(), "load_average_1_5_15": os.getloadavg()},
        "import": {"seconds": round(import_seconds, 2), "unchanged": report.unchanged,
                   "malformed_rows": len(report.errors), "source": report.source},
        "database": {"path": str(db), "size_bytes": info.size_bytes,
                     "presentations": info.counts.get("presentation", 0)},
        "queries": {"names": names, "prefixes": len(prefixes), "rounds": ROUNDS,
                    "short_prefixes_1_2_chars": sum(len(search_key(p)) < 3 for p in prefixes),
                    "limit": LIMIT},
        "latency_ms": stats,
        "ratio_to_bare_trigram": ratio,
        "per_query_ratio_to_bare_trigram": {"p50": round(per_query_cuts[49], 2),
                                            "p95": round(per_query_cuts[94], 2),
                                            "max": round(max(per_query), 2)},
        "goals": {
            "search_p95_le_2ms": stats["search"]["p95"] <= 2.0,
            "search_p95_le_3x_bare": ratio["p95"] <= 3.0,
            "import_le_10s": report.unchanged or import_seconds <= 10.0,
        },
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, help="data directory (default: a temp dir)")
    parser.add_argument("--source", default=str(DEFAULT_SOURCE),
                        help="BDPM directory, zip or URL (default: the shared 2022 extract)")
    parser.add_argument("--names", type=int, default=40, help="names typed (default 40)")
    args = parser.parse_args(argv)
    if args.data_dir is not None:
        result = run(args.data_dir, args.source, args.names)
    else:
        with tempfile.TemporaryDirectory(prefix="ordo-bench-") as tmp:
            result = run(Path(tmp), args.source, args.names)
    emit(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
