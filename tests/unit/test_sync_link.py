"""The registry's return is caught within seconds whatever the outage's length, and a
misconfigured link pauses the queue instead of quarantining it: the sync service and the
sync use case on an in-memory unit of work, a fake registry and a simulated clock (5-minute,
1-hour and 24-hour outages in a fraction of a second; the real-time runs are
``tests/integration/test_sync_link.py`` and ``bench/outage.py``)."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest

from appliance.domain.prescription_id import PrescriptionIdGenerator
from appliance.errors import RegistryMisconfigured, RegistryUnavailable
from appliance.ports.registry import DispensationPage, RegistryReceipt
from appliance.services import sync
from appliance.services.signature import sign_prescription
from appliance.services.sync import EngineConfig, SyncEngine
from sync.service import SyncService
from tests import factories
from tests.fakes import FakeUnitOfWork
from tests.unit.test_use_cases import signer

SHARED_FIXTURES = (signer,)  # from test_use_cases, for pytest to find it

NOW = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)
TICK_S = 5.0


class SimClock:
    """Wall clock and monotonic clock moving together, by hand."""

    def __init__(self) -> None:
        self.elapsed = 0.0

    def now(self) -> datetime:
        return NOW + timedelta(seconds=self.elapsed)

    def mono(self) -> float:
        return 1000.0 + self.elapsed

    def advance(self, seconds: float) -> None:
        self.elapsed += seconds


class FakeRegistry:
    """``mode``: ``up``, ``down`` (no connection), ``misconfigured``; ``refuse503`` names
    prescriptions the registry fails on (a 503 about that record)."""

    def __init__(self, clock: SimClock) -> None:
        self.clock, self.mode = clock, "up"
        self.refuse503: set[str] = set()
        self.registered: dict[str, float] = {}  # prescription ID -> when (monotonic)
        self.checks = 0
        self.sent: list[str] = []

    def _link(self) -> None:
        if self.mode == "down":
            raise RegistryUnavailable("cannot connect: refused", connect=True)
        if self.mode == "misconfigured":
            raise RegistryMisconfigured("registry.url", "http://x ne répond pas en FHIR",
                                        status=404)

    def check(self) -> None:
        self.checks += 1
        self._link()

    def register(self, prescription, proof) -> RegistryReceipt:
        self.sent.append(prescription.id)
        self._link()
        if prescription.id in self.refuse503:
            raise RegistryUnavailable("registry error (503): busy", status=503)
        self.registered.setdefault(prescription.id, self.clock.mono())
        return RegistryReceipt(f"AR-{prescription.id}", self.clock.now())

    def cancel(self, prescription_id, reason) -> RegistryReceipt:
        return RegistryReceipt("AN-1", self.clock.now())

    def dispensations(self, cursor, limit) -> DispensationPage:
        self._link()
        return DispensationPage((), cursor, False)

    def close(self) -> None:
        """Nothing to close."""


def _queue(uow: FakeUnitOfWork, n: int, signer) -> list[str]:
    """``n`` prescriptions signed by a software card (the upload checks each against its
    signature) and queued."""
    ids = PrescriptionIdGenerator(lambda: 1_772_438_400_000 + len(uow.state.outbox) * 10)
    doctor = factories.physician()
    made = []
    with uow:
        uow.residents.upsert([factories.resident()])
        uow.practitioners.upsert(doctor)
        for _ in range(n):
            signed = sign_prescription(factories.prescription(ids.new(), prescriber=doctor),
                                       signer, NOW)
            p = signed.prescription
            uow.prescriptions.add_signed(p, signature=signed.signature,
                                         signer_cert=signed.certificate_der,
                                         signed_payload=signed.payload.signed_bytes)
            uow.outbox.add(p.id, "create", NOW)
            made.append(p.id)
        uow.commit()
    return made


def _service(uow, registry, clock, **options) -> SyncService:
    engine = SyncEngine(uow, registry, EngineConfig(concurrency=1, max_wait_s=0,
                                                    backoff_cap_s=900.0),
                        clock=clock.now, rng=random.Random(7))
    return SyncService(engine, uow, tick_s=TICK_S, notify=lambda state: True,
                       monotonic=clock.mono, **options)


@pytest.mark.parametrize("outage_s", [300, 3600, 86_400])
def test_the_queue_drains_within_seconds_of_the_registry_return(outage_s, signer):
    clock, uow = SimClock(), FakeUnitOfWork(now=NOW)
    registry = FakeRegistry(clock)
    failed_on, *others = _queue(uow, 6, signer)
    service = _service(uow, registry, clock)
    # the registry fails on one record (a 503 about it), before and after the outage: that
    # record keeps its own backoff
    registry.refuse503 = {failed_on}
    registry.mode = "down"
    started = clock.elapsed
    pushes = 0
    while clock.elapsed - started < outage_s:
        report = service.cycle()
        pushes += report.push is not None
        clock.advance(TICK_S)
    assert service.link == "down" and pushes == 1  # then only probes, one per tick
    assert registry.checks >= outage_s / TICK_S - 2
    assert sync.status(uow, clock.now()).link == "down"
    assert all(o.status == "pending" for o in uow.state.outbox)  # nothing quarantined

    clock.advance(0.1)  # it comes back just after a probe: the worst moment
    registry.mode = "up"
    back = clock.mono()
    while len(registry.registered) < len(others) and clock.elapsed - started < outage_s + 60:
        service.cycle()
        clock.advance(TICK_S)
    first = min(registry.registered.values()) - back
    assert first <= 10.0, first
    assert set(registry.registered) == set(others)  # the whole queue but the failed one
    waiting = next(o for o in uow.state.outbox if o.prescription_id == failed_on)
    assert waiting.status == "pending" and "503" in waiting.last_error
    assert waiting.next_attempt_at is not None  # its own backoff (an outage gives none)
    assert sync.status(uow, clock.now()).link == "up"


def test_an_outage_never_stretches_a_records_own_backoff(signer):
    clock, uow = SimClock(), FakeUnitOfWork(now=NOW)
    registry = FakeRegistry(clock)
    ids = _queue(uow, 3, signer)
    engine = SyncEngine(uow, registry, EngineConfig(concurrency=1, max_wait_s=0,
                                                    unreachable_after=3), clock=clock.now)
    registry.mode = "down"
    for _ in range(5):  # five runs that could not connect
        assert engine.push().unreachable
    assert {o.next_attempt_at for o in uow.state.outbox} == {None}
    assert [o.attempts for o in uow.state.outbox] == [5, 5, 5]
    registry.mode = "up"
    assert engine.push().acknowledged == 3 and set(registry.registered) == set(ids)


def test_a_misconfigured_registry_pauses_the_queue_and_names_the_setting(signer):
    clock, uow = SimClock(), FakeUnitOfWork(now=NOW)
    registry = FakeRegistry(clock)
    ids = _queue(uow, 4, signer)
    registry.mode = "misconfigured"
    service = _service(uow, registry, clock, misconfigured_probe_s=30.0)
    first = service.cycle()
    assert first.push.misconfigured and first.push.misconfigured_key == "registry.url"
    assert first.push.quarantined == 0 and len(registry.sent) == 1  # the queue stopped there
    assert [(o.status, o.attempts) for o in uow.state.outbox] == [("pending", 0)] * 4
    status = sync.status(uow, clock.now())
    assert status.misconfigured and status.link_key == "registry.url"
    assert "FHIR" in status.link_detail
    checks = registry.checks
    for _ in range(24):  # two minutes: a probe every 30 s, nothing sent
        clock.advance(TICK_S)
        service.cycle()
    assert registry.checks - checks == 4 and len(registry.sent) == 1
    registry.mode = "up"  # the installer fixed registry.url
    for _ in range(7):
        clock.advance(TICK_S)
        service.cycle()
    assert set(registry.registered) == set(ids)
    assert not sync.status(uow, clock.now()).misconfigured
    assert not any(e.action.endswith("quarantined") for e in uow.audit.entries())


def test_a_network_change_probes_at_once(signer):
    clock, uow = SimClock(), FakeUnitOfWork(now=NOW)
    registry = FakeRegistry(clock)
    _queue(uow, 2, signer)
    service = _service(uow, registry, clock, probe_every_s=60.0)
    registry.mode = "down"
    service.cycle()
    clock.advance(TICK_S)
    assert service.cycle().held and registry.checks == 0  # not due for another 55 s
    registry.mode = "up"
    service.wake()  # what the netlink watcher calls
    assert service.cycle().push.acknowledged == 2
