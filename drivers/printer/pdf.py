"""The order as a PDF (A5 or A4), for the DMP and an office printer, made with fpdf2.

Same content as the receipt (``layout.order_text``) and the same QR payload. The QR is an
image of 4 pixels per module with a 4-module quiet zone, error-correction level M (L when
the payload needs it), 45 mm wide on A5 and 55 mm on A4, top right of the first page,
with the ID in clear under it; every page has a footer with the ID and "page k/n".
Text uses the PDF core fonts (Helvetica, Latin-1): ``layout.printable`` maps the rest.
"""

from __future__ import annotations

from datetime import UTC, datetime

from fpdf import FPDF
from fpdf.enums import XPos, YPos
from PIL import Image

from appliance.errors import ValidationError
from drivers.printer.layout import (
    QUIET_MODULES,
    OrderDocument,
    OrderText,
    QrSpec,
    order_text,
    printable,
    qr_matrix,
    version_for,
)

PAPERS = {"A5": (12.0, 45.0, 9.0), "A4": (15.0, 55.0, 10.0)}  # margin, QR width (mm), font pt
SIZES_MM = {"A5": (148.0, 210.0), "A4": (210.0, 297.0)}  # ISO 216
PIXELS_PER_MODULE = 4


def _t(text: str) -> str:
    return printable(text, "latin-1")


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


class _OrderPdf(FPDF):
    def __init__(self, paper: str, text: OrderText) -> None:
        super().__init__(format=SIZES_MM[paper])
        self.order = text
        self.font_pt = PAPERS[paper][2]

    def footer(self) -> None:
        self.set_y(-12)
        self.set_font("Helvetica", size=self.font_pt - 2)
        self.set_text_color(90)
        self.cell(0, 5, _t(f"Ordonnance numérique {self.order.id_text} - page "
                           f"{self.page_no()}/{{nb}}"), align="C")
        self.set_text_color(0)


def render_pdf(doc: OrderDocument, paper: str = "A5",
               created: datetime | None = None) -> bytes:
    """The PDF bytes of the order on A5 or A4 paper."""
    if paper not in PAPERS:
        raise ValidationError("paper", paper, "A5 or A4")
    margin, qr_mm, pt = PAPERS[paper]
    text = order_text(doc)
    pdf = _OrderPdf(paper, text)
    pdf.set_creation_date(created or datetime.now(UTC))
    pdf.set_title(_t(f"Ordonnance {text.id_text}"))
    pdf.set_creator("Ordo")
    pdf.set_margins(margin, margin, margin)
    pdf.set_auto_page_break(True, margin=16)
    pdf.alias_nb_pages()
    pdf.add_page()
    width = pdf.w - 2 * margin
    left_w = width - qr_mm - 4

    def line(value: str, *, bold: bool = False, size: float = pt, w: float = 0,
             align: str = "L") -> None:
        pdf.set_font("Helvetica", style="B" if bold else "", size=size)
        pdf.multi_cell(w, size * 0.45, _t(value), align=align, new_x=XPos.LMARGIN,
                       new_y=YPos.NEXT)

    top = pdf.get_y()
    qr_x = pdf.w - margin - qr_mm
    pdf.image(pdf_qr_image(doc.qr_payload), x=qr_x, y=top, w=qr_mm, h=qr_mm,
              alt_text="QR code de l'ordonnance")
    pdf.set_xy(qr_x - 6, top + qr_mm + 1)
    pdf.set_font("Helvetica", style="B", size=pt)
    pdf.cell(qr_mm + 12, pt * 0.45, _t(text.id_text), align="C")
    pdf.set_xy(margin, top)
    for n, value in enumerate(text.establishment):
        line(value, bold=n == 0, size=pt + 2 if n == 0 else pt, w=left_w)
    pdf.ln(2)
    for n, value in enumerate(text.prescriber):
        line(value, bold=n == 0, w=left_w)
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
            for detail in item.details:
                if detail:
                    pdf.set_x(margin + 6)
                    line(detail, w=width - 6)
            pdf.ln(1.5)
        pdf.line(margin, pdf.get_y(), pdf.w - margin, pdf.get_y())
        pdf.ln(2)
    if text.renewals:
        line(text.renewals, bold=True)
    return bytes(pdf.output())
