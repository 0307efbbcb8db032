"""The ``ordo`` group loads its sub-commands lazily from ``COMMAND_MODULES``: the map must name
every command of every module, and the module that really defines it."""

from __future__ import annotations

import importlib
import pkgutil

from click.testing import CliRunner

import appliance.commands
from appliance.cli import COMMAND_MODULES, main


def _defined() -> dict[str, str]:
    found: dict[str, str] = {}
    for info in pkgutil.iter_modules(appliance.commands.__path__):
        module = importlib.import_module(f"appliance.commands.{info.name}")
        for command in getattr(module, "COMMANDS", []):
            assert command.name not in found, f"{command.name} defined twice"
            found[command.name] = info.name
    return found


def test_every_command_is_mapped_to_the_module_that_defines_it():
    assert _defined() == COMMAND_MODULES


def test_help_lists_every_command_and_a_lazy_command_runs(tmp_path):
    runner = CliRunner()
    listed = runner.invoke(main, ["--data-dir", str(tmp_path), "--help"])
    assert listed.exit_code == 0, listed.output
    for name in COMMAND_MODULES:
        assert f"\n  {name} " in listed.output
    checked = runner.invoke(main, ["--data-dir", str(tmp_path), "id", "new"])
    assert checked.exit_code == 0, checked.output
    assert len(checked.output.strip().replace("-", "")) >= 24


def test_an_unknown_command_is_refused():
    result = CliRunner().invoke(main, ["no-such-command"])
    assert result.exit_code == 2
    assert "No such command" in result.output
