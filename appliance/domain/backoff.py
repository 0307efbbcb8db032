"""Retry timing: exponential backoff with full jitter, and the ``Retry-After`` header.
Pure arithmetic, shared by the sync use case and the registry client. (A registry that does
not answer at all is not waited for this way: the sync service probes it every few seconds
and drains as soon as it answers.)

Full jitter (AWS Architecture Blog, "Exponential Backoff And Jitter", 2015): the n-th retry
waits a uniformly random time in ``[0, min(cap, base · 2^(n-1))]``. It spreads the retries of
many appliances coming back after an outage, and keeps the expected wait bounded by the cap.

``Retry-After`` (RFC 9110 §10.2.3) is either a number of seconds or an HTTP-date; the server's
request is honoured as a floor: the wait is ``max(retry_after, jittered backoff)``.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

MAX_RETRY_AFTER_S = 3600.0  # a registry asking for more than an hour is ignored beyond that


def full_jitter(attempt: int, base_s: float, cap_s: float, rng: random.Random) -> float:
    """The wait before retry number ``attempt`` (1 for the first retry), in seconds."""
    if attempt < 1:
        return 0.0
    # 2**64 already exceeds any cap: avoid huge floats for absurd attempt counts.
    ceiling = min(cap_s, base_s * 2.0 ** min(attempt - 1, 64))
    return rng.uniform(0.0, max(ceiling, 0.0))


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` value, or ``None`` when absent or unreadable.

    Negative and past values give 0; values beyond an hour are clamped to an hour.
    """
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    if text.isascii() and text.isdigit():  # str.isdigit alone accepts "²", which int refuses
        seconds = float(int(text[:12]))
    else:
        try:
            when = parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - (now or datetime.now(UTC))).total_seconds()
    return min(max(seconds, 0.0), MAX_RETRY_AFTER_S)


def next_delay(attempt: int, base_s: float, cap_s: float, rng: random.Random,
               retry_after: float | None = None) -> float:
    """The wait before the next try: jittered backoff, at least ``retry_after``."""
    delay = full_jitter(attempt, base_s, cap_s, rng)
    if retry_after is not None:
        delay = max(delay, retry_after)
    return delay

