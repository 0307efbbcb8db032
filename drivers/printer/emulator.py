"""A TCP ESC/POS printer emulator: takes jobs like a port-9100 printer and shows what it printed.

Each connection that prints something is a job. The emulator keeps its raw bytes, renders
its tickets (split at each cut) to images — raster images exact (``GS v 0``, ``ESC *``,
``GS ( L``), native QR codes (``GS ( k``) redrawn with ``qrcode``, text approximated in a
12 × 24 dot cell per character (9 × 17 in Font B) — and decodes the QR codes and barcodes
of each ticket with zxing-cpp
(a development dependency: without it, ``qr`` stays empty). With an output directory it
writes ``job-NNNN.bin``, ``job-NNNN-T.png`` per ticket and ``job-NNNN.json``.

It answers real-time status (``DLE EOT 1/2/3/4``), ``GS r 1`` and ``GS I`` like an Epson
TM printer, and acts out trouble, set by the Python API, by the command line flags, or by a
line on the control port (``--control-port``)::

    paper-out [drop|stall]       no paper now; a job in progress stops
    paper-after DOTS [drop|stall]  the roll ends after DOTS more dot lines
    paper-in                     a new roll (a stalled connection is dropped)
    near-end on|off              paper near-end sensor
    offline / online             cover open: answers status, prints nothing
    power-off / power-on         the port refuses connections
    reset-after BYTES            the next job's connection is reset after BYTES bytes
    status                       the state, as JSON
    jobs                         the jobs so far, as JSON

When the paper runs out mid-job the ticket is cut short and the job is marked incomplete;
``drop`` resets the connection at once, ``stall`` stops reading it (the sender's final
status request is never answered) until a new roll is loaded, then drops it. Either way
the unfinished part is thrown away: the host must send the job again.

Connections are served one at a time, as most network printers do.
"""

from __future__ import annotations

import contextlib
import json
import logging
import select
import socket
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import qrcode
from PIL import Image, ImageDraw, ImageFont

log = logging.getLogger(__name__)

ESC, GS, DLE = 0x1B, 0x1D, 0x10
CHAR_W, CHAR_H = 12, 24  # Font A at 180/203 dpi
FONT_B_W, FONT_B_H = 9, 17
DEFAULT_LINE = 30  # dots per text line (24-dot glyphs + spacing)
DEFAULT_MARGIN = 32  # white paper on each side of the printable width, in the image
# ESC t n → Python codec (Epson code page table).
CODE_PAGES = {0: "cp437", 2: "cp850", 3: "cp860", 4: "cp863", 5: "cp865", 16: "cp1252",
              17: "cp866", 18: "cp852", 19: "cp858", 40: "iso8859_15"}
_ONE_ARG_ESC = set(b" !-3EGJMRUVacdeflrtu{=?%")
_ONE_ARG_GS = set(b"!BHIabfhrwTgj")
_FONT_PATHS = ("/usr/share/fonts/truetype/dejavu/DejaVuSansMono.ttf",
               "/usr/share/fonts/dejavu/DejaVuSansMono.ttf")


class PaperOut(Exception):
    """The roll ended (or the cover is open) in the middle of a job."""


def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    for path in _FONT_PATHS:
        with contextlib.suppress(OSError):
            return ImageFont.truetype(path, size)
    return ImageFont.load_default(size=size)


# -- printer state ------------------------------------------------------------------------------
@dataclass
class PrinterModel:
    """What the emulated printer is going through. Guarded by the emulator's lock."""

    powered: bool = True
    cover_open: bool = False
    paper_out: bool = False
    near_end: bool = False
    paper_left: int | None = None  # dot lines before the roll ends; None = endless
    on_paper_out: str = "drop"  # drop | stall
    reset_after: int | None = None  # one shot: reset the next job's connection after N bytes
    paper_loads: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {"powered": self.powered, "cover_open": self.cover_open,
                "paper_out": self.paper_out, "near_end": self.near_end,
                "paper_left": self.paper_left, "on_paper_out": self.on_paper_out,
                "reset_after": self.reset_after}

    def status_byte(self, n: int) -> int:
        """DLE EOT n (Epson ESC/POS reference): bits 1 and 4 always set."""
        value = 0x12
        if n == 1 and (self.cover_open or self.paper_out):
            value |= 0x08  # offline
        elif n == 2:
            value |= (0x04 if self.cover_open else 0) | (0x20 if self.paper_out else 0)
        elif n == 4:
            value |= (0x0C if self.near_end or self.paper_out else 0)
            value |= 0x60 if self.paper_out else 0
        return value

    def sensor_byte(self) -> int:
        """GS r 1: bits 0-1 near end, bits 2-3 paper end."""
        return (0x03 if self.near_end or self.paper_out else 0) | (0x0C if self.paper_out else 0)


# -- rendering ----------------------------------------------------------------------------
@dataclass
class RenderedTicket:
    image: Image.Image
    text: list[str]
    cut: bool
    qr: list[dict[str, Any]] = field(default_factory=list)

    def decode_qr(self) -> list[dict[str, Any]]:
        try:
            import zxingcpp
        except ImportError:
            log.warning("zxing-cpp is not installed: QR codes are not decoded")
            return []
        found = []
        for result in zxingcpp.read_barcodes(self.image):
            found.append({"text": result.text, "format": str(result.format),
                          "ec_level": getattr(result, "ec_level", ""),
                          "valid": bool(getattr(result, "valid", True))})
        self.qr = found
        return found


@dataclass
class _Style:
    bold: bool = False
    underline: bool = False
    width: int = 1
    height: int = 1
    font_b: bool = False
    align: int = 0  # 0 left, 1 centre, 2 right
    codec: str = "cp437"
    line: int = DEFAULT_LINE


class Interpreter:
    """Executes ESC/POS bytes: builds tickets, spends paper, answers status requests.

    ``feed`` may raise ``PaperOut``; bytes after that point are not executed.
    """

    def __init__(self, width_dots: int, model: PrinterModel | None = None, *,
                 respond: Callable[[bytes], None] = lambda _b: None,
                 margin: int = DEFAULT_MARGIN, lock: threading.Lock | None = None) -> None:
        self.width = width_dots
        self.margin = margin
        self.model = model or PrinterModel()
        self.respond = respond
        self.lock = lock or threading.Lock()
        self.buf = bytearray()
        self.style = _Style()
        self.tickets: list[RenderedTicket] = []
        self.unknown: list[str] = []
        self.status_queries = 0
        self.printed_dots = 0
        self._strips: list[Image.Image] = []
        self._text: list[str] = []
        self._segments: list[tuple[str, _Style]] = []
        self._band: Image.Image | None = None
        self._qr: dict[int, bytes] = {}
        self._graphics: Image.Image | None = None
        self._fonts: dict[int, Any] = {}
        self._glyphs: dict[tuple[str, bool, bool, int, int], Image.Image] = {}

    # -- input ------------------------------------------------------------------------------
    def feed(self, data: bytes) -> None:
        self.buf += data
        pos = 0
        try:
            while pos < len(self.buf):
                used = self._step(pos)
                if used == 0:
                    break
                pos += used
        finally:
            del self.buf[:pos]

    def finish(self) -> list[RenderedTicket]:
        """End of job: what is left becomes a last (uncut) ticket."""
        with contextlib.suppress(PaperOut):
            self._flush_line(force=False)
        self._end_ticket(cut=False)
        return self.tickets

    @property
    def printed(self) -> bool:
        return bool(self.tickets or self._strips or self._segments)

    # -- parsing (returns the bytes used, 0 when the command is incomplete) -----------------
    def _need(self, pos: int, n: int) -> bool:
        return len(self.buf) - pos >= n

    def _step(self, pos: int) -> int:
        b = self.buf
        c = b[pos]
        if c == DLE:
            return self._dle(pos)
        if c == ESC:
            return self._esc(pos)
        if c == GS:
            return self._gs(pos)
        if c == 0x0A:
            self._flush_line(force=True)
            return 1
        if c == 0x0C:
            self._flush_line(force=False)
            return 1
        if c < 0x20:
            return 1
        end = pos
        while end < len(b) and b[end] >= 0x20:
            end += 1
        text = bytes(b[pos:end]).decode(self.style.codec, errors="replace")
        self._segments.append((text, _copy_style(self.style)))
        return end - pos

    def _dle(self, pos: int) -> int:
        if not self._need(pos, 3):
            return 0
        cmd, n = self.buf[pos + 1], self.buf[pos + 2]
        if cmd == 0x04:
            self.status_queries += 1
            with self.lock:
                byte = self.model.status_byte(n)
            self.respond(bytes([byte]))
            return 3
        if cmd == 0x14:  # DLE DC4 fn ...: 5 bytes, 10 for fn 8 (clear buffers)
            size = 10 if n == 8 else 5
            return size if self._need(pos, size) else 0
        return 3  # DLE ENQ n and others

    def _esc(self, pos: int) -> int:
        if not self._need(pos, 2):
            return 0
        b, cmd = self.buf, self.buf[pos + 1]
        s = self.style
        if cmd == ord("@"):
            self._flush_line(force=False)
            self.style = _Style()
            return 2
        if cmd in (ord("2"), ord("i"), ord("m"), ord("<")):
            if cmd == ord("2"):
                s.line = DEFAULT_LINE
            return 2
        if cmd == ord("*"):
            if not self._need(pos, 5):
                return 0
            m, count = b[pos + 2], b[pos + 3] | b[pos + 4] << 8
            rows = 3 if m in (32, 33) else 1
            size = 5 + count * rows
            if not self._need(pos, size):
                return 0
            self._column_band(bytes(b[pos + 5 : pos + size]), count, rows, m)
            return size
        if cmd == ord("p"):
            return 5 if self._need(pos, 5) else 0
        if cmd in (ord("$"), ord("\\")):
            return 4 if self._need(pos, 4) else 0
        if cmd == ord("c"):
            return 4 if self._need(pos, 4) else 0
        if cmd == ord("D"):
            end = b.find(0, pos + 2)
            return end - pos + 1 if end >= 0 else 0
        if cmd in _ONE_ARG_ESC:
            if not self._need(pos, 3):
                return 0
            n = b[pos + 2]
            self._esc_arg(cmd, n)
            return 3
        self.unknown.append(f"ESC {cmd:#04x}")
        return 2

    def _esc_arg(self, cmd: int, n: int) -> None:
        s = self.style
        if cmd == ord("!"):
            s.font_b = bool(n & 0x01)
            s.bold = bool(n & 0x08)
            s.height = 2 if n & 0x10 else 1
            s.width = 2 if n & 0x20 else 1
            s.underline = bool(n & 0x80)
        elif cmd == ord("E"):
            s.bold = bool(n & 1)
        elif cmd == ord("-"):
            s.underline = n in (1, 2, 49, 50)
        elif cmd == ord("a"):
            s.align = n - 48 if n >= 48 else n
        elif cmd == ord("M"):
            s.font_b = n in (1, 49)
        elif cmd == ord("t"):
            s.codec = CODE_PAGES.get(n, "cp437")
            if n not in CODE_PAGES:
                self.unknown.append(f"ESC t {n}")
        elif cmd == ord("3"):
            s.line = max(n, 1)
        elif cmd == ord("d"):
            self._flush_line(force=False)
            self._advance(n * s.line)
        elif cmd == ord("J"):
            self._flush_line(force=False)
            self._advance(n)

    def _gs(self, pos: int) -> int:
        if not self._need(pos, 2):
            return 0
        b, cmd = self.buf, self.buf[pos + 1]
        if cmd == ord("V"):
            if not self._need(pos, 3):
                return 0
            m = b[pos + 2]
            size = 4 if m in (65, 66, 97, 98, 103, 104) else 3
            if not self._need(pos, size):
                return 0
            self._flush_line(force=False)
            if size == 4:
                self._advance(b[pos + 3])
            self._end_ticket(cut=True)
            return size
        if cmd == ord("v"):
            if not self._need(pos, 8):
                return 0
            m = b[pos + 3]
            xb, y = b[pos + 4] | b[pos + 5] << 8, b[pos + 6] | b[pos + 7] << 8
            size = 8 + xb * y
            if not self._need(pos, size):
                return 0
            img = Image.frombytes("1", (xb * 8, y), bytes(b[pos + 8 : pos + size]), "raw", "1;I")
            scale = {0: (1, 1), 1: (2, 1), 2: (1, 2), 3: (2, 2)}.get(m % 48, (1, 1))
            if scale != (1, 1):
                img = img.resize((img.width * scale[0], img.height * scale[1]))
            self._flush_line(force=False)
            self._place(img)
            return size
        if cmd == ord("("):
            if not self._need(pos, 5):
                return 0
            fn = b[pos + 2]
            length = b[pos + 3] | b[pos + 4] << 8
            size = 5 + length
            if not self._need(pos, size):
                return 0
            body = bytes(b[pos + 5 : size + pos])
            if fn == ord("k"):
                self._two_d(body)
            elif fn == ord("L"):
                self._graphics_cmd(body)
            return size
        if cmd == ord("r") or cmd == ord("I"):
            if not self._need(pos, 3):
                return 0
            n = b[pos + 2]
            self.status_queries += 1
            if cmd == ord("r"):
                with self.lock:
                    answer = bytes([self.model.sensor_byte()]) if n in (1, 49) else b"\x00"
            else:
                answer = b"_ORDO-EMU\x00" if n >= 65 else b"\x20"
            self.respond(answer)
            return 3
        if cmd in (ord("L"), ord("W"), ord("$"), ord("\\")):
            return 4 if self._need(pos, 4) else 0
        if cmd == ord("k"):
            return self._barcode_skip(pos)
        if cmd in _ONE_ARG_GS:
            if not self._need(pos, 3):
                return 0
            n = b[pos + 2]
            if cmd == ord("!"):
                self.style.width = (n >> 4 & 7) + 1
                self.style.height = (n & 7) + 1
            return 3
        self.unknown.append(f"GS {cmd:#04x}")
        return 2

    def _barcode_skip(self, pos: int) -> int:
        b = self.buf
        if not self._need(pos, 3):
            return 0
        m = b[pos + 2]
        if m <= 6:
            end = b.find(0, pos + 3)
            return end - pos + 1 if end >= 0 else 0
        if not self._need(pos, 4):
            return 0
        size = 4 + b[pos + 3]
        self.unknown.append("GS k (barcode not rendered)")
        return size if self._need(pos, size) else 0

    # -- 2D codes and graphics --------------------------------------------------------------
    def _two_d(self, body: bytes) -> None:
        if len(body) < 2 or body[0] != 49:  # cn = 49: QR Code
            return
        fn, params = body[1], body[2:]
        if fn in (65, 67, 69) and params:
            self._qr[fn] = params
        elif fn == 80 and params:
            self._qr[80] = params[1:]  # m = 48, then the data
        elif fn == 81:
            data = self._qr.get(80, b"")
            module = self._qr.get(67, b"\x03")[0]
            ecc = {48: qrcode.constants.ERROR_CORRECT_L, 49: qrcode.constants.ERROR_CORRECT_M,
                   50: qrcode.constants.ERROR_CORRECT_Q, 51: qrcode.constants.ERROR_CORRECT_H
                   }.get(self._qr.get(69, b"\x30")[0], qrcode.constants.ERROR_CORRECT_L)
            code = qrcode.QRCode(error_correction=ecc, box_size=module, border=0)
            code.add_data(data.decode("latin-1"))
            code.make(fit=True)
            img = code.make_image().get_image().convert("1")
            self._flush_line(force=False)
            self._place(img)

    def _graphics_cmd(self, body: bytes) -> None:
        if len(body) < 2:
            return
        fn = body[1]
        if fn == 112 and len(body) >= 10:  # store raster: m fn a bx by c xL xH yL yH d...
            x, y = body[6] | body[7] << 8, body[8] | body[9] << 8
            data = body[10 : 10 + ((x + 7) // 8) * y]
            self._graphics = Image.frombytes("1", ((x + 7) // 8 * 8, y), data, "raw", "1;I")
        elif fn == 50 and self._graphics is not None:
            self._flush_line(force=False)
            self._place(self._graphics)

    def _column_band(self, data: bytes, count: int, rows: int, m: int) -> None:
        height = rows * 8
        band = Image.new("1", (count, height), 1)
        pixels = band.load()
        for x in range(count):
            for r in range(rows):
                byte = data[x * rows + r]
                for bit in range(8):
                    if byte & (0x80 >> bit):
                        pixels[x, r * 8 + bit] = 0
        if m in (0, 32):  # single density: each column is 2 dots wide
            band = band.resize((count * 2, height))
        if rows == 1:  # 8-dot bands are printed at double height
            band = band.resize((band.width, height * 3))
        self._band = band

    # -- paper ------------------------------------------------------------------------------
    def _spend(self, img: Image.Image) -> Image.Image:
        """Paper for ``img``: crops it where the roll ends and raises ``PaperOut`` then."""
        with self.lock:
            if self.model.cover_open or self.model.paper_out:
                raise PaperOut
            left = self.model.paper_left
            if left is not None and img.height >= left:
                self.model.paper_left = 0
                self.model.paper_out = True
                self._strips.append(img.crop((0, 0, img.width, left)))
                self.printed_dots += left
                raise PaperOut
            if left is not None:
                self.model.paper_left = left - img.height
        self.printed_dots += img.height
        return img

    def _canvas(self, height: int) -> Image.Image:
        return Image.new("L", (self.width + 2 * self.margin, height), 255)

    def _advance(self, dots: int) -> None:
        if dots > 0:
            self._strips.append(self._spend(self._canvas(dots)))

    def _place(self, img: Image.Image) -> None:
        strip = self._canvas(img.height)
        x = self.margin + _offset(self.style.align, self.width, img.width)
        strip.paste(img.convert("L"), (x, 0))
        self._strips.append(self._spend(strip))

    def _glyph(self, char: str, st: _Style) -> Image.Image:
        key = (char, st.font_b, st.bold, st.width, st.height)
        glyph = self._glyphs.get(key)
        if glyph is None:
            base_w, base_h = (FONT_B_W, FONT_B_H) if st.font_b else (CHAR_W, CHAR_H)
            size = int(base_h * 0.8)
            if size not in self._fonts:
                self._fonts[size] = _font(size)
            glyph = Image.new("L", (base_w, base_h), 255)
            draw = ImageDraw.Draw(glyph)
            draw.text((0, 0), char, font=self._fonts[size], fill=0)
            if st.bold:
                draw.text((1, 0), char, font=self._fonts[size], fill=0)
            if (st.width, st.height) != (1, 1):
                glyph = glyph.resize((base_w * st.width, base_h * st.height))
            self._glyphs[key] = glyph
        return glyph

    def _flush_line(self, force: bool) -> None:
        """Print the line buffer (LF: ``force``, even when empty, feeds one line)."""
        segments, band = self._segments, self._band
        if not segments and band is None and not force:
            return
        self._segments, self._band = [], None
        height_mult = max([st.height for _, st in segments], default=1)
        char_h = FONT_B_H if segments and segments[0][1].font_b else CHAR_H
        line_h = max(self.style.line, char_h * height_mult + (self.style.line - CHAR_H))
        if band is not None:
            line_h = max(band.height, line_h if segments else 0)
        strip = self._canvas(line_h)
        text = "".join(t for t, _ in segments)
        width = sum(len(t) * (FONT_B_W if st.font_b else CHAR_W) * st.width
                    for t, st in segments)
        if band is not None:
            width += band.width
        align = segments[0][1].align if segments else self.style.align
        x = self.margin + _offset(align, self.width, width)
        draw = ImageDraw.Draw(strip)
        if band is not None:
            strip.paste(band.convert("L"), (x, 0))
            x += band.width
        for chunk, st in segments:
            base_w, base_h = (FONT_B_W, FONT_B_H) if st.font_b else (CHAR_W, CHAR_H)
            cw, ch = base_w * st.width, base_h * st.height
            top = max(0, line_h - ch - 3)
            for char in chunk:
                strip.paste(self._glyph(char, st), (x, top))
                if st.underline:
                    draw.line((x, line_h - 2, x + cw, line_h - 2), fill=0, width=2)
                x += cw
        self._text.append(text)
        self._strips.append(self._spend(strip))

    def _end_ticket(self, cut: bool) -> None:
        if not self._strips and not self._text:
            return
        height = sum(s.height for s in self._strips)
        image = self._canvas(max(height, 1))
        y = 0
        for s in self._strips:
            image.paste(s, (0, y))
            y += s.height
        self.tickets.append(RenderedTicket(image, self._text, cut))
        self._strips, self._text = [], []


def _copy_style(style: _Style) -> _Style:
    return _Style(**style.__dict__)


def _offset(align: int, width: int, used: int) -> int:
    if align == 1:
        return max(0, (width - used) // 2)
    if align == 2:
        return max(0, width - used)
    return 0


def render_bytes(data: bytes, width_dots: int = 576) -> list[RenderedTicket]:
    """Render a captured job offline (no paper limit, no status answers)."""
    interpreter = Interpreter(width_dots)
    interpreter.feed(data)
    return interpreter.finish()


# -- jobs -------------------------------------------------------------------------------------
@dataclass
class CapturedJob:
    number: int
    started_at: str
    raw: bytearray = field(default_factory=bytearray)
    tickets: list[RenderedTicket] = field(default_factory=list)
    complete: bool = False
    end: str = ""  # closed | paper_out | reset | stopped | peer_reset
    first_byte: float = 0.0
    last_byte: float = 0.0
    status_queries: int = 0
    unknown: list[str] = field(default_factory=list)

    @property
    def duration_ms(self) -> float:
        return round((self.last_byte - self.first_byte) * 1000, 1)

    @property
    def qr_texts(self) -> list[str]:
        """The texts of the QR codes decoded on the tickets."""
        return [q["text"] for t in self.tickets for q in t.qr if "QR" in q["format"]]

    @property
    def barcode_texts(self) -> list[str]:
        """The texts of the other codes (the RPPS and N° AM Code 128)."""
        return [q["text"] for t in self.tickets for q in t.qr if "QR" not in q["format"]]

    @property
    def text(self) -> list[str]:
        return [line for t in self.tickets for line in t.text]

    def as_dict(self, png_names: list[str] | None = None) -> dict[str, Any]:
        return {
            "job": self.number, "started_at": self.started_at, "bytes": len(self.raw),
            "complete": self.complete, "end": self.end,
            "first_to_last_byte_ms": self.duration_ms, "status_queries": self.status_queries,
            "unknown_commands": self.unknown,
            "tickets": [{"png": (png_names or [None] * len(self.tickets))[i], "cut": t.cut,
                         "height_dots": t.image.height, "text": t.text, "qr": t.qr}
                        for i, t in enumerate(self.tickets)],
        }


class PrinterEmulator:
    """The emulator as a server on ``host:port`` (port 0: any free port)."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, *, width_dots: int = 576,
                 out_dir: str | Path | None = None, control_port: int | None = None,
                 margin: int = DEFAULT_MARGIN, decode_qr: bool = True) -> None:
        self.host, self._port = host, port
        self.width_dots, self.margin = width_dots, margin
        self.out_dir = Path(out_dir) if out_dir else None
        self.control_port = control_port
        self.decode_qr = decode_qr
        self.model = PrinterModel()
        self.jobs: list[CapturedJob] = []
        self.status_connections = 0
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._stop = threading.Event()
        self._listener: socket.socket | None = None
        self._control: socket.socket | None = None
        self._threads: list[threading.Thread] = []
        self._count = 0

    # -- lifecycle --------------------------------------------------------------------------
    def _bind(self) -> socket.socket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self._port))
        sock.listen(8)
        self._port = sock.getsockname()[1]
        return sock

    def start(self) -> PrinterEmulator:
        if self.out_dir:
            self.out_dir.mkdir(parents=True, exist_ok=True)
        self._listener = self._bind()
        self._threads.append(threading.Thread(target=self._accept_loop, daemon=True,
                                              name="printer-emulator"))
        if self.control_port is not None:
            self._control = socket.create_server((self.host, self.control_port))
            self.control_port = self._control.getsockname()[1]
            self._threads.append(threading.Thread(target=self._control_loop, daemon=True,
                                                  name="printer-emulator-control"))
        for thread in self._threads:
            thread.start()
        log.info("printer emulator listening", extra={"fields": {"port": self._port}})
        return self

    def stop(self) -> None:
        self._stop.set()
        with self._changed:
            self._changed.notify_all()
        for thread in self._threads:
            thread.join(timeout=5)
        for sock in (self._listener, self._control):
            if sock is not None:
                sock.close()

    def __enter__(self) -> PrinterEmulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        return self._port

    @property
    def uri(self) -> str:
        return f"tcp://{self.host}:{self._port}"

    # -- trouble ----------------------------------------------------------------------------
    def _set(self, **changes: Any) -> None:
        with self._changed:
            for key, value in changes.items():
                setattr(self.model, key, value)
            self._changed.notify_all()

    def paper_out(self, mode: str = "drop") -> None:
        self._set(paper_out=True, on_paper_out=mode)

    def paper_after(self, dots: int, mode: str = "drop") -> None:
        self._set(paper_left=dots, on_paper_out=mode, paper_out=False)

    def load_paper(self) -> None:
        with self._changed:
            self.model.paper_out = False
            self.model.paper_left = None
            self.model.paper_loads += 1
            self._changed.notify_all()

    def set_near_end(self, on: bool) -> None:
        self._set(near_end=on)

    def set_offline(self, offline: bool) -> None:
        self._set(cover_open=offline)

    def power(self, on: bool) -> None:
        self._set(powered=on)

    def reset_after(self, count: int | None) -> None:
        self._set(reset_after=count)

    def wait_for_jobs(self, count: int, timeout: float = 10.0) -> list[CapturedJob]:
        deadline = time.monotonic() + timeout
        with self._changed:
            while len(self.jobs) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._changed.wait(left)
            return list(self.jobs)

    def control(self, line: str) -> str:
        """One control command (see the module doc); returns the reply line."""
        words = line.split()
        if not words:
            return "error: empty command"
        cmd, args = words[0].lower(), words[1:]
        try:
            if cmd == "paper-out":
                self.paper_out(args[0] if args else "drop")
            elif cmd == "paper-after":
                self.paper_after(int(args[0]), args[1] if len(args) > 1 else "drop")
            elif cmd == "paper-in":
                self.load_paper()
            elif cmd == "near-end":
                self.set_near_end(bool(args) and args[0] == "on")
            elif cmd in ("offline", "online"):
                self.set_offline(cmd == "offline")
            elif cmd in ("power-off", "power-on"):
                self.power(cmd == "power-on")
            elif cmd == "reset-after":
                self.reset_after(int(args[0]))
            elif cmd == "status":
                with self._lock:
                    return json.dumps({**self.model.as_dict(), "jobs": len(self.jobs)})
            elif cmd == "jobs":
                with self._lock:
                    return json.dumps([job.as_dict() for job in self.jobs], ensure_ascii=False)
            else:
                return f"error: unknown command {cmd}"
        except (IndexError, ValueError):
            return f"error: bad arguments for {cmd}"
        return "ok"

    # -- serving ----------------------------------------------------------------------------
    def _accept_loop(self) -> None:
        while not self._stop.is_set():
            with self._changed:
                powered = self.model.powered
            if not powered:
                if self._listener is not None:
                    self._listener.close()
                    self._listener = None
                with self._changed:
                    self._changed.wait(0.1)
                continue
            if self._listener is None:
                try:
                    self._listener = self._bind()
                except OSError:
                    time.sleep(0.05)
                    continue
            ready, _, _ = select.select([self._listener], [], [], 0.05)
            if not ready:
                continue
            try:
                conn, _ = self._listener.accept()
            except OSError:
                continue
            with conn:
                self._serve(conn)

    def _serve(self, conn: socket.socket) -> None:
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conn.settimeout(0.05)
        job = CapturedJob(0, datetime.now(UTC).isoformat(timespec="milliseconds"))

        def respond(data: bytes) -> None:
            with contextlib.suppress(OSError):
                conn.sendall(data)

        interp = Interpreter(self.width_dots, self.model, respond=respond, margin=self.margin,
                             lock=self._lock)
        stalled_since: int | None = None
        while True:
            if self._stop.is_set():
                job.end = "stopped"
                break
            if stalled_since is not None:
                with self._changed:
                    if self.model.paper_loads != stalled_since or not self.model.powered:
                        job.end = "paper_out"
                        break
                    self._changed.wait(0.05)
                if _peer_gone(conn):  # the host gave up waiting: forget the job
                    job.end = "paper_out"
                    break
                continue
            try:
                data = conn.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                job.end = "peer_reset"
                break
            if not data:
                job.end = "closed"
                break
            now = time.monotonic()
            job.first_byte = job.first_byte or now
            job.last_byte = now
            with self._lock:
                limit = self.model.reset_after
            if limit is not None and len(job.raw) + len(data) >= limit:
                data = data[: max(0, limit - len(job.raw))]
                job.raw += data
                with contextlib.suppress(PaperOut):
                    interp.feed(data)
                self._set(reset_after=None)
                _reset(conn)
                job.end = "reset"
                break
            job.raw += data
            try:
                interp.feed(data)
            except PaperOut:
                with self._lock:
                    mode = self.model.on_paper_out
                    loads = self.model.paper_loads
                if mode == "stall":
                    stalled_since = loads
                    continue
                _reset(conn)
                job.end = "paper_out"
                break
        job.complete = job.end == "closed"
        job.status_queries = interp.status_queries
        job.unknown = interp.unknown
        if not interp.printed:
            with self._changed:
                self.status_connections += 1
                self._changed.notify_all()
            return
        job.tickets = interp.finish()
        if self.decode_qr:
            for ticket in job.tickets:
                ticket.decode_qr()
        with self._changed:
            self._count += 1
            job.number = self._count
        self._save(job)
        with self._changed:
            self.jobs.append(job)
            self._changed.notify_all()
        log.info("emulated job", extra={"fields": {
            "job": job.number, "bytes": len(job.raw), "end": job.end,
            "tickets": len(job.tickets), "ms": job.duration_ms}})

    def _save(self, job: CapturedJob) -> None:
        if not self.out_dir:
            return
        stem = f"job-{job.number:04d}"
        (self.out_dir / f"{stem}.bin").write_bytes(bytes(job.raw))
        names = []
        for index, ticket in enumerate(job.tickets, start=1):
            name = f"{stem}-{index}.png"
            ticket.image.save(self.out_dir / name)
            names.append(name)
        (self.out_dir / f"{stem}.json").write_text(
            json.dumps(job.as_dict(names), ensure_ascii=False, indent=2), "utf-8")

    def _control_loop(self) -> None:
        assert self._control is not None
        self._control.settimeout(0.1)
        while not self._stop.is_set():
            try:
                conn, _ = self._control.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with conn, conn.makefile("rw", encoding="utf-8", newline="\n") as stream:
                for line in stream:
                    stream.write(self.control(line) + "\n")
                    stream.flush()


def _peer_gone(conn: socket.socket) -> bool:
    """True once the host closed its side, even with unread bytes queued (Linux TCP_INFO:
    ``tcpi_state`` is its first byte; 7 = CLOSE, 8 = CLOSE_WAIT)."""
    try:
        return conn.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 8)[0] in (7, 8)
    except (OSError, AttributeError):
        return False


def _reset(conn: socket.socket) -> None:
    """Close with RST (SO_LINGER 0), as a printer that drops the link."""
    with contextlib.suppress(OSError):
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
