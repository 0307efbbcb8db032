"""``ordo export cda ID [FILE]``: the eP-MED-DM CDA document of a signed order (for the DMP,
for another software), with its PDF copy embedded."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from appliance.bootstrap import App
from appliance.cli import pass_app
from appliance.domain.prescription_id import validate_prescription_id
from appliance.store import audit


@click.group("export")
def export_group() -> None:
    """Export a signed order in an interchange format."""


@export_group.command("cda")
@click.argument("prescription_id", metavar="ID")
@click.argument("out", required=False, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--as", "actor", default="system", metavar="ID_NAT_PS",
              help="Who asks for the document (audit).")
@pass_app
def export_cda(app: App, prescription_id: str, out: Path | None, actor: str) -> None:
    """Write the CDA R2 eP-MED-DM document of a signed order to FILE (default: stdout)."""
    from sync.mssante import order_documents

    pid = validate_prescription_id(prescription_id)
    docs = order_documents(app.store, app.settings, pid)
    if docs.cda is None:
        raise click.ClickException(
            "cette ordonnance ne comporte que des actes : pas de document eP-MED-DM "
            "(médicaments ou dispositifs médicaux seulement)")
    with app.store.write() as db:
        audit.append(db, actor=actor, action="export.cda", subject=pid,
                     details={"bytes": len(docs.cda)})
    if out is None:
        sys.stdout.buffer.write(docs.cda)
        return
    out.write_bytes(docs.cda)
    click.echo(f"{out} ({len(docs.cda)} octets, CDA eP-MED-DM)", err=True)


COMMANDS = [export_group]
