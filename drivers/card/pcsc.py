"""PC/SC reader layer on pyscard's low-level ``smartcard.scard`` API and the real pcscd.

``PcscReader`` implements the ``appliance.ports.CardReader`` port: it lists readers and
opens a ``CpsCard`` over a ``PcscConnection``. Every PC/SC return code is translated
into a ``CardError`` (``CardRemoved`` when the card or the service went away), so no
pyscard error leaks out. A reader "slot" is its index in pcscd's reader list.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass

from smartcard import scard

from appliance.errors import CardError, CardRemoved
from drivers.card.cps import CpsCard

log = logging.getLogger(__name__)

# The PC/SC "reader" that reports reader additions/removals (pcsc-lite, PC/SC part 5).
PNP_NOTIFICATION = "\\\\?PnP?\\Notification"

# pcsc-lite codes meaning that the service (or our context with it) is gone.
SERVICE_GONE = frozenset({
    scard.SCARD_E_NO_SERVICE,
    scard.SCARD_E_SERVICE_STOPPED,
    scard.SCARD_F_COMM_ERROR,
    scard.SCARD_E_INVALID_HANDLE,
})
CARD_GONE = frozenset({
    scard.SCARD_W_REMOVED_CARD,
    scard.SCARD_E_NO_SMARTCARD,
    scard.SCARD_W_UNPOWERED_CARD,
    scard.SCARD_W_UNRESPONSIVE_CARD,
    scard.SCARD_E_READER_UNAVAILABLE,
})


def _code(hresult: int) -> int:
    """pyscard returns PC/SC codes as unsigned 32-bit integers on Linux; normalise."""
    return hresult & 0xFFFFFFFF


def error_message(hresult: int) -> str:
    return f"{scard.SCardGetErrorMessage(hresult)} (0x{_code(hresult):08X})"


def raise_for(hresult: int, what: str) -> None:
    """Translate a PC/SC return code into the matching ``CardError``."""
    code = _code(hresult)
    if code == scard.SCARD_S_SUCCESS:
        return
    message = f"{what}: {error_message(hresult)}"
    if code in SERVICE_GONE:
        raise CardRemoved(f"{message} - pcscd tourne-t-il ?")
    if code in CARD_GONE:
        raise CardRemoved(message)
    if code == scard.SCARD_E_SHARING_VIOLATION:
        raise CardError(f"{what}: the card is in use by another application")
    raise CardError(message)


class PcscContext:
    """One PC/SC resource-manager context (one per thread that uses it)."""

    def __init__(self) -> None:
        self.handle: int | None = None

    def establish(self) -> PcscContext:
        try:
            hresult, handle = scard.SCardEstablishContext(scard.SCARD_SCOPE_USER)
        except scard.error as exc:
            raise CardError(f"service de cartes (pcscd) injoignable : {exc}") from exc
        raise_for(hresult, "service de cartes (pcscd) injoignable (SCardEstablishContext)")
        self.handle = handle
        return self

    def release(self) -> None:
        handle, self.handle = self.handle, None
        if handle is not None:
            scard.SCardReleaseContext(handle)

    def __enter__(self) -> PcscContext:
        return self.establish() if self.handle is None else self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def _require(self) -> int:
        if self.handle is None:
            raise CardError("PC/SC context not established")
        return self.handle

    def readers(self) -> list[str]:
        hresult, names = scard.SCardListReaders(self._require(), [])
        if _code(hresult) == scard.SCARD_E_NO_READERS_AVAILABLE:
            return []
        raise_for(hresult, "cannot list the readers")
        return list(names)

    def states(self, readers: Sequence[str], timeout_ms: int = 0,
               ) -> dict[str, tuple[int, bytes]]:
        """Current state of each reader: ``{name: (event_state, atr)}``."""
        request = [(name, scard.SCARD_STATE_UNAWARE) for name in readers]
        hresult, new = scard.SCardGetStatusChange(self._require(), timeout_ms, request)
        raise_for(hresult, "cannot read the reader states")
        return {name: (event, bytes(atr)) for name, event, atr in new}

    def connect(self, reader: str, exclusive: bool = True) -> PcscConnection:
        share = scard.SCARD_SHARE_EXCLUSIVE if exclusive else scard.SCARD_SHARE_SHARED
        hresult, hcard, protocol = scard.SCardConnect(
            self._require(), reader, share, scard.SCARD_PROTOCOL_T0 | scard.SCARD_PROTOCOL_T1)
        if _code(hresult) in {scard.SCARD_E_NO_SMARTCARD, scard.SCARD_W_REMOVED_CARD}:
            raise CardRemoved(f"no card in the reader {reader!r}")
        raise_for(hresult, f"cannot connect to the card in {reader!r}")
        hresult, _name, _state, _proto, atr = scard.SCardStatus(hcard)
        raise_for(hresult, "cannot read the card status")
        return PcscConnection(self, reader, hcard, protocol, bytes(atr))


def card_present(event_state: int) -> bool:
    """A usable card is in the reader (present and answering its ATR)."""
    return bool(event_state & scard.SCARD_STATE_PRESENT) and not (
        event_state & (scard.SCARD_STATE_MUTE | scard.SCARD_STATE_UNAVAILABLE))


@dataclass(frozen=True)
class ReaderState:
    """A reader pcscd knows, and the ATR of the usable card in it (empty: no card)."""

    name: str
    card_present: bool
    atr: bytes = b""


def reader_states() -> list[ReaderState]:
    """Every reader of pcscd, in slot order, and whether a usable card is in each; no card
    is connected to (the kiosk may be using one). ``CardError`` when pcscd cannot be
    reached."""
    with PcscContext() as context:
        names = context.readers()
        states = context.states(names) if names else {}
    found = []
    for name in names:
        event, atr = states.get(name, (0, b""))
        present = card_present(event)
        found.append(ReaderState(name, present, atr if present else b""))
    return found


class PcscConnection:
    """A connected card: ``transmit()`` raw APDUs; ``close()`` resets the card so that
    its PIN must be verified again by whoever comes next."""

    def __init__(self, context: PcscContext, reader: str, hcard: int, protocol: int,
                 atr: bytes) -> None:
        self._context = context
        self._hcard: int | None = hcard
        self._pci = scard.SCARD_PCI_T0 if protocol == scard.SCARD_PROTOCOL_T0 \
            else scard.SCARD_PCI_T1
        self._reader = reader
        self._atr = atr

    @property
    def reader(self) -> str:
        return self._reader

    @property
    def atr(self) -> bytes:
        return self._atr

    def transmit(self, apdu: bytes) -> bytes:
        if self._hcard is None:
            raise CardError("the card connection is closed")
        hresult, response = scard.SCardTransmit(self._hcard, self._pci, list(apdu))
        raise_for(hresult, "the card did not answer (SCardTransmit)")
        return bytes(response)

    def close(self) -> None:
        hcard, self._hcard = self._hcard, None
        if hcard is not None:
            hresult = scard.SCardDisconnect(hcard, scard.SCARD_RESET_CARD)
            if _code(hresult) != scard.SCARD_S_SUCCESS:
                log.debug("disconnect: %s", error_message(hresult))
        self._context.release()


class PcscReader:
    """``CardReader`` port on pcscd: ``open(slot)`` returns a selected ``CpsCard``."""

    def __init__(self, exclusive: bool = True) -> None:
        self.exclusive = exclusive

    def readers(self) -> list[str]:
        with PcscContext() as context:
            return context.readers()

    def open(self, slot: int = 0) -> CpsCard:
        context = PcscContext().establish()
        try:
            readers = context.readers()
            if not 0 <= slot < len(readers):
                raise CardError(f"no reader in slot {slot} (readers: {readers or 'none'})")
            connection = context.connect(readers[slot], exclusive=self.exclusive)
        except BaseException:
            context.release()
            raise
        card = CpsCard(connection)
        try:
            card.select()
        except BaseException:
            card.close()
            raise
        return card


def wait_for_card(reader: str, present: bool, timeout_s: float) -> bool:
    """Wait until a card is (or is no longer) in ``reader``; False on timeout."""
    deadline = time.monotonic() + timeout_s
    with PcscContext() as context:
        state = scard.SCARD_STATE_UNAWARE
        while True:
            remaining_ms = int((deadline - time.monotonic()) * 1000)
            hresult, new = scard.SCardGetStatusChange(
                context.handle, max(remaining_ms, 0), [(reader, state)])
            code = _code(hresult)
            if code == scard.SCARD_S_SUCCESS:
                _name, event, _atr = new[0]
                if event & scard.SCARD_STATE_UNKNOWN:
                    raise CardError(f"unknown reader {reader!r}")
                if card_present(event) == present:
                    return True
                state = event & ~scard.SCARD_STATE_CHANGED
            elif code != scard.SCARD_E_TIMEOUT:
                raise_for(hresult, f"cannot watch the reader {reader!r}")
            if remaining_ms <= 0:
                return False
