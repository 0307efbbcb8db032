"""The common name (DC) and the conditions of a specialty, read from an imported referential:
the demo's built-in BDPM rows always, the real 2022 extract when ``../shared`` is there."""

from pathlib import Path

import pytest

from appliance.domain.secure import SecureRules
from appliance.services.referential import import_bdpm
from appliance.store.referential.composition import CompositionRow, common_name, drug_facts
from appliance.tui.demo_data import write_fallback_bdpm

pytestmark = pytest.mark.integration

EXTRACT = Path(__file__).resolve().parents[3] / "shared" / "data" / "bdpm"


def test_the_common_name_from_composition_rows():
    rows = [CompositionRow("comprimé", "CHLORHYDRATE DE TRAMADOL", "", "SA", 1),
            CompositionRow("comprimé", "TRAMADOL", "200 mg", "FT", 1)]
    assert common_name(rows) == "tramadol 200 mg"  # the fraction, not the salt
    pair = [CompositionRow("comprimé", "AMLODIPINE", "5,00 mg", "SA", 1),
            CompositionRow("comprimé", "VALSARTAN", "80,0 mg", "SA", 2),
            CompositionRow("comprimé", "VALSARTAN", "80,0 mg", "SA", 2)]
    assert common_name(pair) == "amlodipine 5 mg + valsartan 80 mg"
    assert common_name([CompositionRow("gel", "X", "2,50 g", "SA", 1)]) == "x 2,5 g"
    assert common_name([]) is None


def test_the_facts_of_the_demo_referential(tmp_path):
    import_bdpm(tmp_path, write_fallback_bdpm(tmp_path / "bdpm"))
    facts = drug_facts(tmp_path / "referential.sqlite", "60234100")
    assert facts.common_name == "paracétamol 1000 mg"


@pytest.mark.skipif(not EXTRACT.is_dir(), reason="needs ../shared/data/bdpm (the real extract)")
def test_the_facts_of_real_specialties(tmp_path):
    import_bdpm(tmp_path, EXTRACT)
    db = tmp_path / "referential.sqlite"
    assert drug_facts(db, "64755969").common_name == "acide acétylsalicylique 75 mg"
    oxycodone = drug_facts(db, "60108518")  # OXYCODONE SANDOZ 20 mg, gélule
    assert SecureRules.from_conditions(oxycodone.conditions) == SecureRules(True, 28, None)
    fentanyl = drug_facts(db, "60281114")  # FENTANYL ARROW 75 µg/h, transdermal
    assert SecureRules.from_conditions(fentanyl.conditions) == SecureRules(True, 28, 14)
    assert drug_facts(db, "60004487").common_name == "tramadol 200 mg"
    assert SecureRules.from_conditions(drug_facts(db, "60004487").conditions).max_days == 84
