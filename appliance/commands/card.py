"""``ordo card ...`` (CPS card diagnostics, virtual card) and ``ordo pki init`` (test PKI).

The card reader, the trust store and the login recipe come from the composition root
(``appliance.bootstrap.App``).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click

from appliance.bootstrap import App
from appliance.cli import read_pin
from appliance.errors import OrdoError, StoreError
from appliance.services.auth import (
    AuthRefused,
    open_card,
    parse_practitioner,
    role_for,
    validate_certificate,
)
from drivers.card import pki

PROFILE_NAMES = tuple(pki.PROFILES)


@contextlib.contextmanager
def _data_dir(directory: Path) -> Iterator[None]:
    """The test PKI and the virtual cards live in files: a directory that cannot be written
    is a clean error."""
    try:
        yield
    except OSError as exc:
        raise StoreError(f"dossier inutilisable : {exc.filename or directory} "
                         f"({exc.strerror or exc})") from exc


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

    pki_dir = app.settings.data_dir / "pki"
    with _data_dir(app.settings.data_dir):
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

    with _data_dir(app.settings.data_dir):
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
    from drivers.card.pcsc import reader_states

    states = reader_states()
    vcards = {c.reader: c for c in virtual.status(app.settings.data_dir)}
    readers = []
    for slot, state in enumerate(states):
        vcard = vcards.get(state.name)
        readers.append({"slot": slot, "reader": state.name, "card": state.card_present,
                        "atr": state.atr.hex(" ").upper(),
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


@card.command("info")
@click.option("--slot", type=int, default=None,
              help="Reader index (default: the first reader holding a card).")
@click.option("--json", "as_json", is_flag=True, help="JSON output.")
@click.pass_obj
def info(app: App, slot: int | None, as_json: bool) -> None:
    """ATR, holder, RPPS, profession, validity and tries left (no PIN try spent)."""
    from appliance.services.auth import load_card_certificate

    session = open_card(app.card_reader, slot=slot)
    try:
        pin = session.pin_status()
        certs = session.read_certificates()
        reader, atr = session.reader, session.atr
    finally:
        session.close()
    cert = load_card_certificate(certs.authentication)
    person = parse_practitioner(cert)
    try:
        validate_certificate(cert, app.trust, app.clock())
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

    Exits with status 3 and the reason when refused.
    """
    pin = read_pin(pin_stdin)
    try:
        session = app.login(pin, slot=slot)
    except OrdoError as exc:
        if not as_json:
            raise
        from appliance.cli import exit_code

        _echo_json({"ok": False, "reason": getattr(exc, "reason", "card_error"),
                    "message": str(exc), "tries_left": getattr(exc, "tries_left", None)})
        raise click.exceptions.Exit(exit_code(exc)) from exc
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
    with _data_dir(directory):
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
