"""``ordo id check`` and ``ordo id new``: check a typed prescription ID, or make one.

``check`` prints ``VALID <formatted id>`` and exits 0, or ``INVALID: <reason>`` and exits 1,
so that an installer or a script can test an ID copied from a printed order.
"""

from __future__ import annotations

import time

import click

from appliance.domain.prescription_id import (
    PrescriptionIdGenerator,
    format_id,
    validate_prescription_id,
)
from appliance.errors import InvalidIdentifier


def _wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


@click.group("id")
def id_group() -> None:
    """Prescription IDs: check one, or make a new one."""


@id_group.command("check")
@click.argument("parts", metavar="ID", nargs=-1, required=True)
def check(parts: tuple[str, ...]) -> None:
    """Check a prescription ID (spaces, dashes, lower case and I/L/O look-alikes allowed).

    Example: ordo id check "01M8 AA52 X8EC JK0T E86H ARRT"
    """
    try:
        compact = validate_prescription_id(" ".join(parts))
    except InvalidIdentifier as exc:
        click.echo(f"INVALID: {exc.expected}")
        raise click.exceptions.Exit(1) from exc
    click.echo(f"VALID {format_id(compact)}")


@id_group.command("new")
def new() -> None:
    """Print a fresh prescription ID, in groups of 4 (for tests and demonstrations)."""
    click.echo(format_id(PrescriptionIdGenerator(_wall_clock_ms).new()))


COMMANDS = [id_group]
