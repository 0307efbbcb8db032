"""BDPM parsing: encodings, line ends, decimal commas, rates, malformed rows, documents."""

from __future__ import annotations

import pytest

from appliance.store.referential import bdpm
from appliance.store.referential.build import device_documents, drug_documents
from appliance.store.referential.text import prefix_upper_bound, search_key

CIS = "60234100"
CIP13 = "3400935955838"  # 34009 + CIP7 3595583 + EAN-13 key 8
CIP7 = "3595583"


def specialty_line(cis: str = CIS, name: str = "DOLIPRANE 1000 mg, comprimé",
                   marketing: str = "Commercialisée") -> str:
    return "\t".join([cis, name, "comprimé", "orale", "Autorisation active",
                      "Procédure nationale", marketing, "09/07/2002", "", "",
                      " OPELLA HEALTHCARE FRANCE", "Non"])


def presentation_line(cis: str = CIS, cip7: str = CIP7, cip13: str = CIP13,
                      rate: str = "65%", price: str = "1,07", state: str =
                      "Déclaration de commercialisation") -> str:
    return "\t".join([cis, cip7, "plaquette(s) PVC-aluminium de 8 comprimé(s)",
                      "Présentation active", state, "16/03/2011", cip13, "oui", rate,
                      price, "2,09" if price else "", "1,02" if price else "", ""])


def encode(*lines: str, newline: str = "\r\n") -> bytes:
    return "".join(line + newline for line in lines).encode("cp1252")


def test_real_shapes_parse_with_cp1252_and_crlf() -> None:
    data = encode(specialty_line(name="L\u2019HUILE DE TEST, comprimé"))
    assert b"\x92" in data  # the right quote the real files carry
    parsed = bdpm.parse_specialties(data)
    assert parsed.errors == []
    row = parsed.records[0]
    assert row.name == "L\u2019HUILE DE TEST, comprimé"
    assert row.holders == ("OPELLA HEALTHCARE FRANCE",)
    assert row.routes == ("orale",) and row.marketed
    assert row.amm_date is not None and row.amm_date.isoformat() == "2002-07-09"


def test_lf_and_crlf_and_missing_final_newline() -> None:
    data = (presentation_line() + "\n").encode("cp1252") + \
        presentation_line(cip7="4949729", cip13="3400949497294").encode("cp1252")
    parsed = bdpm.parse_presentations(data)
    assert [r.cip13 for r in parsed.records] == [CIP13, "3400949497294"]
    assert parsed.rows == 2 and parsed.errors == []


def test_utf8_file_is_read_as_utf8() -> None:
    data = ("\ufeff" + specialty_line() + "\r\n").encode("utf-8")
    parsed = bdpm.parse_specialties(data)
    assert parsed.records[0].name == "DOLIPRANE 1000 mg, comprimé"


def test_byte_undefined_in_cp1252_is_reported_with_line_and_column() -> None:
    good = encode(specialty_line())
    bad = specialty_line(cis="60234101").encode("cp1252").replace(b"DOLIPRANE", b"DOL\x81PRANE")
    parsed = bdpm.parse_specialties(good + bad + b"\r\n" + good.replace(b"60234100", b"60234102"))
    assert len(parsed.records) == 2
    assert [(e.file, e.line) for e in parsed.errors] == [("CIS_bdpm.txt", 2)]
    assert "0x81" in parsed.errors[0].reason
    assert str(parsed.errors[0]).startswith("CIS_bdpm.txt:2: ")


@pytest.mark.parametrize(("raw", "cents"), [
    ("1,07", 107), ("30,36", 3036), ("1,234,56", 123456), ("53,130,80", 5313080),
    ("12", 1200), ("", None),
])
def test_prices_with_decimal_and_thousands_commas(raw: str, cents: int | None) -> None:
    assert bdpm.parse_price(raw) == cents


@pytest.mark.parametrize(("raw", "rates"), [
    ("65%", (65,)), ("65 %", (65,)), ("100 %", (100,)), ("", ()), ("65 %;30%", (65, 30)),
])
def test_reimbursement_rates_with_and_without_space(raw: str, rates: tuple) -> None:
    assert bdpm.parse_rates(raw) == rates


def test_malformed_rows_are_reported_and_the_rest_imported() -> None:
    lines = [
        presentation_line(),                                             # 1 ok
        presentation_line(cip7="4949729", cip13="3400949497295"),        # 2 bad CIP13 key
        presentation_line(cip7="4949770", cip13="3400949497706",
                          price="12,3a"),                                # 3 bad price
        "\t".join(presentation_line(cip7="3320863",
                                    cip13="3400933208639").split("\t")[:8]),  # 4 missing
        presentation_line(cip7="3320863", cip13="3400933208639") + "\textra",  # 5 extra
        presentation_line(cip7="3320863", cip13="3400933208639", rate="beaucoup"),  # 6
        presentation_line(cip7="1234567", cip13="3400933208639"),        # 7 CIP7 mismatch
        "",                                                              # 8 empty line
        presentation_line(),                                             # 9 duplicate
        presentation_line(cip7="3320863", cip13="3400933208639"),        # 10 ok
    ]
    parsed = bdpm.parse_presentations(encode(*lines, newline="\n"))
    reasons = {e.line: e.reason for e in parsed.errors}
    assert [r.cip13 for r in parsed.records] == [CIP13, "3400933208639"]
    assert sorted(reasons) == [2, 3, 4, 5, 6, 7, 8, 9]
    assert "bad CIP13" in reasons[2] and "check digit" in reasons[2]
    assert "bad price '12,3a'" in reasons[3]
    assert "missing fields" in reasons[4]
    assert "14 fields, expected 13" in reasons[5]
    assert "reimbursement rate" in reasons[6]
    assert "does not match" in reasons[7]
    assert reasons[8] == "empty line"
    assert "duplicate key" in reasons[9] and "line 1" in reasons[9]
    assert parsed.rows == len(parsed.records) + len(parsed.errors) == 10


def test_trailing_tab_is_accepted_and_embedded_tab_refused() -> None:
    ok = "\t".join([CIS, "comprimé", "02202", "PARACÉTAMOL", "1000 mg", "un comprimé",
                    "SA", "1", ""])
    shifted = "\t".join([CIS, "granules", "02500", "MERCURIUS", "", "", "", "4CH",
                         "une gomme", "SA", "14", ""])
    parsed = bdpm.parse_compositions(encode(ok, shifted))
    assert [r.substance for r in parsed.records] == ["PARACÉTAMOL"]
    assert parsed.errors[0].line == 2 and "12 fields, expected 8" in parsed.errors[0].reason


def test_generic_groups_and_conditions() -> None:
    generics = bdpm.parse_generics(encode(
        "\t".join(["1", "CIMETIDINE 200 mg - TAGAMET", "65383183", "0", "1", ""]),
        "\t".join(["1809", "PALIPERIDONE", "", "67215259", "0", "1", ""])))
    assert generics.records[0].kind == 0 and generics.records[0].group_id == 1
    assert "7 fields, expected 5" in generics.errors[0].reason
    conditions = bdpm.parse_conditions(encode(f"{CIS}\tliste I", "6023410\tliste II"))
    assert conditions.records[0].text == "liste I"
    assert "bad CIS" in conditions.errors[0].reason


def _bdpm(specialties: list[str], presentations: list[str], compositions: list[str]) -> bdpm.Bdpm:
    return bdpm.parse_bdpm({
        bdpm.SPECIALTIES: encode(*specialties),
        bdpm.PRESENTATIONS: encode(*presentations, newline="\n"),
        bdpm.COMPOSITIONS: encode(*compositions),
        bdpm.GENERICS: b"",
        bdpm.CONDITIONS: b"",
    })


def test_documents_prefer_the_therapeutic_fraction_and_rank_marketed_first() -> None:
    parsed = _bdpm(
        [specialty_line(cis="60002504", name="RANITIDINE TEST 150 mg, comprimé"),
         specialty_line(name="ABACAVIR TEST 300 mg, comprimé")],
        [presentation_line(cis="60002504", cip7="3320863", cip13="3400933208639"),
         presentation_line(state="Déclaration d'arrêt de commercialisation")],
        ["\t".join(["60002504", "comprimé", "25783", "RANITIDINE (CHLORHYDRATE DE)", "168 mg",
                    "un comprimé", "SA", "1", ""]),
         "\t".join(["60002504", "comprimé", "49632", "RANITIDINE BASE", "150 mg",
                    "un comprimé", "FT", "1", ""])])
    docs = drug_documents(parsed)
    # (id, cip13, cip7, cis, name, form, dosage, pack, substances, routes, rates, price,
    #  marketed, name_key, text_key)
    assert [d[0] for d in docs] == [1, 2]
    first, second = docs
    assert first[4].startswith("RANITIDINE") and first[12] == 1  # marketed first
    assert second[4].startswith("ABACAVIR") and second[12] == 0
    assert first[6] == "150 mg" and first[8] == "RANITIDINE BASE"
    assert "chlorhydrate" in first[14]  # every substance is searchable
    assert first[7] == "plaquette(s) PVC-aluminium de 8 comprimé(s)"


def test_presentation_without_specialty_is_kept_with_its_pack_label() -> None:
    parsed = _bdpm([], [presentation_line()], [])
    (doc,) = drug_documents(parsed)
    assert (doc[1], doc[4]) == (CIP13, "")
    assert doc[7] == "plaquette(s) PVC-aluminium de 8 comprimé(s)"


def test_device_documents_are_ranked_by_folded_label() -> None:
    docs = device_documents([("1234567", "Électrode"), ("7654321", "bas de contention")])
    assert [(d[0], d[1]) for d in docs] == [(1, "7654321"), (2, "1234567")]


@pytest.mark.parametrize(("text", "key"), [
    ("PARACÉTAMOL", "paracetamol"), ("paracetamol", "paracetamol"),
    ("  Doliprane  1000 mg, comprimé ", "doliprane 1000 mg comprime"),
    ("ŒSTRODOSE 0,06 %", "oestrodose 0 06"), ("1.5 mg", "1 5 mg"), ("L\u2019EAU", "l eau"),
    ("---", ""),
])
def test_search_key_folds_case_accents_and_punctuation(text: str, key: str) -> None:
    assert search_key(text) == key


def test_prefix_upper_bound() -> None:
    bound = prefix_upper_bound("dol")
    assert bound == "dom"
    assert all(word < bound for word in ("dol", "doliprane", "dolzzz"))
