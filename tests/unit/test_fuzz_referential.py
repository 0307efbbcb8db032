"""Fuzzing the referential sources: BDPM files (``bdpm``), the LPP device list
(``devices``) and barcode-scanner input (``gs1``).

BDPM parsing never raises: each line is a record or a ``RowError`` (file, line, reason),
``rows == len(records) + len(errors)``, and every record can be written to SQLite. The
device list raises ``ValidationError`` naming the file only for an unusable header; scanner
input is a ``Scan`` or ``None``.
"""

from __future__ import annotations

from dataclasses import astuple

from hypothesis import example, given, settings
from hypothesis import strategies as st

from appliance.errors import ValidationError
from appliance.store.referential import bdpm
from appliance.store.referential.devices import parse_devices
from appliance.store.referential.gs1 import looks_like_scan, parse_scan
from tests.unit.test_fuzz_strategies import FUZZ, flip_bytes, line_soup, odd_text, outcome

# One real-shaped line per file (2022 extract: tab-separated, trailing tabs, decimal commas).
VALID_LINES = {
    bdpm.SPECIALTIES: ["60234100\tDOLIPRANE 1000 mg, comprimé\tcomprimé\torale\t"
                       "Autorisation active\tProcédure nationale\tCommercialisée\t09/07/2002"
                       "\t\t\t OPELLA HEALTHCARE FRANCE\tNon"],
    bdpm.PRESENTATIONS: ["60234100\t3595583\tplaquette(s) PVC-aluminium de 8 comprimé(s)\t"
                         "Présentation active\tDéclaration de commercialisation\t02/01/2003\t"
                         "3400935955838\toui\t65%\t1,07\t2,09\t1,02\t",
                         "60234100\t3595583\tboîte\tPrésentation active\tDéclaration de "
                         "commercialisation\t02/01/2003\t3400935955838\toui\t65 %;30%\t"
                         "1,234,56\t1 234,56\t1,02\tindications"],
    bdpm.COMPOSITIONS: ["60234100\tcomprimé\t02202\tPARACÉTAMOL\t1000 mg\tun comprimé\tSA\t1\t"],
    bdpm.GENERICS: ["56\tFUROSEMIDE 40 mg - LASILIX 40 mg, comprimé sécable\t65606743\t0\t1\t"],
    bdpm.CONDITIONS: ["68269975\tprescription limitée à 12 semaines"],
}
PARSERS = {
    bdpm.SPECIALTIES: bdpm.parse_specialties,
    bdpm.PRESENTATIONS: bdpm.parse_presentations,
    bdpm.COMPOSITIONS: bdpm.parse_compositions,
    bdpm.GENERICS: bdpm.parse_generics,
    bdpm.CONDITIONS: bdpm.parse_conditions,
}
ENDINGS = st.sampled_from(["\r\n", "\n", "\r", "\r\r\n", "\n\r"])
ENCODINGS = st.sampled_from(["cp1252", "utf-8", "utf-8-sig", "latin-1", "utf-16"])
SQLITE_INTEGER = range(-(2**63), 2**63)


@st.composite
def text_files(draw, valid_lines: list[str], header: str | None = None) -> bytes:
    """A file of valid, mutated and junk lines, mixed line endings, some encoding."""
    lines = draw(line_soup(valid_lines))
    if header is not None and draw(st.integers(0, 4)):
        lines.insert(0, header)
    text = "".join(line + draw(ENDINGS) for line in lines)
    if lines and draw(st.booleans()):
        text = text.rstrip("\r\n")  # a last line without its newline
    data = text.encode(draw(ENCODINGS), "replace")
    if draw(st.integers(0, 3)) == 0:
        data = draw(flip_bytes(data, 3)) if data else data
    return data


def _check_parsed(parsed: bdpm.ParsedFile, name: str) -> None:
    assert parsed.rows == len(parsed.records) + len(parsed.errors)
    for error in parsed.errors:
        assert error.file == name and 1 <= error.line <= parsed.lines and error.reason.strip()
    for record in parsed.records:
        for value in astuple(record):
            if isinstance(value, int):
                assert value in SQLITE_INTEGER  # the import writes them as INTEGER


# Found by this test: digits that str.isdigit accepts and int refuses, and numbers beyond
# SQLite's INTEGER (or beyond int()'s 4300-digit limit).
SUPERSCRIPT_KIND = "1\tx\t60234100\t\u00b2\t1\n".encode()
HUGE_GROUP = ("9" * 30 + "\tx\t60234100\t1\t1\n").encode()
HUGE_PRICE = ("60234100\t3595583\tx\ty\tz\t\t3400935955838\toui\t65%\t" + "9" * 5000
              + "\t\t\t\n").encode()


bdpm_cases = st.sampled_from(sorted(PARSERS)).flatmap(
    lambda name: st.tuples(st.just(name), text_files(VALID_LINES[name]) | st.binary(max_size=200)))


@settings(FUZZ, max_examples=120)
@given(bdpm_cases)
@example((bdpm.GENERICS, SUPERSCRIPT_KIND))
@example((bdpm.GENERICS, HUGE_GROUP))
@example((bdpm.PRESENTATIONS, HUGE_PRICE))
@example((bdpm.SPECIALTIES, b"\xef\xbb\xbf\r\n\x81\x8d\x8f\x90\x9d\n\x00"))
def test_bdpm_files_give_a_record_or_a_row_error_per_line(case):
    name, raw = case
    _check_parsed(PARSERS[name](raw), name)


# -- LPP device list -----------------------------------------------------------------------------
LPP_HEADER = "CODE_LPP;L_CODE_LPP;NOMENCLATURE"
LPP_LINES = ["1234567;Pansement hydrocolloïde;Titre I", '"7654321";"Lit médical; électrique";x',
             "1234568;Fauteuil roulant", ";;"]


@settings(FUZZ, max_examples=120)
@given(st.one_of(text_files(LPP_LINES, header=LPP_HEADER), st.binary(max_size=200)))
@example(b"CODE_LPP;L_CODE_LPP\n1234567;ab\rc\n")
@example(b"CODE_LPP;L_CODE_LPP\n1234567;\"" + b"a" * 200_000 + b"\n")
def test_device_lists_give_a_record_or_a_row_error_per_line(data):
    parsed = outcome(parse_devices, data, "lpp.csv")
    if isinstance(parsed, ValidationError):
        assert parsed.field.startswith("lpp.csv")
        return
    _check_parsed(parsed, "lpp.csv")
    assert parsed.header >= 1


# -- scanner input ---------------------------------------------------------------------------------
GTIN = "03400949497294"
SCANS = [f"01{GTIN}", f"(01){GTIN}(17)250131(10)LOT42(21)SN123",
         f"]d201{GTIN}1725013110LOT42\x1d21SN123", f"01{GTIN}1725013110LOT42<GS>21SN123",
         f"]C101{GTIN}17991399\u241d10L", f"(01){GTIN}(3103)000150(8003)x"]


@settings(FUZZ, max_examples=200)
@given(st.sampled_from(SCANS).flatmap(lambda s: st.sampled_from([s]) | line_soup([s], 1).map(
    "".join)) | odd_text(50))
@example(f"(01){GTIN}(3103)")  # found by this test: decimal.InvalidOperation from stdnum
@example("0103400949497294\x1d10\u00b2\u00b2")
@example("(01)(01)")
@example("01" + "\u0663" * 14)
def test_scanner_input_is_a_scan_or_nothing(text):
    assert isinstance(looks_like_scan(text), bool)
    scan = parse_scan(text)
    if scan is None:
        return
    assert len(scan.gtin) == 14
    assert scan.cip13 is None or (len(scan.cip13) == 13 and scan.gtin == "0" + scan.cip13)
