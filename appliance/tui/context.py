"""What the kiosk needs from the outside world, given to ``make_app``.

The composition root (``appliance.commands.kiosk``) builds it from the settings with the
real adapters (pcscd, the ESC/POS printer, the BDPM referential, the sync status); the tests
build the same object around a temporary data directory, a virtual card and the printer
emulator. The UI imports no concrete adapter.

Threads: the UI thread never touches the database, the card or the printer. Workers call
``open_store()`` for a connection of their own (SQLite connections are not shared between
threads), and every card operation goes through ``card_call`` (one thread owns the PC/SC
context). The card watcher and the print worker run their own threads and report through
callbacks that post Textual messages.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

if TYPE_CHECKING:
    from appliance.domain.prescription import Prescription
    from appliance.ports import CardEvent, PrinterStatus
    from appliance.services.auth import PractitionerSession
    from appliance.services.prescribing import IdAllocator
    from appliance.store.db import Store

T = TypeVar("T")


class Watcher(Protocol):
    """The card monitor (``drivers.card.monitor.ReaderMonitor``)."""

    def subscribe(self, callback: Callable[[CardEvent], None]) -> None: ...

    def start(self) -> None: ...

    def stop(self) -> None: ...

    def cards(self) -> dict[str, bytes]: ...

    def readers(self) -> list[str]: ...

    @property
    def service_up(self) -> bool: ...


class PrintService(Protocol):
    """The print queue worker of this kiosk (``PrintWorker`` around the order printer)."""

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
    open_store: Callable[[], Store]
    login: Callable[[str, str], PractitionerSession]
    """``login(reader, pin)``: open the card in ``reader`` and authenticate (card thread)."""
    card_call: Callable[[Callable[[], Any]], Any] = field(default=lambda fn: fn())
    card_info: Callable[[str], tuple[str, int | None]] | None = None
    """``card_info(reader)``: the holder's name and profession, and the PIN tries left,
    read without spending a try (card thread)."""
    watcher: Watcher | None = None
    referential: Any = None
    preview: Callable[[Prescription], list[str]] | None = None
    printer: PrintService | None = None
    sync_status: Callable[[Store], Any] | None = None
    dispensations: Callable[[Store, str], list[DispensationView]] | None = None
    establishment: str = "EHPAD"
    allow_quit: bool = False
    console: bool = False
    banner: str = ""
    demo_dispense: Callable[[str], str] | None = None
    warm_up: Callable[[KioskContext], None] | None = None
    """``warm_up(ctx)``, run on a thread once the lock screen is drawn, before the card
    monitor, the printer and the status line start: what the kiosk makes or loads after its
    first frame (the card monitor, the referential, the store's migrations, the trust store).
    An ``OrdoError`` from it is shown on the lock screen; the rest starts all the same."""
    on_hangup: Callable[[], None] | None = None
    """Run when the terminal hangs up (SIGHUP), before the process ends at once: the
    terminal cannot be restored, so only what was started is stopped."""
    now: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))

    @cached_property
    def ids(self) -> IdAllocator:
        """The kiosk's prescription-ID generator (one per process: IDs stay monotonic)."""
        from appliance.services.prescribing import IdAllocator

        return IdAllocator()

    @contextlib.contextmanager
    def store(self) -> Iterator[Store]:
        """A connection for the calling worker thread, closed afterwards."""
        store = self.open_store()
        try:
            yield store
        finally:
            store.close()
