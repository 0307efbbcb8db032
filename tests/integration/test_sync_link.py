"""A misconfigured registry link pauses the queue (nothing quarantined) and names the setting
to fix, against the real reference registry and small hostile servers on loopback (a web
server, a redirect, a proxy refusing the certificate, TLS servers with the wrong name, an
expired certificate, an unknown authority, refusing the client's certificate); and the
real ``ordo sync run`` catches the registry's return within seconds."""

from __future__ import annotations

import ipaddress
import json
import os
import socket
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from click.testing import CliRunner
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from appliance.cli import main
from appliance.services import sync
from sync.client import RegistryClient
from sync.registry_sim import RegistrySim, SimConfig

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
NOW = datetime.now(UTC)
CAPABILITY = {"resourceType": "CapabilityStatement", "status": "active", "kind": "instance",
              "fhirVersion": "4.0.1", "format": ["json"]}


def _outcome(text: str) -> dict:
    return {"resourceType": "OperationOutcome",
            "issue": [{"severity": "error", "code": "forbidden", "diagnostics": text}]}


class Hostile:
    """An HTTP server on 127.0.0.1 that answers every request with ``answer(method,
    path)`` → (status, headers, body bytes)."""

    def __init__(self, answer) -> None:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:
                pass

            def _any(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                self.rfile.read(length)
                status, headers, body = owner.answer(self.command, self.path)
                owner.requests.append((self.command, self.path))
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = _any

        self.answer, self.requests = answer, []
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/fhir"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def hostile():
    started = []

    def start(answer):
        server = Hostile(answer)
        started.append(server)
        return server

    yield start
    for server in started:
        server.close()


def _push(orders, url: str, **client_options):
    client = RegistryClient(url, **client_options)
    try:
        from appliance.services.sync import EngineConfig, SyncEngine

        return SyncEngine(orders.uow, client, EngineConfig(backoff_base_s=0.01,
                                                           concurrency=2)).push()
    finally:
        client.close()


def _paused(orders, report, key: str) -> None:
    """The queue waits, untouched; the setting to fix is named everywhere."""
    assert report.misconfigured and report.misconfigured_key == key, report
    assert report.quarantined == 0 and report.acknowledged == 0
    assert {(row["status"], row["attempts"]) for row in orders.outbox()} == {("pending", 0)}
    status = sync.status(orders.uow)
    assert status.misconfigured and status.link_key == key
    assert not any(e.action.endswith("quarantined") for e in orders.uow.audit.entries())


# -- plain HTTP: the reference registry at a wrong path, hostile answers -------------------------
def test_a_url_missing_its_fhir_path_pauses_instead_of_quarantining(orders, registry_sim,
                                                                    store, tmp_path):
    orders.sign_many(3)
    wrong = registry_sim.url.removesuffix("/fhir")  # "no route POST /" before
    report = _push(orders, wrong)
    _paused(orders, report, "registry.url")
    assert "n'est pas la base FHIR" in report.misconfigured
    env = {"ORDO_DATA_DIR": str(store.path.parent), "ORDO_CONFIG": str(_empty(tmp_path)),
           "ORDO_REGISTRY_URL": wrong}
    text = CliRunner().invoke(main, ["sync", "status"], env=env).output
    assert "Registre mal configuré" in text and "registry.url" in text
    once = CliRunner().invoke(main, ["sync", "once"], env=env)
    assert once.exit_code == 4 and "Erreur : registre mal configuré" in once.output
    doctor = CliRunner().invoke(main, ["doctor", "--json"], env=env)
    check = next(c for c in json.loads(doctor.stdout)["checks"] if c["name"] == "registry")
    assert doctor.exit_code == 1 and check["status"] == "fail"
    assert "misconfigured" in check["detail"] and "registry.url" in check["hint"]
    # fixed: everything goes, nothing was lost
    report = _push(orders, registry_sim.url)
    assert report.acknowledged == 3 and not sync.status(orders.uow).misconfigured


def _empty(tmp_path: Path) -> Path:
    config = tmp_path / "empty.toml"
    config.write_text("")
    return config


@pytest.mark.parametrize(("name", "answer", "key", "words"), [
    ("redirect to another host",
     lambda m, p: (302, {"Location": "https://elsewhere.invalid/fhir"}, b""),
     "registry.url", "autre hôte"),
    ("a web page instead of FHIR",
     lambda m, p: (200, {"Content-Type": "text/html"}, b"<html>Portail Wi-Fi</html>"),
     "registry.url", "ne répond pas en FHIR"),
    ("a proxy asking for credentials",
     lambda m, p: (401, {"Content-Type": "text/html", "WWW-Authenticate": "Basic"},
                   b"<h1>401</h1>"),
     "registry.client_cert", "refuse l'accès"),
    ("403 as FHIR on every path, metadata too",
     lambda m, p: (403, {"Content-Type": "application/fhir+json"},
                   json.dumps(_outcome("certificate not enrolled")).encode()),
     "registry.client_cert", "refuse le certificat"),
    ("404 as FHIR on every path",
     lambda m, p: (404, {"Content-Type": "application/fhir+json"},
                   json.dumps(_outcome("unknown resource")).encode()),
     "registry.url", "n'est pas la base FHIR"),
])
def test_a_hostile_server_pauses_the_queue(orders, hostile, name, answer, key, words):
    orders.sign_many(2)
    server = hostile(answer)
    report = _push(orders, server.url)
    _paused(orders, report, key)
    assert words in report.misconfigured, report.misconfigured


def test_a_refusal_about_the_record_itself_is_still_quarantined(orders, hostile):
    """403 with an OperationOutcome while the base answers: this record, not the link."""
    orders.sign_many(2)

    def answer(method, path):
        if path.endswith("/metadata"):
            return 200, {"Content-Type": "application/fhir+json"}, json.dumps(CAPABILITY).encode()
        return 403, {"Content-Type": "application/fhir+json"}, json.dumps(
            _outcome("prescriber not allowed for this resident")).encode()

    report = _push(orders, hostile(answer).url)
    assert report.quarantined == 2 and not report.misconfigured
    assert {row["status"] for row in orders.outbox()} == {"quarantined"}


# -- TLS: name, dates, authorities, the client's certificate -------------------------------------
def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _cert(subject: str, key, issuer: tuple | None = None, *, ca: bool = False,
          san: list | None = None, expired: bool = False) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    issuer_name, issuer_key = (issuer[0].subject, issuer[1]) if issuer else (name, key)
    start, end = ((NOW - timedelta(days=400), NOW - timedelta(days=30)) if expired else
                  (NOW - timedelta(days=1), NOW + timedelta(days=30)))
    builder = (x509.CertificateBuilder().subject_name(name).issuer_name(issuer_name)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(start).not_valid_after(end)
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if not ca:
        builder = builder.add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
    if san:
        builder = builder.add_extension(x509.SubjectAlternativeName(san), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


@pytest.fixture(scope="module")
def other_pki(tmp_path_factory):
    """A CA the appliance does not know, and registry certificates it signed: one for
    another name, one expired, one right."""
    directory = tmp_path_factory.mktemp("other-pki")
    ca_key = _key()
    ca = _cert("TEST AUTRE AC", ca_key, ca=True)
    files = {"ca.pem": ca.public_bytes(serialization.Encoding.PEM)}
    loopback = [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    for label, san, expired in (("other-name", [x509.DNSName("registre.invalid")], False),
                                ("expired", loopback, True), ("good", loopback, False)):
        key = _key()
        files[f"{label}.pem"] = _cert(label, key, (ca, ca_key), san=san,
                                      expired=expired).public_bytes(serialization.Encoding.PEM)
        files[f"{label}.key"] = key.private_bytes(serialization.Encoding.PEM,
                                                  serialization.PrivateFormat.PKCS8,
                                                  serialization.NoEncryption())
    for name, data in files.items():
        (directory / name).write_bytes(data)
    return directory


@pytest.fixture
def tls_sim(tmp_path, sync_trust):
    started = []

    def start(cert: Path, key: Path, client_ca: Path) -> RegistrySim:
        sim = RegistrySim(SimConfig(db_path=tmp_path / f"tls-{len(started)}.sqlite",
                                    tls_cert=str(cert), tls_key=str(key),
                                    client_ca=str(client_ca)), trust=sync_trust).start()
        started.append(sim)
        return sim

    yield start
    for sim in started:
        sim.stop()


def _client_files(card_pki, ca_file: Path | None = None) -> dict:
    est = card_pki.establishment
    return {"ca_file": str(ca_file or est / "ca.pem"), "client_cert": str(est / "client.pem"),
            "client_key": str(est / "client.key")}


@pytest.mark.parametrize(("label", "key", "words"), [
    ("other-name", "registry.url", "n'est pas valable pour le nom 127.0.0.1"),
    ("expired", "registry.ca_file", "en cours de validité"),
])
def test_a_registry_certificate_wrong_for_us_pauses_the_queue(orders, card_pki, other_pki,
                                                              tls_sim, label, key, words):
    orders.sign_many(2)
    sim = tls_sim(other_pki / f"{label}.pem", other_pki / f"{label}.key",
                  card_pki.establishment / "ca.pem")
    report = _push(orders, sim.url, **_client_files(card_pki, other_pki / "ca.pem"))
    _paused(orders, report, key)
    assert words in report.misconfigured, report.misconfigured


def test_an_authority_we_do_not_hold_pauses_the_queue(orders, card_pki, other_pki, tls_sim):
    orders.sign_many(2)
    sim = tls_sim(card_pki.establishment / "server.pem", card_pki.establishment / "server.key",
                  card_pki.establishment / "ca.pem")
    report = _push(orders, sim.url, **_client_files(card_pki, other_pki / "ca.pem"))
    _paused(orders, report, "registry.ca_file")
    assert "n'est pas reconnu" in report.misconfigured


def test_a_registry_refusing_our_certificate_pauses_the_queue(orders, card_pki, other_pki,
                                                              tls_sim):
    orders.sign_many(2)
    sim = tls_sim(other_pki / "good.pem", other_pki / "good.key", other_pki / "ca.pem")
    report = _push(orders, sim.url, **_client_files(card_pki, other_pki / "ca.pem"))
    _paused(orders, report, "registry.client_cert")
    assert "refuse le certificat de l'établissement" in report.misconfigured


# -- the registry's return, in real time ---------------------------------------------------------
def test_the_real_service_drains_within_seconds_of_the_registry_return(orders, store, tmp_path,
                                                                       sync_trust):
    """``ordo sync run`` as systemd runs it; the registry goes away (its port closed) while
    prescriptions pile up, then comes back on the same port."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = SimConfig(db_path=tmp_path / "registry.sqlite", plain_http=True, port=port)
    sim = RegistrySim(config, trust=sync_trust).start()
    orders.sign_many(1)
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("ORDO_") and k not in ("NOTIFY_SOCKET", "WATCHDOG_USEC")}
    env.update(ORDO_DATA_DIR=str(store.path.parent), ORDO_CONFIG=str(_empty(tmp_path)),
               ORDO_REGISTRY_URL=sim.url)
    proc = subprocess.Popen([sys.executable, "-c", "from appliance.cli import main; main()",
                             "sync", "run"], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    try:
        _until(lambda: sync.status(orders.uow).acknowledged == 1, 30, "the first drain")
        sim.stop()  # the outage
        orders.sign_many(4)
        _until(lambda: sync.status(orders.uow).link == "down", 30, "the service to notice")
        time.sleep(12)  # several probes fail meanwhile
        assert sync.status(orders.uow).acknowledged == 1
        sim = RegistrySim(config, trust=sync_trust).start()  # back, same port
        back = time.monotonic()
        _until(lambda: sync.status(orders.uow).acknowledged == 5, 30, "the drain")
        assert time.monotonic() - back <= 10.0
        assert sync.status(orders.uow).link == "up"
    finally:
        proc.terminate()
        proc.wait(timeout=20)
        proc.stderr.close()
        sim.stop()


def _until(predicate, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(0.1)
