"""The ePU payload (the national design's QR content) and the compact signed payload
(``ORD2``): layout byte by byte, names reduced to the QR alphanumeric set, strict reading."""

import random
from datetime import UTC, date, datetime

import pytest

from appliance.domain.prescription import State
from appliance.domain.prescription_id import PrescriptionIdGenerator
from appliance.domain.qr import (
    MAX_INPUT,
    CertificateRef,
    EpuPayload,
    QrPayload,
    SignedOrder,
    SignedPayload,
    decode_payload,
    qr_name,
)
from appliance.errors import ValidationError
from tests.factories import physician, prescription, resident

SIGNED_AT = datetime(2026, 11, 25, 9, 30, tzinfo=UTC)
PID = PrescriptionIdGenerator(clock_ms=lambda: 1_764_000_000_000).new()
WRONG_KEY = PID[:-1] + ("1" if PID[-1] == "0" else "0")  # the check character, changed
ALNUM = set("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ $%*+-./:")


def _signed(**kw):
    return prescription(PID, **kw).transition(State.SIGNED, SIGNED_AT)


@pytest.mark.parametrize(("name", "carried"), [
    ("Éléonore", "ELEONORE"),
    ("de l'Hôpital-Saint", "DE L'HOPITAL-SAINT"),
    ("d’Artagnan", "D'ARTAGNAN"),  # typographic apostrophe
    ("Œuvray Lætitia", "OEUVRAY LAETITIA"),
    ("Strauß Øster Łukasz", "STRAUSS OSTER LUKASZ"),
    ("Núñez  —  García", "NUNEZ - GARCIA"),
    ("Marie;Louise\nJeanne", "MARIE LOUISE JEANNE"),  # separators become spaces
    ("  Jean   Pierre  ", "JEAN PIERRE"),
    ("N'Diaye", "N'DIAYE"),
    ("Ĳssel 3e", "IJSSEL E"),
    ("Δημήτρης", ""),  # no Latin letter at all
])
def test_names_are_reduced_to_the_ins_form(name, carried):
    assert qr_name(name) == carried


def test_the_epu_payload_byte_by_byte():
    p = _signed(resident=resident(birth_name="de l'Hôpital-Saint", first_names="Marie-Thérèse"))
    text = EpuPayload.from_prescription(p).encode()
    assert text == (f"EPU1*{PID}*751234567*{p.prescriber.rpps}*DE L.HOPITAL-SAINT*"
                    "MARIE-THERESE*19400115")
    assert set(text) <= ALNUM  # QR alphanumeric mode
    back = EpuPayload.decode(text)
    assert (back.prescription_id, back.am, back.rpps) == (PID, "751234567", p.prescriber.rpps)
    assert (back.last_name, back.first_names, back.birth_date) == (
        "DE L'HOPITAL-SAINT", "MARIE-THERESE", date(1940, 1, 15))
    assert back.mismatches(p) == []


def test_a_typical_epu_payload_is_under_120_characters():
    p = _signed(resident=resident(birth_name="Lefebvre", first_names="Marie Louise"))
    assert len(EpuPayload.from_prescription(p).encode()) < 100
    long = _signed(resident=resident(birth_name="Martin-Delacroix de Saint-Exupéry",
                                     first_names="Marie-Thérèse Jeanne Louise"))
    assert len(EpuPayload.from_prescription(long).encode()) <= 130


@pytest.mark.parametrize(("text", "field"), [
    ("EPU2*x", "qr.version"),
    ("ORD1:xx", "qr.version"),
    (f"EPU1*{PID}*751234567", "qr.fields"),
    (f"EPU1*{WRONG_KEY}*751234567*10001234565*MARTIN*JEANNE*19400115", "qr.id"),
    (f"EPU1*{PID.lower()}*751234567*10001234565*MARTIN*JEANNE*19400115", "qr.id"),
    (f"EPU1*{PID}*75123456*10001234565*MARTIN*JEANNE*19400115", "qr.am"),
    (f"EPU1*{PID}*751234567*10001234566*MARTIN*JEANNE*19400115", "qr.rpps"),
    (f"EPU1*{PID}*751234567*10001234565*martin*JEANNE*19400115", "qr.last_name"),
    (f"EPU1*{PID}*751234567*10001234565*MARTIN*JEAN'NE*19400115", "qr.first_names"),
    (f"EPU1*{PID}*751234567*10001234565*MARTIN*JEANNE*19400231", "qr.birth_date"),
    ("EPU1*" + "A" * 500, "qr.length"),
], ids=["version", "old-format", "fields", "check-character", "lower-case-id", "am", "rpps",
        "last-name", "first-names", "birth-date", "length"])
def test_a_wrong_epu_payload_names_the_field(text, field):
    with pytest.raises(ValidationError) as err:
        EpuPayload.decode(text)
    assert err.value.field == field


def test_a_changed_id_character_is_caught_by_the_check_character():
    text = EpuPayload.from_prescription(_signed()).encode()
    pos = 5 + 7
    swapped = text[:pos] + ("0" if text[pos] != "0" else "1") + text[pos + 1:]
    with pytest.raises(ValidationError, match="check character") as err:
        decode_payload(swapped)
    assert err.value.field == "qr.id"


def test_the_signed_payload_round_trips_and_stays_under_700_characters():
    p = _signed(resident=resident(birth_name="Martin-Delacroix", first_names="Marie-Thérèse"))
    order = SignedOrder.from_prescription(p)
    ref = CertificateRef.of(random.Random(1).randbytes(103), random.Random(2).getrandbits(159))
    payload = SignedPayload(order, random.Random(3).randbytes(256), ref)
    text = payload.encode()
    assert text.startswith("ORD2:") and len(text) <= 700
    back = decode_payload(text)
    assert back == payload and back.signed_bytes == order.to_bytes()
    assert back.certificate.matches(b"other", ref.serial) is False


def test_the_signed_container_layout():
    p = _signed()
    order = SignedOrder.from_prescription(p)
    payload = SignedPayload(order, b"\x01" * 256, CertificateRef(b"\x02" * 16, 0x1234))
    data = payload.container()
    assert len(data) == 15 + 5 + 4 + 4 + 4 + 32 + 2 + 6 + 2 + 6 + 16 + 1 + 2 + 256
    assert int.from_bytes(data[15:20], "big") == int(p.prescriber.rpps)
    assert int.from_bytes(data[20:24], "big") == 751234567
    assert int.from_bytes(data[24:28], "big") == 19400115
    assert int.from_bytes(data[28:32], "big") == int(SIGNED_AT.timestamp())
    assert data[64:72] == b"\x00\x06MARTIN"
    assert data[-256 - 3 - 16:-256 - 3] == b"\x02" * 16 and data[-259:-256] == b"\x02\x12\x34"


@pytest.mark.parametrize("cut", [1, 20, 70, 100, 300])
def test_a_truncated_signed_payload_names_a_field(cut):
    p = _signed()
    payload = SignedPayload(SignedOrder.from_prescription(p), b"\x01" * 256,
                            CertificateRef(b"\x02" * 16, 7))
    data = payload.container()[:cut]
    from appliance.domain.qr import b45encode

    with pytest.raises(ValidationError) as err:
        SignedPayload.decode("ORD2:" + b45encode(data))
    assert err.value.field.startswith("qr.")


def test_every_payload_kind_is_read_and_a_long_input_is_refused_first():
    p = _signed()
    legacy = QrPayload.build(SignedOrder.from_prescription(p), b"\x05" * 256, b"\x30" * 900)
    assert isinstance(decode_payload(legacy.encode()), QrPayload)
    assert isinstance(decode_payload(EpuPayload.from_prescription(p).encode()), EpuPayload)
    with pytest.raises(ValidationError) as err:
        decode_payload("EPU1*" + "A" * MAX_INPUT)
    assert err.value.field == "qr.length"
    with pytest.raises(ValidationError, match="starting with"):
        decode_payload("hello")


def test_an_adeli_prescriber_has_no_epu_payload():
    p = _signed(prescriber=physician(id_nat_ps="0" + "123456789"))
    with pytest.raises(ValidationError, match="RPPS"):
        EpuPayload.from_prescription(p)
