"""The database's data directory fails under the commands: a full disk (a small tmpfs
filled to the last byte), a database file or directory made immutable (``chattr +i``), a
file that is not a database. Each command ends with one French line on stderr, exit 4 (the
"other error" status), a JSON error on stdout when ``--json`` was asked, no traceback, and
nothing half-written; ``ordo doctor`` fails the database check when it cannot be written.

Mounting a tmpfs and ``chattr +i`` need root (CI runs ``make test`` as root); elsewhere
these tests skip, naming why."""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from appliance.cli import main
from appliance.store import audit
from appliance.store.db import open_store
from appliance.tui.demo_data import demo_residents
from tests.integration.test_kiosk import kiosk_bdpm, kiosk_env, set_am
from tests.integration.test_prescribe import GOOD, write

pytestmark = pytest.mark.integration
SHARED_FIXTURES = (kiosk_bdpm, kiosk_env)  # from test_kiosk, for pytest to find them


def _root_only(what: str) -> None:
    if os.geteuid() != 0:
        pytest.skip(f"{what} needs root (CI runs make test as root)")


def fill(directory: Path) -> int:
    """Write a filler file until the file system says ENOSPC, to the last byte; returns
    its size."""
    fd = os.open(directory / "filler", os.O_CREAT | os.O_WRONLY, 0o600)
    written = 0
    try:
        for size in (1 << 16, 4096, 512, 1):
            with contextlib.suppress(OSError):
                while True:
                    written += os.write(fd, b"\0" * size)
    finally:
        os.close(fd)
    return written


@pytest.fixture
def small_disk(tmp_path):
    """A 24 MB tmpfs mounted on the test's ``data`` directory (before the data directory
    fixtures fill it), unmounted at the end."""
    _root_only("mounting a small tmpfs")
    mount = tmp_path / "data"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=24m,mode=0700", "tmpfs",
                           str(mount)], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def ordo(data_dir: Path, *args: str, stdin: str | None = None, config: Path | None = None):
    options = ["--config", str(config)] if config else []
    return CliRunner().invoke(main, [*options, "--data-dir", str(data_dir), *args],
                              input=stdin, catch_exceptions=False)


def assert_one_french_line(result, code: int = 4) -> str:
    assert result.exit_code == code, result.output
    errors = [line for line in result.stderr.splitlines() if not line.startswith("ts=")]
    assert len(errors) == 1 and errors[0].startswith("Erreur : "), result.stderr
    assert "Traceback" not in result.output and "Traceback" not in result.stderr
    return errors[0]


def test_prescribe_on_a_full_disk_fails_cleanly_and_keeps_nothing(small_disk, kiosk_env):
    env = kiosk_env
    set_am(env)
    env.vcards.insert("physician")
    draft = write(env, "good.json", GOOD)
    env.store.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    before = env.store.query("SELECT count(*) AS n FROM prescriptions")[0]["n"]
    assert fill(small_disk) > 0
    result = ordo(env.data_dir, "prescribe", draft, "--pin-stdin", "--json",
                  stdin="1234\n", config=env.data_dir / "ordo.toml")
    line = assert_one_french_line(result)
    assert "disque plein" in line
    out = json.loads(result.stdout)
    assert out["ok"] is False and out["reason"] == "store_error"
    assert "disque plein" in out["message"]

    (small_disk / "filler").unlink()                       # room again: nothing half-done
    store = open_store(env.data_dir / "ordo.sqlite")
    try:
        assert store.one("PRAGMA integrity_check") == "ok"
        assert store.one("SELECT count(*) FROM prescriptions") == before
        assert store.one("SELECT count(*) FROM outbox") == 0
        assert store.one("SELECT count(*) FROM print_jobs") == 0
        audit.verify(store)
    finally:
        store.close()
    again = ordo(env.data_dir, "prescribe", draft, "--pin-stdin", "--json", stdin="1234\n",
                 config=env.data_dir / "ordo.toml")
    assert again.exit_code == 0, again.output
    assert json.loads(again.stdout)["ok"] is True


def test_residents_import_on_a_full_disk_fails_cleanly(small_disk, tmp_path):
    data = small_disk
    store = open_store(data / "ordo.sqlite")  # kept open, as the kiosk's: side files exist
    store.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    csv = tmp_path / "residents.csv"
    rows = ["nir;nom;prenoms;date_naissance;sexe;chambre"]
    rows += [f"{r.ins.value};{r.birth_name};{r.first_names};{r.birth_date.isoformat()};"
             f"{r.sex};{r.room}" for r in demo_residents()]
    csv.write_text("\n".join(rows) + "\n", "utf-8")
    fill(data)
    result = ordo(data, "residents", "import", str(csv))
    line = assert_one_french_line(result)
    assert "disque plein" in line
    (data / "filler").unlink()
    store.close()
    assert ordo(data, "residents", "list", "--json").stdout.strip() == "[]"


@contextlib.contextmanager
def immutable(*paths: Path):
    _root_only("chattr +i")
    done = []
    try:
        for path in paths:
            made = subprocess.run(["chattr", "+i", str(path)], capture_output=True, text=True,
                                  check=False)
            if made.returncode != 0:
                pytest.skip(f"chattr +i is not possible here: {made.stderr.strip()}")
            done.append(path)
        yield
    finally:
        for path in done:
            subprocess.run(["chattr", "-i", str(path)], check=False)


@pytest.fixture
def data_with_residents(tmp_path):
    data = tmp_path / "data"
    store = open_store(data / "ordo.sqlite")
    from appliance.store.uow import SqliteUnitOfWork

    uow = SqliteUnitOfWork(store)
    with uow:
        uow.residents.upsert(demo_residents())
        uow.commit()
    store.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    store.close()
    return data


COMMANDS = [("residents", "list"), ("audit", "verify"), ("sync", "status"),
            ("residents", "list", "--json"), ("sync", "status", "--json"),
            ("print", "jobs", "--json")]


@pytest.mark.parametrize("what", ["file", "directory"])
def test_an_immutable_database_fails_every_command_in_french_and_doctor_says_so(
        data_with_residents, what):
    data = data_with_residents
    target = data / "ordo.sqlite" if what == "file" else data
    with immutable(target):
        for command in COMMANDS:
            result = ordo(data, *command)
            line = assert_one_french_line(result)
            assert "ordo.sqlite" in line
            if "--json" in command:
                out = json.loads(result.stdout)
                assert out["ok"] is False and out["reason"] == "store_error"
                assert out["message"] == line.removeprefix("Erreur : ")
        doctor = ordo(data, "doctor", "--json")
        checks = {c["name"]: c for c in json.loads(doctor.stdout)["checks"]}
    assert doctor.exit_code == 1
    assert checks["database"]["status"] == "fail"
    detail = checks["database"]["detail"]
    assert ("cannot be written" in detail or "no file can be created" in detail) and \
        "(EPERM)" in detail, detail
    assert ordo(data, "residents", "list", "--json").exit_code == 0   # usable again


def test_a_file_that_is_not_a_database(tmp_path):
    data = tmp_path / "data"
    data.mkdir(mode=0o700)
    (data / "ordo.sqlite").write_bytes(os.urandom(8192))
    for command in COMMANDS:
        result = ordo(data, *command)
        line = assert_one_french_line(result)
        assert "n'est pas une base de données" in line
        if "--json" in command:
            assert json.loads(result.stdout)["ok"] is False
    with pytest.raises(sqlite3.DatabaseError):
        sqlite3.connect(data / "ordo.sqlite").execute("SELECT * FROM sqlite_master").fetchall()
