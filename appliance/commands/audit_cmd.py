"""``ordo audit verify``, ``ordo audit show`` and ``ordo audit restore-guards``."""

from __future__ import annotations

import json

import click

from appliance.bootstrap import App
from appliance.cli import operator
from appliance.errors import AuditChainBroken


@click.group("audit")
def audit_group() -> None:
    """The tamper-evident audit chain."""


@audit_group.command("verify")
@click.pass_obj
def verify(app: App) -> None:
    """Verify the whole chain and its guards; names the first broken entry.

    Also checks the append-only triggers and says where the chain starts when the
    retention policy cut its oldest entries (and which entry, when, recorded that cut).
    Exit code 1 when anything is wrong.
    """
    log = app.uow.audit
    try:
        count = log.verify()
    except AuditChainBroken as exc:
        click.echo(f"BROKEN at entry {exc.seq}: {exc.reason}")
        raise SystemExit(1) from exc
    cut = log.anchor()
    if cut is not None and not cut.recorded:
        click.echo(f"BROKEN: the chain starts at entry {cut.seq} but no retention run "
                   "recorded that cut (its oldest entries were deleted)")
        raise SystemExit(1)
    problems = log.guard_problems()
    click.echo(f"OK: {count} entries" + ("" if problems else
                                         ", append-only triggers intact"))
    if cut is not None:
        click.echo(f"  starts at entry {cut.seq}: entries 1 to {cut.seq - 1} were removed "
                   f"by the retention run of {(cut.recorded_at or '')[:10]} (entry "
                   f"{cut.recorded_by}, entries older than {(cut.cutoff or '?')[:10]}); "
                   "only the chain head kept off the box can confirm it")
    if problems:
        for problem in problems:
            click.echo(f"GUARD BROKEN: {problem}")
        click.echo("Find out who changed them, then put them back with "
                   "`ordo audit restore-guards` (recorded in the chain).")
        raise SystemExit(1)


@audit_group.command("restore-guards")
@click.pass_obj
def restore_guards(app: App) -> None:
    """Recreate the append-only triggers of the audit table, recording it in the chain.

    Never done on its own: a missing or altered trigger is reported by `ordo audit
    verify` and `ordo doctor` until this command is run.
    """
    with app.uow as uow:
        done = uow.audit.restore_guards(actor=operator())
        uow.commit()
    if not done:
        click.echo("Append-only triggers intact: nothing to restore.")
        return
    click.echo("Append-only triggers restored: created "
               + (", ".join(done["created"]) or "none") + "; removed "
               + (", ".join(done["removed"]) or "none") + " (recorded in the audit chain).")


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
