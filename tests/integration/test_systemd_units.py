"""The systemd units: ``systemd-analyze verify`` passes on each, their hardening is what
the appliance promises, and ``systemd-analyze security`` rates them.

How: ``ordo install`` writes the units into a staging root (``tmp_path``), with the
``usr/local/bin/ordo`` symlink pointing at ``/opt/ordo/.venv/bin/ordo``; the test puts a
stub executable there (inside the root) and copies the host's ``/usr/lib/systemd/system``
next to it so that ``sysinit.target``, ``network-online.target``, ``pcscd.socket``... are
found. ``systemd-analyze verify --root=<staging root>`` then resolves every path inside that
root, including ``ExecStart=``, which must exist and be executable for verify to pass.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from appliance.ops.install import UNIT_FILES, UNITS_DIR, install

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze"),
]
EXE = "/opt/ordo/.venv/bin/ordo"
HOST_UNITS = Path("/usr/lib/systemd/system")


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("root")
    install(root, executable=Path(EXE))
    stub = root / EXE.lstrip("/")
    stub.parent.mkdir(parents=True)
    stub.write_text("#!/bin/sh\nexit 0\n")
    stub.chmod(0o755)
    shutil.copytree(HOST_UNITS, root / "usr/lib/systemd/system", symlinks=True)
    return root


def _verify(root: Path, *units: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["systemd-analyze", "verify", f"--root={root}", "--man=no",
         *(f"/etc/systemd/system/{u}" for u in units)],
        capture_output=True, text=True, check=False, cwd=root)


@pytest.mark.parametrize("unit", UNIT_FILES)
def test_systemd_analyze_verify_passes(root, unit):
    result = _verify(root, unit)
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip() == "", result.stderr  # not even a warning


def test_verify_catches_a_missing_executable_and_an_unknown_key(root, tmp_path):
    broken = root / "etc/systemd/system/ordo-broken.service"
    text = (UNITS_DIR / "ordo-sync.service").read_text()
    broken.write_text(text.replace("/usr/local/bin/ordo", "/usr/local/bin/no-such-ordo")
                      .replace("WatchdogSec=", "WatchdogSecs="))
    try:
        result = _verify(root, "ordo-broken.service")
    finally:
        broken.unlink()
    assert result.returncode != 0
    assert "not executable" in result.stderr and "WatchdogSecs" in result.stderr


def _directives(unit: str) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for line in (UNITS_DIR / unit).read_text().splitlines():
        match = re.match(r"(\w+)=(.*)", line)
        if match:
            found.setdefault(match.group(1), []).append(match.group(2))
    return found


@pytest.mark.parametrize("unit", [u for u in UNIT_FILES if u.endswith(".service")])
def test_services_are_hardened(unit):
    d = _directives(unit)
    assert d["User"] == ["ordo"]
    assert d["ProtectSystem"] == ["strict"]
    assert d["ReadWritePaths"] == ["/var/lib/ordo"]
    for key in ("NoNewPrivileges", "PrivateTmp", "ProtectHome", "ProtectKernelTunables",
                "ProtectKernelModules", "ProtectKernelLogs", "ProtectControlGroups"):
        assert d[key] == ["yes"], key
    assert d["CapabilityBoundingSet"] == [""]
    assert "ORDO_DATA_DIR=/var/lib/ordo ORDO_CONFIG=/etc/ordo/ordo.toml" in d["Environment"]
    assert all(cmd.startswith("/usr/local/bin/ordo ") for cmd in d["ExecStart"])


def test_each_unit_does_its_job():
    kiosk, sync = _directives("ordo-kiosk.service"), _directives("ordo-sync.service")
    backup, timer = _directives("ordo-backup.service"), _directives("ordo-backup.timer")
    assert kiosk["ExecStart"] == ["/usr/local/bin/ordo kiosk"]
    assert kiosk["TTYPath"] == ["/dev/tty1"] and kiosk["StandardInput"] == ["tty"]
    assert kiosk["Restart"] == ["always"] and kiosk["Conflicts"] == ["getty@tty1.service"]
    assert "AF_UNIX" in kiosk["RestrictAddressFamilies"][0]
    assert sync["Type"] == ["notify"] and sync["Restart"] == ["on-failure"]
    assert sync["ExecStart"] == ["/usr/local/bin/ordo sync run"] and sync["WatchdogSec"]
    assert "network-online.target" in " ".join(sync["After"] + sync["Wants"])
    assert "pcscd" in " ".join(sync["After"])
    assert backup["Type"] == ["oneshot"] and backup["PrivateNetwork"] == ["yes"]
    assert backup["ExecStart"][0].startswith("/usr/local/bin/ordo backup ")
    assert timer["Persistent"] == ["true"] and timer["OnCalendar"] == ["*-*-* 02:30:00"]


@pytest.mark.parametrize("unit", [u for u in UNIT_FILES if u.endswith(".service")])
def test_security_exposure_stays_low(root, unit):
    result = subprocess.run(
        ["systemd-analyze", "security", "--offline=true", f"--root={root}",
         f"/etc/systemd/system/{unit}"], capture_output=True, text=True, check=False, cwd=root)
    match = re.search(r"Overall exposure level for \S+: (\d+\.\d)", result.stdout)
    assert match, result.stdout + result.stderr
    assert float(match.group(1)) <= 2.0, result.stdout


# The kiosk peaks at about 75 MB and the sync service at about 50 MB (``python -m
# bench.memory``); a backup holds one 1 MiB chunk at a time. A runaway (an answer read
# whole, a thread per request) is killed by the kernel and restarted by systemd instead of
# taking the appliance down with it.
LIMITS = {"ordo-kiosk.service": ("384M", "64"), "ordo-sync.service": ("256M", "32"),
          "ordo-backup.service": ("512M", "16")}


@pytest.mark.parametrize("unit", sorted(LIMITS))
def test_memory_and_tasks_are_capped(unit):
    d = _directives(unit)
    assert (d.get("MemoryMax"), d.get("TasksMax")) == ([LIMITS[unit][0]], [LIMITS[unit][1]])
    assert d.get("MemorySwapMax") == ["0"]  # the cap is not escaped through swap
