"""``ordo prescribe``, ``ordo drafts``, ``ordo practitioners``: the headless path.

The EHPAD's software drafts prescriptions as JSON; ``ordo prescribe`` signs one with the
inserted CPS card at once, ``ordo drafts import`` leaves them for the physician to review and
sign in the kiosk (``appliance.commands.kiosk``).

Both run the prescribing-safety checks (``appliance.services.checks``) on the draft, with
the resident's recorded allergies and current treatment: ``prescribe`` before the card is
touched, refusing unless ``--acknowledge`` names every ``important`` alert and
``--override CODE=REASON`` every ``bloquant`` one that can be overridden; ``drafts import``
keeps the alerts with each draft for the physician's review in the kiosk.

Exit statuses (``appliance.cli.EXIT_CODES``): 0 done; 1 invalid draft (every problem with
its JSON path) or an override without a valid reason; 3 authentication or role refused
(card, PIN); 4 any other error (store, referential, printer); 5 refused by the prescribing
checks. With ``--json`` the error is also written on stdout as JSON (``ok``, ``reason``,
``message``, ``errors`` for a draft, ``alerts`` and ``obstacles`` for the checks).
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click

from appliance.bootstrap import App
from appliance.cli import error_kind, error_lines, exit_code, read_pin
from appliance.domain.people import Practitioner, Role
from appliance.domain.prescription_id import format_id
from appliance.errors import AlertsRefused, DraftInvalid, DraftProblem, OrdoError
from appliance.ports.uow import UnitOfWork
from appliance.services import prescribing
from appliance.services.checks import Alert, check_draft, decide
from appliance.services.drafts import Draft, load_draft_json, parse_draft, resident_matcher
from appliance.services.prescribing import IdAllocator, ReferentialDrugs

log = logging.getLogger(__name__)


def echo_json(data: Any) -> None:
    click.echo(json.dumps(data, ensure_ascii=False, indent=2, default=str))


@contextmanager
def json_errors(as_json: bool) -> Iterator[None]:
    """With ``--json``, an error is also written on stdout as JSON (for the DUI), after its
    French line(s) on stderr; the exit status is the CLI's either way."""
    try:
        yield
    except OrdoError as exc:
        if not as_json:
            raise
        for line in error_lines(exc):  # the same French line(s) on stderr as without --json
            click.echo(line, err=True)
        problems = exc.problems if isinstance(exc, DraftInvalid) else None
        echo_json({"ok": False, "reason": _reason(exc), "message": _message(exc),
                   **({"errors": [{"path": p.path, "message": p.message} for p in problems]}
                      if problems is not None else {}),
                   **({"alerts": exc.alerts, "obstacles": exc.obstacles}
                      if isinstance(exc, AlertsRefused) else {}),
                   **({"tries_left": exc.tries_left} if hasattr(exc, "tries_left") else {})})
        raise click.exceptions.Exit(exit_code(exc)) from exc


def _reason(exc: OrdoError) -> str:
    if isinstance(exc, DraftInvalid):
        return "invalid_draft"
    if isinstance(exc, AlertsRefused):
        return "alerts_refused"
    if isinstance(exc, prescribing.AmRequired):
        return "am_required"
    if isinstance(exc, prescribing.Forbidden):
        return "forbidden"
    return str(getattr(exc, "reason", "card_error" if exit_code(exc) == 3 else
                       error_kind(exc)))


def _message(exc: OrdoError) -> str:
    return "brouillon invalide" if isinstance(exc, DraftInvalid) else str(exc)


def _load_json(path: Path) -> Any:
    try:
        return load_draft_json(path.read_text("utf-8"))
    except UnicodeDecodeError as exc:
        raise DraftInvalid([DraftProblem("$", f"not UTF-8 text ({exc.reason})")]) from exc
    except json.JSONDecodeError as exc:
        raise DraftInvalid([DraftProblem(
            "$", f"invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}")]) from exc
    except (ValueError, RecursionError) as exc:  # a 5,000-digit number, 5,000 nested arrays
        raise DraftInvalid([DraftProblem("$", f"unreadable JSON ({exc})")]) from exc
    except OSError as exc:
        raise DraftInvalid([DraftProblem("$", f"unreadable file ({exc.strerror})")]) from exc


def _split_prescriber(data: Any, base: str, required: bool
                      ) -> tuple[str | None, Any, list[DraftProblem]]:
    """The optional ``prescriber: {"idNat_PS": ...}`` of a draft, and the draft without it."""
    if not isinstance(data, dict) or "prescriber" not in data:
        problems = [DraftProblem(f"{base}.prescriber", "required: {\"idNat_PS\": \"8...\"}")] \
            if required and isinstance(data, dict) else []
        return None, data, problems
    body = {k: v for k, v in data.items() if k != "prescriber"}
    raw = data["prescriber"]
    if not isinstance(raw, dict) or set(raw) - {"idNat_PS"} or "idNat_PS" not in raw:
        return None, body, [DraftProblem(f"{base}.prescriber",
                                         'expected {"idNat_PS": "8..."}')]
    from appliance.domain.ids import validate_id_nat_ps
    from appliance.errors import ValidationError

    try:
        return validate_id_nat_ps(str(raw["idNat_PS"])), body, []
    except ValidationError as exc:
        return None, body, [DraftProblem(f"{base}.prescriber.idNat_PS",
                                         f"{exc.value!r} is invalid: {exc.expected}")]


def _rebase(problems: list[DraftProblem], base: str) -> list[DraftProblem]:
    return [DraftProblem(base + p.path[1:], p.message) for p in problems]


def _parser(app: App) -> Callable[[Any], Draft]:
    drugs = ReferentialDrugs(app.referential)
    uow = app.uow
    find = resident_matcher(lambda: uow.residents.search())

    def parse(data: Any) -> Draft:
        return parse_draft(data, find_resident=find, drugs=drugs)

    return parse


def _draft_checker(app: App) -> Callable[[UnitOfWork, Draft], list[Alert]]:
    """The checks of a draft as of today, with the composition root's drug facts and
    interaction source, the resident's allergies and treatment read through ``uow``."""
    def check(uow: UnitOfWork, draft: Draft) -> list[Alert]:
        return check_draft(uow, app.drug_facts, draft, draft.resident,
                           today=app.clock().date(), interactions=app.interactions)

    return check


_NAME_SEPARATORS = re.compile(r"[\s,;]+")


def _acknowledgements(values: Sequence[str]) -> list[str]:
    """``--acknowledge`` values: each a code or key, or several separated by commas."""
    return [name for value in values for name in _NAME_SEPARATORS.split(value) if name]


def _overrides(ctx: click.Context, param: click.Parameter,
               values: Sequence[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for value in values:
        name, sep, reason = value.partition("=")
        if not sep or not name.strip():
            raise click.BadParameter(f"{value!r} : attendu CODE=MOTIF "
                                     "(ex. dose.max_daily@2=\"douleur rebelle\")", ctx, param)
        out[name.strip()] = reason
    return out


def _alert_line(alert: dict[str, Any]) -> str:
    status = {"shown": "", "acknowledged": ", acquittée", "overridden": ", levée"}.get(
        alert["status"], "")
    return f"Alerte {alert['severity']} ({alert['key']}{status}) : {alert['message']}"


@click.command("prescribe")
@click.argument("draft_file", metavar="FILE.json",
                type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--pin-stdin", is_flag=True, help="Read the PIN from the first line of stdin.")
@click.option("--json", "as_json", is_flag=True, help="JSON output (for the DUI).")
@click.option("--slot", type=int, default=None,
              help="Reader index (default: the first reader holding a card).")
@click.option("--print-now", is_flag=True,
              help="Print at once here instead of leaving the job to the kiosk's queue.")
@click.option("--acknowledge", "acknowledge", multiple=True, metavar="CODE",
              help="Acknowledge an 'important' alert of the checks, by code (every line) or "
                   "key (code@line); repeat the option or separate with commas.")
@click.option("--override", "overrides", multiple=True, metavar="CODE=REASON",
              callback=_overrides,
              help="Override a 'bloquant' alert with a reason (3 to 500 characters), by code "
                   "or key; repeat for each. A hospital-only drug cannot be overridden.")
@click.pass_obj
def prescribe(app: App, draft_file: Path, pin_stdin: bool, as_json: bool, slot: int | None,
               print_now: bool, acknowledge: tuple[str, ...],
               overrides: dict[str, str]) -> None:
    """Sign a prescription drafted by the EHPAD's software (JSON, see the README) with the
    inserted CPS card: validate, run the prescribing checks, sign, store, queue the print
    and the registry upload, and print the prescription ID.

    Every problem of an invalid draft is reported with its JSON path (exit status 1), and a
    draft the checks refuse is reported with its alerts (exit status 5), before the card is
    touched. Acknowledgements and overrides go to the audit chain (alert keys only).
    """
    with json_errors(as_json):
        data = _load_json(draft_file)
        prescriber_id, body, problems = _split_prescriber(data, "$", required=False)
        try:
            draft = _parser(app)(body)
        except DraftInvalid as exc:
            raise DraftInvalid(problems + exc.problems) from exc
        if problems:
            raise DraftInvalid(problems)
        alerts = _draft_checker(app)(app.uow, draft)
        decision = decide(alerts, _acknowledgements(acknowledge), overrides)
        if not decision.may_sign:
            raise decision.refusal()
        session = app.login(read_pin(pin_stdin), slot=slot)
        try:
            if prescriber_id is not None and prescriber_id != session.practitioner.id_nat_ps:
                raise DraftInvalid([DraftProblem(
                    "$.prescriber.idNat_PS", f"{prescriber_id!r} is not the card holder "
                    f"({session.practitioner.id_nat_ps})")])
            prescribing.register_login(app.uow, session)
            result = prescribing.prescribe(app.uow, session, draft, ids=IdAllocator(),
                                           mail=app.mail_policy, decision=decision)
        finally:
            session.logout()
    printed = _print_now(app) if print_now else None
    p = result.prescription
    found = decision.alert_dicts()
    if as_json:
        echo_json({"ok": True, "prescription_id": p.id, "formatted_id": format_id(p.id),
                    "state": p.state.value, "signed_at": p.signed_at, "lines": len(p.lines),
                    "print_job": result.print_job, "printed": printed,
                    "registry": "queued", "secure": result.secure,
                    "orders": [{"prescription_id": r.prescription.id,
                                "lines": len(r.prescription.lines), "secure": r.secure,
                                "print_job": r.print_job} for r in result.orders],
                    "alerts": found, "acknowledged": list(decision.acknowledged),
                    "overridden": list(decision.overridden),
                    "unmatched": list(decision.unknown)})
        return
    for alert in found:
        click.echo(_alert_line(alert))
    if decision.unknown:
        click.echo("Sans alerte correspondante (ignorés) : " + ", ".join(decision.unknown),
                   err=True)
    for r in result.orders:
        where = ("PDF pour le papier sécurisé" if r.secure else
                 f"impression : {'faite' if printed else 'en file'}")
        click.echo(f"Ordonnance signée n° {format_id(r.prescription.id)} "
                   f"({len(r.prescription.lines)} ligne(s)) ; {where} (travail n° "
                   f"{r.print_job}) ; envoi au registre en file.")


def _print_now(app: App) -> bool:
    try:
        report = app.print_queue().run_once()
    except OrdoError as exc:
        click.echo(f"Impression : {exc}", err=True)
        return False
    if report.error:
        click.echo(f"Impression : {report.error}", err=True)
    return bool(report.printed) and not report.error


@click.group("drafts")
def drafts_group() -> None:
    """Drafts made by the EHPAD's software, reviewed and signed by the physician."""


@drafts_group.command("import")
@click.argument("draft_file", metavar="FILE.json",
                type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="JSON output.")
@click.pass_obj
def drafts_import(app: App, draft_file: Path, as_json: bool) -> None:
    """Create drafts for physicians to review and sign in the kiosk.

    FILE.json holds one draft, a list of drafts, or {"drafts": [...]}; each names its
    prescriber: "prescriber": {"idNat_PS": "8..."}. All or nothing: any problem (with its
    JSON path) and nothing is created (exit status 1). The prescribing checks' alerts are
    kept with each draft for its review.
    """
    with json_errors(as_json):
        made = _import_drafts(app, _load_json(draft_file))
    alerts = {p.id: app.uow.views.prescription_alerts(p.id) for p in made}
    if as_json:
        echo_json({"ok": True, "drafts": [{"prescription_id": p.id,
                                            "prescriber": p.prescriber.id_nat_ps,
                                            "lines": len(p.lines),
                                            "alerts": [a.as_dict() for a in alerts[p.id]]}
                                           for p in made]})
        return
    for p in made:
        found = alerts[p.id]
        noted = f", {len(found)} alerte(s) à revoir" if found else ""
        click.echo(f"Brouillon {format_id(p.id)} créé pour {p.prescriber.display_name} "
                   f"({len(p.lines)} ligne(s){noted}) : à vérifier et signer sur le poste.")


def _import_drafts(app: App, data: Any) -> list[Any]:
    if isinstance(data, dict) and "drafts" in data and set(data) == {"drafts"}:
        items, base = data["drafts"], "$.drafts"
    elif isinstance(data, list):
        items, base = data, "$"
    else:
        items, base = [data], None
    if not isinstance(items, list) or not items:
        raise DraftInvalid([DraftProblem(base or "$", "expected a non-empty list of drafts")])
    problems: list[DraftProblem] = []
    parsed: list[tuple[str, Draft]] = []
    parse = _parser(app)
    for i, item in enumerate(items):
        prefix = "$" if base is None else f"{base}[{i}]"
        prescriber_id, body, found = _split_prescriber(item, prefix, required=True)
        problems += found
        try:
            draft = parse(body)
        except DraftInvalid as exc:
            problems += _rebase(exc.problems, prefix)
            continue
        if prescriber_id is not None:
            known = app.uow.practitioners.get(prescriber_id)
            if known is None or known.role is not Role.PRESCRIBER:
                problems.append(DraftProblem(
                    f"{prefix}.prescriber.idNat_PS",
                    f"{prescriber_id!r} is not a prescriber known to this appliance "
                    "(first login, or ordo practitioners add)"))
            else:
                parsed.append((prescriber_id, draft))
    if problems:
        raise DraftInvalid(problems)
    return prescribing.import_drafts(app.uow, parsed, ids=IdAllocator(), actor="dui",
                                     checker=_draft_checker(app))


@drafts_group.command("list")
@click.option("--as", "id_nat_ps", default=None, metavar="ID_NAT_PS",
              help="Only this prescriber's drafts.")
@click.option("--json", "as_json", is_flag=True, help="JSON output.")
@click.pass_obj
def drafts_list(app: App, id_nat_ps: str | None, as_json: bool) -> None:
    """Drafts waiting for their physician's signature."""
    rows = app.uow.views.drafts(id_nat_ps)
    if as_json:
        echo_json([row.as_dict() for row in rows])
        return
    for row in rows:
        click.echo(f"{format_id(row.id)}  {row.prescriber_id}  créé {row.created_at}")


# -- practitioners ----------------------------------------------------------------------------
@click.group("practitioners")
def practitioners_group() -> None:
    """Practitioners known to the appliance, and the prescribers' N° AM."""


@practitioners_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="JSON output.")
@click.pass_obj
def practitioners_list(app: App, as_json: bool) -> None:
    """Practitioners recorded at login (or added), with their role and N° AM."""
    found = prescribing.list_practitioners(app.uow)
    if as_json:
        echo_json([{"id_nat_ps": p.id_nat_ps, "last_name": p.last_name,
                     "first_name": p.first_name, "profession": p.profession,
                     "role": p.role.value, "am": p.am} for p in found])
        return
    for p in found:
        click.echo(f"{p.id_nat_ps}  {p.display_name:<30} {p.role.value:<11} "
                   f"N° AM {p.am or '-'}")


@practitioners_group.command("add")
@click.argument("id_nat_ps")
@click.option("--nom", "last_name", required=True)
@click.option("--prenom", "first_name", required=True)
@click.option("--profession", default="Médecin", show_default=True)
@click.option("--role", type=click.Choice([r.value for r in (Role.PRESCRIBER, Role.NURSE)]),
              default=Role.PRESCRIBER.value, show_default=True)
@click.option("--am", default=None, help="N° AM (9 digits), prescribers only.")
@click.pass_obj
def practitioners_add(app: App, id_nat_ps: str, last_name: str, first_name: str,
                      profession: str, role: str, am: str | None) -> None:
    """Record a practitioner before their first login (so that the DUI can import drafts
    for them). The card's names replace these at login."""
    practitioner = Practitioner(id_nat_ps=id_nat_ps, last_name=last_name,
                                first_name=first_name, profession=profession,
                                role=Role(role), am=am)
    prescribing.add_practitioner(app.uow, practitioner, actor="cli")
    click.echo(f"Praticien {practitioner.display_name} ({practitioner.id_nat_ps}) enregistré.")


@practitioners_group.command("set-am")
@click.argument("id_nat_ps")
@click.argument("am")
@click.pass_obj
def practitioners_set_am(app: App, id_nat_ps: str, am: str) -> None:
    """Set a prescriber's N° AM (the CPS card does not carry it)."""
    p = prescribing.set_am(app.uow, id_nat_ps, am, actor="cli")
    click.echo(f"N° AM de {p.display_name} : {p.am}")


@practitioners_group.command("set-contact")
@click.argument("id_nat_ps")
@click.option("--qualification", default=None,
              help='Printed under the name, e.g. "Médecin généraliste" ("" clears it).')
@click.option("--phone", default=None, help="Phone number, printed in +33 form.")
@click.option("--email", default=None, help="E-mail address.")
@click.pass_obj
def practitioners_set_contact(app: App, id_nat_ps: str, qualification: str | None,
                              phone: str | None, email: str | None) -> None:
    """Set what a prescriber's orders print that the CPS card does not carry: the
    qualification, a phone number and an e-mail address (else the [prescriber] settings)."""
    p = prescribing.set_contact(app.uow, id_nat_ps, actor="cli",
                                qualification=qualification, phone=phone, email=email)
    click.echo(f"{p.display_name} : {p.qualification or '-'}, {p.phone or '-'}, "
               f"{p.email or '-'}")


COMMANDS = [prescribe, drafts_group, practitioners_group]
