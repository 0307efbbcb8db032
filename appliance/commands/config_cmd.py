"""``ordo config show`` and ``ordo config check``."""

from __future__ import annotations

import json

import click

from appliance.bootstrap import App


@click.group("config")
def config() -> None:
    """Show or check the configuration."""


@config.command("show")
@click.option("--json", "as_json", is_flag=True, help="JSON output.")
@click.pass_obj
def show(app: App, as_json: bool) -> None:
    """Print the effective configuration (secrets masked)."""
    data = app.settings.as_dict(mask_secrets=True)
    if as_json:
        data["paths"] = {"data_dir": str(app.settings.data_dir),
                         "config_file": str(app.settings.config_file or "")}
        click.echo(json.dumps(data, indent=2, ensure_ascii=False))
        return
    click.echo(f"# data_dir = {app.settings.data_dir}")
    click.echo(f"# config_file = {app.settings.config_file or '(embedded defaults)'}")
    for section, values in data.items():
        click.echo(f"\n[{section}]")
        for key, value in values.items():
            click.echo(f"{key} = {json.dumps(value, ensure_ascii=False)}")


@config.command("check")
@click.pass_obj
def check(app: App) -> None:
    """Check the configuration; the values were already checked at start."""
    click.echo(f"configuration OK ({app.settings.config_file or 'embedded defaults'})")


COMMANDS = [config]
