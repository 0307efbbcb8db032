"""The order as a PDF/A-2b (A5 by default, or A4), for the DMP, MSSanté and an office or
secure-paper printer, made with fpdf2.

Same content as the receipt (``layout.order_text``) and the same QR payload. The QR is an
image of 4 pixels per module with a 4-module quiet zone, error-correction level M (L when
the payload needs it), 45 mm wide on A5 and 55 mm on A4, top right of the first page,
with the ID in clear under it; the RPPS and the N° AM are also Code 128 barcodes (0.25 mm
modules); every page has a footer with the ID and "page k/n".

PDF/A-2b (ISO 19005-2, level B), the archival form the DMP keeps: fpdf2's
``enforce_compliance`` writes PDF 1.7 with the XMP metadata (``pdfaid:part`` 2,
``pdfaid:conformance`` B), an sRGB output intent and no Info dictionary, and refuses the
non-embedded standard fonts. The text is set in DejaVu Sans (Debian ``fonts-dejavu-core``),
embedded and subset; without that font the PDF is refused with a clear message.

A secure prescription (``OrderText.secure``) says so at the top, writes its quantities in
words (done by ``order_text``) and ends with the number of medications prescribed, in
words and digits, as a secure-paper order asks for it.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from fpdf import FPDF
from fpdf.enums import XPos, YPos
from PIL import Image

from appliance.domain.secure import number_words
from appliance.errors import PrinterError, ValidationError
from drivers.printer.layout import (
    QUIET_MODULES,
    SECURE_MENTION,
    Barcodes,
    OrderDocument,
    OrderText,
    QrSpec,
    code128,
    order_text,
    qr_matrix,
    version_for,
)

PAPERS = {"A5": (12.0, 45.0, 9.0), "A4": (15.0, 55.0, 10.0)}  # margin, QR width (mm), font pt
SIZES_MM = {"A5": (148.0, 210.0), "A4": (210.0, 297.0)}  # ISO 216
PIXELS_PER_MODULE = 4
COMPLIANCE = "PDFA_2B"
FONT_DIRS = (Path("/usr/share/fonts/truetype/dejavu"), Path("/usr/share/fonts/dejavu"))
FONT_FILES = {"": "DejaVuSans.ttf", "B": "DejaVuSans-Bold.ttf"}
FONT = "DejaVu"
BAR_MODULE_MM = 0.25
BAR_HEIGHT_MM = 7.0


def font_files() -> dict[str, Path]:
    """The DejaVu Sans files (regular, bold); ``PrinterError`` when they are missing."""
    for folder in FONT_DIRS:
        found = {style: folder / name for style, name in FONT_FILES.items()}
        if all(path.is_file() for path in found.values()):
            return found
    raise PrinterError("PDF impossible : police DejaVu Sans absente (paquet Debian "
                       f"fonts-dejavu-core, attendue dans {FONT_DIRS[0]})")


def pdf_qr_spec(payload: str) -> QrSpec:
    for ecc in ("M", "L"):
        version = version_for(len(payload), ecc)
        if version is not None:
            return QrSpec(version, ecc, PIXELS_PER_MODULE)
    raise ValidationError("qr", len(payload), "a payload that fits a QR code version 40")


def pdf_qr_image(payload: str) -> Image.Image:
    spec = pdf_qr_spec(payload)
    matrix = qr_matrix(payload, spec)
    n = len(matrix) + 2 * QUIET_MODULES
    small = Image.new("L", (n, n), 255)
    small.putdata([0 if (0 <= y - QUIET_MODULES < len(matrix) and 0 <= x - QUIET_MODULES
                         < len(matrix) and matrix[y - QUIET_MODULES][x - QUIET_MODULES])
                   else 255 for y in range(n) for x in range(n)])
    return small.resize((n * spec.module, n * spec.module), Image.Resampling.NEAREST)


def _barcode_image(value: str) -> Image.Image:
    from drivers.printer.escpos import barcode_image

    bars = code128(value)
    op = Barcodes(((value, bars),), 1, 1)
    width = len(bars) + 20  # the 10-module quiet zones
    return barcode_image(op, width).convert("L").resize((width * 4, 4),
                                                        Image.Resampling.NEAREST)


class _OrderPdf(FPDF):
    def __init__(self, paper: str, text: OrderText) -> None:
        super().__init__(format=SIZES_MM[paper], enforce_compliance=COMPLIANCE)
        self.order = text
        self.font_pt = PAPERS[paper][2]
        for style, path in font_files().items():
            self.add_font(FONT, style=style, fname=str(path))

    def footer(self) -> None:
        self.set_y(-12)
        self.set_font(FONT, size=self.font_pt - 2)
        self.set_text_color(90)
        self.cell(0, 5, f"Ordonnance numérique {self.order.id_text} - "
                        f"{self.order.software} - page {self.page_no()}/{{nb}}", align="C")
        self.set_text_color(0)


def render_pdf(doc: OrderDocument, paper: str = "A5",
               created: datetime | None = None) -> bytes:
    """The PDF/A-2b bytes of the order on A5 or A4 paper."""
    if paper not in PAPERS:
        raise ValidationError("paper", paper, "A5 or A4")
    margin, qr_mm, pt = PAPERS[paper]
    text = order_text(doc)
    pdf = _OrderPdf(paper, text)
    pdf.set_creation_date(created or datetime.now(UTC))
    pdf.set_title(f"Ordonnance {text.id_text}")
    pdf.set_subject("Ordonnance numérique")
    pdf.set_author(text.prescriber_short)
    pdf.set_creator(text.software)
    pdf.set_lang("fr-FR")
    pdf.set_margins(margin, margin, margin)
    pdf.set_auto_page_break(True, margin=16)
    pdf.alias_nb_pages()
    pdf.add_page()
    width = pdf.w - 2 * margin
    left_w = width - qr_mm - 4

    def line(value: str, *, bold: bool = False, size: float = pt, w: float = 0,
             align: str = "L") -> None:
        pdf.set_font(FONT, style="B" if bold else "", size=size)
        pdf.multi_cell(w, size * 0.45, value, align=align, new_x=XPos.LMARGIN,
                       new_y=YPos.NEXT)

    top = pdf.get_y()
    qr_x = pdf.w - margin - qr_mm
    pdf.image(pdf_qr_image(doc.qr_payload), x=qr_x, y=top, w=qr_mm, h=qr_mm,
              alt_text="QR code de l'ordonnance")
    pdf.set_xy(qr_x - 6, top + qr_mm + 1)
    pdf.set_font(FONT, style="B", size=pt)
    pdf.cell(qr_mm + 12, pt * 0.45, text.id_text, align="C")
    pdf.set_xy(margin, top)
    if text.secure:
        line(SECURE_MENTION, bold=True, size=pt + 3, w=left_w)
        pdf.ln(1)
    for n, value in enumerate(text.establishment):
        line(value, bold=n == 0, size=pt + 2 if n == 0 else pt - 1, w=left_w)
    pdf.ln(2)
    for n, value in enumerate(text.prescriber):
        line(value, bold=n == 0, size=pt if n == 0 else pt - 1, w=left_w)
    images = [(_barcode_image(value), value) for _, value in text.codes]
    widths = [image.width / 4 * BAR_MODULE_MM for image, _ in images]
    side_by_side = sum(widths) + 2 * len(widths) <= left_w
    x = margin
    for (image, value), bar_w in zip(images, widths, strict=True):
        pdf.image(image, x=x, y=pdf.get_y() + 1, w=bar_w, h=BAR_HEIGHT_MM,
                  alt_text=f"Code-barres {value}")
        if side_by_side:
            x += bar_w + 2
        else:
            pdf.ln(BAR_HEIGHT_MM + 1)
    if images and side_by_side:
        pdf.ln(BAR_HEIGHT_MM + 2)
    pdf.ln(2)
    for n, value in enumerate(text.patient):
        line(value, bold=n == 0, w=left_w)
    pdf.ln(2)
    line(text.date_line, w=left_w)
    pdf.set_y(max(pdf.get_y(), top + qr_mm + pt * 0.45 + 3))
    if text.duplicate:
        pdf.set_text_color(170, 0, 0)
        line(text.duplicate[0], bold=True, size=pt + 8, align="C")
        for value in text.duplicate[1:]:
            line(value, bold=True, align="C")
        pdf.set_text_color(0)
    pdf.ln(2)
    pdf.line(margin, pdf.get_y(), pdf.w - margin, pdf.get_y())
    pdf.ln(2)
    for section in text.sections:
        if section.heading:
            line(section.heading, bold=True, size=pt + 1)
            pdf.ln(1)
        for item in section.items:
            line(f"{item.number}. {item.title}", bold=True)
            extra = ([item.brand] if item.brand else []) + list(item.details)
            for detail in extra:
                pdf.set_x(margin + 6)
                line(detail, w=width - 6)
            for note in [*item.notes, item.codes]:
                if note:
                    pdf.set_x(margin + 6)
                    line(note, size=pt - 2, w=width - 6)
            pdf.ln(1.5)
        pdf.line(margin, pdf.get_y(), pdf.w - margin, pdf.get_y())
        pdf.ln(2)
    if text.secure:
        count = text.medication_count
        line(f"Nombre de médicaments prescrits : {number_words(count)} ({count})",
             bold=True, align="R")
        pdf.ln(1)
    if text.signature:
        line(text.signature, size=pt - 1)
    for mention in text.mentions:
        line(mention, size=pt - 1)
    return bytes(pdf.output())
