"""An appliance upgraded from the previous version keeps prescribing: its referential file
(schema 1: the same BDPM and LPP tables, older search tables) is upgraded by the kiosk's
start or the first search, atomically, from its own rows, and ``ordo doctor`` says so
until then.

``tests/data/referential_schema1.sqlite.gz`` is the file the previous version of Ordo
wrote from ``tests/data/bdpm_search`` (and two LPP codes): its BDPM import, then its
device import, unchanged."""

from __future__ import annotations

import gzip
import os
import sqlite3
from pathlib import Path

import pytest

from appliance.bootstrap import bootstrap
from appliance.errors import StoreError
from appliance.ops.doctor import FAIL, OK, WARN, run_doctor
from appliance.services.referential import (
    import_bdpm,
    import_devices,
    open_referential,
    read_bdpm_source,
)
from appliance.store.referential import Referential
from appliance.store.referential.bdpm import parse_bdpm
from appliance.store.referential.build import (
    SCHEMA_VERSION,
    drug_documents,
    referential_path,
    stored_bdpm,
)
from tests.integration.test_ops_helpers import settings_for

pytestmark = pytest.mark.integration

DATA = Path(__file__).resolve().parents[1] / "data"
SCHEMA1 = DATA / "referential_schema1.sqlite.gz"
BDPM = DATA / "bdpm_search"
AMOXICILLINE_1G = "67385172"  # AMOXICILLINE BIOGARAN 1 g, comprimé dispersible


def install_schema1(data_dir: Path) -> Path:
    """The previous version's referential file in ``data_dir``, as it left it."""
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = referential_path(data_dir)
    path.write_bytes(gzip.decompress(SCHEMA1.read_bytes()))
    path.chmod(0o600)
    return path


def meta(path: Path) -> dict[str, str]:
    conn = sqlite3.connect(path)
    try:
        return dict(conn.execute("SELECT key, value FROM meta"))
    finally:
        conn.close()


def rows(path: Path, sql: str) -> list[tuple]:
    conn = sqlite3.connect(path)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


def test_the_stored_rows_give_the_same_search_documents_as_the_parsed_files(tmp_path) -> None:
    import_bdpm(tmp_path, BDPM)
    parsed = parse_bdpm({name: f.data for name, f in read_bdpm_source(BDPM).items()})
    conn = sqlite3.connect(referential_path(tmp_path))
    try:
        assert drug_documents(stored_bdpm(conn)) == drug_documents(parsed)
    finally:
        conn.close()


def test_the_first_search_upgrades_a_schema1_file_to_what_an_import_builds(tmp_path) -> None:
    path = install_schema1(tmp_path / "old")
    before = meta(path)
    assert before["schema_version"] == "1"
    ref = Referential(path)
    try:
        # the forgiving search at once: a typo, a glued unit
        assert ref.search("amoxiciline 1g")[0].cis == AMOXICILLINE_1G
        assert ref.search_devices("fauteuil")[0].code == "1234567"
    finally:
        ref.close()
    after = meta(path)
    assert after["schema_version"] == SCHEMA_VERSION and after["upgraded_from_schema"] == "1"
    for key in ("bdpm_date", "bdpm_imported_at", "bdpm_sha256", "bdpm_source",
                "devices_sha256", "devices_imported_at"):
        assert after[key] == before[key], key
    assert os.stat(path).st_mode & 0o777 == 0o600
    # the same search documents and vocabulary as an import of the same files
    fresh = referential_path(tmp_path / "fresh")
    import_bdpm(fresh.parent, BDPM, referential_date="2022-06-03")
    for sql in ("SELECT * FROM drug_doc ORDER BY id", "SELECT * FROM drug_doc_vocab",
                "SELECT * FROM drug_doc_facet", "SELECT * FROM specialty",
                "SELECT * FROM presentation", "SELECT * FROM composition ORDER BY rowid"):
        assert rows(path, sql) == rows(fresh, sql), sql
    # the same files imported again: nothing to do
    assert import_bdpm(path.parent, BDPM).unchanged


def test_a_device_import_on_a_schema1_file_rebuilds_the_drugs(tmp_path) -> None:
    path = install_schema1(tmp_path)
    lpp = tmp_path / "lpp.csv"
    lpp.write_bytes(b"CODE_LPP;L_CODE_LPP\r\n1101021;BAS DE CONTENTION CLASSE 2\r\n")
    report = import_devices(tmp_path, lpp)
    assert report.counts["presentation"] == 182 and report.counts["device"] == 1
    assert meta(path)["schema_version"] == SCHEMA_VERSION
    ref = open_referential(tmp_path)
    try:
        assert ref.search("amoxiciline 1g")[0].cis == AMOXICILLINE_1G
    finally:
        ref.close()


def test_an_upgrade_that_cannot_be_done_leaves_the_file_and_says_why_once(tmp_path) -> None:
    path = install_schema1(tmp_path)
    original = path.read_bytes()
    blocker = path.with_name(path.name + ".lock")
    blocker.mkdir()  # the import lock cannot be taken: no upgrade
    ref = Referential(path)
    try:
        with pytest.raises(StoreError, match="ordo drugs import") as first:
            ref.search("doliprane")
        assert "version précédente" in str(first.value)
        blocker.rmdir()
        # the same file is not tried again at each keystroke: the same answer
        with pytest.raises(StoreError, match="ordo drugs import"):
            ref.search("dolipran")
        assert path.read_bytes() == original
        assert ref.info().counts["presentation"] == 182  # what it holds is still shown
    finally:
        ref.close()
    again = Referential(path)  # a new process tries again, and succeeds
    try:
        assert again.search("doliprane 1000mg")[0].name.startswith("DOLIPRANE 1000 mg")
    finally:
        again.close()


def test_the_doctor_says_a_reimport_would_improve_the_search_until_upgraded(tmp_path) -> None:
    settings = settings_for(tmp_path)
    path = install_schema1(settings.data_dir)
    check = run_doctor(settings).get("referential")
    assert check.status == WARN and "schema 1" in check.detail, check
    assert "ordo drugs import" in check.hint
    Referential(path).warm_up()
    assert run_doctor(settings).get("referential").status in (OK, WARN)
    assert "schema" not in run_doctor(settings).get("referential").detail
    conn = sqlite3.connect(path)  # a file of a schema this Ordo cannot read
    conn.execute("UPDATE meta SET value = '9' WHERE key = 'schema_version'")
    conn.commit()
    conn.close()
    check = run_doctor(settings).get("referential")
    assert check.status == FAIL and "schema 9" in check.detail and "ordo drugs import" in check.hint


def test_the_kiosk_start_upgrades_the_referential_and_loads_its_vocabulary(tmp_path) -> None:
    from appliance.commands.kiosk import build_context

    settings = settings_for(tmp_path)
    path = install_schema1(settings.data_dir)
    app = bootstrap(settings)
    ctx, parts = build_context(app, watcher=False, printer=False, console=False)
    try:
        ctx.warm_up(ctx)
        assert parts.referential_loader is not None
        parts.referential_loader.join(timeout=60)
        assert meta(path)["schema_version"] == SCHEMA_VERSION
        assert ctx.referential.vocabulary().warm  # the first typo does not build it
        assert ctx.referential.search("amoxiciline")[0].name.startswith("AMOXICILLINE")
    finally:
        parts.close()
        app.close()


def test_the_kiosk_start_without_a_referential_still_starts(tmp_path) -> None:
    from appliance.commands.kiosk import build_context

    app = bootstrap(settings_for(tmp_path))
    ctx, parts = build_context(app, watcher=False, printer=False, console=False)
    try:
        ctx.warm_up(ctx)
        parts.referential_loader.join(timeout=60)
        with pytest.raises(StoreError, match="ordo drugs import"):
            ctx.referential.search("doliprane")
    finally:
        parts.close()
        app.close()
