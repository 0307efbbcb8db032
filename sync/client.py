"""The registry adapter: FHIR R4 JSON over HTTPS with mutual TLS (httpx). Implements
``appliance.ports.Registry``.

TLS is always verified: against ``[registry] ca_file`` when set (and only it), else the
system store; the establishment certificate (``client_cert``/``client_key``) authenticates the
appliance. Plain ``http://`` is accepted only towards a loopback address (the local reference
registry in tests and demos). Nothing is opened before the first request.

Every failure leaves as a ``RegistryError`` (tree in ``appliance.ports``):

- no connection at all (refused, DNS, TLS handshake or certificate refused) →
  ``RegistryUnavailable(connect=True)``;
- timeout, connection reset or closed before the answer, 408, 5xx, unreadable answer →
  ``RegistryUnavailable``; 429 (and 503 with ``Retry-After``) → ``RegistryThrottled``
  with ``retry_after`` in seconds;
- 409 → ``RegistryConflict``; any other 4xx with an ``OperationOutcome`` →
  ``RegistryRejected`` with the registry's reason;
- a link set up wrong (``sync.link``: a redirection, an answer that is not FHIR, a
  401/403/404/405 that ``GET [base]/metadata`` confirms, a certificate refused either way)
  → ``RegistryMisconfigured`` naming the setting to fix.

Every request is bounded (``appliance.http_limits``): ``timeout_s`` is the deadline of the
whole request (connection, TLS, headers and body together), not of each read; the answer is
read as a stream and refused past ``MAX_ANSWER_BYTES`` (a ``Content-Length`` over it before
a byte of the body is read), asked uncompressed; redirects are never followed.

A drain sends thousands of requests on one keep-alive connection: each goes straight to
the connection pool (``BoundedTransport.exchange``) with its URL parsed and its headers
merged once for the client, not through ``httpx.Client.send`` (URL parsing, header merging,
cookies, auth and redirect machinery, request and response models per request: half of a
request's CPU, for none of which the registry link has a use). When the environment names a
proxy (``HTTPS_PROXY``, ``ALL_PROXY``…), requests go through the client as before, which
routes them; a transport given to the constructor (tests) gets httpx's requests.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import socket
import ssl
import urllib.request
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode, urlsplit

import httpcore
import httpx

from appliance.config import Registry as RegistrySettings
from appliance.domain.backoff import parse_retry_after
from appliance.domain.prescription import Prescription
from appliance.errors import (
    ConfigError,
    RegistryConflict,
    RegistryMisconfigured,
    RegistryRejected,
    RegistryThrottled,
    RegistryUnavailable,
    ValidationError,
)
from appliance.http_limits import (
    IDENTITY,
    Answer,
    AnswerTooLarge,
    BoundedTransport,
    CompressedAnswer,
    deadline,
    read_capped,
)
from appliance.ports.registry import (
    AuditHead,
    DispensationPage,
    RegistryReceipt,
    SignatureProof,
)
from sync import codes, fhir, link

log = logging.getLogger(__name__)

USER_AGENT = "ordo-edge sync"
# httpcore writes the headers and the body of a request separately: without TCP_NODELAY the
# body waits for the ACK of the headers (Nagle, RFC 896, against delayed ACKs).
SOCKET_OPTIONS = [(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)]
MAX_ANSWER_BYTES = 8 * 1024 * 1024  # a page of 1,000 dispensations is about 2 MB
METADATA = "/metadata"
# ``json.dumps(..., ensure_ascii=False)``, the same bytes, without the circular-reference
# check (a fresh tree of dicts and lists: a cycle would be a RecursionError): 15 % cheaper.
_BODY_ENCODER = json.JSONEncoder(ensure_ascii=False, check_circular=False)
_CONTENT_TYPE = (b"Content-Type", codes.FHIR_JSON.encode("ascii"))


def is_loopback(host: str | None) -> bool:
    if not host:
        return False
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _tls_cause(exc: BaseException) -> ssl.SSLError | None:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, ssl.SSLError):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    text = str(exc)
    if "SSL" in text or "alert" in text or "CERTIFICATE" in text:
        return ssl.SSLError(text)
    return None


def _proxied(client: httpx.Client) -> bool:
    """Whether the environment names a proxy the client would route requests through."""
    if not client.trust_env:
        return False
    found = urllib.request.getproxies()
    return any(found.get(scheme) for scheme in ("http", "https", "all"))


class RegistryClient:
    """One keep-alive HTTP client to the registry's FHIR base URL."""

    def __init__(self, base_url: str, *, ca_file: str = "", client_cert: str = "",
                 client_key: str = "", timeout_s: float = 10.0,
                 transport: httpx.BaseTransport | None = None) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in {"http", "https"} or not parts.hostname:
            raise ConfigError("registry.url", base_url, "an http(s) URL")
        if parts.scheme == "http" and not is_loopback(parts.hostname):
            raise ConfigError("registry.url", base_url,
                              "https (plain http only towards a loopback address)")
        if client_key and not client_cert:
            raise ConfigError("registry.client_cert", "", "the certificate of client_key")
        self.base_url = base_url.rstrip("/")
        self._tls = parts.scheme == "https"
        self._ca_file, self._cert, self._key = ca_file, client_cert, client_key
        self._timeout = httpx.Timeout(timeout_s, connect=min(timeout_s, 5.0))
        self._deadline_s = timeout_s
        self._transport = transport
        self._client: httpx.Client | None = None
        # what ``request`` reuses for every request (set with the client, ``_http``)
        self._direct: httpx.BaseTransport | None = None
        self._pool: BoundedTransport | None = None
        self._headers: list[tuple[bytes, bytes]] = []
        self._extensions: dict[str, Any] = {"timeout": self._timeout.as_dict()}
        self._urls: dict[str, tuple[httpx.URL, httpcore.URL]] = {}

    @classmethod
    def from_settings(cls, settings: RegistrySettings) -> RegistryClient:
        return cls(settings.url, ca_file=settings.ca_file, client_cert=settings.client_cert,
                   client_key=settings.client_key, timeout_s=settings.timeout_s)

    # -- connection -------------------------------------------------------------------------
    def _ssl_context(self) -> ssl.SSLContext:
        try:
            ctx = ssl.create_default_context(cafile=self._ca_file or None)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError("registry.ca_file", self._ca_file,
                              f"a readable PEM bundle ({exc})") from exc
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        if self._cert:
            try:
                ctx.load_cert_chain(self._cert, self._key or None)
            except (OSError, ssl.SSLError) as exc:
                raise ConfigError("registry.client_cert", self._cert,
                                  f"a readable PEM certificate and key ({exc})") from exc
        return ctx

    def _http(self) -> httpx.Client:
        if self._client is None:
            try:
                verify: ssl.SSLContext | bool = self._ssl_context() if self._tls else True
            except ConfigError as exc:  # a file of [registry] unreadable: the link's setting
                raise RegistryMisconfigured(exc.key, f"{exc.value!r} : attendu "
                                                     f"{exc.expected}") from exc
            transport = self._transport or BoundedTransport(
                verify=verify, socket_options=SOCKET_OPTIONS)
            self._client = httpx.Client(
                verify=verify, timeout=self._timeout, transport=transport,
                headers={"Accept": codes.FHIR_JSON, "User-Agent": USER_AGENT, **IDENTITY},
                follow_redirects=False)
            self._headers = list(self._client.headers.raw)
            self._direct = None if _proxied(self._client) else transport
            self._pool = self._direct if isinstance(self._direct, BoundedTransport) else None
        return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None
            self._direct = self._pool = None

    def _url(self, path: str) -> tuple[httpx.URL, httpcore.URL]:
        """The parsed URL of ``path`` under the base, as httpx and httpcore take it (the few
        paths a drain uses are kept)."""
        urls = self._urls.get(path)
        if urls is None:
            url = httpx.URL(self.base_url + path)
            urls = url, httpcore.URL(scheme=url.raw_scheme, host=url.raw_host, port=url.port,
                                     target=url.raw_path)
            if len(self._urls) < 32:  # paths with a query (cursors) are not worth keeping
                self._urls[path] = urls
        return urls

    def _exchange(self, method: str, path: str, body: bytes | None) -> Answer | httpx.Response:
        """Send one request; its answer, read whole (``Answer``) or streamed and unread."""
        client = self._http()
        if self._direct is None:  # through a proxy: the client routes the request
            headers = {"Content-Type": codes.FHIR_JSON} if body is not None else None
            return client.send(client.build_request(method, self.base_url + path,
                                                    content=body, headers=headers),
                               stream=True)
        url, core = self._url(path)
        headers = self._headers
        if body is not None:
            headers = [*headers, _CONTENT_TYPE]
        if self._pool is not None:
            return self._pool.exchange(method.encode("ascii"), core,
                                       [(b"Host", url.netloc), *headers], body,
                                       self._extensions, MAX_ANSWER_BYTES)
        return self._direct.handle_request(httpx.Request(
            method, url, headers=headers, content=body, extensions=self._extensions))

    # -- requests ---------------------------------------------------------------------------
    def request(self, method: str, path: str, body: bytes | None = None) -> Any:
        """Send one request; return the decoded JSON answer or raise a ``RegistryError``."""
        try:
            with deadline(self._deadline_s):
                response = self._exchange(method, path, body)
                if isinstance(response, Answer):
                    content = response.content
                else:
                    try:
                        content = read_capped(response, MAX_ANSWER_BYTES)
                    finally:
                        response.close()
        except AnswerTooLarge as exc:
            raise RegistryUnavailable(f"unreadable answer: {exc}") from exc
        except CompressedAnswer as exc:
            raise RegistryUnavailable(f"unreadable answer: {exc}") from exc
        except httpx.TimeoutException as exc:
            connect = isinstance(exc, httpx.ConnectTimeout | httpx.PoolTimeout)
            said = f": {exc}" if "deadline" in str(exc) else ""
            raise RegistryUnavailable(f"timeout ({type(exc).__name__}{said})",
                                      connect=connect) from exc
        except httpx.TransportError as exc:
            tls = _tls_cause(exc)
            if tls is not None:
                wrong = link.tls_misconfiguration(tls, urlsplit(self.base_url).hostname or "")
                if wrong is not None:
                    raise wrong from exc
                raise RegistryUnavailable(f"TLS refused: {tls}", connect=True) from exc
            if isinstance(exc, httpx.ConnectError):
                raise RegistryUnavailable(f"cannot connect: {exc}", connect=True) from exc
            raise RegistryUnavailable(f"connection lost: {exc or type(exc).__name__}") from exc
        except httpx.DecodingError as exc:
            raise RegistryUnavailable(f"unreadable answer: {exc}") from exc
        return self._answer(response, content, path)

    def _answer(self, response: httpx.Response | Answer, content: bytes, path: str = "") -> Any:
        status = response.status_code
        if 300 <= status < 400:
            raise link.redirected(status, response.headers.get("Location"), self.base_url)
        try:
            body = json.loads(content) if content else None
        except (ValueError, RecursionError):  # not JSON, or nested deeper than json allows
            body = None
        if 200 <= status < 300:
            if not link.is_fhir(body):
                raise link.not_fhir(status, response.headers.get("Content-Type"),
                                    self.base_url + path)
            return body
        reason = fhir.outcome_reason(body) or response.reason_phrase or f"HTTP {status}"
        retry_after = parse_retry_after(response.headers.get("Retry-After"))
        if status == 429 or (status == 503 and retry_after is not None):
            raise RegistryThrottled(f"throttled ({status}): {reason}", status=status,
                                    retry_after=retry_after)
        if status == 408 or status >= 500:
            raise RegistryUnavailable(f"registry error ({status}): {reason}", status=status,
                                      retry_after=retry_after)
        if 400 <= status < 500:
            if not link.is_outcome(body):
                raise link.not_fhir(status, response.headers.get("Content-Type"),
                                    self.base_url + path)
            if path == METADATA:
                raise link.base_refused(status, reason, self.base_url)
            if link.needs_confirmation(status):
                self.check()  # raises RegistryMisconfigured when the base itself is wrong
            if status == 409:
                raise RegistryConflict(status, reason)
            raise RegistryRejected(status, reason)
        raise RegistryUnavailable(f"unexpected answer (HTTP {status})", status=status)

    # -- the Registry port ----------------------------------------------------------------------
    def register(self, prescription: Prescription, proof: SignatureProof) -> RegistryReceipt:
        return self.register_bundle(self.encode_registration(prescription, proof))

    def encode_registration(self, prescription: Prescription, proof: SignatureProof) -> bytes:
        """The body ``register`` posts: the transaction Bundle as UTF-8 JSON. No I/O, so
        that the engine builds it ahead, while the previous requests are on the wire."""
        return _BODY_ENCODER.encode(fhir.prescription_bundle(prescription, proof)).encode("utf-8")

    def register_bundle(self, body: bytes) -> RegistryReceipt:
        """POST an already serialised transaction Bundle to the base URL."""
        answer = self.request("POST", "", body)
        try:
            return fhir.parse_receipt(answer)
        except ValidationError as exc:
            raise RegistryUnavailable(f"unreadable receipt: {exc}") from exc

    def cancel(self, prescription_id: str, reason: str) -> RegistryReceipt:
        body = json.dumps(fhir.cancel_parameters(prescription_id, reason),
                          ensure_ascii=False).encode("utf-8")
        answer = self.request("POST", f"/MedicationRequest/{codes.CANCEL_OPERATION}", body)
        try:
            return fhir.parse_receipt(answer, resource_type="Parameters")
        except ValidationError as exc:
            raise RegistryUnavailable(f"unreadable cancellation receipt: {exc}") from exc

    def dispensations(self, cursor: str | None, limit: int) -> DispensationPage:
        query = {"_count": str(limit)}
        if cursor:
            query["_cursor"] = cursor
        answer = self.request("GET", "/MedicationDispense?" + urlencode(query))
        try:
            return fhir.dispensation_page(answer)
        except ValidationError as exc:
            raise RegistryUnavailable(f"unreadable dispensation page: {exc}") from exc

    def anchor_audit(self, finess: str, seq: int, digest: str) -> AuditHead:
        """POST the audit chain's head as an AuditEvent (``sync.codes``)."""
        body = json.dumps(fhir.audit_anchor(finess, seq, digest, datetime.now(UTC)),
                          ensure_ascii=False).encode("utf-8")
        answer = self.request("POST", f"/{codes.AUDIT_ANCHOR_RESOURCE}", body)
        try:
            head = fhir.audit_head(answer)
        except ValidationError as exc:
            raise RegistryUnavailable(f"unreadable anchor receipt: {exc}") from exc
        if (head.seq, head.digest) != (seq, digest) or not head.receipt_id:
            raise RegistryUnavailable("the anchor receipt does not match the head sent")
        return head

    def audit_anchors(self, finess: str) -> list[AuditHead]:
        """Every anchor the registry holds for ``finess`` (a searchset), oldest first."""
        query = urlencode({"source-identifier": f"{codes.FINESS_SYSTEM}|{finess}"})
        answer = self.request("GET", f"/{codes.AUDIT_ANCHOR_RESOURCE}?{query}")
        if not isinstance(answer, dict) or answer.get("resourceType") != "Bundle":
            raise RegistryUnavailable("the registry's anchors are not a Bundle")
        try:
            heads = [fhir.audit_head(entry.get("resource"))
                     for entry in answer.get("entry") or [] if isinstance(entry, dict)]
        except ValidationError as exc:
            raise RegistryUnavailable(f"unreadable anchor: {exc}") from exc
        return sorted(heads, key=lambda h: (h.seq, h.received_at))

    def capabilities(self) -> dict[str, Any]:
        """``GET [base]/metadata``: a cheap check that the link and the mTLS work."""
        answer = self.request("GET", METADATA)
        if not isinstance(answer, dict) or answer.get("resourceType") != "CapabilityStatement":
            raise RegistryMisconfigured(link.URL, f"{self.base_url}{METADATA} ne renvoie pas "
                                                  "de CapabilityStatement FHIR")
        return answer

    def check(self) -> None:
        """The probe of the link: ``GET [base]/metadata`` (one small answer). Returns when
        the registry answers as a FHIR base; raises ``RegistryUnavailable`` (network) or
        ``RegistryMisconfigured`` (the setting to fix)."""
        self.capabilities()
