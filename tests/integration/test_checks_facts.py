"""Drug facts read from a real referential file built from the repository's BDPM fixture
(rows of the 2022 extract): components with parsed strengths, conditions, substances."""

from __future__ import annotations

import shutil
from decimal import Decimal

import pytest

from appliance.errors import StoreError
from appliance.services.referential import import_bdpm
from appliance.store.referential.build import referential_path
from appliance.store.referential.facts import ReferentialFacts
from tests.harness.safety_sets import FIXTURE_BDPM

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def facts(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("facts")
    import_bdpm(data_dir, FIXTURE_BDPM, referential_date="2022-06-03")
    f = ReferentialFacts(referential_path(data_dir))
    yield f
    f.close()


def test_a_specialty_by_cis_and_by_cip13(facts) -> None:
    amlor = facts.drug(cis="61939921")
    assert amlor.name == "AMLOR 10 mg, gélule" and amlor.form == "gélule"
    assert amlor.routes == ("orale",) and amlor.conditions == ("liste I",)
    by_code = {c.substance_code: c for c in amlor.components}
    base, salt = by_code["39727"], by_code["93748"]
    assert (base.substance, base.nature, base.amount, base.amount_unit, base.per_unit) == \
        ("AMLODIPINE", "FT", Decimal("10.0"), "mg", "gélule")
    assert salt.amount == Decimal("13.889") and base.group == salt.group
    assert amlor.single_substance and amlor.shown_substances() == ("AMLODIPINE",)
    doliprane = facts.drug(cip13="3400935955838")
    assert doliprane.cis == "60234100" and doliprane.components[0].amount == Decimal("1000")
    assert facts.drug(cip13="3400935955838") is doliprane  # kept


def test_strengths_per_ml_and_strengths_the_checks_cannot_use(facts) -> None:
    sirop = facts.drug(cis="61162294").components[0]
    assert (sirop.amount, sirop.per_unit, sirop.per_ml) == (Decimal("200.0"), None, Decimal(100))
    patch = facts.drug(cis="63093669")
    assert patch.routes == ("transdermique",)
    assert patch.components[0].amount is None  # "18 mg" per "un dispositif": not a dose
    plavix = facts.drug(cis="60562855")
    assert [c.amount for c in plavix.components] == [None, Decimal("300.0")]  # SA without dose


def test_prescription_conditions_in_order(facts) -> None:
    assert facts.drug(cis="67426893").conditions == (
        "réservé à l'usage HOSPITALIER", "prescription limitée à 12 semaines", "liste I")


def test_unknown_or_malformed_codes_give_nothing(facts) -> None:
    assert facts.drug(cis="69999999") is None
    assert facts.drug(cip13="3400930000000") is None
    assert facts.drug(cip13="12") is None and facts.drug(cis="abc") is None
    assert facts.drug() is None


def test_substances_by_name_code_or_salt(facts) -> None:
    assert facts.substances("paracétamol") == [("02202", "PARACÉTAMOL")]
    assert facts.substances("PARACETAMOL") == [("02202", "PARACÉTAMOL")]
    assert facts.substances("02202") == [("02202", "PARACÉTAMOL")]
    codes = [code for code, _ in facts.substances("amoxicilline")]
    assert codes[0] == "05248" and "28165" in codes  # AMOXICILLINE first, then its salts
    assert facts.substances("amlodipine")[0] == ("39727", "AMLODIPINE")
    assert facts.substances("pénicilline") == [] and facts.substances("  ") == []
    assert facts.substances("99999") == []


def test_a_new_import_is_read_again(tmp_path) -> None:
    source = tmp_path / "bdpm"
    shutil.copytree(FIXTURE_BDPM, source)
    import_bdpm(tmp_path, source, referential_date="2022-06-03")
    f = ReferentialFacts(referential_path(tmp_path), recheck_s=0)
    try:
        assert f.drug(cis="61939921") is not None
        lines = (source / "CIS_bdpm.txt").read_bytes().split(b"\n")
        (source / "CIS_bdpm.txt").write_bytes(b"\n".join(
            line for line in lines if not line.startswith(b"61939921")))
        import_bdpm(tmp_path, source, referential_date="2022-07-01")
        assert f.drug(cis="61939921").name == ""  # specialty gone, composition still there
    finally:
        f.close()


def test_no_referential_is_a_clear_error(tmp_path) -> None:
    with pytest.raises(StoreError, match="run `ordo drugs import`"):
        ReferentialFacts(tmp_path / "referential.sqlite").drug(cis="61939921")


def test_prefetch_reads_a_whole_draft_at_once(tmp_path) -> None:
    import_bdpm(tmp_path, FIXTURE_BDPM, referential_date="2022-06-03")
    f = ReferentialFacts(referential_path(tmp_path))
    statements: list[str] = []
    try:
        f.drug(cis="61939921")  # opens the file
        f._conn.set_trace_callback(statements.append)
        f.prefetch(cis=["61939921", "61162294", "69999999", "x"],
                   cip13=["3400935955838", "3400930000000", "12"])
        assert len(statements) == 4  # presentations, specialties, compositions, conditions
        statements.clear()
        assert f.drug(cip13="3400935955838").cis == "60234100"
        assert f.drug(cis="61162294").name == "ATARAX, sirop"
        assert f.drug(cis="69999999") is None and f.drug(cip13="3400930000000") is None
        assert statements == []  # all from the prefetch
    finally:
        f.close()
