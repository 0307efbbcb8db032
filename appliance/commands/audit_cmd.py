"""``ordo audit verify``, ``ordo audit show`` and ``ordo audit restore-guards``."""

from __future__ import annotations

import json

import click

from appliance.bootstrap import App
from appliance.cli import operator
from appliance.errors import AuditChainBroken, ConfigError
from appliance.services import sync


@click.group("audit")
def audit_group() -> None:
    """The tamper-evident audit chain."""


@audit_group.command("verify")
@click.option("--against-registry", is_flag=True,
              help="Also compare the chain with the heads anchored at the registry.")
@click.pass_obj
def verify(app: App, against_registry: bool) -> None:
    """Verify the whole chain and its guards; names the first broken entry.

    Also checks the append-only triggers and says where the chain starts when the
    retention policy cut its oldest entries (and which entry, when, recorded that cut).
    With --against-registry, fetches the chain heads the sync service anchored at the
    registry and checks that each still matches: a chain rewritten end to end after an
    anchor fails here even when every local hash verifies.
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
    if against_registry:
        _against_registry(app)
    if problems:
        raise SystemExit(1)


def _against_registry(app: App) -> None:
    finess = app.settings.establishment.finess
    if not finess:
        raise ConfigError("establishment.finess", finess,
                          "le FINESS de l'établissement (les ancrages sont rangés par FINESS)")
    found = sync.check_anchors(app.uow, app.registry.audit_anchors(finess))
    if found.problems:
        for problem in found.problems:
            click.echo(f"ANCRAGE ROMPU : {problem}")
        click.echo("La chaîne d'audit de ce fichier a été réécrite après un ancrage : "
                   "la traiter comme un incident de sécurité.")
        raise SystemExit(1)
    if found.last is None:
        click.echo("Registre : aucun ancrage pour ce FINESS (la synchronisation l'envoie à "
                   "chaque cycle) : rien à comparer.")
        return
    count, _ = app.uow.audit.head()
    click.echo(f"Registre : {found.checked} ancrage(s) conforme(s), le dernier à l'entrée "
               f"{found.last.seq} reçu le {found.last.received_at[:19]} (reçu "
               f"{found.last.receipt_id})" + (f", {found.skipped} avant la coupe de rétention"
                                              if found.skipped else "")
               + f" ; {count - found.last.seq} entrée(s) depuis, pas encore ancrée(s).")


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
