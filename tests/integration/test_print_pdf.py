"""The PDF of an order (A5, A4): the file is a well-formed PDF, and the QR image it holds
decodes to the same payload, which verifies. The image is taken out of the PDF with a small
reader below (xref table, image XObjects, FlateDecode with PNG predictors), and, when
poppler's ``pdftoppm`` is installed, from a real rendering of the page too."""

import re
import shutil
import subprocess
import zlib

import pytest
import zxingcpp
from click.testing import CliRunner
from PIL import Image

from appliance.cli import main
from appliance.services.signature import verify_payload

pytestmark = pytest.mark.integration


def _xref_ok(data: bytes) -> int:
    """Check the header, the trailer and every xref offset; return the object count."""
    assert data.startswith(b"%PDF-1.")
    assert data.rstrip().endswith(b"%%EOF")
    start = int(re.search(rb"startxref\s+(\d+)\s+%%EOF\s*$", data).group(1))
    assert data[start:start + 4] == b"xref"
    first, count = map(int, re.match(rb"xref\s+(\d+)\s+(\d+)", data[start:]).groups())
    table = re.findall(rb"(\d{10}) (\d{5}) ([nf])", data[start:start + 40 + 20 * count])
    assert len(table) == count
    for number, (offset, _gen, kind) in enumerate(table, start=first):
        if kind == b"n":
            assert data[int(offset):].startswith(b"%d 0 obj" % number), number
    return count


def _unpredict(raw: bytes, columns: int, colors: int) -> bytes:
    """Undo PNG row filters (PDF /Predictor >= 10, ISO 32000-1 §7.4.4.4)."""
    stride, out, prev = columns * colors, bytearray(), bytearray(columns * colors)
    for i in range(0, len(raw), stride + 1):
        kind, row = raw[i], bytearray(raw[i + 1:i + 1 + stride])
        for x in range(stride):
            a = row[x - colors] if x >= colors else 0
            b, c = prev[x], prev[x - colors] if x >= colors else 0
            if kind == 1:
                row[x] = (row[x] + a) & 0xFF
            elif kind == 2:
                row[x] = (row[x] + b) & 0xFF
            elif kind == 3:
                row[x] = (row[x] + (a + b) // 2) & 0xFF
            elif kind == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                row[x] = (row[x] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 0xFF
        out += row
        prev = row
    return bytes(out)


def _images(data: bytes) -> list[Image.Image]:
    found = []
    for match in re.finditer(rb"<<(.*?)>>\s*stream\r?\n", data, re.S):
        head = match.group(1)
        if b"/Subtype /Image" not in head:
            continue
        length = int(re.search(rb"/Length (\d+)", head).group(1))
        width = int(re.search(rb"/Width (\d+)", head).group(1))
        height = int(re.search(rb"/Height (\d+)", head).group(1))
        assert b"/DeviceGray" in head and b"/BitsPerComponent 8" in head
        raw = zlib.decompress(data[match.end():match.end() + length])
        if b"/Predictor" in head:
            raw = _unpredict(raw, width, 1)
        found.append(Image.frombytes("L", (width, height), raw))
    return found


@pytest.fixture
def signed_in_data_dir(tmp_path, orders, store):
    """A data dir whose ordo.sqlite holds one signed order."""
    signed = orders.sign(renewals=1)
    return store.path.parent, signed


@pytest.mark.parametrize("paper", ["A5", "A4"])
def test_the_pdf_opens_and_holds_the_same_qr(paper, signed_in_data_dir, tmp_path, print_trust):
    data_dir, signed = signed_in_data_dir
    out = tmp_path / f"ordonnance-{paper}.pdf"
    result = CliRunner().invoke(main, ["--data-dir", str(data_dir), "print", "pdf",
                                       signed.prescription.id, str(out), "--paper", paper,
                                       "--as", "899700000013"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    data = out.read_bytes()
    assert _xref_ok(data) > 5
    size = {"A5": b"[0 0 419.53 595.28]", "A4": b"[0 0 595.28 841.89]"}[paper]
    assert b"/MediaBox " + size in data
    (image,) = _images(data)
    decoded = [r.text for r in zxingcpp.read_barcodes(image)]
    assert decoded == [signed.payload.encode()]
    roots, crls = print_trust
    assert verify_payload(decoded[0], roots, crls).fields.prescription_id == \
        signed.prescription.id

    if shutil.which("pdftoppm"):  # a real renderer, when poppler-utils is installed
        subprocess.run(["pdftoppm", "-r", "200", "-png", "-f", "1", "-l", "1", str(out),
                        str(tmp_path / "page")], check=True, timeout=30)
        (page,) = tmp_path.glob("page*.png")
        rendered = [r.text for r in zxingcpp.read_barcodes(Image.open(page))]
        assert rendered == [signed.payload.encode()]


def test_the_pdf_export_is_audited(signed_in_data_dir, tmp_path, store):
    from appliance.store import audit

    data_dir, signed = signed_in_data_dir
    CliRunner().invoke(main, ["--data-dir", str(data_dir), "print", "pdf",
                              signed.prescription.id, str(tmp_path / "o.pdf")],
                       catch_exceptions=False)
    last = audit.entries(store)[-1]
    assert (last.action, last.subject, last.actor) == ("print.pdf", signed.prescription.id,
                                                       "system")


def test_a_duplicate_pdf_and_a_long_order_still_hold_one_qr(orders):
    from datetime import UTC, datetime
    from decimal import Decimal

    from appliance.domain.posology import Duration, Posology
    from appliance.domain.prescription import MedicationLine
    from drivers.printer.layout import Letterhead, OrderDocument
    from drivers.printer.pdf import render_pdf

    many = tuple(MedicationLine(label=f"MEDICAMENT {n} 100 mg, comprimé", cis="60234100",
                                posology=Posology(dose=Decimal(1), unit="comprimé",
                                                  moments=("matin",),
                                                  duration=Duration(10, "jour")))
                 for n in range(1, 40))
    signed = orders.sign(lines=many)
    doc = OrderDocument(signed.prescription, signed.payload.encode(), Letterhead("EHPAD"),
                        duplicate_at=datetime(2026, 11, 26, 13, 5, tzinfo=UTC))
    data = render_pdf(doc, "A5")
    assert data.count(b"/Type /Page\n") >= 2
    (image,) = _images(data)
    assert [r.text for r in zxingcpp.read_barcodes(image)] == [signed.payload.encode()]
