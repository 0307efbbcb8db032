"""French health identifiers: normalisation, format, check keys, and precise reasons."""

import pytest

from appliance.domain.ids import (
    INS_NIA_OID,
    INS_NIR_OID,
    INS_TEST_OID,
    Ins,
    id_nat_ps,
    nir_key,
    rpps_from_id_nat_ps,
    validate_am,
    validate_cip7,
    validate_cip13,
    validate_cis,
    validate_finess,
    validate_id_nat_ps,
    validate_ins,
    validate_lpp,
    validate_nir,
    validate_rpps,
)
from appliance.errors import InvalidIdentifier, ValidationError


def reason_of(func, value, **kwargs) -> InvalidIdentifier:
    with pytest.raises(InvalidIdentifier) as err:
        func(value, **kwargs)
    return err.value


def nir_key_by_hand(first13: str) -> str:
    """The published rule, written independently of stdnum: 97 - (n mod 97)."""
    digits = first13.replace("2A", "19").replace("2B", "18")
    return f"{97 - int(digits) % 97:02d}"


# --- NIR ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("1 85 05 78 006 048 30", "185057800604830"),
        ("269039935012352", "269039935012352"),
        ("2 95 10 99 126 111 93", "295109912611193"),  # stdnum's documented example
        ("1600720123456 02", "160072012345602"),  # born in Corsica before 1976: "20"
        ("278117512304597", "278117512304597"),  # n mod 97 == 0: the key is 97
        ("2 53 07 2A 073 004 43", "253072A07300443"),  # Corse-du-Sud: 2A -> 19
        ("2 53 07 2b 073 004 70", "253072B07300470"),  # Haute-Corse: 2B -> 18, lower case
        ("276012A01223333", "276012A01223333"),
        ("276012B01223360", "276012B01223360"),
        ("899059912345638", "899059912345638"),  # provisional number (sex digit 8)
        ("1\u00a085\u00a005 78 006 048\t30", "185057800604830"),  # NBSP and tab
    ],
)
def test_valid_nir_is_returned_compact(raw: str, expected: str) -> None:
    assert validate_nir(raw) == expected
    assert expected[13:] == nir_key_by_hand(expected[:13])


def test_nir_key_matches_the_published_rule() -> None:
    for first13 in ("1850578006048", "2690399350123", "276012A012233", "276012B012233",
                    "1600720123456", "2781175123045"):
        assert nir_key(first13) == nir_key_by_hand(first13)
    assert nir_key("276012a012233") == "33"
    assert nir_key("1600720123456") == "02"


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("185057800604831", "bad key 31: expected 30"),
        ("276012A01223360", "bad key 60: expected 33"),  # the 2B key on a 2A number
        ("276012B01223333", "bad key 33: expected 60"),  # the 2A key on a 2B number
        ("253072A07300470", "bad key 70: expected 43"),
        ("276012A0122333", "expected 15 characters (13 characters and a 2-digit key), got 14"),
        ("1850578006048301", "got 16"),
        ("18505780O604830", "non-digit character 'O' at position 9"),
        ("1850578006048B0", "non-digit character 'B' at position 14"),
        ("276012C01223333", "department '2C' at positions 6-7: expected two digits, 2A or 2B"),
        ("2760A2001223333", "non-digit character 'A' at position 5"),
        ("585057800604830", "first digit (sex) is '5': expected 1 or 2"),
        ("", "got 0"),
    ],
)
def test_invalid_nir_says_why(raw: str, reason: str) -> None:
    err = reason_of(validate_nir, raw)
    assert reason in err.expected
    assert err.field == "nir"
    assert err.value == raw


def test_nir_error_carries_caller_field_and_raw_value() -> None:
    err = reason_of(validate_nir, "1 85 05 78 006 048 31", field="residents.csv:12:nir")
    assert err.field == "residents.csv:12:nir"
    assert err.value == "1 85 05 78 006 048 31"
    assert str(err).startswith("residents.csv:12:nir: '1 85 05 78 006 048 31' is invalid")
    assert isinstance(err, ValidationError)


def test_nir_refuses_non_text() -> None:
    assert "expected text, got int" in reason_of(validate_nir, 185057800604830).expected


def test_nir_key_refuses_a_bad_body() -> None:
    assert "got 12" in reason_of(nir_key, "185057800604").expected
    assert "department '2Z'" in reason_of(nir_key, "276012Z012233").expected


# --- INS ---------------------------------------------------------------------------


def test_ins_from_nir_validates_and_keeps_the_oid() -> None:
    ins = Ins.from_nir("2 53 07 2A 073 004 43")
    assert ins == Ins("253072A07300443", INS_NIR_OID)
    assert validate_ins("899059912345638", INS_NIA_OID).oid == INS_NIA_OID
    assert validate_ins("185057800604830", INS_TEST_OID) == Ins("185057800604830", INS_TEST_OID)
    with pytest.raises(AttributeError):
        ins.value = "x"  # frozen


def test_ins_refuses_unknown_oid_and_bad_nir() -> None:
    err = reason_of(validate_ins, "185057800604830", oid="1.2.250.1.213.1.4.2")
    assert err.field == "ins.oid" and err.value == "1.2.250.1.213.1.4.2"
    assert INS_NIR_OID in err.expected and INS_NIA_OID in err.expected
    err = reason_of(validate_ins, "185057800604831", oid=INS_NIR_OID, field="patient.ins")
    assert err.field == "patient.ins" and "expected 30" in err.expected
    with pytest.raises(InvalidIdentifier, match="expected 30"):
        Ins.from_nir("185057800604831")


# --- RPPS and idNat_PS ---------------------------------------------------------------


@pytest.mark.parametrize("raw", ["10000000009", "10101234564", "1003 456 7890"])
def test_valid_rpps(raw: str) -> None:
    assert validate_rpps(raw) == raw.replace(" ", "")


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("10101234567", "bad Luhn key 7: expected 4"),
        ("10000000000", "bad Luhn key 0: expected 9"),
        ("1010123456", "expected 11 characters (10 digits and a Luhn key), got 10"),
        ("1010123456A", "non-digit character 'A' at position 11"),
    ],
)
def test_invalid_rpps(raw: str, reason: str) -> None:
    err = reason_of(validate_rpps, raw, field="prescriber.rpps")
    assert reason in err.expected
    assert (err.field, err.value) == ("prescriber.rpps", raw)


def test_id_nat_ps_round_trip() -> None:
    assert id_nat_ps("10101234564") == "810101234564"
    assert validate_id_nat_ps("8 10101234564") == "810101234564"
    assert rpps_from_id_nat_ps("810101234564") == "10101234564"
    assert validate_id_nat_ps("0751234567") == "0751234567"  # "0" + ADELI
    with pytest.raises(InvalidIdentifier, match="expected 4"):
        id_nat_ps("10101234567")


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("810101234567", "RPPS part: bad Luhn key 7: expected 4"),
        ("07512345X7", "ADELI part: non-digit character 'X'"),
        ("10101234564", "got 11 characters starting with '1'"),
        ("3750000001/123", "expected '8' followed by an 11-digit RPPS"),
        ("", "got 0 characters"),
    ],
)
def test_invalid_id_nat_ps(raw: str, reason: str) -> None:
    err = reason_of(validate_id_nat_ps, raw)
    assert reason in err.expected
    assert (err.field, err.value) == ("id_nat_ps", raw)


def test_an_adeli_id_nat_ps_has_no_rpps() -> None:
    assert "carries no RPPS" in reason_of(rpps_from_id_nat_ps, "0751234567").expected


# --- FINESS ----------------------------------------------------------------------------

# Real FINESS numbers (ET and their EJ) read in public FINESS extracts: Bourg-en-Bresse,
# AP-HP Pitié-Salpêtrière, Cayenne, Saint-Denis de La Réunion, Mayotte, Wallis-et-Futuna.
REAL_FINESS = ["010000024", "010780054", "750100125", "750712184", "970300026", "970302022",
               "970400024", "970408589", "980502199", "980600027", "010000602", "590799730"]


@pytest.mark.parametrize("raw", REAL_FINESS)
def test_real_finess_numbers_pass_the_luhn_key(raw: str) -> None:
    assert validate_finess(raw) == raw


def test_finess_accepts_spaces_and_corsica_format() -> None:
    assert validate_finess("75 010 012 5") == "750100125"
    assert validate_finess("2a0000123") == "2A0000123"  # Corsica: format only
    assert validate_finess("2B0001234") == "2B0001234"


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("750100126", "bad Luhn key 6: expected 5"),
        ("750712148", "bad Luhn key 8: expected 3"),  # last two digits swapped
        ("75010012", "expected 9 characters (a 2-character department and 7 digits), got 8"),
        ("2C0000123", "department '2C' at positions 1-2: expected two digits, 2A or 2B"),
        ("A10000024", "department 'A1'"),
        ("2A00001B3", "non-digit character 'B' at position 8"),
    ],
)
def test_invalid_finess(raw: str, reason: str) -> None:
    err = reason_of(validate_finess, raw, field="establishment.finess")
    assert reason in err.expected
    assert (err.field, err.value) == ("establishment.finess", raw)


# --- N° AM, CIS, CIP, LPP ----------------------------------------------------------------


def test_fixed_length_codes() -> None:
    assert validate_am("751234567") == "751234567"
    assert validate_cis("6000 2283") == "60002283"
    assert validate_cip7("3595583") == "3595583"
    assert validate_lpp("1156542") == "1156542"


@pytest.mark.parametrize(
    ("func", "raw", "field", "reason"),
    [
        (validate_am, "75123456", "am", "expected 9 characters (9 digits), got 8"),
        (validate_am, "7512345678", "am", "got 10"),
        (validate_cis, "6000228", "cis", "expected 8 characters (8 digits), got 7"),
        (validate_cis, "6000228X", "cis", "non-digit character 'X' at position 8"),
        (validate_cip7, "35955833", "cip7", "expected 7 characters (7 digits), got 8"),
        (validate_lpp, "11565-2", "lpp", "non-digit character '-' at position 6"),
    ],
)
def test_invalid_fixed_length_codes(func, raw: str, field: str, reason: str) -> None:
    err = reason_of(func, raw)
    assert reason in err.expected
    assert (err.field, err.value) == (field, raw)


@pytest.mark.parametrize("raw", ["3400935955838", "3400930000014", "3 400936 814707"])
def test_valid_cip13(raw: str) -> None:
    assert validate_cip13(raw) == raw.replace(" ", "")


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("3400935955830", "bad EAN-13 check digit 0: expected 8"),
        ("3400935956838", "bad EAN-13 check digit 8: expected 5"),  # 10th digit mistyped
        ("3400835955836", "prefix 34008: a CIP13 starts with 34009"),  # a UCD, not a CIP13
        ("4006381333931", "prefix 40063"),  # a valid EAN-13 that is not a CIP13
        ("340093595583", "expected 13 characters (13 digits), got 12"),
        ("34009359558E8", "non-digit character 'E' at position 12"),
    ],
)
def test_invalid_cip13(raw: str, reason: str) -> None:
    err = reason_of(validate_cip13, raw, field="line.cip13")
    assert reason in err.expected
    assert (err.field, err.value) == ("line.cip13", raw)
