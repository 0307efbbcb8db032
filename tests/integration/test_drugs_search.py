"""The real 2022 BDPM extract, imported once per session: exact counts, then search
behaviour on real names (ranking, accents, DCI, one- and two-letter queries, codes and
barcode-scanner input)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from appliance.errors import InvalidIdentifier
from appliance.services.referential import import_bdpm, open_referential
from appliance.store.referential import ImportReport, Referential, bdpm
from appliance.store.referential.text import search_key
from tests import drug_queries

REAL_BDPM = Path(__file__).resolve().parents[3] / "shared" / "data" / "bdpm"
NO_REAL_BDPM = "../shared/data/bdpm absent (the full 2022 BDPM extract)"
DOLIPRANE_8 = "3400935955838"  # DOLIPRANE 1000 mg, comprimé, box of 8 (CIP7 3595583)
KNOWN_MALFORMED = {(bdpm.COMPOSITIONS, 26838), (bdpm.COMPOSITIONS, 26839),
                   (bdpm.COMPOSITIONS, 26840), (bdpm.GENERICS, 10004), (bdpm.GENERICS, 10005)}

pytestmark = pytest.mark.skipif(not REAL_BDPM.is_dir(), reason=NO_REAL_BDPM)


@pytest.fixture(scope="session")
def real(tmp_path_factory: pytest.TempPathFactory) -> tuple[ImportReport, Referential]:
    data_dir = tmp_path_factory.mktemp("real-bdpm")
    report = import_bdpm(data_dir, REAL_BDPM, referential_date="2022-06-03")
    ref = open_referential(data_dir)
    yield report, ref
    ref.close()


def test_counts_are_file_rows_minus_reported_malformed_rows(real) -> None:
    report, ref = real
    tables = {bdpm.SPECIALTIES: "specialty", bdpm.PRESENTATIONS: "presentation",
              bdpm.COMPOSITIONS: "composition", bdpm.GENERICS: "generic_group",
              bdpm.CONDITIONS: "condition"}
    counts = ref.info().counts
    malformed = {(e.file, e.line) for e in report.errors}
    assert malformed == KNOWN_MALFORMED
    assert all("(a tab inside a field?)" in e.reason for e in report.errors)
    for f in report.files:
        data = (REAL_BDPM / f.name).read_bytes()
        rows = data.count(b"\n") + (not data.endswith(b"\n"))
        assert f.rows == rows, f.name
        assert f.malformed == sum(1 for name, _ in malformed if name == f.name)
        assert f.imported == f.rows - f.malformed == counts[tables[f.name]], f.name
    assert counts["specialty"] == 15676 and counts["presentation"] == 20747
    assert report.changes["presentation"].added == 20747
    info = ref.info()
    assert info.date == "2022-06-03" and info.source == str(REAL_BDPM.resolve())


def _is_paracetamol(p) -> bool:
    return any(search_key(s) == "paracetamol" for s in p.substances)


@pytest.mark.parametrize("text", ["doliprane", "DOLIPRANE", "PARACÉTAMOL", "paracetamol",
                                  "Paracétamol", "paracetamol 1000"])
def test_accent_and_case_insensitive(real, text: str) -> None:
    _, ref = real
    results = ref.search(text)
    assert len(results) == 20
    assert all(_is_paracetamol(p) for p in results), [p.label for p in results]


def test_ranking_name_prefix_then_dci_and_marketed_first(real) -> None:
    _, ref = real
    results = ref.search("paracetamol", limit=500)
    prefix = [search_key(p.name).startswith("paracetamol") for p in results]
    first_other = prefix.index(False)
    assert all(prefix[:first_other]) and not any(prefix[first_other:])
    names = {p.name.split()[0] for p in results[first_other:]}
    assert {"DOLIPRANE", "EFFERALGAN"} <= names  # found by their DCI
    for tier in (results[:first_other], results[first_other:]):
        marketed = [p.marketed for p in tier]
        assert marketed == sorted(marketed, reverse=True)
        assert True in marketed and False in marketed
    dolipranes = ref.search("doliprane", limit=200)
    prefix = [p.name.startswith("DOLIPRANE") for p in dolipranes]  # DOLIPRANECAPS too
    assert prefix == sorted(prefix, reverse=True)
    assert {p.name.split()[0] for p in dolipranes if not p.name.startswith("DOLIPRANE")} == {
        "CODOLIPRANE"}  # substrings come last
    named = [p for p, first in zip(dolipranes, prefix, strict=True) if first]
    marketed = [p.marketed for p in named]
    assert marketed == sorted(marketed, reverse=True)
    # Adult tablets first; the paediatric strengths (100 to 300 mg sachets and
    # suppositories, below the 500 mg tablets) after every adult DOLIPRANE.
    assert named[0].name == "DOLIPRANE 1000 mg, comprimé" and named[0].box == "8 comprimés"
    names = [p.name for p in named if p.marketed]
    paediatric = [i for i, name in enumerate(names)
                  if re.match(r"DOLIPRANE [123]00 mg, (poudre|suppositoire)", name)]
    adult = [i for i, name in enumerate(names) if re.match(r"DOLIPRANE (500|1000) mg", name)]
    assert paediatric and adult and max(adult) < min(paediatric)


def test_one_and_two_letter_queries(real) -> None:
    _, ref = real
    for text in ("d", "D", "do", "Do"):
        results = ref.search(text)
        assert len(results) == 20
        assert all(search_key(p.name).startswith(text.lower()) and p.marketed
                   for p in results)
    # Few names start with "zy": words starting with "zy" follow, no substring matches.
    results = ref.search("zy", limit=100)
    starts = [search_key(p.name).startswith("zy") for p in results]
    assert starts[0] and starts == sorted(starts, reverse=True)
    assert all(any(word.startswith("zy") for word in search_key(p.name + " " +
                                                                 " ".join(p.substances)).split())
               for p in results)


@pytest.mark.parametrize("typed", [
    DOLIPRANE_8, "3595583", f"0{DOLIPRANE_8}", f"01 0{DOLIPRANE_8}".replace(" ", ""),
    f"(01)0{DOLIPRANE_8}(17)261231(10)B1234(21)0000123456",
    f"010{DOLIPRANE_8}17261231" "10B1234\x1d210000123456",
    f"]d2010{DOLIPRANE_8}17261231" "10B1234<GS>210000123456",
])
def test_codes_and_scanner_input(real, typed: str) -> None:
    _, ref = real
    first = ref.search(typed)[0]
    assert first.cip13 == DOLIPRANE_8 and first.cip7 == "3595583"
    assert first.name == "DOLIPRANE 1000 mg, comprimé" and first.dosage == "1000 mg"
    assert first.reimbursement_rates == (65,) and first.marketed


def test_lookups(real) -> None:
    _, ref = real
    p = ref.by_cip13(DOLIPRANE_8)
    assert p is not None and p.form == "comprimé" and p.routes == ("orale",)
    assert p.price_cents is not None and p.price_cents > 0
    assert DOLIPRANE_8 in {x.cip13 for x in ref.by_cis(p.cis)}
    with pytest.raises(InvalidIdentifier):
        ref.by_cip13("3400935955839")
    assert ref.conditions("60234100") == []  # DOLIPRANE: no prescription condition
    assert ref.conditions("60355340") == ["réservé à l'usage professionnel DENTAIRE",
                                          "liste II"]


def test_multi_word_and_substring(real) -> None:
    _, ref = real
    results = ref.search("amox 500")
    assert results and all("amox" in search_key(p.name + " " + " ".join(p.substances))
                           and "500" in search_key(p.name) for p in results)
    assert any(search_key(p.name).startswith("clamoxyl")
               for p in ref.search("amoxicilline", limit=500))
    assert any(search_key(p.name).startswith("doliprane") for p in ref.search("oliprane"))


def test_real_world_queries_get_the_intended_drug_first(real) -> None:
    """Typos, glued units, abbreviated forms, missing accents (tests/data/drug_queries.csv,
    or the file ORDO_DRUG_QUERIES names): at least 90 % get the intended drug first."""
    _, ref = real
    queries = drug_queries.load()
    right, wrong = drug_queries.score(ref.search, queries)
    assert right / len(queries) >= 0.9, wrong
