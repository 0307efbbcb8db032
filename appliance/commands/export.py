"""``ordo export cda ID [FILE]``: the eP-MED-DM CDA document of a signed order (for the DMP,
for another software), with its PDF copy embedded."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from appliance.bootstrap import App
from appliance.domain.prescription_id import validate_prescription_id
from appliance.errors import StoreError
from appliance.services import mailbox


@click.group("export")
def export_group() -> None:
    """Export a signed order in an interchange format."""


@export_group.command("cda")
@click.argument("prescription_id", metavar="ID")
@click.argument("out", required=False, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--as", "actor", default="system", metavar="ID_NAT_PS",
              help="Who asks for the document (audit).")
@click.pass_obj
def export_cda(app: App, prescription_id: str, out: Path | None, actor: str) -> None:
    """Write the CDA R2 eP-MED-DM document of a signed order to FILE (default: stdout)."""
    pid = validate_prescription_id(prescription_id)
    document = mailbox.export_cda(app.uow, app.order_mailer(), pid, actor=actor)
    if out is None:
        sys.stdout.buffer.write(document)
        return
    try:
        out.write_bytes(document)
    except OSError as exc:
        raise StoreError(f"impossible d'écrire {out} : {exc.strerror or exc}") from exc
    click.echo(f"{out} ({len(document)} octets, CDA eP-MED-DM)", err=True)


COMMANDS = [export_group]
