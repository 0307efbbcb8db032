"""MSSanté use cases on the store: drain the mail outbox, fetch the inbox.

Sending (``MailSender.drain``), one message per order, effectively once:

- due rows are taken oldest first; the row's ``Message-ID`` is fixed (committed) before the
  first attempt, and the message is rebuilt identically at every attempt;
- a row is marked ``sent`` only after the server accepted the message (250 after DATA). A
  crash or a connection lost after DATA but before that answer leaves it pending: the next
  run sends it again, with the same Message-ID, so the pharmacy's software can recognise
  the duplicate;
- a transient failure (network, TLS, 4xx) waits a full-jitter backoff (``sync.backoff``);
  several in a row stop the run (the server is unreachable); a permanent refusal (5xx)
  quarantines the row with the server's reason (``ordo sync status``).

Receiving (``fetch_inbox``): each unseen message of the establishment's mailbox that carries
an IHE XDM ZIP, a CDA or a PDF is read, the resident matched (INS, else birth name + first
name + birth date, else none), and the document kept once (Message-ID, CDA document ID);
the message is then marked seen. Other mail is left unseen and tagged so that it is not read
again; a hostile or malformed attachment is refused with its reason (audited), the message
marked seen and tagged, and the fetch goes on.
"""

from __future__ import annotations

import email
import email.policy
import logging
import random
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.utils import parseaddr

from appliance.config import Settings
from appliance.domain.people import fold
from appliance.errors import OrdoError
from appliance.store import audit, external_prescriptions, mail_outbox
from appliance.store.db import Store
from sync import cda, mssante, xdm
from sync.backoff import next_delay

log = logging.getLogger(__name__)

UNREACHABLE_AFTER = 3
IGNORED_KEYWORD = "$OrdoIgnored"
REFUSED_KEYWORD = "$OrdoRefused"
MAX_MESSAGE_BYTES = 40 * 1024 * 1024


@dataclass
class SendReport:
    sent: int = 0
    retried: int = 0
    quarantined: int = 0
    unreachable: bool = False
    remaining: int = 0
    last_error: str | None = None


class MailSender:
    def __init__(self, store: Store, settings: Settings,
                 transport_factory: Callable[[], mssante.SmtpTransport] | None = None, *,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC),
                 rng: random.Random | None = None, backoff_base_s: float = 2.0,
                 backoff_cap_s: float | None = None) -> None:
        self.store, self.settings = store, settings
        self.factory = transport_factory or (lambda: mssante.SmtpTransport(settings.mssante))
        self.clock = clock
        self.rng = rng or random.Random()  # noqa: S311 (retry jitter, not a secret)
        self.base_s = backoff_base_s
        self.cap_s = float(backoff_cap_s if backoff_cap_s is not None
                           else settings.sync.backoff_cap_s)
        self._stop = threading.Event()

    def stop(self) -> None:
        self._stop.set()

    def drain(self, limit: int | None = None) -> SendReport:
        """Send every due message (at most ``limit``), oldest first."""
        report = SendReport()
        transport: mssante.SmtpTransport | None = None
        failures = 0
        after = 0
        done = 0
        try:
            while not self._stop.is_set() and (limit is None or done < limit):
                records = mail_outbox.due(self.store, self.clock(), 20, after=after)
                if not records:
                    break
                for record in records:
                    after = record.seq
                    if self._stop.is_set() or (limit is not None and done >= limit):
                        break
                    done += 1
                    try:
                        if transport is None:
                            transport = self.factory()
                        outcome = self._send_one(transport, record)
                    except mssante.MailUnavailable as exc:
                        outcome = exc
                    if outcome is None:
                        report.sent += 1
                        failures = 0
                        continue
                    if isinstance(outcome, mssante.MailRejected):
                        with self.store.write() as db:
                            mail_outbox.mark_quarantined(db, record, str(outcome))
                        report.quarantined += 1
                        report.last_error = str(outcome)
                        log.warning("mail quarantined", extra={"fields": {
                            "mail": record.seq, "prescription": record.prescription_id,
                            "code": outcome.code}})
                        continue
                    delay = next_delay(record.attempts + 1, self.base_s, self.cap_s, self.rng)
                    with self.store.write() as db:
                        mail_outbox.mark_retry(db, record, str(outcome),
                                               self.clock() + timedelta(seconds=delay))
                    report.retried += 1
                    report.last_error = str(outcome)
                    failures += 1
                    if transport is not None:
                        transport.close()
                        transport = None
                    if failures >= UNREACHABLE_AFTER:
                        report.unreachable = True
                        return report
        finally:
            if transport is not None:
                transport.close()
            report.remaining = mail_outbox.pending_count(self.store)
        return report

    def _send_one(self, transport: mssante.SmtpTransport, record: mail_outbox.MailRecord
                  ) -> OrdoError | None:
        mid = record.message_id
        if mid is None:
            with self.store.write() as db:
                mid = mail_outbox.set_message_id(
                    db, record.seq, mssante.message_id(record.prescription_id,
                                                       self.settings.mssante.mailbox))
        try:
            docs = mssante.order_documents(self.store, self.settings, record.prescription_id)
            msg = mssante.compose(docs, self.settings, record.recipient, mid)
        except OrdoError as exc:
            return mssante.MailRejected(0, f"ordonnance illisible dans la base locale : {exc}")
        try:
            transport.send(msg)
        except (mssante.MailRejected, mssante.MailUnavailable) as exc:
            return exc
        with self.store.write() as db:
            mail_outbox.mark_sent(db, record, self.clock())
        return None


# -- receiving ----------------------------------------------------------------------------------
@dataclass
class FetchReport:
    imported: int = 0
    matched: int = 0
    unmatched: int = 0
    duplicates: int = 0
    ignored: int = 0
    refused: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class _Parts:
    cda: bytes | None
    pdf: bytes | None


def _attachments(msg: EmailMessage) -> _Parts:
    """The CDA and the PDF the message carries (inside an XDM ZIP or attached as such)."""
    found_cda: bytes | None = None
    found_pdf: bytes | None = None
    for part in msg.walk():
        if part.is_multipart():
            continue
        ctype = part.get_content_type()
        name = (part.get_filename() or "").upper()
        if ctype in ("application/zip", "application/x-zip-compressed") or name.endswith(".ZIP"):
            payload = part.get_payload(decode=True) or b""
            for doc in xdm.read_xdm(payload):
                if doc.name.endswith(".XML") and found_cda is None:
                    found_cda = doc.data
                elif doc.name.endswith(".PDF") and found_pdf is None:
                    found_pdf = doc.data
        elif ctype in ("text/xml", "application/xml", "application/hl7-v3+xml") or \
                name.endswith(".XML"):
            found_cda = found_cda or part.get_payload(decode=True)
        elif ctype == "application/pdf" or name.endswith(".PDF"):
            data = part.get_payload(decode=True) or b""
            found_pdf = found_pdf or data
    if found_pdf is not None and not found_pdf.startswith(b"%PDF"):
        raise xdm.XdmRefused("pièce jointe PDF illisible (en-tête %PDF absent)")
    return _Parts(found_cda, found_pdf)


def match_resident(store: Store, doc: cda.ExternalDocument | None) -> tuple[str | None, str]:
    """(INS, how) of the resident a document is about: by INS, else by birth name, first
    name and birth date when exactly one resident has them, else (None, "none")."""
    if doc is None:
        return None, "none"
    if doc.ins:
        rows = store.query("SELECT ins FROM residents WHERE ins = ?", (doc.ins,))
        if rows:
            return rows[0]["ins"], "ins"
    if doc.birth_date and doc.birth_name and doc.first_names:
        rows = store.query("SELECT ins, birth_name, first_names FROM residents"
                           " WHERE birth_date = ?", (doc.birth_date.isoformat(),))
        first = fold(doc.first_names).split()[:1]
        hits = [r["ins"] for r in rows if fold(r["birth_name"]) == fold(doc.birth_name)
                and fold(r["first_names"]).split()[:1] == first]
        if len(hits) == 1:
            return hits[0], "identity"
    return None, "none"


def import_message(store: Store, raw: bytes, report: FetchReport) -> str:
    """Read one message; returns what to do with it: ``seen``, ``ignore`` or ``refuse``."""
    if len(raw) > MAX_MESSAGE_BYTES:
        raise xdm.XdmRefused(f"message trop volumineux ({len(raw)} octets)")
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(msg, EmailMessage)
    message_id = str(msg.get("Message-ID") or "").strip()
    parts = _attachments(msg)
    if parts.cda is None and parts.pdf is None:
        report.ignored += 1
        return "ignore"
    if not message_id:
        raise xdm.XdmRefused("message sans Message-ID")
    doc = cda.read_cda(parts.cda) if parts.cda is not None else None
    document_id = doc.document_id if doc else None
    if external_prescriptions.known(store, message_id, document_id):
        report.duplicates += 1
        return "seen"
    ins, how = match_resident(store, doc)
    sender = parseaddr(str(msg.get("From") or ""))[1]
    lines = [external_prescriptions.ExternalLineRow(x.label, x.code, x.posology)
             for x in (doc.lines if doc else ())]
    patient = {} if doc is None else {
        "ins": doc.ins, "ins_oid": doc.ins_oid, "birth_name": doc.birth_name,
        "first_names": doc.first_names,
        "birth_date": doc.birth_date.isoformat() if doc.birth_date else None}
    with store.write() as db:
        added = external_prescriptions.add(
            db, message_id=message_id, document_id=document_id, resident_ins=ins,
            matched_by=how, sender=sender,
            author=(doc.author if doc else "") or sender, author_id=doc.author_id if doc
            else None, issued_at=doc.issued_at if doc else None, lines=lines,
            patient=patient, cda=parts.cda, pdf=parts.pdf or (doc.pdf if doc else None))
    if added is None:
        report.duplicates += 1
    else:
        report.imported += 1
        if ins is None:
            report.unmatched += 1
        else:
            report.matched += 1
    return "seen"


def fetch_inbox(store: Store, mailbox: mssante.ImapMailbox) -> FetchReport:
    """Import the unseen messages of the mailbox (see the module docstring)."""
    report = FetchReport()
    with mailbox as box:
        for fetched in list(box.unseen((IGNORED_KEYWORD, REFUSED_KEYWORD))):
            try:
                outcome = import_message(store, fetched.data, report)
            except (xdm.XdmRefused, cda.CdaRefused) as exc:
                outcome = "refuse"
                report.refused.append(str(exc))
                with store.write() as db:
                    audit.append(db, actor="mssante", action="mssante.refused",
                                 subject=fetched.uid.decode("ascii", "replace"),
                                 details={"reason": str(exc)[:200]})
                log.warning("received message refused", extra={"fields": {
                    "uid": fetched.uid.decode("ascii", "replace"), "reason": str(exc)[:200]}})
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
