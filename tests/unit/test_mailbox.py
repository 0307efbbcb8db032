"""The MSSanté use cases on an in-memory unit of work: the order's message is queued with
its signature or not at all, sent once (the same Message-ID at every attempt), retried or
quarantined; received prescriptions are matched, kept once, refused with a reason. The
same use cases run against real mail servers in ``tests/integration/test_mssante.py``."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import date, timedelta
from email.message import EmailMessage
from typing import Self

import pytest

from appliance.errors import DocumentRefused, MailRejected, MailUnavailable, StoreError
from appliance.ports.mail import (
    ExternalLine,
    Fetched,
    OrderDocuments,
    ReceivedDocument,
    ReceivedMessage,
)
from appliance.services import mailbox, prescribing
from appliance.services.mailbox import MailPolicy
from tests import factories
from tests.fakes import FakeUnitOfWork
from tests.unit.test_use_cases import NOW, CardSession, _draft, signer  # noqa: F401
from tests.unit.test_use_cases import uow as signing_uow

PHARMACY = "pharmacie@exemple.mssante.fr"
uow = signing_uow  # the fixture: a resident and a physician on record


class Mailer:
    """``OrderMailer`` without PDF nor CDA rendering."""

    def __init__(self) -> None:
        self.built = 0

    def documents(self, prescription, qr_payload: str) -> OrderDocuments:
        self.built += 1
        return OrderDocuments(prescription, b"%PDF-1.4", b"<ClinicalDocument/>")

    def message_id(self, prescription_id: str) -> str:
        return f"<{prescription_id}.ordonnance@test>"

    def compose(self, documents: OrderDocuments, recipient: str,
                message_id: str) -> EmailMessage:
        msg = EmailMessage()
        msg["To"], msg["Message-ID"] = recipient, message_id
        msg.set_content(documents.prescription.id)
        return msg


@dataclass
class Transport:
    """Each ``send`` takes the next outcome (``None``: accepted)."""

    outcomes: list[Exception | None] = field(default_factory=list)
    sent: list[EmailMessage] = field(default_factory=list)
    tried: list[str] = field(default_factory=list)
    closed: int = 0

    def send(self, message: EmailMessage) -> None:
        self.tried.append(str(message["Message-ID"]))
        outcome = self.outcomes.pop(0) if self.outcomes else None
        if outcome is not None:
            raise outcome
        self.sent.append(message)

    def close(self) -> None:
        self.closed += 1


def _signed(uow, signer, count: int, mail: MailPolicy | None) -> list[str]:  # noqa: F811
    session = CardSession(signer)
    return [prescribing.sign(uow, session, _draft(uow, session).id, now=NOW,
                             mail=mail).prescription.id for _ in range(count)]


def _sender(uow, transport: Transport, **kw) -> mailbox.MailSender:
    return mailbox.MailSender(uow, Mailer(), lambda: transport, clock=lambda: NOW,
                              backoff_base_s=1.0, **kw)


# -- queuing with the signature ------------------------------------------------------------------
def test_the_order_is_queued_in_the_signing_transaction(uow, signer):  # noqa: F811
    session = CardSession(signer)
    draft = _draft(uow, session)
    commits = uow.committed
    prescribing.sign(uow, session, draft.id, now=NOW, mail=MailPolicy(PHARMACY))
    assert uow.committed == commits + 1  # one transaction for the five records
    due = uow.mail_outbox.due(NOW, 10)
    assert [(m.prescription_id, m.recipient, m.message_id) for m in due] == [
        (draft.id, PHARMACY, None)]
    signed = uow.audit.entries()[-1]
    assert signed.action == "prescription.signed" and signed.details["mail"] == due[0].seq


def test_no_address_or_no_policy_queues_nothing(uow, signer):  # noqa: F811
    _signed(uow, signer, 1, None)
    _signed(uow, signer, 1, MailPolicy(""))
    assert uow.mail_outbox.pending_count() == 0
    assert all("mail" not in e.details for e in uow.audit.entries())


def test_a_failed_signing_write_queues_no_mail(uow, signer):  # noqa: F811
    session = CardSession(signer)
    draft = _draft(uow, session)

    def broken(*args, **kwargs):
        raise StoreError("disk full")

    uow.audit.append = broken  # the last write of the signing block fails
    with pytest.raises(StoreError, match="disk full"):
        prescribing.sign(uow, session, draft.id, now=NOW, mail=MailPolicy(PHARMACY))
    assert uow.mail_outbox.pending_count() == 0 and uow.outbox.pending_count() == 0


def test_queuing_the_same_order_twice_keeps_one_message():
    uow = FakeUnitOfWork()
    with uow:
        first = MailPolicy(PHARMACY).queue(uow, "ID1", NOW)
        again = MailPolicy(PHARMACY).queue(uow, "ID1", NOW)
        uow.commit()
    assert first == again and uow.mail_outbox.pending_count() == 1


# -- sending -------------------------------------------------------------------------------------
def test_each_message_is_sent_once_with_a_message_id_fixed_before_the_first_try(
        uow, signer):  # noqa: F811
    ids = _signed(uow, signer, 3, MailPolicy(PHARMACY))
    transport = Transport()
    report = _sender(uow, transport).drain()
    assert (report.sent, report.retried, report.remaining) == (3, 0, 0)
    assert transport.tried == [f"<{pid}.ordonnance@test>" for pid in ids]
    assert _sender(uow, transport).drain().sent == 0  # nothing twice
    sent = [e for e in uow.audit.entries() if e.action == "mssante.sent"]
    assert [(e.subject, e.details["to"]) for e in sent] == [(pid, PHARMACY) for pid in ids]
    assert uow.views.mail_status().sent == 3


def test_a_transient_failure_retries_later_with_the_same_message_id(uow, signer):  # noqa: F811
    (pid,) = _signed(uow, signer, 1, MailPolicy(PHARMACY))
    transport = Transport([MailUnavailable("connexion perdue après DATA")])
    report = _sender(uow, transport).drain()
    assert (report.sent, report.retried) == (0, 1) and transport.closed == 1
    status = uow.views.mail_status()
    assert status.pending == 1 and status.last_error == "connexion perdue après DATA"
    assert uow.mail_outbox.due(NOW, 10) == []  # waits its backoff
    later = NOW + timedelta(seconds=5)
    report = mailbox.MailSender(uow, Mailer(), lambda: transport, clock=lambda: later,
                                backoff_base_s=1.0).drain()
    assert report.sent == 1
    assert transport.tried == [f"<{pid}.ordonnance@test>"] * 2


def test_three_transient_failures_in_a_row_mean_the_server_is_unreachable(
        uow, signer):  # noqa: F811
    _signed(uow, signer, 5, MailPolicy(PHARMACY))
    transport = Transport([MailUnavailable("refusé")] * 5)
    report = _sender(uow, transport).drain()
    assert report.unreachable and report.retried == 3 and report.remaining == 5


def test_a_permanent_refusal_quarantines_with_the_reason_and_the_others_go(
        uow, signer):  # noqa: F811
    first, _ = _signed(uow, signer, 2, MailPolicy(PHARMACY))
    transport = Transport([MailRejected(550, "boîte inconnue")])
    report = _sender(uow, transport).drain()
    assert (report.quarantined, report.sent) == (1, 1)
    status = uow.views.mail_status()
    assert status.quarantined == 1
    record = status.quarantined_records[0]
    assert record["prescription_id"] == first and "550" in record["reason"]
    assert [e.action for e in uow.audit.entries() if e.actor == "mssante"] == [
        "mssante.quarantined", "mssante.sent"]
    assert mailbox.release(uow, record["seq"], actor="cli:test").prescription_id == first
    assert mailbox.release(uow, record["seq"], actor="cli:test") is None
    assert _sender(uow, Transport()).drain().sent == 1


def test_an_order_that_no_longer_loads_is_quarantined_not_retried_forever():
    uow = FakeUnitOfWork()
    with uow:
        MailPolicy(PHARMACY).queue(uow, "01KAX5JDE0000G40R40M30EH", NOW)
        uow.commit()
    report = _sender(uow, Transport()).drain()
    assert report.quarantined == 1 and "illisible" in (report.last_error or "")


# -- receiving -----------------------------------------------------------------------------------
@dataclass
class Box:
    messages: list[Fetched]
    flags: dict[bytes, tuple[str, ...]] = field(default_factory=dict)
    opened: int = 0

    def __enter__(self) -> Self:
        self.opened += 1
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def unseen(self, skip_keywords: tuple[str, ...] = ()) -> Iterator[Fetched]:
        for m in self.messages:
            flags = self.flags.get(m.uid, ())
            if "\\Seen" not in flags and not set(flags) & set(skip_keywords):
                yield m

    def flag(self, uid: bytes, *flags: str) -> None:
        self.flags[uid] = self.flags.get(uid, ()) + flags


class Reader:
    """Raw bytes name what the message carries."""

    def __init__(self, table: dict[bytes, ReceivedMessage | Exception | None]) -> None:
        self.table = table

    def read(self, raw: bytes) -> ReceivedMessage | None:
        found = self.table[raw]
        if isinstance(found, Exception):
            raise found
        return found


def _doc(document_id: str, *, ins: str | None, birth_name: str = "", first_names: str = "",
         born: date | None = None) -> ReceivedDocument:
    return ReceivedDocument(document_id, ins, "1.2.250.1.213.1.4.8", birth_name, first_names,
                            born, "Dr Jean PIOU", "810000000001", NOW - timedelta(days=1),
                            (ExternalLine("DOLIPRANE 500 mg", "3400935955838", "1 cp x 3/j"),))


def test_fetch_matches_keeps_once_ignores_and_refuses():
    uow = FakeUnitOfWork()
    by_ins = factories.resident(1)
    by_identity = factories.resident(2, birth_name="ÉTIENNE", first_names="Marcel Jean",
                                     birth_date=date(1930, 1, 2))
    with uow:
        uow.residents.upsert([by_ins, by_identity])
        uow.commit()
    table: dict[bytes, ReceivedMessage | Exception | None] = {
        b"1": ReceivedMessage("<a@gp>", "gp@x", b"<cda/>", b"%PDF",
                              _doc("D1", ins=by_ins.ins.value)),
        b"2": ReceivedMessage("<b@gp>", "gp@x", b"<cda/>", None,
                              _doc("D2", ins=None, birth_name="Etienne",
                                   first_names="MARCEL", born=date(1930, 1, 2))),
        b"3": ReceivedMessage("<c@gp>", "gp@x", None, b"%PDF scan", None),
        b"4": None,  # other mail
        b"5": ReceivedMessage("<a-again@gp>", "gp@x", b"<cda/>", None,
                              _doc("D1", ins=by_ins.ins.value)),  # same document
        b"6": DocumentRefused("ZIP refusé : chemin dangereux"),
        b"7": ValueError("a bug in a parser"),
    }
    box = Box([Fetched(str(n).encode(), str(n).encode()) for n in range(1, 8)])
    report = mailbox.fetch_inbox(uow, box, Reader(table), clock=lambda: NOW)
    assert (report.imported, report.matched, report.unmatched) == (3, 2, 1)
    assert (report.duplicates, report.ignored) == (1, 1)
    assert report.refused == ["ZIP refusé : chemin dangereux", "message illisible : ValueError"]
    assert box.flags == {b"1": ("\\Seen",), b"2": ("\\Seen",), b"3": ("\\Seen",),
                         b"4": (mailbox.IGNORED_KEYWORD,), b"5": ("\\Seen",),
                         b"6": ("\\Seen", mailbox.REFUSED_KEYWORD),
                         b"7": ("\\Seen", mailbox.REFUSED_KEYWORD)}
    mine = uow.views.external_prescriptions(by_ins.ins.value)
    assert [(x.matched_by, x.author, x.has_cda, x.has_pdf) for x in mine] == [
        ("ins", "Dr Jean PIOU", True, True)]
    assert mine[0].lines[0].label == "DOLIPRANE 500 mg"
    assert [x.matched_by for x in uow.views.external_prescriptions(by_identity.ins.value)] == [
        "identity"]
    (scan,) = uow.views.external_prescriptions(unmatched=True)
    assert scan.author == "gp@x" and uow.views.unmatched_count() == 1
    actions = [e.action for e in uow.audit.entries()]
    assert actions.count("mssante.received") == 3 and actions.count("mssante.refused") == 1
    again = mailbox.fetch_inbox(uow, box, Reader(table), clock=lambda: NOW)
    assert (again.imported, again.ignored, again.refused) == (0, 0, [])

    mailbox.attach(uow, scan.id, by_identity.ins.value, actor="cli:test")
    assert uow.views.unmatched_count() == 0
    assert {x.matched_by for x in uow.views.external_prescriptions(by_identity.ins.value)} \
        == {"identity", "hand"}
    with pytest.raises(StoreError, match="résident inconnu"):
        mailbox.attach(uow, scan.id, "299999999999999", actor="cli:test")
    with pytest.raises(StoreError, match="inconnue"):
        mailbox.attach(uow, 99, by_ins.ins.value, actor="cli:test")


def test_two_residents_with_the_same_identity_leave_it_to_a_person():
    uow = FakeUnitOfWork()
    twin = factories.resident(1, birth_name="MARTIN", first_names="Anne",
                              birth_date=date(1940, 3, 3))
    with uow:
        uow.residents.upsert([twin, replace(twin, ins=factories.resident(2).ins)])
        uow.commit()
    doc = _doc("D", ins=None, birth_name="Martin", first_names="Anne", born=date(1940, 3, 3))
    assert mailbox.match_resident(uow, doc) == (None, "none")
    assert mailbox.match_resident(uow, None) == (None, "none")
