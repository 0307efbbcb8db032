"""``ordo doctor`` against real parts: nothing running, a TCP printer stand-in answering
DLE EOT, an HTTPS registry requiring a client certificate, a real store whose audit chain
is damaged, a referential file of a given date.

The "nothing running" test runs the doctor in a subprocess with ``PCSCLITE_CSOCK_NAME``
pointing at a socket that does not exist (libpcsclite reads that variable), so that it
does not see the pcscd other tests may run on this machine."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

from appliance.cli import main
from appliance.ops.doctor import FAIL, OK, WARN, run_doctor
from appliance.store import audit, open_store
from tests.integration.test_ops_helpers import (
    make_pki,
    ops_env,
    printer_stand_in,
    registry_stand_in,
    settings_for,
)

pytestmark = pytest.mark.integration


def _checks(payload: dict) -> dict[str, dict]:
    return {c["name"]: c for c in payload["checks"]}


def test_with_nothing_running_the_doctor_fails_with_the_right_checks_and_hints(tmp_path):
    env = {**os.environ, **ops_env(tmp_path),
           "PCSCLITE_CSOCK_NAME": str(tmp_path / "no-pcscd.comm"),
           "ORDO_DATA_DIR": str(tmp_path / "data")}
    env.pop("ORDO_CONFIG", None)
    ordo = str(Path(sys.executable).parent / "ordo")
    result = subprocess.run([ordo, "doctor", "--json"],
                            capture_output=True, text=True, env=env, timeout=60, check=False)
    assert result.returncode == 1, result.stderr
    checks = _checks(json.loads(result.stdout))
    expected_failures = {
        "config": "establishment.finess",
        "pcscd": "pcscd",
        "card": "pcscd",
        "printer": "printer",
        "registry": "network",
        "database": "restore a backup",
        "audit": "restore a backup",
        "referential": "ordo drugs import",
    }
    for name, hint_word in expected_failures.items():
        assert checks[name]["status"] == FAIL, (name, checks[name])
        assert checks[name]["hint"], name
        assert hint_word in (checks[name]["detail"] + checks[name]["hint"]), checks[name]
    assert "Connection refused" in checks["printer"]["detail"]
    assert checks["backup"]["status"] == WARN
    assert "ordo-backup.timer" in checks["backup"]["hint"]
    assert checks["disk"]["status"] == OK
    assert checks["clock"]["status"] == OK  # after the release date, nothing to compare with


def test_text_output_has_one_line_per_check_with_its_hint(tmp_path):
    result = CliRunner().invoke(main, ["--data-dir", str(tmp_path / "data"), "doctor"],
                                env=ops_env(tmp_path))
    assert result.exit_code == 1
    lines = result.stdout.splitlines()
    printer = next(line for line in lines if line.split()[1:2] == ["printer"])
    assert printer.startswith("FAIL") and "->" in printer
    assert lines[-1].endswith("warning(s)") and "failed" in lines[-1]


@pytest.mark.parametrize(("byte", "status", "words"), [
    (0x12, OK, "paper present"),
    (0x1E, WARN, "nearly empty"),
    (0x72, FAIL, "no paper"),
])
def test_printer_check_reads_the_paper_sensor_of_a_tcp_printer(tmp_path, byte, status, words):
    with printer_stand_in(byte) as printer:
        result = CliRunner().invoke(
            main, ["--data-dir", str(tmp_path / "data"), "doctor", "--json"],
            env=ops_env(tmp_path, ORDO_PRINTER_URI=f"tcp://127.0.0.1:{printer.port}"))
    check = _checks(json.loads(result.stdout))["printer"]
    assert check["status"] == status, check
    assert words in check["detail"]
    assert bytes(printer.received) == b"\x10\x04\x04"


def test_a_printer_answering_something_else_than_esc_pos_fails(tmp_path):
    with printer_stand_in(0xFF) as printer:
        settings = settings_for(tmp_path, ORDO_PRINTER_URI=f"tcp://127.0.0.1:{printer.port}")
        check = run_doctor(settings).get("printer")
    assert check.status == FAIL and "not an ESC/POS printer" in check.detail


def _store_with_entries(settings, n=5):
    store = open_store(settings.db_path)
    for i in range(n):
        audit.append(store, actor="test", action="test.event", subject=str(i))
    return store


def test_a_damaged_audit_chain_fails_the_audit_check(tmp_path):
    settings = settings_for(tmp_path)
    store = _store_with_entries(settings)
    assert run_doctor(settings).get("audit").status == OK
    store.conn.execute("DROP TRIGGER audit_no_update")
    store.conn.execute("UPDATE audit SET details = '{\"x\": 1}' WHERE seq = 3")
    store.close()
    check = run_doctor(settings).get("audit")
    assert check.status == FAIL
    assert "entry 3" in check.detail and "modified" in check.detail
    assert "restore" in check.hint


def test_a_chain_cut_without_a_retention_record_fails(tmp_path):
    settings = settings_for(tmp_path)
    store = _store_with_entries(settings)
    first_kept = store.query("SELECT prev_hash FROM audit WHERE seq = 3")[0]["prev_hash"]
    store.conn.execute("DROP TRIGGER audit_no_delete")
    store.conn.execute("DELETE FROM audit WHERE seq < 3")
    store.conn.execute("INSERT INTO meta VALUES ('audit.anchor_seq', '3'), "
                       "('audit.anchor_prev', ?)", [first_kept])
    store.close()
    check = run_doctor(settings).get("audit")
    assert check.status == FAIL and "no retention run recorded" in check.detail


def test_a_corrupted_database_file_fails_the_integrity_check(tmp_path):
    settings = settings_for(tmp_path)
    store = _store_with_entries(settings, 200)
    store.conn.execute("CREATE INDEX audit_actor ON audit (actor, details)")
    store.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    store.close()
    conn = sqlite3.connect(settings.db_path)
    root = conn.execute("SELECT rootpage FROM sqlite_master WHERE name = 'audit_actor'")
    page = root.fetchone()[0]
    size = conn.execute("PRAGMA page_size").fetchone()[0]
    conn.close()
    with settings.db_path.open("r+b") as raw:  # scribble over the index's root page
        raw.seek((page - 1) * size + 200)
        raw.write(b"\x55" * 1000)
    check = run_doctor(settings).get("database")
    assert check.status == FAIL and "integrity check" in check.detail


def test_a_file_that_is_not_a_database_fails_with_the_restore_hint(tmp_path):
    settings = settings_for(tmp_path)
    settings.data_dir.mkdir(parents=True)
    settings.db_path.write_bytes(b"\x00garbage" * 500)
    report = run_doctor(settings)
    assert report.get("database").status == FAIL
    assert "not a usable database" in report.get("database").detail
    assert "ordo restore --force" in report.get("database").hint
    assert report.get("audit").status == FAIL


def test_registry_over_tls_with_the_client_certificate(tmp_path):
    pki = make_pki(tmp_path / "pki")
    with registry_stand_in(pki) as url:
        settings = settings_for(tmp_path, ORDO_REGISTRY_URL=url,
                                ORDO_REGISTRY_CA_FILE=str(pki.ca),
                                ORDO_REGISTRY_CLIENT_CERT=str(pki.client_cert),
                                ORDO_REGISTRY_CLIENT_KEY=str(pki.client_key))
        report = run_doctor(settings)
        without_cert = run_doctor(settings_for(tmp_path, ORDO_REGISTRY_URL=url,
                                               ORDO_REGISTRY_CA_FILE=str(pki.ca)))
        untrusted = run_doctor(settings_for(tmp_path, ORDO_REGISTRY_URL=url))
    registry = report.get("registry")
    assert registry.status == OK, registry
    assert "TLSv1" in registry.detail and "HTTP 200" in registry.detail
    assert report.get("clock").status == OK and "registry" in report.get("clock").detail
    assert without_cert.get("registry").status == FAIL
    assert "TLS" in without_cert.get("registry").detail
    assert untrusted.get("registry").status == FAIL
    assert "not trusted" in untrusted.get("registry").detail
    assert "ca_file" in untrusted.get("registry").hint


@pytest.mark.parametrize(("offset", "status"), [(timedelta(minutes=5), WARN),
                                                (timedelta(hours=-2), FAIL)])
def test_clock_far_from_the_registry_date(tmp_path, offset, status):
    pki = make_pki(tmp_path / "pki")
    with registry_stand_in(pki, clock_offset=offset) as url:
        settings = settings_for(tmp_path, ORDO_REGISTRY_URL=url,
                                ORDO_REGISTRY_CA_FILE=str(pki.ca),
                                ORDO_REGISTRY_CLIENT_CERT=str(pki.client_cert),
                                ORDO_REGISTRY_CLIENT_KEY=str(pki.client_key))
        check = run_doctor(settings).get("clock")
    assert check.status == status, check
    assert ("ahead of" if offset < timedelta(0) else "behind") in check.detail
    assert "timedatectl" in check.hint


def test_clock_before_the_release_or_the_newest_audit_entry(tmp_path):
    settings = settings_for(tmp_path)
    _store_with_entries(settings, 1).close()
    assert run_doctor(settings, now=datetime(2020, 1, 1, tzinfo=UTC)).get("clock").status \
        == FAIL
    store = open_store(settings.db_path)
    audit.append(store, actor="test", action="test.future",
                 at=datetime.now(UTC) + timedelta(days=3))
    store.close()
    check = run_doctor(settings).get("clock")
    assert check.status == WARN and "newest audit entry" in check.detail


def _referential(path: Path, bdpm_date: str | None) -> None:
    """A referential file with its date and as many rows as a whole BDPM."""
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
    if bdpm_date:
        conn.execute("INSERT INTO meta VALUES ('bdpm_date', ?)", [bdpm_date])
    for table in ("specialty", "presentation"):
        conn.execute(f"CREATE TABLE {table} (n INTEGER)")
        conn.execute(f"WITH RECURSIVE c(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM c"
                     f" WHERE n < 20000) INSERT INTO {table} SELECT n FROM c")
    conn.commit()
    conn.close()


def test_referential_age_from_its_stored_date_or_the_file_time(tmp_path):
    settings = settings_for(tmp_path)
    path = settings.data_dir / "referential.sqlite"
    today = datetime.now(UTC).date()
    _referential(path, (today - timedelta(days=60)).isoformat())
    old = run_doctor(settings).get("referential")
    assert old.status == WARN and "60 days old" in old.detail and "bdpm_date" in old.detail
    path.unlink()
    _referential(path, None)
    fresh = run_doctor(settings).get("referential")
    assert fresh.status == OK and "file modification time" in fresh.detail


@pytest.mark.pcscd
def test_pcscd_check_talks_to_the_real_daemon_when_it_runs(tmp_path):
    if not Path("/run/pcscd/pcscd.comm").exists():
        pytest.skip("no pcscd on this machine")
    check = run_doctor(settings_for(tmp_path)).get("pcscd")
    assert "not reachable" not in check.detail, check
    assert check.status == OK or "no card reader" in check.detail, check


def test_a_dropped_audit_trigger_fails_the_audit_check_until_restored(tmp_path):
    settings = settings_for(tmp_path)
    store = _store_with_entries(settings)
    assert "append-only triggers intact" in run_doctor(settings).get("audit").detail
    store.conn.execute("DROP TRIGGER audit_no_delete")
    store.close()
    check = run_doctor(settings).get("audit")
    assert check.status == FAIL and "audit_no_delete is missing" in check.detail
    assert "ordo audit restore-guards" in check.hint
    store = open_store(settings.db_path)  # opening the store (migrations) does not hide it
    assert run_doctor(settings).get("audit").status == FAIL
    with store.write():
        audit.restore_guards(store, actor="cli:test")
    store.close()
    assert run_doctor(settings).get("audit").status == OK
