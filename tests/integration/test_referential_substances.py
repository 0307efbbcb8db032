"""The referential's compositions and generic groups, and the substitution check on them,
with real BDPM rows (tests/data/bdpm)."""

from __future__ import annotations

from pathlib import Path

import pytest

from appliance.services.referential import import_bdpm, open_referential
from appliance.services.substitution import outside_prescribed_substance

pytestmark = pytest.mark.integration

TEST_BDPM = Path(__file__).resolve().parents[1] / "data" / "bdpm"
KARDEGIC, DOLIPRANE, LASILIX = "64755969", "60234100", "65606743"
FUROSEMIDE_ARROW, PARACETAMOL_BIOGARAN = "60192594", "68787715"


@pytest.fixture(scope="module")
def ref(tmp_path_factory):
    data = tmp_path_factory.mktemp("substances")
    import_bdpm(data, TEST_BDPM, referential_date="2022-06-03")
    referential = open_referential(data)
    yield referential
    referential.close()


def test_composition_keeps_the_substance_and_its_fraction(ref):
    rows = {(c.substance_code, c.nature, c.link) for c in ref.composition(KARDEGIC)}
    assert rows == {("00005", "FT", 1), ("03107", "SA", 1)}
    assert [c.substance for c in ref.composition(DOLIPRANE)] == ["PARACÉTAMOL"]


def test_generic_group_lists_the_princeps_and_its_generics(ref):
    members = ref.generic_group(FUROSEMIDE_ARROW)
    assert {(m.cis, m.kind) for m in members} >= {(LASILIX, 0), (FUROSEMIDE_ARROW, 1)}
    assert {m.group_id for m in members} == {56}
    assert ref.generic_group(DOLIPRANE) == []                 # paracetamol has no group


def test_substitutions_checked_on_real_rows(ref):
    assert outside_prescribed_substance(ref, LASILIX, FUROSEMIDE_ARROW) is False
    assert outside_prescribed_substance(ref, DOLIPRANE, PARACETAMOL_BIOGARAN) is False
    assert outside_prescribed_substance(ref, KARDEGIC, PARACETAMOL_BIOGARAN) is True
