"""Anything typed in the drug search returns results or nothing, never an exception:
odd Unicode, digits of other scripts, huge numbers, units and form words in any order,
on a real (small) referential."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from appliance.services.referential import import_bdpm, open_referential, search_drugs
from appliance.store.referential.terms import FORM_WORDS, UNIT_FACTORS, parse_query
from tests.unit.test_fuzz_strategies import FUZZ, odd_text

FIXTURE = Path(__file__).resolve().parents[1] / "data" / "bdpm_search"
PIECES = (*FORM_WORDS, *UNIT_FACTORS, "doliprane", "amox", "1000", "0,25", "4 000", "x", "x30",
          "bte de", "1g", "25µg", "9" * 60, "de", ",", "/", " ", "%")


@pytest.fixture(scope="module")
def ref(tmp_path_factory: pytest.TempPathFactory):
    data_dir = tmp_path_factory.mktemp("fuzz-search")
    import_bdpm(data_dir, FIXTURE)
    referential = open_referential(data_dir)
    yield referential
    referential.close()


@settings(FUZZ, max_examples=150)
@given(text=odd_text(30) | st.lists(st.sampled_from(PIECES), max_size=8).map(" ".join))
@example(text="doliprane " + "9" * 400 + "mg x" + "9" * 400)
@example(text="\u0663\u0660mg doliprane")
def test_any_text_gives_results_or_a_hint(ref, text: str) -> None:
    query = parse_query(text)
    assert all(re.fullmatch(r"[a-z0-9]+", word) for word in query.words)
    answer = search_drugs(ref, text, 20)
    assert len(answer.results) <= 20
    if answer.results:
        assert answer.hint == ""
    elif text.strip() and not query.empty:
        assert answer.hint.startswith("Aucun résultat")
