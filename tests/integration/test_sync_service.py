"""The sync service as systemd runs it (a real ``ordo sync run`` process: READY, WATCHDOG,
STOPPING over ``$NOTIFY_SOCKET``, clean exit on SIGTERM), its single-instance lock, the
``ordo sync`` commands, and holding off while the registry is unreachable."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from appliance.cli import main
from appliance.services import sync
from appliance.services.sync import EngineConfig, SyncEngine
from sync.client import RegistryClient
from sync.registry_sim import Faults
from sync.service import SyncService, single_instance

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


def environment(data_dir: Path, url: str, **extra: str) -> dict[str, str]:
    config = data_dir / "empty.toml"
    config.write_text("")
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("ORDO_") and k not in ("NOTIFY_SOCKET", "WATCHDOG_USEC")}
    env.update(ORDO_DATA_DIR=str(data_dir), ORDO_CONFIG=str(config), ORDO_REGISTRY_URL=url,
               ORDO_SYNC_INTERVAL_S="1", **extra)
    return env


class Notifications:
    """A NOTIFY_SOCKET of our own: what the service tells systemd."""

    def __init__(self) -> None:
        self.dir = tempfile.mkdtemp(prefix="ordo-notify-")
        self.path = os.path.join(self.dir, "notify")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.seen: list[str] = []

    def wait_for(self, needle: str, timeout: float = 20.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for message in self.seen:
                if needle in message:
                    return message
            self.sock.settimeout(max(deadline - time.monotonic(), 0.01))
            try:
                self.seen.append(self.sock.recv(4096).decode())
            except TimeoutError:
                break
        raise AssertionError(f"no {needle!r} in {self.seen}")

    def close(self) -> None:
        self.sock.close()
        os.unlink(self.path)
        os.rmdir(self.dir)


@pytest.fixture
def notifications():
    n = Notifications()
    yield n
    n.close()


def test_sync_run_speaks_systemd_drains_the_queue_and_stops_on_sigterm(
        orders, registry_sim, notifications, store, uow):
    made = orders.sign_many(3)
    env = environment(store.path.parent, registry_sim.url, NOTIFY_SOCKET=notifications.path,
                      WATCHDOG_USEC="1000000")
    proc = subprocess.Popen([sys.executable, "-c", "from appliance.cli import main; main()",
                             "sync", "run"], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        notifications.wait_for("READY=1")
        deadline = time.monotonic() + 20
        while sync.status(uow).acknowledged < 3 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert {row["id"] for row in registry_sim.db.list_prescriptions()} == {
            p.id for p in made}
        notifications.wait_for("WATCHDOG=1")
        assert "0 en attente" in notifications.wait_for("STATUS=file")
        # one sync process per data directory
        refused = CliRunner().invoke(main, ["sync", "once"], env=environment(
            store.path.parent, registry_sim.url))
        assert refused.exit_code == 4 and "Erreur : " in refused.output
        assert "tourne déjà" in refused.output
        proc.send_signal(signal.SIGTERM)
        notifications.wait_for("STOPPING=1")
        assert proc.wait(timeout=20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=5)
    assert all(orders.state(p.id) == "registered" for p in made)


def test_sync_once_status_and_release(orders, registry_sim, store):
    [bad] = orders.sign_many(profile="untrusted")
    orders.sign_many(2)
    env = environment(store.path.parent, registry_sim.url)
    runner = CliRunner()
    once = runner.invoke(main, ["sync", "once", "--json"], env=env, catch_exceptions=False)
    assert once.exit_code == 0, once.output
    report = json.loads(once.stdout)
    assert (report["push"]["acknowledged"], report["push"]["quarantined"]) == (2, 1)
    status = json.loads(runner.invoke(main, ["sync", "status", "--json"], env=env).stdout)
    assert (status["queue_depth"], status["acknowledged"], status["quarantined"]) == (0, 2, 1)
    [record] = status["quarantined_records"]
    assert record["prescription_id"] == bad.id and "no trusted root" in record["reason"]
    assert status["last_success_at"] is not None
    text = runner.invoke(main, ["sync", "status"], env=env).output
    assert "En quarantaine : 1" in text and bad.id in text
    released = runner.invoke(main, ["sync", "release", str(record["seq"])], env=env)
    assert released.exit_code == 0 and "remis dans la file" in released.output
    assert json.loads(runner.invoke(main, ["sync", "status", "--json"],
                                    env=env).stdout)["queue_depth"] == 1
    again = runner.invoke(main, ["sync", "release", str(record["seq"])], env=env)
    assert again.exit_code == 4 and again.output.startswith("Erreur : aucun envoi")


def test_the_service_holds_off_while_the_registry_is_unreachable(
        orders, registry_sim, store, uow):
    orders.sign_many(2)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{probe.getsockname()[1]}/fhir"
    client = RegistryClient(dead)
    engine = SyncEngine(uow, client, EngineConfig(backoff_base_s=0.01,
                                                         backoff_cap_s=0.05))
    service = SyncService(engine, uow, tick_s=0.2, probe_every_s=0.5, notify=lambda s: True)
    try:
        first = service.cycle()
        assert first.push is not None and first.push.unreachable
        assert service.cycle().held  # no request while holding off
        engine.registry = RegistryClient(registry_sim.url)  # the network is back
        deadline = time.monotonic() + 5
        while service.cycle().held and time.monotonic() < deadline:
            time.sleep(0.05)
        assert sync.status(uow).acknowledged == 2
    finally:
        client.close()
        engine.registry.close()


def test_a_throttling_registry_pauses_the_whole_run(orders, registry_sim, make_engine):
    orders.sign_many(3)
    registry_sim.set_faults(Faults(script=("429",), retry_after_s=30))
    report = make_engine(registry_sim.url, max_wait_s=1.0, concurrency=1).push()
    assert report.throttled == 1 and report.acknowledged == 0 and report.remaining == 3
    assert len(registry_sim.arrivals) == 1  # nothing else was sent during the pause


def test_the_lock_is_released_when_its_holder_ends(tmp_path):
    with single_instance(tmp_path):
        pass
    with single_instance(tmp_path):
        pass


def test_a_stop_ends_a_drain_between_records_and_keeps_what_was_sent(
        orders, registry_sim, make_engine, store):
    import threading

    made = orders.sign_many(40)
    registry_sim.set_faults(Faults(latency_ms=100, seed=1))  # ~50 ms a request
    engine = make_engine(registry_sim.url, concurrency=2, batch_size=10)
    reports = []
    runner = threading.Thread(target=lambda: reports.append(engine.push()))
    runner.start()
    time.sleep(0.4)
    engine.stop()  # what SIGTERM does
    runner.join(timeout=10)
    assert not runner.is_alive()
    [report] = reports
    assert report.stopped and 0 < report.acknowledged < 40 and report.remaining > 0
    acknowledged = {r["prescription_id"] for r in orders.outbox() if r["status"] == "acknowledged"}
    held = {row["id"] for row in registry_sim.db.list_prescriptions()}
    assert acknowledged <= held  # never an acknowledgement without the registry's record
    assert len(held) < len(made)  # it did stop early
