"""Benchmark of ``ordo residents import`` on a large CSV: peak memory and time.

A CSV of ``--rows`` valid residents (default 1,000,000, about 60 MB) is imported by the real
``ordo residents import`` in its own process into a fresh data directory; its peak resident
set is the child's ``ru_maxrss`` (``wait4``). Anchor, same run: a bare ``python -c`` that
streams the same file through ``csv.reader`` and counts its rows. Goal: ≤ 100 MB whatever
the size of the file (the import streams it row by row, in one transaction).

    python -m bench.residents_import [--rows N]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.common import emit, machine

GOAL_MB = 100
BARE = ("import csv, sys\n"
        "with open(sys.argv[1], newline='', encoding='utf-8') as f:\n"
        "    print(sum(1 for _ in csv.reader(f, delimiter=';')))\n")


def write_csv(path: Path, rows: int) -> None:
    from appliance.domain.ids import nir_key

    with path.open("w", encoding="utf-8") as out:
        out.write("nir;nom;nom_usage;prenoms;date_naissance;sexe;chambre;opposition\n")
        for i in range(rows):
            order, commune, month = i % 999 + 1, (i // 999) % 900 + 100, 1 + (i // 899_100) % 12
            body = f"2{40 + i // 10_789_200:02d}{month:02d}75{commune:03d}{order:03d}"
            out.write(f"{body}{nir_key(body)};MARTIN{i % 97};;Jeanne Marie;15/01/1940;F;"
                      f"{i % 900 + 100};non\n")


# The child writes its own peak (VmHWM of its exec'ed image) when it exits: ``ru_maxrss``
# from ``wait4`` would also hold this process's own peak (it wrote the CSV), which a child
# inherits across ``exec``.
PEAK = """
import atexit, runpy, sys
out = sys.argv.pop(1)
def peak():
    with open("/proc/self/status") as status, open(out, "w") as written:
        written.write(next(line.split()[1] for line in status if line.startswith("VmHWM:")))
atexit.register(peak)
if sys.argv[1] == "ordo":
    sys.argv = sys.argv[1:]
    from appliance.cli import main
    main()
else:
    sys.argv = sys.argv[1:]
    runpy.run_path(sys.argv[0], run_name="__main__")
"""


def measured(argv: list[str], env: dict[str, str]) -> tuple[float, float, str]:
    """(seconds, peak MB, stdout) of ``ordo ARGS`` or of a script, in a child process."""
    with tempfile.NamedTemporaryFile(prefix="ordo-peak-") as peak:
        started = time.monotonic()
        done = subprocess.run([sys.executable, "-c", PEAK, peak.name, *argv], env=env,
                              capture_output=True, text=True, check=False)
        seconds = time.monotonic() - started
        if done.returncode != 0:
            raise SystemExit(f"{argv[0]} failed: {done.stdout}{done.stderr[-2000:]}")
        peak_kb = int(Path(peak.name).read_text())
    return seconds, peak_kb / 1024, done.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="ordo-bench-residents-") as tmp:
        csv_path = Path(tmp) / "residents.csv"
        write_csv(csv_path, args.rows)
        env = {k: v for k, v in os.environ.items() if not k.startswith("ORDO_")}
        env["ORDO_DATA_DIR"] = str(Path(tmp) / "data")
        bare = Path(tmp) / "bare.py"
        bare.write_text(BARE)
        bare_s, bare_mb, _ = measured([str(bare), str(csv_path)], env)
        seconds, peak_mb, out = measured(["ordo", "residents", "import", str(csv_path)], env)
        size = csv_path.stat().st_size
    emit({
        "rows": args.rows, "file_mb": round(size / 1e6, 1),
        "import": {"seconds": round(seconds, 1), "peak_mb": round(peak_mb, 1),
                   "rows_per_s": round(args.rows / seconds), "summary": out.strip()},
        "bare_csv_reader": {"seconds": round(bare_s, 1), "peak_mb": round(bare_mb, 1)},
        "ratio": round(peak_mb / bare_mb, 2),
        "goals": {"peak_le_100mb": peak_mb <= GOAL_MB},
        **machine(),
    })


if __name__ == "__main__":
    main()
