"""The virtual CPS card: answers Ordo's APDU subset through the vsmartcard ``vpcd`` reader.

Three layers:

* ``VirtualCard``: the card itself, pure logic (``handle(apdu) -> response``); keys and
  certificates come from a card directory of the test PKI (``drivers.card.pki``). Its PIN
  counter lives as long as the card is inserted (the process runs); 3 wrong PINs block it.
* ``serve()``: the vpcd wire protocol. The card connects to the reader's TCP port (35963
  for slot 0, 35964 for slot 1: ``/etc/reader.conf.d/vpcd``, CHANNELID 0x8C7B); each
  message is a 2-byte big-endian length then the payload; a 1-byte payload is a control
  code (0 power off, 1 power on, 2 reset, 4 get ATR), anything else a C-APDU answered
  with the R-APDU. ``TCP_NODELAY`` and ``TCP_QUICKACK`` (re-armed before every ``recv``)
  keep an APDU well under a millisecond instead of ~40 ms of delayed ACK.
* ``insert()`` / ``remove()`` / ``status()``: the card as a detached background process
  (``python -m drivers.card.virtual``), with a pid file under ``<data-dir>/vcard/``; used
  by ``ordo card insert|remove|status`` and the integration tests.
"""

from __future__ import annotations

import argparse
import hmac
import json
import logging
import os
import secrets
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa, utils

from appliance.errors import CardError, CardRemoved
from appliance.ports.card import SHA256_DIGEST_INFO_PREFIX
from drivers.card import cps
from drivers.card.apdu import Command, Response

log = logging.getLogger(__name__)

VPCD_HOST = "127.0.0.1"
VPCD_BASE_PORT = 0x8C7B        # 35963: CHANNELID of /etc/reader.conf.d/vpcd; slot N = +N
VPCD_SLOTS = 2                 # vpcd's default number of slots per reader
VPCD_READER_PREFIX = "Virtual PCD"
CTRL_OFF, CTRL_ON, CTRL_RESET, CTRL_ATR = 0, 1, 2, 4
RECONNECT_S = 0.2
DEFAULT_PIN = "1234"
MAX_TRIES = 3
_SHA256_DIGEST_INFO_LENGTH = len(SHA256_DIGEST_INFO_PREFIX) + 32


def _sw(sw: int, data: bytes = b"") -> Response:
    return Response(data, sw)


class VirtualCard:
    """A CPx-like card: the ADF, two certificate EFs, a PIN, two RSA keys."""

    def __init__(self, *, auth_cert: bytes, auth_key: rsa.RSAPrivateKey,
                 sign_cert: bytes | None, sign_key: rsa.RSAPrivateKey | None,
                 pin: str, tries: int = MAX_TRIES,
                 random: Callable[[int], bytes] = secrets.token_bytes) -> None:
        self.atr = cps.CPX_ATR
        self._files = {cps.EF_CERT_AUTH: auth_cert}
        if sign_cert is not None:
            self._files[cps.EF_CERT_SIGN] = sign_cert
        self._auth_key = auth_key
        self._sign_key = sign_key
        self._pin_block = cps.encode_pin(pin)
        self.tries = tries
        self._random = random
        self.verified = False
        self._app_selected = False
        self._current_ef: int | None = None

    # -- power -------------------------------------------------------------------------
    def reset(self) -> None:
        """Power off, power on or reset: security state and selection are lost, the PIN
        counter is kept."""
        self.verified = False
        self._app_selected = False
        self._current_ef = None

    # -- APDUs -------------------------------------------------------------------------
    def handle(self, raw: bytes) -> bytes:
        """Answer one C-APDU; never raises (an internal error becomes SW 6F00)."""
        try:
            command = Command.decode(raw)
        except ValueError:
            return _sw(0x6700).encode()
        try:
            return self._dispatch(command).encode()
        except Exception:
            log.exception("virtual card: internal error")
            return _sw(0x6F00).encode()

    def _dispatch(self, c: Command) -> Response:
        if c.cla != 0x00:
            return _sw(0x6E00)
        handler = {
            cps.INS_SELECT: self._select,
            cps.INS_READ_BINARY: self._read_binary,
            cps.INS_VERIFY: self._verify,
            cps.INS_GET_CHALLENGE: self._get_challenge,
            cps.INS_INTERNAL_AUTHENTICATE: self._internal_authenticate,
            cps.INS_PSO: self._pso,
        }.get(c.ins)
        if handler is None:
            return _sw(0x6D00)
        return handler(c)

    def _select(self, c: Command) -> Response:
        if c.p2 not in (0x00, 0x0C):
            return _sw(0x6A86)
        if c.p1 == 0x04:
            if c.data != cps.CPX_AID:
                return _sw(0x6A82)
            self._app_selected, self._current_ef = True, None
            return _sw(0x9000)
        if c.p1 == 0x02:
            if len(c.data) != 2:
                return _sw(0x6700)
            fid = int.from_bytes(c.data, "big")
            if not self._app_selected or fid not in self._files:
                return _sw(0x6A82)
            self._current_ef = fid
            return _sw(0x9000)
        return _sw(0x6A86)

    def _read_binary(self, c: Command) -> Response:
        if c.p1 & 0x80:
            return _sw(0x6A81)          # short EF identifier addressing: not supported
        if c.le is None or c.data:
            return _sw(0x6700)
        if self._current_ef is None:
            return _sw(0x6986)
        content = self._files[self._current_ef]
        offset = (c.p1 << 8) | c.p2
        if offset >= len(content):
            return _sw(0x6B00)
        chunk = content[offset:offset + c.le]
        return _sw(0x9000 if len(chunk) == c.le else 0x6282, chunk)

    def _verify(self, c: Command) -> Response:
        if c.p1 != 0x00 or c.p2 != cps.PIN_REFERENCE:
            return _sw(0x6A86)
        if not self._app_selected:
            return _sw(0x6A88)
        if self.tries == 0:
            return _sw(0x6983)
        if not c.data:                  # empty VERIFY: the counter, no try spent
            return _sw(0x9000) if self.verified else _sw(0x63C0 | self.tries)
        if len(c.data) != cps.PIN_BLOCK_LENGTH:
            return _sw(0x6700)
        if hmac.compare_digest(c.data, self._pin_block):
            self.tries, self.verified = MAX_TRIES, True
            return _sw(0x9000)
        self.tries -= 1
        self.verified = False
        return _sw(0x63C0 | self.tries)

    def _get_challenge(self, c: Command) -> Response:
        if c.p1 or c.p2:
            return _sw(0x6A86)
        if c.le is None or c.data:
            return _sw(0x6700)
        return _sw(0x9000, self._random(c.le))

    def _internal_authenticate(self, c: Command) -> Response:
        if c.p1 or c.p2:
            return _sw(0x6A86)
        return self._signature(c, self._auth_key)

    def _pso(self, c: Command) -> Response:
        if (c.p1, c.p2) != cps.PSO_CDS:
            return _sw(0x6A86)
        if self._sign_key is None:
            return _sw(0x6A88)
        return self._signature(c, self._sign_key)

    def _signature(self, c: Command, key: rsa.RSAPrivateKey | None) -> Response:
        if not self._app_selected or key is None:
            return _sw(0x6985)
        if not self.verified:
            return _sw(0x6982)
        if (len(c.data) != _SHA256_DIGEST_INFO_LENGTH
                or not c.data.startswith(SHA256_DIGEST_INFO_PREFIX)):
            return _sw(0x6A80)
        digest = c.data[len(SHA256_DIGEST_INFO_PREFIX):]
        signature = key.sign(digest, padding.PKCS1v15(), utils.Prehashed(hashes.SHA256()))
        return _sw(0x9000, signature)


def load_card(card_dir: Path, pin: str = DEFAULT_PIN) -> VirtualCard:
    """A ``VirtualCard`` from a card directory written by ``drivers.card.pki``."""
    card_dir = Path(card_dir)
    try:
        meta = json.loads((card_dir / "card.json").read_text("utf-8"))
        auth_cert = (card_dir / "auth.der").read_bytes()
        auth_key = _load_key(card_dir / "auth.key")
        sign_path = card_dir / "sign.der"
        sign_cert = sign_path.read_bytes() if sign_path.exists() else None
        sign_key = _load_key(card_dir / "sign.key") if sign_cert is not None else None
        x509.load_der_x509_certificate(auth_cert)
    except (OSError, ValueError, KeyError) as exc:
        raise CardError(f"cannot load the virtual card from {card_dir}: {exc}") from exc
    return VirtualCard(auth_cert=auth_cert, auth_key=auth_key, sign_cert=sign_cert,
                       sign_key=sign_key, pin=pin, tries=int(meta.get("initial_tries",
                                                                     MAX_TRIES)))


def _load_key(path: Path) -> rsa.RSAPrivateKey:
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ValueError(f"{path} is not an RSA key")
    return key


# -- the vpcd wire protocol ----------------------------------------------------------------

def _quickack(sock: socket.socket) -> None:
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)


def _recv_exact(sock: socket.socket, size: int, stop: threading.Event) -> bytes:
    data = b""
    while len(data) < size:
        _quickack(sock)                 # Linux clears it on its own: re-arm before each recv
        try:
            chunk = sock.recv(size - len(data))
        except TimeoutError:
            if stop.is_set():
                raise EOFError("stopped") from None
            continue
        if not chunk:
            raise EOFError("the reader closed the connection")
        data += chunk
    return data


def _send(sock: socket.socket, payload: bytes) -> None:
    sock.sendall(struct.pack(">H", len(payload)) + payload)


def serve_connection(card: VirtualCard, sock: socket.socket, stop: threading.Event) -> None:
    """Answer the reader on one connection until it closes or ``stop`` is set."""
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.settimeout(0.5)
    while not stop.is_set():
        (length,) = struct.unpack(">H", _recv_exact(sock, 2, stop))
        payload = _recv_exact(sock, length, stop)
        if length == 1:
            code = payload[0]
            if code == CTRL_ATR:
                _send(sock, card.atr)
            elif code in (CTRL_OFF, CTRL_ON, CTRL_RESET):
                card.reset()
            else:
                log.warning("virtual card: unknown control code %d", code)
        else:
            _send(sock, card.handle(payload))


def serve(card: VirtualCard, port: int, host: str = VPCD_HOST,
          stop: threading.Event | None = None) -> None:
    """Stay "inserted" in the reader at ``host:port``: reconnect whenever pcscd restarts."""
    stop = stop or threading.Event()
    while not stop.is_set():
        try:
            sock = socket.create_connection((host, port), timeout=1.0)
        except OSError:
            stop.wait(RECONNECT_S)
            continue
        log.info("virtual card connected to the reader on port %d", port)
        try:
            serve_connection(card, sock, stop)
        except (OSError, EOFError) as exc:
            log.info("reader connection ended: %s", exc)
        finally:
            sock.close()
            card.reset()
        stop.wait(RECONNECT_S)


def main(argv: list[str] | None = None) -> int:
    """``python -m drivers.card.virtual --port N``; reads ``{"card_dir", "pin"}`` JSON from
    stdin so that the PIN never shows in the process list."""
    parser = argparse.ArgumentParser(description="Ordo virtual CPS card for vpcd")
    parser.add_argument("--port", type=int, default=VPCD_BASE_PORT)
    parser.add_argument("--host", default=VPCD_HOST)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s %(message)s")
    config = json.loads(sys.stdin.readline())
    card = load_card(Path(config["card_dir"]), config.get("pin", DEFAULT_PIN))
    stop = threading.Event()

    def _terminate(_signum: int, _frame: object) -> None:
        stop.set()
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, _terminate)
    signal.signal(signal.SIGINT, _terminate)
    serve(card, args.port, args.host, stop)
    return 0


# -- the card as a background process (ordo card insert / remove) --------------------------

@dataclass(frozen=True)
class InsertedCard:
    slot: int
    profile: str
    pid: int
    port: int
    reader: str
    alive: bool = True


_children: dict[int, subprocess.Popen[bytes]] = {}


def vpcd_port(slot: int) -> int:
    if not 0 <= slot < VPCD_SLOTS:
        raise CardError(f"slot {slot} does not exist: vpcd has slots 0 to {VPCD_SLOTS - 1}")
    return VPCD_BASE_PORT + slot


def vpcd_reader(slot: int) -> str:
    """The pcscd reader name of the vpcd slot (``Virtual PCD 00 0N``)."""
    from drivers.card.pcsc import PcscContext

    vpcd_port(slot)
    with PcscContext() as context:
        names = [n for n in context.readers() if n.startswith(VPCD_READER_PREFIX)]
    if slot >= len(names):
        raise CardError(f"no vpcd reader for slot {slot} (readers seen: {names or 'none'}); "
                        "is vsmartcard-vpcd installed and pcscd running?")
    return names[slot]


def _run_dir(data_dir: Path) -> Path:
    path = Path(data_dir) / "vcard"
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    return path


def _alive(pid: int) -> bool:
    child = _children.get(pid)
    if child is not None:
        if child.poll() is None:
            return True
        _children.pop(pid, None)
        return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] not in {"Z", "X"}


def _is_virtual_card(pid: int) -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return b"drivers.card.virtual" in cmdline


def _read_info(run_dir: Path, slot: int) -> dict | None:
    try:
        info = json.loads((run_dir / f"slot{slot}.json").read_text("utf-8"))
        info["pid"] = int((run_dir / f"slot{slot}.pid").read_text().strip())
    except (OSError, ValueError):
        return None
    return info


def _forget(run_dir: Path, slot: int) -> None:
    for name in (f"slot{slot}.pid", f"slot{slot}.json"):
        (run_dir / name).unlink(missing_ok=True)


def _stop_process(pid: int, timeout_s: float = 2.0) -> None:
    if not (_alive(pid) and _is_virtual_card(pid)):
        _children.pop(pid, None)
        return
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.01)
    if _alive(pid):
        os.kill(pid, signal.SIGKILL)
        while _alive(pid):
            time.sleep(0.01)
    child = _children.pop(pid, None)
    if child is not None:
        child.wait()


def _log_tail(path: Path, lines: int = 5) -> str:
    try:
        return " | ".join(path.read_text("utf-8", "replace").splitlines()[-lines:])
    except OSError:
        return ""


def insert(data_dir: Path, profile: str, slot: int = 0, pin: str = DEFAULT_PIN,
           pki_dir: Path | None = None, timeout_s: float = 5.0) -> InsertedCard:
    """Start the virtual card ``profile`` in ``slot``; return once pcscd sees it."""
    from drivers.card.pcsc import wait_for_card

    port = vpcd_port(slot)
    cps.encode_pin(pin)
    card_dir = Path(pki_dir or Path(data_dir) / "pki") / "cards" / profile
    if not (card_dir / "card.json").is_file():
        known = sorted(p.name for p in card_dir.parent.iterdir()) if card_dir.parent.is_dir() \
            else []
        raise CardError(f"unknown card profile {profile!r} (known: {', '.join(known)})")
    run_dir = _run_dir(Path(data_dir))
    current = _read_info(run_dir, slot)
    if current and _alive(current["pid"]) and _is_virtual_card(current["pid"]):
        raise CardError(f"slot {slot} already holds the virtual card {current['profile']!r}: "
                        "remove it first")
    _forget(run_dir, slot)
    reader = vpcd_reader(slot)
    if wait_for_card(reader, present=True, timeout_s=0):
        raise CardError(f"a card is already in the reader {reader!r}")
    log_path = run_dir / f"slot{slot}.log"
    with open(log_path, "ab") as log_file:
        child = subprocess.Popen(  # noqa: S603 - our own module, fixed arguments
            [sys.executable, "-m", "drivers.card.virtual", "--port", str(port)],
            stdin=subprocess.PIPE, stdout=log_file, stderr=log_file,
            start_new_session=True, close_fds=True)
    _children[child.pid] = child
    assert child.stdin is not None
    child.stdin.write(json.dumps({"card_dir": str(card_dir.resolve()), "pin": pin}).encode()
                      + b"\n")
    child.stdin.close()
    (run_dir / f"slot{slot}.pid").write_text(f"{child.pid}\n")
    (run_dir / f"slot{slot}.json").write_text(json.dumps(
        {"slot": slot, "profile": profile, "port": port, "reader": reader}))
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if child.poll() is not None:
            _forget(run_dir, slot)
            _children.pop(child.pid, None)
            raise CardError(f"the virtual card stopped (exit {child.returncode}): "
                            f"{_log_tail(log_path)}")
        if wait_for_card(reader, present=True, timeout_s=0.1):
            return InsertedCard(slot, profile, child.pid, port, reader)
    _stop_process(child.pid)
    _forget(run_dir, slot)
    raise CardError(f"pcscd did not see the virtual card in {reader!r} within {timeout_s} s")


def remove(data_dir: Path, slot: int = 0, timeout_s: float = 5.0) -> InsertedCard | None:
    """Stop the virtual card in ``slot`` and return once the reader is empty; None if
    there was no virtual card there."""
    from drivers.card.pcsc import wait_for_card

    vpcd_port(slot)
    run_dir = _run_dir(Path(data_dir))
    info = _read_info(run_dir, slot)
    if info is None:
        return None
    _stop_process(info["pid"])
    _forget(run_dir, slot)
    try:
        empty = wait_for_card(info["reader"], present=False, timeout_s=timeout_s)
    except CardRemoved:
        empty = True        # pcscd is not running: no reader holds anything
    if not empty:
        raise CardError(f"the reader {info['reader']!r} still holds a card after {timeout_s} s")
    return InsertedCard(slot, info["profile"], info["pid"], info["port"], info["reader"],
                        alive=False)


def status(data_dir: Path) -> list[InsertedCard]:
    """The virtual cards started from this data directory (dead ones included)."""
    run_dir = Path(data_dir) / "vcard"
    out = []
    for slot in range(VPCD_SLOTS):
        info = _read_info(run_dir, slot) if run_dir.is_dir() else None
        if info is not None:
            alive = _alive(info["pid"]) and _is_virtual_card(info["pid"])
            out.append(InsertedCard(slot, info["profile"], info["pid"], info["port"],
                                    info["reader"], alive))
    return out


def as_dict(card: InsertedCard) -> dict:
    return asdict(card)


if __name__ == "__main__":
    sys.exit(main())
