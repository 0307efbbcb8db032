"""Residents' allergies: the table (m008), recording one by name or from a drug, the audit,
the residents' CSV ``allergies`` column, and the prescribing check that reads them."""

from __future__ import annotations

import json
from datetime import date

import pytest
from click.testing import CliRunner

from appliance.cli import main
from appliance.domain.posology import Duration, Posology
from appliance.domain.prescription import MedicationLine
from appliance.errors import StoreError, ValidationError
from appliance.services import allergies
from appliance.services.checks import ResidentProfile, check
from appliance.services.drafts import Draft
from appliance.services.referential import import_bdpm
from appliance.services.residents import import_residents
from appliance.store import open_store
from appliance.store.migrations import applied
from appliance.store.referential.build import referential_path
from appliance.store.referential.facts import ReferentialFacts
from appliance.store.uow import SqliteUnitOfWork
from tests.factories import nir, resident
from tests.harness.safety_sets import FIXTURE_BDPM

pytestmark = pytest.mark.integration
N1, N2, N3 = nir("2400175123001"), nir("1350399456002"), nir("2320275012345")
HEADER = "nir;nom;prenoms;date_naissance;sexe;chambre;allergies\n"


@pytest.fixture(scope="module")
def referential(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("referential")
    import_bdpm(data_dir, FIXTURE_BDPM, referential_date="2022-06-03")
    return data_dir


@pytest.fixture
def facts(referential):
    f = ReferentialFacts(referential_path(referential))
    yield f
    f.close()


@pytest.fixture
def someone(uow):
    r = resident(7)
    with uow:
        uow.residents.upsert([r])
        uow.commit()
    return r


def test_the_migration_adds_the_table(store) -> None:
    assert "m008_allergies" in applied(store)
    columns = [row[1] for row in store.conn.execute("PRAGMA table_info(allergies)")]
    assert columns == ["id", "resident_ins", "substance_code", "substance", "recorded_on",
                       "source", "recorded_by", "created_at"]


def test_an_allergy_by_name_is_recorded_once_and_audited_without_health_data(
        uow, facts, someone) -> None:
    ins = someone.ins.value
    added = allergies.add_by_name(uow, facts, ins=ins, text="Amoxicilline", source=
                                  "déclaration de la famille", actor="899700000013",
                                  recorded_on=date(2023, 4, 2))
    assert (added.substance_code, added.substance) == ("05248", "AMOXICILLINE ANHYDRE")
    again = allergies.add_by_name(uow, facts, ins=ins, text="05248", source="dossier",
                                  actor="899700000013")
    assert again.id is None  # already recorded: the first record stays
    [allergy] = allergies.of_resident(uow, ins)
    assert (allergy.recorded_on, allergy.source) == (date(2023, 4, 2),
                                                     "déclaration de la famille")
    [entry] = [e for e in uow.audit.entries() if e.action == "allergy.recorded"]
    assert entry.details == {"allergy": added.id} and entry.subject == ""
    assert "AMOXICILLINE" not in json.dumps(entry.details) and ins not in entry.subject


def test_an_allergy_from_a_drug_records_its_substances(uow, facts, someone) -> None:
    added = allergies.add_from_drug(uow, facts, ins=someone.ins.value, cis="60392513",
                                    source="réaction en 2019", actor="899700000013")
    assert [(a.substance_code, a.substance) for a in added] == [
        ("02202", "PARACÉTAMOL"), ("86571", "CHLORHYDRATE DE TRAMADOL")]
    amlor = allergies.add_from_drug(uow, facts, ins=someone.ins.value, cis="61939921",
                                    source="réaction en 2020", actor="899700000013")
    assert [a.substance for a in amlor] == ["AMLODIPINE"]  # the base, not its salt


@pytest.mark.parametrize(("kw", "field"), [
    ({"text": "pénicilline"}, "allergies"), ({"text": ""}, "allergies"),
    ({"text": "paracétamol", "source": " "}, "source"),
    ({"text": "paracétamol", "source": "x" * 201}, "source"),
])
def test_bad_input_names_its_field(uow, facts, someone, kw, field) -> None:
    args = {"source": "dossier", **kw}
    with pytest.raises(ValidationError) as caught:
        allergies.add_by_name(uow, facts, ins=someone.ins.value, actor="x", **args)
    assert caught.value.field == field
    assert allergies.of_resident(uow, someone.ins.value) == []


def test_an_unknown_resident_is_refused(uow, facts) -> None:
    with pytest.raises(StoreError, match="résident inconnu"):
        allergies.add_by_name(uow, facts, ins=N1, text="paracétamol", source="dossier",
                              actor="x")


def test_the_residents_csv_column_resolves_against_the_referential(uow, facts) -> None:
    data = (HEADER
            + f"{N1};MARTIN;Jeanne;1940-01-15;F;101;amoxicilline|Paracétamol\n"
            + f"{N2};PETIT;Luc;1935-09-03;M;102;\n"
            + f"{N3};ROUX;Anne;1932-02-28;F;103;paracétamol|pénicilline\n").encode()
    report = import_residents(uow, data, actor="cli:test", substances=facts)
    assert (report.created, report.allergies) == (2, 2)
    [error] = report.errors
    assert str(error) == ("line 4, column allergies: 'pénicilline': a substance of the drug "
                          "referential (name or BDPM substance code), several separated by |")
    assert uow.residents.get(N3) is None  # the whole row waits for a corrected file
    assert [a.substance_code for a in allergies.of_resident(uow, N1)] == ["05248", "02202"]
    assert all(a.source == "import des résidents" for a in allergies.of_resident(uow, N1))
    again = import_residents(uow, data, actor="cli:test", substances=facts)
    assert (again.updated, again.allergies) == (2, 0)  # nothing recorded twice
    assert "2 allergies added" in report.summary()


def test_a_nir_given_twice_keeps_the_first_rows_allergies_only(uow, facts, tmp_path) -> None:
    path = tmp_path / "residents.csv"
    path.write_text(HEADER + f"{N1};MARTIN;Jeanne;1940-01-15;F;101;amoxicilline\n"
                    + f"{N1};MARTIN;Jeanne;1940-01-15;F;101;paracétamol\n", "utf-8")
    report = import_residents(uow, path, actor="cli:test", substances=facts)  # streamed
    assert (report.created, report.allergies) == (1, 1)
    assert [str(e) for e in report.errors] == ["line 3, column nir: same NIR as line 2"]
    assert [a.substance_code for a in allergies.of_resident(uow, N1)] == ["05248"]


def test_allergies_need_the_referential(uow) -> None:
    data = (HEADER + f"{N1};MARTIN;Jeanne;1940-01-15;F;101;amoxicilline\n"
            + f"{N2};PETIT;Luc;1935-09-03;M;102;\n").encode()
    report = import_residents(uow, data, actor="cli:test")
    assert report.created == 1 and report.errors[0].column == "allergies"
    assert "ordo drugs import" in report.errors[0].reason


def test_recorded_allergies_block_the_drug_in_the_checks(uow, facts, someone) -> None:
    allergies.add_by_name(uow, facts, ins=someone.ins.value, text="amoxicilline",
                          source="dossier médical", actor="x", recorded_on=date(2021, 3, 12))

    clamoxyl = MedicationLine(label="CLAMOXYL 1 g, comprimé dispersible", cis="64539416",
                              posology=Posology(dose=1, unit="comprimé", moments=("matin", "soir"),
                                                duration=Duration(7, "jour")))
    draft = Draft(resident=someone, lines=[clamoxyl])
    profile = ResidentProfile.of(someone, allergies.of_resident(uow, someone.ins.value))
    alerts = check(draft, profile, [], facts, today=date(2025, 1, 15))
    assert [a.key for a in alerts] == ["allergy.substance@1"]
    assert alerts[0].source == "Allergie enregistrée le 12/03/2021, source : dossier médical"


def test_cli_import_reads_allergies_with_the_imported_referential(tmp_path) -> None:
    runner = CliRunner()
    data_dir = str(tmp_path / "data")
    result = runner.invoke(main, ["--data-dir", data_dir, "drugs", "import", str(FIXTURE_BDPM),
                                  "--date", "2022-06-03", "--allow-small"])
    assert result.exit_code == 0, result.output
    csv_path = tmp_path / "residents.csv"
    csv_path.write_text(HEADER + f"{N1};MARTIN;Jeanne;1940-01-15;F;101;codéine\n", "utf-8")
    result = runner.invoke(main, ["--data-dir", data_dir, "residents", "import", str(csv_path)])
    assert result.exit_code == 0, result.output
    assert "1 created, 0 updated, 0 rejected, 1 allergies added" in result.output
    uow = SqliteUnitOfWork(open_store(tmp_path / "data" / "ordo.sqlite"))
    try:
        [codeine] = allergies.of_resident(uow, N1)
        assert codeine.moiety == "codeine" and codeine.source == "import des résidents"
    finally:
        uow.close()
