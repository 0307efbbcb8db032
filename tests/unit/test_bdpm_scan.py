"""Scanner input (GS1 as typed by a keyboard wedge) and LPP device list parsing."""

from __future__ import annotations

from datetime import date

import pytest

from appliance.errors import ValidationError
from appliance.store.referential.devices import parse_devices
from appliance.store.referential.gs1 import looks_like_scan, parse_scan

CIP13 = "3400949497294"
GTIN = "0" + CIP13


@pytest.mark.parametrize("typed", [
    f"01{GTIN}",
    f"(01){GTIN}",
    f"01{GTIN}17250131",
    f"01{GTIN}1725013110LOT42\x1d21SN123",
    f"01{GTIN}1725013110LOT42<GS>21SN123",
    f"01{GTIN}1725013110LOT42<gs>21SN123",
    f"01{GTIN}1725013110LOT42[GS]21SN123",
    f"01{GTIN}1725013110LOT42{{GS}}21SN123",
    f"01{GTIN}1725013110LOT42^]21SN123",
    f"]d201{GTIN}1725013110LOT42\x1d21SN123",
    f"]C101{GTIN}1725013110LOT42\x1d21SN123",
    f"(01){GTIN}(17)250131(10)LOT42(21)SN123",
    f"  (01){GTIN}(17)250131(10)LOT42(21)SN123\n",
    f"\x1d01{GTIN}21SN123\x1d17250131",
])
def test_scans_give_the_cip13(typed: str) -> None:
    assert looks_like_scan(typed)
    scan = parse_scan(typed)
    assert scan is not None and scan.gtin == GTIN and scan.cip13 == CIP13


def test_scan_fields() -> None:
    scan = parse_scan(f"(01){GTIN}(17)250100(10)LOT42(21)SN123")
    assert scan is not None
    assert (scan.expiry, scan.lot, scan.serial) == (date(2025, 1, 31), "LOT42", "SN123")


@pytest.mark.parametrize("typed", [
    "doliprane", CIP13, f"01{GTIN[:-1]}5", f"(01){GTIN}(17", "0134009", "",
    f"(01){GTIN}garbage",
])
def test_not_scans(typed: str) -> None:
    scan = parse_scan(typed)
    assert scan is None or scan.cip13 is None


def test_foreign_gtin_has_no_cip13() -> None:
    scan = parse_scan("0104012345678901")
    assert scan is not None and scan.cip13 is None


def test_devices_csv_cp1252_with_malformed_rows() -> None:
    data = ("CODE_LPP;L_CODE_LPP\r\n"
            "1234567;BAS DE CONTENTION, CLASSE 2\r\n"
            "123456;CODE TROP COURT\r\n"
            "7654321;\r\n"
            "2345678;\"LIT MÉDICAL; À HAUTEUR VARIABLE\"\r\n"
            "1234567;DOUBLON\r\n"
            "\r\n"
            "3456789\r\n").encode("cp1252")
    parsed = parse_devices(data, "lpp.csv")
    assert [(d.code, d.label) for d in parsed.records] == [
        ("1234567", "BAS DE CONTENTION, CLASSE 2"),
        ("2345678", "LIT MÉDICAL; À HAUTEUR VARIABLE")]
    reasons = {e.line: e.reason for e in parsed.errors}
    assert sorted(reasons) == [3, 4, 6, 7, 8]
    assert "bad LPP code" in reasons[3] and reasons[4] == "empty label"
    assert "duplicate key" in reasons[6] and reasons[7] == "empty line"
    assert "fields" in reasons[8]
    assert parsed.rows == len(parsed.records) + len(parsed.errors) == 7


def test_devices_csv_utf8_bom_and_extra_columns() -> None:
    data = "\ufeffNATURE;code_lpp;L_CODE_LPP\n1;1234567;Fauteuil roulant\n".encode()
    parsed = parse_devices(data, "lpp.csv")
    assert [(d.code, d.label) for d in parsed.records] == [("1234567", "Fauteuil roulant")]


def test_devices_csv_without_header_is_refused() -> None:
    with pytest.raises(ValidationError, match="CODE_LPP"):
        parse_devices(b"1234567;Fauteuil\n", "lpp.csv")
