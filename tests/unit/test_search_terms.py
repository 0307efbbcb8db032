"""Pure parts of the forgiving drug search: reading strengths, forms and words from a
query or a BDPM name alike, box sizes, and the spelling tolerance's candidates."""

from __future__ import annotations

from decimal import Decimal

import pytest

from appliance.store.referential.spelling import Vocabulary, distance, edits1
from appliance.store.referential.terms import (
    OTHER_ORAL,
    OTHER_ROUTE,
    SOLID,
    SPECIAL_SOLID,
    amounts,
    box_size,
    name_facts,
    number_token,
    pack_facts,
    parse_query,
)


def tokens(text: str) -> set[str]:
    return {token for amount in amounts(text) for token in amount.tokens()}


@pytest.mark.parametrize(("query", "words", "filters"), [
    ("doliprane 1000mg", ("doliprane",), (("m1000",),)),
    ("Doliprane 1 g ", ("doliprane",), (("m1000",),)),
    ("doliprane 1g", ("doliprane",), (("m1000",),)),
    ("levothyrox 25µg", ("levothyrox",), (("m0d025",),)),
    ("levothyrox 25 mcg", ("levothyrox",), (("m0d025",),)),
    ("levothyrox 25 microgrammes", ("levothyrox",), (("m0d025",),)),
    ("lovenox 4000UI", ("lovenox",), (("u4000",),)),
    ("lovenox 4 000 U.I.", ("lovenox",), (("u4000",),)),
    ("lovenox 0,4mL", ("lovenox",), (("v0d4",),)),
    ("betadine 10%", ("betadine",), (("p10",),)),
    ("xanax 0,25", ("xanax",), (("n0d25", "m0d25", "n0d25*"),)),
    ("seresta 10", ("seresta",), (("n10", "m10", "n10*"),)),
    ("dafalgan 500 cp", ("dafalgan",), (("n500", "m500", "n500*"), ("fcp",))),
    ("tramadol 50 gél", ("tramadol",), (("n50", "m50", "n50*"), ("fgel", "fgelc"))),
    ("amox 1g sachet", ("amox",), (("m1000",), ("fsach",))),
    ("augmentin 1g/125mg", ("augmentin",), (("m1000",), ("m125",))),
    ("doliprane enfant", ("doliprane",), (("xped",),)),
    ("doliprane1000", ("doliprane",), (("n1000", "m1000", "n1000*"),)),
    ("vitamine b12", ("vitamine", "b12"), ()),
    ("eff", ("eff",), ()),  # a form word is a filter only after a drug word
    # while typing: an unfinished unit or form leaves a bare number
    ("doliprane 1000m", ("doliprane",), (("n1000", "m1000", "n1000*"),)),
    ("tramadol 50 g", ("tramadol",), (("n50", "m50", "n50*"),)),
    ("doliprane 1 g", ("doliprane",), (("n1", "m1", "n1*"),)),  # or "1 gélule"
    # the box size
    ("doliprane 1000mg x100", ("doliprane",), (("m1000",), ("b100",))),
    ("doliprane 1000mg x 8", ("doliprane",), (("m1000",), ("b8",))),
    ("doliprane 1000mg bte de 8", ("doliprane",), (("m1000",), ("b8",))),
    ("doliprane 1000mg x", ("doliprane",), (("m1000",),)),  # still typed
])
def test_queries_are_read_as_words_strengths_and_forms(query, words, filters) -> None:
    parsed = parse_query(query)
    assert (parsed.words, parsed.filters) == (words, filters)


def test_names_give_the_same_tokens_as_queries() -> None:
    assert tokens("LOVENOX 4 000 UI (40 mg)/0,4 mL, solution injectable") == {
        "n4000", "u4000", "n40", "m40", "n0d4", "v0d4"}
    assert tokens("LEVOTHYROX 25 microgrammes, comprimé sécable") == {"n25", "m0d025"}
    assert tokens("AUGMENTIN 1 g/125 mg") >= {"n1", "m1000", "n125", "m125"}
    assert tokens("DOLIPRANE 2,4 POUR CENT, suspension buvable") == {"n2d4", "p2d4"}
    assert tokens("A 313 50 000 U.I., capsule molle") == {"n313", "n50000", "u50000"}
    assert tokens("HUMALOG MIX25 100 unités/ml") == {"n25", "n100", "u100"}
    assert tokens("HUMALOG MIX 25, 100 U/ml") == {"n25", "n100", "u100"}  # not 25 100
    assert number_token(Decimal("0.0250")) == "0d025" and number_token(Decimal("1E+3")) == "1000"


def test_name_facts_stem_strength_age_and_form_class() -> None:
    facts = name_facts("DOLIPRANE 1000 mg, comprimé", "comprimé", ("orale",))
    assert (facts.stem, facts.strength, facts.paediatric, facts.form_class) == (
        "doliprane", Decimal(1000), False, SOLID)
    assert "fcp" in facts.tokens and "m1000" in facts.tokens
    sachet = name_facts("KARDEGIC 75 mg, poudre pour solution buvable en sachet-dose",
                        "poudre pour solution buvable", ("orale",))
    assert sachet.form_class == OTHER_ORAL and {"fsach", "fbuv", "fpdr"} <= sachet.tokens
    assert name_facts("TAHOR 10 mg, comprimé à croquer", "comprimé à croquer",
                      ("orale",)).form_class == SPECIAL_SOLID
    assert name_facts("MOVICOL, poudre", "poudre", ("orale",)).stem == "movicol"
    assert name_facts("LEVOTHYROX 25 microgrammes", "comprimé", ("orale",)).strength == \
        Decimal("0.025")
    assert name_facts("OXYNORM 10 mg/ml, solution buvable", "solution buvable",
                      ("orale",)).strength is None  # per ml: not a unit strength
    assert name_facts("LOVENOX 4 000 UI", "solution injectable",
                      ("sous-cutanée",)).form_class == OTHER_ROUTE
    for child in ("ASPEGIC NOURRISSONS 100 mg", "ADVILMED ENFANTS ET NOURRISSONS 20 mg/1 ml",
                  "FER AP-HP 0,5 mg NOUVEAU-NE, gélule", "AVAXIM 80 U PEDIATRIQUE"):
        assert name_facts(child, "", ("orale",)).paediatric, child
    assert not name_facts("DOLIPRANE ADULTES 1000 mg", "", ("rectale",)).paediatric


@pytest.mark.parametrize(("pack", "box"), [
    ("plaquette(s) thermoformée(s) PVC-aluminium de 8  comprimé(s)", "8 comprimés"),
    ("10 plaquette(s) thermoformée(s) papier aluminium de 10 comprimé(s)", "100 comprimés"),
    ("3 plaquette(s) PVC aluminium de 10 gélule(s)", "30 gélules"),
    ("30 sachet(s)-dose(s) papier aluminium polyéthylène de 153,45 mg", "30 sachets"),
    ("1 flacon(s) en verre de 100 ml", "1 flacon de 100 ml"),
    ("2 seringue(s) préremplie(s) en verre de 0,4 ml", "2 seringues de 0,4 ml"),
    ("1 tube(s) aluminium de 30 g", "1 tube de 30 g"),
    ("plaquettes PVC-Aluminium de 90 comprimés", "90 comprimés"),
    ("plaquette(s) unidose(s) de 30 x 1 gélule (en dose unitaire)", "30 gélules"),
    ("Poudre en flacon (verre), boite de 1", ""),
])
def test_box_sizes_from_pack_labels(pack: str, box: str) -> None:
    assert box_size(pack) == box
    assert pack_facts(pack)[0] == box


def test_pack_labels_give_forms_and_unit_volumes() -> None:
    assert pack_facts("20 sachet(s) papier de 13,8 g")[1] == "fsach"
    assert pack_facts("2 seringue(s) préremplie(s) en verre de 0,4 ml")[1].split() == [
        "v0d4"]


def test_edits_at_distance_one() -> None:
    variants = set(edits1("abc"))
    assert {"bc", "bac", "xbc", "abxc", "abcx", "ab"} <= variants
    assert all(distance("abc", v, 1) <= 1 for v in variants)
    assert distance("inexium", "inexuim", 2) == 1  # a swap counts once
    assert distance("amoxicilline", "amoxiciilne", 2) == 2
    assert distance("abc", "xyzw", 2) == 3  # beyond the bound


VOCABULARY = Vocabulary([("amoxicilline", 500), ("amoxicil", 1), ("doliprane", 300),
                         ("codoliprane", 20), ("levothyrox", 80), ("levothyroxine", 60),
                         ("kardegic", 40), ("xanax", 10), ("zoltar", 2)])


def test_corrections_are_word_starts_one_typo_away() -> None:
    v = VOCABULARY
    assert v.corrections("amoxiciline") == ["amoxicilline"]
    assert v.corrections("amoxicili") == ["amoxicilli"]  # typed on its way to the word
    assert v.corrections("levotyrox") == ["levothyrox"]
    assert v.corrections("kardegik") == ["kardegic"]
    assert v.corrections("dolipranne") == ["doliprane"]
    assert v.corrections("amoxiciilne") == []  # two typos
    assert v.needs_correction("amoxiciline") and not v.needs_correction("amoxi")
    assert not v.needs_correction("xanx")  # shorter than five letters
    assert not v.needs_correction("doli")


def test_near_words() -> None:
    v = VOCABULARY
    assert v.near("amoxiciilne") == ["amoxicilline"]
    assert v.near("xanx") == ["xanax"]
    assert v.near("qwertyuiop") == []
