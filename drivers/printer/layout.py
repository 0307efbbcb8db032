"""Layout of a printed order: an order becomes tickets, each a list of print operations.

Pure (no I/O): the ESC/POS driver (``escpos.py``) turns operations into bytes, and the PDF
(``pdf.py``) reuses ``order_text``, so the receipt, the label and the PDF say the same.

Media (printable width in dots; Font A is 12 dots wide at 180/203 dpi, 18 at 300 dpi;
Font B, used for the small print, 9 and 13)::

    58mm     48 mm printable   384 dots at 203 dpi   32 columns (Font B 42)
    80mm     72 mm printable   576 dots at 203 dpi   48 columns (Font B 64)
    label62  58 mm printable   464 dots at 203 dpi   38 columns   (QR, ID, resident, date)

QR geometry (``qr_spec``). Error correction Q when the payload fits a version up to 7
(it restores 25 % of the codewords), M otherwise (L only when M cannot fit the medium at
3 dots per module). The module is the largest number of dots that fits the printable
width, capped at ``MAX_MODULE_DOTS`` = 8 (1 mm at 203 dpi: a version-6 ePU code is then
41 mm wide, which handheld scanners and phones read from afar; larger modules would only
lengthen the ticket). The ePU payload (about 90 characters) is a version 5-6 code at
level Q, 8 dots per module on every medium; the signed payload (about 560 characters) a
version 15-16 at level M, 4 dots per module on 58 mm. The quiet zone (4 modules) is made
of white raster lines above and below, and sideways of the white paper margin plus what
the printable width leaves. The raster sent is the code's own width: the printer centres
it (``ESC a 1``).

Text. Printers use a single-byte code page: the driver selects CP858 (CP850 + €) with
python-escpos, and ``printable`` maps what it lacks (œ → oe, typographic quotes and dashes,
€ → EUR, ½ is never produced by the domain) or strips accents as a last resort, so that no
glyph falls back to ``?``. Wording is French, dates in Europe/Paris. A number and the
word after it are joined by a no-break space (``glue``), so that "pendant 5 jours" never
breaks between "5" and "jours"; lines wrap between words, continuation lines indented, and
a word is cut only when it is wider than the paper (a long e-mail address). Quantities
print as typed ("10", never "1E+1").

Mentions (Code de la santé publique R5132-3, L5121-1-2; décret 2023-1222): the
establishment (name, address ending in "France", phone in +33 form, e-mail, FINESS); the
prescriber (name, qualification, phone, e-mail, RPPS and N° AM in clear and as Code 128
barcodes); the resident (names, sex, birth date and age, weight when given, room); each
line with its common name (DC: substances and strengths) and the brand when prescribed by
brand, the posology in words, the number of boxes, the renewals, the non-substitution
mention; the ALD bizone layout; the date, the card signature (signer and time), the
objection of the resident when there is one, a short patient information about the
ordonnance numérique, and the issuing software with its version. Secondary text is set
in Font B (the small print): the address block, the brand, the mentions.

Long orders continue on further tickets, each with the header, "Ordonnance 1/3",
"suite 2/3"..., and its own QR and ID: any ticket identifies the whole order.
"""

from __future__ import annotations

import functools
import re
import textwrap
import unicodedata
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

import qrcode
import qrcode.util
from barcode.charsets import code128 as code128_tables
from qrcode.constants import ERROR_CORRECT_H, ERROR_CORRECT_L, ERROR_CORRECT_M, ERROR_CORRECT_Q

from appliance import __version__
from appliance.domain.people import Sex
from appliance.domain.posology import Posology
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
from appliance.domain.secure import decimal_words
from appliance.errors import PrinterError, ValidationError

ALD_HEADING = "Prescriptions relatives au traitement de l'affection de longue durée"
NON_ALD_HEADING = "Prescriptions SANS RAPPORT avec l'affection de longue durée"
SOFTWARE = f"Ordo {__version__}"
MIN_MODULE_DOTS = 3
MAX_MODULE_DOTS = 8
QUIET_MODULES = 4
Q_MAX_VERSION = 7
MAX_BODY_ROWS = 40  # text rows of prescription lines per receipt ticket
CODE_PAGE = "cp858"
NBSP = "\u00a0"
BARCODE_HEIGHT_MM = 5
BARCODE_QUIET_MODULES = 10  # ISO/IEC 15417: at least 10 modules each side

OBJECTION_MENTION = ("Le patient s'oppose à ce que le prescripteur consulte les "
                     "délivrances de cette ordonnance (décret n° 2023-1222).")
INFO_MENTION = ("Ordonnance numérique : le pharmacien la retrouve avec le QR code ; "
                "aussi dans Mon espace santé (sauf opposition).")
SECURE_MENTION = "ORDONNANCE SÉCURISÉE"

# (media, dpi) -> printable width in dots.
MEDIA_DOTS: dict[tuple[str, int], int] = {
    ("58mm", 203): 384, ("80mm", 203): 576, ("label62", 203): 464,
    ("58mm", 180): 360, ("80mm", 180): 512, ("label62", 180): 408,
    ("58mm", 300): 568, ("80mm", 300): 848, ("label62", 300): 680,
}
_ALPHA_NUM = frozenset(qrcode.util.ALPHA_NUM.decode())
_ECC = {"L": ERROR_CORRECT_L, "M": ERROR_CORRECT_M, "Q": ERROR_CORRECT_Q, "H": ERROR_CORRECT_H}

_REPLACEMENTS = str.maketrans({
    "œ": "oe", "Œ": "OE", "Ÿ": "Y", "€": "EUR", "‘": "'", "’": "'", "‚": ",", "“": '"',
    "”": '"', "„": '"', "–": "-", "—": "-", "‐": "-", "‑": "-", "…": "...", "•": "-",
    "\u202f": "\u00a0", "\u2009": " ", "\u2002": " ", "\u2003": " ", "·": "-",
})
_GLUE_NUMBER = re.compile(r"(?<=\d) +(?=[^\W\d_])")  # "5 jours", "3 boîtes", "75 mg"
_GLUE_PUNCT = re.compile(r" +(?=[:;!?])")  # French: a no-break space before : ; ! ?


class QrTooLarge(PrinterError):
    """The payload does not fit the medium at 3 dots per module, even at level L."""


def printable(text: str, codec: str = CODE_PAGE) -> str:
    """``text`` restricted to characters of ``codec`` (CP858 for printers, latin-1 for PDF
    core fonts): known substitutions first, then accents stripped, then ``?``."""
    text = unicodedata.normalize("NFC", text).translate(_REPLACEMENTS)
    try:
        text.encode(codec)
    except UnicodeEncodeError:
        pass
    else:
        if text.isprintable():
            return text
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


def glue(text: str) -> str:
    """No-break spaces where a line must not break: after a number followed by a word, and
    before ``:``, ``;``, ``!`` and ``?``."""
    return _GLUE_PUNCT.sub(NBSP, _GLUE_NUMBER.sub(NBSP, text))


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
    def small_char_dots(self) -> int:
        return 13 if self.dpi >= 300 else 9

    @property
    def columns(self) -> int:
        return self.width_dots // self.char_dots

    @property
    def small_columns(self) -> int:
        return self.width_dots // self.small_char_dots

    @property
    def bar_module(self) -> int:
        """Dots per Code 128 module: 0.25 mm (2 dots at 180/203 dpi, 3 at 300)."""
        return 3 if self.dpi >= 300 else 2


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


def _module_for(version: int, width_dots: int) -> int:
    return min(MAX_MODULE_DOTS, width_dots // (17 + 4 * version))


def qr_spec(payload: str, width_dots: int) -> QrSpec:
    """Level Q when it fits version 7, else M (L as a last resort); then the largest
    module that fits ``width_dots``, up to ``MAX_MODULE_DOTS`` (see the module doc)."""
    if not _ALPHA_NUM.issuperset(payload):
        raise ValidationError("qr", payload[:10], "QR alphanumeric characters only")
    q = version_for(len(payload), "Q")
    choices = ([("Q", q)] if q is not None and q <= Q_MAX_VERSION else []) + \
        [(ecc, version_for(len(payload), ecc)) for ecc in ("M", "L")]
    for ecc, version in choices:
        if version is not None and _module_for(version, width_dots) >= MIN_MODULE_DOTS:
            return QrSpec(version, ecc, _module_for(version, width_dots))
    raise QrTooLarge(f"QR payload of {len(payload)} characters does not fit "
                     f"{width_dots} dots at {MIN_MODULE_DOTS} dots per module "
                     f"(at most {qr_capacity(width_dots)})")


# ISO/IEC 18004 §7.8: a reader decodes any of the 8 masks (the mask is in the format
# information). qrcode's search for the lowest-penalty mask builds the symbol 9 times
# (about 40 ms for a version 5 in pure Python, most of the sign-to-print time); mask 0
# costs 5 ms. Every test decodes the printed raster with zxing-cpp, damaged ones too.
QR_MASK = 0


def qr_matrix(payload: str, spec: QrSpec) -> list[list[bool]]:
    """The modules (True = dark), without quiet zone, in alphanumeric mode, mask 0."""
    code = qrcode.QRCode(version=spec.version, error_correction=_ECC[spec.ecc], border=0,
                         mask_pattern=QR_MASK)
    code.add_data(qrcode.util.QRData(payload.encode("ascii"), mode=qrcode.util.MODE_ALPHA_NUM))
    code.make(fit=False)
    return code.get_matrix()


def code128(value: str) -> str:
    """The modules of a Code 128 symbol ("1" = bar), without quiet zones (ISO/IEC 15417).

    Digits go in code set C (two per symbol character), an odd last digit in set B after
    a Code B character; any other text in set B. The bar patterns are python-barcode's
    tables; its own encoder is not used, since it drops a leading "99" in set C (it reads
    the pair as a Code C switch), and the ANS test RPPS numbers start with 997."""
    if not value or not all(" " <= ch <= "~" for ch in value):
        raise ValidationError("barcode", value, "printable ASCII text")
    if value.isdigit():
        even = len(value) - len(value) % 2
        values = [code128_tables.START_CODES["C"]]
        values += [int(value[i:i + 2]) for i in range(0, even, 2)]
        if even < len(value):
            values += [code128_tables.C["TO_B"], code128_tables.B[value[-1]]]
    else:
        values = [code128_tables.START_CODES["B"]] + [code128_tables.B[ch] for ch in value]
    checksum = (values[0] + sum(i * v for i, v in enumerate(values[1:], start=1))) % 103
    values.append(checksum)
    return "".join(code128_tables.CODES[v] for v in values) + code128_tables.STOP + "11"


# -- operations -----------------------------------------------------------------------------
@dataclass(frozen=True)
class Text:
    """One printed line (already wrapped to the medium). ``small``: Font B."""

    text: str
    bold: bool = False
    align: str = "left"  # left, center, right
    double: bool = False  # double width and height
    small: bool = False


@dataclass(frozen=True)
class Feed:
    lines: int = 1


@dataclass(frozen=True)
class Rule:
    """A horizontal line across the paper (a few raster dots instead of a text line)."""

    heavy: bool = False


@dataclass(frozen=True)
class Qr:
    payload: str
    spec: QrSpec


@dataclass(frozen=True)
class Barcodes:
    """Code 128 symbols side by side, each ``(value, modules)``; ``module`` dots per
    module, ``height`` dots."""

    codes: tuple[tuple[str, str], ...]
    module: int
    height: int


@dataclass(frozen=True)
class Cut:
    pass


Op = Text | Feed | Rule | Qr | Barcodes | Cut
Ticket = tuple[Op, ...]


# -- what the order says --------------------------------------------------------------------
@dataclass(frozen=True)
class Letterhead:
    """The establishment, and the prescriber details the card and the practitioners table
    may lack (``[prescriber]`` settings: used when the prescriber has none of their own)."""

    name: str
    finess: str = ""
    address: str = ""
    phone: str = ""
    email: str = ""
    qualification: str = ""
    prescriber_phone: str = ""
    prescriber_email: str = ""

    @classmethod
    def from_settings(cls, settings: object) -> Letterhead:
        """From ``appliance.config.Settings`` (``[establishment]`` and ``[prescriber]``)."""
        est = settings.establishment  # type: ignore[attr-defined]
        doc = settings.prescriber  # type: ignore[attr-defined]
        return cls(est.name, est.finess, est.address, _phone(est.phone), est.email,
                   doc.qualification, _phone(doc.phone), doc.email)

    @property
    def address_lines(self) -> tuple[str, ...]:
        """The address lines, the last one ending in "France"."""
        lines = [" ".join(part.split()) for part in self.address.splitlines()]
        lines = [line for line in lines if line]
        if lines and not lines[-1].casefold().endswith("france"):
            lines.append("France")
        return tuple(lines)


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
    brand: str = ""  # the specialty's name when prescribed by brand (beside the DC)
    notes: tuple[str, ...] = ()  # small print: instructions, legal limits
    codes: str = ""  # CIP13 / CIS / LPP (on the PDF)


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
    id_text: str
    patient_short: str = ""
    birth_line: str = ""
    issue_date: str = ""
    codes: tuple[tuple[str, str], ...] = ()  # ("RPPS", "...")/("N° AM", "...") barcodes
    signature: str = ""
    mentions: tuple[str, ...] = ()
    software: str = SOFTWARE
    secure: bool = False
    medication_count: int = 0

    @property
    def prescriber_short(self) -> str:
        return self.prescriber[0] if self.prescriber else ""


def _phone(value: str) -> str:
    """The +33 form of a phone number (as typed when it is not a French number)."""
    from appliance.domain.people import validate_phone

    try:
        return validate_phone(value) if value else ""
    except ValidationError:
        return value


def quantity_text(amount: Decimal) -> str:
    """A quantity as typed: '10', '2,5' (never '1E+1')."""
    text = format(amount.normalize(), "f")
    return text.replace(".", ",")


def _boxes(amount: Decimal, words: bool) -> str:
    plural = "boîtes" if amount >= 2 else "boîte"
    number = decimal_words(amount, feminine=True) if words else quantity_text(amount)
    return f"Quantité : {number} {plural}"


def _renewals(count: int, words: bool = False) -> str | None:
    if not count:
        return None
    from appliance.domain.secure import number_words

    return f"À renouveler {number_words(count, True) if words else count} fois"


def _medication_item(number: int, line: MedicationLine) -> Item:
    rules = line.rules
    words = rules.secure
    posology = line.posology
    details = [posology.describe(words) if isinstance(posology, Posology)
               else posology.describe()]
    if line.quantity is not None:
        details.append(_boxes(line.quantity, words))
    renewal = _renewals(line.renewals, words)
    if renewal:
        details.append(renewal)
    if line.non_substitution is not None:
        mention = line.non_substitution.label
        details.append(mention[0].upper() + mention[1:])
    notes = []
    if rules.max_days is not None or rules.fraction_days is not None or rules.secure:
        notes.append(rules.mention())
    if line.instructions:
        notes.append(f"Instructions : {line.instructions}")
    codes = " ".join(filter(None, [f"CIP13 {line.cip13}" if line.cip13 else "",
                                   f"CIS {line.cis}" if line.cis else ""]))
    if line.common_name:
        title, brand = line.common_name, line.label if line.by_brand else ""
    else:
        title, brand = line.label, ""
    return Item(number, title, tuple(details), brand, tuple(notes), codes)


def _item(number: int, line: Line) -> Item:
    if isinstance(line, MedicationLine):
        return _medication_item(number, line)
    if isinstance(line, DeviceLine):
        details = [f"Quantité : {quantity_text(line.quantity)}"]
        renewal = _renewals(line.renewals)
        if renewal:
            details.append(renewal)
        return Item(number, line.label, tuple(details),
                    codes=f"LPP {line.lpp}" if line.lpp else "")
    assert isinstance(line, ActLine)
    renewal = _renewals(line.renewals)
    return Item(number, line.text, (renewal,) if renewal else ())


def _born(sex: Sex) -> str:
    return "Née" if sex is Sex.FEMALE else "Né"


def _contact(phone: str, email: str) -> str:
    return " - ".join(filter(None, [f"Tél. {phone}" if phone else "", email]))


def order_text(doc: OrderDocument) -> OrderText:
    p = doc.prescription
    issued = p.signed_at or p.created_at
    est = doc.establishment
    establishment = tuple(filter(None, [
        est.name, *est.address_lines, _contact(_phone(est.phone), est.email),
        f"FINESS {est.finess}" if est.finess else ""]))
    doctor = p.prescriber
    title = "Dr " if doctor.profession.casefold().startswith("médecin") else ""
    signer = f"{title}{doctor.first_name} {doctor.last_name}"
    qualification = doctor.qualification or est.qualification or doctor.profession
    own = _contact(doctor.phone or "", doctor.email or "")
    fallback = _contact(_phone(est.prescriber_phone), est.prescriber_email)
    prescriber = tuple(filter(None, [
        signer, qualification, own or fallback,
        f"RPPS{NBSP}{doctor.rpps or doctor.id_nat_ps}", f"N°{NBSP}AM{NBSP}{doctor.am or '-'}"]))
    codes = tuple((label, value) for label, value in
                  (("RPPS", doctor.rpps or doctor.id_nat_ps), (f"N°{NBSP}AM", doctor.am))
                  if value)
    r = p.resident
    age = r.age(local(issued).date())
    birth_line = f"{_born(r.sex)} le {r.birth_date:%d/%m/%Y} ({age}{NBSP}ans)"
    weight = f", {quantity_text(p.weight_kg)}{NBSP}kg" if p.weight_kg is not None else ""
    patient = tuple(filter(None, [
        r.display_name, f"{r.sex.value}, {birth_line[0].lower()}{birth_line[1:]}{weight}",
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
    signature = ""
    if p.signed_at is not None:
        signature = (f"Signée électroniquement par carte CPS : {signer}, le "
                     f"{format_local(p.signed_at)}")
    mentions = tuple(filter(None, [OBJECTION_MENTION if r.objection else "", INFO_MENTION]))
    return OrderText(
        establishment=establishment, prescriber=prescriber, patient=patient,
        date_line=f"Ordonnance du {format_local(issued)}", duplicate=duplicate,
        sections=tuple(sections), id_text=format_id(p.id),
        patient_short=r.display_name, birth_line=birth_line,
        issue_date=f"{local(issued):%d/%m/%Y}", codes=codes, signature=signature,
        mentions=mentions, secure=p.secure,
        medication_count=sum(isinstance(line, MedicationLine) for line in p.lines))


# -- receipts and labels ------------------------------------------------------------------
def _wrap(text: str, width: int, indent: str = "", first_indent: str | None = None
          ) -> list[str]:
    """Lines of at most ``width`` characters, broken between words (see ``glue``); a word
    is cut only when it is wider than a line. Kept for the last texts: the letterhead,
    the prescriber and the mentions are the same on every order, and an order's own
    lines were wrapped once already when its review showed them."""
    return list(_wrapped(text, width, indent,
                         indent if first_indent is None else first_indent))


@functools.lru_cache(maxsize=2048)
def _wrapped(text: str, width: int, indent: str, first_indent: str) -> tuple[str, ...]:
    lines = textwrap.wrap(glue(printable(text)), width=width, initial_indent=first_indent,
                          subsequent_indent=indent, break_long_words=True,
                          break_on_hyphens=True)
    return tuple(lines) or ("",)


def _texts(text: str, width: int, *, bold: bool = False, align: str = "left",
           indent: str = "", double: bool = False, small: bool = False) -> list[Op]:
    cols = width // 2 if double else width
    return [Text(line, bold=bold, align=align, double=double, small=small)
            for line in _wrap(text, cols, indent)]


def _item_ops(item: Item, media: Media) -> list[Op]:
    cols, small = media.columns, media.small_columns
    prefix = f"{item.number}. "
    indent = " " * len(prefix)
    small_indent = " " * -(-len(prefix) * media.char_dots // media.small_char_dots)
    ops: list[Op] = [Text(line, bold=True)
                     for line in _wrap(item.title, cols, indent, first_indent=prefix)]
    if item.brand:
        ops += _texts(item.brand, small, indent=small_indent, small=True)
    for detail in item.details:
        ops += _texts(detail, cols, indent=indent)
    for note in item.notes:
        ops += _texts(note, small, indent=small_indent, small=True)
    return ops


def _body_blocks(text: OrderText, media: Media) -> list[tuple[str | None, list[Op]]]:
    """(section heading, ops of one item) in order: the unit that never splits."""
    return [(section.heading, _item_ops(item, media))
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
                pages[-1].append(Rule())
            pages[-1] += heading_ops
        current_heading = heading
        pages[-1] += ops
    return pages


def _barcodes(text: OrderText, media: Media) -> list[Op]:
    """RPPS and N° AM as Code 128, side by side when they fit, each with its caption."""
    if not text.codes:
        return []
    module = media.bar_module
    height = round(BARCODE_HEIGHT_MM * media.dpi / 25.4)
    symbols = [(value, code128(value)) for _, value in text.codes]
    quiet = BARCODE_QUIET_MODULES * module
    widths = [len(bars) * module + 2 * quiet for _, bars in symbols]
    captions = [f"{label} {value}" for label, value in text.codes]
    if sum(widths) <= media.width_dots:  # one row, each caption under its code
        first_cols = widths[0] // media.small_char_dots
        caption = captions[0].ljust(first_cols) + " " + captions[1] if len(captions) > 1 \
            else captions[0]
        return [Barcodes(tuple(symbols), module, height),
                Text(printable(caption), small=True)]
    ops: list[Op] = []
    for symbol, caption in zip(symbols, captions, strict=True):
        ops += [Barcodes((symbol,), module, height), Text(printable(caption), small=True)]
    return ops


def _header(text: OrderText, media: Media, *, codes: bool) -> list[Op]:
    cols, small = media.columns, media.small_columns
    ops: list[Op] = []
    for n, line in enumerate(text.establishment):
        ops += _texts(line, cols, bold=True, align="center") if n == 0 else \
            _texts(line, small, align="center", small=True)
    ops.append(Rule())
    name, *rest = text.prescriber
    ops += _texts(name, cols, bold=True)
    clear_codes = [line for line in rest if line.startswith(("RPPS", "N°"))]
    for line in rest:
        if line in clear_codes and codes and text.codes:
            continue  # printed as captions of the barcodes
        ops += _texts(line, small, small=True)
    if codes:
        ops += _barcodes(text, media)
    ops.append(Rule())
    for n, line in enumerate(text.patient):
        ops += _texts(line, cols, bold=n == 0) if n < 2 else _texts(line, small, small=True)
    ops.append(Rule())
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


def _footer(text: OrderText, media: Media) -> list[Op]:
    ops: list[Op] = []
    if text.signature:
        ops += _texts(text.signature, media.small_columns, small=True)
    for mention in text.mentions:
        ops += _texts(mention, media.small_columns, small=True)
    return ops


def _qr_block(doc: OrderDocument, text: OrderText, spec: QrSpec, media: Media) -> list[Op]:
    return [Qr(doc.qr_payload, spec), Text(text.id_text, bold=True, align="center"),
            Text(printable(text.software), align="center", small=True)]


def receipt_tickets(doc: OrderDocument, media: Media,
                    max_body_rows: int = MAX_BODY_ROWS) -> list[Ticket]:
    """The order on one or more receipt tickets (58 or 80 mm)."""
    cols = media.columns
    spec = qr_spec(doc.qr_payload, media.width_dots)
    text = order_text(doc)
    pages = _paginate(_body_blocks(text, media), cols, max_body_rows)
    tickets: list[Ticket] = []
    for index, body in enumerate(pages, start=1):
        ops = _header(text, media, codes=index == 1)
        if len(pages) > 1:
            mark = f"Ordonnance {index}/{len(pages)}" if index == 1 else \
                f"suite {index}/{len(pages)}"
            ops += _texts(mark, cols, bold=True, align="right")
        ops += _duplicate(text, cols)
        ops.append(Rule(heavy=True))
        ops += body
        ops.append(Rule(heavy=True))
        if index == len(pages):
            ops += _footer(text, media)
        ops += _qr_block(doc, text, spec, media)
        ops += [Feed(1), Cut()]
        tickets.append(tuple(ops))
    return tickets


def label_tickets(doc: OrderDocument, media: Media) -> list[Ticket]:
    """A 62 mm label: QR, ID, resident, date, prescriber (and DUPLICATA, the objection)."""
    cols = media.columns
    spec = qr_spec(doc.qr_payload, media.width_dots)
    text = order_text(doc)
    ops: list[Op] = [Qr(doc.qr_payload, spec), Text(text.id_text, bold=True, align="center")]
    ops += _texts(text.patient_short, cols, bold=True, align="center")
    ops += _texts(text.birth_line, cols, align="center")
    ops += _texts(f"Ordonnance du {text.issue_date}", cols, align="center")
    prescriber = " - ".join(line for line in text.prescriber if line.startswith("RPPS"))
    ops += _texts(f"{text.prescriber_short} - {prescriber}", media.small_columns,
                  align="center", small=True)
    if text.mentions[:-1]:  # the objection, when there is one
        ops += _texts(text.mentions[0], media.small_columns, align="center", small=True)
    for n, line in enumerate(text.duplicate):
        ops += _texts(line, cols, bold=True, align="center", double=n == 0)
    ops += [Feed(1), Cut()]
    return [tuple(ops)]


def tickets_for(doc: OrderDocument, media: Media) -> list[Ticket]:
    return label_tickets(doc, media) if media.label else receipt_tickets(doc, media)


def ticket_text(ticket: Ticket) -> list[str]:
    """The text lines of a ticket (tests, previews)."""
    return [op.text for op in ticket if isinstance(op, Text)]
