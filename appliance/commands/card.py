"""``ordo card ...`` (CPS card diagnostics, virtual card) and ``ordo pki init`` (test PKI).

This module is part of the composition root: it wires the PC/SC reader, the trust store
from the settings and the audit chain into the authentication service.
"""

from __future__ import annotations

import contextlib
import functools
import json
import sys
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from appliance.bootstrap import App
from appliance.errors import OrdoError
from appliance.ports import CardSession
from appliance.services.auth import (
    AuthRefused,
    authenticate,
    parse_practitioner,
    role_for,
    validate_certificate,
)
from appliance.services.trust import TrustStore, load_trust_store
from drivers.card import pki

PROFILE_NAMES = tuple(pki.PROFILES)


@contextlib.contextmanager
def _clean_errors() -> Iterator[None]:
    try:
        yield
    except OrdoError as exc:
        raise click.ClickException(str(exc)) from exc


def _audit(app: App) -> Callable[..., object]:
    from appliance.store import audit

    return functools.partial(audit.append, app.store)


def _trust(app: App) -> TrustStore:
    security = app.settings.security
    return load_trust_store(security.trust_roots, security.crls)


def _echo_json(data: Any) -> None:
    click.echo(json.dumps(data, ensure_ascii=False, indent=2))


@click.group("card")
def card() -> None:
    """CPS/CPE card: diagnostics, login, and the virtual card for demos and tests."""


@card.command("insert")
@click.option("--profile", "profile", required=True, type=click.Choice(PROFILE_NAMES),
              help="Virtual card profile.")
@click.option("--slot", type=click.IntRange(0, 1), default=0, show_default=True,
              help="vpcd reader slot (port 35963 + slot).")
@click.option("--pin", default="1234", show_default=True, help="PIN of the virtual card.")
@click.pass_obj
def insert(app: App, profile: str, slot: int, pin: str) -> None:
    """Insert a virtual CPS card (a background process); returns once pcscd sees it.

    Creates the test PKI in <data-dir>/pki first if there is none.
    """
    from drivers.card import virtual

    with _clean_errors():
        pki_dir = app.settings.data_dir / "pki"
        if not pki.pki_exists(pki_dir):
            paths = pki.init_pki(pki_dir)
            click.echo(f"PKI de test créée dans {paths.directory}")
            _print_settings(paths)
        inserted = virtual.insert(app.settings.data_dir, profile, slot, pin, pki_dir)
    click.echo(f"Carte virtuelle « {profile} » insérée dans « {inserted.reader} » "
               f"(slot {slot}, pid {inserted.pid}).")


@card.command("remove")
@click.option("--slot", type=click.IntRange(0, 1), default=0, show_default=True)
@click.pass_obj
def remove(app: App, slot: int) -> None:
    """Remove the virtual card from a slot; returns once the reader is empty."""
    from drivers.card import virtual

    with _clean_errors():
        removed = virtual.remove(app.settings.data_dir, slot)
    if removed is None:
        click.echo(f"Aucune carte virtuelle dans le slot {slot}.")
    else:
        click.echo(f"Carte virtuelle « {removed.profile} » retirée du slot {slot}.")


@card.command("status")
@click.option("--json", "as_json", is_flag=True, help="JSON output.")
@click.pass_obj
def status(app: App, as_json: bool) -> None:
    """Readers seen by pcscd, the cards in them, and the virtual cards started here."""
    from drivers.card import virtual
    from drivers.card.pcsc import PcscContext, card_present

    with _clean_errors():
        with PcscContext() as context:
            names = context.readers()
            states = context.states(names) if names else {}
        vcards = {c.reader: c for c in virtual.status(app.settings.data_dir)}
    readers = []
    for slot, name in enumerate(names):
        event, atr = states.get(name, (0, b""))
        vcard = vcards.get(name)
        readers.append({"slot": slot, "reader": name, "card": card_present(event),
                        "atr": atr.hex(" ").upper() if card_present(event) else "",
                        "virtual_profile": vcard.profile if vcard and vcard.alive else None,
                        "virtual_pid": vcard.pid if vcard and vcard.alive else None})
    if as_json:
        _echo_json({"readers": readers})
        return
    if not readers:
        click.echo("Aucun lecteur (pcscd tourne-t-il ?).")
    for r in readers:
        what = f"carte présente, ATR {r['atr']}" if r["card"] else "vide"
        if r["virtual_profile"]:
            what += f" — carte virtuelle « {r['virtual_profile']} » (pid {r['virtual_pid']})"
        click.echo(f"[{r['slot']}] {r['reader']} : {what}")


def _open(app: App, slot: int | None) -> CardSession:
    """The card of the configured backend: in ``slot``, else in the first reader that
    holds one."""
    from appliance.commands.session import card_reader_for, open_card

    return open_card(None, slot, card_reader_for(app.settings))


@card.command("info")
@click.option("--slot", type=int, default=None,
              help="Reader index (default: the first reader holding a card).")
@click.option("--json", "as_json", is_flag=True, help="JSON output.")
@click.pass_obj
def info(app: App, slot: int | None, as_json: bool) -> None:
    """ATR, holder, RPPS, profession, validity and tries left (no PIN try spent)."""
    from cryptography import x509

    with _clean_errors():
        session = _open(app, slot)
        try:
            pin = session.pin_status()
            certs = session.read_certificates()
            reader, atr = session.reader, session.atr
        finally:
            session.close()
        cert = x509.load_der_x509_certificate(certs.authentication)
        try:
            person = parse_practitioner(cert)
        except AuthRefused as exc:
            raise click.ClickException(str(exc)) from exc
        try:
            validate_certificate(cert, _trust(app), datetime.now(UTC))
            verdict, message = "valid", "certificat valide"
        except AuthRefused as exc:
            verdict, message = exc.reason, str(exc)
    role = role_for(person)
    data = {
        "reader": reader, "atr": atr.hex(" ").upper(),
        "card_type": person.card_type, "id_nat_ps": person.id_nat_ps, "rpps": person.rpps,
        "family_name": person.family_name, "given_name": person.given_name,
        "profession": person.profession, "role": role.value if role else None,
        "not_before": cert.not_valid_before_utc.isoformat(),
        "not_after": cert.not_valid_after_utc.isoformat(),
        "certificate": verdict, "signature_key": certs.signature is not None,
        "pin_tries_left": pin.tries_left, "pin_blocked": pin.blocked,
    }
    if as_json:
        _echo_json(data)
        return
    click.echo(f"Lecteur     : {reader}\nATR         : {data['atr']}\n"
               f"Carte       : {person.card_type}\n"
               f"Titulaire   : {person.display_name}\nidNat_PS    : {person.id_nat_ps}\n"
               f"RPPS        : {person.rpps or '-'}\nProfession  : {person.profession}\n"
               f"Validité    : du {cert.not_valid_before_utc:%d/%m/%Y} "
               f"au {cert.not_valid_after_utc:%d/%m/%Y} ({message})\n"
               f"Signature   : {'oui' if certs.signature else 'non'}\n"
               f"Essais PIN  : {_tries_text(pin)}")


def _tries_text(pin: Any) -> str:
    if pin.blocked:
        return "carte bloquée"
    return "non indiqués par la carte" if pin.tries_left is None else str(pin.tries_left)


@card.command("login")
@click.option("--slot", type=int, default=None,
              help="Reader index (default: the first reader holding a card).")
@click.option("--pin-stdin", is_flag=True, help="Read the PIN from the first line of stdin.")
@click.option("--json", "as_json", is_flag=True, help="JSON output.")
@click.pass_obj
def login(app: App, slot: int | None, pin_stdin: bool, as_json: bool) -> None:
    """Authenticate with the card and the PIN; print the practitioner and role.

    Exits with status 1 and the reason when refused.
    """
    pin = sys.stdin.readline().strip() if pin_stdin else \
        click.prompt("Code PIN", hide_input=True)
    try:
        trust = _trust(app)
        card_session = _open(app, slot)
        try:
            session = authenticate(card_session, pin, trust, audit=_audit(app),
                                   idle_timeout_s=app.settings.security.idle_timeout_s)
        except BaseException:
            card_session.close()
            raise
    except AuthRefused as exc:
        if as_json:
            _echo_json({"ok": False, "reason": exc.reason, "message": str(exc),
                        "tries_left": exc.tries_left})
            raise SystemExit(1) from exc
        raise click.ClickException(str(exc)) from exc
    except OrdoError as exc:
        if as_json:
            _echo_json({"ok": False, "reason": "card_error", "message": str(exc)})
            raise SystemExit(1) from exc
        raise click.ClickException(str(exc)) from exc
    person = session.practitioner
    session.logout()
    if as_json:
        _echo_json({"ok": True, "id_nat_ps": person.id_nat_ps, "rpps": person.rpps,
                    "family_name": person.family_name, "given_name": person.given_name,
                    "profession": person.profession, "card_type": person.card_type,
                    "role": session.role.value, "can_sign": session.can_sign})
        return
    click.echo(f"Authentifié : {person.display_name} ({person.profession}, "
               f"idNat_PS {person.id_nat_ps}) — rôle {session.role.value}"
               f"{', peut signer' if session.can_sign else ', ne peut pas signer'}.")


@click.group("pki")
def pki_group() -> None:
    """Test PKI (demo and tests only)."""


def _print_settings(paths: pki.PkiPaths) -> None:
    click.echo(f"Réglages à utiliser : --config {paths.trust_toml}")
    click.echo("ou les variables d'environnement :")
    for key, value in paths.environment().items():
        click.echo(f"  export {key}={value}")


@pki_group.command("init")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.option("--force", is_flag=True, help="Replace an existing test PKI.")
@click.option("--softhsm", is_flag=True,
              help="Also make a SoftHSM2 token per card profile in DIRECTORY/softhsm (its own "
                   "SOFTHSM2_CONF and token directory), for the PKCS#11 backend.")
def pki_init(directory: Path, force: bool, softhsm: bool) -> None:
    """Create a TEST PKI in DIRECTORY: CAs, card certificates, CRL, establishment
    certificates, and trust.toml. Never use it in production.

    With --softhsm, the test cards also become SoftHSM2 tokens (PKCS#11), labelled with
    the profile's name, user PIN 1234 (the blocked one reports its PIN locked). An
    existing PKI is kept (and its tokens made again) unless --force."""
    with _clean_errors():
        if softhsm and pki.pki_exists(directory) and not force:
            paths = pki.PkiPaths(directory.resolve())
        else:
            paths = pki.init_pki(directory, force=force)
            click.echo(f"PKI de test créée dans {paths.directory} "
                       f"(profils : {', '.join(sorted(pki.PROFILES))}).")
            _print_settings(paths)
        if softhsm:
            from drivers.card import softhsm as soft

            tokens = soft.provision(paths, paths.directory / "softhsm", force=True)
            click.echo(f"Jetons SoftHSM2 créés dans {tokens.tokens} "
                       f"(un par profil, code PIN {soft.TEST_PIN}).")
            click.echo("Pour les utiliser (backend PKCS#11) :")
            for key, value in tokens.environment().items():
                click.echo(f"  export {key}={value}")


COMMANDS = [card, pki_group]
