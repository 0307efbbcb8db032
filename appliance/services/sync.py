"""The sync use case: drains the outbox into the registry, pulls dispensations back.

``SyncEngine(uow, registry, config)`` takes a unit of work (``appliance.ports.uow``) and the
registry port (``appliance.ports.registry``; ``sync.client.RegistryClient`` implements it
over FHIR R4). ``sync.service`` runs it on a schedule (``ordo sync run``).

Push (``push()``), exactly once whatever the network does:

- pending records are taken oldest first, ``batch_size`` at a time, and the run goes on
  batch after batch until the queue is empty (draining, not one batch per tick);
- a batch is prepared in one go: its prescriptions are read in one query and the bodies of
  its creates built then (``encode_registration``), so that a request leaves as soon as the
  one before it is answered;
- each record is its own request; up to ``concurrency`` requests are in flight (started
  oldest first), so that the appliance's work overlaps the registry's and the network's
  round trips: a batch is prepared while the previous one is on the wire;
- ``concurrency=1`` makes the engine strictly sequential, in the calling thread alone: a
  batch is prepared, sent record after record, and its outcomes written before the next
  batch is read. No other thread: handing the interpreter lock between a thread that
  prepares and one that sends at every request cost more CPU than the overlap saved
  (measured: about 0.3 ms a record, a fifth of the drain's CPU);
- the outcomes of a batch are written in one ``BEGIN IMMEDIATE`` transaction (one commit,
  one fsync, per batch: a group commit): acknowledgement with the registry's receipt (a
  create moves the prescription to ``registered``; an audit entry for each), a retry time,
  or quarantine;
- a crash between sending and writing the acknowledgement only means the record is sent
  again; the registry answers a resend of the same content with the original receipt;
- transient failures (network, 408, 429, 5xx) wait ``full_jitter(attempts)`` (capped), at
  least the registry's ``Retry-After``; a throttled answer also pauses the whole run;
- a record the registry refuses for good (another 4xx, or 409: other content under this ID,
  cancellation after dispensation) is quarantined with the reason and never blocks the
  others; ``ordo sync status`` lists it;
- while records wait for their retry time, the run sleeps until the next one is due if that
  is within ``max_wait_s``; otherwise it returns and the service comes back later;
- when no connection can be made ``unreachable_after`` times in a row (registry down, TLS
  refused), the run stops early and reports ``unreachable`` so the service backs off.

Pull (``pull()``): pages of dispensations after the stored cursor, each page applied and the
cursor moved in one transaction, until the registry has nothing more, at most ``max_pages``
pages a pull (the next push comes first); a cursor already seen in this pull (a feed that
cycles) ends it with an error; the heartbeat is fed only by a page that stored something.

``stop()`` (SIGTERM) ends a run between two records.

Why a group commit keeps exactly once. The signed prescription and its pending outbox row
were committed by the signing transaction, before the engine ever reads them, so that no
acknowledgement protects a signature: losing one loses no prescription. An acknowledgement
is written only from a receipt the registry returned, i.e. after the registry committed the
prescription (a transaction-response is sent after its commit), so nothing is ever marked
acknowledged that the registry does not hold. A crash (power cut, SIGKILL) anywhere between
a send and the commit of its batch rolls the whole uncommitted transaction back: the records
stay ``pending`` with no audit entry, and the next run sends them again; the registry keys
on the prescription ID and answers a resend of the same content with the original receipt
(``replayed``), which is then stored: the registry holds it once and the store ends with the
registry's own receipt, one acknowledgement and one state change in the audit chain. The
write is guarded (``status = 'pending'``), so a record acknowledged by another run is not
acknowledged twice. What a larger batch costs is resends after a crash, never a duplicate.
(``tests/integration/test_sync_throughput.py`` kills a drain in the middle of a batch;
``tests/integration/test_crash_consistency.py`` at random moments.)
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial
from typing import Any, TypeVar

from appliance.config import Sync as SyncSettings
from appliance.domain import Json, JsonObject
from appliance.domain.backoff import next_delay
from appliance.domain.prescription import TRANSITIONS, MedicationLine, Prescription, State
from appliance.errors import (
    OrdoError,
    RegistryError,
    RegistryMisconfigured,
    RegistryRejected,
    RegistryThrottled,
    RegistryUnavailable,
    TamperedPrescription,
)
from appliance.ports.clock import Clock, iso, utc_now
from appliance.ports.registry import (
    AuditHead,
    Dispensation,
    DispensationPage,
    EncodingRegistry,
    Registry,
    RegistryReceipt,
)
from appliance.ports.uow import OutboxRecord, SignedRow, SyncKeys, SyncStatus, UnitOfWork
from appliance.services.prescribing import record_transition
from appliance.services.signature import record_tampering

log = logging.getLogger(__name__)
T = TypeVar("T")

ACTOR = "sync"
# sync bookkeeping in ``meta`` (``uow.views.sync_status`` reads them back)
# What an acknowledged create does to the prescription (checked with the domain at import).
REGISTRATION = (State.SIGNED, State.REGISTERED)
assert REGISTRATION[1] in TRANSITIONS[REGISTRATION[0]]
CURSOR_KEY, LAST_SUCCESS_KEY = SyncKeys.CURSOR, SyncKeys.LAST_SUCCESS
LAST_ERROR_KEY, LAST_ERROR_AT_KEY = SyncKeys.LAST_ERROR, SyncKeys.LAST_ERROR_AT
LAST_PUSH_KEY, LAST_PULL_KEY = SyncKeys.LAST_PUSH, SyncKeys.LAST_PULL
# What the link to the registry is, as the last exchange or probe found it.
LINK_UP, LINK_DOWN, LINK_MISCONFIGURED = "up", "down", "misconfigured"


@dataclass(frozen=True)
class EngineConfig:
    batch_size: int = 50
    backoff_base_s: float = 1.0
    backoff_cap_s: float = 900.0
    max_wait_s: float = 10.0
    unreachable_after: int = 3
    page_size: int = 100
    concurrency: int = 4
    finess: str = ""  # the establishment's: its audit chain head is anchored at the registry
    max_pages: int = 20  # pages of dispensations per pull: the push gets its turn after

    @classmethod
    def from_settings(cls, settings: SyncSettings, **overrides: float) -> EngineConfig:
        values = {"batch_size": settings.batch_size,
                  "backoff_cap_s": float(settings.backoff_cap_s), **overrides}
        # a ** of numbers is not checked field by field (batch_size is an int, finess a str):
        # the callers override numeric fields by name
        return cls(**values)  # type: ignore[arg-type]


@dataclass
class PushReport:
    sent: int = 0
    acknowledged: int = 0
    replayed: int = 0
    retried: int = 0
    quarantined: int = 0
    throttled: int = 0
    batches: int = 0
    unreachable: bool = False
    misconfigured: str | None = None  # what is set up wrong (French), the queue waits
    misconfigured_key: str | None = None
    stopped: bool = False
    anchored: int | None = None  # the audit entry whose head the registry now holds
    remaining: int = 0
    last_error: str | None = None
    seconds: float = 0.0


@dataclass
class PullReport:
    pages: int = 0
    received: int = 0
    applied: int = 0
    prescriptions: list[str] = field(default_factory=list)
    error: str | None = None
    unreachable: bool = False
    misconfigured: str | None = None
    misconfigured_key: str | None = None
    cycle: bool = False  # the registry gave a cursor already seen in this pull
    capped: bool = False  # stopped at ``max_pages``; the next pull goes on from the cursor


@dataclass
class _Outcome:
    record: OutboxRecord
    receipt: RegistryReceipt | None = None
    retry: bool = False
    retry_at: datetime | None = None  # None with ``retry``: when the registry answers again
    quarantine: str | None = None
    status: int | None = None
    error: str | None = None
    sent: bool = False
    connect: bool = False
    throttled: bool = False
    misconfigured: RegistryMisconfigured | None = None
    call: Callable[[], RegistryReceipt] | None = None
    tampered: bool = False  # altered in the database after signing: never sent


@dataclass
class _Run:
    """What the batches of one push run share (written by the dispatcher thread)."""

    report: PushReport
    connect_failures: int = 0
    hold_until: datetime | None = None
    halted: bool = False


class SyncEngine:
    def __init__(self, uow: UnitOfWork, registry: Registry,
                 config: EngineConfig | None = None, *, clock: Clock = utc_now,
                 rng: random.Random | None = None,
                 heartbeat: Callable[[], None] | None = None) -> None:
        self.uow = uow
        self.registry = registry
        self.config = config or EngineConfig()
        self.clock = clock
        self.rng = rng or random.Random()  # noqa: S311 (retry jitter, not a secret)
        self.heartbeat = heartbeat or (lambda: None)
        self._stop = threading.Event()

    def stop(self) -> None:
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def _sleep(self, seconds: float) -> None:
        self._stop.wait(max(seconds, 0.0))

    # -- push -----------------------------------------------------------------------------------
    def push(self) -> PushReport:
        """Drain the outbox (see the module docstring).

        Batches are pipelined: while one batch is on the wire (a dispatcher thread and
        ``concurrency - 1`` senders), this thread writes the outcomes of the previous one and
        prepares the next. With ``concurrency=1`` this thread does it all, one batch after
        the other (``_Inline``). The store is only ever touched from this thread. A sweep
        walks the queue by increasing ``seq``, so no record is sent twice in a sweep; records
        put back by a retry are taken by the next sweep once due.
        """
        started = time.monotonic()
        report = PushReport()
        run = _Run(report)
        after = 0
        inflight: Future[list[_Outcome]] | None = None
        sequential = self.config.concurrency <= 1
        with _executor(sequential, 1, "sync-dispatch") as dispatcher, \
                _executor(sequential, self.config.concurrency - 1, "sync-send") as senders:
            while not self._stop.is_set():
                launched = None
                if not run.halted:
                    records = self.uow.outbox.due(self.clock(), self.config.batch_size,
                                                  after=after)
                    if records:
                        after = records[-1].seq
                        try:
                            prepared = self._prepare_batch(records, yield_gil=not sequential)
                        except BaseException:
                            if inflight is not None:  # keep what was sent
                                self._write(inflight.result(), report)
                            raise
                        launched = dispatcher.submit(self._exchange, prepared, run, senders)
                if inflight is not None:
                    self._write(inflight.result(), report)
                inflight = launched
                if inflight is not None:
                    if sequential:  # sent already: written before the next batch is read
                        self._write(inflight.result(), report)
                        inflight = None
                    continue
                # end of a sweep: nothing left to launch, nothing on the wire
                if report.unreachable or report.misconfigured:
                    break
                now = self.clock()
                if run.hold_until is not None and now < run.hold_until:
                    pause = (run.hold_until - now).total_seconds()
                    if pause > self.config.max_wait_s:
                        break
                    self._sleep(pause)
                due = self.uow.outbox.next_due_at()
                if due is None:
                    break
                pause = (due - self.clock()).total_seconds()
                if pause > self.config.max_wait_s:
                    break
                self._sleep(pause)
                run.halted, after = False, 0
            if inflight is not None:  # stopping: keep what was sent
                self._write(inflight.result(), report)
        report.stopped = self._stop.is_set()
        report.remaining = self.uow.outbox.pending_count()
        report.seconds = round(time.monotonic() - started, 3)
        with self.uow:
            now = self.clock()
            self.uow.meta.set(LAST_PUSH_KEY, iso(now))
            if report.unreachable:
                record_link(self.uow, LINK_DOWN, now, report.last_error or "")
            self.uow.commit()
        log.info("push done", extra={"fields": {
            "sent": report.sent, "acknowledged": report.acknowledged,
            "replayed": report.replayed, "retried": report.retried,
            "quarantined": report.quarantined, "remaining": report.remaining,
            "unreachable": report.unreachable, "misconfigured": report.misconfigured_key,
            "seconds": report.seconds}})
        if not (report.unreachable or report.misconfigured or report.stopped):
            report.anchored = self.anchor_audit()
        return report

    # -- the audit chain's head, kept off the box ------------------------------------------
    def anchor_audit(self) -> int | None:
        """Send the audit chain's head (entry number, hash, the FINESS) to the registry when
        it moved since the last anchor, and keep the registry's receipt in ``meta``
        (``SyncKeys.ANCHOR_*``: backups carry it). Returns the entry anchored, or None. A
        failure is logged and retried at the next push: it never holds the queue. Nothing
        without ``config.finess`` (the anchors are filed by establishment)."""
        if not self.config.finess:
            return None
        seq, digest = self.uow.audit.head()
        if seq == 0 or str(seq) == (self.uow.meta.get(SyncKeys.ANCHOR_SEQ) or ""):
            return None
        try:
            head = self.registry.anchor_audit(self.config.finess, seq, digest)
        except RegistryError as exc:
            log.warning("audit anchor not sent", extra={"fields": {"reason": str(exc)[:200]}})
            return None
        with self.uow:
            for key, value in ((SyncKeys.ANCHOR_SEQ, str(head.seq)),
                               (SyncKeys.ANCHOR_HASH, head.digest),
                               (SyncKeys.ANCHOR_RECEIPT, head.receipt_id),
                               (SyncKeys.ANCHOR_AT, head.received_at or iso(self.clock()))):
                self.uow.meta.set(key, value)
            self.uow.commit()
        log.info("audit head anchored", extra={"fields": {"seq": head.seq,
                                                          "receipt": head.receipt_id}})
        return head.seq

    # -- the link -------------------------------------------------------------------------
    def probe(self) -> str:
        """Ask the registry whether it answers (``Registry.check``: one small request) and
        record what it said; returns ``LINK_UP``, ``LINK_DOWN`` or ``LINK_MISCONFIGURED``."""
        detail, key = "", ""
        try:
            self.registry.check()
            state = LINK_UP
        except RegistryMisconfigured as exc:
            state, detail, key = LINK_MISCONFIGURED, exc.detail, exc.key
        except RegistryError as exc:
            state, detail = LINK_DOWN, str(exc)
        if link_changed(self.uow, state, detail, key):  # no write while nothing changes
            with self.uow:
                record_link(self.uow, state, self.clock(), detail, key)
                self.uow.commit()
        return state

    def _exchange(self, prepared: list[_Outcome], run: _Run,
                  senders: _Inline | ThreadPoolExecutor) -> list[_Outcome]:
        """Send a prepared batch, at most ``concurrency`` requests in flight (dispatcher
        thread). The dispatcher and ``concurrency - 1`` senders each take the next record in
        outbox order, send it and take another: requests start oldest first, with no hand-off
        per record (senders only talk HTTP, the bodies are built). No new request starts
        once the registry throttles, cannot be reached ``unreachable_after`` times in a row,
        or the engine is stopping; unsent records are left as they are."""
        done: list[_Outcome] = [o for o in prepared if o.call is None]
        queue = [o for o in prepared if o.call is not None]
        todo = iter(queue)
        report = run.report
        lock = threading.Lock()
        failed = False

        def take() -> _Outcome | None:
            with lock:
                if failed or run.halted or self._stop.is_set():
                    return None
                return next(todo, None)

        def settle(outcome: _Outcome) -> None:
            with lock:
                done.append(outcome)
                report.sent += 1
                run.connect_failures = run.connect_failures + 1 if outcome.connect else 0
                if outcome.throttled:
                    run.hold_until, run.halted = outcome.retry_at, True
                    report.throttled += 1
                if outcome.misconfigured is not None:  # whatever the record: pause
                    run.halted = True
                    report.misconfigured = outcome.misconfigured.detail
                    report.misconfigured_key = outcome.misconfigured.key
                if run.connect_failures >= self.config.unreachable_after:
                    report.unreachable = run.halted = True
            self.heartbeat()

        def work() -> None:
            nonlocal failed
            try:
                while (outcome := take()) is not None:
                    settle(self._execute(outcome))
            except BaseException:
                with lock:
                    failed = True  # the others start nothing more
                raise

        window = min(max(self.config.concurrency, 1), len(queue))
        helpers = [senders.submit(work) for _ in range(window - 1)]
        try:
            work()
        finally:
            wait(helpers)
        for helper in helpers:
            helper.result()
        done.sort(key=lambda o: o.record.seq)
        return done

    def _prepare_batch(self, records: list[OutboxRecord], *, yield_gil: bool = True
                       ) -> list[_Outcome]:
        """Read what a batch needs from the store (the prescriptions of its creates in one
        query) and build the bodies of its creates, while the previous batch is on the wire
        (``yield_gil``: then let its sender take the interpreter lock after each record)."""
        rows = self.uow.prescriptions.signed_rows(
            [r.prescription_id for r in records if r.kind == "create"])
        encoder = self.registry if isinstance(self.registry, EncodingRegistry) else None
        prepared = []
        for record in records:
            prepared.append(self._prepare(record, rows, encoder))
            if yield_gil:
                _yield_gil()
        return prepared

    def _prepare(self, record: OutboxRecord, rows: dict[str, SignedRow],
                 encoder: EncodingRegistry | None) -> _Outcome:
        """What one record needs; ``call`` sends it (None: settled without sending)."""
        outcome = _Outcome(record)
        try:
            if record.kind == "create":
                row = rows.get(record.prescription_id)
                signed = None if row is None else row.load()
                if signed is None:
                    outcome.quarantine = "prescription absente ou non signée dans la base locale"
                    return outcome
                if encoder is not None:
                    body = encoder.encode_registration(signed.prescription, signed.proof)
                    outcome.call = partial(encoder.register_bundle, body)
                else:
                    outcome.call = partial(self.registry.register, signed.prescription,
                                           signed.proof)
            elif record.kind == "cancel":
                create = self.uow.outbox.create_status(record.prescription_id)
                if create != "acknowledged":
                    outcome.quarantine = ("annulation impossible : la création n'a pas été "
                                          f"acceptée par le registre ({create or 'absente'})")
                    return outcome
                outcome.call = partial(self.registry.cancel, record.prescription_id,
                                       self.uow.prescriptions.cancel_reason(
                                           record.prescription_id))
            else:
                outcome.quarantine = f"type d'envoi inconnu : {record.kind}"
        except TamperedPrescription as exc:
            outcome.quarantine, outcome.tampered = str(exc), True
        except OrdoError as exc:  # a stored prescription that no longer loads or maps
            outcome.quarantine = f"donnée locale invalide : {exc}"
        return outcome

    def _execute(self, outcome: _Outcome) -> _Outcome:
        """Send one record and classify the answer (dispatcher or sender thread)."""
        assert outcome.call is not None
        call, outcome.call = outcome.call, None  # the body is not kept once sent
        outcome.sent = True
        try:
            outcome.receipt = call()
        except RegistryRejected as exc:
            outcome.quarantine, outcome.status = exc.reason or str(exc), exc.status
            outcome.error = str(exc)
        except RegistryUnavailable as exc:
            outcome.retry, outcome.error, outcome.status = True, str(exc), exc.status
            outcome.connect = exc.connect
            outcome.throttled = isinstance(exc, RegistryThrottled)
            if not exc.connect:  # the registry failed on this record: it waits its turn
                delay = next_delay(outcome.record.attempts + 1, self.config.backoff_base_s,
                                   self.config.backoff_cap_s, self.rng, exc.retry_after)
                outcome.retry_at = self.clock() + timedelta(seconds=delay)
        except RegistryMisconfigured as exc:  # not the record's fault: it stays as it is
            outcome.misconfigured, outcome.error, outcome.status = exc, str(exc), exc.status
        except OrdoError as exc:  # e.g. the mapping refused the stored prescription
            outcome.quarantine = f"donnée locale invalide : {exc}"
        return outcome

    def _write(self, outcomes: list[_Outcome], report: PushReport) -> None:
        """The outcomes of a batch in one transaction, a few statements for the whole batch
        (the receipts, the state changes and the audit entries each written at once)."""
        report.batches += 1
        self.heartbeat()
        if not outcomes:
            return
        now = self.clock()
        last_error = None
        uow = self.uow
        with uow:
            acks = [o for o in outcomes if o.receipt is not None]
            done = uow.outbox.acknowledge_many(
                [(o.record, o.receipt) for o in acks if o.receipt is not None], now)
            moved = uow.prescriptions.record_receipts(
                {o.record.prescription_id: o.receipt.receipt_id for o in acks
                 if o.record.kind == "create" and o.record.seq in done
                 and o.receipt is not None}, now, promote=REGISTRATION)
            entries: list[tuple[str, str, str, dict[str, Json]]] = []
            retries: list[tuple[OutboxRecord, str, datetime | None]] = []
            for o in outcomes:
                record = o.record
                if o.receipt is not None:
                    if record.seq not in done:
                        continue  # another process acknowledged it first
                    if record.kind == "create" and record.prescription_id in moved:
                        entries.append((ACTOR, f"prescription.{REGISTRATION[1].value}",
                                        record.prescription_id,
                                        {"from": REGISTRATION[0].value}))
                    entries.append((ACTOR, f"registry.{record.kind}.acknowledged",
                                    record.prescription_id,
                                    {"receipt": o.receipt.receipt_id,
                                     "replayed": o.receipt.replayed, "outbox": record.seq}))
                    report.acknowledged += 1
                    report.replayed += o.receipt.replayed
                elif o.quarantine is not None:
                    if o.tampered:
                        record_tampering(uow, record.prescription_id, actor=ACTOR,
                                         during="registry")
                    if uow.outbox.quarantine(record, o.quarantine):
                        entries.append((ACTOR, f"registry.{record.kind}.quarantined",
                                        record.prescription_id,
                                        {"outbox": record.seq, "status": o.status,
                                         "reason": o.quarantine[:200]}))
                    report.quarantined += 1
                    last_error = f"{record.prescription_id}: {o.quarantine}"
                    log.warning("record quarantined", extra={"fields": {
                        "outbox": record.seq, "kind": record.kind,
                        "prescription": record.prescription_id, "status": o.status}})
                elif o.retry:
                    retries.append((record, o.error or "", o.retry_at))
                    report.retried += 1
                    last_error = o.error
                elif o.misconfigured is not None:
                    last_error = str(o.misconfigured)
            uow.outbox.retry_many(retries)
            uow.audit.append_many(entries, at=now)
            _record_exchange(uow, now, ok=bool(acks), error=last_error)
            wrong = next((o.misconfigured for o in outcomes if o.misconfigured), None)
            if wrong is not None:
                record_link(uow, LINK_MISCONFIGURED, now, wrong.detail, wrong.key)
            elif any(o.sent and not o.connect for o in outcomes):
                record_link(uow, LINK_UP, now)  # the registry answered
            uow.commit()
        if last_error:
            report.last_error = last_error

    # -- pull -----------------------------------------------------------------------------------
    def pull(self) -> PullReport:
        """Fetch and apply the dispensations after the stored cursor, at most
        ``max_pages`` pages (the rest at the next pull, after a push: a registry whose feed
        never ends cannot starve the uploads). A cursor already seen in this pull (a feed
        that cycles, 5 → 6 → 5) ends it with an error, the cursor left where it was. The
        heartbeat is fed only on progress: a page that stored a dispensation not held yet."""
        report = PullReport()
        touched: dict[str, None] = {}
        uow = self.uow
        seen: set[str | None] = set()
        while not self._stop.is_set():
            if report.pages >= self.config.max_pages:
                report.capped = True
                break
            cursor = uow.meta.get(CURSOR_KEY)
            seen.add(cursor)
            try:
                page = self.registry.dispensations(cursor, self.config.page_size)
            except RegistryUnavailable as exc:
                report.error, report.unreachable = str(exc), exc.connect
                break
            except RegistryMisconfigured as exc:
                report.error = str(exc)
                report.misconfigured, report.misconfigured_key = exc.detail, exc.key
                break
            except RegistryRejected as exc:
                report.error = str(exc)
                break
            cycles = page.cursor is not None and page.cursor in seen and page.cursor != cursor
            now = self.clock()
            with uow:
                applied = apply_dispensations(uow, page, now)
                if page.cursor is not None and not cycles:
                    uow.meta.set(CURSOR_KEY, page.cursor)
                uow.meta.set(LAST_PULL_KEY, iso(now))
                _record_exchange(uow, now, ok=True)
                record_link(uow, LINK_UP, now)
                uow.commit()
            report.pages += 1
            report.received += len(page.items)
            report.applied += len(applied)
            touched.update(dict.fromkeys(applied))
            if applied:
                self.heartbeat()
            if cycles:
                report.cycle = True
                report.error = (f"flux des délivrances du registre en boucle : le curseur "
                                f"{page.cursor} est déjà revenu dans ce relevé ; relevé "
                                "arrêté, curseur gardé")
                log.error("dispensation cursor cycles", extra={"fields": {
                    "cursor": page.cursor, "pages": report.pages}})
                break
            if not page.more or page.cursor in (None, cursor):
                break
        if report.error:
            with uow:
                now = self.clock()
                _record_exchange(uow, now, ok=False, error=report.error)
                if report.misconfigured is not None:
                    record_link(uow, LINK_MISCONFIGURED, now, report.misconfigured,
                                report.misconfigured_key or "")
                elif report.unreachable:
                    record_link(uow, LINK_DOWN, now, report.error)
                uow.commit()
        report.prescriptions = list(touched)
        log.info("pull done", extra={"fields": {
            "pages": report.pages, "received": report.received,
            "prescriptions": len(report.prescriptions), "error": bool(report.error),
            "capped": report.capped}})
        return report


class _Inline:
    """An executor without threads: ``submit`` runs the call at once in the calling thread
    and returns its completed future (the sequential engine)."""

    def __enter__(self) -> _Inline:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> Future[T]:
        future: Future[T] = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except BaseException as exc:  # raised by ``result()``, as from a thread
            future.set_exception(exc)
        return future


def _executor(inline: bool, workers: int, name: str) -> _Inline | ThreadPoolExecutor:
    return _Inline() if inline else ThreadPoolExecutor(max(workers, 1), name)


def _yield_gil() -> None:
    """Let a sender waiting for the GIL take it now. Preparing a batch is pure Python with
    no call that releases the GIL; without this, a sender whose answer has arrived waits for
    the interpreter's switch interval (5 ms) at every step of its request: measured, requests
    took 17 ms instead of 3 while a batch was being prepared."""
    time.sleep(0)


# -- outcomes, in the caller's block --------------------------------------------------------------
def _current(uow: UnitOfWork, prescription_id: str) -> Prescription | None:
    return uow.prescriptions.get(prescription_id)


def _record_exchange(uow: UnitOfWork, now: datetime, *, ok: bool,
                     error: str | None = None) -> None:
    """Remember the last successful exchange with the registry, or the last error."""
    if ok:
        uow.meta.set(LAST_SUCCESS_KEY, iso(now))
    if error:
        uow.meta.set(LAST_ERROR_KEY, error[:500])
        uow.meta.set(LAST_ERROR_AT_KEY, iso(now))


def link_changed(uow: UnitOfWork, state: str, detail: str = "", key: str = "") -> bool:
    """Whether ``record_link`` would write anything."""
    known = uow.meta.with_prefix(SyncKeys.LINK)
    return (known.get(SyncKeys.LINK), known.get(SyncKeys.LINK_KEY, "")) != (state, key) or (
        state == LINK_MISCONFIGURED and known.get(SyncKeys.LINK_DETAIL) != detail[:500])


def record_link(uow: UnitOfWork, state: str, now: datetime, detail: str = "",
                key: str = "") -> None:
    """Remember what the link to the registry is (``LINK_UP``, ``LINK_DOWN``,
    ``LINK_MISCONFIGURED`` with the setting to fix), written only when it changes, in the
    caller's block; ``ordo sync status``, the kiosk and the metrics read it back."""
    if not link_changed(uow, state, detail, key):
        return
    uow.meta.set(SyncKeys.LINK, state)
    uow.meta.set(SyncKeys.LINK_DETAIL, detail[:500])
    uow.meta.set(SyncKeys.LINK_KEY, key)
    uow.meta.set(SyncKeys.LINK_SINCE, iso(now))
    log_at = log.warning if state != LINK_UP else log.info
    log_at("registry link", extra={"fields": {"state": state, "key": key or None}})


def apply_dispensations(uow: UnitOfWork, page: DispensationPage, now: datetime) -> list[str]:
    """Store a page of dispensations (each once) and move the prescriptions they concern:
    ``partially_dispensed`` until every medication line had a complete dispensation, then
    ``dispensed``. Returns the IDs of the prescriptions touched (in the caller's block)."""
    touched: dict[str, None] = {}
    raws = page.raw or tuple({} for _ in page.items)
    for d, resource in zip(page.items, raws, strict=True):
        if uow.dispensations.add(d, resource, now):
            touched[d.prescription_id] = None
            uow.audit.append(actor=ACTOR, action="registry.dispensation",
                             subject=d.prescription_id,
                             details={"dispensation": d.registry_id, "line": d.line,
                                      "complete": d.complete, "substituted": d.substituted})
    for pid in touched:
        _advance(uow, pid, now)
    return list(touched)


def _advance(uow: UnitOfWork, prescription_id: str, now: datetime) -> None:
    p = _current(uow, prescription_id)
    if p is None:
        return
    medication = {n for n, line in enumerate(p.lines, start=1)
                  if isinstance(line, MedicationLine)}
    complete = uow.dispensations.complete_lines(prescription_id)
    target = State.DISPENSED if medication and medication <= complete \
        else State.PARTIALLY_DISPENSED
    if p.state is State.SIGNED:  # the registry holds it: our acknowledgement was lost
        p = p.transition(State.REGISTERED, now)
        record_transition(uow, p, actor=ACTOR)
    if p.state is State.CANCELLED:
        uow.audit.append(actor=ACTOR, action="registry.dispensed_after_cancel",
                         subject=prescription_id, details={"target": target.value})
        return
    if p.can_become(target):
        record_transition(uow, p.transition(target, now), actor=ACTOR)


# -- other use cases of the registry link --------------------------------------------------------
def release(uow: UnitOfWork, seq: int, *, actor: str) -> bool:
    """Put a quarantined record back in the queue (after the cause was fixed); audited."""
    with uow:
        record = uow.outbox.release(seq)
        if record is None:
            return False
        uow.audit.append(actor=actor, action=f"registry.{record.kind}.released",
                         subject=record.prescription_id, details={"outbox": seq})
        uow.commit()
    return True


def status(uow: UnitOfWork, now: datetime | None = None) -> SyncStatus:
    """What ``ordo sync status`` and the kiosk show."""
    return uow.views.sync_status(now or utc_now())


SUBSTITUTION_LABELS_FR = {"G": "générique", "E": "équivalent", "EC": "équivalent",
                          "BC": "marque", "TE": "équivalent thérapeutique",
                          "TB": "marque thérapeutique", "TG": "générique thérapeutique",
                          "F": "formulaire", "N": "aucune"}


def describe_fr(d: Dispensation) -> str:
    """One line in French for the kiosk: what was handed over, and any substitution."""
    quantity = ""
    if d.quantity is not None:
        quantity = f"{format(d.quantity.normalize(), 'f').replace('.', ',')} {d.unit or ''} "
    text = f"Ligne {d.line} : {quantity.strip()} {d.product_label}".replace("  ", " ")
    text += " (délivrance complète)" if d.complete else " (délivrance partielle)"
    if d.substituted:
        kind = SUBSTITUTION_LABELS_FR.get(d.substitution_type or "", "substitution")
        text += f" — substitution ({kind})"
        if d.substitution_reason:
            text += f" : {d.substitution_reason}"
    return text


def dispensation_dict(d: Dispensation) -> JsonObject:
    """A dispensation as JSON (``ordo sync dispensations --json``)."""
    return {"registry_id": d.registry_id, "prescription_id": d.prescription_id,
            "line": d.line, "complete": d.complete, "product_label": d.product_label,
            "product_code": d.product_code, "product_system": d.product_system,
            "quantity": None if d.quantity is None else format(d.quantity, "f"),
            "unit": d.unit, "substituted": d.substituted,
            "substitution_type": d.substitution_type,
            "substitution_reason": d.substitution_reason, "pharmacy": d.pharmacy,
            "handed_over_at": d.handed_over_at.isoformat()}


@dataclass(frozen=True)
class AnchorCheck:
    """The local chain against the heads the registry holds (``check_anchors``)."""

    checked: int                      # anchors compared with the local chain
    skipped: int                      # anchors older than the retention cut
    problems: list[str]               # French, one per anchor that does not match
    last: AuditHead | None = None     # the newest anchor the registry holds


def check_anchors(uow: UnitOfWork, anchors: list[AuditHead]) -> AnchorCheck:
    """Compare each anchor the registry holds with the local chain: entry ``seq`` must
    still exist and carry the same hash. A chain rewritten end to end (rows deleted,
    changed or inserted, every hash recomputed, the head in ``meta`` updated, triggers
    dropped) verifies locally but cannot match an anchor taken before the rewrite."""
    count, _ = uow.audit.head()
    cut = uow.audit.anchor()
    problems: list[str] = []
    checked = skipped = 0
    for a in anchors:
        if cut is not None and a.seq < cut.seq:
            skipped += 1
            continue
        checked += 1
        local = uow.audit.hash_at(a.seq)
        if local is None:
            problems.append(f"l'entrée {a.seq} ancrée au registre le {a.received_at[:19]} "
                            f"(reçu {a.receipt_id}) n'existe plus : la chaîne locale s'arrête "
                            f"à {count}")
        elif local != a.digest:
            problems.append(f"l'entrée {a.seq} ne correspond plus à l'ancrage du registre "
                            f"du {a.received_at[:19]} (reçu {a.receipt_id}) : la chaîne a "
                            "été réécrite")
    return AnchorCheck(checked, skipped, problems, anchors[-1] if anchors else None)
