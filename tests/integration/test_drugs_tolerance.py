"""Forgiving drug search, rule by rule, on real BDPM rows carried in the repository
(``tests/data/bdpm_search``: DOLIPRANE, LEVOTHYROX, LOVENOX, AMOXICILLINE BIOGARAN…), so
that a clean clone tests every rule: units glued or not and their variants, strengths
matched as numbers, forms as filters, one typo per word, DCI and brand, adult oral
forms first, box size and reimbursement, and the hint of an empty answer."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from appliance.errors import StoreError
from appliance.services.drug_lines import result_lines
from appliance.services.referential import import_bdpm, open_referential, search_drugs
from appliance.store.referential import Referential
from appliance.store.referential.text import search_key

FIXTURE = Path(__file__).resolve().parents[1] / "data" / "bdpm_search"
DOLIPRANE_1000 = "60234100"  # DOLIPRANE 1000 mg, comprimé
LEVOTHYROX_25 = "68588503"
LOVENOX_4000 = "60782303"
XANAX_025 = "69847791"
SERESTA_10, SERESTA_50 = "68269975", "60351986"
CORDARONE_200 = "64408662"  # the original; two parallel imports share its name


@pytest.fixture(scope="module")
def ref(tmp_path_factory: pytest.TempPathFactory) -> Referential:
    data_dir = tmp_path_factory.mktemp("search")
    import_bdpm(data_dir, FIXTURE, referential_date="2022-06-03")
    referential = open_referential(data_dir)
    yield referential
    referential.close()


def first(ref: Referential, text: str) -> str | None:
    results = ref.search(text)
    return results[0].cis if results else None


def words_of(p) -> str:
    return search_key(f"{p.name} {' '.join(p.substances)}")


@pytest.mark.parametrize(("texts", "cis"), [
    (("doliprane 1000mg", "doliprane 1000 mg", "DOLIPRANE 1000MG", "doliprane 1g",
      "doliprane 1 g", "doliprane 1000", "doliprane1000"), DOLIPRANE_1000),
    (("levothyrox 25µg", "levothyrox 25 µg", "levothyrox 25mcg", "levothyrox 25 ug",
      "levothyrox 25 microgrammes", "levothyrox 0,025mg", "levothyrox 0.025 mg",
      "levothyrox 25"), LEVOTHYROX_25),
    (("lovenox 4000ui", "lovenox 4000 UI", "lovenox 4 000 U.I.", "lovenox 40mg",
      "lovenox 0,4ml", "lovenox 0.4 mL"), LOVENOX_4000),
    (("xanax 0,25", "xanax 0.25", "xanax 0,25mg", "xanax0,25"), XANAX_025),
    (("doliprane 2,4%", "doliprane 2,4 %", "doliprane 2.4 pour cent"), "66477582"),
    (("uvedose 100000ui", "uvedose 100 000 UI"), "63489259"),
])
def test_units_glued_or_spaced_and_their_variants(ref, texts, cis) -> None:
    for text in texts:
        assert first(ref, text) == cis, text


def test_a_strength_is_matched_as_a_number(ref) -> None:
    assert {p.cis for p in ref.search("seresta 10")} == {SERESTA_10}  # not 50, not 100
    assert {p.cis for p in ref.search("seresta 50")} == {SERESTA_50}
    # a number typed without its unit is also read in mg: 1000 is "1 g"
    found = ref.search("amoxicilline biogaran 1000")
    assert found and all("1 g" in p.name for p in found)
    # while typing, "doliprane 1" is on its way to 1000
    assert first(ref, "doliprane 1") == DOLIPRANE_1000
    assert first(ref, "doliprane 1000m") == DOLIPRANE_1000
    assert ref.search("doliprane 750mg") == []


def test_forms_are_filters(ref) -> None:
    for text, word in [("tramadol 50 gél", "gelule"), ("tramadol 50 gel", "gelule"),
                       ("dafalgan 500 cp", "comprime"), ("dafalgan 500 cpr", "comprime"),
                       ("doliprane sachet", "sachet"), ("doliprane sach", "sachet"),
                       ("doliprane suppo", "suppositoire"), ("doliprane buv", "buvable"),
                       ("doliprane eff", "effervescent"), ("lovenox inj", "injectable")]:
        found = ref.search(text, 100)
        assert found, text
        assert all(word in search_key(f"{p.form} {p.name} {p.pack}") for p in found), text
    # a form word is a filter only after a drug word: "sol" alone is a word
    assert ref.search("sol")
    assert all(p.box.endswith("gélules") for p in ref.search("tramadol 50 gél"))


def test_one_typo_per_word_of_five_letters_or_more(ref) -> None:
    for typed, meant in [("amoxiciline", "amoxicilline"), ("levotyrox", "levothyrox"),
                         ("kardegik", "kardegic"), ("dolipranne", "doliprane"),
                         ("seressta", "seresta"), ("cordarnoe", "cordarone"),
                         ("amoxicili", "amoxicilli")]:  # a missing letter while typing
        found = ref.search(typed)
        assert found, typed
        assert all(meant in words_of(p) for p in found[:5]), typed
    assert first(ref, "levotyrox 25") == LEVOTHYROX_25
    assert ref.search("xanx") == []          # four letters: too short to correct
    assert ref.search("amoxiciilne") == []   # two typos in one word: not corrected


def test_dci_and_brand_both(ref) -> None:
    names = {p.name.split()[0] for p in ref.search("paracetamol 1g", 100)}
    assert {"DOLIPRANE", "DAFALGAN"} <= names
    assert {"CLAMOXYL", "AMOXICILLINE"} <= {p.name.split()[0]
                                            for p in ref.search("amoxicilline 1g", 100)}
    assert first(ref, "clamoxyl 1g") == "64539416"


def test_adult_oral_forms_come_before_paediatric_ones(ref) -> None:
    found = ref.search("doliprane", 100)
    assert found[0].cis == DOLIPRANE_1000
    names = [p.name for p in found]
    adult = max(names.index(n) for n in names if n.startswith("DOLIPRANE 500 mg"))
    # DOLIPRANE 100 to 300 mg (sachets, suppositories) are below its 500 mg tablets
    for low in ("DOLIPRANE 100 mg", "DOLIPRANE 150 mg", "DOLIPRANE 200 mg", "DOLIPRANE 300 mg"):
        assert min(names.index(n) for n in names if n.startswith(low)) > adult, low
    aspegic = [p.name for p in ref.search("aspegic", 100)]
    assert aspegic.index("ASPEGIC 500 mg, poudre pour solution buvable en sachet-dose") < min(
        aspegic.index(n) for n in aspegic if "NOURRISSONS" in n or "ENFANTS" in n)
    # ... unless the query says otherwise
    assert all(p.name.startswith(("DOLIPRANE 100 ", "DOLIPRANE 150 ", "DOLIPRANE 200 ",
                                  "DOLIPRANE 300 "))
               for p in ref.search("doliprane enfant", 100))
    assert "suppositoire" in ref.search("doliprane 100mg suppo")[0].name
    # KARDEGIC has no tablets: its 75 mg sachet is not taken for a child's
    assert "75 mg" in {p.name.split(" ", 2)[1] + " mg" for p in ref.search("kardegic")}
    assert first(ref, "doliprane suppo") == "67488731"  # DOLIPRANE ADULTES 1000 mg


def test_one_substance_and_the_exact_name_first(ref) -> None:
    found = [p.name for p in ref.search("dafalgan", 100) if p.marketed]
    codeine = [i for i, n in enumerate(found) if "CODEINE" in n]
    assert codeine and max(i for i, n in enumerate(found) if n.startswith(
        "DAFALGAN 500 mg, comprimé")) < min(codeine)  # paracetamol before paracetamol+codeine
    assert ref.search("xarelto 15")[0].name == "XARELTO 15 mg, comprimé pelliculé"
    assert ref.search("movicol")[0].name == "MOVICOL, poudre pour solution buvable en sachet"
    # among identical names, the original before the parallel imports
    assert first(ref, "cordarone 200") == CORDARONE_200


def test_box_size_and_reimbursement(ref) -> None:
    boxes = [(p.box, p.reimbursement_rates, p.reimbursed) for p in ref.by_cis(DOLIPRANE_1000)]
    assert boxes == [("8 comprimés", (65,), True), ("100 comprimés", (), False)]
    assert ref.search("doliprane 1000mg")[0].box == "8 comprimés"  # the reimbursed box first
    assert ref.search("lovenox 4000ui")[0].box == "2 seringues de 0,4 ml"
    assert ref.search("kardegic 75")[0].box == "30 sachets"
    for text in ("doliprane 1000mg x100", "doliprane 1000 x 100", "doliprane 1g bte de 100"):
        found = ref.search(text)
        assert found[0].cip13 == "3400956369553", text
        assert all(p.box.startswith("100 ") for p in found), text


def test_result_lines_show_box_and_reimbursement_and_never_look_alike(ref) -> None:
    found = ref.search("doliprane 1000mg", 2)
    assert result_lines(found, 74) == [
        "DOLIPRANE 1000 mg, comprimé · 8 comprimés · 65 %",
        "DOLIPRANE 1000 mg, comprimé · 100 comprimés · non remboursé"]
    seen: dict[str, object] = {}
    specialties = [seen.setdefault(p.cis, p) for p in ref.search("a", 500) if p.cis not in seen]
    for width in (40, 60, 74):
        lines = result_lines(specialties, width)
        assert all(len(line) <= width for line in lines)
        assert len(set(lines)) == len(lines), width  # two specialties never look the same
    cordarone = [p for p in ref.search("cordarone 200") if p.marketed]
    lines = result_lines(list({p.cis: p for p in cordarone}.values()), 74)
    assert len(set(lines)) == len(lines) and f"(CIS {CORDARONE_200})" in lines[0]


def test_an_empty_answer_says_why(ref) -> None:
    answer = search_drugs(ref, "doliprane 750mg")
    assert answer.results == [] and answer.hint.startswith("Aucun résultat")
    assert "500 mg" in answer.hint and "1000 mg" in answer.hint
    assert "poudre pour solution buvable" in ref.hint("kardegic cp")
    assert ref.hint("amoxiciilne 1g") == "Aucun résultat. Vouliez-vous dire « amoxicilline 1g » ?"
    assert ref.hint("xanx") == "Aucun résultat. Vouliez-vous dire « xanax » ?"
    assert "zzzzzz" in ref.hint("zzzzzz")
    assert search_drugs(ref, "doliprane").hint == ""


def test_a_referential_of_an_unknown_schema_asks_for_a_new_import(tmp_path: Path) -> None:
    # (schema 1, the previous version's, is upgraded: test_referential_upgrade.py)
    import_bdpm(tmp_path, FIXTURE)
    old = tmp_path / "old.sqlite"
    conn = sqlite3.connect(tmp_path / "referential.sqlite")
    conn.execute("VACUUM INTO ?", (str(old),))
    conn.close()
    conn = sqlite3.connect(old)
    conn.execute("UPDATE meta SET value = '9' WHERE key = 'schema_version'")
    conn.commit()
    conn.close()
    ref = Referential(old)
    with pytest.raises(StoreError, match="ordo drugs import"):
        ref.search("doliprane")
    assert ref.info().counts["presentation"] > 100  # what it holds is still shown
    ref.close()
