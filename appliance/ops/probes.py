"""Small probes of the appliance's parts, for ``ordo doctor``.

Each probe asks the part itself and opens nothing the kiosk may hold; what the answers mean
is decoded by the drivers' own code (one truth for the reader listing and the printer's
status bits):

- pcscd: the card driver's reader listing (``SCardListReaders``, ``SCardGetStatusChange``
  with a zero timeout). No card is connected to: the kiosk may be using it.
- printer: a TCP connection to ``printer.uri`` and ESC/POS ``DLE EOT 4`` ("transmit roll
  paper sensor status"), the answer decoded by the driver's own ``drivers.printer.status``.
  Device files (``file://``, ``serial://``) get the same query when they answer;
  ``usb://VID:PID`` is only looked up in sysfs (claiming the device would disturb the
  kiosk).
- registry: ``GET <url>/metadata`` (the FHIR capability statement) over TLS, verifying the
  server with ``registry.ca_file`` (never disabled) and presenting the client
  certificate; the ``Date`` header is kept for the clock check.
- referential: the date stored in ``referential.sqlite``'s ``meta`` table (keys
  ``bdpm_date``, else ``bdpm_imported_at``), else the file's modification time; and the
  schema of the Ordo that built it (``schema_version``); and the rows of its main tables.
"""

from __future__ import annotations

import json
import os
import select
import socket
import sqlite3
import ssl
import time
from dataclasses import dataclass
from datetime import UTC, date, datetime
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from appliance.errors import CardError, PrinterError, RegistryError
from appliance.ports.printer import PrinterState
from drivers.printer import status as printer_status_bits

if TYPE_CHECKING:
    import httpx

DLE_EOT_PAPER = printer_status_bits.request(printer_status_bits.PAPER)
REFERENTIAL_FILE = "referential.sqlite"
MAX_PROBE_BODY = 256 * 1024
NAME_MISMATCH = {62, 64}  # OpenSSL X509_V_ERR_HOSTNAME_MISMATCH, _IP_ADDRESS_MISMATCH
SYSFS_USB = Path("/sys/bus/usb/devices")


# -- PC/SC -------------------------------------------------------------------------------
@dataclass(frozen=True)
class Reader:
    name: str
    card_present: bool
    atr: str = ""



def read_capped(response: httpx.Response, limit: int) -> bytes:
    """A streamed response's body, read until it passes ``limit`` bytes (a probe never
    reads a hostile server's endless answer)."""
    body = b""
    for chunk in response.iter_bytes():
        body += chunk
        if len(body) > limit:
            break
    return body

def pcsc_readers() -> list[Reader]:
    """The PC/SC readers known to pcscd and whether a card is in each (the card driver's own
    listing, ``drivers.card.pcsc.reader_states``; no card is connected to).

    Raises ``CardError`` when pcscd cannot be reached."""
    from drivers.card.pcsc import reader_states

    return [Reader(r.name, r.card_present, r.atr.hex(" ").upper()) for r in reader_states()]


# -- printer -----------------------------------------------------------------------------
@dataclass(frozen=True)
class PaperStatus:
    transport: str
    paper: str  # "ok", "near_end", "out" or "unknown"
    raw: int | None = None
    detail: str = ""


PAPER_WORDS = {PrinterState.READY: "ok", PrinterState.PAPER_LOW: "near_end",
               PrinterState.PAPER_OUT: "out"}


def paper_from_status(byte: int) -> str:
    """Interpret the answer to ``DLE EOT 4``."""
    if not printer_status_bits.is_escpos(byte):
        raise PrinterError(f"unexpected answer 0x{byte:02X} to DLE EOT 4: not an ESC/POS "
                           "printer, or another protocol on that port")
    return PAPER_WORDS[printer_status_bits.decode(byte, printer_status_bits.PAPER).state]


def _tcp_status(host: str, port: int, timeout: float) -> PaperStatus:
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.settimeout(timeout)
            sock.sendall(DLE_EOT_PAPER)
            answer = sock.recv(1)
    except TimeoutError as exc:
        raise PrinterError(f"no answer from {host}:{port} within {timeout:g} s") from exc
    except OSError as exc:
        raise PrinterError(f"cannot connect to {host}:{port} ({exc.strerror or exc})") from exc
    if not answer:
        raise PrinterError(f"{host}:{port} closed the connection without a status")
    return PaperStatus("tcp", paper_from_status(answer[0]), answer[0])


def _device_status(path: str, timeout: float) -> PaperStatus:
    if not os.path.exists(path):
        raise PrinterError(f"{path} does not exist (printer unplugged or powered off?)")
    try:
        fd = os.open(path, os.O_RDWR | os.O_NONBLOCK | os.O_NOCTTY)
    except OSError as exc:
        raise PrinterError(f"cannot open {path} ({exc.strerror})") from exc
    try:
        os.write(fd, DLE_EOT_PAPER)
        ready, _, _ = select.select([fd], [], [], timeout)
        answer = os.read(fd, 1) if ready else b""
    except OSError as exc:
        return PaperStatus("device", "unknown", None, f"{path} present, status not readable "
                                                      f"({exc.strerror})")
    finally:
        os.close(fd)
    if not answer:
        return PaperStatus("device", "unknown", None, f"{path} present, no status answer")
    return PaperStatus("device", paper_from_status(answer[0]), answer[0])


def _usb_present(vid_pid: str) -> PaperStatus:
    vendor, _, product = vid_pid.lower().partition(":")
    if SYSFS_USB.is_dir():
        for device in SYSFS_USB.iterdir():
            try:
                found = ((device / "idVendor").read_text().strip(),
                         (device / "idProduct").read_text().strip())
            except OSError:
                continue
            if found == (vendor, product):
                return PaperStatus("usb", "unknown", None,
                                   f"USB device {vid_pid} present (paper not checked over USB)")
    raise PrinterError(f"no USB device {vid_pid} (printer unplugged or powered off?)")


def printer_status(uri: str, timeout: float = 3.0) -> PaperStatus:
    """Reach the printer named by ``printer.uri`` and read its paper sensor."""
    parts = urlsplit(uri)
    if parts.scheme == "tcp":
        return _tcp_status(parts.hostname or "", parts.port or 9100, timeout)
    if parts.scheme in {"file", "serial"}:
        return _device_status(parts.path, timeout)
    if parts.scheme == "usb":
        return _usb_present(uri[len("usb://"):])
    raise PrinterError(f"unsupported printer URI {uri}")


# -- registry ----------------------------------------------------------------------------
@dataclass(frozen=True)
class RegistryProbe:
    url: str
    status_code: int
    server_date: datetime | None
    tls_version: str | None
    elapsed_s: float
    local_time: datetime
    resource_type: str | None = None  # of the answer's body, when it is FHIR JSON
    content_type: str | None = None
    location: str | None = None       # where a redirection leads


def tls_context(ca_file: str, client_cert: str, client_key: str) -> ssl.SSLContext:
    """Verify the server with ``ca_file`` (the system store if empty); present the client
    certificate when configured."""
    try:
        context = ssl.create_default_context(cafile=ca_file or None)
        if client_cert:
            context.load_cert_chain(client_cert, client_key or None)
    except (OSError, ssl.SSLError) as exc:
        raise RegistryError(f"cannot load the TLS files: {exc}") from exc
    return context


def registry_probe(url: str, *, ca_file: str, client_cert: str, client_key: str,
                   timeout: float) -> RegistryProbe:
    """``GET <url>/metadata``; raises ``RegistryError`` when the registry cannot be reached."""
    import httpx

    from appliance.http_limits import BoundedTransport, deadline

    target = url.rstrip("/") + "/metadata"
    verify = tls_context(ca_file, client_cert, client_key) if target.startswith("https:") \
        else True
    started = time.monotonic()
    try:  # the headers only (the body is never read), within ``timeout`` in all
        with (deadline(timeout),
              httpx.Client(verify=verify, timeout=timeout, follow_redirects=False,
                           transport=BoundedTransport(verify=verify)) as client,
              client.stream("GET", target, headers={"Accept": "application/fhir+json"})
              as response):
            local = datetime.now(UTC)
            stream = response.extensions.get("network_stream")
            ssl_object = stream.get_extra_info("ssl_object") if stream else None
            tls_version = ssl_object.version() if ssl_object else None
            status, date_header = response.status_code, response.headers.get("date")
            body = read_capped(response, MAX_PROBE_BODY)
    except httpx.ConnectError as exc:
        raise RegistryError(_tls_reason(exc) or f"cannot connect ({exc})") from exc
    except httpx.TimeoutException as exc:
        raise RegistryError(f"no answer within {timeout:g} s") from exc
    except httpx.HTTPError as exc:
        raise RegistryError(_tls_reason(exc) or f"{type(exc).__name__}: {exc}") from exc
    server_date = None
    if date_header:
        try:
            server_date = parsedate_to_datetime(date_header).astimezone(UTC)
        except (TypeError, ValueError):
            server_date = None
    return RegistryProbe(target, status, server_date, tls_version,
                         time.monotonic() - started, local, _resource_type(body),
                         response.headers.get("content-type"), response.headers.get("location"))


def _resource_type(body: bytes) -> str | None:
    try:
        document = json.loads(body[:MAX_PROBE_BODY])
    except (ValueError, RecursionError):
        return None
    kind = document.get("resourceType") if isinstance(document, dict) else None
    return kind if isinstance(kind, str) else None


def _tls_reason(exc: Exception) -> str | None:
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, ssl.SSLCertVerificationError):
            if cause.verify_code in NAME_MISMATCH:
                return f"the registry's certificate is not valid for this host name: " \
                       f"{cause.verify_message}"
            return f"the registry's certificate is not trusted: {cause.verify_message}"
        if isinstance(cause, ssl.SSLError):
            return f"TLS handshake failed: {cause.reason or cause}"
        cause = cause.__cause__ or cause.__context__
    text = str(exc)
    if "SSL" in text or "TLS" in text or "certificate" in text:
        return f"TLS handshake failed: {text}"
    return None


# -- referential -------------------------------------------------------------------------
@dataclass(frozen=True)
class ReferentialDate:
    day: date
    source: str  # which information gave the date
    schema: str | None = None  # the file's schema_version, if it has one


def referential_date(path: Path) -> ReferentialDate | None:
    """When the drug referential's data dates from; ``None`` if there is no file."""
    if not path.is_file():
        return None
    try:
        conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
        try:
            rows = dict(conn.execute(
                "SELECT key, value FROM meta WHERE key IN "
                "('bdpm_date', 'bdpm_imported_at', 'schema_version')").fetchall())
        finally:
            conn.close()
    except sqlite3.Error:
        rows = {}
    for key in ("bdpm_date", "bdpm_imported_at"):
        value = rows.get(key)
        if value:
            try:
                return ReferentialDate(datetime.fromisoformat(value).date(), key,
                                       rows.get("schema_version"))
            except ValueError:
                continue
    mtime = datetime.fromtimestamp(path.stat().st_mtime, UTC).date()
    return ReferentialDate(mtime, "file modification time", rows.get("schema_version"))


# -- PKCS#11 ---------------------------------------------------------------------------------
PKCS11_PROBE_TIMEOUT_S = 20.0
_PKCS11_CHILD = r"""
import json, sys
import pkcs11
from pkcs11 import SlotFlag, TokenFlag
path, label = sys.argv[1], sys.argv[2]
lib = pkcs11.lib(path)
out = {"manufacturer": lib.manufacturer_id, "description": lib.library_description,
       "library_version": ".".join(map(str, lib.library_version)), "slots": []}
names = ("USER_PIN_COUNT_LOW", "USER_PIN_FINAL_TRY", "USER_PIN_LOCKED",
         "USER_PIN_TO_BE_CHANGED", "TOKEN_INITIALIZED", "USER_PIN_INITIALIZED",
         "LOGIN_REQUIRED", "PROTECTED_AUTHENTICATION_PATH")
for slot in lib.get_slots():
    entry = {"slot": slot.slot_description.strip(), "token": None}
    if slot.flags & SlotFlag.TOKEN_PRESENT:
        try:
            token = slot.get_token()
        except pkcs11.exceptions.PKCS11Error as exc:
            entry["error"] = type(exc).__name__
        else:
            if token.flags & TokenFlag.TOKEN_INITIALIZED and (not label or token.label == label):
                entry["token"] = {"label": token.label, "serial": token.serial.decode(
                    "ascii", "replace"), "manufacturer": token.manufacturer_id,
                    "model": token.model,
                    "flags": ["CKF_" + n for n in names if token.flags & TokenFlag[n]]}
    out["slots"].append(entry)
print(json.dumps(out))
"""


@dataclass(frozen=True)
class Pkcs11Probe:
    path: str
    manufacturer: str
    description: str
    library_version: str
    slots: list[dict]

    @property
    def tokens(self) -> list[dict]:
        return [dict(s["token"], slot=s["slot"]) for s in self.slots if s.get("token")]


def pkcs11_module(path: str, token_label: str = "",
                  timeout_s: float = PKCS11_PROBE_TIMEOUT_S) -> Pkcs11Probe:
    """Load a PKCS#11 module in a child process (only the kiosk and the card commands load
    it into themselves) and list its slots and tokens. ``CardError`` if it does not load."""
    import json
    import subprocess
    import sys

    if not Path(path).is_file():
        raise CardError(f"{path} does not exist")
    try:
        done = subprocess.run([sys.executable, "-c", _PKCS11_CHILD, path, token_label],  # noqa: S603
                              capture_output=True, text=True, timeout=timeout_s, check=False)
    except subprocess.TimeoutExpired:
        raise CardError(f"{path} did not answer within {timeout_s:.0f} s") from None
    if done.returncode:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise CardError(f"{path} does not load as a PKCS#11 module: {last}")
    data = json.loads(done.stdout)
    return Pkcs11Probe(path, data["manufacturer"], data["description"],
                       data["library_version"], data["slots"])


def default_pkcs11_module() -> str | None:
    """OpenSC's module on this machine (what an empty ``card.pkcs11_module`` means)."""
    from drivers.card.pkcs11 import default_module

    return default_module()


def referential_counts(path: Path, tables: tuple[str, ...]) -> dict[str, int]:
    """Rows of each of ``tables`` in the referential (0 for a missing table or file)."""
    counts = dict.fromkeys(tables, 0)
    try:
        conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
        try:
            present = {row[0] for row in conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table'")}
            for table in tables:
                if table in present:
                    # Names from the caller's constant tuple, checked against sqlite_master.
                    sql = f'SELECT count(*) FROM "{table}"'  # noqa: S608
                    counts[table] = conn.execute(sql).fetchone()[0]
        finally:
            conn.close()
    except sqlite3.Error:
        pass
    return counts
