"""A supervised card monitor: our own ``SCardGetStatusChange`` loop with short timeouts.

pyscard's ``CardMonitor`` dies silently when pcscd restarts or a reader goes away, and
never stops its thread; this one does not use it. One thread owns one PC/SC context:

* each cycle re-lists the readers, then waits at most ``timeout_ms`` on their states
  plus the ``\\\\?PnP?\\Notification`` pseudo reader (reader added/removed);
* a card event counter change (upper 16 bits of the event state, pcsc-lite) while a
  card stays present is reported as removed + inserted (a swapped card);
* when the service goes away (``SCARD_E_NO_SERVICE``, ``SCARD_F_COMM_ERROR``...) every
  known card is reported removed, then ``SERVICE_LOST``; the context is re-established
  every ``retry_s`` until pcscd answers again (``SERVICE_BACK``, then fresh events);
* any unexpected exception is logged and the loop starts again (supervision).

It implements the ``appliance.ports.CardWatcher`` port. Callbacks run in the monitor
thread; a failing callback is logged and never stops the loop.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from smartcard import scard

from appliance.ports.card import CardEvent, CardEventKind
from drivers.card.pcsc import PNP_NOTIFICATION, SERVICE_GONE, _code, card_present, error_message

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT_MS = 250
DEFAULT_RETRY_S = 0.25
_EVENT_COUNTER_SHIFT = 16     # pcsc-lite keeps a per-reader card event counter there


@dataclass
class _Reader:
    state: int = scard.SCARD_STATE_UNAWARE
    present: bool = False
    atr: bytes = b""
    counter: int = -1


class ReaderMonitor:
    """Watches every reader of pcscd and reports ``CardEvent``s to its subscribers."""

    def __init__(self, timeout_ms: int = DEFAULT_TIMEOUT_MS,
                 retry_s: float = DEFAULT_RETRY_S) -> None:
        self.timeout_ms = timeout_ms
        self.retry_s = retry_s
        self._subscribers: list[Callable[[CardEvent], None]] = []
        self._readers: dict[str, _Reader] = {}
        self._pnp_state = scard.SCARD_STATE_UNAWARE
        self._context: int | None = None
        self._service: bool | None = None    # None until the first attempt
        self._initial = True
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self.cycles = 0

    # -- port -------------------------------------------------------------------------
    def subscribe(self, callback: Callable[[CardEvent], None]) -> None:
        self._subscribers.append(callback)

    def start(self) -> None:
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="card-monitor", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 2.0) -> None:
        self._stop.set()
        with self._lock:
            if self._context is not None:
                scard.SCardCancel(self._context)
        if self._thread is not None:
            self._thread.join(timeout_s)
            self._thread = None

    def __enter__(self) -> ReaderMonitor:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- state ------------------------------------------------------------------------
    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    @property
    def service_up(self) -> bool:
        return bool(self._service)

    def cards(self) -> dict[str, bytes]:
        """Readers that hold a card now, with the card's ATR."""
        with self._lock:
            return {name: r.atr for name, r in self._readers.items() if r.present}

    def readers(self) -> list[str]:
        with self._lock:
            return list(self._readers)

    # -- loop -------------------------------------------------------------------------
    def _run(self) -> None:
        log.debug("card monitor started")
        while not self._stop.is_set():
            try:
                self._cycle()
            except Exception:
                log.exception("card monitor cycle failed; starting again")
                self._drop_context()
                self._stop.wait(self.retry_s)
        self._drop_context()
        log.debug("card monitor stopped")

    def _cycle(self) -> None:
        self.cycles += 1
        if self._context is None and not self._connect():
            self._stop.wait(self.retry_s)
            return
        assert self._context is not None
        hresult, names = scard.SCardListReaders(self._context, [])
        code = _code(hresult)
        if code == scard.SCARD_E_NO_READERS_AVAILABLE:
            names = []
        elif code in SERVICE_GONE:
            self._service_lost(error_message(hresult))
            return
        elif code != scard.SCARD_S_SUCCESS:
            raise RuntimeError(f"SCardListReaders: {error_message(hresult)}")
        self._sync_readers(list(names))

        request = [(name, r.state) for name, r in self._readers.items()]
        request.append((PNP_NOTIFICATION, self._pnp_state))
        hresult, new = scard.SCardGetStatusChange(self._context, self.timeout_ms, request)
        code = _code(hresult)
        if code in {scard.SCARD_E_TIMEOUT, scard.SCARD_E_CANCELLED,
                    scard.SCARD_E_UNKNOWN_READER, scard.SCARD_E_READER_UNAVAILABLE}:
            return      # nothing new, stopping, or the reader list changed: list again
        if code in SERVICE_GONE:
            self._service_lost(error_message(hresult))
            return
        if code != scard.SCARD_S_SUCCESS:
            raise RuntimeError(f"SCardGetStatusChange: {error_message(hresult)}")
        initial, self._initial = self._initial, False
        for name, event, atr in new:
            if name == PNP_NOTIFICATION:
                self._pnp_state = event & ~scard.SCARD_STATE_CHANGED
            elif name in self._readers:
                self._update(name, event, bytes(atr), initial)

    def _connect(self) -> bool:
        hresult, context = scard.SCardEstablishContext(scard.SCARD_SCOPE_USER)
        if _code(hresult) != scard.SCARD_S_SUCCESS:
            if self._service is not False:
                self._service_lost(error_message(hresult))
            return False
        with self._lock:
            self._context = context
        self._pnp_state = scard.SCARD_STATE_UNAWARE
        self._initial = True
        if self._service is False:
            log.info("pcscd is back")
            self._emit(CardEvent(CardEventKind.SERVICE_BACK, at=time.monotonic()))
        self._service = True
        return True

    def _drop_context(self) -> None:
        with self._lock:
            context, self._context = self._context, None
        if context is not None:
            with contextlib.suppress(scard.error):
                scard.SCardReleaseContext(context)

    def _service_lost(self, why: str) -> None:
        """Report every card removed, then the service lost; forget the readers."""
        self._drop_context()
        now = time.monotonic()
        with self._lock:
            gone, self._readers = self._readers, {}
        for name, reader in gone.items():
            if reader.present:
                self._emit(CardEvent(CardEventKind.REMOVED, name, reader.atr, now))
            self._emit(CardEvent(CardEventKind.READER_REMOVED, name, at=now))
        if self._service is not False:
            log.warning("pcscd unreachable: %s", why)
            self._emit(CardEvent(CardEventKind.SERVICE_LOST, at=now))
        self._service = False

    def _sync_readers(self, names: list[str]) -> None:
        now = time.monotonic()
        with self._lock:
            removed = [n for n in self._readers if n not in names]
            added = [n for n in names if n not in self._readers]
            gone = {n: self._readers.pop(n) for n in removed}
            for name in added:
                self._readers[name] = _Reader()
        for name, reader in gone.items():
            if reader.present:
                self._emit(CardEvent(CardEventKind.REMOVED, name, reader.atr, now))
            self._emit(CardEvent(CardEventKind.READER_REMOVED, name, at=now))
        for name in added:
            self._emit(CardEvent(CardEventKind.READER_ADDED, name, at=now,
                                 initial=self._initial))

    def _update(self, name: str, event: int, atr: bytes, initial: bool) -> None:
        reader = self._readers[name]
        present = card_present(event)
        counter = event >> _EVENT_COUNTER_SHIFT
        swapped = (present and reader.present and reader.counter >= 0
                   and counter != reader.counter)
        was_present, old_atr = reader.present, reader.atr
        with self._lock:
            reader.state = event & ~scard.SCARD_STATE_CHANGED
            reader.counter = counter
            reader.present = present
            reader.atr = atr if present else b""
        now = time.monotonic()
        if was_present and (not present or swapped):
            self._emit(CardEvent(CardEventKind.REMOVED, name, old_atr, now))
        if present and (not was_present or swapped):
            self._emit(CardEvent(CardEventKind.INSERTED, name, atr, now, initial=initial))

    def _emit(self, event: CardEvent) -> None:
        log.info("card event %s", event.kind.value, extra={"fields": {"reader": event.reader}})
        for callback in list(self._subscribers):
            try:
                callback(event)
            except Exception:
                log.exception("card event subscriber failed")
