"""Benchmark of peak memory: the kiosk and the sync service, against bare processes, same
run.

Run from the repository root::

    python -m bench.memory [--count 1000] [--keep DIR]

Peak memory is a process's own high-water mark of resident memory (``VmHWM`` in
``/proc/PID/status``), read while it is still running.

- **kiosk**: a child process builds the kiosk exactly as ``ordo kiosk`` does
  (``build_context``: store, trust store, the full BDPM referential, the card monitor on the
  real pcscd, the print worker towards a printer emulator; ``make_app``) and runs it headless
  at 80x24 (Textual's pilot). It waits for the lock screen, inserts the virtual physician card
  in vpcd **slot 1** (the monitor is narrowed to that reader, so that a test's card in slot 0
  is left alone), types the PIN, opens a new prescription for a resident and types ten drug
  names letter by letter (every keystroke searches the full referential, as a physician
  does). ``VmHWM`` at the lock screen, after login and at the end.
  Baseline: a bare Textual app (``Static``, ``Input``, ``OptionList``) run the same way,
  receiving the same keystrokes.
- **sync**: ``ordo sync run`` (the service systemd runs: APScheduler, the engine, httpx)
  drains ``--count`` signed prescriptions into the reference registry on loopback
  (``ordo registry-sim --plain-http``); ``VmHWM`` once the registry holds them all.
  Baseline: a bare ``python -c "import httpx"``.

Goals: kiosk ≤ 150 MB, sync service ≤ 80 MB. Prints JSON only.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.common import (
    BENCH_SLOT,
    CLI,
    DEFAULT_BDPM,
    PIN,
    ROOT,
    bench_run,
    child_env,
    prepare_data_dir,
    vm_hwm_kb,
)

GOAL_KIOSK_MB, GOAL_SYNC_MB = 150.0, 80.0
DRUGS = ("doliprane", "kardegic", "levothyrox", "amoxicilline", "paracetamol", "seresta",
         "lasilix", "inexium", "movicol", "eliquis")
SIZE = (80, 24)


def _mb(kb: int) -> float:
    return round(kb / 1024, 1)


async def _until(pilot: Any, condition: Callable[[], bool], what: str,
                 timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if condition():
                return
        except Exception:  # a widget not mounted yet
            pass
        if time.monotonic() > deadline:
            raise SystemExit(f"memory: timed out waiting for {what}")
        await pilot.pause(0.02)


class OneReader:
    """The real card monitor seen through one reader (``Watcher`` of the kiosk context)."""

    def __init__(self, monitor: Any, reader: str) -> None:
        self.monitor, self.reader = monitor, reader

    def subscribe(self, callback: Callable[[Any], None]) -> None:
        def mine(event: Any) -> None:
            if event.reader in ("", self.reader):
                callback(event)

        self.monitor.subscribe(mine)

    def start(self) -> None:
        self.monitor.start()

    def stop(self) -> None:
        self.monitor.stop()

    def cards(self) -> dict[str, bytes]:
        return {k: v for k, v in self.monitor.cards().items() if k == self.reader}

    def readers(self) -> list[str]:
        return [r for r in self.monitor.readers() if r == self.reader]

    @property
    def service_up(self) -> bool:
        return bool(self.monitor.service_up)


# -- children -----------------------------------------------------------------------------------
def kiosk_child(data_dir: Path) -> dict:
    from appliance.bootstrap import bootstrap
    from appliance.commands.kiosk import build_context
    from appliance.config import load_settings
    from appliance.tui.app import make_app
    from drivers.card import virtual

    settings = load_settings(config_file=data_dir / "ordo.toml", data_dir=data_dir, environ={})
    app = bootstrap(settings)
    ctx, parts = build_context(app, console=False)
    reader = virtual.vpcd_reader(BENCH_SLOT)
    from drivers.card.monitor import ReaderMonitor

    ctx.watcher = OneReader(ReaderMonitor(), reader)  # the warm-up keeps a watcher it is given
    tui = make_app(ctx)
    marks: dict[str, int] = {}
    keys = 0

    def screen() -> str:
        return type(tui.screen).__name__

    async def scenario() -> None:
        nonlocal keys
        async with tui.run_test(size=SIZE) as pilot:
            await _until(pilot, lambda: screen() == "LockScreen", "the lock screen")
            await pilot.pause(0.5)
            marks["lock_screen"] = vm_hwm_kb()
            virtual.insert(data_dir, "physician", BENCH_SLOT, PIN)
            await _until(pilot, lambda: screen() == "PinScreen", "the PIN screen")
            await pilot.press(*PIN, "enter")
            await _until(pilot, lambda: screen() == "HomeScreen", "the home screen")
            await _until(pilot, lambda: tui.screen.query_one("#residents").option_count > 0,
                         "the residents")
            marks["logged_in"] = vm_hwm_kb()
            await pilot.press("f2")
            await _until(pilot, lambda: screen() == "EditorScreen", "the editor")
            await pilot.press("f2")
            editor = tui.screen
            for name in DRUGS:
                for length in range(1, len(name) + 1):
                    await pilot.press(name[length - 1])
                    keys += 1
                    typed = name[:length]
                    await _until(pilot, lambda typed=typed: editor.results_for == typed,
                                 f"the results for {typed!r}")
                if not editor.results:
                    raise SystemExit(f"memory: no drug found for {name!r}")
                editor.query_one("#search").value = ""
                await pilot.pause(0.05)
            marks["after_search"] = vm_hwm_kb()
            tui.lock_session()
            await _until(pilot, lambda: screen() == "LockScreen", "the lock after logout")

    try:
        asyncio.run(scenario())
    finally:
        parts.close()
        app.close()
        virtual.remove(data_dir, BENCH_SLOT)
    return {"peak_mb": _mb(vm_hwm_kb()), "keystrokes": keys, "drugs": len(DRUGS),
            **{f"{k}_mb": _mb(v) for k, v in marks.items()}}


def bare_child() -> dict:
    from textual.app import App, ComposeResult
    from textual.widgets import Input, OptionList, Static

    class Bare(App[None]):
        def compose(self) -> ComposeResult:
            yield Static("Ordonnance")
            yield Input(id="search")
            yield OptionList(id="results")

    app = Bare()
    keys = 0

    async def scenario() -> None:
        nonlocal keys
        async with app.run_test(size=SIZE) as pilot:
            await pilot.pause(0.5)
            for name in DRUGS:
                for char in name:
                    await pilot.press(char)
                    keys += 1
                app.query_one("#search", Input).value = ""
                await pilot.pause(0.05)

    asyncio.run(scenario())
    return {"peak_mb": _mb(vm_hwm_kb()), "keystrokes": keys}


# -- the run ------------------------------------------------------------------------------------
def _child(*args: str) -> dict:
    done = subprocess.run([sys.executable, "-m", "bench.memory", *args], cwd=ROOT,
                          capture_output=True, text=True, env=child_env(), timeout=600,
                          check=False)
    if done.returncode:
        raise SystemExit(f"memory child {args[0]} failed: {done.stderr[-3000:]}")
    return json.loads(done.stdout)


def measure_kiosk(work: Path) -> dict:
    from drivers.printer.emulator import PrinterEmulator

    emulator = PrinterEmulator(decode_qr=False).start()
    try:
        data_dir = work / "kiosk"
        _, _, import_s = prepare_data_dir(data_dir, printer_uri=emulator.uri,
                                          bdpm=DEFAULT_BDPM if DEFAULT_BDPM.is_dir() else None)
        kiosk = _child("--kiosk-child", str(data_dir))
        bare = _child("--bare-child")
    finally:
        from drivers.card import virtual

        virtual.remove(work / "kiosk", BENCH_SLOT)       # if the child died holding it
        emulator.stop()
    return {"bdpm_import_s": import_s, "kiosk": kiosk, "bare_textual": bare,
            "ratio": round(kiosk["peak_mb"] / bare["peak_mb"], 2)}


def measure_sync(work: Path, count: int) -> dict:
    from bench.sync import prepare, start_registry

    started = time.monotonic()
    data, pki = prepare(work / "sync", count)
    prepare_s = time.monotonic() - started
    registry, url, registry_db = start_registry(work / "sync", "memory", pki, [])
    config = work / "sync" / "empty.toml"
    config.write_text("")
    env = child_env(ORDO_DATA_DIR=str(data), ORDO_CONFIG=str(config), ORDO_REGISTRY_URL=url,
                    ORDO_SYNC_INTERVAL_S="1")
    service = None
    try:
        started = time.monotonic()
        service = subprocess.Popen([*CLI, "sync", "run"], cwd=ROOT, env=env,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = started + 300
        held = 0
        while time.monotonic() < deadline and service.poll() is None:
            held = _held(registry_db)
            if held >= count:
                break
            time.sleep(0.2)
        drained_s = time.monotonic() - started
        time.sleep(1.0)                       # the acknowledgements of the last batch
        peak = vm_hwm_kb(service.pid)
        if held < count:
            raise SystemExit(f"memory: the sync service drained {held} of {count}")
    finally:
        if service is not None and service.poll() is None:
            service.terminate()
            try:
                service.wait(timeout=20)
            except subprocess.TimeoutExpired:
                service.kill()
                service.wait()
        registry.terminate()
        registry.wait(timeout=10)
    bare = json.loads(subprocess.run(
        [sys.executable, "-c", "import json, httpx; from bench.common import vm_hwm_kb; "
         "print(json.dumps({'peak_kb': vm_hwm_kb()}))"],
        cwd=ROOT, capture_output=True, text=True, check=True, env=child_env()).stdout)
    return {"count": count, "prepare_s": round(prepare_s, 1),
            "spawn_to_drained_s": round(drained_s, 1), "held_by_registry": held,
            "service_peak_mb": _mb(peak), "bare_httpx_peak_mb": _mb(bare["peak_kb"]),
            "ratio": round(peak / bare["peak_kb"], 2)}


def _held(db: Path) -> int:
    try:
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
    except sqlite3.Error:
        return 0
    try:
        return conn.execute("SELECT count(*) FROM prescriptions").fetchone()[0]
    except sqlite3.Error:
        return 0
    finally:
        conn.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=1000,
                        help="prescriptions the sync service drains (1000)")
    parser.add_argument("--keep", type=Path, help="work in this directory and keep it")
    parser.add_argument("--kiosk-child", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--bare-child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.kiosk_child:
        print(json.dumps(kiosk_child(args.kiosk_child)))
        return 0
    if args.bare_child:
        print(json.dumps(bare_child()))
        return 0
    with bench_run(args.keep, "ordo-bench-memory-", pcscd=True) as (work, result):
        result["kiosk"] = measure_kiosk(work)
        result["sync"] = measure_sync(work, args.count)
        result["goals"] = {
            "kiosk_max_mb": GOAL_KIOSK_MB, "sync_max_mb": GOAL_SYNC_MB,
            "kiosk_met": result["kiosk"]["kiosk"]["peak_mb"] <= GOAL_KIOSK_MB,
            "sync_met": result["sync"]["service_peak_mb"] <= GOAL_SYNC_MB}
    return 0


if __name__ == "__main__":
    sys.exit(main())
