"""ISO 7816-4 APDU encoding/decoding and the status word → error table."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from appliance.errors import CardError, PinBlocked, WrongPin
from drivers.card.apdu import (
    STATUS_WORDS,
    Command,
    Response,
    StatusWordError,
    check,
    describe,
)


@pytest.mark.parametrize(("command", "encoded"), [
    (Command(0x00, 0x20, 0x00, 0x81), "00200081"),                              # case 1
    (Command(0x00, 0x84, 0x00, 0x00, le=8), "0084000008"),                      # case 2
    (Command(0x00, 0xB0, 0x01, 0x00, le=256), "00B0010000"),                    # Le=256 → 00
    (Command(0x00, 0xA4, 0x02, 0x0C, bytes.fromhex("D001")), "00A4020C02D001"),  # case 3
    (Command(0x00, 0x2A, 0x9E, 0x9A, b"\x01\x02", le=256), "002A9E9A02010200"),  # case 4
])
def test_encode_the_four_cases(command, encoded):
    assert command.encode() == bytes.fromhex(encoded)
    assert Command.decode(bytes.fromhex(encoded)) == command


@given(cla=st.integers(0, 255), ins=st.integers(0, 255), p1=st.integers(0, 255),
       p2=st.integers(0, 255), data=st.binary(max_size=255),
       le=st.none() | st.integers(1, 256))
def test_decode_inverts_encode(cla, ins, p1, p2, data, le):
    command = Command(cla, ins, p1, p2, data, le)
    assert Command.decode(command.encode()) == command


@pytest.mark.parametrize("raw", ["", "00", "002000", "00A4040C05E828", "00A4040C00AABB"])
def test_decode_refuses_malformed_apdus(raw):
    with pytest.raises(ValueError):
        Command.decode(bytes.fromhex(raw))


@pytest.mark.parametrize("kwargs", [{"data": bytes(256)}, {"le": 0}, {"le": 257}, {"p1": 256}])
def test_command_refuses_out_of_range_fields(kwargs):
    with pytest.raises(ValueError):
        Command(0x00, 0xB0, **{"p1": 0, "p2": 0, **kwargs})


@pytest.mark.parametrize("raw", [b"", b"\x90"])
def test_garbage_response_is_a_card_error(raw):
    with pytest.raises(CardError, match="malformed"):
        Response.parse(raw)


def test_response_splits_data_and_status_word():
    response = Response.parse(bytes.fromhex("0102039000"))
    assert response.data == b"\x01\x02\x03" and response.sw == 0x9000 and response.ok
    assert response.encode() == bytes.fromhex("0102039000")
    assert check(response, "x") == b"\x01\x02\x03"


@pytest.mark.parametrize("tries", [0, 1, 2, 15])
def test_63cx_is_wrong_pin_with_tries_left(tries):
    with pytest.raises(WrongPin) as exc:
        check(Response(b"", 0x63C0 | tries), "VERIFY")
    assert exc.value.tries_left == tries


def test_6983_is_pin_blocked():
    with pytest.raises(PinBlocked):
        check(Response(b"", 0x6983), "VERIFY")


@pytest.mark.parametrize("sw", sorted(sw for sw in STATUS_WORDS if sw != 0x9000))
def test_every_error_status_word_has_a_clear_message(sw):
    with pytest.raises(CardError) as exc:
        check(Response(b"", sw), "OPERATION", allow=frozenset())
    if isinstance(exc.value, StatusWordError):
        assert exc.value.sw == sw
        assert f"SW {sw:04X}" in str(exc.value)
        assert STATUS_WORDS[sw] in str(exc.value)
        assert str(exc.value).startswith("OPERATION: ")


def test_unknown_and_patterned_status_words_are_described():
    assert describe(0x6F12) == "unknown status word"
    assert "18 more bytes" in describe(0x6112)
    assert "exactly 256 bytes" in describe(0x6C00)
    assert "2 tries left" in describe(0x63C2)
    with pytest.raises(StatusWordError, match="unknown status word"):
        check(Response(b"", 0x6F12), "X")


def test_allowed_warning_returns_the_data():
    assert check(Response(b"ab", 0x6282), "READ", allow=frozenset({0x6282})) == b"ab"
    with pytest.raises(StatusWordError, match="end of file"):
        check(Response(b"ab", 0x6282), "READ")
