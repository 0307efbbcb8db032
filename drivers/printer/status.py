"""ESC/POS real-time status (Epson ESC/POS Application Programming Guide, "DLE EOT n:
transmit real-time status"): the request bytes and what the answer's bits mean, decoded
once for the printer driver (``escpos``) and for ``ordo doctor``'s probe.

Every answer byte has bits 1 and 4 set and bits 0 and 7 clear; anything else is not an
ESC/POS printer (or another protocol on that port). ``n = 4`` (roll paper sensor): bits 2-3
paper near its end, bits 5-6 paper end. ``n = 1`` (printer): bit 3 offline. Either bit of a
pair is enough: a printer that reports one sensor only still says what it saw.
"""

from __future__ import annotations

from appliance.ports.printer import PrinterState, PrinterStatus

DLE_EOT = b"\x10\x04"
PRINTER = 1  # bit 3: offline
OFFLINE_CAUSE = 2  # bit 2: cover open, bit 5: stopped by paper end, bit 6: error
PAPER = 4  # bits 2-3: near end, bits 5-6: paper end
FIXED_MASK, FIXED_BITS = 0x93, 0x12  # bits 1 and 4 set, 0 and 7 clear
NEAR_END_BITS, PAPER_END_BITS, OFFLINE_BIT = 0x0C, 0x60, 0x08


def request(kind: int) -> bytes:
    """The ``DLE EOT n`` bytes asking for status ``kind`` (``PAPER`` or ``PRINTER``)."""
    return DLE_EOT + bytes([kind])


def is_escpos(byte: int) -> bool:
    return byte & FIXED_MASK == FIXED_BITS


def decode(byte: int, kind: int) -> PrinterStatus:
    """The printer's state from its answer to ``DLE EOT kind``."""
    if not is_escpos(byte):
        return PrinterStatus(PrinterState.UNKNOWN, f"réponse inattendue 0x{byte:02x}")
    if kind == PAPER:
        if byte & PAPER_END_BITS:
            return PrinterStatus(PrinterState.PAPER_OUT)
        if byte & NEAR_END_BITS:
            return PrinterStatus(PrinterState.PAPER_LOW)
        return PrinterStatus(PrinterState.READY)
    if kind == PRINTER and byte & OFFLINE_BIT:
        return PrinterStatus(PrinterState.OFFLINE)
    return PrinterStatus(PrinterState.READY)
