"""Fuzzing the residents CSV import (``appliance.services.residents.parse_residents``): the
EHPAD software's export, in any encoding, with any line ends, quotes and junk.

It never raises: good rows become residents (valid, each NIR once), every other row is
reported with its line, its column and the reason.
"""

from __future__ import annotations

from hypothesis import example, given, settings
from hypothesis import strategies as st

from appliance.domain.people import Resident
from appliance.services.residents import parse_residents
from tests.factories import nir
from tests.unit.test_fuzz_strategies import FUZZ, flip_bytes, line_soup

HEADERS = ["nir;nom;nom_usage;prenoms;date_naissance;sexe;chambre;opposition",
           "NIR,Nom,Prenoms,Date_Naissance,Sexe,Chambre",
           " nir ; nom ; prenoms ; date_naissance ; sexe ; chambre "]
ROWS = [f"{nir('2400175123001')};MARTIN;DUPONT;Jeanne Marie;1940-01-15;F;101;non",
        f"{nir('1350699123045')};DURAND;;Paul;03/06/1935;M;12 B;oui",
        f"{nir('185022A123456')},BERNARD,Luc,1945-02-28,M,7",
        f'"{nir("2400175123002")}";"LE GALL; dit ""Yann""";;"Anne";1940-01-15;F;2;',
        ";;;;;;;"]
ENDINGS = st.sampled_from(["\r\n", "\n", "\r", "\r\r\n"])
ENCODINGS = st.sampled_from(["utf-8", "utf-8-sig", "cp1252", "latin-1", "utf-16"])


@st.composite
def exports(draw) -> bytes:
    lines = draw(line_soup(ROWS))
    if draw(st.integers(0, 5)):
        lines.insert(0, draw(st.sampled_from(HEADERS)))
    data = "".join(line + draw(ENDINGS) for line in lines).encode(draw(ENCODINGS), "replace")
    if data and draw(st.integers(0, 3)) == 0:
        data = draw(flip_bytes(data, 3))
    return data


# Regressions: a stray quote opens a field that runs to the end of the file, and past
# 131,072 characters the csv module raised "field larger than field limit" (in a row, or
# already in the header).
STRAY_QUOTE = (HEADERS[0] + "\n" + ROWS[0] + '\n"' + "x" * 200_000 + "\n").encode()
STRAY_QUOTE_IN_HEADER = b'nir;"' + b"x" * 200_000


@settings(FUZZ, max_examples=200)
@given(exports() | st.binary(max_size=300))
@example(STRAY_QUOTE)
@example(STRAY_QUOTE_IN_HEADER)
@example(b"")
@example(b"\xef\xbb\xbf")
@example(b"\xef\xbb\xbf\x80" + ROWS[0].encode() + b"\r\n")  # found by this test
@example(b"\x00\x00\x00")
@example((HEADERS[0] + "\n" + ROWS[0] + ";extra;fields\n").encode())
def test_every_row_is_a_resident_or_a_reported_error(data):
    good, errors = parse_residents(data)
    good_lines = [line for line, _ in good]
    assert len(set(good_lines)) == len(good_lines)
    assert not set(good_lines) & {e.line for e in errors}
    assert len({r.ins.value for _, r in good}) == len(good)
    for line, resident in good:
        assert line >= 2 and isinstance(resident, Resident)
    for error in errors:
        assert error.line >= 1 and error.column.strip() and error.reason.strip()
