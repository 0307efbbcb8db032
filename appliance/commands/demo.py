"""``ordo demo``: a whole test appliance on this machine (test PKI, pcscd with the virtual
reader and a virtual physician card, printer emulator, reference registry over mutual TLS,
sync service, demo residents, the BDPM), then the kiosk or one headless prescription."""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from appliance.bootstrap import App, bootstrap
from appliance.commands.kiosk import build_context, exit_on_signals, log_to_file_at
from appliance.commands.prescribe import echo_json
from appliance.config import load_settings, write_config
from appliance.domain.people import Practitioner, Role
from appliance.domain.prescription import MedicationLine, Prescription
from appliance.domain.prescription_id import format_id
from appliance.errors import StoreError
from appliance.services import prescribing
from appliance.services.prescribing import IdAllocator
from appliance.tui.demo_data import demo_draft
from drivers.card.pcscd import PcscdService

if TYPE_CHECKING:
    from appliance.ports.card import CardEvent, CardWatcher
    from appliance.store.referential.search import Presentation, Referential

log = logging.getLogger(__name__)

T = TypeVar("T")
DEMO_PIN = "1234"
DEMO_AM = "751234567"
DEMO_FINESS = "750000001"


def default_bdpm() -> Path:
    """``../shared/data/bdpm`` next to the repository, or ``ORDO_DEMO_BDPM``."""
    env = os.environ.get("ORDO_DEMO_BDPM")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[3] / "shared" / "data" / "bdpm"


def generic_substitute(referential: Referential, prescription: Prescription
                       ) -> tuple[int, MedicationLine, Presentation] | None:
    """What a pharmacy may hand over in place of a prescribed specialty: for the first
    medication line whose specialty has a generic in its BDPM generic group (not marked
    non-substitutable), that generic's first marketed box (generics before "substitutable"
    specialties, then in the group's order). None when no line has one."""
    for n, line in enumerate(prescription.lines, start=1):
        if not isinstance(line, MedicationLine) or line.non_substitution is not None:
            continue
        cis = line.cis
        if cis is None and line.cip13:
            box = referential.by_cip13(line.cip13)
            cis = box.cis if box is not None else None
        if cis is None:
            continue
        others = sorted((m for m in referential.generic_group(cis)
                         if m.cis != cis and m.kind != PRINCEPS),
                        key=lambda m: (m.kind != GENERIC, m.group_id, m.sort))
        for member in others:
            boxes = [p for p in referential.by_cis(member.cis) if p.marketed]
            if boxes:
                return n, line, boxes[0]
    return None


PRINCEPS, GENERIC = 0, 1


def _demo_toml(directory: Path, pki_paths: Any, printer_uri: str, registry_url: str) -> Path:
    est = pki_paths.establishment
    return write_config(directory / "ordo.toml", {
        "establishment": {"name": "EHPAD Les Tilleuls (démonstration)",
                          "finess": DEMO_FINESS, "address": "1 rue des Tilleuls, 75000 Paris"},
        "printer": {"uri": printer_uri},
        "registry": {"url": registry_url, "ca_file": str(est / "ca.pem"),
                     "client_cert": str(est / "client.pem"),
                     "client_key": str(est / "client.key")},
        "security": {"trust_roots": [str(p) for p in pki_paths.trust_roots],
                     "crls": [str(p) for p in pki_paths.crls]},
        "sync": {"interval_s": 5},
    }, header="Written by `ordo demo`: a TEST configuration, never for production.")


@dataclass
class Demo:
    """Everything ``ordo demo`` starts, in order, and stops in the reverse order."""

    directory: Path
    bdpm: Path | None = None
    pin: str = DEMO_PIN
    profile: str = "physician"
    sync_service: bool = True
    echo: Callable[[str], None] = print
    app: App | None = None
    started: list[Callable[[], None]] = field(default_factory=list)
    emulator: Any = None
    sim: Any = None
    service: Any = None
    engine: Any = None
    reader: str = ""
    referential_source: str = ""

    def __enter__(self) -> Demo:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        from appliance.services.referential import import_bdpm
        from appliance.tui.demo_data import FALLBACK_BDPM, demo_residents, write_fallback_bdpm
        from drivers.card import pki, virtual
        from drivers.printer.emulator import PrinterEmulator
        from sync.registry_sim import RegistrySim, SimConfig
        from sync.registry_sim import TrustStore as RegistryTrust

        d = self.directory
        d.mkdir(parents=True, exist_ok=True, mode=0o700)
        pki_dir = d / "pki"
        paths = pki.PkiPaths(pki_dir.resolve()) if pki.pki_exists(pki_dir) \
            else pki.init_pki(pki_dir)
        self.echo(f"PKI de test : {paths.directory}")

        pcscd = PcscdService(d / "pcscd.log")
        pcscd.ensure()
        self.started.append(pcscd.stop)
        self.echo("Lecteur de carte virtuel : prêt (pcscd + vpcd)")

        tickets = d / "tickets"
        self.emulator = PrinterEmulator(out_dir=tickets).start()
        self.started.append(self.emulator.stop)
        self.echo(f"Imprimante (émulateur) : {self.emulator.uri} ; tickets en PNG dans "
                  f"{tickets}")

        est = paths.establishment
        self.sim = RegistrySim(SimConfig(
            db_path=d / "registry.sqlite", tls_cert=str(est / "server.pem"),
            tls_key=str(est / "server.key"), client_ca=str(est / "ca.pem")),
            trust=RegistryTrust.load(paths.trust_roots, paths.crls)).start()
        self.started.append(self.sim.stop)
        self.echo(f"Registre de référence (TLS mutuel) : {self.sim.url}")

        toml = _demo_toml(d, paths, self.emulator.uri, self.sim.url)
        settings = load_settings(config_file=toml, data_dir=d, environ={})
        self.app = app = bootstrap(settings)
        self.started.append(app.close)
        uow = app.uow
        with uow:
            uow.residents.upsert(demo_residents())
            uow.commit()
        profile = pki.PROFILES[self.profile]
        if profile.profession == "Médecin" and uow.practitioners.get(
                profile.id_nat_ps) is None:
            prescribing.add_practitioner(uow, Practitioner(
                id_nat_ps=profile.id_nat_ps, last_name=profile.family_name,
                first_name=profile.given_name, profession=profile.profession,
                role=Role.PRESCRIBER, am=DEMO_AM), actor="demo")
        self.echo(f"Résidents de démonstration : {len(demo_residents())}")

        source = self.bdpm if self.bdpm is not None and self.bdpm.is_dir() else None
        if source is None:
            source = write_fallback_bdpm(d / "bdpm-extrait")
            self.echo("BDPM complète introuvable : extrait de démonstration "
                      f"({len(FALLBACK_BDPM['CIS_bdpm.txt'])} spécialités)")
        else:
            self.echo(f"Import de la BDPM depuis {source} (une fois ; ~15 s)...")
        report = import_bdpm(d, source)
        self.referential_source = str(source)
        self.echo(f"Référentiel des médicaments : BDPM du {report.date} "
                  f"({report.counts.get('presentation', 0)} présentations)")

        virtual.remove(d, 0)  # a card left behind by a demo that was killed
        inserted = virtual.insert(d, self.profile, 0, self.pin, pki_dir)
        self.reader = inserted.reader
        self.started.append(lambda: virtual.remove(d, 0))
        self.echo(f"Carte virtuelle insérée : {profile.given_name} {profile.family_name} "
                  f"({profile.profession}) dans « {inserted.reader} », code PIN {self.pin}")

        sync_uow = app.new_uow()
        self.started.append(sync_uow.close)
        self.engine = app.sync_engine(sync_uow, backoff_base_s=0.5, max_wait_s=2.0)
        if self.sync_service:
            from sync.service import SyncService

            self.service = SyncService(self.engine, sync_uow, tick_s=2.0, pull_every_s=4.0,
                                       environ={})
            thread = threading.Thread(target=self.service.run, name="demo-sync",
                                      kwargs={"install_signals": False}, daemon=True)
            thread.start()

            def stop_service() -> None:
                self.service.request_stop()
                thread.join(timeout=10)

            self.started.append(stop_service)
            self.echo("Service de synchronisation : démarré (toutes les 2 s)")

    def stop(self) -> None:
        while self.started:
            step = self.started.pop()
            try:
                step()
            except Exception:
                log.exception("demo: a clean-up step failed")

    def dispense(self, prescription_id: str) -> str:
        """The pharmacy hands over a generic of the same generic group in place of the
        first prescribed specialty that has one (``generic_substitute``); without one, it
        dispenses the first medication line as prescribed. Called from any thread."""
        from sync.registry_sim.db import Substitute

        assert self.app is not None
        with contextlib.closing(self.app.new_uow()) as uow:
            prescription = uow.prescriptions.get(prescription_id)
        if prescription is None:
            return f"Ordonnance inconnue : {prescription_id}"
        medication = [n for n, line in enumerate(prescription.lines, start=1)
                      if isinstance(line, MedicationLine)]
        if not medication:
            return "Aucun médicament à délivrer sur cette ordonnance."
        found = generic_substitute(self.app.referential, prescription)
        line_no, substitute = medication[0], None
        if found is not None:
            line_no, _, box = found
            substitute = Substitute(code=box.cip13, label=box.name, type="G",
                                    reason="générique disponible")
        try:
            done = self.sim.db.dispense(prescription_id, line=line_no, substitute=substitute,
                                        pharmacy="Pharmacie du Centre (démo)",
                                        now=datetime.now(UTC))
        except Exception as exc:
            return f"La pharmacie n'a pas pu délivrer : {exc}"
        if substitute is None:
            return (f"Pharmacie : ligne {line_no} délivrée telle que prescrite (aucun générique"
                    " au répertoire), visible après la prochaine synchronisation.")
        return (f"Pharmacie : ligne {line_no} délivrée avec le générique "
                f"{done[0].product_label}, visible après la prochaine synchronisation.")

    def banner(self) -> str:
        assert self.app is not None
        d = self.directory
        return (f"DÉMONSTRATION - code PIN {self.pin} - tickets : {d / 'tickets'}\n"
                f"Lecteur de la démonstration : {self.reader}\n"
                "Retirer ou insérer une carte, depuis un autre terminal :\n"
                f"ordo --data-dir {d} card remove   (puis card insert --profile nurse)\n"
                "Accueil, F6 puis F5 : délivrance simulée en pharmacie - Ctrl+Q : quitter")


class OneReader:
    """A card watcher seen through one reader: the demo's kiosk reacts to, and its status
    line shows, only the reader its virtual card is in (the machine's other readers may hold
    cards of tests or benchmarks). Events of no reader (pcscd lost or back) pass."""

    def __init__(self, monitor: CardWatcher, reader: str) -> None:
        self.monitor, self.reader = monitor, reader

    def subscribe(self, callback: Callable[[CardEvent], None]) -> None:
        self.monitor.subscribe(
            lambda event: callback(event) if event.reader in ("", self.reader) else None)

    def start(self) -> None:
        self.monitor.start()

    def stop(self) -> None:
        self.monitor.stop()

    def cards(self) -> dict[str, bytes]:
        return {name: atr for name, atr in self.monitor.cards().items() if name == self.reader}

    def readers(self) -> list[str]:
        return [name for name in self.monitor.readers() if name == self.reader]

    @property
    def service_up(self) -> bool:
        return bool(self.monitor.service_up)


def run_headless(demo: Demo) -> dict[str, Any]:
    """One prescription end to end: card, sign, print, QR check, registry, pharmacy, back."""
    from appliance.services.signature import verify_payload
    from appliance.services.sync import describe_fr

    assert demo.app is not None and demo.engine is not None
    app, echo = demo.app, demo.echo
    trust, uow = app.trust, app.uow
    session = app.login(demo.pin, reader=demo.reader)
    can_sign = "peut signer" if session.can_sign else "ne peut pas signer"
    echo(f"1. Carte authentifiée : {session.practitioner.display_name} "
         f"({session.practitioner.profession}, {can_sign})")
    try:
        result = prescribing.prescribe(uow, session, demo_draft(), ids=IdAllocator())
    finally:
        session.logout()
    pid = result.prescription.id
    echo(f"2. Ordonnance signée par la carte : n° {format_id(pid)} "
         f"({len(result.prescription.lines)} lignes)")
    report = app.print_queue().run_once()
    jobs = demo.emulator.wait_for_jobs(1, timeout=10)
    qr = [text for job in jobs for text in job.qr_texts]
    echo(f"3. Imprimée : {len(report.printed)} travail(s) ; ticket(s) PNG dans "
         f"{demo.directory / 'tickets'}")
    verified = verify_payload(qr[0], [*trust.roots, *trust.intermediates], trust.crls)
    echo(f"4. QR code du ticket décodé et vérifié hors ligne : VALID "
         f"(ordonnance {format_id(verified.fields.prescription_id)})")
    push = demo.engine.push()
    state = uow.prescriptions.get(pid)
    assert state is not None
    echo(f"5. Registre : {push.acknowledged} accusé(s) de réception ; état "
         f"« {state.state.value} »")
    echo(f"6. {demo.dispense(pid)}")
    pull = demo.engine.pull()
    back = uow.dispensations.of(pid)
    final = uow.prescriptions.get(pid)
    assert final is not None
    echo(f"7. Délivrances reçues : {pull.received} ; état « {final.state.value} »")
    for d in back:
        echo(f"   {describe_fr(d)}")
    return {"prescription_id": pid, "printed": report.printed, "qr_valid": True,
            "acknowledged": push.acknowledged, "dispensations": len(back),
            "substituted": any(d.substituted for d in back),
            "substitutes": [d.product_label for d in back if d.substituted],
            "state": final.state.value}


@click.command("demo")
@click.option("--dir", "directory", type=click.Path(file_okay=False, path_type=Path),
              default=None, help="Demo data directory (default: a new temporary directory, "
                                 "kept afterwards).")
@click.option("--bdpm", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Full BDPM extract to import (default: ../shared/data/bdpm, or "
                   "ORDO_DEMO_BDPM; a small built-in extract otherwise).")
@click.option("--headless", is_flag=True,
              help="No kiosk: run one prescription end to end and print what happened.")
@click.option("--json", "as_json", is_flag=True, help="With --headless: JSON summary.")
def demo(directory: Path | None, bdpm: Path | None, headless: bool, as_json: bool) -> None:
    """One command for a visitor: test PKI, virtual card reader and physician card (PIN
    1234), printer emulator (PNG tickets), reference registry over mutual TLS, sync service,
    demo residents, the BDPM; then the kiosk. Everything it starts stops when it exits."""
    echo = (lambda text: click.echo(text, err=True)) if as_json else click.echo
    try:
        if directory is None:  # never a fixed path that another demo or user may hold
            directory = Path(tempfile.mkdtemp(prefix="ordo-demo-"))
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError as exc:
        raise StoreError(f"répertoire de démonstration inutilisable : {directory or '?'} "
                         f"({exc.strerror or exc})") from exc
    log_to_file_at(directory / "ordo.log")
    exit_on_signals()
    stack = Demo(directory, bdpm=bdpm or default_bdpm(), sync_service=not headless,
                 echo=echo)
    try:
        stack.__enter__()
    except OSError as exc:  # the demo directory: read-only, full...
        raise StoreError(f"répertoire de démonstration inutilisable : {directory} "
                         f"({exc.strerror or exc})") from exc
    with contextlib.ExitStack() as cleanup:
        cleanup.callback(stack.stop)
        assert stack.app is not None
        if headless:
            summary = run_headless(stack)
            if as_json:
                echo_json(summary)
            return
        from appliance.tui.app import make_app

        ctx, parts = build_context(stack.app, watcher=False, allow_quit=True,
                                   banner=stack.banner(), demo_dispense=stack.dispense)
        ctx.watcher = OneReader(stack.app.card_watcher(), stack.reader)
        ctx.on_hangup = lambda: (parts.close(), stack.stop())
        try:
            make_app(ctx).run()
        finally:
            parts.close()
    click.echo(f"Démonstration terminée ; données et tickets conservés dans {directory}")


COMMANDS = [demo]
