"""The job bytes are exactly what python-escpos writes for each operation: the driver keeps
the bytes of each command and the rasters between jobs, and encodes text with the code
page's table, and none of that may change a byte."""

from dataclasses import replace
from datetime import UTC, datetime

import pytest
from escpos import printer as escpos_printer

from appliance.domain.prescription_id import PrescriptionIdGenerator
from appliance.domain.qr import EpuPayload
from drivers.printer import escpos
from drivers.printer.escpos import (
    CODE_PAGES,
    SMALL_LINE_DOTS,
    PrinterProfile,
    barcode_image,
    qr_image,
    qr_raster,
    raster_bytes,
    render_job,
    rule_image,
)
from drivers.printer.layout import (
    Barcodes,
    Cut,
    Feed,
    Letterhead,
    OrderDocument,
    Qr,
    Rule,
    Text,
    media_for,
    qr_spec,
    tickets_for,
)
from tests.factories import lines, physician, prescription, resident

HOME = Letterhead("EHPAD Résidence « Les Œillets »", "750000001",
                  "12, rue de l'Église\n76800 Saint-Étienne-du-Rouvray", "02 35 00 00 00",
                  "secretariat@ehpad.example.fr", "Médecin coordonnateur")


def python_escpos_job(tickets, profile: PrinterProfile, qr_mode: str, code_pages=CODE_PAGES):
    """Every operation through python-escpos itself, on one ``Dummy``."""
    p = profile.apply(escpos_printer.Dummy(profile=profile.model))
    p.hw("INIT")
    for name in code_pages:
        try:
            p.charcode(name)
            break
        except (ValueError, escpos.EscposError):
            continue
    width, small = profile.media.width_dots, False
    for ticket in tickets:
        for op in ticket:
            if isinstance(op, Text):
                if op.small != small:
                    p.line_spacing(SMALL_LINE_DOTS if op.small else None)
                    small = op.small
                p.set(align=op.align, bold=op.bold, double_width=op.double,
                      double_height=op.double, normal_textsize=not op.double,
                      font="b" if op.small else "a")
                p.text(op.text + "\n")
            elif isinstance(op, Feed):
                p.ln(op.lines)
            elif isinstance(op, Rule):
                p.set(align="left")
                p._raw(raster_bytes(rule_image(op, width)))
            elif isinstance(op, Barcodes):
                p.set(align="left")
                p._raw(raster_bytes(barcode_image(op, width)))
            elif isinstance(op, Qr):
                p.set(align="center", bold=False, normal_textsize=True)
                if qr_mode == "native":
                    p.qr(op.payload, ec=escpos._ECC[op.spec.ecc], size=op.spec.module,
                         native=True)
                    p.text("\n")
                else:
                    p._raw(raster_bytes(qr_image(op.payload, op.spec, width)))
                p.set(align="left")
            elif isinstance(op, Cut):
                p.cut()
    return p.output


def _orders():
    names = [("N'DIAYE", "Aïssatou"), ("Ødegård", "Bjørn"), ("Çelik", "Ömer Faruk"),
             ("SAINT-JUST D'ARTAGNAN DE BOURBON-PARME", "Louise")]
    signed = datetime(2026, 11, 25, 9, 30, tzinfo=UTC)
    for n, (last, first) in enumerate(names):
        who = resident(n + 1, birth_name=last, first_names=first, objection=n % 2 == 1)
        pid = PrescriptionIdGenerator(clock_ms=lambda n=n: 1_764_000_000_000 + n,
                                      random_bytes=lambda k, n=n: bytes([n]) * k).new()
        p = prescription(pid, resident=who, prescriber=physician(),
                         lines=lines() * (n + 1), renewals=n)
        yield p.transition(type(p.state).SIGNED, signed)


@pytest.mark.parametrize("qr_mode", ["raster", "native"])
@pytest.mark.parametrize(("media", "dpi"), [("58mm", 203), ("80mm", 203), ("label62", 203),
                                            ("58mm", 300), ("80mm", 180)])
def test_every_job_is_byte_for_byte_what_python_escpos_writes(media, dpi, qr_mode):
    m = media_for(media, dpi)
    profile = PrinterProfile("TM-T20II", m)
    for p in _orders():
        for payload in (EpuPayload.from_prescription(p).encode(),
                        "ORD2:" + "ABC123 $%*+-./:" * 30):
            for duplicate in (None, datetime(2026, 11, 26, 10, 0, tzinfo=UTC)):
                tickets = tickets_for(OrderDocument(p, payload, HOME, duplicate), m)
                expected = python_escpos_job(tickets, profile, qr_mode)
                assert render_job(tickets, profile, qr_mode) == expected
                assert render_job(tickets, profile, qr_mode) == expected  # kept bytes


def test_without_a_fixed_code_page_text_still_goes_through_python_escpos(monkeypatch,
                                                                      request):
    """No code page of the list can be fixed: python-escpos chooses one per character, and
    a job's text runs through it in order (its code page changes carry over)."""
    monkeypatch.setattr(escpos, "CODE_PAGES", ())
    escpos._shared_book.cache_clear()
    request.addfinalizer(escpos._shared_book.cache_clear)
    m = media_for("80mm")
    profile = PrinterProfile("TM-T20II", m)
    tickets = [(Text("Père Noël œuvre à Zürich"), Text("Ærø: 5 €", small=True),
                Text("ÿ ñ ß"), Cut())]
    expected = python_escpos_job(tickets, profile, "raster", ())
    assert b"\x1bt" in expected[2:]  # python-escpos switched code pages on the way
    assert render_job(tickets, profile) == expected
    assert render_job(tickets, profile) == expected


@pytest.mark.parametrize(("media", "dpi"), [("58mm", 203), ("80mm", 203), ("label62", 203),
                                            ("58mm", 300), ("80mm", 180), ("label62", 180)])
def test_the_qr_raster_is_the_qr_image(media, dpi):
    width = media_for(media, dpi).width_dots
    for payload in ("EPU1*0ABC", "EPU1*" + "X" * 80, "ORD2:" + "ABC123 $%*+-./:" * 30):
        spec = qr_spec(payload, width)
        assert qr_raster(payload, spec, width) == raster_bytes(qr_image(payload, spec, width))


def test_a_prepared_receipt_prints_without_making_its_qr_again(monkeypatch):
    from appliance.ports.printer import PrintRequest
    from drivers.printer.escpos import EscPosOrderPrinter

    printer = EscPosOrderPrinter("tcp://127.0.0.1:9", establishment=HOME, media="58mm")
    p = next(_orders())
    reviewed = replace(p, signed_at=datetime(2026, 11, 25, 9, 29, tzinfo=UTC))
    payload = EpuPayload.from_prescription(p).encode()
    expected = python_escpos_job(printer.tickets(PrintRequest(7, p, payload)),
                                 PrinterProfile("TM-T20II", media_for("58mm")), "raster")
    escpos.qr_raster.cache_clear()
    printer.prepare(PrintRequest(0, reviewed, payload))

    def made_again(*_):
        raise AssertionError("the QR was made again")

    monkeypatch.setattr(escpos, "qr_matrix", made_again)
    data, tickets = printer.render(PrintRequest(7, p, payload))
    assert (data, tickets) == (expected, 1)
