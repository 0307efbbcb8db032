"""What the kiosk needs from the outside world, given to ``make_app``.

The kiosk's composition root (``appliance.commands.kiosk.build_context``, over
``appliance.bootstrap.App``) builds it with the real adapters (the card backend, the ESC/POS
printer, the BDPM referential, the SQLite units of work); the tests build the same object
around a temporary data directory, a virtual card and the printer emulator. The UI imports
no adapter and no store module: it calls the services with a unit of work
(``appliance.ports.uow``) and reads the screens' read models from ``uow.views``.

Threads: the UI thread never touches the database, the card or the printer. Workers take
``with ctx.uow() as uow:`` a unit of work on a connection of their own (SQLite connections
are not shared between threads), and every card operation goes through ``card_call`` (one
thread owns the card). The card watcher and the print worker run their own threads and
report through callbacks that post Textual messages.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from appliance.ports.clock import utc_now

if TYPE_CHECKING:
    from appliance.domain.prescription import Prescription
    from appliance.ports.card import CardWatcher
    from appliance.ports.printer import PrinterStatus
    from appliance.ports.uow import UnitOfWork
    from appliance.services.auth import PractitionerSession
    from appliance.services.prescribing import IdAllocator

    OtherSubstances = Callable[[UnitOfWork, Iterable[tuple[str, int, str | None]]],
                               set[tuple[str, int, str]]]

T = TypeVar("T")


class PrintService(Protocol):
    """The print queue worker of this kiosk (``appliance.bootstrap.PrintService``)."""

    def start(self, on_status: Callable[[Any], None]) -> None: ...

    def stop(self) -> None: ...

    def wake(self) -> None: ...

    def probe(self) -> PrinterStatus:
        """Ask the printer itself (network I/O: call it from a worker)."""
        ...


@dataclass(frozen=True)
class DispensationView:
    """One dispensation as the kiosk shows it (French text); ``other_substance``: the
    product handed over does not hold the prescribed substances."""

    text: str
    substituted: bool
    complete: bool
    other_substance: bool = False


@dataclass
class KioskContext:
    new_uow: Callable[[], UnitOfWork]
    """A unit of work on a connection of its own (see ``uow()``)."""
    login: Callable[[str, str], PractitionerSession]
    """``login(reader, pin)``: open the card in ``reader`` and authenticate (card thread)."""
    card_call: Callable[[Callable[[], Any]], Any] = field(default=lambda fn: fn())
    card_info: Callable[[str], tuple[str, int | None]] | None = None
    """``card_info(reader)``: the holder's name and profession, and the PIN tries left,
    read without spending a try (card thread)."""
    watcher: CardWatcher | None = None
    referential: Any = None
    preview: Callable[[Prescription], list[str]] | None = None
    printer: PrintService | None = None
    establishment: str = "EHPAD"
    allow_quit: bool = False
    console: bool = False
    banner: str = ""
    demo_dispense: Callable[[str], str] | None = None
    other_substances: OtherSubstances | None = None
    """``other_substances(uow, handed)``: of the products handed over in place of the
    prescribed ones, ``(prescription ID, line number, CIP13)``, those that hold another
    substance than the prescribed one (``appliance.services.substitution``, over the
    referential; worker threads). ``None``: no such alert."""
    warm_up: Callable[[KioskContext], None] | None = None
    """``warm_up(ctx)``, run on a thread once the lock screen is drawn, before the card
    monitor, the printer and the status line start: what the kiosk makes or loads after its
    first frame (the card monitor, the referential, the store's migrations, the trust store).
    An ``OrdoError`` from it is shown on the lock screen; the rest starts all the same."""
    on_hangup: Callable[[], None] | None = None
    """Run when the terminal hangs up (SIGHUP), before the process ends at once: the
    terminal cannot be restored, so only what was started is stopped."""
    now: Callable[[], datetime] = utc_now

    @cached_property
    def ids(self) -> IdAllocator:
        """The kiosk's prescription-ID generator (one per process: IDs stay monotonic)."""
        from appliance.services.prescribing import IdAllocator

        return IdAllocator()

    def uow(self) -> contextlib.closing[UnitOfWork]:
        """``with ctx.uow() as uow:`` a unit of work for the calling worker thread, closed
        afterwards."""
        return contextlib.closing(self.new_uow())
