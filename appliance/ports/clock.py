"""The clock port: what time it is (UTC, aware), and the house timestamp format.

Services and adapters take a ``Clock`` (a callable returning the current UTC time) so
that tests can move time; ``utc_now`` is the system's. Stored and exchanged timestamps are
``iso(moment)``: UTC with milliseconds, which sorts as text.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

__all__ = ["Clock", "iso", "parse_iso", "utc_now"]

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    """The system clock, as an aware UTC datetime."""
    return datetime.now(UTC)


def iso(moment: datetime) -> str:
    """The house timestamp format (UTC, milliseconds): sorts as text."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds")


def parse_iso(value: str | None) -> datetime | None:
    """A stored timestamp back (``None`` stays ``None``)."""
    return datetime.fromisoformat(value) if value else None
