"""The printed QR survives real life: the ticket raster, rebuilt from the exact ESC/POS bytes
by the emulator's interpreter, is damaged as paper and scanners damage it, then decoded with
zxing-cpp and compared field by field with the order, for both payloads on every medium.

Damage levels (each alone), chosen from what happens to receipts:

- dead heating elements: 5 one-dot white columns through the code (a worn 384-dot head
  typically loses a few elements), each in the middle of a module column, the worst place;
- black dots lost at random: 15 % of the black dots (faded or dusty paper), then read
  through a scanner's optics (a Gaussian blur of 1.2 dots: 0.15 mm at 203 dpi; no
  scanner or camera resolves a single 0.125 mm print dot);
- a slightly stretched feed: the paper moved 5 % too far per line (rows 5 % taller);
- a standard-mode fax (204 × 98 dpi): rows averaged in pairs, thresholded at half grey,
  each fax line printed back twice on the other side;
- a phone photo from further away than a scanner: the ticket reduced to a third of the
  print resolution for the ePU code (about 2.7 pixels per millimetre, a phone about a
  metre away), two thirds for the signed code (its modules are half as large on 58 mm),
  a Gaussian blur of one pixel at that scale, then enlarged back.
"""

import functools
import random
from datetime import UTC, datetime

import pytest
import zxingcpp
from PIL import Image, ImageChops, ImageFilter

from appliance.domain.prescription import State
from appliance.domain.prescription_id import PrescriptionIdGenerator
from appliance.domain.qr import (
    CertificateRef,
    EpuPayload,
    SignedOrder,
    SignedPayload,
    decode_payload,
)
from drivers.printer.emulator import render_bytes
from drivers.printer.escpos import PrinterProfile, render_job
from drivers.printer.layout import Letterhead, OrderDocument, media_for, qr_spec, tickets_for
from tests.factories import prescription, resident

pytestmark = pytest.mark.integration

HOME = Letterhead("EHPAD Les Tilleuls", "750000001", "12 rue des Lilas\n75012 Paris",
                  "01 43 00 00 00", "accueil@tilleuls.fr")
PID = PrescriptionIdGenerator(clock_ms=lambda: 1_764_000_000_000).new()
PAYLOADS = ("epu", "signed")
MEDIA = ("58mm", "80mm", "label62")
DEAD_ELEMENTS = 5
DOT_LOSS = 0.15
SCANNER_BLUR = 1.2
STRETCH = 1.05
PHOTO = {"epu": 1 / 3, "signed": 2 / 3}


@functools.cache
def _order():
    p = prescription(PID, resident=resident(birth_name="de l'Hôpital-Saint Œuvray",
                                            first_names="Marie-Thérèse Éléonore"))
    return p.transition(State.SIGNED, datetime(2026, 11, 25, 9, 30, tzinfo=UTC))


@functools.cache
def _printed(kind: str, media: str) -> tuple[str, Image.Image]:
    """The payload and the ticket as the printer would print it (from the job's bytes)."""
    p = _order()
    if kind == "epu":
        payload = EpuPayload.from_prescription(p).encode()
    else:
        rnd = random.Random(5)
        payload = SignedPayload(SignedOrder.from_prescription(p), rnd.randbytes(256),
                                CertificateRef.of(rnd.randbytes(103), rnd.getrandbits(159))
                                ).encode()
    m = media_for(media)
    data = render_job(tickets_for(OrderDocument(p, payload, HOME), m),
                      PrinterProfile("TM-T20II", m))
    (ticket,) = render_bytes(data, m.width_dots)
    return payload, ticket.image


def _decoded(image: Image.Image) -> list[str]:
    return [r.text for r in zxingcpp.read_barcodes(image, formats=zxingcpp.BarcodeFormat.QRCode)]


def _check_fields(texts: list[str], kind: str) -> None:
    """Exactly the order's QR, read back field by field."""
    assert len(texts) == 1, texts
    p = _order()
    decoded = decode_payload(texts[0])
    fields = decoded if kind == "epu" else decoded.order
    assert fields.prescription_id == p.id
    assert (fields.am, fields.rpps, fields.birth_date) == (
        p.prescriber.am, p.prescriber.rpps, p.resident.birth_date)
    if kind == "epu":
        assert (fields.last_name, fields.first_names) == (
            "DE L'HOPITAL-SAINT OEUVRAY", "MARIE-THERESE ELEONORE")
    else:
        assert (fields.last_name, fields.first_names) == (
            p.resident.birth_name, p.resident.first_names)
        assert fields.issued_at == p.signed_at


# -- damage -----------------------------------------------------------------------------------
def dead_elements(image: Image.Image, kind: str, media: str) -> Image.Image:
    payload, _ = _printed(kind, media)
    spec = qr_spec(payload, media_for(media).width_dots)
    (found,) = zxingcpp.read_barcodes(image, formats=zxingcpp.BarcodeFormat.QRCode)
    left = min(found.position.top_left.x, found.position.bottom_left.x) - spec.module // 2
    out = image.copy()
    step = spec.modules // (DEAD_ELEMENTS + 1)
    for k in range(1, DEAD_ELEMENTS + 1):
        x = left + (k * step) * spec.module + spec.module // 2  # a module column's middle
        out.paste(255, (x, 0, x + 1, out.height))
    return out


def lost_dots(image: Image.Image, seed: int) -> Image.Image:
    noise = Image.frombytes("L", image.size, random.Random(seed).randbytes(
        image.width * image.height))
    lost = noise.point(lambda v: 255 if v < DOT_LOSS * 256 else 0)
    return ImageChops.lighter(image, lost).filter(ImageFilter.GaussianBlur(SCANNER_BLUR))


def stretched(image: Image.Image) -> Image.Image:
    return image.resize((image.width, round(image.height * STRETCH)),
                        Image.Resampling.NEAREST)


def faxed(image: Image.Image) -> Image.Image:
    half = image.resize((image.width, image.height // 2), Image.Resampling.BOX)
    black_white = half.point(lambda v: 0 if v < 128 else 255)
    return black_white.resize((image.width, black_white.height * 2), Image.Resampling.NEAREST)


def photographed(image: Image.Image, fraction: float) -> Image.Image:
    small = image.resize((round(image.width * fraction), round(image.height * fraction)),
                         Image.Resampling.BOX).filter(ImageFilter.GaussianBlur(1.0))
    return small.resize(image.size, Image.Resampling.BILINEAR)


# -- the tests --------------------------------------------------------------------------------
@pytest.mark.parametrize("media", MEDIA)
@pytest.mark.parametrize("kind", PAYLOADS)
def test_the_undamaged_ticket_decodes(kind, media):
    payload, image = _printed(kind, media)
    assert _decoded(image) == [payload]
    _check_fields(_decoded(image), kind)


@pytest.mark.parametrize("media", MEDIA)
@pytest.mark.parametrize("kind", PAYLOADS)
def test_dead_heating_elements(kind, media):
    _check_fields(_decoded(dead_elements(_printed(kind, media)[1], kind, media)), kind)


@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize("media", MEDIA)
@pytest.mark.parametrize("kind", PAYLOADS)
def test_black_dots_lost_at_random(kind, media, seed):
    _check_fields(_decoded(lost_dots(_printed(kind, media)[1], seed)), kind)


@pytest.mark.parametrize("media", MEDIA)
@pytest.mark.parametrize("kind", PAYLOADS)
def test_a_stretched_feed(kind, media):
    _check_fields(_decoded(stretched(_printed(kind, media)[1])), kind)


@pytest.mark.parametrize("media", MEDIA)
@pytest.mark.parametrize("kind", PAYLOADS)
def test_a_standard_mode_fax(kind, media):
    _check_fields(_decoded(faxed(_printed(kind, media)[1])), kind)


@pytest.mark.parametrize("media", MEDIA)
@pytest.mark.parametrize("kind", PAYLOADS)
def test_a_phone_photo_from_further_away(kind, media):
    _check_fields(_decoded(photographed(_printed(kind, media)[1], PHOTO[kind])), kind)


def test_the_damage_is_real():
    """Each damage changes the image; a much harsher photo defeats even the ePU code (the
    levels above are not a no-op)."""
    _, image = _printed("epu", "58mm")
    for damaged in (dead_elements(image, "epu", "58mm"), lost_dots(image, 1),
                    stretched(image), faxed(image), photographed(image, PHOTO["epu"])):
        assert damaged.tobytes() != image.tobytes()
    assert _decoded(photographed(image, 1 / 8)) == []
