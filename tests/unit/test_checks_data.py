"""The clinical tables of the checks: every row sourced, every substance found in the BDPM."""

from __future__ import annotations

import csv
import io
from importlib import resources
from pathlib import Path

import pytest

from appliance.domain.drug_facts import moiety_key
from appliance.services.checks import load_tables
from appliance.services.checks.tables import DOSES_FILE, PIM_FILE
from appliance.store.referential import bdpm

REAL_BDPM = Path(__file__).resolve().parents[3] / "shared" / "data" / "bdpm"
LAROCHE = "Laroche ML, Charmes JP, Merle L."
needs_real = pytest.mark.skipif(not REAL_BDPM.is_dir(),
                                reason="no BDPM extract in ../shared/data/bdpm")


def rows(name: str) -> list[dict[str, str]]:
    text = resources.files("appliance.services.checks").joinpath("data", name).read_text("utf-8")
    return list(csv.DictReader(io.StringIO(text)))


def test_every_row_of_every_table_has_a_source() -> None:
    for name in (DOSES_FILE, PIM_FILE):
        for row in rows(name):
            assert row["source"].strip(), (name, row)
    for row in rows(DOSES_FILE):
        assert row["source"] == f"{row['source'].split(' (CIS ')[0]} (CIS " \
            f"{row['reference_cis']}), rubrique 4.2", row
        assert row["source"].startswith("RCP "), row
    assert all(row["source"].startswith(LAROCHE) and "2007;63:725-731" in row["source"]
               and "Rev Med Interne 2009;30:592-601" in row["source"]
               for row in rows(PIM_FILE))
    # an active criterion names the text read, and the criterion of its table
    for row in rows(PIM_FILE):
        if row["verified_on"]:
            criterion = row["source"].rsplit("critère ", 1)[1]
            assert f"(critère {criterion})" in row["checked"], row["id"]


# The substances whose maximum daily dose was re-read, on the date each row gives, in a
# published text (French RCP, EU/UK SmPC or Swiss professional information, section 4.2)
# named in the row's ``checked`` column. A row outside this set must not be added without
# that reading; a substance missing from it gets no dose alert.
VERIFIED_DOSE_ROWS = frozenset({
    # re-read before this list was kept
    "alfuzosine (chlorhydrate)", "alprazolam", "amlodipine", "apixaban", "azithromycine",
    "carvédilol", "citalopram", "clopidogrel", "colchicine", "diltiazem (chlorhydrate)",
    "dompéridone", "escitalopram", "gabapentine", "halopéridol",
    "hydroxyzine (dichlorhydrate)", "metformine (chlorhydrate)",
    "métoclopramide (chlorhydrate)", "nébivolol", "paracétamol", "paroxétine",
    "prégabaline", "rispéridone", "sertraline", "tramadol (chlorhydrate)", "venlafaxine",
    "zolpidem (tartrate)", "zopiclone",
    # re-read on 2026-12-03
    "célécoxib", "quétiapine (fumarate)", "olanzapine", "aripiprazole", "amisulpride",
    "clozapine", "fluoxétine", "duloxétine", "mirtazapine", "donépézil (chlorhydrate)",
    "galantamine", "rivastigmine", "mémantine (chlorhydrate)", "lévétiracétam",
    "lercanidipine (chlorhydrate)", "ramipril", "périndopril arginine",
    "périndopril tert-butylamine", "énalapril (maléate)", "candésartan cilexétil",
    "valsartan", "irbésartan", "losartan potassique", "telmisartan", "olmésartan médoxomil",
    "flécaïnide (acétate)", "rivaroxaban", "ticagrélor", "atorvastatine", "simvastatine",
    "rosuvastatine", "ézétimibe", "ivabradine", "éplérénone",
    "gliclazide (libération modifiée)", "glimépiride", "sitagliptine", "vildagliptine",
    "répaglinide", "dapagliflozine", "empagliflozine", "céfixime", "montélukast",
    "cétirizine (dichlorhydrate)", "desloratadine", "lévocétirizine (dichlorhydrate)",
    "ébastine", "fexofénadine (chlorhydrate)", "tamsulosine (chlorhydrate)", "finastéride",
    "solifénacine (succinate)", "mirabégron", "entacapone", "rasagiline",
    "bisoprolol (fumarate)", "lisinopril", "néfopam (chlorhydrate)", "diclofénac sodique",
    "lévofloxacine", "cefpodoxime", "céfuroxime (axétil)", "trospium (chlorure)",
    "phloroglucinol hydraté", "trimétazidine (dichlorhydrate)", "ropinirole", "pramipexole",
    "lopéramide (chlorhydrate)",
})


def test_every_active_dose_row_was_read_in_a_published_text_on_a_given_date() -> None:
    doses = load_tables().doses
    for dose in doses:
        assert dose.source.strip() and dose.checked.strip(), dose.substance
        assert dose.verified_on is not None, dose.substance
    assert {d.substance for d in doses} == VERIFIED_DOSE_ROWS
    assert len(VERIFIED_DOSE_ROWS) == 94


# The Laroche criteria re-read, on the date each row gives, in the published list (named in
# the row's ``checked`` column): Tableau 1 of the list's French version (Laroche ML, Bouthier F,
# Merle L, Charmes JP. Rev Med Interne 2009;30:592-601), read on 2026-12-04 in a public
# transcription of the article. Two rows stay inactive: L20 (immediate-release calcium channel
# blockers), whose reason cell the transcription leaves empty, so that no reason could be
# attributed to it; L18 (meprobamate), a criterion about its digestive indication, which a
# prescription line does not tell. A row outside this set raises no alert until re-read.
VERIFIED_PIM_ROWS: frozenset[str] = frozenset(
    {f"L{n:02d}" for n in range(1, 31)} - {"L18", "L20"})


def test_only_laroche_criteria_read_in_the_published_list_are_active() -> None:
    active = load_tables().pims
    for pim in active:
        assert pim.checked.strip() and pim.verified_on is not None, pim.id
    assert {p.id for p in active} == VERIFIED_PIM_ROWS
    # the others are all still in the file, without a date, hence inactive
    assert {r["id"] for r in rows(PIM_FILE) if not r["verified_on"]} == \
        {r["id"] for r in rows(PIM_FILE)} - VERIFIED_PIM_ROWS
    assert len(rows(PIM_FILE)) == 30


def test_the_tables_load_and_cover_80_substances_or_more() -> None:
    tables = load_tables()
    assert len({d.substance for d in tables.doses}) >= 80
    assert load_tables() is tables  # read once


@pytest.fixture(scope="module")
def compositions() -> list[bdpm.CompositionRow]:
    parsed = bdpm.parse_compositions((REAL_BDPM / bdpm.COMPOSITIONS).read_bytes())
    return parsed.records


@needs_real
def test_every_dose_row_maps_to_its_bdpm_substance(compositions) -> None:
    names_of: dict[str, set[str]] = {}
    codes_of_cis: dict[str, set[str]] = {}
    for row in compositions:
        names_of.setdefault(row.substance_code, set()).add(row.substance)
        codes_of_cis.setdefault(row.cis, set()).add(row.substance_code)
    for row in rows(DOSES_FILE):
        codes = set(row["bdpm_codes"].split("|"))
        assert codes <= set(names_of), row["substance"]
        assert set(row["bdpm_names"].split("|")) <= set().union(*(names_of[c] for c in codes)), \
            row["substance"]
        # the cited specialty holds the substance, at the strength its name gives
        assert codes & codes_of_cis[row["reference_cis"]], row["substance"]


@needs_real
def test_every_laroche_code_is_a_bdpm_substance_of_the_criterion(compositions) -> None:
    moiety_of = {row.substance_code: moiety_key(row.substance) for row in compositions}
    found = 0
    for row in rows(PIM_FILE):
        codes = [c for c in row["bdpm_codes"].split("|") if c]
        assert all(code in moiety_of for code in codes), row["id"]
        found += bool(codes)
    # Phenylbutazone (L02) and meprobamate (L18) were withdrawn before the 2022 extract.
    assert found == len(rows(PIM_FILE)) - 2
