"""Encrypted backups of a real store while another process writes, and restores that
verify, refuse to go back in time, keep prescription IDs unique and are audited.

Measure (backup time and size for N prescriptions)::

    .venv/bin/python -m tests.integration.test_ops_backup 10000
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from appliance.cli import main
from appliance.domain.prescription_id import PrescriptionIdGenerator, id_timestamp_ms
from appliance.errors import ConfigError, StoreError
from appliance.ops import backup as backups
from appliance.store import audit, open_store
from tests.integration.test_ops_helpers import (
    add_prescriptions,
    ops_env,
    settings_for,
    write_key,
)

pytestmark = pytest.mark.integration

WRITER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from appliance.store import audit, open_store
    store = open_store(sys.argv[1])
    stop = Path(sys.argv[2])
    print("ready", flush=True)
    while not stop.exists():
        audit.append(store, actor="writer", action="test.write",
                     details={"t": time.monotonic_ns()})
    store.close()
""")


def _commits(store, after_ns: int, before_ns: int) -> int:
    rows = store.query("SELECT details FROM audit WHERE action = 'test.write'")
    stamps = [json.loads(r["details"])["t"] for r in rows]
    return sum(after_ns <= s <= before_ns for s in stamps)


def test_backup_while_another_process_writes_then_restore_elsewhere(tmp_path):
    settings = settings_for(tmp_path)
    store = open_store(settings.db_path)
    add_prescriptions(store, 600)
    stop = tmp_path / "stop"
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(settings.db_path), str(stop)],
                              stdout=subprocess.PIPE, text=True, cwd=Path.cwd())
    try:
        assert writer.stdout.readline().strip() == "ready"
        time.sleep(0.2)
        started = time.monotonic_ns()
        result = backups.backup(settings, tmp_path / "out.ordobak")
        finished = time.monotonic_ns()
        time.sleep(0.1)
    finally:
        stop.touch()
        writer.wait(timeout=30)
    assert writer.returncode == 0
    # The writer kept committing while the snapshot was taken and encrypted.
    assert _commits(store, started, finished) > 0
    total_writes = store.query("SELECT count(*) AS n FROM audit WHERE action = 'test.write'")
    store.close()
    header = result.header
    assert header["format"] == 1 and header["cipher"] == "AES-256-GCM"
    assert header["audit_verified"] is True
    assert header["source"]["prescriptions"] == 600
    snapshot_seq = header["source"]["audit_seq"]
    assert 600 < snapshot_seq < 600 + total_writes[0]["n"] + 1  # a cut in the middle
    assert b"DURAND" not in result.path.read_bytes()  # encrypted

    elsewhere = settings_for(tmp_path / "box2", ORDO_SECURITY_BACKUP_KEY=str(
        tmp_path / "backup.key"))
    restored = backups.restore(elsewhere, result.path, actor="test")
    assert restored.after.prescriptions == 600
    assert restored.before.empty
    check = open_store(elsewhere.db_path)
    assert audit.verify(check) == snapshot_seq + 1  # + the restore's own entry
    last = audit.entries(check, snapshot_seq)[0]
    assert (last.action, last.actor) == ("store.restored", "test")
    assert last.details["backup_audit_seq"] == snapshot_seq
    assert check.query("PRAGMA integrity_check")[0]["integrity_check"] == "ok"
    assert (elsewhere.db_path.stat().st_mode & 0o777) == 0o600
    check.close()


@pytest.fixture
def box(tmp_path):
    settings = settings_for(tmp_path)
    store = open_store(settings.db_path)
    ids = add_prescriptions(store, 20)
    store.close()
    return settings, ids


def test_restore_refuses_to_go_back_over_newer_data_unless_forced(tmp_path, box):
    settings, _ = box
    old = backups.backup(settings, tmp_path / "old.ordobak").path
    store = open_store(settings.db_path)
    newer = add_prescriptions(store, 3, start_ms=1_800_000_000_000)
    store.close()
    with pytest.raises(StoreError, match="refusing to restore over newer data") as err:
        backups.restore(settings, old)
    assert "audit chain reaches entry" in str(err.value) and "--force" in str(err.value)

    result = backups.restore(settings, old, force=True, actor="cli:test")
    assert result.forced and result.safety_backup is not None
    assert result.safety_backup.parent == settings.data_dir / "backups"
    assert result.after.prescriptions == 20
    # The prescription-ID floor covers the newer IDs that the restore removed.
    newest_lost = max(id_timestamp_ms(pid) for pid in newer)
    store = open_store(settings.db_path)
    floor = int(store.query("SELECT value FROM meta WHERE key = ?",
                            (backups.LAST_MS_KEY,))[0]["value"])
    assert floor >= newest_lost
    generator = PrescriptionIdGenerator(clock_ms=lambda: 1_764_061_200_000)  # clock set back
    generator.last_ms = floor
    fresh = generator.new()
    assert id_timestamp_ms(fresh) > newest_lost
    assert fresh not in newer
    entry = audit.entries(store)[-1]
    assert entry.action == "store.restored" and entry.details["forced"] is True
    store.close()

    # The safety backup brings the newer data back.
    back = backups.restore(settings, result.safety_backup, force=False)
    assert back.after.prescriptions == 23


def test_restoring_the_same_backup_twice_is_allowed_once_then_refused(tmp_path, box):
    settings, _ = box
    made = backups.backup(settings, tmp_path / "b.ordobak").path
    first = backups.restore(settings, made)  # same data: not newer
    assert not first.forced and first.safety_backup is None
    with pytest.raises(StoreError, match="newer data"):  # the restore itself was audited
        backups.restore(settings, made)


def _flip(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))


def test_a_damaged_or_foreign_backup_is_refused_before_anything_changes(tmp_path, box):
    settings, _ = box
    made = backups.backup(settings, tmp_path / "b.ordobak").path
    before = settings.db_path.read_bytes()
    damaged = tmp_path / "damaged.ordobak"
    damaged.write_bytes(made.read_bytes())
    _flip(damaged, damaged.stat().st_size - 40)
    with pytest.raises(StoreError, match="fails authentication"):
        backups.restore(settings, damaged, force=True)
    truncated = tmp_path / "truncated.ordobak"
    truncated.write_bytes(made.read_bytes()[:-10])
    with pytest.raises(StoreError, match="truncated"):
        backups.restore(settings, truncated, force=True)
    other_key = settings_for(tmp_path / "other", ORDO_SECURITY_BACKUP_KEY=str(
        write_key(tmp_path / "other.key")))
    with pytest.raises(StoreError, match="encrypted with key") as err:
        backups.restore(other_key, made)
    assert made.read_bytes()[:8] == b"ORDOBAK1"
    assert backups.read_header(made.open("rb"))[0]["key_id"] in str(err.value)
    with pytest.raises(StoreError, match="not an Ordo backup"):
        backups.restore(settings, settings.db_path)
    assert settings.db_path.read_bytes() == before


def test_a_damaged_live_database_is_replaced_only_when_forced_and_kept_aside(tmp_path, box):
    settings, _ = box
    made = backups.backup(settings, tmp_path / "b.ordobak").path
    settings.db_path.write_bytes(b"SQLite format 3\x00" + b"\x13" * 8000)
    with pytest.raises(StoreError, match="damaged") as err:
        backups.restore(settings, made)
    assert "--force" in str(err.value)
    result = backups.restore(settings, made, force=True)
    assert result.safety_backup.name.startswith("ordo.sqlite.damaged-")
    assert result.safety_backup.read_bytes().startswith(b"SQLite format 3\x00\x13")
    assert result.after.prescriptions == 20
    store = open_store(settings.db_path)
    entry = audit.entries(store)[-1]
    store.close()
    assert entry.action == "store.restored" and entry.details["forced"] is True


def test_a_backup_whose_chain_was_tampered_with_before_encryption_is_refused(tmp_path, box):
    settings, _ = box
    store = open_store(settings.db_path)
    store.conn.execute("DROP TRIGGER audit_no_update")
    store.conn.execute("UPDATE audit SET actor = 'mallory' WHERE seq = 2")
    store.close()
    made = backups.backup(settings, tmp_path / "b.ordobak")
    assert made.header["audit_verified"] is False  # backed up anyway, flagged
    with pytest.raises(StoreError, match="audit chain does not verify"):
        backups.restore(settings_for(tmp_path / "clean", ORDO_SECURITY_BACKUP_KEY=str(
            tmp_path / "backup.key")), made.path)


def test_no_key_no_backup(tmp_path, box):
    _settings, _ = box
    no_key = settings_for(tmp_path, ORDO_SECURITY_BACKUP_KEY="")
    with pytest.raises(ConfigError) as err:
        backups.backup(no_key, tmp_path / "x.ordobak")
    assert err.value.key == "security.backup_key"
    bad = tmp_path / "bad.key"
    bad.write_text("not a key\n")
    with pytest.raises(ConfigError, match="32 random bytes"):
        backups.backup(settings_for(tmp_path, ORDO_SECURITY_BACKUP_KEY=str(bad)),
                       tmp_path / "x.ordobak")


def test_cli_backup_into_a_directory_with_rotation_then_restore(tmp_path, box):
    settings, _ = box
    env = ops_env(tmp_path)
    runner = CliRunner()
    args = ["--data-dir", str(settings.data_dir)]
    target = tmp_path / "nightly"
    target.mkdir()
    for n in range(4):
        (target / f"ordo-2026010{n}T023000Z.ordobak").write_bytes(b"old")
    result = runner.invoke(main, [*args, "backup", str(target), "--keep", "2"], env=env)
    assert result.exit_code == 0, result.output
    assert "backup written" in result.stdout and "20 prescriptions" in result.stdout
    kept = sorted(p.name for p in target.iterdir())
    assert len(kept) == 2 and kept[0] == "ordo-20260103T023000Z.ordobak"
    newest = target / kept[1]
    assert (newest.stat().st_mode & 0o777) == 0o600
    refused = runner.invoke(main, [*args, "restore", str(target / kept[0])], env=env)
    assert refused.exit_code == 4 and "not an Ordo backup" in refused.output
    ok = runner.invoke(main, [*args, "restore", str(newest)], env=env)
    assert ok.exit_code == 0, ok.output
    assert "restored" in ok.stdout and "systemctl restart" in ok.stdout


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to own files as another user")
def test_run_as_root_the_restored_files_belong_to_the_data_directory_owner(tmp_path, box):
    settings, _ = box
    made = backups.backup(settings, tmp_path / "b.ordobak").path
    other = settings_for(tmp_path / "box2", ORDO_SECURITY_BACKUP_KEY=str(tmp_path / "backup.key"))
    other.data_dir.mkdir(parents=True, mode=0o700)
    os.chown(other.data_dir, 65534, 65534)
    backups.restore(other, made)
    owned = {p.name: (p.stat().st_uid, p.stat().st_gid) for p in other.data_dir.iterdir()}
    assert owned["ordo.sqlite"] == (65534, 65534)
    assert set(owned.values()) == {(65534, 65534)}, owned


def measure(count: int) -> None:
    """Print backup and restore figures for a store of ``count`` prescriptions."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        settings = settings_for(root)
        store = open_store(settings.db_path)
        started = time.perf_counter()
        add_prescriptions(store, count)
        filled = time.perf_counter() - started
        store.close()
        db_size = settings.db_path.stat().st_size
        runs = [backups.backup(settings, root / f"b{n}.ordobak") for n in range(3)]
        best = min(r.seconds for r in runs)
        started = time.perf_counter()
        backups.restore(settings_for(root / "r", ORDO_SECURITY_BACKUP_KEY=str(
            root / "backup.key")), runs[0].path)
        restore_s = time.perf_counter() - started
        print(f"prescriptions={count} fill_s={filled:.2f} db_bytes={db_size} "
              f"backup_bytes={runs[0].size} backup_s_best_of_3={best:.3f} "
              f"backup_s_runs={','.join(f'{r.seconds:.3f}' for r in runs)} "
              f"restore_s={restore_s:.3f}")


if __name__ == "__main__":
    measure(int(sys.argv[1]) if len(sys.argv) > 1 else 10_000)


def test_two_backups_in_the_same_second_get_two_names_and_both_stay(tmp_path, box):
    """Two runs stamped with the same second (a manual backup during the nightly one)."""
    settings, _ = box
    target = tmp_path / "nightly"
    moment = backups.datetime(2026, 12, 1, 2, 30, tzinfo=backups.UTC)
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(lambda _: backups.backup(settings, target, now=moment), range(2)))
    third = backups.backup(settings, target, now=moment)
    paths = {r.path for r in results} | {third.path}
    assert len(paths) == 3
    assert sorted(p.name for p in target.iterdir()) == [
        "ordo-20261201T023000Z.ordobak", "ordo-20261201T023000Z_02.ordobak",
        "ordo-20261201T023000Z_03.ordobak"]
    assert backups.latest_backup(target).name == "ordo-20261201T023000Z_03.ordobak"
    for path in paths:  # each one whole, none overwritten by the other
        with path.open("rb") as handle:
            assert backups.read_header(handle)[0]["source"]["prescriptions"] == 20


def test_a_backup_never_overwrites_an_existing_file(tmp_path, box):
    settings, _ = box
    existing = tmp_path / "monday.ordobak"
    existing.write_bytes(b"an older backup that must stay")
    with pytest.raises(StoreError, match="already exists"):
        backups.backup(settings, existing)
    assert existing.read_bytes() == b"an older backup that must stay"
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.endswith("partial")) == []
