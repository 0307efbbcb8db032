"""Layout of a printed order: an order becomes tickets, each a list of print operations.

Pure (no I/O): the ESC/POS driver (``escpos.py``) turns operations into bytes, and the PDF
(``pdf.py``) reuses ``order_text``, so the receipt, the label and the PDF say the same.

Media (printable width in dots; Font A is 12 dots wide at 180/203 dpi, 18 at 300 dpi)::

    58mm     48 mm printable   384 dots at 203 dpi   32 columns
    80mm     72 mm printable   576 dots at 203 dpi   48 columns
    label62  58 mm printable   464 dots at 203 dpi   38 columns   (QR, ID, resident, date)

QR size budget. A 203 dpi head needs at least 3 dots per module (DESIGN.md); a QR of
version ``v`` has ``17 + 4v`` modules, so 384 dots allow 128 modules: version 27 (125
modules, 375 dots). The quiet zone (4 modules = 12 dots) is made of white raster lines
above and below, and sideways of the white paper margin (58 mm paper, 48 mm printable:
5 mm = 40 dots each side) plus the 4 or 5 spare dots: the raster itself does not carry a
full horizontal quiet zone. At error-correction level L, version 27 holds 2 132
alphanumeric characters, i.e. 1 421 bytes of Base45; the payload needs ~1 900 characters
with the test PKI's 993-byte certificate (``appliance/domain/qr.py``), leaving room for a
certificate of ~1.2 KB. ``qr_spec`` picks, for each medium, the error-correction level
and module size that give the largest modules, preferring the higher level on a tie
(58 mm: L at 3 dots; 80 mm: M at 4 dots; label: M at 3 dots with the test PKI).
When even level L at 3 dots cannot hold the payload, ``QrTooLarge`` is raised and the
print service falls back to a payload carrying the certificate by reference.

Text. Printers use a single-byte code page: the driver selects CP858 (CP850 + €) with
python-escpos, and ``printable`` maps what it lacks (œ → oe, typographic quotes and dashes,
€ → EUR, ½ is never produced by the domain) or strips accents as a last resort, so that no
glyph falls back to ``?``. Wording is French, dates in Europe/Paris.

Long orders continue on further tickets, each with the header, "Ordonnance 1/3",
"suite 2/3"..., and its own QR and ID: any ticket identifies the whole order.
"""

from __future__ import annotations

import textwrap
import unicodedata
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

import qrcode
import qrcode.util
from qrcode.constants import ERROR_CORRECT_H, ERROR_CORRECT_L, ERROR_CORRECT_M, ERROR_CORRECT_Q

from appliance.domain.people import Sex
from appliance.domain.prescription import (
    ActLine,
    DeviceLine,
    Line,
    MedicationLine,
    Prescription,
    format_local,
    local,
)
from appliance.domain.prescription_id import format_id
from appliance.errors import PrinterError, ValidationError

ALD_HEADING = "Prescriptions relatives au traitement de l'affection de longue durée"
NON_ALD_HEADING = "Prescriptions SANS RAPPORT avec l'affection de longue durée"
MIN_MODULE_DOTS = 3
MAX_MODULE_DOTS = 8
QUIET_MODULES = 4
MAX_BODY_ROWS = 40  # text rows of prescription lines per receipt ticket
CODE_PAGE = "cp858"

# (media, dpi) -> printable width in dots.
MEDIA_DOTS: dict[tuple[str, int], int] = {
    ("58mm", 203): 384, ("80mm", 203): 576, ("label62", 203): 464,
    ("58mm", 180): 360, ("80mm", 180): 512, ("label62", 180): 408,
    ("58mm", 300): 568, ("80mm", 300): 848, ("label62", 300): 680,
}
_ECC = {"L": ERROR_CORRECT_L, "M": ERROR_CORRECT_M, "Q": ERROR_CORRECT_Q, "H": ERROR_CORRECT_H}
_ECC_PREFERENCE = ("H", "Q", "M", "L")  # on equal module size, the stronger level wins

_REPLACEMENTS = str.maketrans({
    "œ": "oe", "Œ": "OE", "Ÿ": "Y", "€": "EUR", "‘": "'", "’": "'", "‚": ",", "“": '"',
    "”": '"', "„": '"', "–": "-", "—": "-", "‐": "-", "‑": "-", "…": "...", "•": "-",
    "\u202f": "\u00a0", "\u2009": " ", "\u2002": " ", "\u2003": " ", "·": "-",
})


class QrTooLarge(PrinterError):
    """The payload does not fit the medium at 3 dots per module, even at level L."""


def printable(text: str, codec: str = CODE_PAGE) -> str:
    """``text`` restricted to characters of ``codec`` (CP858 for printers, latin-1 for PDF
    core fonts): known substitutions first, then accents stripped, then ``?``."""
    text = unicodedata.normalize("NFC", text).translate(_REPLACEMENTS)
    out = []
    for ch in text:
        try:
            ch.encode(codec)
            if ch.isprintable() or ch == "\u00a0":
                out.append(ch)
            continue
        except UnicodeEncodeError:
            pass
        base = "".join(c for c in unicodedata.normalize("NFKD", ch)
                       if not unicodedata.combining(c))
        try:
            base.encode(codec)
            out.append(base)
        except UnicodeEncodeError:
            out.append("?")
    return "".join(out)


# -- media and QR geometry --------------------------------------------------------------------
@dataclass(frozen=True)
class Media:
    name: str
    width_dots: int
    dpi: int = 203

    @property
    def label(self) -> bool:
        return self.name.startswith("label")

    @property
    def char_dots(self) -> int:
        return 18 if self.dpi >= 300 else 12

    @property
    def columns(self) -> int:
        return self.width_dots // self.char_dots


def media_for(name: str, dpi: int = 203) -> Media:
    try:
        return Media(name, MEDIA_DOTS[(name, dpi)], dpi)
    except KeyError:
        raise ValidationError("printer.media", f"{name}@{dpi}",
                              "58mm, 80mm or label62 at 180, 203 or 300 dpi") from None


def _alnum_capacity(version: int, ecc: str) -> int:
    bits = qrcode.util.BIT_LIMIT_TABLE[_ECC[ecc]][version]
    bits -= 4 + qrcode.util.length_in_bits(qrcode.util.MODE_ALPHA_NUM, version)
    return bits // 11 * 2 + (1 if bits % 11 >= 6 else 0)


def max_version(width_dots: int, module: int = MIN_MODULE_DOTS) -> int:
    return min(40, (width_dots // module - 17) // 4)


def qr_capacity(width_dots: int, ecc: str = "L") -> int:
    """The longest alphanumeric payload that fits ``width_dots`` at 3 dots per module."""
    version = max_version(width_dots)
    return _alnum_capacity(version, ecc) if version >= 1 else 0


def version_for(length: int, ecc: str) -> int | None:
    return next((v for v in range(1, 41) if _alnum_capacity(v, ecc) >= length), None)


@dataclass(frozen=True)
class QrSpec:
    version: int
    ecc: str
    module: int  # dots per module

    @property
    def modules(self) -> int:
        return 17 + 4 * self.version

    @property
    def size_dots(self) -> int:
        return self.modules * self.module


def qr_spec(payload: str, width_dots: int) -> QrSpec:
    """Largest modules first, then the strongest error correction (see the module doc)."""
    if any(c not in qrcode.util.ALPHA_NUM.decode() for c in payload):
        raise ValidationError("qr", payload[:10], "QR alphanumeric characters only")
    best: QrSpec | None = None
    for ecc in _ECC_PREFERENCE:
        version = version_for(len(payload), ecc)
        if version is None:
            continue
        module = min(MAX_MODULE_DOTS, width_dots // (17 + 4 * version))
        if module >= MIN_MODULE_DOTS and (best is None or module > best.module):
            best = QrSpec(version, ecc, module)
    if best is None:
        raise QrTooLarge(f"QR payload of {len(payload)} characters does not fit "
                         f"{width_dots} dots at {MIN_MODULE_DOTS} dots per module "
                         f"(at most {qr_capacity(width_dots)})")
    return best


# ISO/IEC 18004 §7.8: a reader decodes any of the 8 masks (the mask is in the format
# information). qrcode's search for the lowest-penalty mask costs ~130 ms on a version 27-31
# symbol, most of the sign-to-print time; mask 0 costs ~30 ms. Every test decodes the printed
# raster with zxing-cpp, so a mask that scanned badly would fail them.
QR_MASK = 0


def qr_matrix(payload: str, spec: QrSpec) -> list[list[bool]]:
    """The modules (True = dark), without quiet zone, in alphanumeric mode."""
    code = qrcode.QRCode(version=spec.version, error_correction=_ECC[spec.ecc], border=0,
                         mask_pattern=QR_MASK)
    code.add_data(qrcode.util.QRData(payload.encode("ascii"), mode=qrcode.util.MODE_ALPHA_NUM))
    code.make(fit=False)
    return code.get_matrix()


# -- operations -----------------------------------------------------------------------------
@dataclass(frozen=True)
class Text:
    """One printed line (already wrapped to the medium)."""

    text: str
    bold: bool = False
    align: str = "left"  # left, center, right
    double: bool = False  # double width and height


@dataclass(frozen=True)
class Feed:
    lines: int = 1


@dataclass(frozen=True)
class Qr:
    payload: str
    spec: QrSpec


@dataclass(frozen=True)
class Cut:
    pass


Op = Text | Feed | Qr | Cut
Ticket = tuple[Op, ...]


# -- what the order says --------------------------------------------------------------------
@dataclass(frozen=True)
class Letterhead:
    name: str
    finess: str = ""
    address: str = ""


@dataclass(frozen=True)
class OrderDocument:
    prescription: Prescription
    qr_payload: str
    establishment: Letterhead
    duplicate_at: datetime | None = None


@dataclass(frozen=True)
class Item:
    number: int
    title: str
    details: tuple[str, ...] = ()


@dataclass(frozen=True)
class Section:
    heading: str | None
    items: tuple[Item, ...]


@dataclass(frozen=True)
class OrderText:
    establishment: tuple[str, ...]
    prescriber: tuple[str, ...]
    patient: tuple[str, ...]
    date_line: str
    duplicate: tuple[str, ...]
    sections: tuple[Section, ...]
    renewals: str | None
    id_text: str
    patient_short: str = ""
    birth_line: str = ""
    issue_date: str = ""


def _number(amount: Decimal) -> str:
    text = format(amount.normalize(), "f")
    return text.replace(".", ",")


def _item(number: int, line: Line) -> Item:
    if isinstance(line, MedicationLine):
        details = [line.posology.describe()]
        if line.quantity is not None:
            details.append(f"Quantité : {_number(line.quantity)}")
        if line.non_substitution is not None:
            mention = line.non_substitution.label
            details.append(mention[0].upper() + mention[1:])
        codes = " ".join(filter(None, [f"CIP13\u00a0{line.cip13}" if line.cip13 else "",
                                       f"CIS\u00a0{line.cis}" if line.cis else ""]))
        details.append(codes)
        if line.instructions:
            details.append(f"Instructions : {line.instructions}")
        return Item(number, line.label, tuple(details))
    if isinstance(line, DeviceLine):
        details = [f"Quantité : {_number(line.quantity)}"]
        if line.lpp:
            details.append(f"LPP\u00a0{line.lpp}")
        return Item(number, line.label, tuple(details))
    assert isinstance(line, ActLine)
    return Item(number, line.text)


def _born(sex: Sex) -> str:
    return "Née" if sex is Sex.FEMALE else "Né"


def order_text(doc: OrderDocument) -> OrderText:
    p = doc.prescription
    issued = p.signed_at or p.created_at
    est = doc.establishment
    establishment = tuple(filter(None, [est.name, f"FINESS {est.finess}" if est.finess else "",
                                        est.address]))
    doctor = p.prescriber
    title = "Dr " if doctor.profession.casefold().startswith("médecin") else ""
    prescriber = (f"{title}{doctor.first_name} {doctor.last_name}", doctor.profession,
                  f"RPPS\u00a0{doctor.rpps or doctor.id_nat_ps}",
                  f"N°\u00a0AM\u00a0{doctor.am or '-'}")
    r = p.resident
    age = r.age(local(issued).date())
    birth_line = f"{_born(r.sex)} le {r.birth_date:%d/%m/%Y} ({age}\u00a0ans)"
    patient = tuple(filter(None, [r.display_name, birth_line,
                                  f"Chambre {r.room}" if r.room else ""]))
    if any(line.ald for line in p.lines):  # "bizone": ALD lines first, numbered as printed
        groups = [(ALD_HEADING, [x for x in p.lines if x.ald]),
                  (NON_ALD_HEADING, [x for x in p.lines if not x.ald])]
    else:
        groups = [(None, list(p.lines))]
    sections, number = [], 0
    for heading, lines in groups:
        items = []
        for line in lines:
            number += 1
            items.append(_item(number, line))
        if items:
            sections.append(Section(heading, tuple(items)))
    duplicate: tuple[str, ...] = ()
    if doc.duplicate_at is not None:
        duplicate = ("DUPLICATA", f"Réimprimé le {format_local(doc.duplicate_at)}")
    renewals = f"À renouveler {p.renewals} fois" if p.renewals else None
    return OrderText(
        establishment=establishment, prescriber=prescriber, patient=patient,
        date_line=f"Ordonnance du {format_local(issued)}", duplicate=duplicate,
        sections=tuple(sections), renewals=renewals, id_text=format_id(p.id),
        patient_short=r.display_name, birth_line=birth_line,
        issue_date=f"{local(issued):%d/%m/%Y}")


# -- receipts and labels ------------------------------------------------------------------
def _wrap(text: str, width: int, indent: str = "", first_indent: str | None = None
          ) -> list[str]:
    lines = textwrap.wrap(printable(text), width=width,
                          initial_indent=indent if first_indent is None else first_indent,
                          subsequent_indent=indent, break_long_words=True,
                          break_on_hyphens=False)
    return lines or [""]


def _texts(text: str, width: int, *, bold: bool = False, align: str = "left",
           indent: str = "", double: bool = False) -> list[Op]:
    cols = width // 2 if double else width
    return [Text(line, bold=bold, align=align, double=double)
            for line in _wrap(text, cols, indent)]


def _item_ops(item: Item, cols: int) -> list[Op]:
    prefix = f"{item.number}. "
    indent = " " * len(prefix)
    ops: list[Op] = [Text(line, bold=True)
                     for line in _wrap(item.title, cols, indent, first_indent=prefix)]
    for detail in item.details:
        if detail:
            ops += _texts(detail, cols, indent=" " * len(prefix))
    return ops


def _body_blocks(text: OrderText, cols: int) -> list[tuple[str | None, list[Op]]]:
    """(section heading, ops of one item) in order: the unit that never splits."""
    return [(section.heading, _item_ops(item, cols))
            for section in text.sections for item in section.items]


def _paginate(blocks: list[tuple[str | None, list[Op]]], cols: int,
              max_rows: int) -> list[list[Op]]:
    pages: list[list[Op]] = [[]]
    current_heading: str | None = None
    for heading, ops in blocks:
        heading_ops = _texts(heading, cols, bold=True) if heading else []
        new_section = heading != current_heading
        needed = len(ops) + (len(heading_ops) + 1 if new_section and heading else 0)
        if pages[-1] and len(pages[-1]) + needed > max_rows:
            pages.append([])
            if heading and not new_section:  # the section goes on: say so
                pages[-1] += _texts(f"{heading} (suite)", cols, bold=True)
        if new_section and heading:
            if pages[-1]:
                pages[-1].append(Text("-" * cols))
            pages[-1] += heading_ops
        current_heading = heading
        pages[-1] += ops
    return pages


def _header(text: OrderText, cols: int) -> list[Op]:
    ops: list[Op] = []
    for n, line in enumerate(text.establishment):
        ops += _texts(line, cols, bold=n == 0, align="center")
    ops.append(Text("-" * cols))
    for n, line in enumerate(text.prescriber):
        ops += _texts(line, cols, bold=n == 0)
    ops.append(Text("-" * cols))
    for n, line in enumerate(text.patient):
        ops += _texts(line, cols, bold=n == 0)
    ops.append(Text("-" * cols))
    ops += _texts(text.date_line, cols)
    return ops


def _duplicate(text: OrderText, cols: int) -> list[Op]:
    if not text.duplicate:
        return []
    ops: list[Op] = [Feed(1)]
    ops += _texts(text.duplicate[0], cols, bold=True, align="center", double=True)
    for line in text.duplicate[1:]:
        ops += _texts(line, cols, bold=True, align="center")
    return ops


def _qr_block(doc: OrderDocument, text: OrderText, spec: QrSpec, cols: int) -> list[Op]:
    return [Feed(1), Qr(doc.qr_payload, spec),
            *_texts(text.id_text, cols, bold=True, align="center")]


def receipt_tickets(doc: OrderDocument, media: Media,
                    max_body_rows: int = MAX_BODY_ROWS) -> list[Ticket]:
    """The order on one or more receipt tickets (58 or 80 mm)."""
    cols = media.columns
    spec = qr_spec(doc.qr_payload, media.width_dots)
    text = order_text(doc)
    pages = _paginate(_body_blocks(text, cols), cols, max_body_rows)
    tickets: list[Ticket] = []
    for index, body in enumerate(pages, start=1):
        ops = _header(text, cols)
        if len(pages) > 1:
            mark = f"Ordonnance {index}/{len(pages)}" if index == 1 else \
                f"suite {index}/{len(pages)}"
            ops += _texts(mark, cols, bold=True, align="right")
        ops += _duplicate(text, cols)
        ops.append(Text("=" * cols))
        ops += body
        ops.append(Text("=" * cols))
        if text.renewals and index == len(pages):
            ops += _texts(text.renewals, cols, bold=True)
        ops += _qr_block(doc, text, spec, cols)
        ops += [Feed(1), Cut()]
        tickets.append(tuple(ops))
    return tickets


def label_tickets(doc: OrderDocument, media: Media) -> list[Ticket]:
    """A 62 mm label: QR, ID, resident, date (and DUPLICATA)."""
    cols = media.columns
    spec = qr_spec(doc.qr_payload, media.width_dots)
    text = order_text(doc)
    ops: list[Op] = [Qr(doc.qr_payload, spec)]
    ops += _texts(text.id_text, cols, bold=True, align="center")
    ops += _texts(text.patient_short, cols, bold=True, align="center")
    ops += _texts(text.birth_line, cols, align="center")
    ops += _texts(f"Ordonnance du {text.issue_date}", cols, align="center")
    for n, line in enumerate(text.duplicate):
        ops += _texts(line, cols, bold=True, align="center", double=n == 0)
    ops += [Feed(1), Cut()]
    return [tuple(ops)]


def tickets_for(doc: OrderDocument, media: Media) -> list[Ticket]:
    return label_tickets(doc, media) if media.label else receipt_tickets(doc, media)


def ticket_text(ticket: Ticket) -> list[str]:
    """The text lines of a ticket (tests, previews)."""
    return [op.text for op in ticket if isinstance(op, Text)]
