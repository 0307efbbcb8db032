"""ESC/POS printers selected by one URI, through python-escpos; implements ``OrderPrinter``.

URIs::

    tcp://host:9100                         raw TCP (JetDirect / "port 9100")
    usb://04b8:0e15                         USB vendor:product (needs pyusb)
    serial:///dev/ttyS0?baudrate=19200      serial line (needs pyserial)
    file:///dev/usb/lp0                     a device file (usblp); write-only

A job is built once into bytes (python-escpos ``Dummy`` with the configured profile, whose
media width is set to the medium so that images never warn), then sent in one write:

1. before sending, ``DLE EOT 4`` (and ``DLE EOT 1``) ask for the paper and online state
   (Epson ESC/POS reference, "DLE EOT: transmit real-time status"): no paper, or offline →
   nothing is sent, ``PrinterUnavailable``;
2. the job's bytes;
3. ``DLE EOT 4`` again: real-time commands are handled when they reach the printer's
   receive buffer, i.e. after every byte before them was received. Its answer is the
   printer's acknowledgement that it accepted the whole job, and says whether the paper
   ran out meanwhile. No answer within the timeout, a reset connection, or "paper end" →
   ``PrinterUnavailable``: the job stays queued and is sent again later.

On ``file://`` nothing can be read back: the job counts as done when the write and flush
succeed (``PrintReceipt.confirmed`` is False). Library and socket errors become
``PrinterError``/``PrinterUnavailable`` with a French message for the UI.

Known limit: a printer that runs out of paper *while printing* a job it had fully received
may finish it once the paper is changed, and the retried job then makes a second copy. Both
copies carry the same ID; the registry keys dispensation on that ID, so a second paper copy
cannot be dispensed twice.
"""

from __future__ import annotations

import copy
import logging
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

from escpos import printer as escpos_printer
from escpos.constants import QR_ECLEVEL_H, QR_ECLEVEL_L, QR_ECLEVEL_M, QR_ECLEVEL_Q
from escpos.escpos import Escpos
from escpos.exceptions import DeviceNotFoundError
from escpos.exceptions import Error as EscposError
from PIL import Image

from appliance.errors import PrinterError
from appliance.ports.printer import (
    PrinterState,
    PrinterStatus,
    PrinterUnavailable,
    PrintReceipt,
    PrintRequest,
)
from drivers.printer import status
from drivers.printer.layout import (
    QUIET_MODULES,
    Cut,
    Feed,
    Letterhead,
    Media,
    OrderDocument,
    Qr,
    QrSpec,
    Text,
    Ticket,
    media_for,
    qr_capacity,
    qr_matrix,
    tickets_for,
)

log = logging.getLogger(__name__)

STATUS_PRINTER, STATUS_PAPER = status.PRINTER, status.PAPER
decode_status = status.decode
CODE_PAGES = ("CP858", "CP850", "CP1252", "ISO_8859-15")
DEFAULT_TIMEOUT_S = 10.0
DEFAULT_STATUS_TIMEOUT_S = 2.0
_ECC = {"L": QR_ECLEVEL_L, "M": QR_ECLEVEL_M, "Q": QR_ECLEVEL_Q, "H": QR_ECLEVEL_H}


@dataclass(frozen=True)
class Endpoint:
    scheme: str
    host: str = ""
    port: int = 9100
    vendor: int = 0
    product: int = 0
    path: str = ""
    baudrate: int = 9600

    @property
    def readable(self) -> bool:
        return self.scheme != "file"


def parse_uri(uri: str) -> Endpoint:
    parts = urlsplit(uri)
    if parts.scheme == "tcp" and parts.hostname:
        return Endpoint("tcp", host=parts.hostname, port=parts.port or 9100)
    if parts.scheme == "usb":
        vid, _, pid = parts.netloc.partition(":")
        try:
            return Endpoint("usb", vendor=int(vid, 16), product=int(pid, 16))
        except ValueError:
            pass
    if parts.scheme == "serial" and parts.path:
        query = parse_qs(parts.query)
        try:
            baud = int(query.get("baudrate", ["9600"])[0])
        except ValueError:
            baud = 0
        if baud > 0:
            return Endpoint("serial", path=parts.path, baudrate=baud)
    if parts.scheme == "file" and parts.path:
        return Endpoint("file", path=parts.path)
    raise PrinterError(f"adresse d'imprimante invalide : {uri!r} (tcp://hôte:port, "
                       "usb://VID:PID, serial:///dev/ttyS0?baudrate=19200 ou file:///dev/...)")


@dataclass(frozen=True)
class PrinterProfile:
    """A python-escpos model name and the medium. python-escpos shares profile data between
    instances of a model, so ``apply`` gives each printer object a private copy carrying the
    medium's width and dpi (images then never warn, and never exceed the paper)."""

    model: str
    media: Media

    def check(self) -> None:
        from escpos.capabilities import get_profile

        try:
            get_profile(self.model)
        except KeyError:
            raise PrinterError(
                f"modèle d'imprimante inconnu de python-escpos : {self.model}") from None

    def apply(self, p: Escpos) -> Escpos:
        data = copy.deepcopy(p.profile.profile_data)
        data["media"] = {"width": {"pixels": self.media.width_dots,
                                   "mm": round(self.media.width_dots * 25.4 / self.media.dpi, 1)},
                         "dpi": self.media.dpi}
        p.profile.profile_data = data
        return p


def _open_transport(endpoint: Endpoint, profile: PrinterProfile, timeout: float) -> Escpos:
    """A python-escpos printer for the endpoint, connected (or ``PrinterUnavailable``)."""
    try:
        if endpoint.scheme == "tcp":
            p: Escpos = escpos_printer.Network(endpoint.host, endpoint.port, timeout=timeout,
                                               profile=profile.model)
        elif endpoint.scheme == "usb":
            p = escpos_printer.Usb(endpoint.vendor, endpoint.product,
                                   timeout=int(timeout * 1000), profile=profile.model)
        elif endpoint.scheme == "serial":
            p = escpos_printer.Serial(endpoint.path, baudrate=endpoint.baudrate,
                                      timeout=timeout, profile=profile.model)
        else:
            p = escpos_printer.File(endpoint.path, profile=profile.model)
        profile.apply(p)
        p.open()
    except (DeviceNotFoundError, OSError) as exc:
        raise PrinterUnavailable(PrinterState.UNREACHABLE,
                                 f"Imprimante injoignable ({_where(endpoint)})") from exc
    except RuntimeError as exc:  # python-escpos: missing pyusb / pyserial
        raise PrinterError(f"pilote absent pour {endpoint.scheme} : {exc}") from exc
    return p


def _where(endpoint: Endpoint) -> str:
    if endpoint.scheme == "tcp":
        return f"{endpoint.host}:{endpoint.port}"
    if endpoint.scheme == "usb":
        return f"USB {endpoint.vendor:04x}:{endpoint.product:04x}"
    return endpoint.path


def qr_image(payload: str, spec: QrSpec, width_dots: int) -> Image.Image:
    """The QR as a 1-bit image ``width_dots`` wide, centred, with a 4-module quiet zone
    above and below (sideways, what is left of the width plus the paper margin)."""
    matrix = qr_matrix(payload, spec)
    n = len(matrix)
    small = Image.new("1", (n, n), 1)
    small.putdata([0 if dark else 1 for row in matrix for dark in row])
    big = small.resize((n * spec.module, n * spec.module), Image.Resampling.NEAREST)
    quiet = QUIET_MODULES * spec.module
    canvas = Image.new("1", (width_dots, big.height + 2 * quiet), 1)
    canvas.paste(big, ((width_dots - big.width) // 2, quiet))
    return canvas


def render_job(tickets: Sequence[Ticket], profile: PrinterProfile,
               qr_mode: str = "raster") -> bytes:
    """The ESC/POS bytes of a job (``ESC @``, code page, tickets), built with python-escpos."""
    media = profile.media
    p = profile.apply(escpos_printer.Dummy(profile=profile.model))
    p.hw("INIT")
    for name in CODE_PAGES:
        try:
            p.charcode(name)
            break
        except (ValueError, EscposError):
            continue
    for ticket in tickets:
        for op in ticket:
            if isinstance(op, Text):
                p.set(align=op.align, bold=op.bold, double_width=op.double,
                      double_height=op.double, normal_textsize=not op.double)
                p.text(op.text + "\n")
            elif isinstance(op, Feed):
                p.ln(op.lines)
            elif isinstance(op, Qr):
                p.set(align="center", bold=False, normal_textsize=True)
                if qr_mode == "native":
                    p.qr(op.payload, ec=_ECC[op.spec.ecc], size=op.spec.module, native=True)
                    p.text("\n")
                else:
                    p.image(qr_image(op.payload, op.spec, media.width_dots),
                            impl="bitImageRaster", center=False)
                p.set(align="left")
            elif isinstance(op, Cut):
                p.cut()
    return p.output


class EscPosOrderPrinter:
    """The ``OrderPrinter`` port over python-escpos. No I/O until a method is called."""

    def __init__(self, uri: str, *, establishment: Letterhead, model: str = "TM-T20II",
                 media: str = "80mm", dpi: int = 203, qr: str = "raster",
                 timeout: float = DEFAULT_TIMEOUT_S,
                 status_timeout: float = DEFAULT_STATUS_TIMEOUT_S) -> None:
        self.uri = uri
        self.endpoint = parse_uri(uri)
        self.media = media_for(media, dpi)
        self.model = model
        self.qr_mode = qr
        self.establishment = establishment
        self.timeout = timeout
        self.status_timeout = status_timeout
        self._profile = PrinterProfile(model, self.media)
        self._profile.check()

    @classmethod
    def from_settings(cls, settings: object, **kwargs: float) -> EscPosOrderPrinter:
        """From ``appliance.config.Settings`` (its ``printer`` and ``establishment``)."""
        pr, est = settings.printer, settings.establishment  # type: ignore[attr-defined]
        return cls(pr.uri, establishment=Letterhead(est.name, est.finess, est.address),
                   model=pr.model, media=pr.media, dpi=pr.dpi, qr=pr.qr, **kwargs)

    @property
    def qr_capacity(self) -> int:
        return qr_capacity(self.media.width_dots)

    @property
    def description(self) -> str:
        return f"{self.uri} {self.media.name} {self.qr_mode}"

    # -- rendering ------------------------------------------------------------------------
    def tickets(self, request: PrintRequest) -> list[Ticket]:
        doc = OrderDocument(request.prescription, request.qr_payload, self.establishment,
                            request.duplicate_at)
        return tickets_for(doc, self.media)

    def render(self, request: PrintRequest) -> tuple[bytes, int]:
        tickets = self.tickets(request)
        return render_job(tickets, self._profile, self.qr_mode), len(tickets)

    # -- the wire -------------------------------------------------------------------------
    def _read_byte(self, p: Escpos, timeout: float) -> int | None:
        """One status byte, or None when the printer does not answer in time."""
        device = p.device
        try:
            if isinstance(device, socket.socket):
                device.settimeout(timeout)
                data = device.recv(1)
                if not data:
                    raise PrinterUnavailable(
                        PrinterState.UNREACHABLE,
                        "Connexion à l'imprimante perdue pendant l'impression")
                return data[0]
            data = p._read()
        except TimeoutError:
            return None
        except OSError as exc:
            raise PrinterUnavailable(
                PrinterState.UNREACHABLE,
                "Connexion à l'imprimante perdue pendant l'impression") from exc
        return data[-1] if data else None

    def _query(self, p: Escpos, kind: int, timeout: float) -> PrinterStatus:
        try:
            p._raw(status.request(kind))
        except OSError as exc:
            raise PrinterUnavailable(PrinterState.UNREACHABLE,
                                     f"Imprimante injoignable ({_where(self.endpoint)})"
                                     ) from exc
        byte = self._read_byte(p, timeout)
        if byte is None:
            return PrinterStatus(PrinterState.UNKNOWN, "pas de réponse d'état")
        return decode_status(byte, kind)

    def _status_of(self, p: Escpos) -> PrinterStatus:
        paper = self._query(p, STATUS_PAPER, self.status_timeout)
        if paper.state is PrinterState.PAPER_OUT:
            return paper
        online = self._query(p, STATUS_PRINTER, self.status_timeout)
        if online.state is PrinterState.OFFLINE:
            return online
        return paper

    def status(self) -> PrinterStatus:
        if not self.endpoint.readable:
            return PrinterStatus(PrinterState.UNKNOWN, "liaison en écriture seule")
        try:
            p = _open_transport(self.endpoint, self._profile, self.status_timeout)
        except PrinterUnavailable as exc:
            return PrinterStatus(exc.state, _where(self.endpoint))
        try:
            return self._status_of(p)
        except PrinterUnavailable as exc:
            return PrinterStatus(exc.state, str(exc))
        finally:
            p.close()

    def print_order(self, request: PrintRequest) -> PrintReceipt:
        data, tickets = self.render(request)
        started = time.monotonic()
        try:
            confirmed = self._send(data)
        except PrinterUnavailable as exc:
            if not exc.sent_some:
                raise
            # Cut off mid-job: ask again, on a new connection, so that the UI says why.
            cause = self.status()
            if cause.state in (PrinterState.PAPER_OUT, PrinterState.OFFLINE):
                raise PrinterUnavailable(
                    cause.state, f"{cause.message} : l'ordonnance n'a pas été imprimée en "
                    "entier, elle sera réimprimée") from exc
            raise
        seconds = time.monotonic() - started
        log.info("order printed", extra={"fields": {
            "job": request.job_id, "bytes": len(data), "tickets": tickets,
            "ms": round(seconds * 1000)}})
        return PrintReceipt(bytes_sent=len(data), tickets=tickets, seconds=seconds,
                            confirmed=confirmed)

    def _send(self, data: bytes) -> bool:
        """Check, send, confirm; True when the printer acknowledged (see the module doc)."""
        p = _open_transport(self.endpoint, self._profile, self.timeout)
        try:
            if self.endpoint.readable:
                before = self._status_of(p)
                if not before.can_print:
                    raise PrinterUnavailable(before.state, before.message)
            try:
                p._raw(data)
                if not self.endpoint.readable:
                    p.flush()  # type: ignore[attr-defined]
            except OSError as exc:
                raise _cut_off() from exc
            if not self.endpoint.readable:
                return False
            try:
                after = self._query(p, STATUS_PAPER, self.timeout)
            except PrinterUnavailable as exc:
                raise _cut_off() from exc
            if after.state is PrinterState.UNKNOWN:
                raise _cut_off("L'imprimante n'a pas confirmé la réception de l'ordonnance",
                               PrinterState.UNKNOWN)
            if after.state is PrinterState.PAPER_OUT:
                raise _cut_off("Plus de papier : l'ordonnance n'a pas été imprimée en entier, "
                               "elle sera réimprimée", PrinterState.PAPER_OUT)
            return True
        finally:
            p.close()


def _cut_off(message: str = "Connexion à l'imprimante perdue pendant l'impression",
             state: PrinterState = PrinterState.UNREACHABLE) -> PrinterUnavailable:
    return PrinterUnavailable(state, message, sent_some=True)
