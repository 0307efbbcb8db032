"""Builders shared by the operations tests (no tests here): settings with a backup key, a
store filled with signed prescriptions, a test PKI, loopback servers standing in for a
receipt printer and for the registry."""

from __future__ import annotations

import contextlib
import http.server
import ipaddress
import json
import os
import secrets
import socket
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from appliance.config import Settings, load_settings
from appliance.domain.prescription import State
from appliance.domain.prescription_id import PrescriptionIdGenerator
from appliance.ops.backup import generate_key_text
from appliance.services.prescribing import record_transition
from appliance.store.db import Store
from appliance.store.uow import SqliteUnitOfWork
from tests.factories import prescription, resident

T0 = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)


def write_key(path: Path) -> Path:
    path.write_text(generate_key_text())
    path.chmod(0o600)
    return path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def ops_env(tmp_path: Path, **env: str) -> dict[str, str]:
    """ORDO_* variables for a test: a fresh backup key, and a printer and a registry on
    closed loopback ports (never the defaults 9100 and 8443, which other tests may serve)
    unless ``env`` names them."""
    key = tmp_path / "backup.key"
    if "ORDO_SECURITY_BACKUP_KEY" not in env and not key.exists():
        tmp_path.mkdir(parents=True, exist_ok=True)
        write_key(key)
    return {"ORDO_SECURITY_BACKUP_KEY": str(key),
            "ORDO_PRINTER_URI": f"tcp://127.0.0.1:{free_port()}",
            "ORDO_REGISTRY_URL": f"https://127.0.0.1:{free_port()}/fhir", **env}


def settings_for(tmp_path: Path, **env: str) -> Settings:
    """Settings on ``tmp_path/data`` with ``ops_env``."""
    return load_settings(data_dir=tmp_path / "data", environ=ops_env(tmp_path, **env))


def add_prescriptions(store: Store, count: int, *, start_ms: int = 1_764_061_200_000,
                      residents: int = 20, state: State = State.SIGNED) -> list[str]:
    """``count`` signed prescriptions (outbox row, print job, audit entry each), in one
    transaction; realistic signature and certificate sizes (one physician's certificate,
    a fresh signature each)."""
    ids = PrescriptionIdGenerator(clock_ms=lambda: start_ms)
    certificate = secrets.token_bytes(1400)
    people = [resident(n) for n in range(1, residents + 1)]
    made = []
    uow = SqliteUnitOfWork(store, owns=False)
    actor = "8" + "1" * 11
    with uow:
        uow.residents.upsert(people)
        for n in range(count):
            p = prescription(ids.new(), resident=people[n % residents])
            p = p.transition(State.SIGNED, T0)
            uow.prescriptions.add_signed(p, signature=secrets.token_bytes(256),
                                         signer_cert=certificate, signed_payload=None)
            uow.outbox.add(p.id, "create", T0)
            job = uow.print_jobs.add(p.id, "original", actor, T0)
            uow.audit.append(actor=actor, action="prescription.signed", subject=p.id,
                             details={"lines": len(p.lines), "print_job": job})
            if state is not State.SIGNED:
                for step in _path_to(state):
                    p = p.transition(step, T0, reason="erreur de saisie")
                    record_transition(uow, p, actor="sync")
            made.append(p.id)
        uow.commit()
    return made


def _path_to(state: State) -> list[State]:
    return {State.REGISTERED: [State.REGISTERED],
            State.DISPENSED: [State.REGISTERED, State.DISPENSED],
            State.CANCELLED: [State.CANCELLED]}[state]


# -- PKI ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Pki:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _cert(subject: str, key, issuer_name: x509.Name | None, issuer_key, *, ca: bool,
          days: int = 365, san: x509.GeneralName | None = None) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    now = datetime.now(UTC)
    builder = (x509.CertificateBuilder().subject_name(name)
               .issuer_name(issuer_name or name).public_key(key.public_key())
               .serial_number(x509.random_serial_number())
               .not_valid_before(now - timedelta(days=1))
               .not_valid_after(now + timedelta(days=days))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if ca:
        builder = builder.add_extension(x509.KeyUsage(
            digital_signature=True, content_commitment=False, key_encipherment=False,
            data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
            encipher_only=False, decipher_only=False), critical=True)
    if san is not None:
        builder = builder.add_extension(x509.SubjectAlternativeName([san]), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def make_pki(directory: Path, *, client_days: int = 365) -> Pki:
    """A CA, a server certificate for 127.0.0.1 and a client certificate, as PEM files."""
    directory.mkdir(parents=True, exist_ok=True)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = _cert("Ordo test registry CA", ca_key, None, ca_key, ca=True)
    server_key = ec.generate_private_key(ec.SECP256R1())
    server = _cert("127.0.0.1", server_key, ca.subject, ca_key, ca=False,
                   san=x509.IPAddress(ipaddress.ip_address("127.0.0.1")))
    client_key = ec.generate_private_key(ec.SECP256R1())
    client = _cert("EHPAD test 750712184", client_key, ca.subject, ca_key, ca=False,
                   days=client_days)
    files = Pki(directory / "ca.pem", directory / "server.pem", directory / "server.key",
                directory / "client.pem", directory / "client.key")
    pem = serialization.Encoding.PEM
    files.ca.write_bytes(ca.public_bytes(pem))
    files.server_cert.write_bytes(server.public_bytes(pem))
    files.server_key.write_bytes(_key_pem(server_key))
    files.client_cert.write_bytes(client.public_bytes(pem))
    files.client_key.write_bytes(_key_pem(client_key))
    os.chmod(files.client_key, 0o600)
    return files


# -- loopback servers --------------------------------------------------------------------
@dataclass
class PrinterStandIn:
    port: int
    received: bytearray


@contextlib.contextmanager
def printer_stand_in(status: int) -> Iterator[PrinterStandIn]:
    """A TCP server that answers every ``DLE EOT 4`` with the status byte ``status``."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    server.settimeout(0.2)
    stand_in = PrinterStandIn(server.getsockname()[1], bytearray())
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            with conn:
                conn.settimeout(2)
                data = b""
                while len(data) < 3:
                    chunk = conn.recv(3 - len(data))
                    if not chunk:
                        break
                    data += chunk
                stand_in.received += data
                if data == b"\x10\x04\x04":
                    conn.sendall(bytes([status]))

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield stand_in
    finally:
        stop.set()
        thread.join(timeout=2)
        server.close()


@contextlib.contextmanager
def registry_stand_in(pki: Pki, *, clock_offset: timedelta = timedelta(0),
                      status: int = 200) -> Iterator[str]:
    """An HTTPS server on 127.0.0.1 that requires a client certificate from ``pki``'s CA
    and answers ``GET /fhir/metadata``; its ``Date`` header is shifted by
    ``clock_offset``. Yields the base URL."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def date_time_string(self, timestamp=None):
            return format_datetime(datetime.now(UTC) + clock_offset, usegmt=True)

        def do_GET(self):
            body = json.dumps({"resourceType": "CapabilityStatement"}).encode()
            self.send_response(status if self.path == "/fhir/metadata" else 404)
            self.send_header("Content-Type", "application/fhir+json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(pki.server_cert, pki.server_key)
    context.load_verify_locations(pki.ca)
    context.verify_mode = ssl.CERT_REQUIRED
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True)
    thread.start()
    try:
        yield f"https://127.0.0.1:{server.server_address[1]}/fhir"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=2)
