"""``make bench``: run every benchmark, keep the JSON, rewrite the README's table.

Each benchmark is a module of this package that prints JSON and measures its own baseline in
the same run. This runner only starts them, stores what they print in
``bench/results/latest.json`` and rewrites the table between ``<!-- bench:begin -->`` and
``<!-- bench:end -->`` in README.md, so the figures there are always the last measured ones.

    python -m bench [--sync-count N] [--no-readme]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results" / "latest.json"
README = ROOT / "README.md"
BEGIN, END = "<!-- bench:begin -->", "<!-- bench:end -->"


def run(module: str, *args: str) -> dict:
    print(f"bench: {module} {' '.join(args)}", file=sys.stderr)
    out = subprocess.run([sys.executable, "-m", module, *args], cwd=ROOT, check=True,
                         capture_output=True, text=True, timeout=1800)
    return json.loads(out.stdout)


def _ms(figures: dict) -> str:
    return ", ".join(f"{k} {figures[k]:.2f} ms" for k in ("p50", "p95", "p99"))


def table(results: dict) -> str:
    rows = ["| benchmark | command | figure | baseline in the same run | ratio |",
            "|---|---|---|---|---|"]
    s = results.get("search")
    if s:
        lat, q = s["latency_ms"], s["queries"]
        rows.append(
            f"| drug search, {q['prefixes']:,} keystroke prefixes of {q['names']} real names "
            f"× {q['rounds']} rounds | `python -m bench.search` | {_ms(lat['search'])} | "
            f"bare FTS5 trigram query: {_ms(lat['bare_trigram'])} | "
            f"p95 {s['ratio_to_bare_trigram']['p95']}× (goal ≤ 3×, p95 ≤ 2 ms) |")
        rows.append(
            f"| full BDPM import (real 2022 extract) | `python -m bench.search` | "
            f"{s['import']['seconds']} s, {s['database']['size_bytes'] / 1e6:.1f} MB, "
            f"{s['import']['malformed_rows']} malformed rows reported | — | goal ≤ 10 s |")
    y = results.get("sync")
    if y:
        n = y["count"]
        rows.append(
            f"| registry drain, {n:,} prescriptions, loopback | `python -m bench.sync "
            f"--count {n}` | engine one at a time {y['sequential']['push_s']} s "
            f"({y['sequential']['per_s']}/s); 4 in flight {y['concurrent']['push_s']} s; "
            f"peak {y['concurrent']['peak_rss_mb']} MB | bare httpx loop "
            f"{y['bare']['seconds']} s ({y['bare']['per_s']}/s) | "
            f"{y['sequential']['ratio']}× one at a time, {y['concurrent']['ratio']}× "
            f"4 in flight (goal ≥ 0.7×) |")
    f = results.get("sync_faults")
    if f:
        e = f["engine"]
        rows.append(
            f"| registry drain with 20 % 500/503, 5 % resets, 5 % lost answers | "
            f"`python -m bench.sync --count {f['count']} --faults` | {e['push_s']} s, "
            f"{e['held']:,} held by the registry, {e['acknowledged']:,} acknowledged, "
            f"{e['replayed']} replays | — | exactly once: {f['exactly_once']} |")
    load = os.getloadavg()
    rows.append("")
    rows.append(f"Machine: {os.cpu_count()} CPUs, load average at the end "
                f"{load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f}.")
    return "\n".join(rows)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sync-count", type=int, default=2000)
    parser.add_argument("--no-readme", action="store_true")
    args = parser.parse_args()
    results = {
        "search": run("bench.search"),
        "sync": run("bench.sync", "--count", str(args.sync_count)),
        "sync_faults": run("bench.sync", "--count", "1000", "--faults"),
    }
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    text = table(results)
    print(text)
    if not args.no_readme:
        readme = README.read_text("utf-8")
        head, rest = readme.split(BEGIN, 1)
        _, tail = rest.split(END, 1)
        README.write_text(f"{head}{BEGIN}\n{text}\n{END}{tail}", "utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
