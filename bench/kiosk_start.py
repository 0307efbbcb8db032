"""Benchmark of the kiosk's cold start to the lock screen, against a bare Textual app.

Run from the repository root::

    python -m bench.kiosk_start [--runs 20] [--keep DIR]

It prepares a data directory as after installation (test PKI and ``ordo.toml`` trusting it,
demo residents and physician, the full BDPM referential imported, a printer emulator on
loopback), then starts, alternately and ``--runs`` times each after one warm-up each:

- **kiosk**: ``ordo --data-dir DIR --config DIR/ordo.toml kiosk``, the command systemd runs:
  settings, the composition root and the Textual app. What the lock screen does not need
  (the store's migrations, the trust store, the printer driver, the status line) is loaded
  on threads after the first frame (see ``appliance.commands.kiosk``);
- **bare**: a Textual app with one ``Static`` (the lock screen's prompt) and a ``Footer``.

Both are fresh ``python -c`` processes on a fresh 80x24 pseudo-terminal (Textual's own Linux
driver, ``TERM=xterm-256color``, as on the appliance's terminal), with the same environment
and the bytecode compiled beforehand, as ``make env`` does on the appliance.
The time is from spawn until the terminal has received the first frame showing the prompt
("Insérez votre carte CPS"), read on the terminal's master side. For the kiosk, the run goes
on until the status line shows "Imprimante prête": the warm-up is done, the printer driver
loaded and the printer asked for its state (``ready_ms``, reported, without a goal). Then the
process gets SIGTERM. The peak resident set at the first frame is reported too.

The kiosk's card monitor starts as usual but its PC/SC client is pointed at a socket where
no pcscd listens (``PCSCLITE_CSOCK_NAME``): pcscd is shared with the tests running beside
the benchmarks, and a kiosk that saw their card in slot 0 would open it to show its holder.
It then shows "Service carte arrêté" and keeps retrying in its thread, as it does when pcscd
is down; the card path is measured by ``bench.sign_print`` and ``bench.memory``.

Goal: kiosk median ≤ 1.5 × the bare app's median. Prints JSON only.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
from pathlib import Path

from bench.common import (
    CLI,
    DEFAULT_BDPM,
    ROOT,
    bench_run,
    child_env,
    percentiles_ms,
    prepare_data_dir,
    run_on_pty,
)

GOAL_RATIO = 1.5
PROMPT = "Insérez votre carte CPS"
BARE_APP = f"""
from textual.app import App
from textual.widgets import Footer, Static


class Bare(App):
    def compose(self):
        yield Static({PROMPT!r})
        yield Footer(compact=True)


Bare().run()
"""
READY = "Imprimante prête"


def measure(data_dir: Path, runs: int) -> dict:
    env = child_env(TERM="xterm-256color", LANG="C.UTF-8", COLUMNS="80", LINES="24",
                    PCSCLITE_CSOCK_NAME=str(data_dir / "no-pcscd.comm"))
    kiosk = [*CLI, "--data-dir", str(data_dir), "--config", str(data_dir / "ordo.toml"),
             "kiosk"]
    bare = [sys.executable, "-c", BARE_APP]
    samples: dict[str, list[float]] = {"kiosk": [], "bare": []}
    ready: list[float] = []
    peaks: dict[str, list[int]] = {"kiosk": [], "bare": []}
    failures: list[str] = []
    for index in range(runs + 1):                      # run 0 is the warm-up of each
        order = [("kiosk", kiosk, READY), ("bare", bare, None)]
        if index % 2:
            order.reverse()
        for name, argv, until in order:
            result = run_on_pty(argv, [PROMPT], env=env, ready=until)
            if result.seconds is None:
                failures.append(f"{name}: no first frame (exit {result.returncode}): "
                                f"{result.tail[-200:]!r}")
                continue
            if index == 0:
                continue
            samples[name].append(result.seconds)
            peaks[name].append(result.peak_rss_kb)
            if until is not None:
                if result.ready_seconds is None:
                    failures.append(f"{name}: {until!r} never shown: {result.tail[-200:]!r}")
                else:
                    ready.append(result.ready_seconds)
    if not samples["kiosk"] or not samples["bare"]:
        raise SystemExit(f"kiosk_start: no measurement: {failures}")
    kiosk_ms, bare_ms = percentiles_ms(samples["kiosk"]), percentiles_ms(samples["bare"])
    ratio = {cut: round(kiosk_ms[cut] / bare_ms[cut], 2) for cut in ("p50", "p95")}
    return {
        "runs": runs,
        "kiosk_ms": kiosk_ms,
        "bare_ms": bare_ms,
        "ratio": ratio,
        "kiosk_ready_ms": percentiles_ms(ready) if ready else None,
        "peak_rss_at_first_frame_mb": {
            name: round(statistics.median(values) / 1024, 1) for name, values in peaks.items()},
        "failures": failures,
        "goals": {"ratio_max": GOAL_RATIO, "met": ratio["p50"] <= GOAL_RATIO},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20, help="measured runs of each (20)")
    parser.add_argument("--bdpm", type=Path, default=DEFAULT_BDPM,
                        help="BDPM directory (default: the shared 2022 extract)")
    parser.add_argument("--keep", type=Path, help="work in this directory and keep it")
    args = parser.parse_args(argv)
    # As ``make env`` does: the project's bytecode (the locked packages' is compiled by uv).
    subprocess.run([sys.executable, "-m", "compileall", "-q", "appliance", "drivers", "sync"],
                   cwd=ROOT, check=True, capture_output=True)
    from drivers.printer.emulator import PrinterEmulator

    emulator = PrinterEmulator(decode_qr=False).start()
    try:
        with bench_run(args.keep, "ordo-bench-kiosk-") as (work, result):
            data_dir = work / "data"
            _, _, result["bdpm_import_s"] = prepare_data_dir(
                data_dir, printer_uri=emulator.uri,
                bdpm=args.bdpm if args.bdpm.is_dir() else None)
            result.update(measure(data_dir, args.runs))
    finally:
        emulator.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
