"""Layout of printed orders (drivers.printer.layout) and the ESC/POS bytes it becomes
(rendered back offline by the emulator's interpreter: no socket here)."""

import random
from datetime import UTC, datetime
from decimal import Decimal

import pytest
import zxingcpp

from appliance.domain.posology import Duration, Posology
from appliance.domain.prescription import MedicationLine, NonSubstitution, State
from appliance.domain.prescription_id import PrescriptionIdGenerator
from appliance.domain.qr import CertificateRef, EpuPayload, SignedOrder, SignedPayload
from drivers.printer.emulator import render_bytes
from drivers.printer.escpos import PrinterProfile, render_job
from drivers.printer.layout import (
    ALD_HEADING,
    NON_ALD_HEADING,
    Barcodes,
    Cut,
    Letterhead,
    OrderDocument,
    Qr,
    QrTooLarge,
    Rule,
    Text,
    label_tickets,
    media_for,
    order_text,
    printable,
    qr_capacity,
    qr_spec,
    receipt_tickets,
    ticket_text,
)
from tests.factories import lines, prescription

SIGNED_AT = datetime(2026, 11, 25, 9, 30, tzinfo=UTC)  # 10:30 in Paris
HOME = Letterhead("EHPAD Les Tilleuls", "750000001", "12 rue des Lilas, 75012 Paris",
                  "+33 1 43 00 00 00", "accueil@tilleuls.fr")


def _signed(**kw):
    pid = PrescriptionIdGenerator(clock_ms=lambda: 1_764_000_000_000).new()
    return prescription(pid, **kw).transition(State.SIGNED, SIGNED_AT)


def _signed_payload(p):
    ref = CertificateRef.of(random.Random(7).randbytes(103), random.Random(8).getrandbits(159))
    return SignedPayload(SignedOrder.from_prescription(p), random.Random(3).randbytes(256),
                         ref).encode()


def _doc(p=None, duplicate_at=None, signed=False, **kw):
    p = p or _signed(**kw)
    payload = _signed_payload(p) if signed else EpuPayload.from_prescription(p).encode()
    return OrderDocument(p, payload, HOME, duplicate_at)


# -- media and QR budget ---------------------------------------------------------------------
def test_media_widths_and_columns():
    assert (media_for("58mm").width_dots, media_for("58mm").columns) == (384, 32)
    assert (media_for("80mm").width_dots, media_for("80mm").columns) == (576, 48)
    assert (media_for("label62").width_dots, media_for("label62").columns) == (464, 38)


def test_the_epu_code_is_level_q_version_5_or_6_at_8_dots_on_every_medium():
    payload = _doc().qr_payload
    for width in (384, 576, 464, 360):
        spec = qr_spec(payload, width)
        assert (spec.ecc, spec.version <= 6, spec.module) == ("Q", True, 8)
        assert spec.size_dots <= width


def test_the_signed_code_is_level_m_at_4_dots_or_more_on_58mm():
    payload = _doc(signed=True).qr_payload
    assert 500 < len(payload) <= 700
    spec = qr_spec(payload, 384)
    assert spec.ecc == "M" and spec.module >= 4 and spec.size_dots <= 384
    assert qr_spec(payload, 576).module > spec.module


def test_level_m_when_q_would_need_more_than_version_7():
    spec = qr_spec("A" * 140, 384)
    assert (spec.ecc, spec.version) == ("M", 6)
    assert qr_spec("A" * 120, 384).ecc == "Q"


def test_a_payload_too_long_for_the_medium_is_refused_with_the_limit():
    with pytest.raises(QrTooLarge, match="at most 2132"):
        qr_spec("A" * 2200, 384)
    assert qr_capacity(384) == 2132


# -- what the order says -----------------------------------------------------------------------
def test_the_order_text_in_french():
    doc = _doc(renewals=2)
    text = order_text(doc)
    assert text.establishment == ("EHPAD Les Tilleuls", "12 rue des Lilas, 75012 Paris",
                                  "France", "Tél. +33 1 43 00 00 00 - accueil@tilleuls.fr",
                                  "FINESS 750000001")
    assert text.prescriber == ("Dr Paul DURAND", "Médecin", "RPPS\u00a010001234565",
                               "N°\u00a0AM\u00a0751234567")
    assert text.codes == (("RPPS", "10001234565"), ("N°\u00a0AM", "751234567"))
    assert text.patient == ("MARTIN Jeanne", "F, née le 15/01/1940 (86\u00a0ans)",
                            "Chambre 101")
    assert text.date_line == "Ordonnance du 25/11/2026 à 10:30"
    assert text.signature == ("Signée électroniquement par carte CPS : Dr Paul DURAND, "
                              "le 25/11/2026 à 10:30")
    assert [item.details[-1] for s in text.sections for item in s.items] == [
        "À renouveler 2 fois"] * 4
    assert text.id_text.count(" ") == 5 and len(text.id_text) == 29
    assert text.software.startswith("Ordo ")
    assert text.mentions[-1].startswith("Ordonnance numérique")


def test_the_prescriber_contact_comes_from_the_practitioner_else_the_settings():
    from tests.factories import physician

    fallback = Letterhead("EHPAD", qualification="Médecin coordonnateur",
                          prescriber_phone="+33 6 12 34 56 78")
    doc = OrderDocument(_signed(), "EPU1*X", fallback)
    assert order_text(doc).prescriber[1:3] == ("Médecin coordonnateur", "Tél. +33 6 12 34 56 78")
    own = _signed(prescriber=physician(qualification="Gériatre", phone="0145000000",
                                       email="p.durand@tilleuls.fr"))
    assert order_text(OrderDocument(own, "EPU1*X", fallback)).prescriber[1:3] == (
        "Gériatre", "Tél. +33 1 45 00 00 00 - p.durand@tilleuls.fr")


def test_the_objection_and_the_weight_are_printed_when_given():
    from tests.factories import resident

    text = order_text(_doc(resident=resident(objection=True, used_name="Dupont"),
                           weight_kg=Decimal("61.5")))
    assert text.patient[:2] == ("DUPONT née MARTIN Jeanne",
                                "F, née le 15/01/1940 (86\u00a0ans), 61,5\u00a0kg")
    assert "décret n° 2023-1222" in text.mentions[0]


def test_ald_lines_come_first_in_their_own_section_numbered_as_printed():
    text = order_text(_doc())
    assert [s.heading for s in text.sections] == [ALD_HEADING, NON_ALD_HEADING]
    ald, other = text.sections
    assert [(i.number, i.title) for i in ald.items] == [(1, "AMOXICILLINE 500 mg")]
    assert [i.number for i in other.items] == [2, 3, 4]
    doliprane = other.items[0]
    assert doliprane.details[0] == "1 comprimé matin et soir pendant 7 jours"


def test_no_ald_line_means_no_section_heading():
    plain = tuple(line for line in lines() if not line.ald)
    text = order_text(_doc(lines=plain))
    assert [s.heading for s in text.sections] == [None]


def test_non_substitution_quantity_and_instructions_are_printed():
    line = MedicationLine(label="LEVOTHYROX 50 µg", cip13="3400935955838",
                          posology=Posology(dose=Decimal(1), unit="comprimé", moments=("matin",),
                                            duration=Duration(3, "mois")),
                          quantity=Decimal("2.5"), non_substitution=NonSubstitution.MTE,
                          instructions="À jeun, 30 min avant le petit-déjeuner")
    item = order_text(_doc(lines=(line,))).sections[0].items[0]
    assert item.details == ("1 comprimé le matin pendant 3 mois", "Quantité : 2,5 boîtes",
                            "Non substituable (MTE)")
    assert item.notes == ("Instructions : À jeun, 30 min avant le petit-déjeuner",)
    assert item.codes == "CIP13 3400935955838"
    assert item.title == "LEVOTHYROX 50 µg" and item.brand == ""


def test_the_common_name_comes_first_with_the_brand_beside_it():
    line = MedicationLine(label="DOLIPRANE 1000 mg, comprimé", cis="60234100",
                          common_name="paracétamol 1000 mg", quantity=Decimal(10),
                          posology=Posology(dose=Decimal(1), unit="comprimé",
                                            moments=("matin",)))
    item = order_text(_doc(lines=(line,))).sections[0].items[0]
    assert (item.title, item.brand) == ("paracétamol 1000 mg", "DOLIPRANE 1000 mg, comprimé")
    assert item.details[1] == "Quantité : 10 boîtes"  # as typed, never 1E+1
    from dataclasses import replace

    by_dc = order_text(_doc(lines=(replace(line, by_brand=False),))).sections[0].items[0]
    assert (by_dc.title, by_dc.brand) == ("paracétamol 1000 mg", "")


def test_a_man_is_born_and_the_age_is_taken_on_the_issue_date():
    from tests.factories import resident

    text = order_text(_doc(resident=resident(sex="M", first_names="Louis")))
    assert text.patient[1] == "M, né le 15/01/1940 (86\u00a0ans)"


# -- receipts ------------------------------------------------------------------------------
@pytest.mark.parametrize("media", ["58mm", "80mm"])
def test_every_receipt_line_fits_the_paper_and_the_code_page(media):
    m = media_for(media)
    for ticket in receipt_tickets(_doc(renewals=1), m):
        for op in ticket:
            if isinstance(op, Text):
                cols = m.small_columns if op.small else m.columns
                assert len(op.text) <= (cols // 2 if op.double else cols), op.text
                op.text.encode("cp858")
        assert isinstance(ticket[-1], Cut)
        assert sum(isinstance(op, Qr) for op in ticket) == 1


def test_the_id_is_printed_in_groups_of_4_right_under_the_qr():
    doc = _doc()
    ticket = receipt_tickets(doc, media_for("58mm"))[0]
    at = next(i for i, op in enumerate(ticket) if isinstance(op, Qr))
    assert ticket[at + 1] == Text(order_text(doc).id_text, bold=True, align="center")
    assert ticket[at + 2].text.startswith("Ordo ")


def test_a_duplicate_says_so_with_the_reprint_time():
    doc = _doc(duplicate_at=datetime(2026, 11, 26, 13, 5, tzinfo=UTC))
    text = [line.replace("\u00a0", " ") for line in
            ticket_text(receipt_tickets(doc, media_for("80mm"))[0])]
    assert "DUPLICATA" in text
    assert "Réimprimé le 26/11/2026 à 14:05" in text
    assert "DUPLICATA" not in ticket_text(receipt_tickets(_doc(), media_for("80mm"))[0])


def test_a_long_order_continues_on_further_tickets_each_with_its_qr():
    many = tuple(MedicationLine(label=f"MEDICAMENT NUMERO {n} 100 mg, comprimé sécable",
                                cis="60234100", ald=n % 3 == 0,
                                posology=Posology(dose=Decimal(1), unit="comprimé",
                                                  moments=("matin", "midi", "soir"),
                                                  duration=Duration(10, "jour")))
                 for n in range(1, 31))
    doc = _doc(lines=many)
    tickets = receipt_tickets(doc, media_for("58mm"))
    n = len(tickets)
    assert n >= 3
    texts = [ticket_text(t) for t in tickets]
    assert f"Ordonnance 1/{n}" in texts[0]
    assert all(f"suite {k}/{n}" in texts[k - 1] for k in range(2, n + 1))
    assert any(line.endswith("(suite)") for t in texts[1:] for line in t)
    numbers = [int(line.split(".")[0]) for t in texts for line in t
               if line[:1].isdigit() and ". " in line[:4]]
    assert numbers == list(range(1, 31))  # every line once, in order, none split
    for ticket in tickets:
        assert sum(isinstance(op, Qr) for op in ticket) == 1
        assert order_text(doc).id_text in ticket_text(ticket)


def test_a_label_holds_the_qr_id_resident_and_date_only():
    doc = _doc()
    (ticket,) = label_tickets(doc, media_for("label62"))
    assert isinstance(ticket[0], Qr)
    assert [line.replace("\u00a0", " ") for line in ticket_text(ticket)] == [
        order_text(doc).id_text, "MARTIN Jeanne", "Née le 15/01/1940 (86 ans)",
        "Ordonnance du 25/11/2026",
        "Dr Paul DURAND - RPPS 10001234565"]


# -- characters -----------------------------------------------------------------------------
def test_printable_keeps_french_accents_and_maps_what_cp858_lacks():
    assert printable("Éléonore à l'hôpital, ça coûte 5 €") == \
        "Éléonore à l'hôpital, ça coûte 5 EUR"
    assert printable("cœur “entre guillemets” – c’est ŒUVRE…") == \
        "coeur \"entre guillemets\" - c'est OEUVRE..."
    assert printable("Ǆ ą ő ✓") == "DZ a o ?"
    assert printable("2,5\u00a0mL, 10\u202f000\u00a0UI") == "2,5\u00a0mL, 10\u00a0000\u00a0UI"
    assert printable("cœur", "latin-1") == "coeur"


# -- bytes ---------------------------------------------------------------------------------
@pytest.mark.parametrize(("media", "qr_mode"), [("58mm", "raster"), ("80mm", "raster"),
                                                ("label62", "raster"), ("80mm", "native")])
def test_the_job_bytes_render_back_to_a_decodable_qr(media, qr_mode):
    doc = _doc()
    m = media_for(media)
    tickets = label_tickets(doc, m) if m.label else receipt_tickets(doc, m)
    data = render_job(tickets, PrinterProfile("TM-T20II", m), qr_mode)
    assert data.startswith(b"\x1b@\x1bt\x13")  # ESC @, then ESC t 19: CP858
    assert (b"\x1d(k" in data) == (qr_mode == "native")
    (rendered,) = render_bytes(data, m.width_dots)
    assert rendered.cut
    found = zxingcpp.read_barcodes(rendered.image, formats=zxingcpp.BarcodeFormat.QRCode)
    assert [r.text for r in found] == [doc.qr_payload]
    assert order_text(doc).id_text in rendered.text


def test_accented_text_goes_out_in_cp858():
    doc = _doc()
    data = render_job(receipt_tickets(doc, media_for("80mm")), PrinterProfile(
        "TM-T20II", media_for("80mm")))
    assert "née le 15/01/1940".encode("cp858") in data
    (rendered,) = render_bytes(data, 576)
    assert any("Prescriptions SANS RAPPORT avec l'affection" in line for line in rendered.text)
    assert not any("?" in line for line in rendered.text)  # no glyph fell back to "?"


# -- the emulator reads every image command python-escpos can send --------------------------
@pytest.mark.parametrize("impl", ["bitImageRaster", "bitImageColumn", "graphics"])
def test_each_escpos_image_command_renders_back_exactly(impl):
    from escpos import printer as escpos_printer

    from drivers.printer.escpos import qr_image

    payload = _doc(signed=True).qr_payload
    m = media_for("80mm")
    p = PrinterProfile("TM-T20II", m).apply(escpos_printer.Dummy(profile="TM-T20II"))
    p.image(qr_image(payload, qr_spec(payload, m.width_dots), m.width_dots), impl=impl)
    p.cut()
    (rendered,) = render_bytes(p.output, m.width_dots)
    assert [r.text for r in zxingcpp.read_barcodes(rendered.image)] == [payload]


# -- printer URIs and status bytes ------------------------------------------------------------
def test_printer_uris():
    from drivers.printer.escpos import Endpoint, parse_uri

    assert parse_uri("tcp://10.0.0.5:9100") == Endpoint("tcp", host="10.0.0.5", port=9100)
    assert parse_uri("tcp://printer") == Endpoint("tcp", host="printer", port=9100)
    assert parse_uri("usb://04b8:0e15") == Endpoint("usb", vendor=0x04B8, product=0x0E15)
    assert parse_uri("serial:///dev/ttyS0?baudrate=19200") == Endpoint(
        "serial", path="/dev/ttyS0", baudrate=19200)
    assert parse_uri("file:///dev/usb/lp0") == Endpoint("file", path="/dev/usb/lp0")
    assert not parse_uri("file:///dev/usb/lp0").readable


@pytest.mark.parametrize("uri", ["http://x", "usb://zz:01", "serial:///dev/ttyS0?baudrate=x",
                                 "tcp://", "file://"])
def test_a_bad_printer_uri_is_refused_in_french(uri):
    from appliance.errors import PrinterError
    from drivers.printer.escpos import parse_uri

    with pytest.raises(PrinterError, match="adresse d'imprimante invalide"):
        parse_uri(uri)


@pytest.mark.parametrize(("byte", "kind", "state"), [
    (0x12, 4, "ready"), (0x1E, 4, "paper_low"), (0x72, 4, "paper_out"), (0x7E, 4, "paper_out"),
    (0x12, 1, "ready"), (0x1A, 1, "offline"), (0x00, 4, "unknown"), (0xFF, 1, "unknown"),
])
def test_dle_eot_status_bytes(byte, kind, state):
    from drivers.printer.escpos import decode_status

    assert decode_status(byte, kind).state.value == state


def test_an_unknown_printer_model_is_refused():
    from appliance.errors import PrinterError
    from drivers.printer.escpos import EscPosOrderPrinter

    with pytest.raises(PrinterError, match="modèle d'imprimante inconnu"):
        EscPosOrderPrinter("tcp://127.0.0.1:9", establishment=HOME, model="NO-SUCH-MODEL")


# -- wrapping, barcodes --------------------------------------------------------------------------
@pytest.mark.parametrize("media", ["58mm", "80mm"])
def test_a_number_never_leaves_its_word_and_long_lines_wrap_indented(media):
    m = media_for(media)
    for days in range(1, 40):
        line = MedicationLine(label="X" * 5, cis="60234100",
                              posology=Posology(dose=Decimal(1), unit="comprimé",
                                                moments=("matin", "midi", "soir"),
                                                duration=Duration(days, "jour")),
                              quantity=Decimal(10), renewals=3)
        ticket = receipt_tickets(_doc(lines=(line,)), m)[0]
        lines = ticket_text(ticket)
        start = lines.index("1. XXXXX")
        body = lines[start + 1:lines.index(next(x for x in lines if x.startswith("Signée")))]
        assert all(row.startswith("   ") for row in body), body
        joined = " ".join(row.strip() for row in body)
        assert f"pendant {days}\u00a0jour" in joined
        assert "Quantité\u00a0: 10\u00a0boîtes" in joined
        for row in lines:
            assert not row.rstrip().endswith((" 1", " 2", " 3", " 10")), row


def test_a_word_wider_than_the_paper_is_cut_and_nothing_else():
    from drivers.printer.layout import _wrap

    assert _wrap("a" * 40, 32) == ["a" * 32, "a" * 8]
    assert _wrap("prendre 2 comprimés", 12) == ["prendre", "2\u00a0comprimés"]


@pytest.mark.parametrize("media", ["58mm", "80mm"])
def test_rpps_and_am_barcodes_decode_from_the_printed_bytes(media):
    m = media_for(media)
    doc = _doc()
    tickets = receipt_tickets(doc, m)
    assert sum(isinstance(op, Barcodes) for op in tickets[0]) == (2 if media == "58mm" else 1)
    assert any(isinstance(op, Rule) for op in tickets[0])
    (rendered,) = render_bytes(render_job(tickets, PrinterProfile("TM-T20II", m)), m.width_dots)
    found = zxingcpp.read_barcodes(rendered.image, formats=zxingcpp.BarcodeFormat.Code128)
    assert sorted(r.text for r in found) == ["10001234565", "751234567"]
    text = [line.replace("\u00a0", " ") for line in rendered.text]
    assert any("RPPS 10001234565" in line for line in text)
    assert any("N° AM 751234567" in line for line in text)


def test_a_secure_line_is_written_in_words():
    from appliance.domain.prescription import ActLine

    line = MedicationLine(label="OXYCODONE SANDOZ 20 mg, gélule", cis="60108518",
                          common_name="oxycodone 20 mg", quantity=Decimal(2),
                          conditions=("prescription limitée à 4 semaines",
                                      "prescription en toutes lettres sur ordonnance sécurisée",
                                      "stupéfiants"),
                          posology=Posology(dose=Decimal(1), unit="gélule",
                                            moments=("matin", "soir"),
                                            duration=Duration(14, "jour")))
    text = order_text(_doc(lines=(line,)))
    item = text.sections[0].items[0]
    assert text.secure
    assert item.details[:2] == ("une gélule matin et soir pendant quatorze jours",
                                "Quantité : deux boîtes")
    assert item.notes == ("Ordonnance sécurisée, prescription limitée à 28 jours",)
    assert not order_text(_doc(lines=(line, ActLine("NFS")))).secure
