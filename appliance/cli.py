"""The ``ordo`` command, and its one error boundary.

Global options: ``--data-dir`` (or ``ORDO_DATA_DIR``) and ``--config`` (or ``ORDO_CONFIG``).
The settings are loaded and checked once, before any sub-command runs; the composition root
(``appliance.bootstrap.App``) is each command's ``ctx.obj``.

Every ``OrdoError`` that reaches the ``ordo`` group, from the settings or from any command,
becomes one French line ``Erreur : …`` on stderr and the exit status of its class in
``EXIT_CODES`` (the README lists them); never a traceback. A command run with ``--json``
also gets the error on stdout as ``{"ok": false, "reason": "store_error", "message": …}``.
Adapters translate what can be expected (a missing, read-only or corrupt data directory, a
bad setting, no pcscd) into ``OrdoError``s. Commands that report a negative result
(``doctor``, ``config check``, ``audit verify``, ``id check``, ``qr verify``…) exit 1 on
their own.
"""

from __future__ import annotations

import getpass
import importlib
import json
import sys
from typing import Any, NoReturn

import click

from appliance import __version__
from appliance.bootstrap import bootstrap
from appliance.config import SYSTEM_DATA_DIR, load_settings
from appliance.errors import (
    AlertsRefused,
    CardError,
    DraftInvalid,
    Forbidden,
    OrdoError,
    ValidationError,
)

EXIT_INVALID, EXIT_REFUSED, EXIT_ERROR, EXIT_ALERTS = 1, 3, 4, 5
# The exit status of an error by its class (the nearest class of its MRO wins). 0 is
# success and 2 a usage error (click's own: unknown option, missing argument).
EXIT_CODES: dict[type[OrdoError], int] = {
    ValidationError: EXIT_INVALID,      # bad input: a field, a value, an identifier
    DraftInvalid: EXIT_INVALID,         # a JSON draft, every problem with its path
    CardError: EXIT_REFUSED,            # card, reader, PIN, login refused
    Forbidden: EXIT_REFUSED,            # the role or the identity does not allow it
    AlertsRefused: EXIT_ALERTS,         # prescribing checks: alerts not acknowledged or
                                        # overridden, or that cannot be overridden
    OrdoError: EXIT_ERROR,              # any other error (store, printer, registry, config)
}


def exit_code(exc: OrdoError) -> int:
    """The exit status of ``exc`` from ``EXIT_CODES``."""
    for cls in type(exc).__mro__:
        if cls in EXIT_CODES:
            return EXIT_CODES[cls]
    return EXIT_ERROR


def error_lines(exc: OrdoError) -> list[str]:
    """What the user reads: one line, in French (a draft adds one line per problem)."""
    if isinstance(exc, DraftInvalid):
        return ["Erreur : brouillon invalide",
                *(f"  {problem.path} : {problem.message}" for problem in exc.problems)]
    if isinstance(exc, AlertsRefused):
        return [f"Erreur : {exc}", *(f"  {obstacle}" for obstacle in exc.obstacles)]
    return [f"Erreur : {exc}"]


def error_kind(exc: OrdoError) -> str:
    """The error's class in snake case (``StoreError`` → ``store_error``): the ``reason``
    of a JSON error when nothing more precise is known."""
    name = type(exc).__name__
    return "".join(f"_{c.lower()}" if c.isupper() and i else c.lower()
                   for i, c in enumerate(name))


def fail(exc: OrdoError, *, as_json: bool = False) -> NoReturn:
    """Report ``exc`` on stderr (and, with ``as_json``, as ``{"ok": false, "reason",
    "message"}`` on stdout) and end the command with its exit status."""
    for line in error_lines(exc):
        click.echo(line, err=True)
    if as_json:
        click.echo(json.dumps({"ok": False, "reason": error_kind(exc), "message": str(exc)},
                              ensure_ascii=False, indent=2))
    raise click.exceptions.Exit(exit_code(exc))


def _json_asked(tokens: list[str]) -> bool:
    """Whether the command line (after the global options) asks for ``--json``."""
    if "--" in tokens:
        tokens = tokens[:tokens.index("--")]
    return "--json" in tokens


def setup_logging(level: str) -> None:
    """One ``key=value`` line per event on stderr, NIR-shaped numbers redacted
    (see ``appliance.logs``)."""
    from appliance import logs

    logs.setup_logging(level, sys.stderr)


def operator() -> str:
    """Who runs an admin command, for the audit chain."""
    return f"cli:{getpass.getuser()}"


def read_pin(pin_stdin: bool) -> str:
    """The PIN, from the first line of stdin or typed (masked)."""
    if pin_stdin:
        return sys.stdin.readline().strip()
    return str(click.prompt("Code PIN", hide_input=True))


# Each sub-command and the module of ``appliance.commands`` that defines it (in its
# ``COMMANDS``). A module is imported only when one of its commands runs or help lists them:
# the kiosk starts without loading the sync service, the printer tools or the PKI.
COMMAND_MODULES = {
    "config": "config_cmd",
    "audit": "audit_cmd",
    "residents": "residents",
    "id": "ids",
    "card": "card", "pki": "card",
    "drugs": "drugs", "devices": "drugs",
    "qr": "printing", "reprint": "printing", "print": "printing", "printer": "printing",
    "printer-emulator": "printing",
    "install": "ops", "doctor": "ops", "backup": "ops", "restore": "ops", "retention": "ops",
    "sync": "sync_cmd", "registry-sim": "sync_cmd",
    "kiosk": "kiosk", "prescribe": "prescribe", "drafts": "prescribe",
    "practitioners": "prescribe",
    "demo": "demo",
    "export": "export", "mss": "mss",
}


class OrdoGroup(click.Group):
    """The ``ordo`` group: sub-commands imported on first use (``COMMAND_MODULES``), and
    the error boundary (``fail``) around the group and every sub-command."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(super().list_commands(ctx)) | set(COMMAND_MODULES))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in COMMAND_MODULES:
            module = importlib.import_module(f"appliance.commands.{COMMAND_MODULES[cmd_name]}")
            for command in module.COMMANDS:
                self.add_command(command)
        return super().get_command(ctx, cmd_name)

    def invoke(self, ctx: click.Context) -> Any:
        # the sub-command's words, before click consumes them: an error of a command run
        # with --json is also written as JSON on stdout
        tokens = [*getattr(ctx, "_protected_args", ()), *ctx.args]
        try:
            return super().invoke(ctx)
        except OrdoError as exc:
            fail(exc, as_json=_json_asked(tokens))
        except click.ClickException as exc:  # click's own: an unknown option, a bad value
            click.echo(f"Erreur : {exc.format_message()}", err=True)
            usage = getattr(exc, "ctx", None)
            if usage is not None:
                click.echo(f"Aide : {usage.command_path} --help", err=True)
            raise click.exceptions.Exit(exc.exit_code) from exc


@click.group(cls=OrdoGroup, context_settings={"help_option_names": ["-h", "--help"]},
             invoke_without_command=True)
@click.option("--data-dir", type=click.Path(file_okay=False), default=None,
              help="Data directory (default: ORDO_DATA_DIR, else the XDG data dir, "
                   "or /var/lib/ordo for the appliance's user).")
@click.option("--config", "config_file", type=click.Path(dir_okay=False), default=None,
              help="TOML configuration file (default: ORDO_CONFIG, else /etc/ordo/ordo.toml "
                   "if present, else the embedded defaults).")
@click.version_option(__version__, prog_name="ordo")
@click.pass_context
def main(ctx: click.Context, data_dir: str | None, config_file: str | None) -> None:
    """Ordo: e-prescriptions for nursing homes, offline first.

    Without a sub-command: the kiosk on the installed appliance (data in /var/lib/ordo),
    this help elsewhere.
    """
    settings = load_settings(config_file=config_file, data_dir=data_dir)
    setup_logging(settings.logging.level)
    app = bootstrap(settings)
    ctx.obj = app
    ctx.call_on_close(app.close)
    if ctx.invoked_subcommand is None:
        if settings.data_dir != SYSTEM_DATA_DIR:
            click.echo(ctx.get_help())
            ctx.exit(0)
        kiosk = main.get_command(ctx, "kiosk")
        assert kiosk is not None  # registered with the other commands
        ctx.invoke(kiosk)
