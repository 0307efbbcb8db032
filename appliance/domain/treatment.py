"""How long a signed line lasts: the days of a resident's current treatment.

A line starts the day its prescription is signed and lasts its duration once, then once
more per renewal: "1 comprimé le soir pendant 1 mois", renewable twice, signed on 10 March,
runs to 9 June. A month is a calendar month (10 March + 1 month = 10 April, exclusive); a
single intake lasts its day. A line without a duration (free text, or a structured posology
given without one) is open-ended: it counts for the year a French prescription is valid, and
says so (``open_ended``), so that a screen can show it as such.
"""

from __future__ import annotations

import calendar
from dataclasses import dataclass
from datetime import date, timedelta

from appliance.domain.posology import FreeTextPosology, Posology

VALIDITY_MONTHS = 12  # a prescription is valid for one year at most


@dataclass(frozen=True)
class LineSpan:
    """The first and last day of a line, and whether its last day is only the validity's."""

    start: date
    end: date
    open_ended: bool

    def covers(self, day: date) -> bool:
        return self.start <= day <= self.end


def add_months(day: date, months: int) -> date:
    """The same day ``months`` later, or the month's last day when it is shorter."""
    month_index = day.month - 1 + months
    year, month = day.year + month_index // 12, month_index % 12 + 1
    return date(year, month, min(day.day, calendar.monthrange(year, month)[1]))


def _after(start: date, value: int, unit: str) -> date:
    """The first day after ``value`` ``unit`` from ``start``."""
    if unit == "mois":
        return add_months(start, value)
    return start + timedelta(days=value * (7 if unit == "semaine" else 1))


def line_span(posology: Posology | FreeTextPosology, start: date, renewals: int) -> LineSpan:
    """The days a signed line covers, renewals included."""
    if isinstance(posology, Posology):
        single = not (posology.moments or posology.times_per_day or posology.interval_hours
                      or posology.every_days or posology.times_per_week or posology.as_needed)
        if single:
            return LineSpan(start, start, False)
        if posology.duration is not None:
            times = 1 + max(0, renewals)
            end = _after(start, posology.duration.value * times, posology.duration.unit)
            return LineSpan(start, end - timedelta(days=1), False)
    return LineSpan(start, add_months(start, VALIDITY_MONTHS) - timedelta(days=1), True)
