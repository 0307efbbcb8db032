"""Lookups the kiosk makes for every prescription of a resident's file use an index (a real
SQLite file): at a million prescriptions a scan per row makes the file unusable."""

import pytest

from appliance.store import open_store
from appliance.store.migrations import applied

pytestmark = pytest.mark.integration

PRINT_JOBS_OF = ("SELECT kind, status, last_error FROM print_jobs WHERE prescription_id = ?"
                 " ORDER BY id")


def _plan(store, sql: str) -> str:
    return " | ".join(str(row[-1]) for row in store.conn.execute(f"EXPLAIN QUERY PLAN {sql}",
                                                                 ("x",)))


def _seed(store, n: int = 3) -> None:
    with store.write() as db:
        db.execute("INSERT INTO residents (ins, ins_oid, birth_name, first_names, birth_date,"
                   " sex, search_key, updated_at) VALUES ('1', 'o', 'A', 'B', '1940-01-01',"
                   " 'F', 'a b', 't')")
        for i in range(n):
            db.execute("INSERT INTO prescriptions (id, state, resident_ins, prescriber_id,"
                       " created_at, updated_at, body) VALUES (?, 'signed', '1', 'p', 't',"
                       " 't', '{}')", [f"P{i}"])
            for kind in ("duplicate", "original") if i == 1 else ("original",):
                db.execute("INSERT INTO print_jobs (prescription_id, kind, requested_by,"
                           " created_at) VALUES (?, ?, 'p', 't')", [f"P{i}", kind])


def test_print_jobs_of_a_prescription_use_the_index_in_job_order(tmp_path):
    store = open_store(tmp_path / "ordo.sqlite")
    try:
        assert "m004_print_jobs_by_prescription" in applied(store)
        plan = _plan(store, PRINT_JOBS_OF)
        assert "USING INDEX print_jobs_prescription" in plan
        assert "TEMP B-TREE" not in plan                     # ``id`` order comes from it
        _seed(store)
        rows = store.query(PRINT_JOBS_OF, ("P1",))
        assert [r["kind"] for r in rows] == ["duplicate", "original"]
    finally:
        store.close()


@pytest.mark.parametrize("sql", ["FILE_REGISTRY_SQL", "TRAIL_REGISTRY_SQL", "TRAIL_PRINTS_SQL",
                                 "FILE_DISPENSATIONS_SQL", "HISTORY_SQL", "TREATMENT_SQL"])
def test_every_query_of_a_residents_file_searches_an_index(tmp_path, sql):
    from appliance.store import views

    store = open_store(tmp_path / "ordo.sqlite")
    try:
        _seed(store)
        query = getattr(views, sql)
        plan = " | ".join(str(row[-1]) for row in store.conn.execute(
            f"EXPLAIN QUERY PLAN {query}", ("x",) * query.count("?")))
        assert "SCAN" not in plan.replace("SCAN CONSTANT", ""), plan
        assert "INDEX" in plan, plan
    finally:
        store.close()


def test_a_store_made_before_the_index_gets_it_at_start_up(tmp_path):
    path = tmp_path / "ordo.sqlite"
    old = open_store(path)
    _seed(old)
    with old.write() as db:       # as a store of the version before m004 left it
        db.execute("DROP INDEX print_jobs_prescription")
        db.execute("DELETE FROM _migrations WHERE name = 'm004_print_jobs_by_prescription'")
    assert "SCAN print_jobs" in _plan(old, PRINT_JOBS_OF)
    old.close()

    store = open_store(path)
    try:
        assert "USING INDEX print_jobs_prescription" in _plan(store, PRINT_JOBS_OF)
        assert len(store.query(PRINT_JOBS_OF, ("P1",))) == 2
    finally:
        store.close()
