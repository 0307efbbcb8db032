"""A varied set of orders (accents, apostrophes, hyphens, long names, ALD or not, devices,
acts, renewals, secure lines, weights, objections), each printed on 58 mm, 80 mm and label
paper: the job's bytes are rendered back by the emulator's interpreter and decoded with
zxing-cpp, the QR compared field by field and the mentions read on the ticket text."""

import random
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
import zxingcpp

from appliance.domain.posology import Duration, FreeTextPosology, Posology
from appliance.domain.prescription import (
    ActLine,
    DeviceLine,
    MedicationLine,
    NonSubstitution,
    State,
)
from appliance.domain.prescription_id import PrescriptionIdGenerator, format_id
from appliance.domain.qr import EpuPayload, qr_name
from drivers.printer.emulator import render_bytes
from drivers.printer.escpos import PrinterProfile, render_job
from drivers.printer.layout import Letterhead, OrderDocument, media_for, tickets_for
from tests.factories import physician, prescription, resident

pytestmark = pytest.mark.integration

HOME = Letterhead("EHPAD Résidence « Les Œillets » de Saint-Étienne-du-Rouvray", "750000001",
                  "12, rue de l'Église\nBâtiment B – 2e étage\n76800 Saint-Étienne-du-Rouvray",
                  "02 35 00 00 00", "secretariat.medical@ehpad-les-oeillets.example.fr",
                  "Médecin coordonnateur")
NAMES = [("N'DIAYE", "Aïssatou"), ("de La Tour d'Auvergne-Lauraguais", "Marie-Thérèse Éléonore"),
         ("Ødegård", "Bjørn"), ("MÜLLER-LÜDENSCHEIDT", "Jean-François Xavier"),
         ("Lefèvre", "Zoë"), ("O'Connor", "Seán"), ("Dupont", "Jean"),
         ("Çelik", "Ömer Faruk"), ("SAINT-JUST D'ARTAGNAN DE BOURBON-PARME", "Louise")]
OXYCODONE = ("prescription limitée à 4 semaines",
             "prescription en toutes lettres sur ordonnance sécurisée", "stupéfiants")


def _order(n: int):
    rnd = random.Random(n)
    last, first = NAMES[n % len(NAMES)]
    used = rnd.choice([None, "Martin", "Bernard-Lefort"])
    who = resident(n, birth_name=last, first_names=first, used_name=used,
                   sex=rnd.choice("MF"), objection=rnd.random() < 0.3,
                   birth_date=date(1925, 1, 1) + timedelta(days=rnd.randrange(30000)))
    secure = n % 5 == 0
    lines = []
    for k in range(rnd.randint(1, 5)):
        kind = rnd.choice(["med", "med", "device", "act"])
        if kind == "med" or secure:
            pos = Posology(dose=Decimal(rnd.choice(["1", "2", "0.5", "2.5"])),
                           unit=rnd.choice(["comprimé", "gélule", "mL", "goutte"]),
                           moments=("matin", "soir"),
                           duration=Duration(rnd.randint(1, 28), "jour"))
            lines.append(MedicationLine(
                label=rnd.choice(["DOLIPRANE 1000 mg, comprimé",
                                  "KARDEGIC 75 mg, poudre pour solution buvable en sachet-dose"]),
                cis="60234100", common_name="paracétamol 1000 mg",
                posology=pos if rnd.random() < 0.8 or secure else FreeTextPosology(
                    "selon l'INR, voir carnet ; 1/2 comprimé le soir si besoin"),
                quantity=Decimal(rnd.choice(["1", "2", "10", "2.5"])),
                non_substitution=rnd.choice([None, NonSubstitution.MTE, NonSubstitution.CIF]),
                ald=rnd.random() < 0.4, renewals=rnd.randint(0, 3),
                by_brand=rnd.random() < 0.7, conditions=OXYCODONE if secure else (),
                instructions=rnd.choice(["", "À prendre au cours du repas, avec un grand "
                                             "verre d'eau ; ne pas croquer"])))
        elif kind == "device":
            lines.append(DeviceLine(label="Pansements hydrocolloïdes 10 × 10 cm", lpp="1234567",
                                    quantity=Decimal(rnd.choice(["1", "10", "30"])),
                                    ald=rnd.random() < 0.4, renewals=rnd.randint(0, 2)))
        else:
            lines.append(ActLine(text="Soins infirmiers à domicile : pansement tous les 2 "
                                      "jours pendant 15 jours, dimanches et jours fériés inclus",
                                 ald=rnd.random() < 0.4, renewals=rnd.randint(0, 2)))
        _ = k
    doctor = physician(qualification=rnd.choice([None, "Gériatre"]))
    pid = PrescriptionIdGenerator(clock_ms=lambda: 1_764_000_000_000 + n).new()
    p = prescription(pid, resident=who, prescriber=doctor, lines=tuple(lines),
                     weight_kg=rnd.choice([None, Decimal("48.5"), Decimal(72)]))
    return p.transition(State.SIGNED, datetime(2026, 11, 25, 9, 30, tzinfo=UTC))


@pytest.mark.parametrize("media", ["58mm", "80mm", "label62"])
@pytest.mark.parametrize("n", range(12))
def test_every_order_prints_and_reads_back(n, media):
    p = _order(n)
    payload = EpuPayload.from_prescription(p).encode()
    m = media_for(media)
    data = render_job(tickets_for(OrderDocument(p, payload, HOME), m),
                      PrinterProfile("TM-T20II", m))
    tickets = render_bytes(data, m.width_dots)
    for ticket in tickets:
        found = zxingcpp.read_barcodes(ticket.image, formats=zxingcpp.BarcodeFormat.QRCode)
        (qr,) = found
        fields = EpuPayload.decode(qr.text)
        assert (fields.prescription_id, fields.am, fields.rpps) == (
            p.id, p.prescriber.am, p.prescriber.rpps)
        assert (fields.last_name, fields.first_names, fields.birth_date) == (
            qr_name(p.resident.birth_name), qr_name(p.resident.first_names),
            p.resident.birth_date)
        assert format_id(p.id) in ticket.text
        assert not any("?" in line for line in ticket.text)
    text = " ".join(" ".join(line.split()) for t in tickets for line in t.text)
    text = text.replace("\u00a0", " ")
    if m.label:
        return
    bars = [r.text for r in zxingcpp.read_barcodes(tickets[0].image,
                                                   formats=zxingcpp.BarcodeFormat.Code128)]
    assert sorted(bars) == sorted([p.prescriber.rpps, p.prescriber.am])
    assert "France" in text and "+33 2 35 00 00 00" in text
    assert ("Gériatre" if p.prescriber.qualification else "Médecin coordonnateur") in text
    assert "Signée électroniquement par carte CPS" in text and "Mon espace santé" in text
    assert ("décret n° 2023-1222" in text) == p.resident.objection
    if p.weight_kg is not None:
        assert f"{str(p.weight_kg).replace('.', ',')} kg" in text
    for line in p.lines:
        if line.renewals:
            assert "À renouveler" in text
    if any(line.secure for line in p.lines):
        assert "Ordonnance sécurisée" in text and "pendant" in text


def test_the_variety_is_real():
    orders = [_order(n) for n in range(12)]
    assert any(o.secure for o in orders) and any(o.is_ald_split for o in orders)
    assert any(o.resident.objection for o in orders)
    assert {type(line).__name__ for o in orders for line in o.lines} == {
        "MedicationLine", "DeviceLine", "ActLine"}
    _ = replace
