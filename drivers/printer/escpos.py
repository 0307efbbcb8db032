"""ESC/POS printers selected by one URI, through python-escpos; implements ``OrderPrinter``.

URIs::

    tcp://host:9100                         raw TCP (JetDirect / "port 9100")
    usb://04b8:0e15                         USB vendor:product (needs pyusb)
    serial:///dev/ttyS0?baudrate=19200      serial line (needs pyserial)
    file:///dev/usb/lp0                     a device file (usblp); write-only

A job is built once into bytes (the bytes python-escpos writes for each command with the
configured profile, whose media width is set to the medium so that images never warn; see
``render_job``), then sent in one write:

1. before sending, ``DLE EOT 4`` and ``DLE EOT 1``, in one write, ask for the paper and
   online state (Epson ESC/POS reference, "DLE EOT: transmit real-time status"): no paper,
   or offline → nothing is sent, ``PrinterUnavailable``;
2. the job's bytes, followed in the same write by
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
import functools
import logging
import socket
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any
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
    BARCODE_QUIET_MODULES,
    QUIET_MODULES,
    Barcodes,
    Cut,
    Feed,
    Letterhead,
    Media,
    OrderDocument,
    Qr,
    QrSpec,
    Rule,
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
        p.profile.profile_data = _profile_data(self, p.profile.profile_data)
        return p


_PROFILE_DATA: dict[PrinterProfile, dict[str, Any]] = {}


def _profile_data(profile: PrinterProfile, shared: dict[str, Any]) -> dict[str, Any]:
    """The model's profile data with the medium, copied once per profile (python-escpos
    only reads it)."""
    data = _PROFILE_DATA.get(profile)
    if data is None:
        data = copy.deepcopy(shared)
        data["media"] = {"width": {"pixels": profile.media.width_dots,
                                   "mm": round(profile.media.width_dots * 25.4
                                               / profile.media.dpi, 1)},
                         "dpi": profile.media.dpi}
        _PROFILE_DATA[profile] = data
    return data


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
        if endpoint.scheme == "tcp" and isinstance(p.device, socket.socket):
            # A job ends with a short segment (the acknowledgement request): sent at once,
            # not held back until the printer acknowledges the segments before it.
            p.device.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
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


SMALL_LINE_DOTS = 22  # Font B (9 x 17 dots) line pitch, set with ESC 3
RULE_DOTS = {False: (6, 1, 6), True: (6, 3, 6)}  # white, black, white dot lines


def qr_image(payload: str, spec: QrSpec, width_dots: int) -> Image.Image:
    """The QR as a 1-bit image with a 4-module quiet zone above and below; as wide as the
    code and its side quiet zone when they fit ``width_dots`` (the printer centres it),
    else as wide as ``width_dots``."""
    matrix = qr_matrix(payload, spec)
    n = len(matrix)
    small = Image.new("1", (n, n), 1)
    small.putdata([0 if dark else 1 for row in matrix for dark in row])
    big = small.resize((n * spec.module, n * spec.module), Image.Resampling.NEAREST)
    quiet = QUIET_MODULES * spec.module
    width = min(width_dots, -(-(big.width + 2 * quiet) // 8) * 8)
    canvas = Image.new("1", (width, big.height + 2 * quiet), 1)
    canvas.paste(big, ((width - big.width) // 2, quiet))
    return canvas


@functools.lru_cache(maxsize=64)
def qr_raster(payload: str, spec: QrSpec, width_dots: int) -> bytes:
    """``raster_bytes(qr_image(...))``, built from the modules with integer and bytes
    operations (no image): each row of modules becomes one row of dots, repeated
    ``spec.module`` times. Kept for the last orders: the kiosk prepares the code of the
    order under review before it is signed (``EscPosOrderPrinter.prepare``), and reprints
    print the same code again."""
    matrix = qr_matrix(payload, spec)
    n, module = len(matrix), spec.module
    quiet = QUIET_MODULES * module
    size = n * module
    width = min(width_dots, -(-(size + 2 * quiet) // 8) * 8)
    width_bytes = (width + 7) // 8
    shift = width_bytes * 8 - (width - size) // 2 - size  # white dots right of the code
    dots = (1 << module) - 1
    rows = []
    for row in matrix:
        bits = 0
        for dark in row:
            bits = (bits << module) | (dots if dark else 0)
        rows.append((bits << shift).to_bytes(width_bytes, "big") * module)
    white = bytes(width_bytes * quiet)
    return _raster(width_bytes, [white, *rows, white], size + 2 * quiet)


def _raster(width_bytes: int, rows: Sequence[bytes], height: int) -> bytes:
    """``GS v 0`` commands for rows of dots (1 = black), in ``RASTER_FRAGMENT``-line
    fragments, exactly as ``raster_bytes`` cuts an image."""
    data = b"".join(rows)
    out = bytearray()
    step = RASTER_FRAGMENT * width_bytes
    for top in range(0, height, RASTER_FRAGMENT):
        lines = min(RASTER_FRAGMENT, height - top)
        out += b"\x1dv0\x00" + width_bytes.to_bytes(2, "little") + \
            lines.to_bytes(2, "little") + data[top * width_bytes:top * width_bytes + step]
    return bytes(out)


def barcode_image(op: Barcodes, width_dots: int) -> Image.Image:
    """Code 128 symbols side by side, each with its quiet zone, centred in ``width_dots``."""
    quiet = BARCODE_QUIET_MODULES * op.module
    widths = [len(bars) * op.module + 2 * quiet for _, bars in op.codes]
    canvas = Image.new("1", (width_dots, op.height), 1)
    x = max(0, (width_dots - sum(widths)) // 2)
    for (_, bars), width in zip(op.codes, widths, strict=True):
        left = x + quiet
        for i, bar in enumerate(bars):
            if bar == "1":
                canvas.paste(0, (left + i * op.module, 0, left + (i + 1) * op.module,
                                 op.height))
        x += width
    return canvas


def rule_image(op: Rule, width_dots: int) -> Image.Image:
    above, black, below = RULE_DOTS[op.heavy]
    canvas = Image.new("1", (width_dots, above + black + below), 1)
    canvas.paste(0, (0, above, width_dots, above + black))
    return canvas


RASTER_FRAGMENT = 960  # lines per GS v 0 command, as python-escpos splits images


def raster_bytes(img: Image.Image) -> bytes:
    """``GS v 0`` commands (Epson ESC/POS, "print raster bit image") for a 1-bit image in
    which 0 is black, in fragments of ``RASTER_FRAGMENT`` lines. Built here rather than
    with python-escpos's ``image()``, which converts and checks each image again (about
    1 ms per image: a ticket has eight)."""
    img = img.convert("1")
    width_bytes = (img.width + 7) // 8
    if img.width % 8:  # whole bytes per row, padded with white
        padded = Image.new("1", (width_bytes * 8, img.height), 1)
        padded.paste(img, (0, 0))
        img = padded
    out = bytearray()
    for top in range(0, img.height, RASTER_FRAGMENT):
        part = img.crop((0, top, img.width, min(img.height, top + RASTER_FRAGMENT)))
        out += b"\x1dv0\x00" + width_bytes.to_bytes(2, "little") + \
            part.height.to_bytes(2, "little") + part.tobytes().translate(_INVERT)
    return bytes(out)


_INVERT = bytes(255 - b for b in range(256))  # PIL: 1 is white; GS v 0: 1 is a black dot


@functools.lru_cache(maxsize=64)
def _barcode_raster(op: Barcodes, width_dots: int) -> bytes:
    """A prescriber's codes: the same all day, made once."""
    return raster_bytes(barcode_image(op, width_dots))


@functools.lru_cache(maxsize=8)
def _rule_raster(op: Rule, width_dots: int) -> bytes:
    return raster_bytes(rule_image(op, width_dots))


class _CharMap(dict[int, str]):
    """``str.translate`` table of a code page: each character to the byte python-escpos
    writes for it (as a one-character latin-1 string), filled as characters are met."""

    def __init__(self, encoder: Any, encoding: str) -> None:
        super().__init__()
        self._map = encoder._get_codepage_char_map(encoding)
        self._encode = encoder._encode_char

    def __missing__(self, code: int) -> str:
        value = self[code] = chr(self._encode(chr(code), self._map, "?"))
        return value


class _Phrasebook:
    """The bytes python-escpos emits for the commands of a job, on one printer profile:
    each command runs once on a ``Dummy`` and its bytes are kept (``set``, line spacing,
    cut: they depend on their arguments and the profile only). Text is encoded with the
    code page's table; when no code page of ``CODE_PAGES`` can be fixed, python-escpos
    switches code pages as it goes, the text runs on the dummy in job order and the book
    serves one job only. Thread-safe."""

    def __init__(self, profile: PrinterProfile) -> None:
        self._lock = threading.Lock()
        p = self._p = profile.apply(escpos_printer.Dummy(profile=profile.model))
        p.hw("INIT")
        for name in CODE_PAGES:
            try:
                p.charcode(name)
                break
            except (ValueError, EscposError):
                continue
        self.preamble = self._take()
        self.fixed = bool(p.magic.disabled and p.magic.encoding)
        self._chars = _CharMap(p.magic.encoder, p.magic.encoding) if self.fixed else None
        self._commands: dict[tuple[Any, ...], bytes] = {}

    def _take(self) -> bytes:
        out = self._p.output
        self._p.clear()
        return out

    def run(self, fn: Callable[[Escpos], object]) -> bytes:
        """The bytes of ``fn(printer)`` (not kept)."""
        with self._lock:
            fn(self._p)
            return self._take()

    def command(self, key: tuple[Any, ...], fn: Callable[[Escpos], object]) -> bytes:
        """The bytes of ``fn(printer)``, kept under ``key``."""
        out = self._commands.get(key)
        if out is None:
            out = self._commands[key] = self.run(fn)
        return out

    def text(self, text: str) -> bytes:
        if self._chars is not None:
            return text.translate(self._chars).encode("latin-1")
        return self.run(lambda p: p.text(text))

    def style(self, op: Text) -> bytes:
        return self.command(("set", op.align, op.bold, op.double, op.small), lambda p: p.set(
            align=op.align, bold=op.bold, double_width=op.double, double_height=op.double,
            normal_textsize=not op.double, font="b" if op.small else "a"))


@functools.lru_cache(maxsize=8)
def _shared_book(profile: PrinterProfile) -> _Phrasebook:
    return _Phrasebook(profile)


def _book(profile: PrinterProfile) -> _Phrasebook:
    book = _shared_book(profile)
    return book if book.fixed else _Phrasebook(profile)


def render_job(tickets: Sequence[Ticket], profile: PrinterProfile,
               qr_mode: str = "raster") -> bytes:
    """The ESC/POS bytes of a job (``ESC @``, code page, tickets), as python-escpos writes
    them (see ``_Phrasebook``); the QR, barcode and rule rasters are kept between jobs."""
    width = profile.media.width_dots
    book = _book(profile)
    left = book.command(("set", "left"), lambda p: p.set(align="left"))
    out = [book.preamble]
    small = False
    for ticket in tickets:
        for op in ticket:
            if isinstance(op, Text):
                if op.small != small:  # Font B with its own line pitch, or back to Font A
                    spacing = SMALL_LINE_DOTS if op.small else None
                    out.append(book.command(("spacing", spacing),
                                            lambda p, s=spacing: p.line_spacing(s)))
                    small = op.small
                out += (book.style(op), book.text(op.text + "\n"))
            elif isinstance(op, Feed):
                out.append(book.text("\n" * op.lines) if op.lines > 0 else b"")
            elif isinstance(op, Rule):
                out += (left, _rule_raster(op, width))
            elif isinstance(op, Barcodes):
                out += (left, _barcode_raster(op, width))
            elif isinstance(op, Qr):
                out.append(book.command(("set", "qr"), lambda p: p.set(
                    align="center", bold=False, normal_textsize=True)))
                if qr_mode == "native":
                    out.append(book.run(lambda p, q=op: (
                        p.qr(q.payload, ec=_ECC[q.spec.ecc], size=q.spec.module, native=True),
                        p.text("\n"))))
                else:
                    out.append(qr_raster(op.payload, op.spec, width))
                out.append(left)
            elif isinstance(op, Cut):
                out.append(book.command(("cut",), lambda p: p.cut()))
    return b"".join(out)


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
        pr = settings.printer  # type: ignore[attr-defined]
        return cls(pr.uri, establishment=Letterhead.from_settings(settings),
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

    def prepare(self, request: PrintRequest) -> None:
        """Render the job once and drop it: its QR raster, barcodes and wrapped lines are
        then kept (see ``render_job``)."""
        self.render(request)

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

    def _status_of(self, p: Escpos) -> PrinterStatus:
        """Paper, then online state. Both requests go in one write and the two answers
        come back in order (real-time commands are answered as they arrive): one round
        trip to the printer instead of two."""
        try:
            p._raw(status.request(STATUS_PAPER) + status.request(STATUS_PRINTER))
        except OSError as exc:
            raise PrinterUnavailable(PrinterState.UNREACHABLE,
                                     f"Imprimante injoignable ({_where(self.endpoint)})"
                                     ) from exc
        answers = []
        for kind in (STATUS_PAPER, STATUS_PRINTER):
            byte = self._read_byte(p, self.status_timeout)
            answers.append(PrinterStatus(PrinterState.UNKNOWN, "pas de réponse d'état")
                           if byte is None else decode_status(byte, kind))
            if byte is None:
                break  # no answer in time: the other one is not waited for either
        paper = answers[0]
        if paper.state is PrinterState.PAPER_OUT:
            return paper
        if answers[-1].state is PrinterState.OFFLINE:
            return answers[-1]
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
            final = status.request(STATUS_PAPER) if self.endpoint.readable else b""
            try:
                p._raw(data + final)  # the job and its acknowledgement request, one write
                if not self.endpoint.readable:
                    p.flush()  # type: ignore[attr-defined]
            except OSError as exc:
                raise _cut_off() from exc
            if not self.endpoint.readable:
                return False
            try:
                byte = self._read_byte(p, self.timeout)
            except PrinterUnavailable as exc:
                raise _cut_off() from exc
            after = (decode_status(byte, STATUS_PAPER) if byte is not None
                     else PrinterStatus(PrinterState.UNKNOWN, "pas de réponse d'état"))
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
