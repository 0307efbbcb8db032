"""The durable print queue: print, retry, reprint (DUPLICATA), and the PDF of an order.

The first print job (``original``) is created with the signed prescription in one
transaction (``appliance.services.signature.record_signature``). ``PrintQueue.run_once``
takes queued jobs oldest first and sends each through the ``OrderPrinter`` port:

- a job is ``done`` only when ``print_order`` returned, i.e. the printer acknowledged every
  byte (see ``drivers/printer/escpos.py``); its attempt is audited (``print.printed``, actor
  = who asked for the job);
- offline, no paper, connection lost, no acknowledgement: the job stays ``queued`` with
  ``attempts`` and ``last_error`` (French, for the UI), the run stops (the printer is the
  problem, not the job) and the next run retries it, keeping the order;
- a job that can never print (its prescription is unknown, unsigned or unreadable) becomes
  ``failed``, is audited (``print.failed``), and the queue goes on.

A lease (``claimed_by``/``claimed_until``, migration m003) keeps two workers from sending
the same job at once; if a worker dies after the printer took the bytes but before the
job was marked done, the job prints again when the lease expires (at least once, never
lost; both copies carry the same ID).

The QR payload is rebuilt from the stored prescription: the ePU payload by default
(``[print] qr = "epu"``: ID, N° AM, RPPS, names, birth date), or the signed payload
(``"signed"``: the exact signed bytes, the signature and the certificate by reference).

Secure prescriptions (every line secure: ``Prescription.secure``; a line is never mixed
with others once signed) go to the ``secure_printer`` (a PDF for the secure-paper
printer), never to the receipt printer. Without a secure printer such a job fails with
the reason, and the others go on.

The UI is told through ``on_status(QueueStatus)`` after every attempt, and can read
``PrintQueue.status()`` at any time. ``PrintWorker`` runs the queue in a thread; give it its
own unit of work (one SQLite connection per thread).
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from appliance.domain.prescription import Prescription, State
from appliance.domain.qr import EpuPayload
from appliance.errors import OrdoError, PrinterError, StateError, StoreError, ValidationError
from appliance.ports.clock import Clock, utc_now
from appliance.ports.printer import (
    OrderPrinter,
    PrinterState,
    PrinterStatus,
    PrinterUnavailable,
    PrintReceipt,
    PrintRequest,
)
from appliance.ports.uow import PrintJob, UnitOfWork
from appliance.services.signature import load_checked

log = logging.getLogger(__name__)

LEASE = timedelta(minutes=2)
RETRY_DELAYS_S = (2.0, 5.0, 10.0, 30.0, 60.0)
IDLE_S = 5.0
SIGNED_HERE_MAX = 16

__all__ = ["PrintJob"]  # the queue's record, defined with the port


# -- what gets printed ----------------------------------------------------------------------
QR_KINDS = ("epu", "signed")


def order_payload(uow: UnitOfWork, prescription_id: str, kind: str = "epu", *,
                  actor: str = "system", during: str = "print") -> tuple[Prescription, str]:
    """The stored signed prescription and its QR payload: ``epu`` or ``signed``. A body
    altered after signing raises ``TamperedPrescription``, audited for ``actor``."""
    if kind not in QR_KINDS:
        raise ValidationError("print.qr", kind, "epu or signed")
    row = uow.prescriptions.signed_rows([prescription_id]).get(prescription_id)
    if row is None:
        raise StoreError(f"ordonnance inconnue : {prescription_id}")
    signed = load_checked(uow, row, actor=actor, during=during)
    if signed is None:
        raise StateError(f"l'ordonnance {prescription_id} n'est pas signée : rien à imprimer")
    if kind == "epu":
        return signed.prescription, EpuPayload.from_prescription(signed.prescription).encode()
    from appliance.services.signature import signed_payload  # cryptography: when needed

    proof = signed.proof
    assert proof.signed_part is not None
    payload = signed_payload(proof.signed_part, proof.signature, proof.signer_cert)
    return signed.prescription, payload.encode()


def prepare_print(printer: OrderPrinter, draft: Prescription, *, kind: str = "epu",
                  at: datetime | None = None) -> bool:
    """Have ``printer`` make ahead the receipt of ``draft`` as it will be once signed at
    about ``at`` (the review screen calls it while the physician reads the order): with
    the ePU QR, everything but the signing time is known before the card signs. False
    when there is nothing to prepare (the signed QR needs the signature; a secure order
    is a PDF) or the draft cannot make a payload yet (no N° AM: signing asks for it)."""
    if kind != "epu" or needs_secure_paper(draft):
        return False
    try:
        signed = draft.transition(State.SIGNED, at or utc_now())
        payload = EpuPayload.from_prescription(signed).encode()
        printer.prepare(PrintRequest(0, signed, payload))
    except OrdoError as exc:
        log.info("print not prepared", extra={"fields": {"error": str(exc)}})
        return False
    return True


def needs_secure_paper(prescription: Prescription) -> bool:
    """A prescription with a secure line prints on secure paper only."""
    return any(line.secure for line in prescription.lines)


def request_reprint(uow: UnitOfWork, prescription_id: str, *, actor: str, role: str,
                    at: datetime | None = None) -> int:
    """Queue a DUPLICATA of a signed order for ``actor`` (an idNat_PS with an open nurse,
    physician or staff session: the caller checks the session); audited."""
    with uow:
        state = uow.prescriptions.state_of(prescription_id)
        if state is None:
            raise StoreError(f"ordonnance inconnue : {prescription_id}")
        if state is State.DRAFT:
            raise StateError(f"l'ordonnance {prescription_id} n'est pas signée : "
                             "pas de duplicata")
        if state is State.CANCELLED:
            raise StateError(f"l'ordonnance {prescription_id} est annulée : pas de duplicata")
    order_payload(uow, prescription_id, actor=actor, during="reprint")  # altered: refused
    with uow:
        job_id = uow.print_jobs.add(prescription_id, "duplicate", actor, at or utc_now())
        uow.audit.append(actor=actor, action="print.reprint_requested",
                         subject=prescription_id, details={"job": job_id, "role": role})
        uow.commit()
    log.info("reprint queued", extra={"fields": {"job": job_id, "prescription": prescription_id}})
    return job_id


def export_pdf(uow: UnitOfWork, prescription_id: str,
               render: Callable[[Prescription, str], bytes], *, actor: str,
               kind: str = "epu") -> bytes:
    """The PDF of an order (``render`` is the PDF adapter); audited as ``print.pdf``."""
    prescription, payload = order_payload(uow, prescription_id, kind, actor=actor, during="pdf")
    data = render(prescription, payload)
    with uow:
        uow.audit.append(actor=actor, action="print.pdf", subject=prescription_id,
                         details={"bytes": len(data)})
        uow.commit()
    return data


# -- the queue ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class QueueStatus:
    """What the UI shows about printing. ``message`` is French."""

    printer: PrinterState
    message: str
    pending: int
    failed: int
    last_printed: int | None = None


@dataclass
class RunReport:
    printed: list[int] = field(default_factory=list)
    failed: list[int] = field(default_factory=list)
    error: str | None = None  # why the run stopped early (the printer), French
    retry: list[int] = field(default_factory=list)  # jobs left queued after an error
    reasons: dict[int, str] = field(default_factory=dict)  # why each failed job failed

    def as_dict(self) -> dict[str, object]:
        return {"printed": self.printed, "failed": self.failed, "error": self.error,
                "retry": self.retry, "reasons": {str(k): v for k, v in self.reasons.items()}}


class PrintQueue:
    """Runs queued jobs through one printer. Not thread-safe: one queue per thread."""

    def __init__(self, uow: UnitOfWork, printer: OrderPrinter, *,
                 clock: Clock = utc_now,
                 on_status: Callable[[QueueStatus], None] | None = None,
                 worker_id: str | None = None, qr: str = "epu",
                 secure_printer: OrderPrinter | None = None) -> None:
        self.uow = uow
        self.printer = printer
        self.secure_printer = secure_printer
        self.qr = qr
        self.clock = clock
        self.on_status = on_status
        self.worker_id = worker_id or f"{os.getpid()}-{threading.get_ident()}"
        self._printer_status = PrinterStatus(PrinterState.UNKNOWN)
        self._last_error: str | None = None
        self._last_printed: int | None = None
        self._signed_here: dict[str, tuple[Prescription, str]] = {}
        self._signed_lock = threading.Lock()

    # -- orders signed in this process ------------------------------------------------------
    def signed_here(self, orders: Iterable[tuple[Prescription, str]]) -> None:
        """Orders this process has just signed and stored (``prescribing.sign``'s results:
        the prescription and its signed QR payload). Their first print uses them as they
        were signed instead of reading them back from the store: reading back is what
        the integrity check guards, and the check stays on every order read from the
        store (another worker's, a retry after a restart, a duplicate). Thread-safe."""
        with self._signed_lock:
            for prescription, signed_payload in orders:
                if prescription.state is State.SIGNED:
                    self._signed_here[prescription.id] = (prescription, signed_payload)
            while len(self._signed_here) > SIGNED_HERE_MAX:  # printed by another worker
                del self._signed_here[next(iter(self._signed_here))]

    def _take_signed_here(self, prescription_id: str) -> tuple[Prescription, str] | None:
        with self._signed_lock:
            return self._signed_here.pop(prescription_id, None)

    # -- state for the UI -------------------------------------------------------------------
    def status(self) -> QueueStatus:
        counts = self.uow.print_jobs.counts()
        message = self._last_error or self._printer_status.message
        return QueueStatus(printer=self._printer_status.state, message=message,
                           pending=counts.get("queued", 0), failed=counts.get("failed", 0),
                           last_printed=self._last_printed)

    def _notify(self) -> None:
        if self.on_status is not None:
            try:
                self.on_status(self.status())
            except Exception:
                log.exception("print status callback failed")

    # -- one run ------------------------------------------------------------------------------
    def _claim(self) -> PrintJob | None:
        """The oldest queued job, leased to this worker. The lease is not synced to disk
        (``uow.light``): a power failure that undoes it leaves the job queued, to print
        again, as an expired lease does."""
        now = self.clock()
        with self.uow.light():
            job = self.uow.print_jobs.claim(self.worker_id, now, now + LEASE)
            self.uow.commit()
        return job

    def _release(self, job: PrintJob, error: str) -> None:
        with self.uow:
            self.uow.print_jobs.release(job.id, error)
            self.uow.commit()

    def _done(self, job: PrintJob, receipt: PrintReceipt, printer: OrderPrinter) -> None:
        now = self.clock()
        with self.uow:
            self.uow.print_jobs.done(job.id, now)
            self.uow.audit.append(
                actor=job.requested_by, action="print.printed", subject=job.prescription_id,
                at=now, details={"job": job.id, "kind": job.kind, "attempts": job.attempts + 1,
                                 "bytes": receipt.bytes_sent, "tickets": receipt.tickets,
                                 "confirmed": receipt.confirmed,
                                 "printer": printer.description})
            self.uow.commit()

    def _fail(self, job: PrintJob, error: str) -> None:
        with self.uow:
            self.uow.print_jobs.fail(job.id, error)
            self.uow.audit.append(actor=job.requested_by, action="print.failed",
                                  subject=job.prescription_id,
                                  details={"job": job.id, "kind": job.kind,
                                           "error": error[:200]})
            self.uow.commit()

    def _request(self, job: PrintJob) -> PrintRequest:
        here = self._take_signed_here(job.prescription_id) if job.kind == "original" \
            else None
        if here is not None:
            prescription, signed_payload = here
            if self.qr not in QR_KINDS:
                raise ValidationError("print.qr", self.qr, "epu or signed")
            payload = signed_payload if self.qr == "signed" else \
                EpuPayload.from_prescription(prescription).encode()
            return PrintRequest(job.id, prescription, payload)
        prescription, payload = order_payload(
            self.uow, job.prescription_id, self.qr, actor=job.requested_by,
            during="duplicate" if job.kind == "duplicate" else "print")
        duplicate_at = job.created_at if job.kind == "duplicate" else None
        return PrintRequest(job.id, prescription, payload, duplicate_at)

    def _target(self, request: PrintRequest) -> OrderPrinter:
        if not needs_secure_paper(request.prescription):
            return self.printer
        if self.secure_printer is None:
            raise StateError("ordonnance sécurisée : aucune imprimante pour papier sécurisé "
                             "n'est configurée, elle n'est jamais imprimée sur ticket")
        return self.secure_printer

    def run_once(self) -> RunReport:
        """Print every queued job, oldest first, until the queue is empty or the printer
        fails; never raises for a printer problem (the report says it)."""
        report = RunReport()
        while True:
            job = self._claim()
            if job is None:
                break
            try:
                request = self._request(job)
                printer = self._target(request)
            except (ValidationError, StateError, StoreError) as exc:
                log.error("print job cannot be printed", extra={"fields": {
                    "job": job.id, "error": str(exc)}})
                self._fail(job, str(exc))
                report.failed.append(job.id)
                report.reasons[job.id] = str(exc)
                self._notify()
                continue
            try:
                receipt = printer.print_order(request)
            except PrinterError as exc:
                state = exc.state if isinstance(exc, PrinterUnavailable) else \
                    PrinterState.UNKNOWN
                self._printer_status = PrinterStatus(state)
                self._last_error = str(exc)
                self._release(job, str(exc))
                report.error = str(exc)
                report.retry.append(job.id)
                log.warning("print job left queued", extra={"fields": {
                    "job": job.id, "state": state.value}})
                self._notify()
                break
            except BaseException:
                self._release(job, "interrompu")
                raise
            self._done(job, receipt, printer)
            self._printer_status = PrinterStatus(PrinterState.READY)
            self._last_error = None
            self._last_printed = job.id
            report.printed.append(job.id)
            self._notify()
        return report


class PrintWorker:
    """Runs a ``PrintQueue`` in a thread: at once when woken (a new job), every ``idle_s``
    otherwise, and after a printer error with growing delays (``retry_s``)."""

    def __init__(self, queue: PrintQueue, *, idle_s: float = IDLE_S,
                 retry_s: Sequence[float] = RETRY_DELAYS_S) -> None:
        self.queue = queue
        self.idle_s = idle_s
        self.retry_s = tuple(retry_s)
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="print-worker", daemon=True)
        self._thread.start()

    def wake(self, signed: Iterable[tuple[Prescription, str]] = ()) -> None:
        """Print now; ``signed``: the orders just signed in this process, with their
        signed QR payloads (see ``PrintQueue.signed_here``)."""
        self.queue.signed_here(signed)
        self._wake.set()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        failures = 0
        while not self._stop.is_set():
            self._wake.clear()
            try:
                report = self.queue.run_once()
            except Exception:
                log.exception("print queue run failed")
                report = RunReport(error="erreur interne")
            if report.error:
                delay = self.retry_s[min(failures, len(self.retry_s) - 1)]
                failures += 1
            else:
                delay, failures = self.idle_s, 0
            self._wake.wait(delay)
