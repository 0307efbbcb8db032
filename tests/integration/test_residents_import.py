"""Residents CSV import into a real SQLite file, through the CLI and the service."""

import json

import pytest
from click.testing import CliRunner

from appliance.cli import main
from appliance.services.residents import import_residents, parse_residents, search
from appliance.store import audit, open_store
from appliance.store.uow import SqliteUnitOfWork
from tests.factories import nir

N1, N2, N3 = nir("2400175123001"), nir("1350399456002"), nir("232022A012345")
HEADER = "nir;nom;nom_usage;prenoms;date_naissance;sexe;chambre;opposition\n"


def _csv(rows, header=HEADER, sep=";"):
    return (header + "".join(rows)).replace(";", sep)


GOOD = [
    f"{N1};MARTIN;DUPONT;Jeanne Marie;1940-01-15;F;101;non\n",
    f"{N2};LEFÈVRE;;Étienne;03/09/1935;M;102;oui\n",
    f"{N3};CASANOVA;;Ghjuvanna;1932-02-28;F;103;\n",
]
BAD = [
    "2400175123001 99;MARTIN;;Anne;1940-01-15;F;104;non\n",  # bad NIR key
    f"{nir('2410175123009')};PETIT;;Lucie;31/02/1941;F;105;non\n",  # no such date
    f"{nir('1420175123008')};ROBERT;;Marc;1942-03-01;X;106;non\n",  # bad sex
    f"{nir('1430175123007')};ROUX;;Luc;1943-03-01;M;107;peut-être\n",  # bad objection
    f"{nir('1440175123006')};;;Jean;1944-03-01;M;108;non\n",  # empty name
]


@pytest.fixture
def store(tmp_path):
    s = open_store(tmp_path / "ordo.sqlite")
    yield s
    s.close()


@pytest.fixture
def uow(store):
    return SqliteUnitOfWork(store, owns=False)


@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig", "cp1252"])
@pytest.mark.parametrize("sep", [";", ","])
def test_import_encodings_and_separators(store, encoding, sep, uow):
    data = _csv(GOOD, sep=sep).encode(encoding)
    report = import_residents(uow, data, actor="cli:test")
    assert (report.created, report.updated, report.errors) == (3, 0, [])
    r = uow.residents.get(N2)
    assert r.birth_name == "LEFÈVRE" and r.first_names == "Étienne"
    assert r.birth_date.isoformat() == "1935-09-03" and r.objection is True
    corsica = uow.residents.get(N3)
    assert corsica.ins.oid == "1.2.250.1.213.1.4.8"
    assert uow.residents.get(N1).display_name == "DUPONT née MARTIN Jeanne Marie"


def test_bad_rows_are_reported_and_others_imported(store, uow):
    report = import_residents(uow, _csv(GOOD + BAD).encode(), actor="cli:test")
    assert report.created == 3
    by_line = {e.line: e for e in report.errors}
    assert sorted(by_line) == [5, 6, 7, 8, 9]
    assert by_line[5].column == "nir"
    assert by_line[6].column == "date_naissance" and "31/02/1941" in by_line[6].reason
    assert by_line[7].column == "sexe" and "'X'" in by_line[7].reason
    assert by_line[8].column == "opposition"
    assert by_line[9].column == "nom"
    assert len(search(uow)) == 3


def test_upsert_by_ins(store, uow):
    import_residents(uow, _csv(GOOD).encode(), actor="cli:test")
    moved = GOOD[0].replace(";101;", ";201;")
    report = import_residents(uow, _csv([moved]).encode(), actor="cli:test")
    assert (report.created, report.updated) == (0, 1)
    assert uow.residents.get(N1).room == "201"
    assert len(search(uow)) == 3


def test_missing_column_and_duplicates():
    good, errors = parse_residents(b"nir;nom;prenoms\n1;2;3\n")
    assert good == [] and errors[0].line == 1 and "date_naissance" in errors[0].column
    good, errors = parse_residents(_csv([GOOD[0], GOOD[0]]).encode())
    assert len(good) == 1 and errors[0].line == 3 and "line 2" in errors[0].reason


def test_search_ignores_accents_and_case(store, uow):
    import_residents(uow, _csv(GOOD).encode(), actor="cli:test")
    assert [r.first_names for r in search(uow, "lefevre")] == ["Étienne"]
    assert [r.room for r in search(uow, "ETIENNE")] == ["102"]
    assert [r.room for r in search(uow, "103")] == ["103"]
    assert search(uow, "dupont jeanne")[0].room == "101"


def test_import_is_audited_without_health_data(store, uow):
    import_residents(uow, _csv(GOOD).encode(), actor="cli:test")
    (entry,) = audit.entries(store)
    assert entry.action == "residents.imported" and entry.details["created"] == 3
    raw = json.dumps(entry.__dict__)
    assert N1 not in raw and "MARTIN" not in raw


def test_cli_import_and_list(tmp_path):
    csv_path = tmp_path / "residents.csv"
    csv_path.write_bytes(_csv(GOOD + BAD[:1]).encode("cp1252"))
    runner = CliRunner()
    data_dir = str(tmp_path / "data")
    result = runner.invoke(main, ["--data-dir", data_dir, "residents", "import", str(csv_path)])
    assert result.exit_code == 0, result.output
    assert "3 created, 0 updated, 1 rejected" in result.output
    assert "line 5, column nir" in result.output
    result = runner.invoke(main, ["--data-dir", data_dir, "residents", "list", "--json"])
    rows = json.loads(result.output)
    assert {r["chambre"] for r in rows} == {"101", "102", "103"}
    result = runner.invoke(main, ["--data-dir", data_dir, "audit", "verify"])
    assert result.exit_code == 0 and "OK: 1 entries" in result.output
