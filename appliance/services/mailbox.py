"""MSSanté use cases: the orders sent to the partner pharmacy, the prescriptions received
from other prescribers, and the eP-MED-DM document of an order.

Queuing (``MailPolicy``): the composition root gives the signing use case the pharmacy's
address (``[pharmacy] mssante``); ``record_signature`` queues the order's message in the
signing transaction. No address: nothing is queued. The resident's objection changes
nothing here (it concerns the registry's feedback).

Sending (``MailSender.drain``), one message per order, effectively once:

- due rows are taken oldest first; the row's ``Message-ID`` is fixed (committed) before the
  first attempt, and the message is rebuilt identically at every attempt;
- a row is marked ``sent`` only after the server accepted the message (250 after DATA). A
  crash or a connection lost after DATA but before that answer leaves it pending: the next
  run sends it again, with the same Message-ID, so the pharmacy's software can recognise
  the duplicate;
- a transient failure (network, TLS, 4xx) waits a full-jitter backoff; several in a row stop
  the run (the server is unreachable: the sync service holds the mail off); a permanent
  refusal (5xx) quarantines the row with the server's reason (``ordo sync status``,
  ``ordo mss release``). Sent and quarantined messages are audited.

Receiving (``fetch_inbox``): each unseen message of the establishment's mailbox that carries
an IHE XDM ZIP, a CDA or a PDF is read, the resident matched (INS, else birth name + first
name + birth date when exactly one resident has them, else none: a person attaches it), and
the document kept once (Message-ID, CDA document ID); the message is then marked seen.
Other mail is left unseen and tagged so that it is not read again; a hostile or malformed
attachment is refused with its reason (audited), the message marked seen and tagged, and
the fetch goes on.

Every use case takes a unit of work and the adapters of ``appliance.ports.mail``; the
composition root (``appliance.bootstrap``) builds them from ``[mssante]``.
"""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from appliance.domain.backoff import next_delay
from appliance.domain.people import fold
from appliance.errors import (
    CdaNotApplicable,
    DocumentRefused,
    MailRejected,
    MailUnavailable,
    StateError,
    StoreError,
    ValidationError,
)
from appliance.ports.clock import Clock, utc_now
from appliance.ports.mail import (
    Mailbox,
    MailTransport,
    MessageReader,
    OrderDocuments,
    OrderMailer,
    ReceivedDocument,
)
from appliance.ports.uow import MailRecord, ReceivedPrescription, UnitOfWork

log = logging.getLogger(__name__)

ACTOR = "mssante"
BATCH = 20
UNREACHABLE_AFTER = 3
IGNORED_KEYWORD = "$OrdoIgnored"
REFUSED_KEYWORD = "$OrdoRefused"


# -- queuing -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class MailPolicy:
    """Where signed orders go by MSSanté: the partner pharmacy's address (``[pharmacy]
    mssante``); empty: nowhere."""

    pharmacy: str = ""

    def queue(self, uow: UnitOfWork, prescription_id: str, at: datetime) -> int | None:
        """Queue the order's message in the caller's block; ``None`` when no address."""
        if not self.pharmacy:
            return None
        return uow.mail_outbox.add(prescription_id, self.pharmacy, at)


NO_MAIL = MailPolicy()


# -- the documents of an order -------------------------------------------------------------------
def order_documents(uow: UnitOfWork, mailer: OrderMailer,
                    prescription_id: str) -> OrderDocuments:
    """The stored signed order's PDF and eP-MED-DM document."""
    from appliance.services.printing import order_payload

    prescription, payload = order_payload(uow, prescription_id)
    return mailer.documents(prescription, payload)


def export_cda(uow: UnitOfWork, mailer: OrderMailer, prescription_id: str, *,
               actor: str) -> bytes:
    """The eP-MED-DM document of a signed order (``ordo export cda``); audited."""
    docs = order_documents(uow, mailer, prescription_id)
    if docs.cda is None:
        raise CdaNotApplicable("cette ordonnance ne comporte que des actes : pas de document "
                               "eP-MED-DM (médicaments ou dispositifs médicaux seulement)")
    with uow:
        uow.audit.append(actor=actor, action="export.cda", subject=prescription_id,
                         details={"bytes": len(docs.cda)})
        uow.commit()
    return docs.cda


# -- sending -------------------------------------------------------------------------------------
@dataclass
class SendReport:
    sent: int = 0
    retried: int = 0
    quarantined: int = 0
    unreachable: bool = False
    remaining: int = 0
    last_error: str | None = None


class MailSender:
    """Drains the mail outbox through ``transport()`` (a new SMTP session when needed)."""

    def __init__(self, uow: UnitOfWork, mailer: OrderMailer,
                 transport: Callable[[], MailTransport], *, clock: Clock = utc_now,
                 rng: random.Random | None = None, backoff_base_s: float = 2.0,
                 backoff_cap_s: float = 900.0) -> None:
        self.uow, self.mailer, self.transport = uow, mailer, transport
        self.clock = clock
        self.rng = rng or random.Random()  # noqa: S311 (retry jitter, not a secret)
        self.base_s, self.cap_s = backoff_base_s, backoff_cap_s
        self._stop = threading.Event()

    def stop(self) -> None:
        self._stop.set()

    def drain(self, limit: int | None = None) -> SendReport:
        """Send every due message (at most ``limit``), oldest first."""
        report = SendReport()
        transport: MailTransport | None = None
        failures = after = done = 0
        try:
            while not self._stop.is_set() and (limit is None or done < limit):
                records = self.uow.mail_outbox.due(self.clock(), BATCH, after=after)
                if not records:
                    break
                for record in records:
                    after = record.seq
                    if self._stop.is_set() or (limit is not None and done >= limit):
                        break
                    done += 1
                    try:
                        if transport is None:
                            transport = self.transport()
                        self._send_one(transport, record)
                    except MailRejected as exc:
                        self._quarantine(record, str(exc), report)
                        continue
                    except MailUnavailable as exc:
                        self._retry(record, str(exc), report)
                        failures += 1
                        if transport is not None:
                            transport.close()
                            transport = None
                        if failures >= UNREACHABLE_AFTER:
                            report.unreachable = True
                            return report
                        continue
                    report.sent += 1
                    failures = 0
        finally:
            if transport is not None:
                transport.close()
            report.remaining = self.uow.mail_outbox.pending_count()
        return report

    def _send_one(self, transport: MailTransport, record: MailRecord) -> None:
        mid = record.message_id
        if mid is None:
            with self.uow:
                mid = self.uow.mail_outbox.set_message_id(
                    record.seq, self.mailer.message_id(record.prescription_id))
                self.uow.commit()
        try:
            docs = order_documents(self.uow, self.mailer, record.prescription_id)
            message = self.mailer.compose(docs, record.recipient, mid)
        except (StateError, StoreError, ValidationError) as exc:  # never will: quarantine
            raise MailRejected(0, f"ordonnance illisible dans la base locale : {exc}") from exc
        transport.send(message)
        with self.uow:
            if self.uow.mail_outbox.sent(record, self.clock()):
                self.uow.audit.append(actor=ACTOR, action="mssante.sent",
                                      subject=record.prescription_id,
                                      details={"mail": record.seq, "to": record.recipient})
            self.uow.commit()

    def _quarantine(self, record: MailRecord, reason: str, report: SendReport) -> None:
        with self.uow:
            if self.uow.mail_outbox.quarantine(record, reason):
                self.uow.audit.append(actor=ACTOR, action="mssante.quarantined",
                                      subject=record.prescription_id,
                                      details={"mail": record.seq, "reason": reason[:200]})
            self.uow.commit()
        report.quarantined += 1
        report.last_error = reason
        log.warning("mail quarantined", extra={"fields": {
            "mail": record.seq, "prescription": record.prescription_id}})

    def _retry(self, record: MailRecord, error: str, report: SendReport) -> None:
        delay = next_delay(record.attempts + 1, self.base_s, self.cap_s, self.rng)
        with self.uow:
            self.uow.mail_outbox.retry(record, error, self.clock() + timedelta(seconds=delay))
            self.uow.commit()
        report.retried += 1
        report.last_error = error


def release(uow: UnitOfWork, seq: int, *, actor: str) -> MailRecord | None:
    """Put a quarantined message back in the queue (``ordo mss release``); audited."""
    with uow:
        record = uow.mail_outbox.release(seq)
        if record is None:
            return None
        uow.audit.append(actor=actor, action="mssante.released",
                         subject=record.prescription_id, details={"mail": seq})
        uow.commit()
    return record


# -- receiving -----------------------------------------------------------------------------------
@dataclass
class FetchReport:
    imported: int = 0
    matched: int = 0
    unmatched: int = 0
    duplicates: int = 0
    ignored: int = 0
    refused: list[str] = field(default_factory=list)


def match_resident(uow: UnitOfWork, doc: ReceivedDocument | None) -> tuple[str | None, str]:
    """(INS, how) of the resident a document is about: by INS, else by birth name, first
    name and birth date when exactly one resident has them, else ``(None, "none")``."""
    if doc is None:
        return None, "none"
    if doc.ins and uow.residents.get(doc.ins) is not None:
        return doc.ins, "ins"
    if doc.birth_date and doc.birth_name and doc.first_names:
        first = fold(doc.first_names).split()[:1]
        hits = [r.ins.value for r in uow.residents.born_on(doc.birth_date)
                if fold(r.birth_name) == fold(doc.birth_name)
                and fold(r.first_names).split()[:1] == first]
        if len(hits) == 1:
            return hits[0], "identity"
    return None, "none"


def import_message(uow: UnitOfWork, reader: MessageReader, raw: bytes, report: FetchReport,
                   *, now: datetime) -> str:
    """Read one message; returns what to do with it: ``seen``, ``ignore`` (other mail) or
    raises ``DocumentRefused``."""
    received = reader.read(raw)
    if received is None:
        report.ignored += 1
        return "ignore"
    doc = received.document
    document_id = doc.document_id if doc else None
    if uow.external_prescriptions.known(received.message_id, document_id):
        report.duplicates += 1
        return "seen"
    with uow:
        ins, how = match_resident(uow, doc)
        patient = {} if doc is None else {
            "ins": doc.ins, "ins_oid": doc.ins_oid, "birth_name": doc.birth_name,
            "first_names": doc.first_names,
            "birth_date": doc.birth_date.isoformat() if doc.birth_date else None}
        added = uow.external_prescriptions.add(ReceivedPrescription(
            message_id=received.message_id, document_id=document_id, resident_ins=ins,
            matched_by=how, sender=received.sender,
            author=(doc.author if doc else "") or received.sender,
            author_id=doc.author_id if doc else None,
            issued_at=doc.issued_at if doc else None, received_at=now,
            lines=doc.lines if doc else (), patient=patient, cda=received.cda,
            pdf=received.pdf))
        if added is not None:
            uow.audit.append(actor=ACTOR, action="mssante.received", subject=str(added),
                             details={"matched_by": how, "sender": received.sender,
                                      "structured": received.cda is not None,
                                      "lines": len(doc.lines) if doc else 0})
        uow.commit()
    if added is None:
        report.duplicates += 1
    else:
        report.imported += 1
        if ins is None:
            report.unmatched += 1
        else:
            report.matched += 1
    return "seen"


def fetch_inbox(uow: UnitOfWork, mailbox: Mailbox, reader: MessageReader, *,
                clock: Clock = utc_now) -> FetchReport:
    """Import the unseen messages of the mailbox (see the module docstring)."""
    report = FetchReport()
    with mailbox as box:
        for fetched in list(box.unseen((IGNORED_KEYWORD, REFUSED_KEYWORD))):
            uid = fetched.uid.decode("ascii", "replace")
            try:
                outcome = import_message(uow, reader, fetched.data, report, now=clock())
            except DocumentRefused as exc:
                outcome = "refuse"
                report.refused.append(str(exc))
                with uow:
                    uow.audit.append(actor=ACTOR, action="mssante.refused", subject=uid,
                                     details={"reason": str(exc)[:200]})
                    uow.commit()
                log.warning("received message refused", extra={"fields": {
                    "uid": uid, "reason": str(exc)[:200]}})
            except Exception as exc:  # one bad message never stops the fetch
                outcome = "refuse"
                report.refused.append(f"message illisible : {type(exc).__name__}")
                log.exception("received message could not be read")
            if outcome == "seen":
                box.flag(fetched.uid, "\\Seen")
            elif outcome == "ignore":
                box.flag(fetched.uid, IGNORED_KEYWORD)
            else:
                box.flag(fetched.uid, "\\Seen", REFUSED_KEYWORD)
    log.info("mailbox fetched", extra={"fields": {
        "imported": report.imported, "unmatched": report.unmatched,
        "duplicates": report.duplicates, "ignored": report.ignored,
        "refused": len(report.refused)}})
    return report


def attach(uow: UnitOfWork, external_id: int, resident_ins: str, *, actor: str) -> None:
    """A person attaches a received prescription to a resident; audited."""
    with uow:
        if uow.residents.get(resident_ins) is None:
            raise StoreError(f"résident inconnu : {resident_ins}")
        if not uow.external_prescriptions.attach(external_id, resident_ins):
            raise StoreError(f"ordonnance reçue inconnue : {external_id}")
        uow.audit.append(actor=actor, action="mssante.attached", subject=str(external_id))
        uow.commit()
