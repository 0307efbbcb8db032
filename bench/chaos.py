"""Crash consistency and registry chaos, runnable by hand; prints JSON only.

Run from the repository root::

    python -m bench.chaos crash [--trials 200] [--seed N] [--media 58mm] [--keep DIR]
    python -m bench.chaos registry [--count 5000] [--seed N] [--keep DIR]

``crash`` kills prescribe + print + sync workers with SIGKILL at seeded random moments and
checks the invariants after each kill and after a final drain (``tests.harness.crash``);
``registry`` drains ``--count`` prescriptions into a registry that fails on purpose
(``tests.harness.chaos``). Both make a test PKI and start, in this process, the printer
emulator (``crash``) and the reference registry on 127.0.0.1 (plain HTTP). The report's
``problems`` list is empty when every invariant held; the exit status is 1 otherwise. The
same code runs in ``tests/integration/test_crash_consistency.py`` and ``test_chaos.py``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

from drivers.card.pki import init_pki
from drivers.printer.emulator import PrinterEmulator
from drivers.printer.layout import media_for
from sync.registry_sim import RegistrySim, SimConfig, TrustStore
from tests.harness import chaos
from tests.harness.crash import CrashHarness


def _registry(work: Path, pki) -> RegistrySim:
    return RegistrySim(SimConfig(db_path=work / "registry.sqlite", plain_http=True),
                       trust=TrustStore.load(pki.trust_roots, pki.crls)).start()


def crash(work: Path, trials: int, seed: int, media: str) -> dict:
    pki = init_pki(work / "pki")
    emulator = PrinterEmulator(width_dots=media_for(media).width_dots, decode_qr=False).start()
    registry = _registry(work, pki)
    try:
        return CrashHarness(work, pki, emulator, registry, seed=seed, media=media).run(trials)
    finally:
        emulator.stop()
        registry.stop()


def registry_chaos(work: Path, count: int, seed: int) -> dict:
    pki = init_pki(work / "pki")
    registry = _registry(work, pki)
    try:
        return chaos.run(work, pki, registry, count=count, seed=seed)
    finally:
        registry.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.chaos", description=__doc__.split(
        "\n", 1)[0])
    sub = parser.add_subparsers(dest="what", required=True)
    one = sub.add_parser("crash", help="seeded SIGKILL trials")
    one.add_argument("--trials", type=int, default=200)
    one.add_argument("--media", default="58mm", choices=("58mm", "80mm", "label62"))
    two = sub.add_parser("registry", help="a backlog drained into a failing registry")
    two.add_argument("--count", type=int, default=5000)
    for p in (one, two):
        p.add_argument("--seed", type=int, default=1)
        p.add_argument("--keep", type=Path, help="work here and keep the files")
    args = parser.parse_args(argv)
    work = args.keep or Path(tempfile.mkdtemp(prefix="ordo-chaos-"))
    work.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    try:
        if args.what == "crash":
            report = crash(work, args.trials, args.seed, args.media)
        else:
            report = registry_chaos(work, args.count, args.seed)
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)
    report["command_seconds"] = round(time.monotonic() - started, 1)
    json.dump(report, sys.stdout, indent=1)
    print()
    return 1 if report["problems"] else 0


if __name__ == "__main__":
    sys.exit(main())
