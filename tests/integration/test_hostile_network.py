"""Hostile servers on loopback against the real clients: the registry client run as the
real ``ordo sync once`` (its peak memory measured with ``wait4``, in a process whose address
space is capped so that a regression fails instead of exhausting the machine), and the BDPM
download of ``ordo drugs import``.

Each server is a bare socket server that answers every request the same way: a
``Content-Length`` of 10^12, an endless body delimited by the connection's close, one byte
every half second (of the headers or of the body), or a redirect.
"""

from __future__ import annotations

import contextlib
import socket
import socketserver
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from appliance.errors import StoreError, ValidationError
from appliance.services.referential import import_bdpm
from appliance.store.referential import referential_path
from tests.integration.test_drugs_import import SPECS
from tests.integration.test_drugs_import import http_server as http_server  # the fixture
from tests.integration.test_hostile_input import run_measured

pytestmark = pytest.mark.integration

ADDRESS_SPACE_MB = 1536  # far above what ordo needs, far below what an unbounded read takes


class HostileServer(socketserver.ThreadingTCPServer):
    """``answer(wfile)`` is called for every request once its headers are read."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, answer: Callable[[socket.socket], None],
                 tls: ssl.SSLContext | None = None) -> None:
        self.answer, self.tls = answer, tls
        self.lifetimes: list[float] = []  # seconds from accept to the client's hang-up
        self.stopping = threading.Event()
        super().__init__(("127.0.0.1", 0), _Handler)

    @property
    def url(self) -> str:
        scheme = "https" if self.tls else "http"
        return f"{scheme}://127.0.0.1:{self.server_address[1]}"


class _Handler(socketserver.BaseRequestHandler):
    server: HostileServer

    def handle(self) -> None:
        started = time.monotonic()
        sock: socket.socket = self.request
        sock.settimeout(30)
        data = b""
        with contextlib.suppress(OSError):
            if self.server.tls is not None:
                sock = self.server.tls.wrap_socket(sock, server_side=True)
            while b"\r\n\r\n" not in data:
                more = sock.recv(65536)
                if not more:
                    return
                data += more
            self.server.answer(sock)
        self.server.lifetimes.append(time.monotonic() - started)


@contextlib.contextmanager
def serving(answer: Callable[[socket.socket], None],
            tls: ssl.SSLContext | None = None) -> Iterator[HostileServer]:
    server = HostileServer(answer, tls)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.stopping.set()
        server.shutdown()
        server.server_close()


def _flood(sock: socket.socket, head: bytes, server_stop: threading.Event) -> None:
    sock.sendall(head)
    block = b"[" * 65536
    while not server_stop.is_set():
        sock.sendall(block)  # until the client hangs up (BrokenPipe, reset)


def huge_length(server_stop: threading.Event) -> Callable[[socket.socket], None]:
    return lambda sock: _flood(sock, b"HTTP/1.1 200 OK\r\nContent-Type: application/fhir+json"
                                     b"\r\nContent-Length: 1000000000000\r\n\r\n", server_stop)


def endless(server_stop: threading.Event) -> Callable[[socket.socket], None]:
    return lambda sock: _flood(sock, b"HTTP/1.1 200 OK\r\nContent-Type: application/fhir+json"
                                     b"\r\nConnection: close\r\n\r\n", server_stop)


def trickle(what: bytes, interval_s: float, server_stop: threading.Event,
            head: bytes = b"") -> Callable[[socket.socket], None]:
    def answer(sock: socket.socket) -> None:
        sock.sendall(head)
        for byte in what * 1000:
            if server_stop.wait(interval_s):
                return
            sock.sendall(bytes([byte]))
    return answer


@pytest.fixture
def sync_env(tmp_path: Path) -> Callable[..., dict[str, str]]:
    import os

    def make(url: str, timeout_s: float = 5) -> dict[str, str]:
        environ = {k: v for k, v in os.environ.items() if not k.startswith("ORDO_")}
        return {**environ, "ORDO_DATA_DIR": str(tmp_path / "data"), "ORDO_REGISTRY_URL": url,
                "ORDO_REGISTRY_TIMEOUT_S": str(timeout_s)}
    return make


def _sync_once(env: dict[str, str], timeout: float = 60) -> tuple[int, str, float]:
    return run_measured(["sync", "once", "--json"], env=env, timeout=timeout,
                        address_space_mb=ADDRESS_SPACE_MB)


# -- the registry client -----------------------------------------------------------------
def test_the_registry_client_reads_no_more_than_its_cap(sync_env):
    """A Content-Length of 10^12, then an endless body without one: the answer is refused
    at the header, or one chunk past 8 MiB; the peak stays that of a refused connection."""
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        refused_url = f"http://127.0.0.1:{closed.getsockname()[1]}"
    code, out, baseline = _sync_once(sync_env(refused_url))
    assert code == 0 and "cannot connect" in out, out
    with serving(huge_length(threading.Event())) as server:
        code, out, huge_rss = _sync_once(sync_env(server.url))
    assert code == 0 and "answer larger than 8388608 bytes (Content-Length 1000000000000)" \
        in out, out
    stop = threading.Event()
    with serving(endless(stop)) as server:
        code, out, endless_rss = _sync_once(sync_env(server.url))
        stop.set()
    assert code == 0 and "answer larger than 8388608 bytes, not read" in out, out
    assert huge_rss - baseline < 8, (baseline, huge_rss)
    assert endless_rss - baseline < 32, (baseline, endless_rss)


@pytest.mark.parametrize("part", ["headers", "body"])
def test_a_trickling_registry_is_given_up_at_the_deadline(sync_env, part):
    """One byte every half second never trips a 2-second timeout per read: the deadline
    of the whole request does."""
    stop = threading.Event()
    status = b"HTTP/1.1 200 OK\r\nContent-Length: 5000\r\n\r\n"
    answer = trickle(status, 0.5, stop) if part == "headers" else \
        trickle(b"{", 0.5, stop, head=status)
    with serving(answer) as server:
        started = time.monotonic()
        code, out, _ = _sync_once(sync_env(server.url, timeout_s=2), timeout=30)
        elapsed = time.monotonic() - started
        stop.set()
    assert code == 0 and "within the 2 s deadline" in out, out
    assert server.lifetimes and max(server.lifetimes) < 2.6, server.lifetimes
    assert elapsed < 15


# -- the BDPM download ---------------------------------------------------------------------
def test_the_bdpm_download_gives_up_at_its_deadline(tmp_path):
    stop = threading.Event()
    status = b"HTTP/1.1 200 OK\r\nContent-Length: 5000\r\n\r\n"
    with serving(trickle(b"x", 0.5, stop, head=status)) as server:
        started = time.monotonic()
        with pytest.raises(StoreError, match="within the 2 s deadline"):
            import_bdpm(tmp_path, f"{server.url}/bdpm.zip", deadline_s=2)
        stop.set()
    assert time.monotonic() - started < 2.6
    assert not referential_path(tmp_path).exists()


def test_the_bdpm_download_reads_no_more_than_its_cap(tmp_path):
    with serving(huge_length(threading.Event())) as server, \
            pytest.raises(ValidationError, match="Content-Length 1000000000000"):
        import_bdpm(tmp_path, f"{server.url}/bdpm.zip")


def _redirect(location: str) -> Callable[[socket.socket], None]:
    return lambda sock: sock.sendall(b"HTTP/1.1 302 Found\r\nLocation: " + location.encode()
                                     + b"\r\nContent-Length: 0\r\n\r\n")


def test_the_bdpm_download_refuses_redirects_off_https_or_off_the_host(tmp_path, http_server):
    plain, _ = http_server()  # serves the small release at /bdpm.zip
    tls_files, ca = http_server(tls=True)
    port = plain.rsplit(":", 1)[1]
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(tmp_path / "cert.pem", tmp_path / "key.pem")
    with serving(_redirect(f"http://127.0.0.1:{port}/bdpm.zip"), tls=tls) as server, \
            pytest.raises(StoreError, match="redirect from https to http"):
        import_bdpm(tmp_path / "a", f"{server.url}/x.zip", ca_file=str(ca))
    with serving(_redirect(f"http://localhost:{port}/bdpm.zip")) as server, \
            pytest.raises(StoreError, match="redirect to another host: localhost"):
        import_bdpm(tmp_path / "b", f"{server.url}/x.zip")
    assert not referential_path(tmp_path / "a").exists()
    assert not referential_path(tmp_path / "b").exists()
    with serving(_redirect(f"{tls_files}/bdpm.zip"), tls=tls) as server:  # same host, https
        report = import_bdpm(tmp_path / "c", f"{server.url}/x.zip", ca_file=str(ca))
    assert report.counts["specialty"] == len(SPECS)


def test_the_doctor_registry_probe_gives_up_at_its_deadline():
    from appliance.errors import RegistryError
    from appliance.ops import probes

    stop = threading.Event()
    with serving(trickle(b"HTTP/1.1 200 OK\r\n", 0.5, stop)) as server:
        started = time.monotonic()
        with pytest.raises(RegistryError, match="no answer within 2 s"):
            probes.registry_probe(server.url, ca_file="", client_cert="", client_key="",
                                  timeout=2)
        stop.set()
    assert time.monotonic() - started < 2.6
