"""ISO/IEC 7816-4 APDUs: short command encoding and decoding, responses, status words.

Pure (no I/O). Only short APDUs are used (ISO 7816-4 §5.1: Lc ≤ 255, Ne ≤ 256 with
``Le = 00`` meaning 256). ``check()`` turns every status word into a clear error; the
table is ``STATUS_WORDS`` (ISO 7816-4 §5.6, tables 5 and 6).
"""

from __future__ import annotations

from dataclasses import dataclass

from appliance.errors import CardError, PinBlocked, WrongPin

SW_OK = 0x9000

# ISO/IEC 7816-4 §5.6, tables 5 and 6. Patterns with an ``xx`` part are decoded in
# ``describe()`` (61xx, 63Cx, 6Cxx).
STATUS_WORDS: dict[int, str] = {
    0x9000: "success",
    0x6281: "part of returned data may be corrupted",
    0x6282: "end of file reached before reading Ne bytes",
    0x6283: "selected file deactivated",
    0x6300: "verification failed",
    0x6400: "execution error, state of non-volatile memory unchanged",
    0x6581: "memory failure",
    0x6700: "wrong length",
    0x6881: "logical channel not supported",
    0x6882: "secure messaging not supported",
    0x6982: "security status not satisfied (PIN not verified)",
    0x6983: "authentication method blocked (PIN blocked)",
    0x6984: "reference data not usable",
    0x6985: "conditions of use not satisfied",
    0x6986: "command not allowed (no current EF)",
    0x6A80: "incorrect parameters in the data field",
    0x6A81: "function not supported",
    0x6A82: "file or application not found",
    0x6A86: "incorrect parameters P1-P2",
    0x6A88: "referenced data or key not found",
    0x6B00: "wrong parameters P1-P2 (offset outside the EF)",
    0x6D00: "instruction code not supported",
    0x6E00: "class not supported",
    0x6F00: "no precise diagnosis",
}


class StatusWordError(CardError):
    """The card answered an error status word; ``sw`` keeps it (e.g. ``0x6A82``)."""

    def __init__(self, sw: int, context: str) -> None:
        self.sw = sw
        super().__init__(f"{context}: {describe(sw)} (SW {sw:04X})")


def describe(sw: int) -> str:
    """A readable meaning for any status word, including unknown ones."""
    sw1, sw2 = sw >> 8, sw & 0xFF
    if sw1 == 0x61:
        return f"{sw2 or 256} more bytes available (GET RESPONSE)"
    if sw1 == 0x6C:
        return f"wrong Le: exactly {sw2 or 256} bytes available"
    if sw1 == 0x63 and sw2 & 0xF0 == 0xC0:
        return f"verification failed, {sw2 & 0x0F} tries left"
    return STATUS_WORDS.get(sw, "unknown status word")


@dataclass(frozen=True)
class Command:
    """A short command APDU. ``le=None``: no response data expected; ``le=256`` is
    encoded ``00``."""

    cla: int
    ins: int
    p1: int
    p2: int
    data: bytes = b""
    le: int | None = None

    def __post_init__(self) -> None:
        for name in ("cla", "ins", "p1", "p2"):
            value = getattr(self, name)
            if not 0 <= value <= 0xFF:
                raise ValueError(f"{name} must be one byte, got {value}")
        if len(self.data) > 255:
            raise ValueError(f"short APDU data is at most 255 bytes, got {len(self.data)}")
        if self.le is not None and not 1 <= self.le <= 256:
            raise ValueError(f"Le must be between 1 and 256, got {self.le}")

    def encode(self) -> bytes:
        out = bytes([self.cla, self.ins, self.p1, self.p2])
        if self.data:
            out += bytes([len(self.data)]) + self.data
        if self.le is not None:
            out += bytes([self.le & 0xFF])
        return out

    @classmethod
    def decode(cls, raw: bytes) -> Command:
        """Parse a short APDU (the four ISO cases); ``ValueError`` on anything else."""
        if len(raw) < 4:
            raise ValueError(f"an APDU has at least 4 bytes, got {len(raw)}")
        (cla, ins, p1, p2), body = raw[:4], raw[4:]
        if not body:
            return cls(cla, ins, p1, p2)
        if len(body) == 1:
            return cls(cla, ins, p1, p2, le=body[0] or 256)
        lc = body[0]
        if lc == 0:
            raise ValueError("extended APDUs are not supported")
        if len(body) == 1 + lc:
            return cls(cla, ins, p1, p2, data=bytes(body[1:]))
        if len(body) == 2 + lc:
            return cls(cla, ins, p1, p2, data=bytes(body[1:-1]), le=body[-1] or 256)
        raise ValueError(f"Lc={lc} does not match a body of {len(body)} bytes")


@dataclass(frozen=True)
class Response:
    """A response APDU: data then SW1 SW2."""

    data: bytes
    sw: int

    @classmethod
    def parse(cls, raw: bytes) -> Response:
        if len(raw) < 2:
            raise CardError(f"malformed card answer: {len(raw)} byte(s), expected at least 2")
        return cls(bytes(raw[:-2]), int.from_bytes(raw[-2:], "big"))

    def encode(self) -> bytes:
        return self.data + self.sw.to_bytes(2, "big")

    @property
    def ok(self) -> bool:
        return self.sw == SW_OK


def check(response: Response, context: str, *, allow: frozenset[int] = frozenset()) -> bytes:
    """Return the data of a successful response, or raise the error its SW means.

    ``63Cx`` raises ``WrongPin(x)``; ``6983`` raises ``PinBlocked``; every other
    non-success SW raises ``StatusWordError`` naming the operation and the meaning.
    """
    sw = response.sw
    if sw == SW_OK or sw in allow:
        return response.data
    if sw >> 4 == 0x63C:
        raise WrongPin(sw & 0x0F)
    if sw == 0x6983:
        raise PinBlocked()
    raise StatusWordError(sw, context)
