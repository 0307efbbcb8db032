"""``ordo drugs import|search|info`` and ``ordo devices import|search``.

The drug referential comes from the ANSM's public drug database (BDPM), the device
list from the Assurance Maladie's LPP open data; both live in
``<data_dir>/referential.sqlite``. Messages are in French: the search is what
physicians see.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from appliance.bootstrap import App
from appliance.services import referential as service
from appliance.services.drug_lines import reimbursement_text
from appliance.store.referential import ImportReport, Presentation

MAX_ERRORS_SHOWN = 50
TABLE_NAMES = {"specialty": "spécialités", "presentation": "présentations",
               "composition": "compositions", "generic_group": "groupes génériques",
               "condition": "conditions de prescription", "device": "dispositifs (LPP)"}


def _echo_json(data: Any) -> None:
    click.echo(json.dumps(data, ensure_ascii=False, indent=2, default=str))


def _euros(cents: int | None) -> str:
    if cents is None:
        return "prix non fixé"
    return f"{cents // 100:,}".replace(",", "\u202f") + f",{cents % 100:02d} €"


def _print_report(report: ImportReport, as_json: bool, what: str) -> None:
    if as_json:
        _echo_json(dataclasses.asdict(report))
        return
    if report.unchanged:
        click.echo(f"{what} : données identiques au dernier import (référentiel du "
                   f"{report.date}, importé le {report.imported_at}) ; rien à faire.")
        return
    click.echo(f"{what} importée depuis {report.source} : référentiel du {report.date}.")
    for f in report.files:
        click.echo(f"  {f.name} : {f.rows} lignes, {f.imported} importées, "
                   f"{f.malformed} rejetées")
    for table, change in report.changes.items():
        click.echo(f"  {TABLE_NAMES.get(table, table)} : {report.counts.get(table, 0)} "
                   f"(+{change.added} ajoutées, −{change.removed} retirées, "
                   f"{change.changed} modifiées)")
    for error in report.errors[:MAX_ERRORS_SHOWN]:
        click.echo(f"ligne rejetée : {error}", err=True)
    if len(report.errors) > MAX_ERRORS_SHOWN:
        click.echo(f"… et {len(report.errors) - MAX_ERRORS_SHOWN} autres lignes rejetées",
                   err=True)


def _presentation_line(p: Presentation) -> str:
    details = " · ".join(part for part in (p.box, p.dosage, reimbursement_text(p),
                                           _euros(p.price_cents)) if part)
    flag = "" if p.marketed else "  [non commercialisé]"
    return f"{p.cip13}  {p.label}  ({details}){flag}"


def _search_command(group: click.Group, run: Callable[[App, str, int], list],
                    line: Callable[[Any], str], help_text: str,
                    empty: Callable[[App, str], str] | None = None) -> None:
    @group.command("search", help=help_text)
    @click.argument("text", nargs=-1, required=True)
    @click.option("--json", "as_json", is_flag=True, help="Sortie JSON.")
    @click.option("--limit", "-n", type=click.IntRange(1, 500), default=20, show_default=True,
                  help="Nombre maximal de résultats.")
    @click.pass_obj
    def search(app: App, text: tuple[str, ...], as_json: bool, limit: int) -> None:
        results = run(app, " ".join(text), limit)
        if as_json:
            _echo_json([dataclasses.asdict(r) for r in results])
        elif not results:
            click.echo((empty(app, " ".join(text)) if empty else "") or "Aucun résultat.")
        else:
            for result in results:
                click.echo(line(result))


# --- drugs ----------------------------------------------------------------------------


@click.group("drugs")
def drugs() -> None:
    """Référentiel des médicaments (BDPM) : import, recherche, état."""


@drugs.command("import")
@click.argument("source", required=False)
@click.option("--date", "referential_date", metavar="AAAA-MM-JJ",
              help="Date du référentiel (défaut : date des fichiers de la source).")
@click.option("--allow-shrink", is_flag=True,
              help="Accepter un import qui retire plus de 5 % des spécialités.")
@click.option("--allow-small", is_flag=True,
              help="Accepter un extrait plus petit qu'une BDPM complète (test, démonstration).")
@click.option("--json", "as_json", is_flag=True, help="Rapport JSON.")
@click.pass_obj
def import_drugs(app: App, source: str | None, referential_date: str | None,
                 allow_shrink: bool, allow_small: bool, as_json: bool) -> None:
    """Importer la BDPM depuis SOURCE : un dossier, un .zip ou une URL http(s).

    Sans SOURCE : l'URL du réglage referential.bdpm_url. Un import identique au
    précédent ne change rien ; un import interrompu laisse l'ancien référentiel. Un
    import qui retirerait plus de 5 % des spécialités, ou dont un fichier a moins de
    lignes qu'une BDPM complète, est refusé sans rien changer (code de sortie 1).
    """
    from appliance.store.referential.guards import FLOOR, RELEASE_MINIMUMS

    report = service.import_bdpm(app.settings.data_dir,
                                 source or app.settings.referential.bdpm_url,
                                 referential_date=referential_date, allow_shrink=allow_shrink,
                                 minimums=FLOOR if allow_small else RELEASE_MINIMUMS)
    _print_report(report, as_json, "BDPM")


_search_command(
    drugs,
    lambda app, text, limit: app.referential.search(
        text, limit),
    _presentation_line,
    "Chercher des présentations : nom, substance (DCI), dosage (« 1g », « 25µg »), forme "
    "(« cp », « gél », « sachet »), CIP13, CIP7, CIS ou code scanné (GS1 DataMatrix). "
    "Une faute de frappe par mot est tolérée.",
    lambda app, text: app.referential.hint(text),
)


@drugs.command("info")
@click.option("--json", "as_json", is_flag=True, help="Sortie JSON.")
@click.pass_obj
def info(app: App, as_json: bool) -> None:
    """Date, source et volumes du référentiel."""
    data = app.referential.info()
    if as_json:
        _echo_json(dataclasses.asdict(data))
        return
    if data.date:
        click.echo(f"Référentiel des médicaments : BDPM du {data.date} "
                   f"(importée le {data.imported_at} depuis {data.source})")
    else:
        click.echo("Référentiel des médicaments : aucune BDPM importée")
    if data.devices_imported_at:
        click.echo(f"Dispositifs (LPP) : liste importée le {data.devices_imported_at} "
                   f"depuis {data.devices_source}")
    for table, count in data.counts.items():
        click.echo(f"  {TABLE_NAMES.get(table, table)} : {count}")
    click.echo(f"Fichier : {data.path} ({data.size_bytes / 1e6:.1f} Mo)")


# --- devices --------------------------------------------------------------------------


@click.group("devices")
def devices() -> None:
    """Référentiel des dispositifs médicaux (codes LPP)."""


@devices.command("import")
@click.argument("csv_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Rapport JSON.")
@click.pass_obj
def import_devices(app: App, csv_file: Path, as_json: bool) -> None:
    """Importer la liste LPP (CSV « CODE_LPP;L_CODE_LPP », en-tête, UTF-8 ou cp1252)."""
    report = service.import_devices(app.settings.data_dir, csv_file)
    _print_report(report, as_json, "Liste LPP")


_search_command(
    devices,
    lambda app, text, limit: app.referential.search_devices(
        text, limit),
    lambda d: f"{d.code}  {d.label}",
    "Chercher un dispositif par libellé ou code LPP (7 chiffres).",
)


COMMANDS = [drugs, devices]
