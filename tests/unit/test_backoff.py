"""Retry timing: full jitter under a cap, Retry-After as a floor (pure, seeded randomness)."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest

from appliance.domain.backoff import (
    MAX_RETRY_AFTER_S,
    full_jitter,
    next_delay,
    parse_retry_after,
)

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize("attempt", [1, 2, 3, 5, 8])
def test_full_jitter_spans_zero_to_the_exponential_ceiling(attempt):
    rng = random.Random(attempt)
    ceiling = min(60.0, 0.5 * 2 ** (attempt - 1))
    draws = [full_jitter(attempt, 0.5, 60.0, rng) for _ in range(2000)]
    assert all(0.0 <= d <= ceiling for d in draws)
    # full jitter, not "equal jitter": the whole range is used, down to almost nothing
    assert min(draws) < 0.05 * ceiling and max(draws) > 0.95 * ceiling
    assert 0.4 * ceiling < sum(draws) / len(draws) < 0.6 * ceiling


def test_the_cap_holds_for_any_number_of_attempts():
    rng = random.Random(1)
    assert max(full_jitter(n, 1.0, 900.0, rng) for n in range(1, 5000, 7)) <= 900.0
    assert full_jitter(10**9, 1.0, 900.0, rng) <= 900.0
    assert full_jitter(0, 1.0, 900.0, rng) == 0.0


def test_the_same_seed_gives_the_same_waits():
    one = [full_jitter(n, 1.0, 30.0, random.Random(5)) for n in range(1, 10)]
    two = [full_jitter(n, 1.0, 30.0, random.Random(5)) for n in range(1, 10)]
    assert one == two


@pytest.mark.parametrize(("header", "seconds"), [
    ("5", 5.0), (" 7 ", 7.0), ("0", 0.0), ("999999999", MAX_RETRY_AFTER_S),
    (None, None), ("", None), ("soon", None), ("-3", None), ("1.5", None),
])
def test_retry_after_in_seconds(header, seconds):
    assert parse_retry_after(header, NOW) == seconds


def test_retry_after_as_an_http_date():
    later = format_datetime(NOW + timedelta(seconds=120), usegmt=True)
    assert parse_retry_after(later, NOW) == 120.0
    earlier = format_datetime(NOW - timedelta(seconds=30), usegmt=True)
    assert parse_retry_after(earlier, NOW) == 0.0
    far = format_datetime(NOW + timedelta(days=3), usegmt=True)
    assert parse_retry_after(far, NOW) == MAX_RETRY_AFTER_S


def test_retry_after_is_a_floor_never_a_ceiling():
    rng = random.Random(3)
    assert all(next_delay(1, 0.1, 1.0, rng, retry_after=30.0) == 30.0 for _ in range(50))
    waits = [next_delay(6, 1.0, 60.0, rng, retry_after=2.0) for _ in range(500)]
    assert min(waits) == 2.0 and max(waits) > 20.0

