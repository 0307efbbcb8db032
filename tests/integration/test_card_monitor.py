"""The supervised monitor on the real pcscd: insert/remove events, lock on removal within
the 1 s the issue requires, and recovery when pcscd restarts under it."""

import threading
import time

import pytest

from appliance.ports.card import CardEventKind
from appliance.services.auth import AuthRefused, SessionGuard, authenticate
from appliance.store import audit
from drivers.card.cps import CPX_ATR
from drivers.card.monitor import ReaderMonitor
from drivers.card.pcsc import PcscReader

pytestmark = pytest.mark.integration

LOCK_DEADLINE_S = 1.0      # session security: the kiosk locks within 1 s of removal


class Recorder:
    """Collects monitor events; ``wait_for`` blocks until a matching one arrives."""

    def __init__(self):
        self.events = []
        self.changed = threading.Condition()

    def __call__(self, event):
        with self.changed:
            self.events.append(event)
            self.changed.notify_all()

    def wait_for(self, predicate, timeout_s=5.0, start=0):
        deadline = time.monotonic() + timeout_s
        with self.changed:
            while True:
                for event in self.events[start:]:
                    if predicate(event):
                        return event
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    kinds = [(e.kind.value, e.reader) for e in self.events]
                    raise AssertionError(f"no matching event within {timeout_s} s: {kinds}")
                self.changed.wait(remaining)


def _kind(kind, reader=None):
    return lambda e: e.kind is kind and (reader is None or e.reader == reader)


@pytest.fixture
def monitor(pcscd):
    recorder = Recorder()
    mon = ReaderMonitor()
    mon.subscribe(recorder)
    mon.start()
    recorder.wait_for(_kind(CardEventKind.READER_ADDED))
    yield mon, recorder
    mon.stop()


def _session(trust, audit_log):
    card = PcscReader().open(0)
    return authenticate(card, "1234", trust, audit=audit_log)


def test_monitor_reports_insertion_and_removal(monitor, vcards):
    mon, recorder = monitor
    reader = vcards.insert("nurse", slot=1).reader
    inserted = recorder.wait_for(_kind(CardEventKind.INSERTED, reader))
    assert inserted.atr == CPX_ATR and not inserted.initial
    assert mon.cards() == {reader: CPX_ATR}
    vcards.remove(slot=1)
    recorder.wait_for(_kind(CardEventKind.REMOVED, reader))
    assert mon.cards() == {}


def test_removal_locks_the_session_within_one_second(monitor, vcards, card_trust, card_audit,
                                                     store):
    mon, recorder = monitor
    reader = vcards.insert("physician").reader
    session = _session(card_trust, card_audit)
    locked = threading.Event()
    session.on_lock(lambda s: locked.set())
    mon.subscribe(SessionGuard(session))

    removed_at = time.monotonic()           # the card process is killed right away
    vcards.remove(0)
    assert locked.wait(5)
    latency = session.locked_at - removed_at
    print(f"\nremoval -> session locked: {latency * 1000:.0f} ms")
    assert session.lock_reason == "card_removed"
    assert latency <= LOCK_DEADLINE_S
    assert session.wait_locked(5)          # the audit entry is written in the monitor thread
    recorder.wait_for(_kind(CardEventKind.REMOVED, reader))
    with pytest.raises(AuthRefused) as exc:
        session.sign(b"x")
    assert exc.value.reason == "locked"
    last = audit.entries(store)[-1]
    assert (last.action, last.details) == ("auth.session_locked", {"reason": "card_removed"})


def test_another_card_locks_the_session(monitor, vcards, card_trust, card_audit):
    mon, _ = monitor
    vcards.insert("physician", slot=0)
    session = _session(card_trust, card_audit)
    mon.subscribe(SessionGuard(session))
    try:
        vcards.insert("nurse", slot=1)
        deadline = time.monotonic() + 2
        while not session.locked and time.monotonic() < deadline:
            time.sleep(0.01)
        assert session.lock_reason == "other_card"
    finally:
        session.logout()
        assert session.wait_locked(5)


def test_pcscd_restart_locks_the_session_and_the_monitor_recovers(
        pcscd, monitor, vcards, card_trust, card_audit):
    if not pcscd.ours:
        pytest.skip("pcscd was running before the tests: not restarting someone else's")
    mon, recorder = monitor
    reader = vcards.insert("physician").reader
    recorder.wait_for(_kind(CardEventKind.INSERTED, reader))
    session = _session(card_trust, card_audit)
    mon.subscribe(SessionGuard(session))
    mark = len(recorder.events)

    pcscd.restart(readers=2)

    recorder.wait_for(_kind(CardEventKind.REMOVED, reader), start=mark)
    recorder.wait_for(_kind(CardEventKind.SERVICE_LOST), start=mark)
    assert session.wait_locked(5)
    assert session.lock_reason in {"card_removed", "service_lost"}
    recorder.wait_for(_kind(CardEventKind.SERVICE_BACK), start=mark)
    # the card never left the reader: it reconnects to the new pcscd and is reported again
    back = recorder.wait_for(_kind(CardEventKind.INSERTED, reader), start=mark)
    assert back.atr == CPX_ATR
    assert mon.service_up and reader in mon.cards()
    with pytest.raises(AuthRefused):
        session.sign(b"x")
    fresh = _session(card_trust, card_audit)      # and a new login works on the new pcscd
    try:
        assert fresh.can_sign
    finally:
        fresh.logout()


def test_monitor_stops_cleanly(pcscd):
    mon = ReaderMonitor()
    mon.start()
    assert mon.running
    time.sleep(0.05)
    mon.stop()
    assert not mon.running
