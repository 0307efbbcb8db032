"""Printed orders: ``ordo qr verify``, ``ordo reprint``, ``ordo print pending|pdf``,
``ordo printer status|emulator`` (and ``ordo printer-emulator``).

The printer, the trust roots, the login recipe and the units of work come from the
composition root (``appliance.bootstrap.App``).
"""

from __future__ import annotations

import json
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from appliance.bootstrap import App
from appliance.cli import read_pin
from appliance.domain.prescription import format_local
from appliance.domain.prescription_id import format_id, validate_prescription_id
from appliance.errors import InvalidIdentifier, PrinterError, StoreError
from appliance.services import printing
from appliance.services.signature import InvalidOrder, verify_payload
from appliance.services.trust import load_trust_store

# A QR code holds at most 4,296 alphanumeric characters (version 40-L, ISO/IEC 18004
# table 7): ``qr verify`` reads at most this many bytes of its input (room for spaces and
# line ends around a scanned payload) and refuses anything longer unread.
MAX_QR_INPUT = 8 * 1024

# The drivers (python-escpos, fpdf2, Pillow) are imported inside the commands: they take
# seconds to import and python-escpos writes a cache file when first imported.


def _echo_json(data: Any) -> None:
    click.echo(json.dumps(data, ensure_ascii=False, indent=2))


def _prescription_id(text: str) -> str:
    try:
        return validate_prescription_id(text)
    except InvalidIdentifier as exc:
        raise InvalidIdentifier("ID", text, exc.expected, message="identifiant d'ordonnance "
                                f"invalide : {exc.expected}") from exc


# -- ordo qr verify ---------------------------------------------------------------------------
@click.group("qr")
def qr_group() -> None:
    """The QR code of printed orders."""


def _fields_dict(fields: Any) -> dict[str, str]:
    from appliance.domain.qr import EpuPayload

    out = {"prescription_id": fields.prescription_id, "rpps": fields.rpps, "am": fields.am,
           "last_name": fields.last_name, "first_names": fields.first_names,
           "birth_date": fields.birth_date.isoformat()}
    if isinstance(fields, EpuPayload):
        return {"payload": "epu", **out}
    return {"payload": "signed", **out, "issued_at": fields.issued_at.isoformat(),
            "hash": fields.content_hash.hex()}


def _print_fields(fields: Any) -> None:
    from appliance.domain.qr import EpuPayload

    click.echo(f"Ordonnance     : {format_id(fields.prescription_id)}")
    click.echo(f"RPPS           : {fields.rpps}")
    click.echo(f"N° AM          : {fields.am}")
    click.echo(f"Patient        : {fields.last_name} {fields.first_names}, "
               f"né(e) le {fields.birth_date:%d/%m/%Y}")
    if not isinstance(fields, EpuPayload):
        click.echo(f"Émise le       : {format_local(fields.issued_at)} (heure de Paris)")
        click.echo(f"Empreinte (H)  : {fields.content_hash.hex()}")


def _read_payload(payload: str | None) -> str:
    """The argument, or at most ``MAX_QR_INPUT`` bytes of standard input: a longer input
    is refused without reading the rest, and not echoed."""
    from appliance.domain.qr import MAX_INPUT

    if payload is None:
        raw = sys.stdin.buffer.read(MAX_QR_INPUT + 1)
        too_long = len(raw) > MAX_QR_INPUT
        text = raw.decode("utf-8", errors="replace")
    else:
        text, too_long = payload, len(payload) > MAX_QR_INPUT
    if too_long:
        click.echo(f"INVALID: malformed payload: qr.length: more than {MAX_QR_INPUT} bytes, "
                   f"a QR payload has at most {MAX_INPUT} characters")
        raise click.exceptions.Exit(1)
    return text.strip()


def _has_store(app: App) -> bool:
    """Whether this appliance has a database yet (``qr verify`` does not create one)."""
    return app.settings.db_path.exists()


def _lookup(app: App) -> Callable[[str], Any]:
    """The orders of this appliance's store (none when there is no store yet)."""
    if not _has_store(app):
        return lambda _pid: None
    return app.uow.prescriptions.get


def _stored_signer(app: App, text: str) -> list[Any]:
    """The certificate stored with the order the payload names, when this store has it."""
    from cryptography import x509

    from appliance.domain.qr import SignedPayload, decode_payload
    from appliance.errors import ValidationError

    try:
        decoded = decode_payload(text)
    except ValidationError:
        return []
    if not isinstance(decoded, SignedPayload) or not _has_store(app):
        return []
    pid = decoded.order.prescription_id
    row = app.uow.prescriptions.signed_rows([pid]).get(pid)
    if row is None or not row.signer_cert:
        return []
    try:
        return [x509.load_der_x509_certificate(bytes(row.signer_cert))]
    except ValueError:
        return []


@qr_group.command("verify")
@click.argument("payload", required=False)
@click.option("--trust-root", "trust_roots", multiple=True, type=click.Path(dir_okay=False),
              help="PEM bundle of trusted roots (and intermediates); repeatable. "
                   "Default: security.trust_roots.")
@click.option("--crl", "crls", multiple=True, type=click.Path(dir_okay=False),
              help="CRL file; repeatable. Default: security.crls.")
@click.option("--certificate", "certificates", multiple=True,
              type=click.Path(dir_okay=False),
              help="Signer certificates (PEM/DER), for signed payloads whose certificate "
                   "is not in this appliance's store.")
@click.option("--format-only", is_flag=True,
              help="ePU payload: check the format and the ID's key only, not the store.")
@click.option("--json", "as_json", is_flag=True, help="JSON output.")
@click.pass_obj
def verify(app: App, payload: str | None, trust_roots: tuple[str, ...], crls: tuple[str, ...],
           certificates: tuple[str, ...], format_only: bool, as_json: bool) -> None:
    """Check a scanned QR payload: prints its fields, then VALID or INVALID: reason.

    An ePU payload (EPU1*...) is checked for its format and the ID's check character,
    then against this appliance's store: the order exists, is not cancelled and carries
    the same fields. A signed payload (ORD2:..., or ORD1:... of older orders) is checked
    offline: signature, certificate chain to the trust roots, revocation; its certificate
    is looked up in the store (with the order), the trust roots and --certificate.

    Reads the payload from standard input (at most 4096 characters) when PAYLOAD is
    absent. Exit code 0 when valid, 1 otherwise.

    Example: ordo qr verify "EPU1*01M8AA52X8ECJK0TE86HARRT*751234567*..."
    """
    from appliance.domain.qr import EpuPayload, decode_payload
    from appliance.errors import ValidationError
    from appliance.services.signature import verify_epu

    text = _read_payload(payload)
    extra: dict[str, Any] = {}
    try:
        try:
            decoded = decode_payload(text)
        except ValidationError as exc:
            raise InvalidOrder(f"malformed payload: {exc}") from None
        if isinstance(decoded, EpuPayload):
            if format_only:
                fields = decoded
                extra = {"checked": "format"}
            else:
                known = verify_epu(text, _lookup(app))
                fields = known.fields
                extra = {"checked": "store", "state": known.state.value}
        else:
            security = app.settings.security
            trust = load_trust_store(trust_roots or security.trust_roots,
                                     crls or security.crls)
            known_certs = load_trust_store(certificates) if certificates else None
            signers = [*_stored_signer(app, text),
                       *([*known_certs.roots, *known_certs.intermediates] if known_certs
                         else [])]
            result = verify_payload(text, [*trust.roots, *trust.intermediates], trust.crls,
                                    certificates=signers)
            fields = result.fields
            extra = {"checked": "signature", "signer": result.signer_subject,
                     "chain": list(result.chain)}
    except InvalidOrder as exc:
        if as_json:
            _echo_json({"result": "INVALID", "reason": exc.reason,
                        "fields": _fields_dict(exc.fields) if exc.fields else None})
        else:
            if exc.fields is not None:
                _print_fields(exc.fields)
            click.echo(f"INVALID: {exc.reason}")
        raise click.exceptions.Exit(1) from exc
    if as_json:
        _echo_json({"result": "VALID", "fields": _fields_dict(fields), **extra})
        return
    _print_fields(fields)
    if "signer" in extra:
        click.echo(f"Signataire     : {extra['signer']}")
    if "state" in extra:
        from appliance.domain.prescription import STATE_LABELS_FR, State

        click.echo(f"État           : {STATE_LABELS_FR[State(extra['state'])]}")
    click.echo("VALID" + (" (format et clé de l'identifiant seulement)"
                          if extra.get("checked") == "format" else ""))


# -- ordo reprint -------------------------------------------------------------------------------
@click.command("reprint")
@click.argument("prescription_id", metavar="ID")
@click.option("--pin-stdin", is_flag=True, help="Read the PIN from the first line of stdin.")
@click.option("--slot", type=int, default=None,
              help="Reader index (default: the first reader holding a card).")
@click.option("--json", "as_json", is_flag=True, help="JSON output.")
@click.pass_obj
def reprint(app: App, prescription_id: str, pin_stdin: bool, slot: int | None,
            as_json: bool) -> None:
    """Queue a DUPLICATA of a signed order for the practitioner whose card is inserted
    (physician, nurse or staff: PIN asked); the print worker (or ``ordo print pending``)
    prints it. Audited with who and when."""
    from appliance.services import prescribing

    pid = _prescription_id(prescription_id)
    session = app.login(read_pin(pin_stdin), slot=slot)
    try:
        job = prescribing.reprint(app.uow, session, pid)
    finally:
        session.logout()
    info = app.uow.print_jobs.get(job)
    assert info is not None
    if as_json:
        _echo_json(info.as_dict())
    else:
        click.echo(f"Duplicata de l'ordonnance {format_id(pid)} mis en file d'impression "
                   f"(travail n° {job}).")


# -- ordo print pending|pdf|jobs --------------------------------------------------------------
@click.group("print")
def print_group() -> None:
    """The print queue and the PDF of an order."""


@print_group.command("pending")
@click.option("--json", "as_json", is_flag=True, help="JSON output.")
@click.pass_obj
def pending(app: App, as_json: bool) -> None:
    """Print the queued jobs once, oldest first. Exit code 1 if the printer failed or a
    job can never print (e.g. an order altered in the database after signing)."""
    queue = app.print_queue()
    report = queue.run_once()
    status = queue.status()
    if as_json:
        _echo_json({**report.as_dict(), "pending": status.pending, "failed_total": status.failed})
    else:
        for job in report.printed:
            click.echo(f"imprimé : travail n° {job}")
        for job in report.failed:
            click.echo(f"impossible à imprimer : travail n° {job} : {report.reasons[job]}")
        if report.error:
            click.echo(f"imprimante : {report.error}")
        click.echo(f"en attente : {status.pending}")
    if report.error or report.failed:
        raise click.exceptions.Exit(1)


@print_group.command("jobs")
@click.option("--id", "prescription_id", default=None, help="Only this prescription's jobs.")
@click.option("--json", "as_json", is_flag=True, help="JSON output.")
@click.pass_obj
def jobs(app: App, prescription_id: str | None, as_json: bool) -> None:
    """List print jobs."""
    pid = _prescription_id(prescription_id) if prescription_id else None
    found = app.uow.print_jobs.list(pid)
    if as_json:
        _echo_json([j.as_dict() for j in found])
        return
    for j in found:
        click.echo(f"{j.id:>5} {j.status:<7} {j.kind:<9} {format_id(j.prescription_id)} "
                   f"tentatives={j.attempts} {j.last_error or ''}".rstrip())


@print_group.command("pdf")
@click.argument("prescription_id", metavar="ID")
@click.argument("out", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--paper", type=click.Choice(["A5", "A4"]), default=None,
              help="Paper size (default: print.paper, A5).")
@click.option("--as", "actor", default="system", metavar="ID_NAT_PS",
              help="Who asks for the PDF (audit).")
@click.pass_obj
def pdf(app: App, prescription_id: str, out: Path, paper: str | None, actor: str) -> None:
    """Write the PDF/A-2b of a signed order (same content and QR as the printed order)."""
    from drivers.printer.layout import Letterhead, OrderDocument
    from drivers.printer.pdf import render_pdf

    pid = _prescription_id(prescription_id)
    letterhead = Letterhead.from_settings(app.settings)
    paper = paper or app.settings.print.paper

    def render(prescription: Any, payload: str) -> bytes:
        return render_pdf(OrderDocument(prescription, payload, letterhead), paper)

    data = printing.export_pdf(app.uow, pid, render, actor=actor, kind=app.settings.print.qr)
    try:
        out.write_bytes(data)
    except OSError as exc:
        raise StoreError(f"impossible d'écrire {out} : {exc.strerror or exc}") from exc
    click.echo(f"{out} ({len(data)} octets, {paper})")


# -- ordo printer status|emulator ---------------------------------------------------------------
@click.group("printer")
def printer_group() -> None:
    """The configured printer, and a printer emulator for tests and demonstrations."""


@printer_group.command("status")
@click.option("--json", "as_json", is_flag=True, help="JSON output.")
@click.pass_obj
def status(app: App, as_json: bool) -> None:
    """Ask the printer for its state (online, paper). Exit code 1 unless it can print."""
    printer = app.order_printer()
    state = printer.status()
    if as_json:
        _echo_json({"uri": app.settings.printer.uri, "media": app.settings.printer.media,
                    "state": state.state.value, "message": state.message,
                    "qr_capacity": printer.qr_capacity})
    else:
        click.echo(f"{app.settings.printer.uri} ({app.settings.printer.media}) : "
                   f"{state.message}")
    if not state.can_print:
        raise click.exceptions.Exit(1)


def _emulator_options(func: Callable[..., Any]) -> Callable[..., Any]:
    options = [
        click.option("--port", type=int, default=9100, show_default=True,
                     help="TCP port (0: any free port, printed at start)."),
        click.option("--host", default="127.0.0.1", show_default=True),
        click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path),
                     default=None, help="Write job-NNNN.bin/.png/.json here."),
        click.option("--media", type=click.Choice(["58mm", "80mm", "label62"]), default=None,
                     help="Paper width (default: printer.media)."),
        click.option("--control-port", type=int, default=None,
                     help="Port of the line control channel (paper-out, offline...)."),
        click.option("--paper-out", is_flag=True, help="Start without paper."),
        click.option("--paper-after", type=int, default=None, metavar="DOTS",
                     help="The roll ends after DOTS dot lines."),
        click.option("--stall", is_flag=True,
                     help="On paper out, stop reading instead of resetting the connection."),
        click.option("--offline", is_flag=True, help="Start offline (cover open)."),
        click.option("--reset-after", type=int, default=None, metavar="BYTES",
                     help="Reset the next job's connection after BYTES bytes."),
        click.option("--exit-after", type=int, default=None, metavar="JOBS",
                     help="Stop after this many jobs (scripts and tests)."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def _run_emulator(app: App, port: int, host: str, out_dir: Path | None, media: str | None,
                  control_port: int | None, paper_out: bool, paper_after: int | None,
                  stall: bool, offline: bool, reset_after: int | None,
                  exit_after: int | None) -> None:
    from drivers.printer.emulator import PrinterEmulator
    from drivers.printer.layout import media_for

    chosen = media_for(media or app.settings.printer.media, app.settings.printer.dpi)
    emulator = PrinterEmulator(host, port, width_dots=chosen.width_dots, out_dir=out_dir,
                               control_port=control_port)
    mode = "stall" if stall else "drop"
    try:
        emulator.start()
    except OSError as exc:
        raise PrinterError(f"émulateur d'imprimante impossible à démarrer (port {port}"
                           f"{f', dossier {out_dir}' if out_dir else ''}) : "
                           f"{exc.strerror or exc}") from exc
    if paper_out:
        emulator.paper_out(mode)
    if paper_after is not None:
        emulator.paper_after(paper_after, mode)
    if offline:
        emulator.set_offline(True)
    if reset_after is not None:
        emulator.reset_after(reset_after)
    control = f", contrôle sur le port {emulator.control_port}" if control_port is not None else ""
    click.echo(f"Émulateur d'imprimante {chosen.name} ({chosen.width_dots} points) à l'écoute "
               f"sur {emulator.uri}{control}", err=False)
    sys.stdout.flush()
    stop = threading.Event()
    try:
        seen = 0
        while not stop.is_set():
            jobs_now = emulator.wait_for_jobs(seen + 1, timeout=0.5)
            for job in jobs_now[seen:]:
                click.echo(f"travail {job.number} : {len(job.raw)} octets, "
                           f"{len(job.tickets)} ticket(s), {job.end}, "
                           f"{len(job.qr_texts)} QR, {job.duration_ms} ms")
            seen = len(jobs_now)
            if exit_after is not None and seen >= exit_after:
                break
    except KeyboardInterrupt:
        pass
    finally:
        emulator.stop()


@printer_group.command("emulator")
@_emulator_options
@click.pass_obj
def emulator_cmd(app: App, **options: Any) -> None:
    """Run a TCP ESC/POS printer emulator (saves, renders and decodes every job)."""
    _run_emulator(app, **options)


@click.command("printer-emulator")
@_emulator_options
@click.pass_obj
def printer_emulator(app: App, **options: Any) -> None:
    """Same as ``ordo printer emulator``."""
    _run_emulator(app, **options)


COMMANDS = [qr_group, reprint, print_group, printer_group, printer_emulator]
