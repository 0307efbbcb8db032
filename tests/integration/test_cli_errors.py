"""Every ``ordo`` command meets the expected failures (a missing, read-only or corrupt data
directory, a bad setting, no pcscd) with one French line ``Erreur : …`` and an exit status
of the table in ``appliance.cli`` (or succeeds): never a traceback.

The commands are enumerated from the CLI itself (every leaf of the ``ordo`` group); each
scenario runs them all in one child process, in-process through click's runner (a child: the
PC/SC client reads ``PCSCLITE_CSOCK_NAME`` once per process). Commands that serve until they
are stopped are run only where they fail at start; ``kiosk`` shows its start problems on the
lock screen instead (the last test here).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import click
import pytest

from appliance.cli import EXIT_CODES, main

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
PID = "01KAX5JDE0000G40R40M30EH"

# What each command needs to run at all ({data}: the scenario's data directory, {work}: a
# directory beside it for inputs). Files named here are written by ``_inputs``.
ARGS: dict[str, list[str]] = {
    "backup": ["{data}/backups"],
    "card insert": ["--profile", "physician", "--slot", "1"],
    "card login": ["--pin-stdin", "--slot", "1"],
    "card remove": ["--slot", "1"],
    "card info": ["--slot", "1"],
    "demo": ["--dir", "{data}/demo", "--headless"],
    "devices import": ["{work}/lpp.csv"],
    "devices search": ["fauteuil"],
    "drafts import": ["{work}/draft.json"],
    "drugs import": ["{work}/no-bdpm"],
    "drugs search": ["doliprane"],
    "id check": [PID],
    "install": ["--root", "{data}/root"],
    "pki init": ["{data}/pki-new"],
    "practitioners add": ["899700000013", "--nom", "DUVAL", "--prenom", "Claire"],
    "practitioners set-am": ["899700000013", "751234567"],
    "prescribe": ["{work}/draft.json", "--pin-stdin", "--slot", "1"],
    "print pdf": [PID, "{data}/order.pdf"],
    "printer emulator": ["--port", "0", "--exit-after", "0", "--out", "{data}/tickets"],
    "printer-emulator": ["--port", "0", "--exit-after", "0", "--out", "{data}/tickets"],
    "qr verify": ["ORD1:NOTAPAYLOAD"],
    "registry-sim": ["--db", "{data}/ordo.sqlite", "--plain-http", "--port", "0"],
    "registry-sim dispense": [PID, "--db", "{data}/ordo.sqlite"],
    "registry-sim list": ["--db", "{data}/ordo.sqlite"],
    "reprint": [PID, "--pin-stdin", "--slot", "1"],
    "residents import": ["{work}/residents.csv"],
    "restore": ["{work}/not-a-backup.ordobak"],
    "sync dispensations": [PID],
    "sync release": ["1"],
}
# They serve until stopped (or, for the demo, build a whole appliance): only the scenarios
# where they fail at start run them.
SERVE = {"kiosk": set(), "sync run": {"missing", "read-only", "corrupt", "bad-config"},
         "registry-sim": {"missing", "read-only", "corrupt", "bad-config"},
         "demo": {"missing", "read-only", "bad-config"}}

CHILD = r"""
import json, sys, traceback
import click
from click.testing import CliRunner
from appliance.cli import main

spec = json.loads(sys.argv[1])
out = []
for name, args in spec["commands"]:
    result = CliRunner().invoke(main, ["--data-dir", spec["data"], *name.split(), *args],
                                input="1234\n")
    tb = None
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        tb = "".join(traceback.format_exception(result.exception))
    out.append({"command": name, "code": result.exit_code, "stdout": result.stdout,
                "stderr": result.stderr, "traceback": tb})
print(json.dumps(out))
"""


def leaf_commands() -> list[str]:
    """Every command a user can run, from the CLI itself."""
    ctx = click.Context(main)
    found: list[str] = []

    def walk(group: click.Group, prefix: list[str]) -> None:
        for name in group.list_commands(ctx):
            command = group.get_command(ctx, name)
            assert command is not None
            path = [*prefix, name]
            if isinstance(command, click.Group):
                if command.invoke_without_command:
                    found.append(" ".join(path))
                walk(command, path)
            else:
                found.append(" ".join(path))

    walk(main, [])
    return found


def _inputs(work: Path) -> None:
    work.mkdir(parents=True, exist_ok=True)
    (work / "lpp.csv").write_text("CODE_LPP;L_CODE_LPP\n1234567;FAUTEUIL\n", "utf-8")
    (work / "residents.csv").write_text(
        "nir;nom;prenoms;date_naissance;sexe;chambre\n"
        "240017512300130;MARTIN;Jeanne;1940-01-15;F;101\n", "utf-8")
    (work / "draft.json").write_text(json.dumps({
        "prescriber": {"idNat_PS": "899700000013"}, "resident": {"nir": "240017512300130"},
        "lines": [{"type": "act", "text": "Kinésithérapie"}]}), "utf-8")
    (work / "not-a-backup.ordobak").write_bytes(b"not a backup")
    from appliance.ops.backup import generate_key_text

    (work / "backup.key").write_text(generate_key_text(), "ascii")
    (work / "backup.key").chmod(0o600)


def _scenario(name: str, base: Path) -> tuple[str, dict[str, str]]:
    """The data directory and the environment of a scenario (a backup key, so that
    ``backup`` and ``restore`` reach the database)."""
    from appliance.store import open_store

    env = {k: v for k, v in os.environ.items() if not k.startswith("ORDO_")}
    env["ORDO_CONFIG"] = str(base / "empty.toml")
    env["ORDO_SECURITY_BACKUP_KEY"] = str(base.parent / "work" / "backup.key")
    (base / "empty.toml").write_text("")
    data = base / "data"
    if name == "missing":
        return "/proc/nope", env
    data.mkdir()
    if name == "corrupt":
        (data / "ordo.sqlite").write_bytes(b"this is not a SQLite database" * 100)
    elif name == "read-only":
        open_store(data / "ordo.sqlite").close()
        for path in (data / "ordo.sqlite", data):
            if subprocess.run(["chattr", "+i", str(path)], capture_output=True).returncode:
                pytest.skip("this file system has no immutable files (chattr +i)")
    elif name == "bad-config":
        env["ORDO_PRINTER_MEDIA"] = "A4"
    elif name == "no-pcscd":
        env["PCSCLITE_CSOCK_NAME"] = str(base / "no-pcscd.comm")  # nobody listens there
    return str(data), env


def _writable_again(base: Path) -> None:
    for path in (base / "data" / "ordo.sqlite", base / "data"):
        if path.exists():
            subprocess.run(["chattr", "-i", str(path)], capture_output=True)


@pytest.mark.parametrize("scenario", ["missing", "read-only", "corrupt", "bad-config",
                                      "no-pcscd"])
def test_every_command_fails_with_one_french_line_never_a_traceback(tmp_path, pcscd,
                                                                   scenario):
    from drivers.card import virtual

    commands = leaf_commands()
    assert len(commands) >= 45 and "residents list" in commands and "kiosk" in commands
    base = tmp_path / scenario
    base.mkdir()
    _inputs(tmp_path / "work")
    data, env = _scenario(scenario, base)
    run = [(name, [a.format(data=data, work=tmp_path / "work") for a in ARGS.get(name, [])])
           for name in commands if scenario in SERVE.get(name, {scenario})]
    try:
        done = subprocess.run([sys.executable, "-c", CHILD, json.dumps(
            {"data": data, "commands": run})], cwd=ROOT, env=env, capture_output=True,
            text=True, timeout=300)
    finally:
        _writable_again(base)
        if data != "/proc/nope":
            virtual.remove(Path(data), 1)
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads(done.stdout)
    assert [r["command"] for r in results] == [name for name, _ in run]
    codes = {0, 1, 2, *EXIT_CODES.values()}
    failed = []
    for r in results:
        problem = None
        if r["traceback"] or "Traceback" in r["stderr"] + r["stdout"]:
            problem = r["traceback"] or r["stderr"]
        elif r["code"] not in codes:
            problem = f"exit status {r['code']}"
        elif r["code"] not in (0, 1) and not any(
                line.startswith("Erreur : ") for line in r["stderr"].splitlines()):
            problem = f"exit {r['code']} without an 'Erreur :' line: {r['stderr'][-500:]}"
        if problem:
            failed.append(f"{r['command']}: {problem}")
    assert not failed, "\n".join(failed)
    if scenario == "bad-config":  # everything stops at the settings, with the key named
        assert all(r["code"] == 4 and r["stderr"].startswith(
            "Erreur : réglage invalide printer.media = 'A4' : attendu 58mm, 80mm ou label62")
            for r in results)
    if scenario in ("missing", "corrupt"):
        listed = next(r for r in results if r["command"] == "residents list")
        assert listed["code"] == 4 and listed["stderr"].startswith("Erreur : ")
    if scenario == "no-pcscd":
        card = next(r for r in results if r["command"] == "card status")
        assert card["code"] == 3 and "pcscd" in card["stderr"]


def test_the_exit_status_of_an_error_is_the_one_of_its_nearest_class():
    from appliance.cli import exit_code
    from appliance.errors import (
        AmRequired,
        ConfigError,
        DraftInvalid,
        InvalidIdentifier,
        OrdoError,
        PinBlocked,
        RegistryThrottled,
        StoreError,
    )
    from appliance.services.auth import AuthRefused

    assert exit_code(InvalidIdentifier("nir", "1", "a NIR")) == 1
    assert exit_code(DraftInvalid([])) == 1
    assert exit_code(AuthRefused("wrong_pin", tries_left=2)) == 3
    assert exit_code(PinBlocked()) == 3 and exit_code(AmRequired("8")) == 3
    for other in (ConfigError("k", 1, "x"), StoreError("x"), RegistryThrottled("x"),
                  OrdoError("x")):
        assert exit_code(other) == 4


def test_a_kiosk_on_a_broken_data_directory_says_so_on_its_lock_screen(tmp_path):
    import asyncio

    from appliance.bootstrap import bootstrap
    from appliance.commands.kiosk import build_context
    from appliance.config import load_settings
    from appliance.tui.app import make_app

    data = tmp_path / "data"
    data.mkdir()
    (data / "ordo.sqlite").write_bytes(b"this is not a SQLite database" * 100)
    app_root = bootstrap(load_settings(data_dir=data, environ={}))
    ctx, parts = build_context(app_root, console=False, watcher=False, printer=False)
    app = make_app(ctx)

    async def scenario() -> None:
        async with app.run_test(size=(80, 24)) as pilot:
            for _ in range(300):
                reason = str(app.screen.query_one("#lock-reason").render())
                if "Démarrage incomplet" in reason:
                    break
                await pilot.pause(0.02)
            assert "Démarrage incomplet" in reason and "ordo.sqlite" in reason
            assert type(app.screen).__name__ == "LockScreen"

    try:
        asyncio.run(scenario())
    finally:
        parts.close()
        app_root.close()
