"""The reference registry's HTTP server: stdlib ``ThreadingHTTPServer``, TLS with client
certificates by ``ssl``, HTTP/1.1 keep-alive.

Endpoints (``[base]`` = ``/fhir``)::

    POST [base]                           transaction Bundle: record a prescription (200;
                                          same ID and content: 200, the original receipt;
                                          other content: 409; bad signature: 422)
    POST [base]/MedicationRequest/$cancel Parameters: cancel (200; after dispensation: 409)
    GET  [base]/MedicationDispense?_cursor=N&_count=M
                                          searchset of dispensations after N for the caller,
                                          residents who objected left out; ``next`` link
    GET  [base]/metadata                  CapabilityStatement
    POST [base]/AuditEvent                an appliance's audit chain head (201, with the
                                          anchor's id and meta.lastUpdated: the receipt)
    GET  [base]/AuditEvent?source-identifier=urn:oid:1.2.250.1.71.4.2.2|FINESS
                                          the heads the caller sent for that FINESS, oldest
                                          first (kept for good: never changed or deleted)
    POST /pharmacy/dispense               JSON: the pharmacy side records a dispensation
    GET  /_sim/stats, PUT /_sim/faults    counters; fault settings (JSON of ``Faults``)

The caller is the subject of its client certificate (mutual TLS, required when TLS is on);
plain HTTP is refused unless asked for, and then only on a loopback address. Faults
(``faults.py``) apply to the ``[base]`` endpoints only.
"""

from __future__ import annotations

import collections
import contextlib
import json
import logging
import socket
import socketserver
import ssl
import struct
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from appliance.errors import ConfigError, ValidationError
from sync import codes, fhir
from sync.client import is_loopback
from sync.registry_sim.db import (
    BadRequest,
    Conflict,
    Forbidden,
    NotFound,
    RegistryDB,
    Substitute,
    row_dispensation,
)
from sync.registry_sim.faults import FaultPlan, Faults
from sync.registry_sim.submission import Invalid, parse_submission
from sync.registry_sim.verify import SignatureRejected, TrustStore, verify_submission

log = logging.getLogger(__name__)

BASE = "/fhir"
MAX_BODY = 4 * 1024 * 1024
HANDSHAKE_TIMEOUT_S = 10.0
IDLE_TIMEOUT_S = 30.0
DEFAULT_PAGE, MAX_PAGE = 100, 1000
JSON = "application/json"


@dataclass
class SimConfig:
    db_path: Path
    host: str = "127.0.0.1"
    port: int = 0
    tls_cert: str | None = None
    tls_key: str | None = None
    client_ca: str | None = None
    plain_http: bool = False
    trust_roots: tuple[str, ...] = ()
    crls: tuple[str, ...] = ()
    faults: Faults = field(default_factory=Faults)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], sim: RegistrySim,
                 context: ssl.SSLContext | None) -> None:
        self.sim, self.context = sim, context
        self.connections: set[Any] = set()  # open client sockets, cut at ``stop``
        self._connections_lock = threading.Lock()
        super().__init__(address, _Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._connections_lock:
            self.connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._connections_lock:
            self.connections.discard(request)
        super().shutdown_request(request)

    def cut_connections(self) -> None:
        """Close the kept-alive connections too: a stopped registry answers nothing."""
        with self._connections_lock:
            open_now = list(self.connections)
        for request in open_now:
            with contextlib.suppress(OSError):
                request.shutdown(socket.SHUT_RDWR)

    def server_bind(self) -> None:
        # HTTPServer.server_bind would resolve the host name (a DNS call): not needed here.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name, self.server_port = str(host), int(port)

    def finish_request(self, request: Any, client_address: Any) -> None:
        if self.context is None:
            self.RequestHandlerClass(request, client_address, self)
            return
        request.settimeout(HANDSHAKE_TIMEOUT_S)
        try:
            tls = self.context.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError) as exc:
            self.sim.count("tls_refused")
            log.info("TLS handshake refused", extra={"fields": {"reason": str(exc)[:120]}})
            return
        try:
            tls.settimeout(IDLE_TIMEOUT_S)
            self.RequestHandlerClass(tls, client_address, self)
        finally:
            with contextlib.suppress(OSError):
                tls.close()


def _subject(cert: dict[str, Any] | None) -> str:
    if not cert:
        return ""
    parts = [f"{k}={v}" for rdn in cert.get("subject", ()) for k, v in rdn]
    return ",".join(parts)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "OrdoRegistrySim/1"
    # Headers and body are two writes: without TCP_NODELAY each keep-alive answer waits
    # for the client's delayed ACK (~40 ms on Linux).
    disable_nagle_algorithm = True
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("http " + format, *args)

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    # -- plumbing -------------------------------------------------------------------------------
    @property
    def submitter(self) -> str:
        if isinstance(self.connection, ssl.SSLSocket):
            return _subject(self.connection.getpeercert())
        return ""

    def _body(self) -> bytes | None:
        if self.command == "GET":
            return b""
        length = self.headers.get("Content-Length")
        if length is None or not length.isdigit():
            self._send(411, fhir.operation_outcome("invalid", "Content-Length required"))
            return None
        size = int(length)
        if size > MAX_BODY:
            self._send(413, fhir.operation_outcome("too-costly", "request too large"))
            self.close_connection = True
            return None
        return self.rfile.read(size)

    def _send(self, status: int, payload: Any, headers: dict[str, str] | None = None,
              content_type: str = codes.FHIR_JSON) -> None:
        data = json.dumps(payload, ensure_ascii=False).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data)

    def _reset(self) -> None:
        """Abort the connection with a TCP RST (SO_LINGER 0), no answer."""
        self.close_connection = True
        try:
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                       struct.pack("ii", 1, 0))
            self.connection.close()
        except OSError:
            pass

    def _drop(self) -> None:
        """Close the connection without an answer (after the work was committed)."""
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)

    def _dispatch(self, method: str) -> None:
        path, _, query = self.path.partition("?")
        body = self._body()
        if body is None:
            return
        sim = self.server.sim
        sim.count("requests")
        try:
            if path == BASE or path.startswith(BASE + "/"):
                self._fhir(sim, method, path[len(BASE):].rstrip("/"), query, body)
            elif path == "/pharmacy/dispense" and method == "POST":
                self._send(*sim.pharmacy_dispense(body), content_type=JSON)
            elif path == "/_sim/stats" and method == "GET":
                self._send(200, sim.stats(), content_type=JSON)
            elif path == "/_sim/faults" and method == "PUT":
                self._send(*sim.set_faults_json(body), content_type=JSON)
            else:
                self._send(404, fhir.operation_outcome("not-found", f"no route {method} {path}"))
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def _fhir(self, sim: RegistrySim, method: str, route: str, query: str, body: bytes) -> None:
        decision = sim.plan.decide()
        sim.arrivals.append((time.monotonic(), method, route, decision.outcome))
        if decision.latency_s:
            time.sleep(decision.latency_s)
        if decision.outcome == "reset":
            self._reset()
            return
        if decision.outcome in ("500", "503"):
            self._send(int(decision.outcome),
                       fhir.operation_outcome("transient", "injected fault"))
            return
        if decision.outcome == "429":
            self._send(429, fhir.operation_outcome("throttled", "slow down"),
                       {"Retry-After": str(sim.plan.faults.retry_after_s)})
            return
        status, payload = sim.handle_fhir(method, route, query, body, self.submitter)
        if decision.outcome == "drop":
            self._drop()
            return
        self._send(status, payload)


class RegistrySim:
    """The reference registry: ``start()`` serves in a background thread."""

    def __init__(self, config: SimConfig, trust: TrustStore | None = None) -> None:
        self.config = config
        self.db = RegistryDB(config.db_path)
        self.plan = FaultPlan(config.faults)
        self.trust = trust
        self.arrivals: collections.deque = collections.deque(maxlen=100_000)
        self._counts: collections.Counter = collections.Counter()
        self._lock = threading.Lock()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ------------------------------------------------------------------------------
    def _context(self) -> ssl.SSLContext | None:
        c = self.config
        if c.plain_http:
            if not is_loopback(c.host):
                raise ConfigError("--host", c.host, "a loopback address for plain HTTP")
            return None
        if not (c.tls_cert and c.tls_key and c.client_ca):
            raise ConfigError("--tls-cert/--tls-key/--client-ca", None,
                              "the server certificate, its key and the CA of the clients "
                              "(or --plain-http on a loopback address)")
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        try:
            ctx.load_cert_chain(c.tls_cert, c.tls_key)
            ctx.load_verify_locations(c.client_ca)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError("--tls-cert", c.tls_cert, f"readable PEM files ({exc})") from exc
        ctx.verify_mode = ssl.CERT_REQUIRED
        return ctx

    def start(self) -> RegistrySim:
        context = self._context()
        if self.trust is None:
            try:
                self.trust = TrustStore.load(self.config.trust_roots, self.config.crls)
            except (OSError, ValueError) as exc:
                raise ConfigError("--trust-root", list(self.config.trust_roots),
                                  f"readable PEM certificates and CRLs ({exc})") from exc
        self.db.open()
        try:
            self._server = _Server((self.config.host, self.config.port), self, context)
        except OSError as exc:
            self.db.close()
            raise ConfigError("--port", self.config.port, f"a free port ({exc})") from exc
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        kwargs={"poll_interval": 0.1},
                                        name="registry-sim", daemon=True)
        self._thread.start()
        log.info("registry simulator listening", extra={"fields": {"url": self.url}})
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server.cut_connections()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        self.db.close()

    def __enter__(self) -> RegistrySim:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        assert self._server is not None
        return self._server.server_port

    @property
    def url(self) -> str:
        scheme = "http" if self.config.plain_http else "https"
        return f"{scheme}://{self.config.host}:{self.port}{BASE}"

    # -- counters and faults --------------------------------------------------------------------
    def count(self, key: str, n: int = 1) -> None:
        with self._lock:
            self._counts[key] += n

    def stats(self) -> dict[str, Any]:
        with self._lock:
            counts = dict(self._counts)
        return {"counts": counts, "faults": dict(self.plan.counts), "held": self.db.count()}

    def set_faults(self, faults: Faults) -> None:
        self.plan.replace(faults)

    def set_faults_json(self, body: bytes) -> tuple[int, Any]:
        try:
            self.set_faults(Faults.from_dict(json.loads(body)))
        except (ValueError, TypeError) as exc:
            return 400, {"error": str(exc)}
        return 200, {"faults": self.plan.faults.__dict__}

    # -- FHIR -----------------------------------------------------------------------------------
    def handle_fhir(self, method: str, route: str, query: str, body: bytes,
                    submitter: str) -> tuple[int, Any]:
        now = datetime.now(UTC)
        if method == "POST" and route == "":
            return self._create(body, submitter, now)
        if method == "POST" and route == f"/MedicationRequest/{codes.CANCEL_OPERATION}":
            return self._cancel(body, submitter, now)
        if method == "GET" and route == "/MedicationDispense":
            return self._feed(query, submitter)
        if method == "GET" and route == "/metadata":
            return 200, capability_statement(now)
        if route == f"/{codes.AUDIT_ANCHOR_RESOURCE}" and method in ("GET", "POST"):
            return (self._anchor(body, submitter, now) if method == "POST"
                    else self._anchors(query, submitter))
        return 404, fhir.operation_outcome("not-supported", f"{method} {BASE}{route}")

    def _create(self, body: bytes, submitter: str, now: datetime) -> tuple[int, Any]:
        try:
            bundle = json.loads(body)
            sub = parse_submission(bundle)
            if sub.signed_part is None:
                raise Invalid(422, "the Provenance lacks the signed part")
            assert self.trust is not None
            verify_submission(signed_part=sub.signed_part, signature=sub.signature,
                              cert_der=sub.cert_der, canonical=sub.canonical,
                              content=sub.content, trust=self.trust)
            response, again = self.db.register(sub, body.decode("utf-8"), submitter, now)
        except ValueError as exc:  # JSON
            self.count("bad_requests")
            return 400, fhir.operation_outcome("structure", f"not JSON: {exc}")
        except Invalid as exc:
            self.count("rejected")
            return exc.status, fhir.operation_outcome(
                "structure" if exc.status == 400 else "business-rule", exc.reason)
        except SignatureRejected as exc:
            self.count("rejected")
            return 422, fhir.operation_outcome("security", f"signature refused: {exc.reason}")
        except Conflict as exc:
            self.count("conflicts")
            return 409, fhir.operation_outcome("conflict", str(exc))
        self.count("replayed" if again else "created")
        return 200, response

    def _anchor(self, body: bytes, submitter: str, now: datetime) -> tuple[int, Any]:
        """Store an audit chain head (an AuditEvent, ``sync.codes``); 201 with its id."""
        try:
            resource = json.loads(body)
            head = fhir.audit_head(resource)
            who = resource["source"]["observer"]["identifier"]
            if who.get("system") != codes.FINESS_SYSTEM or not who.get("value"):
                raise KeyError("source")
        except (ValueError, KeyError, TypeError, AttributeError, ValidationError) as exc:
            return 400, fhir.operation_outcome("structure", f"expected an AuditEvent with "
                                               f"the chain's head and a FINESS ({exc})")
        stored = self.db.add_anchor(str(who["value"]), head.seq, head.digest, resource,
                                    submitter, now)
        self.count("anchors")
        return 201, stored

    def _anchors(self, query: str, submitter: str) -> tuple[int, Any]:
        wanted = parse_qs(query).get("source-identifier", [""])[0]
        system, _, finess = wanted.partition("|")
        if system != codes.FINESS_SYSTEM or not finess:
            return 400, fhir.operation_outcome("invalid", "source-identifier="
                                               f"{codes.FINESS_SYSTEM}|FINESS expected")
        entries = [{"fullUrl": f"{self.url}/{codes.AUDIT_ANCHOR_RESOURCE}/{r['id']}",
                    "resource": r, "search": {"mode": "match"}}
                   for r in self.db.anchors(finess, submitter)]
        return 200, {"resourceType": "Bundle", "type": "searchset", "total": len(entries),
                     "entry": entries}

    def _cancel(self, body: bytes, submitter: str, now: datetime) -> tuple[int, Any]:
        try:
            params = json.loads(body)
            values = {p.get("name"): p for p in params.get("parameter", [])
                      if isinstance(p, dict)}
            ident = values["groupIdentifier"]["valueIdentifier"]
            if ident.get("system") != codes.PRESCRIPTION_ID_SYSTEM:
                raise KeyError("system")
            pid = str(ident["value"])
            reason = str(values.get("reason", {}).get("valueString", ""))
        except (ValueError, KeyError, TypeError, AttributeError):
            return 400, fhir.operation_outcome("structure", "expected Parameters with "
                                               "groupIdentifier and reason")
        try:
            answer, again = self.db.cancel(pid, reason, submitter, now)
        except NotFound as exc:
            return 404, fhir.operation_outcome("not-found", str(exc))
        except Forbidden as exc:
            return 403, fhir.operation_outcome("forbidden", str(exc))
        except Conflict as exc:
            self.count("cancel_conflicts")
            return 409, fhir.operation_outcome("conflict", str(exc))
        self.count("cancel_replayed" if again else "cancelled")
        return 200, answer

    def _feed(self, query: str, submitter: str) -> tuple[int, Any]:
        args = parse_qs(query)
        try:
            cursor = int(args.get("_cursor", ["0"])[0])
            count = int(args.get("_count", [str(DEFAULT_PAGE)])[0])
        except ValueError:
            return 400, fhir.operation_outcome("invalid", "_cursor and _count are integers")
        if cursor < 0 or not 1 <= count <= MAX_PAGE:
            return 400, fhir.operation_outcome("invalid", f"_count in 1..{MAX_PAGE}, _cursor>=0")
        rows = self.db.feed(submitter, cursor, count)
        entries = []
        for _, row in rows:
            d, first, reference = row_dispensation(row)
            resource = fhir.medication_dispense(d, first_fill=first, request_reference=reference)
            entries.append({"fullUrl": f"{self.url}/MedicationDispense/{d.registry_id}",
                            "resource": resource, "search": {"mode": "match"}})
        links = [{"relation": "self",
                  "url": f"{self.url}/MedicationDispense?_cursor={cursor}&_count={count}"}]
        if rows:
            links.append({"relation": "next", "url": f"{self.url}/MedicationDispense?"
                          f"_cursor={rows[-1][0]}&_count={count}"})
        self.count("dispensations_served", len(rows))
        return 200, {"resourceType": "Bundle", "type": "searchset", "link": links,
                     "entry": entries}

    # -- pharmacy ---------------------------------------------------------------------------------
    def pharmacy_dispense(self, body: bytes) -> tuple[int, Any]:
        try:
            data = json.loads(body)
            sub = data.get("substitute")
            substitute = Substitute(**sub) if sub else None
            done = self.db.dispense(
                str(data["prescription_id"]), line=data.get("line"),
                complete=bool(data.get("complete", True)),
                quantity=None if data.get("quantity") is None else str(data["quantity"]),
                unit=data.get("unit"), substitute=substitute,
                objection=bool(data.get("objection", False)), pharmacy=data.get("pharmacy"))
        except (ValueError, KeyError, TypeError, AttributeError, BadRequest) as exc:
            return 400, {"error": str(exc)}
        except NotFound as exc:
            return 404, {"error": str(exc)}
        except Conflict as exc:
            return 409, {"error": str(exc)}
        return 201, {"dispensations": [dispensation_json(d) for d in done]}


def dispensation_json(d: Any) -> dict[str, Any]:
    return {"id": d.registry_id, "prescription_id": d.prescription_id, "line": d.line,
            "complete": d.complete, "product": d.product_label, "code": d.product_code,
            "quantity": None if d.quantity is None else format(d.quantity, "f"),
            "unit": d.unit, "substituted": d.substituted,
            "substitution_type": d.substitution_type, "reason": d.substitution_reason,
            "at": d.handed_over_at.isoformat()}


def capability_statement(now: datetime) -> dict[str, Any]:
    return {
        "resourceType": "CapabilityStatement", "status": "active", "kind": "instance",
        "date": fhir.instant(now), "fhirVersion": codes.FHIR_VERSION, "format": ["json"],
        "software": {"name": "Ordo reference registry (simulator)"},
        "rest": [{"mode": "server",
                  "interaction": [{"code": "transaction"}],
                  "resource": [{"type": "MedicationRequest", "operation": [
                                    {"name": "cancel",
                                     "definition": "https://ordo.invalid/fhir/OperationDefinition/cancel"}]},
                               {"type": "MedicationDispense",
                                "interaction": [{"code": "search-type"}]}]}],
    }
