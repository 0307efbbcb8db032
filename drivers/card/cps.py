"""The CPS card protocol: Ordo's documented ISO 7816-4 / IAS-ECC-like APDU subset.

``CpsCard`` implements the ``appliance.ports.CardSession`` port on top of any
``Transport`` (a PC/SC connection, or an in-memory virtual card in the unit tests).
The subset, the file layout and the PIN format are described in ``PROTOCOL.md``; a
PKCS#11 adapter (``drivers.card.pkcs11``: OpenSC, the ANS middleware) implements the same port
for real cards.
"""

from __future__ import annotations

import logging
import re
from typing import Protocol

from appliance.errors import CardError, ValidationError
from appliance.ports.card import CardCertificates, PinStatus
from drivers.card.apdu import Command, Response, StatusWordError, check

log = logging.getLogger(__name__)

# The "CPx IAS" application of CPS cards, as known to OpenSC (see DESIGN.md).
CPX_AID = bytes.fromhex("E8 28 BD 08 0F 80 25 00 00 01 FF 00 10")
# CPx ATR (ISO 7816-3: TS=3B, T0=AC: TB1, TD1 and 12 historical bytes; T=0).
CPX_ATR = bytes.fromhex("3B AC 00 40 2A 00 12 25 00 64 80 00 03 10 00 90 00")

# Ordo file layout inside the CPx application (PROTOCOL.md): transparent EFs.
EF_CERT_AUTH = 0xD001
EF_CERT_SIGN = 0xD002
PIN_REFERENCE = 0x81      # ISO 7816-4 §11.5.6, P2 b8=1: specific (local) reference data 1
PIN_BLOCK_LENGTH = 8      # ASCII digits right-padded with 0xFF to 8 bytes
PIN_PAD = 0xFF
PIN_MIN, PIN_MAX = 4, 8
CHALLENGE_LENGTH = 8
READ_CHUNK = 256          # Le=00 in a short READ BINARY
MAX_EF_SIZE = 0x7FFF      # the offset of READ BINARY (P1 b8=0) is 15 bits
_GET_RESPONSE_LIMIT = 64

# Instructions (ISO 7816-4 §11 and §7.5).
INS_SELECT = 0xA4
INS_READ_BINARY = 0xB0
INS_VERIFY = 0x20
INS_GET_CHALLENGE = 0x84
INS_INTERNAL_AUTHENTICATE = 0x88
INS_PSO = 0x2A
INS_GET_RESPONSE = 0xC0
PSO_CDS = (0x9E, 0x9A)    # ISO 7816-8 §11: P1=9E (digital signature), P2=9A (data to sign)


class Transport(Protocol):
    """Sends one command APDU and returns the raw response APDU."""

    @property
    def reader(self) -> str: ...

    @property
    def atr(self) -> bytes: ...

    def transmit(self, apdu: bytes) -> bytes: ...

    def close(self) -> None: ...


def encode_pin(pin: str) -> bytes:
    """The VERIFY data field: 4 to 8 ASCII digits, right-padded with 0xFF to 8 bytes."""
    if not (PIN_MIN <= len(pin) <= PIN_MAX and re.fullmatch(r"[0-9]+", pin)):
        raise ValidationError("pin", "****", f"{PIN_MIN} to {PIN_MAX} digits")
    return pin.encode("ascii").ljust(PIN_BLOCK_LENGTH, bytes([PIN_PAD]))


class CpsCard:
    """A CPx card behind a transport; the application is selected by ``select()``."""

    def __init__(self, transport: Transport) -> None:
        self._transport = transport

    @property
    def reader(self) -> str:
        return self._transport.reader

    @property
    def atr(self) -> bytes:
        return self._transport.atr

    def transceive(self, command: Command) -> Response:
        """Send a command; follow ``61xx`` (GET RESPONSE) and ``6Cxx`` (exact Le)."""
        response = Response.parse(self._transport.transmit(command.encode()))
        if response.sw >> 8 == 0x6C and command.le is not None:
            exact = response.sw & 0xFF or 256
            command = Command(command.cla, command.ins, command.p1, command.p2,
                              command.data, exact)
            response = Response.parse(self._transport.transmit(command.encode()))
        data = response.data
        rounds = 0
        while response.sw >> 8 == 0x61:
            rounds += 1
            if rounds > _GET_RESPONSE_LIMIT:
                raise CardError("the card keeps announcing more data (61xx): giving up")
            more = Command(0x00, INS_GET_RESPONSE, 0, 0, le=response.sw & 0xFF or 256)
            response = Response.parse(self._transport.transmit(more.encode()))
            data += response.data
        return Response(data, response.sw)

    def select(self) -> None:
        """SELECT the CPx application by AID (no FCI returned)."""
        response = self.transceive(Command(0x00, INS_SELECT, 0x04, 0x0C, CPX_AID))
        if response.sw == 0x6A82:
            raise CardError("not a CPS/CPE card: the CPx application is missing (SW 6A82)")
        check(response, "SELECT CPx application")

    def read_file(self, fid: int) -> bytes:
        """SELECT a transparent EF of the application, then READ BINARY to its end."""
        check(self.transceive(Command(0x00, INS_SELECT, 0x02, 0x0C, fid.to_bytes(2, "big"))),
              f"SELECT EF {fid:04X}")
        data = b""
        while True:
            offset = len(data)
            if offset > MAX_EF_SIZE:
                raise CardError(f"EF {fid:04X} is larger than {MAX_EF_SIZE} bytes")
            response = self.transceive(Command(0x00, INS_READ_BINARY, offset >> 8,
                                               offset & 0xFF, le=READ_CHUNK))
            if response.sw == 0x6B00 and data:
                return data         # the previous chunk ended exactly at the end of file
            chunk = check(response, f"READ BINARY EF {fid:04X} at offset {offset}",
                          allow=frozenset({0x6282}))
            data += chunk
            if response.sw == 0x6282 or len(chunk) < READ_CHUNK:
                return data

    def read_certificates(self) -> CardCertificates:
        auth = self.read_file(EF_CERT_AUTH)
        try:
            sign: bytes | None = self.read_file(EF_CERT_SIGN)
        except StatusWordError as exc:
            if exc.sw != 0x6A82:
                raise
            sign = None     # CPE cards have no signature key nor certificate
        return CardCertificates(authentication=auth, signature=sign)

    def pin_status(self) -> PinStatus:
        """An empty VERIFY (ISO 7816-4 §11.5.6): tries left without spending one."""
        response = self.transceive(Command(0x00, INS_VERIFY, 0x00, PIN_REFERENCE))
        if response.sw == 0x9000:
            return PinStatus(tries_left=None, verified=True)
        if response.sw >> 4 == 0x63C:
            return PinStatus(tries_left=response.sw & 0x0F)
        if response.sw == 0x6983:
            return PinStatus(tries_left=0)
        check(response, "VERIFY (PIN status)")
        raise CardError(f"unexpected answer to an empty VERIFY (SW {response.sw:04X})")

    def verify_pin(self, pin: str) -> None:
        check(self.transceive(Command(0x00, INS_VERIFY, 0x00, PIN_REFERENCE, encode_pin(pin))),
              "VERIFY PIN")

    def get_challenge(self, length: int = CHALLENGE_LENGTH) -> bytes:
        data = check(self.transceive(Command(0x00, INS_GET_CHALLENGE, 0, 0, le=length)),
                     "GET CHALLENGE")
        if len(data) != length:
            raise CardError(f"GET CHALLENGE returned {len(data)} bytes, expected {length}")
        return data

    def authenticate(self, digest_info: bytes) -> bytes:
        """INTERNAL AUTHENTICATE with the authentication key (implicit key reference)."""
        return self._signature(Command(0x00, INS_INTERNAL_AUTHENTICATE, 0x00, 0x00,
                                       digest_info, le=256), "INTERNAL AUTHENTICATE")

    def sign(self, digest_info: bytes) -> bytes:
        """PSO: COMPUTE DIGITAL SIGNATURE with the signature key (implicit key reference)."""
        return self._signature(Command(0x00, INS_PSO, *PSO_CDS, digest_info, le=256),
                               "PSO: COMPUTE DIGITAL SIGNATURE")

    def _signature(self, command: Command, context: str) -> bytes:
        data = check(self.transceive(command), context)
        if not data:
            raise CardError(f"{context}: the card returned no signature")
        return data

    def close(self) -> None:
        self._transport.close()
