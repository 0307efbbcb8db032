"""``ordo demo``: headless, one prescription end to end; and the real command in tmux, read
from the screen. Also a kiosk killed with SIGKILL in the middle of a prescription gives the
draft back when it starts again. Everything the demo started must be gone afterwards."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from appliance.cli import main
from appliance.services import prescribing
from tests.integration.test_kiosk import kiosk_bdpm, kiosk_env, set_am

pytestmark = pytest.mark.integration
SHARED_FIXTURES = (kiosk_bdpm, kiosk_env)  # from test_kiosk, for pytest to find them

ORDO = str(Path(sys.executable).parent / "ordo")
needs_tmux = pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")


def _reader_empty() -> bool:
    from drivers.card.pcsc import wait_for_card
    from drivers.card.virtual import vpcd_reader

    return wait_for_card(vpcd_reader(0), present=False, timeout_s=5)


def _port_closed(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


def test_demo_headless_runs_one_prescription_end_to_end(pcscd, tmp_path, monkeypatch):
    """...in a fresh temporary directory (no --dir), with a generic of the prescribed
    substance from its BDPM generic group; the pcscd that was running keeps running."""
    import tempfile

    from drivers.card.pcscd import running_pid

    before = running_pid()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    result = CliRunner().invoke(main, ["demo", "--bdpm", str(tmp_path / "absent"),
                                       "--headless", "--json"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["qr_valid"] and summary["printed"] == [1]
    assert summary["acknowledged"] == 1 and summary["substituted"]
    assert summary["substitutes"] == ["FUROSEMIDE ARROW 40 mg, comprimé sécable"]  # LASILIX
    assert summary["state"] == "partially_dispensed"
    steps = result.stderr
    assert "code PIN 1234" in steps and "VALID" in steps and "substitution (générique)" in steps
    assert "ligne 3 délivrée avec le générique FUROSEMIDE ARROW 40 mg" in steps
    [directory] = tmp_path.glob("ordo-demo-*")                # made for this run
    assert f"PNG dans {directory / 'tickets'}" in steps
    assert sorted(p.name for p in (directory / "tickets").iterdir())[:2] == [
        "job-0001-1.png", "job-0001.bin"]
    assert _reader_empty()                                   # the virtual card is gone
    assert not list((directory / "vcard").glob("slot*.pid"))
    assert before is not None and running_pid() == before   # the demo did not start it


def test_the_demo_kiosk_sees_only_its_own_reader(slot1_card, card_watch):
    """A card in another reader (a test's, a benchmark's) neither opens the demo's PIN
    screen nor shows as present on its status line."""
    from appliance.commands.demo import OneReader
    from appliance.ports import CardEventKind
    from drivers.card.virtual import vpcd_reader

    own = OneReader(card_watch, vpcd_reader(0))
    seen = []
    own.subscribe(seen.append)
    slot1_card.insert()
    assert slot1_card.reader in card_watch.cards()
    assert own.cards() == {} and own.readers() == [vpcd_reader(0)] and own.service_up
    slot1_card.pull()
    slot1_card.wait_gone()
    assert not [e for e in seen if e.kind in (CardEventKind.INSERTED, CardEventKind.REMOVED)]


TMUX = ["tmux"]


@pytest.fixture
def tmux(tmp_path):
    """A tmux server of this test alone (other test runs on the machine have theirs), kept
    up by a session of its own: a server that exits with its last session races the next
    start. Its socket is in the test's directory."""
    socket = tmp_path / "tmux.sock"
    TMUX[:] = ["tmux", "-S", str(socket)]
    subprocess.run([*TMUX, "new-session", "-d", "-s", "keeper", "sleep 900"], check=True)
    yield
    subprocess.run([*TMUX, "kill-server"], check=False)
    socket.unlink(missing_ok=True)
    TMUX[:] = ["tmux"]


def _tmux(*args: str) -> str:
    return subprocess.run([*TMUX, *args], check=True, capture_output=True,
                          text=True).stdout


def _screen(session: str) -> str:
    return _tmux("capture-pane", "-p", "-t", session)


def _wait_screen(session: str, text: str, timeout: float = 30.0) -> str:
    deadline = time.monotonic() + timeout
    while True:
        screen = _screen(session)
        if text in screen:
            return screen
        if time.monotonic() > deadline:
            raise AssertionError(f"{text!r} not on the screen:\n{screen}")
        time.sleep(0.1)


def _keys(session: str, *keys: str) -> None:
    """Type like a person: a function key is an escape sequence, give it time alone."""
    for key in keys:
        _tmux("send-keys", "-t", session, key)
        time.sleep(0.3 if len(key) > 1 else 0.05)


@needs_tmux
def test_demo_in_tmux_logs_in_and_quits_cleanly(pcscd, tmp_path, tmux):
    session = f"ordo-demo-{os.getpid()}"
    directory = tmp_path / "demo"
    command = (f"{ORDO} demo --dir {directory} --bdpm {tmp_path / 'absent'}; "
               f"echo EXIT=$?; sleep 30")
    _tmux("new-session", "-d", "-s", session, "-x", "80", "-y", "24", command)
    try:
        _wait_screen(session, "Code PIN", timeout=60)
        _wait_screen(session, "Carte de Claire DUVAL (Médecin) - 3 essai(s) de code PIN")
        _wait_screen(session, "Carte présente | Imprimante prête")
        _keys(session, "1", "2", "3", "4", "Enter")
        _wait_screen(session, "DUPONT née LEFEBVRE Marie Louise")
        screen = _wait_screen(session, "F2 Nouvelle ordonnance")
        assert "Claire DUVAL (médecin)" in screen
        assert max(len(line) for line in screen.splitlines()) <= 80
        _keys(session, "C-q")
        screen = _wait_screen(session, "EXIT=0", timeout=30)
        assert "Démonstration terminée" in screen
    finally:
        subprocess.run([*TMUX, "kill-session", "-t", session], check=False)
    assert _reader_empty()


@needs_tmux
def test_a_killed_kiosk_gives_the_draft_back(kiosk_env, tmux):
    set_am(kiosk_env)
    kiosk_env.vcards.insert("physician")
    data = kiosk_env.data_dir
    session = f"ordo-kiosk-{os.getpid()}"
    command = f"exec {ORDO} --config {data / 'ordo.toml'} --data-dir {data} kiosk"

    def start() -> None:
        _tmux("new-session", "-d", "-s", session, "-x", "80", "-y", "24", command)
        _wait_screen(session, "Code PIN")
        _keys(session, "1", "2", "3", "4", "Enter")
        _wait_screen(session, "Résidents")

    start()
    try:
        _keys(session, "F2")
        _wait_screen(session, "Ordonnance : DUPONT")
        _keys(session, "F4", "E", "C", "G", "Enter", "F2", "d", "o", "l", "i")
        _wait_screen(session, "DOLIPRANE 1000 mg, comprimé")
        deadline = time.monotonic() + 10
        while True:                                          # saved as typed
            drafts = prescribing.drafts_of(kiosk_env.uow, "899700000013")
            form = prescribing.draft_form(kiosk_env.uow, drafts[0].id) if drafts else None
            if form and form.get("search") == "doli":
                break
            assert time.monotonic() < deadline, "the half-typed line was not saved"
            time.sleep(0.1)
        pid = int(_tmux("display-message", "-p", "-t", session, "#{pane_pid}").strip())
        os.kill(pid, signal.SIGKILL)                          # a crash, no clean-up at all
        subprocess.run([*TMUX, "kill-session", "-t", session], check=False)

        start()
        screen = _wait_screen(session, "Brouillons à reprendre (1)")
        assert "1 ligne(s)" in screen
        _keys(session, "F3", "Enter")
        screen = _wait_screen(session, "1. Acte : ECG")
        assert "Médicament : doli" in screen
    finally:
        subprocess.run([*TMUX, "kill-session", "-t", session], check=False)
