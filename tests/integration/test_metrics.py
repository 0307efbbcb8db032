"""The Prometheus endpoint, scraped over HTTP: from a real ``ordo sync run`` on a real
SQLite store with the reference registry on loopback (counts follow the queue, the
registry's outage shows, the FINESS labels everything, no resident's name, NIR or birth
date anywhere), and in-process over the printer emulator, a real backup, a referential
file and the real pcscd with its virtual readers."""

from __future__ import annotations

import math
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from appliance.config import load_settings
from appliance.ops import doctor
from appliance.ops.backup import BACKUP_SUBDIR, backup, generate_key_text
from appliance.ops.metrics import METRICS, MetricsServer, OrdoCollector, registry
from appliance.store.uow import SqliteUnitOfWork
from sync.registry_sim import RegistrySim, SimConfig
from tests.factories import resident

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
FINESS = "750000001"
REQUIRED = ("ordo_outbox_pending", "ordo_outbox_oldest_pending_age_seconds",
            "ordo_outbox_quarantined", "ordo_sync_last_success_timestamp_seconds",
            "ordo_registry_up", "ordo_printer_up", "ordo_printer_paper_ok",
            "ordo_card_reader_present", "ordo_referential_age_days", "ordo_backup_age_seconds",
            "ordo_audit_anchor_age_seconds")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def scrape(url: str) -> tuple[str, dict[str, float]]:
    """The exposition text and {metric name: value} (every series must carry our FINESS
    and nothing else, but the version of ``ordo_build_info``)."""
    response = httpx.get(url, timeout=10)
    assert response.status_code == 200
    text = response.text
    values = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            extra = {"version"} if sample.name == "ordo_build_info" else set()
            assert set(sample.labels) == {"finess", *extra}, sample
            assert sample.labels["finess"] == FINESS
            values[sample.name] = sample.value
    return text, values


def until(url: str, predicate, timeout_s: float, what: str) -> dict[str, float]:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            _, values = scrape(url)
        except httpx.HTTPError:
            values = {}
        if values and predicate(values):
            return values
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: never seen in {values}")
        time.sleep(0.2)


def assert_no_health_data(text: str, people, prescription_ids) -> None:
    for person in people:
        for secret in (person.birth_name, person.first_names, person.ins.value,
                       person.birth_date.isoformat(), person.birth_date.strftime("%d/%m/%Y")):
            assert secret not in text, secret
    for pid in prescription_ids:
        assert pid not in text


def test_the_sync_service_serves_metrics_that_follow_the_queue_and_the_registry(
        orders, store, tmp_path, sync_trust, emulators):
    """``ordo sync run`` as systemd runs it: the endpoint on ``[metrics] listen``, the
    counts as records are queued, sent and refused, the registry going away and coming
    back on the same port."""
    printer = emulators()
    config = SimConfig(db_path=tmp_path / "registry.sqlite", plain_http=True, port=free_port())
    sim = RegistrySim(config, trust=sync_trust).start()
    port = free_port()
    url = f"http://127.0.0.1:{port}/metrics"
    empty = tmp_path / "empty.toml"
    empty.write_text("")
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("ORDO_") and k not in ("NOTIFY_SOCKET", "WATCHDOG_USEC")}
    env.update(ORDO_DATA_DIR=str(store.path.parent), ORDO_CONFIG=str(empty),
               ORDO_REGISTRY_URL=sim.url, ORDO_SYNC_INTERVAL_S="1",
               ORDO_ESTABLISHMENT_FINESS=FINESS, ORDO_METRICS_LISTEN=f"127.0.0.1:{port}",
               ORDO_PRINTER_URI=f"tcp://127.0.0.1:{printer.port}")
    proc = subprocess.Popen([sys.executable, "-c", "from appliance.cli import main; main()",
                             "sync", "run"], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    people = [resident(1)]
    try:
        first = until(url, lambda v: v.get("ordo_registry_up") == 1, 30,
                      "the first exchange with the registry")
        assert first["ordo_outbox_pending"] == 0 and first["ordo_outbox_quarantined"] == 0
        assert first["ordo_store_up"] == 1 and first["ordo_printer_up"] == 1
        assert first["ordo_printer_paper_ok"] == 1
        assert first["ordo_backup_age_seconds"] == math.inf  # none made yet
        assert first["ordo_referential_age_days"] == math.inf  # none imported
        assert first["ordo_sync_last_success_timestamp_seconds"] > time.time() - 60

        sim.stop()  # the outage: records pile up
        made = orders.sign_many(3, resident=people[0])
        down = until(url, lambda v: v["ordo_outbox_pending"] == 3 and v["ordo_registry_up"] == 0,
                     30, "three records waiting and the registry down")
        assert down["ordo_registry_misconfigured"] == 0
        assert down["ordo_audit_unanchored_entries"] > 0
        time.sleep(2)
        later = until(url, lambda v: v["ordo_outbox_oldest_pending_age_seconds"] >= 2, 10,
                      "the oldest record's age growing")
        assert later["ordo_outbox_pending"] == 3

        sim = RegistrySim(config, trust=sync_trust).start()  # back, same port
        drained = until(url, lambda v: v["ordo_outbox_pending"] == 0
                        and v["ordo_registry_up"] == 1
                        and v["ordo_audit_unanchored_entries"] == 0, 30,
                        "the queue drained and the audit chain anchored")
        assert drained["ordo_outbox_oldest_pending_age_seconds"] == 0
        assert 0 <= drained["ordo_audit_anchor_age_seconds"] < 60

        refused = orders.sign_many(1, profile="untrusted", resident=people[0])
        until(url, lambda v: v["ordo_outbox_quarantined"] == 1 and v["ordo_outbox_pending"] == 0,
              30, "the refused record quarantined")

        text, values = scrape(url)
        assert set(REQUIRED) <= set(values)
        assert set(values) <= set(METRICS)
        assert_no_health_data(text, people, [p.id for p in made + refused])
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
        with pytest.raises(httpx.HTTPError):
            httpx.get(url, timeout=2)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=5)
        sim.stop()


def test_a_port_in_use_does_not_stop_the_sync(orders, store, tmp_path, registry_sim):
    """Metrics are a convenience: an address already taken is logged and the queue is
    still sent."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        empty = tmp_path / "empty.toml"
        empty.write_text("")
        env = {k: v for k, v in os.environ.items()
               if not k.startswith("ORDO_") and k not in ("NOTIFY_SOCKET", "WATCHDOG_USEC")}
        env.update(ORDO_DATA_DIR=str(store.path.parent), ORDO_CONFIG=str(empty),
                   ORDO_REGISTRY_URL=registry_sim.url, ORDO_SYNC_INTERVAL_S="1",
                   ORDO_METRICS_LISTEN=f"127.0.0.1:{taken.getsockname()[1]}")
        orders.sign_many(2)
        proc = subprocess.Popen([sys.executable, "-c", "from appliance.cli import main; main()",
                                 "sync", "run"], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=True)
        try:
            deadline = time.monotonic() + 30
            while len(registry_sim.db.list_prescriptions()) < 2:
                assert time.monotonic() < deadline, "the queue was not sent"
                time.sleep(0.2)
        finally:
            proc.terminate()
            _, stderr = proc.communicate(timeout=20)
    assert proc.returncode == 0
    assert "metrics endpoint not served" in stderr


# -- in process: the devices and the files ---------------------------------------------------
@pytest.fixture
def appliance(store, tmp_path, emulators):
    """Settings over ``store``'s data directory, the printer emulator and a backup key;
    a metrics endpoint on a free port whose devices are asked at every scrape."""
    printer = emulators()
    key = tmp_path / "backup.key"
    key.write_text(generate_key_text())
    key.chmod(0o600)
    empty = tmp_path / "empty.toml"
    empty.write_text("")
    settings = load_settings(config_file=empty, data_dir=store.path.parent, environ={
        "ORDO_ESTABLISHMENT_FINESS": FINESS, "ORDO_SECURITY_BACKUP_KEY": str(key),
        "ORDO_PRINTER_URI": f"tcp://127.0.0.1:{printer.port}",
        "ORDO_METRICS_LISTEN": "127.0.0.1:9464"})
    collector = OrdoCollector(settings, lambda: SqliteUnitOfWork.open(settings.db_path),
                              device_every_s=0.0, device_timeout_s=2.0)
    server = MetricsServer("127.0.0.1", 0, registry(collector))
    server.start()
    yield settings, printer, f"http://{server.address}/metrics", server
    server.stop()


def test_printer_paper_backup_and_referential(appliance, orders):
    settings, printer, url, _ = appliance
    _, values = scrape(url)
    assert (values["ordo_printer_up"], values["ordo_printer_paper_ok"]) == (1, 1)
    assert values["ordo_printer_paper_near_end"] == 0

    printer.model.near_end = True
    _, values = scrape(url)
    assert (values["ordo_printer_paper_ok"], values["ordo_printer_paper_near_end"]) == (1, 1)
    printer.model.paper_out = True
    _, values = scrape(url)
    assert (values["ordo_printer_up"], values["ordo_printer_paper_ok"]) == (1, 0)
    printer.stop()
    _, values = scrape(url)
    assert values["ordo_printer_up"] == 0
    assert "ordo_printer_paper_ok" not in values  # a printer that does not answer cannot tell

    # a real backup, then made to look 40 hours old
    orders.sign_many(1)
    made = backup(settings, settings.data_dir / BACKUP_SUBDIR).path
    _, values = scrape(url)
    assert 0 <= values["ordo_backup_age_seconds"] < 60
    old = time.time() - 40 * 3600
    os.utime(made, (old, old))
    _, values = scrape(url)
    assert 40 * 3600 - 60 < values["ordo_backup_age_seconds"] < 40 * 3600 + 60

    # a drug referential whose data is 50 days old
    day = (datetime.now(UTC) - timedelta(days=50)).date()
    conn = sqlite3.connect(settings.data_dir / "referential.sqlite")
    conn.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT)")
    conn.execute("INSERT INTO meta VALUES ('bdpm_date', ?)", (day.isoformat(),))
    conn.commit()
    conn.close()
    _, values = scrape(url)
    assert values["ordo_referential_age_days"] == 50
    assert values["ordo_outbox_pending"] == 1


def test_an_unreadable_database_drops_its_metrics_not_the_endpoint(appliance, tmp_path):
    settings = appliance[0]
    broken = tmp_path / "broken.sqlite"
    broken.write_bytes(b"not a database" * 100)
    collector = OrdoCollector(settings, lambda: SqliteUnitOfWork.open(broken),
                              device_every_s=0.0, device_timeout_s=2.0)
    server = MetricsServer("127.0.0.1", 0, registry(collector))
    server.start()
    try:
        _, values = scrape(f"http://{server.address}/metrics")
    finally:
        server.stop()
    assert values["ordo_store_up"] == 0
    assert "ordo_outbox_pending" not in values
    assert values["ordo_printer_up"] == 1  # the rest is still there
    assert values["ordo_backup_age_seconds"] == math.inf


def test_the_doctor_finds_the_endpoint(appliance, tmp_path):
    settings, _, _, server = appliance
    now = datetime.now(UTC)
    from dataclasses import replace

    from appliance.config import Metrics

    served = replace(settings, metrics=Metrics(listen=server.address))
    [check] = doctor._metrics(doctor._Context(served, now))
    assert check.status == doctor.OK and server.address in check.detail
    assert "loopback only" in check.detail
    nobody = replace(settings, metrics=Metrics(listen=f"127.0.0.1:{free_port()}"))
    [check] = doctor._metrics(doctor._Context(nobody, now))
    assert check.status == doctor.WARN and "nothing answers" in check.detail
    assert "ordo-sync" in check.hint
    off = replace(settings, metrics=Metrics(listen=""))
    [check] = doctor._metrics(doctor._Context(off, now))
    assert check.status == doctor.OK and "disabled" in check.detail


def test_card_readers_seen_by_pcscd(pcscd, appliance):
    """The real pcscd with the two vpcd readers (run under flock /tmp/ordo-pcscd.lock)."""
    _, _, url, _ = appliance
    _, values = scrape(url)
    assert values["ordo_card_reader_present"] == 1
    assert values["ordo_card_readers"] >= 2
