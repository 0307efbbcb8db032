"""``ordo config show`` (secrets masked) and ``ordo config check`` (see
``appliance.ops.configcheck``)."""

from __future__ import annotations

import json

import click

from appliance.bootstrap import App
from appliance.ops.configcheck import ERROR, check_settings


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
@click.option("--json", "as_json", is_flag=True, help="JSON output.")
@click.pass_obj
def check(app: App, as_json: bool) -> None:
    """Check the configuration against this machine; exit 1 on any error.

    Beyond the formats checked at start: the FINESS and address of the establishment,
    the registry over https, and every file named (client certificate and key, CA file,
    trust roots, CRLs, backup key) present, readable by the ordo user and valid.
    """
    findings = check_settings(app.settings)
    source = app.settings.config_file or "embedded defaults"
    errors = [f for f in findings if f.level == ERROR]
    if as_json:
        click.echo(json.dumps({"ok": not errors, "config_file": str(source), "findings": [
            {"level": f.level, "key": f.error.key, "value": f.error.value,
             "expected": f.error.expected} for f in findings]},
            indent=2, ensure_ascii=False, default=str))
    else:
        for finding in findings:
            click.echo(str(finding), err=finding.level == ERROR)
        warnings = len(findings) - len(errors)
        if errors:
            click.echo(f"configuration NOT OK ({source}): {len(errors)} error(s), "
                       f"{warnings} warning(s)")
        else:
            click.echo(f"configuration OK ({source})"
                       + (f", {warnings} warning(s)" if warnings else ""))
    if errors:
        raise SystemExit(1)


COMMANDS = [config]
