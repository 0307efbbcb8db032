"""What the kiosk defers past its first frame: ``Once`` (loaded by the first caller, from any
thread) and python-escpos's capabilities cache directory."""

from __future__ import annotations

import os
import threading

import pytest

from appliance.bootstrap import Once
from drivers.printer import escpos_cache_dir


def test_once_builds_on_the_first_call_only_even_from_many_threads():
    calls = []
    gate = threading.Event()

    def build() -> object:
        gate.wait(5)
        calls.append(1)
        return object()

    get = Once(build)
    results = []
    threads = [threading.Thread(target=lambda: results.append(get())) for _ in range(8)]
    for thread in threads:
        thread.start()
    gate.set()
    for thread in threads:
        thread.join(5)
    assert len(calls) == 1
    assert len(results) == 8 and all(r is results[0] for r in results)
    assert get() is results[0]


def test_once_does_not_remember_a_failure():
    attempts = []

    def build() -> str:
        attempts.append(1)
        if len(attempts) == 1:
            raise OSError("not yet")
        return "ready"

    get = Once(build)
    with pytest.raises(OSError):
        get()
    assert get() == "ready"
    assert get() == "ready"
    assert len(attempts) == 2


def test_escpos_cache_is_a_private_directory_under_the_systemd_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("CACHE_DIRECTORY", str(tmp_path / "cache"))
    target = escpos_cache_dir()
    assert target == tmp_path / "cache" / "escpos"
    assert target.is_dir() and target.stat().st_mode & 0o777 == 0o700


def test_escpos_cache_falls_back_to_xdg_then_home(tmp_path, monkeypatch):
    monkeypatch.delenv("CACHE_DIRECTORY", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert escpos_cache_dir() == tmp_path / "xdg" / "ordo" / "escpos"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert escpos_cache_dir() == tmp_path / "home" / ".cache" / "ordo" / "escpos"


def test_escpos_cache_refuses_a_directory_others_can_write(tmp_path, monkeypatch):
    shared = tmp_path / "shared" / "escpos"
    shared.mkdir(parents=True)
    os.chmod(shared, 0o777)
    monkeypatch.setenv("CACHE_DIRECTORY", str(tmp_path / "shared"))
    assert escpos_cache_dir() is None  # python-escpos unpickles what it finds there


def test_escpos_cache_unusable_location_is_none(tmp_path, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    monkeypatch.setenv("CACHE_DIRECTORY", str(blocker))
    assert escpos_cache_dir() is None


def test_importing_the_printer_drivers_changes_nothing_until_asked(tmp_path):
    import subprocess
    import sys

    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(tmp_path / "home")}
    code = ("import os, drivers.printer, drivers.printer.status\n"
            "print(os.environ.get('ESCPOS_CAPABILITIES_PICKLE_DIR'))\n"
            "drivers.printer.use_escpos_cache()\n"
            "print(os.environ.get('ESCPOS_CAPABILITIES_PICKLE_DIR'))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, env=env).stdout.split()
    assert out == ["None", str(tmp_path / "home" / ".cache" / "ordo" / "escpos")]
