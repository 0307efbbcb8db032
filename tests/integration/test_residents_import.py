"""Residents CSV import into a real SQLite file, through the CLI and the service."""

import json

import pytest
from click.testing import CliRunner

from appliance.cli import main
from appliance.errors import StoreError
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


def test_a_million_character_line_is_reported_by_number_and_length(uow):
    long_row = f"{N2};{'x' * 1_000_000};;Paul;1935-09-03;M;102;non"
    data = _csv([GOOD[0], long_row + "\n", GOOD[2]]).encode()
    report = import_residents(uow, data, actor="cli:test")
    assert (report.created, report.rejected) == (2, 1)
    (error,) = report.errors
    assert error.line == 3 and f"a line of {len(long_row)} characters" in error.reason
    assert "more than the 16384" in error.reason and "xxx" not in str(error)


def test_a_nir_twice_in_one_import_is_refused_the_second_time(uow):
    report = import_residents(uow, _csv([GOOD[0], GOOD[1], GOOD[0]]).encode(),
                              actor="cli:test")
    assert (report.created, report.rejected) == (2, 1)
    assert str(report.errors[0]) == "line 4, column nir: same NIR as line 2"


def test_the_errors_listed_are_bounded_the_others_counted(uow, tmp_path):
    rows = [f"bad{i};X;;Y;1940-01-15;F;1;non\n" for i in range(1500)]
    path = tmp_path / "bad.csv"
    path.write_text(_csv(GOOD + rows), "utf-8")
    report = import_residents(uow, path, actor="cli:test")
    assert report.created == 3 and report.rejected == 1500
    assert len(report.errors) == 1000 and report.omitted_errors == 500


@pytest.mark.parametrize("column,value", [("nom", "MAR\x1b[2JTIN"), ("prenoms", "Jeanne\x07"),
                                          ("chambre", "10\u202e2"), ("nom_usage", "DU\x00PONT"),
                                          ("nom", "MAR\tTIN"), ("chambre", "1" * 31)])
def test_control_and_bidi_characters_are_refused_naming_the_column(uow, column, value):
    row = dict(zip(HEADER.strip().split(";"), GOOD[1].strip().split(";"), strict=True))
    row[column] = value
    report = import_residents(uow, _csv([GOOD[0], ";".join(row.values()) + "\n"]).encode(),
                              actor="cli:test")
    assert (report.created, report.rejected) == (1, 1)
    (error,) = report.errors
    assert (error.line, error.column) == (3, column)
    assert ("control or bidirectional" in error.reason and "U+" in error.reason) \
        or "at most 30 characters" in error.reason
    assert uow.residents.get(N2) is None


def test_a_stored_resident_holding_a_tab_still_loads(uow, store):
    """The refusal is at the door: a row stored before it (here written as an older
    version would have) loads, is found, and is listed."""
    import_residents(uow, _csv(GOOD).encode(), actor="cli:test")
    store.execute("UPDATE residents SET room = ?, first_names = ? WHERE ins = ?",
                  ["Aile\tB " + "2" * 40, "Jeanne\x1bMarie", N1])
    loaded = uow.residents.get(N1)
    assert loaded is not None and loaded.first_names == "Jeanne\x1bMarie"
    assert [r.ins.value for r in search(uow, "MARTIN")] == [N1]


def test_an_import_that_fails_midway_leaves_nothing(uow, store):
    """One unit of work for the file: the rows and the audit entry land together or not
    at all (a trigger fails the third row as a full disk would: nothing is half-imported)."""
    before = uow.audit.verify()
    store.execute("CREATE TRIGGER no_third BEFORE INSERT ON residents"
                  f" WHEN NEW.ins = '{N3}' BEGIN SELECT RAISE(ABORT, 'disk full'); END")
    with pytest.raises(StoreError, match="disk full"):
        import_residents(uow, _csv(GOOD).encode(), actor="cli:test")
    assert uow.residents.search(active_only=False) == []
    assert uow.audit.verify() == before
