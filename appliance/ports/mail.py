"""The MSSanté port: the order's documents and its message to the partner pharmacy, the
establishment's mail servers (SMTP submission to send, IMAP to read), and what is read from
a received message.

``sync.mssante`` implements it (``OrderMailer``, ``SmtpTransport``, ``ImapMailbox``,
``MessageReader``); the use cases of ``appliance.services.mailbox`` drive it, and the
composition root (``appliance.bootstrap``) builds the adapters from ``[mssante]``.

Errors (defined in ``appliance.errors``): ``MailUnavailable`` (retry later: network, TLS,
4xx, the establishment's login refused), ``MailRejected`` (5xx: this message never goes),
``DocumentRefused`` (a received attachment that is hostile or unreadable, with the reason).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, datetime
from email.message import EmailMessage
from types import TracebackType
from typing import Protocol, Self

from appliance.domain.prescription import Prescription
from appliance.errors import DocumentRefused, MailError, MailRejected, MailUnavailable

__all__ = [
    "DocumentRefused",
    "ExternalLine",
    "Fetched",
    "MailError",
    "MailRejected",
    "MailTransport",
    "MailUnavailable",
    "Mailbox",
    "MessageReader",
    "OrderDocuments",
    "OrderMailer",
    "ReceivedDocument",
    "ReceivedMessage",
]


# -- sending ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class OrderDocuments:
    """A signed order's documents: its PDF (as printed) and its eP-MED-DM CDA (``None`` for
    an order of acts only)."""

    prescription: Prescription
    pdf: bytes = field(repr=False)
    cda: bytes | None = field(repr=False)


class OrderMailer(Protocol):
    """Makes a signed order's documents and its message to the pharmacy."""

    def documents(self, prescription: Prescription, qr_payload: str) -> OrderDocuments:
        """The PDF of the order (with its QR payload) and its CDA document."""
        ...

    def message_id(self, prescription_id: str) -> str:
        """The ``Message-ID`` of the order's message: the same at every send."""
        ...

    def compose(self, documents: OrderDocuments, recipient: str,
                message_id: str) -> EmailMessage:
        """The message, byte for byte the same for the same order and Message-ID."""
        ...


class MailTransport(Protocol):
    """One SMTP submission session of the establishment's mailbox."""

    def send(self, message: EmailMessage) -> None:
        """Returns once the server accepted the message; ``MailRejected`` (for good) or
        ``MailUnavailable`` (retry later) otherwise."""
        ...

    def close(self) -> None: ...


# -- receiving --------------------------------------------------------------------------------
@dataclass(frozen=True)
class Fetched:
    """One unseen message of the mailbox: its IMAP UID and its raw bytes."""

    uid: bytes
    data: bytes = field(repr=False)


class Mailbox(Protocol):
    """The establishment's inbox, open for a ``with`` block."""

    def __enter__(self) -> Self: ...

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None: ...

    def unseen(self, skip_keywords: tuple[str, ...] = ()) -> Iterator[Fetched]:
        """Unseen messages that carry none of ``skip_keywords``."""
        ...

    def flag(self, uid: bytes, *flags: str) -> None: ...


@dataclass(frozen=True)
class ExternalLine:
    """One line of a received prescription, as written by its author."""

    label: str
    code: str | None = None  # CIS, CIP13 or LPP as given
    posology: str = ""


@dataclass(frozen=True)
class ReceivedDocument:
    """What is read from a received eP-MED-DM (or other CI-SIS) prescription document."""

    document_id: str
    ins: str | None
    ins_oid: str | None
    birth_name: str
    first_names: str
    birth_date: date | None
    author: str
    author_id: str | None
    issued_at: datetime | None
    lines: tuple[ExternalLine, ...] = ()
    pdf: bytes | None = field(default=None, repr=False)


@dataclass(frozen=True)
class ReceivedMessage:
    """A received message that carries a prescription: its CDA and/or its PDF."""

    message_id: str
    sender: str
    cda: bytes | None = field(repr=False)
    pdf: bytes | None = field(repr=False)
    document: ReceivedDocument | None = None  # the CDA, read


class MessageReader(Protocol):
    def read(self, raw: bytes) -> ReceivedMessage | None:
        """The prescription a message carries (an IHE XDM ZIP, a CDA or a PDF); ``None``
        when it carries none (other mail); ``DocumentRefused`` with the reason for a hostile
        or unreadable attachment."""
        ...
