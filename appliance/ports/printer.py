"""The printer port: the order printer and what it says about itself. ``drivers.printer``
implements it (ESC/POS over TCP, USB, serial or a device file)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Protocol

from appliance.errors import PrinterError

if TYPE_CHECKING:
    from appliance.domain.prescription import Prescription

__all__ = ["PRINTER_STATE_LABELS_FR", "OrderPrinter", "PrintReceipt", "PrintRequest",
           "PrinterError", "PrinterState", "PrinterStatus", "PrinterUnavailable"]


class PrinterState(StrEnum):
    READY = "ready"
    PAPER_LOW = "paper_low"
    PAPER_OUT = "paper_out"
    OFFLINE = "offline"  # answers but does not print (cover open, error)
    UNREACHABLE = "unreachable"  # no connection at all
    UNKNOWN = "unknown"  # write-only link (file://) or the printer does not answer status


PRINTER_STATE_LABELS_FR: dict[PrinterState, str] = {
    PrinterState.READY: "Imprimante prête",
    PrinterState.PAPER_LOW: "Imprimante prête, fin de rouleau proche",
    PrinterState.PAPER_OUT: "Plus de papier dans l'imprimante",
    PrinterState.OFFLINE: "Imprimante hors ligne (capot ouvert ou erreur)",
    PrinterState.UNREACHABLE: "Imprimante injoignable",
    PrinterState.UNKNOWN: "État de l'imprimante inconnu",
}


@dataclass(frozen=True)
class PrinterStatus:
    """What the printer says about itself; ``message`` is French, for the UI."""

    state: PrinterState
    detail: str = ""

    @property
    def can_print(self) -> bool:
        return self.state in {PrinterState.READY, PrinterState.PAPER_LOW, PrinterState.UNKNOWN}

    @property
    def message(self) -> str:
        label = PRINTER_STATE_LABELS_FR[self.state]
        return f"{label} : {self.detail}" if self.detail else label


class PrinterUnavailable(PrinterError):
    """The printer did not take the whole job (offline, no paper, connection lost): the
    job stays queued and is retried. The message is French, for the UI. ``sent_some``: part
    of the job may have reached the printer (a partial ticket may have come out)."""

    def __init__(self, state: PrinterState, message: str, *, sent_some: bool = False) -> None:
        self.state = state
        self.sent_some = sent_some
        super().__init__(message)


@dataclass(frozen=True)
class PrintRequest:
    """One order to print: the signed prescription and its QR payload.

    ``duplicate_at`` is set on reprints (the time the duplicate was asked for): the ticket
    then says DUPLICATA with that time.
    """

    job_id: int
    prescription: Prescription
    qr_payload: str
    duplicate_at: datetime | None = None


@dataclass(frozen=True)
class PrintReceipt:
    """What happened on the wire. ``confirmed`` is False on write-only links (file://)."""

    bytes_sent: int
    tickets: int
    seconds: float
    confirmed: bool


class OrderPrinter(Protocol):
    """Prints orders. ``print_order`` returns only once the printer accepted every byte;
    otherwise it raises ``PrinterUnavailable`` (retry later) or ``PrinterError``."""

    @property
    def qr_capacity(self) -> int:
        """The longest QR payload (alphanumeric characters) the medium takes at ≥ 3 dots
        per module."""
        ...

    @property
    def description(self) -> str:
        """URI and medium, for the audit trail (no secret in it)."""
        ...

    def status(self) -> PrinterStatus: ...

    def prepare(self, request: PrintRequest) -> None:
        """Make ahead, without I/O, what printing ``request`` will need (its layout, its
        QR), while the physician reviews the order: the print after signing then only
        does what depends on the signature. Printing never depends on it."""
        ...

    def print_order(self, request: PrintRequest) -> PrintReceipt: ...
