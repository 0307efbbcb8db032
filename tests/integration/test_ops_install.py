"""``ordo install`` into a staging root: the tree, modes and contents, idempotence, and
the sysusers/tmpfiles snippets applied by the real systemd tools to that root."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from appliance.cli import main
from appliance.config import load_settings
from appliance.ops.backup import load_key
from appliance.ops.install import UNIT_FILES, UNITS_DIR, config_template, install

pytestmark = pytest.mark.integration

EXE = Path("/opt/ordo/.venv/bin/ordo")
EXPECTED = {
    "etc/sysusers.d/ordo.conf": ("file", 0o644),
    "etc/tmpfiles.d/ordo.conf": ("file", 0o644),
    "etc/ordo": ("dir", 0o750),
    "etc/ordo/ordo.toml": ("file", 0o640),
    "etc/ordo/backup.key": ("file", 0o640),
    "var/lib/ordo": ("dir", 0o700),
    "var/lib/ordo/backups": ("dir", 0o700),
    **{f"etc/systemd/system/{name}": ("file", 0o644) for name in UNIT_FILES},
    "usr/local/bin/ordo": ("symlink", None),
}


def tree(root: Path) -> dict[str, tuple]:
    """Every path under ``root`` with its kind, mode and content (or link target)."""
    out = {}
    for path in sorted(root.rglob("*")):
        rel = str(path.relative_to(root))
        st = path.lstat()
        if path.is_symlink():
            out[rel] = ("symlink", os.readlink(path))
        elif path.is_dir():
            out[rel] = ("dir", st.st_mode & 0o7777)
        else:
            out[rel] = ("file", st.st_mode & 0o7777, path.read_bytes())
    return out


def test_install_into_a_staging_root(tmp_path):
    report = install(tmp_path, executable=EXE)
    assert not report.system
    assert {o.status for o in report.outcomes} == {"created"}
    got = tree(tmp_path)
    for rel, (kind, mode) in EXPECTED.items():
        assert got[rel][0] == kind, rel
        if mode is not None:
            assert got[rel][1] == mode, (rel, oct(got[rel][1]))
    assert got["usr/local/bin/ordo"][1] == str(EXE)
    for name in UNIT_FILES:
        assert got[f"etc/systemd/system/{name}"][2] == (UNITS_DIR / name).read_bytes()
    assert got["etc/ordo/ordo.toml"][2] == config_template().encode()
    assert b"u ordo - " in got["etc/sysusers.d/ordo.conf"][2]
    assert b"d /var/lib/ordo 0700 ordo ordo -" in got["etc/tmpfiles.d/ordo.conf"][2]
    # The template is valid, and names the key that was just made.
    settings = load_settings(config_file=tmp_path / "etc/ordo/ordo.toml", data_dir=tmp_path,
                             environ={})
    assert settings.security.backup_key == "/etc/ordo/backup.key"
    assert len(load_key(str(tmp_path / "etc/ordo/backup.key")).key) == 32
    assert any("copy it off the box" in note for note in report.notes)


def test_second_run_changes_nothing_and_an_edited_config_is_kept(tmp_path):
    install(tmp_path, executable=EXE)
    first = tree(tmp_path)
    again = install(tmp_path, executable=EXE)
    assert {o.status for o in again.outcomes} == {"unchanged"}
    assert not again.changed
    assert tree(tmp_path) == first

    config = tmp_path / "etc/ordo/ordo.toml"
    config.write_text('[establishment]\nfiness = "750712184"\n')
    config.chmod(0o644)
    unit = tmp_path / "etc/systemd/system/ordo-sync.service"
    unit.write_text("[Service]\nExecStart=/bin/false\n")
    third = {o.path: o for o in install(tmp_path, executable=EXE).outcomes}
    assert third["/etc/ordo/ordo.toml"].status == "updated"  # mode back to 0640
    assert config.read_text() == '[establishment]\nfiness = "750712184"\n'
    assert config.stat().st_mode & 0o777 == 0o640
    assert third["/etc/systemd/system/ordo-sync.service"].status == "updated"
    assert unit.read_bytes() == (UNITS_DIR / "ordo-sync.service").read_bytes()
    fourth = {o.path: o.status for o in install(tmp_path, executable=EXE).outcomes}
    assert fourth["/etc/ordo/ordo.toml"] == "kept"
    assert set(fourth.values()) == {"unchanged", "kept"}


def test_cli_install_twice(tmp_path):
    runner = CliRunner()
    args = ["--data-dir", str(tmp_path / "data"), "install", "--root", str(tmp_path / "root")]
    first = runner.invoke(main, args)
    assert first.exit_code == 0, first.output
    assert "created   /etc/ordo/ordo.toml" in first.stdout
    second = runner.invoke(main, args)
    assert second.exit_code == 0
    assert "nothing to do: already installed" in second.stdout
    assert "created" not in second.stdout


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("systemd-sysusers"),
                    reason="needs root and systemd-sysusers / systemd-tmpfiles")
def test_sysusers_and_tmpfiles_apply_to_the_staging_root(tmp_path):
    install(tmp_path, executable=EXE)
    for command in (["systemd-sysusers", f"--root={tmp_path}"],
                    ["systemd-tmpfiles", f"--root={tmp_path}", "--create"]):
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        assert result.returncode == 0, result.stderr
    passwd = (tmp_path / "etc/passwd").read_text()
    line = next(entry for entry in passwd.splitlines() if entry.startswith("ordo:"))
    uid, gid = int(line.split(":")[2]), int(line.split(":")[3])
    assert line.endswith(":/var/lib/ordo:/usr/sbin/nologin")
    for rel in ("var/lib/ordo", "var/lib/ordo/backups"):
        st = (tmp_path / rel).stat()
        assert (st.st_uid, st.st_gid, st.st_mode & 0o777) == (uid, gid, 0o700)
    for rel, mode in (("etc/ordo", 0o750), ("etc/ordo/ordo.toml", 0o640),
                      ("etc/ordo/backup.key", 0o640)):
        st = (tmp_path / rel).stat()
        assert (st.st_uid, st.st_gid, st.st_mode & 0o777) == (0, gid, mode), rel
    group = (tmp_path / "etc/group").read_text()
    assert any(g.startswith("lp:") and "ordo" in g for g in group.splitlines())


def test_installing_on_this_machine_needs_root(tmp_path, monkeypatch):
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    result = CliRunner().invoke(main, ["--data-dir", str(tmp_path), "install"])
    assert result.exit_code == 1
    assert "root privileges" in result.output and "--root DIR" in result.output
