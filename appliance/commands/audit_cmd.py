"""``ordo audit verify`` and ``ordo audit show``."""

from __future__ import annotations

import json

import click

from appliance.bootstrap import App
from appliance.errors import AuditChainBroken


@click.group("audit")
def audit_group() -> None:
    """The tamper-evident audit chain."""


@audit_group.command("verify")
@click.pass_obj
def verify(app: App) -> None:
    """Verify the whole chain; names the first broken entry."""
    try:
        count = app.uow.audit.verify()
    except AuditChainBroken as exc:
        click.echo(f"BROKEN at entry {exc.seq}: {exc.reason}")
        raise SystemExit(1) from exc
    click.echo(f"OK: {count} entries")


@audit_group.command("show")
@click.option("--since", type=int, default=0, help="Only entries after this sequence number.")
@click.option("--json", "as_json", is_flag=True, help="JSON output.")
@click.pass_obj
def show(app: App, since: int, as_json: bool) -> None:
    """Print the audit entries."""
    for entry in app.uow.audit.entries(since):
        if as_json:
            click.echo(json.dumps(entry.__dict__, ensure_ascii=False))
        else:
            click.echo(f"{entry.seq:>6} {entry.at} {entry.actor} {entry.action} {entry.subject} "
                       f"{json.dumps(entry.details, ensure_ascii=False)}")


COMMANDS = [audit_group]
