"""``ordo sync once|run|status|release|dispensations`` and ``ordo registry-sim``.

``ordo sync`` drives the registry link of this appliance (messages in French: nurses and
installers read them). ``ordo registry-sim`` serves the reference registry for tests and
demos, and plays the pharmacy (``dispense``) and the auditor (``list``) on its database.
"""

from __future__ import annotations

import contextlib
import json
import signal
import sqlite3
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from appliance.bootstrap import App
from appliance.domain.prescription_id import validate_prescription_id
from appliance.errors import RegistryError, RegistryMisconfigured, StoreError
from appliance.ports.uow import SyncKeys
from appliance.services import sync
from sync import codes
from sync.service import PULL_FACTOR, TICK_S, SyncService, single_instance

MAIL_FETCH_FACTOR = 6  # the mailbox every 6 × [sync] interval_s (3 minutes by default)


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


@click.group("sync")
def sync_group() -> None:
    """Registry synchronisation: push signed prescriptions, pull dispensations."""


@sync_group.command("once")
@click.option("--json", "as_json", is_flag=True, help="JSON output.")
@click.pass_obj
def once(app: App, as_json: bool) -> None:
    """Run one full cycle now: drain the queue, then pull the dispensations."""
    engine = app.sync_engine()
    with single_instance(app.settings.data_dir):
        push = engine.push()
        pull = engine.pull()
    wrong = None
    if push.misconfigured or pull.misconfigured:  # the queue waits: an error to fix
        wrong = RegistryMisconfigured(push.misconfigured_key or pull.misconfigured_key or "",
                                      push.misconfigured or pull.misconfigured or "")
    if as_json:
        click.echo(json.dumps({"push": push.__dict__, "pull": pull.__dict__},
                              ensure_ascii=False, default=str))
        if wrong is not None:
            raise wrong
        return
    click.echo(f"Envoi : {push.acknowledged} accusé(s) de réception "
               f"({push.replayed} déjà connus du registre), {push.retried} nouvel(s) essai(s) "
               f"prévu(s), {push.quarantined} mis en quarantaine ; {push.remaining} en attente.")
    if wrong is not None:
        click.echo("La file attend (rien n'est mis en quarantaine) : corriger le réglage "
                   f"{wrong.key}.")
        raise wrong
    if push.unreachable:
        click.echo("Registre injoignable : la file sera renvoyée plus tard.")
    click.echo(f"Délivrances reçues : {pull.received} ({len(pull.prescriptions)} "
               "ordonnance(s) mises à jour).")
    if pull.error:
        click.echo(f"Erreur lors de la récupération des délivrances : {pull.error}")


@sync_group.command("run")
@click.pass_obj
def run(app: App) -> None:
    """Run the sync service in the foreground (systemd Type=notify; SIGTERM stops it); it
    serves the Prometheus metrics on [metrics] listen."""
    from appliance.ops.metrics import metrics_server

    engine = app.sync_engine()
    settings = app.settings.sync
    with single_instance(app.settings.data_dir):
        service = SyncService(engine, app.uow, tick_s=min(TICK_S, float(settings.interval_s)),
                              pull_every_s=float(settings.interval_s * PULL_FACTOR),
                              backoff_cap_s=float(settings.backoff_cap_s),
                              mail_sender=app.mail_sender() if app.sends_mail else None,
                              mail_fetch=app.mail_fetch() if app.reads_mail else None,
                              mail_fetch_every_s=float(settings.interval_s * MAIL_FETCH_FACTOR),
                              metrics=metrics_server(app.settings, app.new_uow,
                                                     clock=app.clock))
        raise SystemExit(service.run())


@sync_group.command("status")
@click.option("--json", "as_json", is_flag=True, help="JSON output.")
@click.pass_obj
def status(app: App, as_json: bool) -> None:
    """Queue depth, oldest pending age, last success, last error, quarantined records."""
    s = sync.status(app.uow, app.clock())
    mail = app.uow.views.mail_status()
    unmatched = app.uow.views.unmatched_count()
    if as_json:
        click.echo(json.dumps({**s.to_dict(), "mssante": {
            **mail.to_dict(), "received_unmatched": unmatched}}, ensure_ascii=False))
        return
    click.echo(f"En attente : {s.queue_depth} ({s.pending_creates} création(s), "
               f"{s.pending_cancels} annulation(s)) ; la plus ancienne depuis "
               f"{_age(s.oldest_pending_age_s)}")
    click.echo(f"Accusés de réception : {s.acknowledged}")
    anchored = app.uow.meta.get(SyncKeys.ANCHOR_SEQ)
    click.echo("Chaîne d'audit ancrée au registre : " + (
        f"entrée {anchored}, le {(app.uow.meta.get(SyncKeys.ANCHOR_AT) or '')[:19]} (reçu "
        f"{app.uow.meta.get(SyncKeys.ANCHOR_RECEIPT)})" if anchored else "jamais"))
    if s.misconfigured:
        click.echo(f"Registre mal configuré : {s.link_detail} — corriger le réglage "
                   f"{s.link_key} (depuis {s.link_since}) ; la file attend.")
    elif s.link == "down":
        click.echo(f"Registre injoignable depuis {s.link_since} : la file partira dès qu'il "
                   "répondra.")
    click.echo(f"Dernier échange réussi : {s.last_success_at or 'jamais'}")
    if s.last_error:
        click.echo(f"Dernière erreur ({s.last_error_at}) : {s.last_error}")
    click.echo(f"Délivrances reçues : {s.dispensations}")
    click.echo(f"En quarantaine : {s.quarantined}")
    for record in s.quarantined_records:
        click.echo(f"  n° {record['seq']} {record['kind']} {record['prescription_id']} : "
                   f"{record['reason']}")
    click.echo(f"MSSanté (pharmacie) : {mail.pending} en attente, {mail.sent} envoyé(s), "
               f"{mail.quarantined} en quarantaine ; ordonnances reçues à rattacher : "
               f"{unmatched}")
    if mail.last_error:
        click.echo(f"  Dernière erreur MSSanté : {mail.last_error}")
    for record in mail.quarantined_records:
        click.echo(f"  message n° {record['seq']} {record['prescription_id']} : "
                   f"{record['reason']} (ordo mss release {record['seq']})")


@sync_group.command("release")
@click.argument("seq", type=int)
@click.pass_obj
def release(app: App, seq: int) -> None:
    """Put a quarantined record (by its number, see ``status``) back in the queue."""
    if not sync.release(app.uow, seq, actor="cli"):
        raise StoreError(f"aucun envoi en quarantaine n° {seq}")
    click.echo(f"Envoi n° {seq} remis dans la file.")


@sync_group.command("dispensations")
@click.argument("prescription_id")
@click.option("--json", "as_json", is_flag=True, help="JSON output.")
@click.pass_obj
def dispensations(app: App, prescription_id: str, as_json: bool) -> None:
    """What the pharmacy handed over for a prescription, substitutions included."""
    pid = validate_prescription_id(prescription_id)
    items = app.uow.dispensations.of(pid)
    if as_json:
        click.echo(json.dumps([sync.dispensation_dict(d) for d in items], ensure_ascii=False))
        return
    if not items:
        click.echo("Aucune délivrance reçue pour cette ordonnance.")
    for d in items:
        click.echo(sync.describe_fr(d))


# -- the reference registry ------------------------------------------------------------------
@contextlib.contextmanager
def _registry_db(path: Path) -> Iterator[Any]:
    """The reference registry's own database (``RegistryDB``), open for the block; a file
    that is not one (missing directory, another database, not SQLite) is a clean error."""
    from sync.registry_sim.db import RegistryDB

    db = RegistryDB(path)
    try:
        yield db.open()
    except (OSError, sqlite3.Error) as exc:
        raise RegistryError(f"base du registre {path} inutilisable : {exc}") from exc
    finally:
        db.close()


@click.group("registry-sim", invoke_without_command=True)
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=int, default=8443, show_default=True)
@click.option("--db", "db_path", type=click.Path(dir_okay=False, path_type=Path),
              help="The registry's own SQLite file (required to serve).")
@click.option("--tls-cert", type=click.Path(exists=True, dir_okay=False),
              help="Server certificate chain (PEM).")
@click.option("--tls-key", type=click.Path(exists=True, dir_okay=False),
              help="Server key (PEM).")
@click.option("--client-ca", type=click.Path(exists=True, dir_okay=False),
              help="CA bundle that issues the establishments' client certificates.")
@click.option("--plain-http", is_flag=True,
              help="Serve plain HTTP (refused unless --host is a loopback address).")
@click.option("--trust-root", "trust_roots", multiple=True, type=click.Path(exists=True),
              help="CPS trust roots (PEM); default: [security] trust_roots.")
@click.option("--crl", "crls", multiple=True, type=click.Path(exists=True),
              help="CRLs (PEM or DER); default: [security] crls.")
@click.option("--seed", type=int, default=0, show_default=True, help="Fault random seed.")
@click.option("--error-rate", type=float, default=0.0, help="Share of 500/503 answers.")
@click.option("--throttle-rate", type=float, default=0.0, help="Share of 429 answers.")
@click.option("--retry-after", type=int, default=1, show_default=True,
              help="Retry-After seconds on 429.")
@click.option("--reset-rate", type=float, default=0.0, help="Share of connection resets.")
@click.option("--drop-rate", type=float, default=0.0,
              help="Share of requests committed whose answer is then dropped.")
@click.option("--latency-ms", type=float, default=0.0, help="Up to this much added latency.")
@click.pass_context
def registry_sim(ctx: click.Context, host: str, port: int, db_path: Path | None,
                 tls_cert: str | None, tls_key: str | None, client_ca: str | None,
                 plain_http: bool, trust_roots: tuple[str, ...], crls: tuple[str, ...],
                 seed: int, error_rate: float, throttle_rate: float, retry_after: int,
                 reset_rate: float, drop_rate: float, latency_ms: float) -> None:
    """Serve the reference registry (FHIR R4 over HTTPS with client certificates).

    Example: ordo registry-sim --port 8443 --db registry.sqlite --tls-cert server.pem
    --tls-key server.key --client-ca ca.pem --error-rate 0.2 --seed 7
    """
    if ctx.invoked_subcommand is not None:
        return
    from sync.registry_sim import Faults, RegistrySim, SimConfig

    if db_path is None:
        raise click.UsageError("--db est obligatoire pour servir le registre")
    app: App = ctx.find_object(App)
    try:
        faults = Faults(seed=seed, error_rate=error_rate, throttle_rate=throttle_rate,
                        retry_after_s=retry_after, reset_rate=reset_rate, drop_rate=drop_rate,
                        latency_ms=latency_ms)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from exc
    config = SimConfig(db_path=db_path, host=host, port=port, tls_cert=tls_cert,
                       tls_key=tls_key, client_ca=client_ca, plain_http=plain_http,
                       trust_roots=trust_roots or app.settings.security.trust_roots,
                       crls=crls or app.settings.security.crls, faults=faults)
    if not config.trust_roots:
        click.echo("Warning: no trust root: every prescription will be refused (422).",
                   err=True)
    try:
        sim = RegistrySim(config).start()
    except (OSError, sqlite3.Error) as exc:  # its database: missing directory, not SQLite
        raise RegistryError(f"base du registre {db_path} inutilisable : {exc}") from exc
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    click.echo(f"Registry simulator listening on {sim.url} (database {db_path})", err=True)
    while not stop.wait(1.0):
        pass
    sim.stop()


@registry_sim.command("dispense")
@click.argument("prescription_id")
@click.option("--db", "db_path", required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--line", type=int, help="One medication line (1-based); default: all open ones.")
@click.option("--partial", is_flag=True, help="A partial fill (the line stays open).")
@click.option("--quantity", help="Quantity handed over (default: as prescribed).")
@click.option("--unit", help="Unit of --quantity (default: boîte).")
@click.option("--substitute", "substitute_code", help="CIP13 of the product handed over.")
@click.option("--substitute-label", help="Label of the product handed over.")
@click.option("--substitution-type", default="G", show_default=True,
              type=click.Choice(codes.SUBSTITUTION_TYPES),
              help="HL7 v3 substanceAdminSubstitution code (G generic, E equivalent...).")
@click.option("--reason", help="Why the pharmacist substituted.")
@click.option("--objection", is_flag=True,
              help="The patient objects to the prescriber seeing this dispensation.")
@click.option("--pharmacy", help="Pharmacy name.")
@click.option("--json", "as_json", is_flag=True, help="JSON output.")
def dispense(prescription_id: str, db_path: Path, line: int | None, partial: bool,
             quantity: str | None, unit: str | None, substitute_code: str | None,
             substitute_label: str | None, substitution_type: str, reason: str | None,
             objection: bool, pharmacy: str | None, as_json: bool) -> None:
    """Record a dispensation as the pharmacy would: full, partial, substitution, quantity."""
    from sync.registry_sim.db import BadRequest, Conflict, NotFound, Substitute
    from sync.registry_sim.server import dispensation_json

    pid = validate_prescription_id(prescription_id)
    substitute = None
    if substitute_code:
        substitute = Substitute(code=substitute_code, label=substitute_label or substitute_code,
                                type=substitution_type, reason=reason)
    with _registry_db(db_path) as db:
        try:
            done = db.dispense(pid, line=line, complete=not partial, quantity=quantity,
                               unit=unit, substitute=substitute, objection=objection,
                               pharmacy=pharmacy, now=datetime.now(UTC))
        except (BadRequest, Conflict, NotFound) as exc:
            raise RegistryError(f"le registre refuse la délivrance : {exc}") from exc
    if as_json:
        click.echo(json.dumps([dispensation_json(d) for d in done], ensure_ascii=False))
        return
    for d in done:
        what = "complete" if d.complete else "partial"
        sub = f", substituted ({d.substitution_type})" if d.substituted else ""
        click.echo(f"{d.registry_id}: line {d.line}, {what}, {d.product_label}{sub}")


@registry_sim.command("list")
@click.option("--db", "db_path", required=True,
              type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="JSON output.")
def list_cmd(db_path: Path, as_json: bool) -> None:
    """What the registry holds: one prescription per line."""
    with _registry_db(db_path) as db:
        rows = db.list_prescriptions()
    if as_json:
        click.echo(json.dumps(rows, ensure_ascii=False))
        return
    for row in rows:
        click.echo(f"{row['id']} {row['status']} {row['receipt_id']} {row['received_at']} "
                   f"lines={row['lines']} dispensations={row['dispensations']}")
    click.echo(f"{len(rows)} prescription(s)", err=True)


COMMANDS = [sync_group, registry_sim]
