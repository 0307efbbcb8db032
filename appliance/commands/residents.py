"""``ordo residents import FILE.csv`` and ``ordo residents list``."""

from __future__ import annotations

import json
from pathlib import Path

import click

from appliance.bootstrap import App
from appliance.cli import operator
from appliance.services import residents as service


@click.group("residents")
def residents() -> None:
    """Residents of the establishment."""


@residents.command("import")
@click.argument("csv_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.pass_obj
def import_cmd(app: App, csv_file: Path) -> None:
    """Import or update residents from a CSV export (upsert by INS).

    Columns: nir;nom;nom_usage;prenoms;date_naissance;sexe;chambre;opposition
    """
    report = service.import_residents(app.uow, csv_file, actor=operator())
    for error in report.errors:
        click.echo(f"{csv_file.name}: {error}", err=True)
    if report.omitted_errors:
        click.echo(f"{csv_file.name}: ... and {report.omitted_errors} more rejected rows",
                   err=True)
    click.echo(report.summary())
    if report.errors and not (report.created or report.updated):
        raise SystemExit(1)


@residents.command("list")
@click.option("--json", "as_json", is_flag=True, help="JSON output.")
@click.option("--all", "include_inactive", is_flag=True, help="Include inactive residents.")
@click.argument("query", required=False, default="")
@click.pass_obj
def list_cmd(app: App, as_json: bool, include_inactive: bool, query: str) -> None:
    """List residents (optionally matching QUERY in names or room)."""
    found = service.search(app.uow, query, active_only=not include_inactive)
    if as_json:
        click.echo(json.dumps([{
            "ins": r.ins.value, "ins_oid": r.ins.oid, "nom": r.birth_name,
            "nom_usage": r.used_name, "prenoms": r.first_names,
            "date_naissance": r.birth_date.isoformat(), "sexe": r.sex.value,
            "chambre": r.room, "opposition": r.objection, "actif": r.active,
        } for r in found], ensure_ascii=False, indent=2))
        return
    for r in found:
        click.echo(f"{r.room:>6}  {r.display_name}  ({r.birth_date:%d/%m/%Y})")
    click.echo(f"{len(found)} resident(s)")


COMMANDS = [residents]
