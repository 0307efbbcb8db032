"""Prescription IDs: uniqueness without coordination, the check character, input and CLI."""

import itertools
import random
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from appliance.cli import main
from appliance.domain.prescription_id import (
    ALPHABET,
    ID_LENGTH,
    PrescriptionIdGenerator,
    check_character,
    format_id,
    id_timestamp_ms,
    validate_prescription_id,
)
from appliance.errors import InvalidIdentifier, ValidationError

T0 = 1_795_000_000_000  # 2026-11-18, in ms since the Unix epoch


class FakeClock:
    """A wall clock that a test moves by hand (forwards or backwards)."""

    def __init__(self, now_ms: int) -> None:
        self.now_ms = now_ms

    def __call__(self) -> int:
        return self.now_ms


def seeded_bytes(seed: int):
    return random.Random(seed).randbytes


# --- An independent reference for the check character --------------------------------


def gf32_mul(x: int, y: int) -> int:
    """Multiplication in GF(2)[x] / (x^5 + x^2 + 1), written for the test."""
    product = 0
    for bit in range(5):
        if y >> bit & 1:
            product ^= x << bit
    for bit in range(9, 4, -1):  # reduce degrees 9..5
        if product >> bit & 1:
            product ^= 0b100101 << (bit - 5)
    return product


def damm_reference(text: str) -> int:
    interim = 0
    for ch in text:
        interim = gf32_mul(2, interim) ^ ALPHABET.index(ch)
    return interim


def test_check_character_is_the_damm_check_over_gf32() -> None:
    rng = random.Random(1)
    for _ in range(2000):
        data = "".join(rng.choice(ALPHABET) for _ in range(ID_LENGTH - 1))
        check = check_character(data)
        # c is chosen so that the interim after it is 0: a·i + c = 0.
        assert gf32_mul(2, damm_reference(data)) ^ ALPHABET.index(check) == 0
        assert damm_reference(data + check) == 0
        assert validate_prescription_id(data + check) == data + check


def test_the_quasigroup_is_weakly_totally_anti_symmetric() -> None:
    """(i∘p)∘q == (i∘q)∘p only when p == q, for every interim i (exhaustive)."""

    def op(x: int, y: int) -> int:
        return gf32_mul(2, x) ^ y

    for i in range(32):
        for p in range(32):
            assert len({op(i, y) for y in range(32)}) == 32  # rows are permutations
            for q in range(32):
                if p != q:
                    assert op(op(i, p), q) != op(op(i, q), p)


# --- Uniqueness ----------------------------------------------------------------------


def run(generator: PrescriptionIdGenerator, clock: FakeClock, count: int, per_ms: int) -> list[str]:
    """``count`` IDs, the wall clock moving 1 ms every ``per_ms`` IDs (a busy appliance)."""
    ids = []
    for start in range(0, count, per_ms):
        ids.extend(generator.new() for _ in range(min(per_ms, count - start)))
        clock.now_ms += 1
    return ids


def test_two_appliances_a_backwards_clock_and_a_restored_backup_never_collide() -> None:
    clock_a, clock_b = FakeClock(T0), FakeClock(T0)  # the same millisecond on both
    appliance_a = PrescriptionIdGenerator(clock_a)
    appliance_b = PrescriptionIdGenerator(clock_b)

    ids = run(appliance_a, clock_a, 100_000, per_ms=2)
    backup_last_ms, backup_clock = appliance_a.last_ms, clock_a.now_ms  # nightly backup
    ids += run(appliance_a, clock_a, 150_000, per_ms=2)
    clock_a.now_ms -= 60_000  # NTP steps the clock back one minute
    ids += run(appliance_a, clock_a, 100_000, per_ms=2)

    # The disk dies; the old backup is restored on new hardware whose clock is also behind.
    restored_clock = FakeClock(backup_clock)
    restored = PrescriptionIdGenerator(restored_clock)
    restored.last_ms = backup_last_ms
    ids += run(restored, restored_clock, 150_000, per_ms=2)

    ids += run(appliance_b, clock_b, 500_000, per_ms=2)

    assert len(ids) == 1_000_000
    assert all(len(i) == ID_LENGTH for i in ids)
    assert len(set(ids)) == len(ids), "two IDs collided"
    # The test is meaningful: most IDs share their millisecond with another ID (the two
    # appliances, the backwards clock, the restored backup), so the random part did the work.
    assert len({i[:10] for i in ids}) < 560_000
    for sample in random.Random(2).sample(ids, 500):
        assert validate_prescription_id(sample) == sample


def test_restored_state_shows_that_the_random_part_prevents_collisions() -> None:
    """With a constant 'random' source, restoring an old state does repeat IDs."""

    def constant(n: int) -> bytes:
        return b"\x42" * n

    clock = FakeClock(T0)
    first = PrescriptionIdGenerator(clock, constant)
    before = [first.new() for _ in range(10)]
    again = PrescriptionIdGenerator(FakeClock(T0), constant)
    assert [again.new() for _ in range(10)] == before
    fresh = PrescriptionIdGenerator(FakeClock(T0))
    assert not {fresh.new() for _ in range(10)} & set(before)


def test_timestamps_are_strictly_monotonic_when_the_clock_goes_backwards() -> None:
    clock = FakeClock(T0)
    generator = PrescriptionIdGenerator(clock, seeded_bytes(3))
    ids = []
    for step in (0, 0, 5, -10_000, 0, 1, -1, 3_600_000, -7_200_000, 0):
        clock.now_ms += step
        ids += [generator.new() for _ in range(50)]
    stamps = [id_timestamp_ms(i) for i in ids]
    assert all(a < b for a, b in itertools.pairwise(stamps))
    assert ids == sorted(ids)  # time first, big-endian: IDs of one appliance sort by time
    assert stamps[0] == T0
    assert generator.last_ms == stamps[-1]


def test_id_carries_the_clock_time_and_last_ms_can_be_restored() -> None:
    clock = FakeClock(T0 + 123)
    generator = PrescriptionIdGenerator(clock)
    assert id_timestamp_ms(generator.new()) == T0 + 123
    generator.last_ms = T0 + 10_000  # restored from a persisted value
    assert id_timestamp_ms(generator.new()) == T0 + 10_001
    clock.now_ms = T0 + 20_000
    assert id_timestamp_ms(generator.new()) == T0 + 20_000


@pytest.mark.parametrize("bad", [-1, 1 << 50, "123", 1.5, True])
def test_last_ms_refuses_nonsense(bad) -> None:
    generator = PrescriptionIdGenerator(FakeClock(T0))
    with pytest.raises(ValidationError) as err:
        generator.last_ms = bad
    assert err.value.field == "last_ms"


def test_generator_refuses_a_clock_past_50_bits_and_a_short_random_source() -> None:
    with pytest.raises(ValidationError, match="clock_ms"):
        PrescriptionIdGenerator(FakeClock(1 << 50)).new()
    with pytest.raises(ValidationError, match="random_bytes"):
        PrescriptionIdGenerator(FakeClock(T0), lambda n: b"\x00" * (n - 1)).new()


def test_ids_use_only_the_unambiguous_alphabet() -> None:
    generator = PrescriptionIdGenerator(FakeClock(T0))
    seen = set("".join(generator.new() for _ in range(2000)))
    assert seen <= set(ALPHABET)
    assert not seen & set("ILOU")
    assert len(ALPHABET) == 32 and len(set(ALPHABET)) == 32


# --- Error detection -------------------------------------------------------------------


def undetected(candidates: list[str]) -> list[str]:
    missed = []
    for text in candidates:
        try:
            validate_prescription_id(text)
        except InvalidIdentifier as exc:
            assert "bad check character" in exc.expected
        else:
            missed.append(text)
    return missed


def substitutions(valid: str) -> list[str]:
    return [valid[:pos] + other + valid[pos + 1:]
            for pos in range(ID_LENGTH) for other in ALPHABET if other != valid[pos]]


def transpositions(valid: str, gap: int = 1) -> list[str]:
    out = []
    for pos in range(ID_LENGTH - gap):
        a, b = valid[pos], valid[pos + gap]
        if a != b:
            out.append(valid[:pos] + b + valid[pos + 1:pos + gap] + a + valid[pos + gap + 1:])
    return out


def test_every_substitution_and_adjacent_transposition_of_256_ids_is_detected() -> None:
    generator = PrescriptionIdGenerator(FakeClock(T0), seeded_bytes(4))
    sample = [generator.new() for _ in range(256)]
    subs = [s for valid in sample for s in substitutions(valid)]
    swaps = [s for valid in sample for s in transpositions(valid)]
    assert len(subs) == 256 * ID_LENGTH * 31
    assert len(swaps) > 256 * 20
    assert undetected(subs) == []
    assert undetected(swaps) == []


def valid_id_with(fixed: dict[int, str]) -> str:
    """A valid ID with the given characters at the given positions (the check included,
    reached by choosing the first character)."""
    data = ["7"] * (ID_LENGTH - 1)
    for pos, ch in fixed.items():
        if pos < ID_LENGTH - 1:
            data[pos] = ch
    for first in ALPHABET if ID_LENGTH - 1 in fixed and 0 not in fixed else [data[0]]:
        data[0] = first
        text = "".join(data)
        full = text + check_character(text)
        if all(full[pos] == ch for pos, ch in fixed.items()):
            return full
    raise AssertionError(f"no valid ID with {fixed}")


def test_substitutions_and_transpositions_exhaustively_by_position_and_pair() -> None:
    """Every position, every character p and every other character q: p -> q at that
    position, and 'pq' -> 'qp' at every adjacent pair of positions (the check included)."""
    subs, swaps = [], []
    for pos in range(ID_LENGTH):
        for p in ALPHABET:
            valid = valid_id_with({pos: p})
            subs += [valid[:pos] + q + valid[pos + 1:] for q in ALPHABET if q != p]
            if pos < ID_LENGTH - 1:
                for q in ALPHABET:
                    if q != p:
                        valid = valid_id_with({pos: p, pos + 1: q})
                        swaps.append(valid[:pos] + q + p + valid[pos + 2:])
    assert len(subs) == ID_LENGTH * 32 * 31
    assert len(swaps) == (ID_LENGTH - 1) * 32 * 31
    assert undetected(subs) == []
    assert undetected(swaps) == []


def test_jump_transpositions_are_detected_too() -> None:
    generator = PrescriptionIdGenerator(FakeClock(T0), seeded_bytes(5))
    jumps = [s for _ in range(200) for s in transpositions(generator.new(), gap=2)]
    assert undetected(jumps) == []


# --- Input, formatting, reasons ---------------------------------------------------------

DATA = "0123456789ABCDEFGHJKMNP"
ID = DATA + check_character(DATA)
WRONG_CHECK = next(c for c in ALPHABET if c != ID[-1])


def test_format_groups_of_four() -> None:
    assert format_id(ID) == " ".join([ID[0:4], ID[4:8], ID[8:12], ID[12:16], ID[16:20], ID[20:]])
    assert format_id(format_id(ID)) == format_id(ID)
    assert len(format_id(ID)) == 29
    with pytest.raises(InvalidIdentifier):
        format_id(ID[:-1])


@pytest.mark.parametrize(
    "typed",
    [
        ID,
        ID.lower(),
        format_id(ID),
        "-".join(format_id(ID).split()),
        "  " + format_id(ID).lower() + " \n",
        ID[:12] + "\t" + ID[12:],
        "O" + ID[1:].replace("1", "I", 1),  # O read as 0, I as 1
        "o" + ID[1:].replace("1", "l", 1),  # o read as 0, l as 1
    ],
)
def test_input_is_normalised(typed: str) -> None:
    assert validate_prescription_id(typed) == ID


@pytest.mark.parametrize(
    ("typed", "reason"),
    [
        (ID[:-1], "expected 24 characters (spaces and dashes aside), got 23"),
        (ID + "0", "got 25"),
        ("", "got 0"),
        (ID[:6] + "U" + ID[7:], "forbidden character 'U' at position 7"),
        (ID[:23] + "*", "forbidden character '*' at position 24"),
        ("0123 .567 89AB CDEF GHJK MNP" + ID[-1], "forbidden character '.' at position 5"),
        (ID[:10] + ID[11] + ID[10] + ID[12:], "bad check character"),
        (ID[:23] + WRONG_CHECK, f"bad check character {WRONG_CHECK!r}"),
    ],
)
def test_errors_say_why(typed: str, reason: str) -> None:
    with pytest.raises(InvalidIdentifier) as err:
        validate_prescription_id(typed, field="order.id")
    assert reason in err.value.expected
    assert err.value.field == "order.id"
    assert err.value.value == typed


def test_error_field_defaults_to_id_and_non_text_is_refused() -> None:
    with pytest.raises(InvalidIdentifier) as err:
        validate_prescription_id(12345)
    assert err.value.field == "id" and "expected text" in err.value.expected


def test_check_character_refuses_bad_data() -> None:
    for bad in (DATA[:-1], DATA.lower(), DATA[:-1] + "U"):
        with pytest.raises(InvalidIdentifier):
            check_character(bad)


# --- CLI ----------------------------------------------------------------------------------


def invoke(tmp_path: Path, *args: str):
    return CliRunner().invoke(main, ["--data-dir", str(tmp_path), "id", *args])


def test_cli_check_valid_and_invalid(tmp_path: Path) -> None:
    result = invoke(tmp_path, "check", format_id(ID).lower())
    assert result.exit_code == 0, result.output
    assert result.output == f"VALID {format_id(ID)}\n"

    result = invoke(tmp_path, "check", *format_id(ID).split())  # unquoted groups
    assert result.exit_code == 0 and result.output == f"VALID {format_id(ID)}\n"

    swapped = ID[:3] + ID[4] + ID[3] + ID[5:]
    result = invoke(tmp_path, "check", swapped)
    assert result.exit_code == 1
    assert result.output.startswith("INVALID: bad check character")

    result = invoke(tmp_path, "check", ID[:20])
    assert result.exit_code == 1
    assert result.output == "INVALID: expected 24 characters (spaces and dashes aside), got 20\n"


def test_cli_new_prints_a_fresh_formatted_id(tmp_path: Path) -> None:
    before = time.time_ns() // 1_000_000
    result = invoke(tmp_path, "new")
    after = time.time_ns() // 1_000_000
    assert result.exit_code == 0, result.output
    printed = result.output.strip()
    assert printed == format_id(printed)
    assert before <= id_timestamp_ms(printed) <= after
