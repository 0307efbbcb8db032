"""The prescription ID: generated offline, unique without coordination, typed by hand.

Layout (24 characters, Crockford base32 ``0123456789ABCDEFGHJKMNPQRSTVWXYZ``, no I, L, O, U)::

    TTTTTTTTTT RRRRRRRRRRRRR C
    10 chars   13 chars      1 char
    50 bits    65 bits       check

- ``T``: milliseconds since the Unix epoch, big-endian (50 bits last until the year
  37648). IDs of one appliance therefore sort by creation time.
- ``R``: 65 bits from a cryptographic random source (``secrets.token_bytes``).
- ``C``: a check character (below). Printed in groups of 4: ``XXXX XXXX XXXX XXXX XXXX XXXX``.

Uniqueness. Within one ``PrescriptionIdGenerator`` the timestamp is strictly monotonic,
``ts = max(clock_ms(), last_ms + 1)``, so a clock jumping backwards never repeats a
timestamp within a process (``last_ms`` can be persisted and restored by the caller).
Across appliances, restarts, and an old backup restored with the clock set back, two IDs
can only be equal if they have the same millisecond *and* the same 65 random bits: for
``n`` IDs sharing one millisecond the probability of any collision is at most
``n(n-1)/2 · 2⁻⁶⁵`` (2.7·10⁻²⁰ for a pair; 1.4·10⁻⁸ even for a million IDs all in the
same millisecond). For a fleet of 10,000 appliances each issuing 1,000 IDs a day for 50
years (1.8·10¹¹ IDs over 1.6·10¹² ms, so about 10¹⁰ pairs sharing a millisecond), the
expected number of collisions is about 3·10⁻¹⁰ (3·10⁻⁹ if all of it fell in a tenth of
each day). The store's UNIQUE constraint is the
last line of defence.

Check character: the Damm algorithm over the quasigroup ``x∘y = a·x + y`` in GF(32)
(polynomial x⁵+x²+1, ``a = 2``, i.e. the element ``x``, primitive). Characters map to
their index in the alphabet; the interim starts at 0 and each character ``d`` makes it
``i ← i∘d``. The check ``c`` is chosen so that the interim after ``c`` is 0:
``a·i + c = 0``, i.e. ``c = a·i`` (characteristic 2). A text is valid when the interim
after all 24 characters is 0.

- ``∘`` is a quasigroup: for fixed ``x``, ``y ↦ a·x + y`` is a bijection, and for fixed
  ``y``, ``x ↦ a·x + y`` is a bijection because ``a ≠ 0``. So changing one character
  changes the interim at that point and every interim after it: every single-character
  substitution is detected, the check character included.
- It is weakly totally anti-symmetric: ``(i∘p)∘q = a²i + a·p + q`` and
  ``(i∘q)∘p = a²i + a·q + p`` differ by ``(a+1)(p+q)``, which is 0 only if ``p = q``
  since ``a ≠ 1``. So every adjacent transposition of two different characters changes
  the interim, and (bijection again) the final one: all are detected.
- Equivalently the final interim is the weighted sum ``Σ a^(24-k)·d_k``; a jump
  transposition (``pxq → qxp``) changes it by ``a^j(a+1)²(p+q) ≠ 0`` and is detected too.
  Since multiplying by ``a`` is GF(2)-linear, each bit of the interim is the parity of
  some bits of the text read as a number; the code uses five such parity masks, derived
  at import from the character-by-character definition (``_damm_interim``).

ISO 7064 MOD 37-36 is not used: its check character can fall outside this alphabet.
On input, whitespace and dashes are ignored, lower case is accepted, and the Crockford
look-alikes are mapped (I and L → 1, O → 0) before the check.
"""

from __future__ import annotations

import secrets
import threading
from collections.abc import Callable

from appliance.errors import InvalidIdentifier, ValidationError

__all__ = [
    "ALPHABET",
    "ID_LENGTH",
    "PrescriptionIdGenerator",
    "check_character",
    "format_id",
    "id_timestamp_ms",
    "validate_prescription_id",
]

ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"  # Crockford base32
ID_LENGTH = 24
DATA_LENGTH = ID_LENGTH - 1
TIME_CHARS = 10
TIME_BITS = 5 * TIME_CHARS  # 50
RANDOM_CHARS = DATA_LENGTH - TIME_CHARS  # 13
RANDOM_BITS = 5 * RANDOM_CHARS  # 65
RANDOM_BYTES = (RANDOM_BITS + 7) // 8  # 9
MAX_MS = (1 << TIME_BITS) - 1
GROUP = 4

GF32_POLY = 0b100101  # x^5 + x^2 + 1, primitive
DAMM_A = 0b00010  # the element x: neither 0 nor 1

_ALLOWED = frozenset(ALPHABET)
_LOOKALIKES = str.maketrans({"I": "1", "L": "1", "O": "0", "-": None})
# int(text, 32) reads the digits 0-9 A-V: translate Crockford's alphabet to those.
_TO_INT_DIGITS = str.maketrans(ALPHABET, "0123456789ABCDEFGHIJKLMNOPQRSTUV")
# Two characters (10 bits) per lookup when encoding.
_PAIRS = tuple(ALPHABET[i >> 5] + ALPHABET[i & 31] for i in range(1024))


def _gf32_mul(x: int, y: int) -> int:
    product = 0
    while y:
        if y & 1:
            product ^= x
        y >>= 1
        x <<= 1
        if x & 0b100000:
            x ^= GF32_POLY
    return product


_TIMES_A = tuple(_gf32_mul(DAMM_A, x) for x in range(32))


def _damm_interim(values: list[int]) -> int:
    """The Damm interim, by definition: ``i ← a·i + d`` for each character value ``d``."""
    interim = 0
    for d in values:
        interim = _TIMES_A[interim] ^ d
    return interim


def _digits(number: int, count: int) -> list[int]:
    return [(number >> (5 * (count - 1 - k))) & 31 for k in range(count)]


def _parity_masks(count: int, times_a: bool) -> tuple[int, ...]:
    """The interim is GF(2)-linear in the bits of the text read as a big-endian number.

    So bit ``b`` of the interim (or of ``a`` × the interim) is the parity of
    ``number & masks[b]``: five AND + popcount instead of a loop over the characters.
    The masks are derived from ``_damm_interim`` itself, one input bit at a time.
    """
    masks = [0] * 5
    for bit in range(5 * count):
        interim = _damm_interim(_digits(1 << bit, count))
        if times_a:
            interim = _TIMES_A[interim]
        for b in range(5):
            if interim >> b & 1:
                masks[b] |= 1 << bit
    return tuple(masks)


_CHECK_MASKS = _parity_masks(DATA_LENGTH, times_a=True)  # 23 data chars -> check value
_VERIFY_MASKS = _parity_masks(ID_LENGTH, times_a=False)  # 24 chars -> final interim


def _parity5(number: int, masks: tuple[int, ...]) -> int:
    m0, m1, m2, m3, m4 = masks
    return (
        ((number & m0).bit_count() & 1)
        | ((number & m1).bit_count() & 1) << 1
        | ((number & m2).bit_count() & 1) << 2
        | ((number & m3).bit_count() & 1) << 3
        | ((number & m4).bit_count() & 1) << 4
    )


def _as_number(text: str) -> int:
    """A text over ALPHABET read as a big-endian base-32 number."""
    return int(text.translate(_TO_INT_DIGITS), 32)


def check_character(data23: str) -> str:
    """The check character of 23 data characters (upper-case Crockford base32)."""
    if not isinstance(data23, str) or len(data23) != DATA_LENGTH or not _ALLOWED.issuperset(
        data23
    ):
        raise InvalidIdentifier(
            "id", data23, f"expected {DATA_LENGTH} characters from {ALPHABET}"
        )
    return ALPHABET[_parity5(_as_number(data23), _CHECK_MASKS)]


def _encode_data(ts: int, rnd: int) -> str:
    """Encode the 50-bit time and the 65 random bits as 10 + 13 characters, big-endian.

    Unrolled, two characters per lookup, on word-sized integers: this is the hot path.
    """
    pairs = _PAIRS
    return "".join((
        pairs[ts >> 40], pairs[(ts >> 30) & 1023], pairs[(ts >> 20) & 1023],
        pairs[(ts >> 10) & 1023], pairs[ts & 1023],
        pairs[rnd >> 55], pairs[(rnd >> 45) & 1023], pairs[(rnd >> 35) & 1023],
        pairs[(rnd >> 25) & 1023], pairs[(rnd >> 15) & 1023], pairs[(rnd >> 5) & 1023],
        ALPHABET[rnd & 31],
    ))


class PrescriptionIdGenerator:
    """Makes prescription IDs from an injected clock and random source.

    ``clock_ms()`` returns milliseconds since the Unix epoch; ``random_bytes(n)`` returns
    ``n`` random bytes (a cryptographic source in production). ``last_ms`` is the last
    timestamp used; a caller may persist it and set it back after a restart. ``new()`` is
    safe to call from several threads.
    """

    def __init__(
        self,
        clock_ms: Callable[[], int],
        random_bytes: Callable[[int], bytes] = secrets.token_bytes,
    ) -> None:
        self._clock_ms = clock_ms
        self._random_bytes = random_bytes
        self._last_ms = 0
        self._lock = threading.Lock()

    @property
    def last_ms(self) -> int:
        return self._last_ms

    @last_ms.setter
    def last_ms(self, value: int) -> None:
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_MS:
            raise ValidationError("last_ms", value, f"an integer in [0, {MAX_MS}]")
        with self._lock:
            self._last_ms = value

    def new(self) -> str:
        """A fresh 24-character ID (no spaces)."""
        with self._lock:
            ts = max(int(self._clock_ms()), self._last_ms + 1)
            if ts > MAX_MS:
                raise ValidationError("clock_ms", ts, f"milliseconds in [0, {MAX_MS}]")
            self._last_ms = ts
        random_raw = self._random_bytes(RANDOM_BYTES)
        if len(random_raw) != RANDOM_BYTES:
            raise ValidationError(
                "random_bytes", len(random_raw), f"{RANDOM_BYTES} bytes from the random source"
            )
        rnd = int.from_bytes(random_raw, "big") >> (8 * RANDOM_BYTES - RANDOM_BITS)
        check = _parity5((ts << RANDOM_BITS) | rnd, _CHECK_MASKS)
        return _encode_data(ts, rnd) + ALPHABET[check]


def validate_prescription_id(text: str, field: str = "id") -> str:
    """Normalise and check a typed or scanned ID; return its 24-character compact form.

    Whitespace and dashes are ignored, lower case is accepted, I and L read as 1 and O as 0.
    Positions in the reasons are 1-based and count the characters left after removing
    whitespace and dashes.
    """
    if not isinstance(text, str):
        raise InvalidIdentifier(field, text, f"expected text, got {type(text).__name__}")
    compact = "".join(text.upper().split()).translate(_LOOKALIKES)
    if len(compact) != ID_LENGTH:
        raise InvalidIdentifier(
            field, text,
            f"expected {ID_LENGTH} characters (spaces and dashes aside), got {len(compact)}",
        )
    if not _ALLOWED.issuperset(compact):
        pos, ch = next((p, c) for p, c in enumerate(compact, start=1) if c not in _ALLOWED)
        raise InvalidIdentifier(
            field, text,
            f"forbidden character {ch!r} at position {pos} "
            "(allowed: digits and letters except I, L, O, U)",
        )
    if _parity5(_as_number(compact), _VERIFY_MASKS) != 0:
        raise InvalidIdentifier(
            field, text,
            f"bad check character {compact[-1]!r}: a character is mistyped or two are swapped",
        )
    return compact


def format_id(prescription_id: str) -> str:
    """``XXXX XXXX XXXX XXXX XXXX XXXX`` for display and print (the ID is validated)."""
    compact = validate_prescription_id(prescription_id)
    return " ".join(compact[i : i + GROUP] for i in range(0, ID_LENGTH, GROUP))


def id_timestamp_ms(prescription_id: str) -> int:
    """The creation time (ms since the Unix epoch) carried by a valid ID."""
    return _as_number(validate_prescription_id(prescription_id)[:TIME_CHARS])
