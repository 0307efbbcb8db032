"""Bounded HTTP for every client Ordo runs (the registry, the BDPM download).

httpx's timeouts apply to each network operation: a server sending one byte every two
seconds never trips a ten-second read timeout, and ``response.content`` reads a body
whole before anything can look at its size. Here:

- **A total deadline per request** (``deadline(seconds)``): connecting, the TLS handshake,
  sending, the headers and the body together. ``BoundedTransport`` builds httpx's own
  connection pool on a network backend whose every operation gets at most the time left
  (CPython bounds a whole TLS handshake by its socket timeout); past the deadline the
  next operation fails at once with httpx's ``ConnectTimeout``/``ReadTimeout``/
  ``WriteTimeout``. Only the name lookup escapes it (``getaddrinfo`` cannot be
  interrupted).
- **A byte cap on each answer** (``read_capped``): a ``Content-Length`` over the cap is
  refused before a byte of the body is read, and a body without one (chunked, or
  delimited by the connection's close) is read as a stream and given up one chunk past
  the cap. Answers are asked uncompressed (``Accept-Encoding: identity``) and a compressed
  one is refused, so that a small gzip bomb cannot expand past the cap.
- **Redirects** (``check_redirect``): only to the same host, never from https to http.

``BoundedTransport.exchange`` sends one request straight on the connection pool and reads
its answer whole under the same cap, without httpx's request and response models (a client
that sends thousands of small requests on one connection, the registry drain, spends a
fifth of its CPU per request there); httpcore's errors leave it as the httpx errors
``handle_request`` would raise.

Nothing here is imported before a request is made (httpx costs the kiosk's start).
"""

from __future__ import annotations

import contextlib
import contextvars
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urljoin, urlsplit

import httpcore
import httpx

if TYPE_CHECKING:
    import ssl

T = TypeVar("T")
IDENTITY = {"Accept-Encoding": "identity"}


class AnswerTooLarge(Exception):
    """The answer is (or says it is) larger than the cap; it was not read whole."""

    def __init__(self, cap: int, declared: int | None = None) -> None:
        self.cap, self.declared = cap, declared
        said = f" (Content-Length {declared})" if declared is not None else ""
        super().__init__(f"answer larger than {cap} bytes{said}, not read")


class CompressedAnswer(Exception):
    """The server compressed an answer that was asked uncompressed."""


class RedirectRefused(Exception):
    """A redirect to another host, or from https to plain http."""


@dataclass(frozen=True)
class _Deadline:
    at: float
    seconds: float


_current: contextvars.ContextVar[_Deadline | None] = contextvars.ContextVar(
    "ordo_http_deadline", default=None)


@contextlib.contextmanager
def deadline(seconds: float) -> Iterator[None]:
    """Every network operation of the requests made inside shares ``seconds`` in all."""
    token = _current.set(_Deadline(time.monotonic() + seconds, seconds))
    try:
        yield
    finally:
        _current.reset(token)


def _left(timeout: float | None, error: type[Exception]) -> float | None:
    """``timeout`` cut to what is left of the current deadline (``error`` when none is)."""
    current = _current.get()
    if current is None:
        return timeout
    left = current.at - time.monotonic()
    if left <= 0:
        raise error(f"no complete answer within the {current.seconds:g} s deadline")
    return left if timeout is None else min(timeout, left)


def _bounded(operation: Callable[[float | None], T], timeout: float | None,
             error: type[Exception]) -> T:
    """Run ``operation(time left)``; a timeout at the deadline says so."""
    try:
        return operation(_left(timeout, error))
    except httpcore.TimeoutException:
        _left(None, error)  # raises the deadline's own message if that is what ran out
        raise


class _Stream(httpcore.NetworkStream):
    """A network stream whose every operation ends by the current deadline."""

    def __init__(self, inner: httpcore.NetworkStream) -> None:
        self._inner = inner

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return _bounded(lambda left: self._inner.read(max_bytes, left), timeout,
                        httpcore.ReadTimeout)

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        _bounded(lambda left: self._inner.write(buffer, left), timeout, httpcore.WriteTimeout)

    def close(self) -> None:
        self._inner.close()

    def start_tls(self, ssl_context: ssl.SSLContext, server_hostname: str | None = None,
                  timeout: float | None = None) -> httpcore.NetworkStream:
        return _Stream(_bounded(
            lambda left: self._inner.start_tls(ssl_context, server_hostname, left), timeout,
            httpcore.ConnectTimeout))

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


class _DeadlineBackend(httpcore.NetworkBackend):
    def __init__(self) -> None:
        self._inner = httpcore.SyncBackend()

    def connect_tcp(self, host: str, port: int, timeout: float | None = None,
                    local_address: str | None = None,
                    socket_options: Iterable[Any] | None = None) -> httpcore.NetworkStream:
        return _Stream(_bounded(
            lambda left: self._inner.connect_tcp(host, port, left, local_address,
                                                 socket_options),
            timeout, httpcore.ConnectTimeout))

    def connect_unix_socket(self, path: str, timeout: float | None = None,
                            socket_options: Iterable[Any] | None = None
                            ) -> httpcore.NetworkStream:
        return _Stream(self._inner.connect_unix_socket(
            path, _left(timeout, httpcore.ConnectTimeout), socket_options))

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


# httpcore's errors as httpx's transport raises them (most specific first).
_HTTPX_ERRORS: tuple[tuple[type[Exception], type[httpx.TransportError]], ...] = (
    (httpcore.ConnectTimeout, httpx.ConnectTimeout),
    (httpcore.ReadTimeout, httpx.ReadTimeout),
    (httpcore.WriteTimeout, httpx.WriteTimeout),
    (httpcore.PoolTimeout, httpx.PoolTimeout),
    (httpcore.TimeoutException, httpx.TimeoutException),
    (httpcore.ConnectError, httpx.ConnectError),
    (httpcore.ReadError, httpx.ReadError),
    (httpcore.WriteError, httpx.WriteError),
    (httpcore.NetworkError, httpx.NetworkError),
    (httpcore.ProxyError, httpx.ProxyError),
    (httpcore.UnsupportedProtocol, httpx.UnsupportedProtocol),
    (httpcore.LocalProtocolError, httpx.LocalProtocolError),
    (httpcore.RemoteProtocolError, httpx.RemoteProtocolError),
    (httpcore.ProtocolError, httpx.ProtocolError),
)


@contextlib.contextmanager
def _as_httpx_errors() -> Iterator[None]:
    try:
        yield
    except Exception as exc:
        for core, mapped in _HTTPX_ERRORS:
            if isinstance(exc, core):
                raise mapped(str(exc)) from exc
        raise


@dataclass(frozen=True)
class Answer:
    """An answer read whole by ``BoundedTransport.exchange``."""

    status_code: int
    headers: httpx.Headers
    reason_phrase: str
    content: bytes


class BoundedTransport(httpx.HTTPTransport):
    """httpx's HTTP/1.1 transport on a pool whose network operations keep the current
    ``deadline``. (httpx takes no network backend: the pool is built here, with the
    arguments ``HTTPTransport`` gives its own.)"""

    def __init__(self, verify: ssl.SSLContext | bool = True,
                 socket_options: Iterable[Any] | None = None,
                 limits: httpx.Limits = httpx.Limits(max_connections=100,  # noqa: B008
                                                     max_keepalive_connections=20)) -> None:
        self._pool = httpcore.ConnectionPool(
            ssl_context=httpx.create_ssl_context(verify=verify),
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry, http1=True, http2=False,
            socket_options=socket_options, network_backend=_DeadlineBackend())

    def exchange(self, method: bytes, url: httpcore.URL, headers: list[tuple[bytes, bytes]],
                 body: bytes | None, extensions: dict[str, Any], cap: int) -> Answer:
        """Send one request on the pool and read its answer (``read_capped``'s rules: a
        declared length over ``cap`` refused unread, a compressed answer refused, a body
        given up past ``cap``). ``headers`` are sent as given, with ``Content-Length`` added
        for a body; ``url`` is httpcore's, with its ``Host``."""
        if body is not None:
            headers = [*headers, (b"Content-Length", str(len(body)).encode("ascii"))]
        with _as_httpx_errors():
            response = self._pool.handle_request(httpcore.Request(
                method, url, headers=headers, content=body or b"", extensions=extensions))
            try:
                found = httpx.Headers(response.headers)
                content = _read_capped(found, response.iter_stream(), cap)
            finally:
                response.close()
        phrase = response.extensions.get("reason_phrase")
        return Answer(response.status, found,
                      httpx.codes.get_reason_phrase(response.status) if phrase is None
                      else phrase.decode("ascii", errors="ignore"), content)


def read_capped(response: httpx.Response, cap: int) -> bytes:
    """The body of a streamed ``response``, refusing one larger than ``cap`` bytes."""
    if response.is_stream_consumed:  # built whole by the transport (httpx.MockTransport)
        _check_headers(response.headers, cap)
        if len(response.content) > cap:
            raise AnswerTooLarge(cap)
        return response.content
    return _read_capped(response.headers, response.iter_raw(), cap)


def _check_headers(headers: httpx.Headers, cap: int) -> None:
    declared = headers.get("Content-Length")
    if declared is not None and declared.strip().isdigit() and int(declared) > cap:
        raise AnswerTooLarge(cap, int(declared))
    encoding = headers.get("Content-Encoding", "identity").strip().lower()
    if encoding not in ("", "identity"):
        raise CompressedAnswer(f"Content-Encoding {encoding[:40]!r}, not asked for")


def _read_capped(headers: httpx.Headers, chunks: Iterable[bytes], cap: int) -> bytes:
    _check_headers(headers, cap)
    read, size = [], 0
    for chunk in chunks:
        size += len(chunk)
        if size > cap:
            raise AnswerTooLarge(cap)
        read.append(chunk)
    return b"".join(read)


def check_redirect(from_url: str, location: str) -> str:
    """The absolute URL a redirect leads to, if it stays on the same host and does not
    leave https; else ``RedirectRefused``."""
    target = urljoin(from_url, location)
    old, new = urlsplit(from_url), urlsplit(target)
    if old.scheme == "https" and new.scheme != "https":
        raise RedirectRefused(f"redirect from https to {new.scheme or 'nothing'}: {target}")
    if new.scheme not in ("http", "https") or (new.hostname or "") != (old.hostname or ""):
        raise RedirectRefused(f"redirect to another host: {new.hostname or target}")
    return target
