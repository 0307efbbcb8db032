"""``ordo mss fetch|send|received``: the establishment's MSSanté mailbox by hand (the sync
service does the same on its own: sending every few seconds, fetching every few minutes)."""

from __future__ import annotations

import json

import click

from appliance.bootstrap import App
from appliance.cli import pass_app
from appliance.store import external_prescriptions as ext


@click.group("mss")
def mss_group() -> None:
    """MSSanté: orders sent to the pharmacy, prescriptions received from other prescribers."""


@mss_group.command("fetch")
@click.option("--json", "as_json", is_flag=True, help="JSON output.")
@pass_app
def fetch(app: App, as_json: bool) -> None:
    """Read the mailbox now and import the prescriptions it carries."""
    from sync.mailbox import fetch_inbox
    from sync.mssante import ImapMailbox

    report = fetch_inbox(app.store, ImapMailbox(app.settings.mssante))
    if as_json:
        click.echo(json.dumps(report.__dict__, ensure_ascii=False))
        return
    click.echo(f"Ordonnances reçues : {report.imported} ({report.matched} rattachée(s) à un "
               f"résident, {report.unmatched} à rattacher) ; {report.duplicates} déjà reçue(s) ;"
               f" {report.ignored} autre(s) message(s) ignoré(s).")
    for reason in report.refused:
        click.echo(f"Refusé : {reason}")


@mss_group.command("send")
@click.option("--json", "as_json", is_flag=True, help="JSON output.")
@pass_app
def send(app: App, as_json: bool) -> None:
    """Send the orders waiting for the partner pharmacy now."""
    from sync.mailbox import MailSender

    report = MailSender(app.store, app.settings).drain()
    if as_json:
        click.echo(json.dumps(report.__dict__, ensure_ascii=False))
        return
    click.echo(f"Envoyés : {report.sent} ; nouvel essai prévu : {report.retried} ; en "
               f"quarantaine : {report.quarantined} ; en attente : {report.remaining}.")
    if report.last_error:
        click.echo(f"Dernière erreur : {report.last_error}")


@mss_group.command("received")
@click.option("--unmatched", is_flag=True, help="Only those not attached to a resident.")
@click.option("--resident", "ins", metavar="INS", help="Only this resident's.")
@click.option("--json", "as_json", is_flag=True, help="JSON output.")
@pass_app
def received(app: App, unmatched: bool, ins: str | None, as_json: bool) -> None:
    """List the prescriptions received by MSSanté."""
    if ins:
        items = ext.of_resident(app.store, ins)
    else:
        items = ext.unmatched(app.store) if unmatched else ext.every(app.store)
    if as_json:
        click.echo(json.dumps([{
            "id": x.id, "resident_ins": x.resident_ins, "matched_by": x.matched_by,
            "author": x.author, "sender": x.sender,
            "issued_at": x.issued_at.isoformat() if x.issued_at else None,
            "received_at": x.received_at.isoformat(), "has_cda": x.has_cda,
            "has_pdf": x.has_pdf, "lines": [line.__dict__ for line in x.lines]}
            for x in items], ensure_ascii=False))
        return
    for x in items:
        where = "à rattacher" if x.resident_ins is None else f"rattachée ({x.matched_by})"
        click.echo(f"n° {x.id} reçue par MSSanté le {x.received_at:%d/%m/%Y %H:%M} de "
                   f"{x.author} : {len(x.lines)} ligne(s), {where}")


@mss_group.command("attach")
@click.argument("ext_id", type=int)
@click.argument("ins")
@click.option("--as", "actor", required=True, metavar="ID_NAT_PS", help="Who attaches it.")
@pass_app
def attach(app: App, ext_id: int, ins: str, actor: str) -> None:
    """Attach a received prescription to a resident (by INS)."""
    from appliance.store.repositories import get_resident

    if get_resident(app.store, ins) is None:
        raise click.ClickException(f"résident inconnu : {ins}")
    with app.store.write() as db:
        ext.attach(db, ext_id, ins, actor=actor)
    click.echo(f"Ordonnance reçue n° {ext_id} rattachée.")


@mss_group.command("release")
@click.argument("seq", type=int)
@pass_app
def release(app: App, seq: int) -> None:
    """Put a quarantined message (by its number, see ``ordo sync status``) back in the queue."""
    from appliance.store import mail_outbox

    with app.store.write() as db:
        done = mail_outbox.release(db, seq, actor="cli")
    if not done:
        raise click.ClickException(f"aucun message MSSanté en quarantaine n° {seq}")
    click.echo(f"Message MSSanté n° {seq} remis dans la file.")


COMMANDS = [mss_group]
