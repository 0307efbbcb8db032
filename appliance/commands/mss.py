"""``ordo mss fetch|send|received|attach|release``: the establishment's MSSanté mailbox by
hand (the sync service does the same on its own: sending every few seconds, fetching every
few minutes)."""

from __future__ import annotations

import json
from dataclasses import asdict

import click

from appliance.bootstrap import App
from appliance.cli import operator
from appliance.errors import StoreError
from appliance.services import mailbox


@click.group("mss")
def mss_group() -> None:
    """MSSanté: orders sent to the pharmacy, prescriptions received from other prescribers."""


@mss_group.command("fetch")
@click.option("--json", "as_json", is_flag=True, help="JSON output.")
@click.pass_obj
def fetch(app: App, as_json: bool) -> None:
    """Read the mailbox now and import the prescriptions it carries."""
    report = app.mail_fetch()()
    if as_json:
        click.echo(json.dumps(asdict(report), ensure_ascii=False))
        return
    click.echo(f"Ordonnances reçues : {report.imported} ({report.matched} rattachée(s) à un "
               f"résident, {report.unmatched} à rattacher) ; {report.duplicates} déjà reçue(s) ;"
               f" {report.ignored} autre(s) message(s) ignoré(s).")
    for reason in report.refused:
        click.echo(f"Refusé : {reason}")


@mss_group.command("send")
@click.option("--json", "as_json", is_flag=True, help="JSON output.")
@click.pass_obj
def send(app: App, as_json: bool) -> None:
    """Send the orders waiting for the partner pharmacy now."""
    report = app.mail_sender().drain()
    if as_json:
        click.echo(json.dumps(asdict(report), ensure_ascii=False))
        return
    click.echo(f"Envoyés : {report.sent} ; nouvel essai prévu : {report.retried} ; en "
               f"quarantaine : {report.quarantined} ; en attente : {report.remaining}.")
    if report.last_error:
        click.echo(f"Dernière erreur : {report.last_error}")


@mss_group.command("received")
@click.option("--unmatched", is_flag=True, help="Only those not attached to a resident.")
@click.option("--resident", "ins", metavar="INS", help="Only this resident's.")
@click.option("--json", "as_json", is_flag=True, help="JSON output.")
@click.pass_obj
def received(app: App, unmatched: bool, ins: str | None, as_json: bool) -> None:
    """List the prescriptions received by MSSanté."""
    items = app.uow.views.external_prescriptions(
        ins.strip() if ins else None, unmatched=unmatched)
    if as_json:
        click.echo(json.dumps([x.as_dict() for x in items], ensure_ascii=False))
        return
    if not items:
        click.echo("Aucune ordonnance reçue.")
    for x in items:
        where = "à rattacher" if x.resident_ins is None else f"rattachée ({x.matched_by})"
        click.echo(f"n° {x.id} reçue par MSSanté le {x.received_at:%d/%m/%Y %H:%M} de "
                   f"{x.author} : {len(x.lines)} ligne(s), {where}")


@mss_group.command("attach")
@click.argument("external_id", metavar="N", type=int)
@click.argument("ins")
@click.option("--as", "actor", default=None, metavar="ID_NAT_PS",
              help="Who attaches it (audit; default: the system user).")
@click.pass_obj
def attach(app: App, external_id: int, ins: str, actor: str | None) -> None:
    """Attach a received prescription (number N, see ``received``) to a resident (INS)."""
    mailbox.attach(app.uow, external_id, ins.strip(), actor=actor or operator())
    click.echo(f"Ordonnance reçue n° {external_id} rattachée.")


@mss_group.command("release")
@click.argument("seq", type=int)
@click.pass_obj
def release(app: App, seq: int) -> None:
    """Put a quarantined message (by its number, see ``ordo sync status``) back in the queue."""
    if mailbox.release(app.uow, seq, actor=operator()) is None:
        raise StoreError(f"aucun message MSSanté en quarantaine n° {seq}")
    click.echo(f"Message MSSanté n° {seq} remis dans la file.")


COMMANDS = [mss_group]
