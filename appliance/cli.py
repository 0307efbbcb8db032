"""The ``ordo`` command. Errors become clean messages here, never tracebacks.

Global options: ``--data-dir`` (or ``ORDO_DATA_DIR``) and ``--config`` (or ``ORDO_CONFIG``).
The settings are loaded and checked once, before any sub-command runs.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable
from functools import wraps
from typing import Any

import click

from appliance import __version__
from appliance.bootstrap import App, bootstrap
from appliance.config import SYSTEM_DATA_DIR, load_settings
from appliance.errors import OrdoError


def setup_logging(level: str) -> None:
    """One ``key=value`` line per event on stderr, NIR-shaped numbers redacted
    (see ``appliance.logs``)."""
    from appliance import logs

    logs.setup_logging(level, sys.stderr)


def pass_app(func: Callable[..., Any]) -> Callable[..., Any]:
    """Give the command the ``App`` and turn ``OrdoError`` into a clean message."""

    @click.pass_context
    @wraps(func)
    def wrapper(ctx: click.Context, *args: Any, **kwargs: Any) -> Any:
        app: App = ctx.find_object(App)
        try:
            return ctx.invoke(func, app, *args, **kwargs)
        except OrdoError as exc:
            raise click.ClickException(str(exc)) from exc

    return wrapper


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


class LazyGroup(click.Group):
    """A group whose sub-commands are imported on first use (see ``COMMAND_MODULES``)."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(super().list_commands(ctx)) | set(COMMAND_MODULES))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in COMMAND_MODULES:
            module = importlib.import_module(f"appliance.commands.{COMMAND_MODULES[cmd_name]}")
            for command in module.COMMANDS:
                self.add_command(command)
        return super().get_command(ctx, cmd_name)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]},
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
    try:
        settings = load_settings(config_file=config_file, data_dir=data_dir)
    except OrdoError as exc:
        raise click.ClickException(str(exc)) from exc
    setup_logging(settings.logging.level)
    app = bootstrap(settings)
    ctx.obj = app
    ctx.call_on_close(app.close)
    if ctx.invoked_subcommand is None:
        if settings.data_dir != SYSTEM_DATA_DIR:
            click.echo(ctx.get_help())
            ctx.exit(0)
        ctx.invoke(main.get_command(ctx, "kiosk"))
