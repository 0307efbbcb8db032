"""MSSanté adapters (``appliance.ports.mail``): the order's documents and its message to the
pharmacy, SMTP and IMAP over TLS, and what a received message carries.

The establishment's mailbox authenticates with its organisation certificate: TLS client
authentication to the operator's SMTP submission and IMAP servers, then SASL ``EXTERNAL``
(the identity is the certificate's). The servers' certificates are always verified against
``[mssante] ca_file`` (or the system's CAs) with their host name.

- ``OrderMailer``: the order's PDF (as printed) and its eP-MED-DM CDA (``documents``); one
  message per order (``compose``): the IHE XDM ZIP and the PDF attached, a subject and a
  body that name the order and its prescriber but neither the resident nor the drugs (they
  are in the documents), a ``Message-ID`` derived from the order ID (``message_id``) and a
  ``Date`` from its signature, so that a resend is the same message;
- ``SmtpTransport.send()``: ``MailRejected`` for a permanent refusal (5xx), ``MailUnavailable``
  for anything worth retrying (4xx, network, TLS, the login refused);
- ``ImapMailbox``: unseen messages, flags;
- ``MessageReader.read()``: the CDA and the PDF a received message carries (in an IHE XDM
  ZIP or attached as such), the CDA read; hostile attachments are ``DocumentRefused``;
- ``probe()``: ``ordo doctor``'s check (TLS, certificate, login on both servers).
"""

from __future__ import annotations

import contextlib
import email
import email.policy
import imaplib
import smtplib
import ssl
import uuid
from collections.abc import Callable, Iterator
from email.message import EmailMessage
from email.utils import format_datetime, parseaddr
from typing import Self

from appliance.config import Establishment
from appliance.config import Mssante as MssanteSettings
from appliance.domain.prescription import Prescription, format_local
from appliance.domain.prescription_id import format_id
from appliance.errors import (
    CdaNotApplicable,
    ConfigError,
    DocumentRefused,
    MailRejected,
    MailUnavailable,
)
from appliance.ports.mail import Fetched, OrderDocuments, ReceivedMessage
from sync import cda, codes, xdm

XDM_ATTACHMENT = "IHE_XDM.ZIP"
AUTH_CODES = frozenset({530, 534, 535, 538})  # RFC 4954 §6: authentication required/failed
MAX_MESSAGE_BYTES = 40 * 1024 * 1024

RenderPdf = Callable[[Prescription, str], bytes]


# -- what is sent ------------------------------------------------------------------------------
def message_id(prescription_id: str, mailbox: str) -> str:
    """``<ID.ordonnance@domain>``: the same for every send of the same order."""
    domain = mailbox.rpartition("@")[2] or "ordo.invalid"
    return f"<{prescription_id}.ordonnance@{domain}>"


def _uuid_oid(name: str) -> str:
    """A stable OID under ``2.25`` (ITU-T X.667: an OID from a UUID)."""
    return "2.25." + str(uuid.uuid5(uuid.NAMESPACE_URL, codes.PRESCRIPTION_ID_SYSTEM + "/" + name
                                    ).int)


class OrderMailer:
    """``OrderMailer`` of ``appliance.ports.mail`` for the establishment's mailbox.

    ``render_pdf(prescription, qr_payload)`` is the order's PDF as ``ordo print pdf`` makes
    it; ``lookup`` gives the referential's facts of a medication line (``cda.DrugLookup``)."""

    def __init__(self, establishment: Establishment, mailbox: str, render_pdf: RenderPdf,
                 lookup: cda.DrugLookup = cda.no_referential) -> None:
        self.organisation = cda.Organisation(establishment.name, establishment.finess,
                                             establishment.address)
        self.mailbox = mailbox
        self.render_pdf = render_pdf
        self.lookup = lookup

    def documents(self, prescription: Prescription, qr_payload: str) -> OrderDocuments:
        pdf = self.render_pdf(prescription, qr_payload)
        try:
            document: bytes | None = cda.build_cda(prescription, establishment=self.organisation,
                                                   pdf=pdf, lookup=self.lookup)
        except CdaNotApplicable:
            document = None
        return OrderDocuments(prescription, pdf, document)

    def message_id(self, prescription_id: str) -> str:
        return message_id(prescription_id, self.mailbox)

    def _submission(self, docs: OrderDocuments, recipient: str) -> xdm.Submission:
        p = docs.prescription
        r, d = p.resident, p.prescriber
        org = self.organisation
        signed = p.signed_at or p.created_at
        institution = f"{org.name}^^^^^&{codes.FINESS_OID}&ISO^IDNST^^^" \
            f"{codes.ID_NAT_STRUCT_FINESS_PREFIX}{org.finess}" if org.finess else org.name
        return xdm.Submission(
            unique_id=_uuid_oid(f"{p.id}|xdm"),
            source_id=_uuid_oid(f"source|{org.finess or org.name}"),
            submitted_at=signed, patient_id=f"{r.ins.value}^^^&{r.ins.oid}&ISO",
            author_person=f"{d.id_nat_ps}^{d.last_name}^{d.first_name}^^^^^^&"
                          f"{codes.ID_NAT_PS_OID}&ISO",
            author_institution=institution, intended_recipient=recipient, created_at=signed,
            title=f"Ordonnance {format_id(p.id)}")

    def xdm_zip(self, docs: OrderDocuments, recipient: str) -> bytes:
        files = []
        if docs.cda is not None:
            files.append(xdm.XdmDocument("DOC0001.XML", docs.cda, cda.MEDIA_TYPE,
                                         codes.XDS_FORMAT_PRE, codes.CDA_TITLE))
        files.append(xdm.XdmDocument(f"DOC{len(files) + 1:04d}.PDF", docs.pdf,
                                     "application/pdf", codes.XDS_FORMAT_PDF,
                                     "Ordonnance imprimée (PDF)"))
        return xdm.build_xdm(self._submission(docs, recipient), files)

    def compose(self, documents: OrderDocuments, recipient: str, message_id: str
                ) -> EmailMessage:
        """The message to the pharmacy (see the module docstring)."""
        p = documents.prescription
        signed = p.signed_at or p.created_at
        name = self.organisation.name
        pid = format_id(p.id)
        msg = EmailMessage()
        msg["From"] = self.mailbox
        msg["To"] = recipient
        msg["Subject"] = f"Ordonnance {pid} - {name}"
        msg["Message-ID"] = message_id
        msg["Date"] = format_datetime(signed)
        title = "Dr " if p.prescriber.profession.casefold().startswith("médecin") else ""
        msg.set_content(
            "Bonjour,\n\n"
            f"Veuillez trouver ci-joint l'ordonnance n° {pid} signée le {format_local(signed)} "
            f"par {title}{p.prescriber.first_name} {p.prescriber.last_name} "
            f"(RPPS {p.prescriber.rpps or p.prescriber.id_nat_ps}) pour un résident de "
            f"{name}.\n\n"
            f"- {XDM_ATTACHMENT} : support IHE XDM (document CDA eP-MED-DM et copie PDF)\n"
            f"- ordonnance-{p.id}.pdf : l'ordonnance telle qu'imprimée\n\n"
            "Le QR code de l'ordonnance et son identifiant permettent de la retrouver dans le "
            "registre des ordonnances numériques.\n\n"
            f"Message envoyé automatiquement par {name}.\n")
        msg.add_attachment(self.xdm_zip(documents, recipient), maintype="application",
                           subtype="zip", filename=XDM_ATTACHMENT)
        msg.add_attachment(documents.pdf, maintype="application", subtype="pdf",
                           filename=f"ordonnance-{p.id}.pdf")
        return msg


# -- TLS and the two protocols -------------------------------------------------------------------
def tls_context(settings: MssanteSettings) -> ssl.SSLContext:
    """Verified TLS (1.2 or later) with the establishment's certificate as client."""
    try:
        context = ssl.create_default_context(cafile=settings.ca_file or None)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        if settings.client_cert:
            context.load_cert_chain(settings.client_cert, settings.client_key or None)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError("mssante.client_cert", settings.client_cert,
                          f"un certificat et sa clé PEM lisibles, et mssante.ca_file lisible "
                          f"({exc})") from exc
    return context


def _configured(settings: MssanteSettings, what: str) -> None:
    host = settings.smtp_host if what == "smtp" else settings.imap_host
    for key, value in (("mssante.mailbox", settings.mailbox), (f"mssante.{what}_host", host),
                       ("mssante.client_cert", settings.client_cert)):
        if not value:
            raise ConfigError(key, value, "une valeur : la boîte MSSanté de l'établissement, "
                                          "ses serveurs et son certificat")


class SmtpTransport:
    """One SMTP submission session, opened on first use and again after a failure."""

    def __init__(self, settings: MssanteSettings) -> None:
        _configured(settings, "smtp")
        self.settings = settings
        self.context = tls_context(settings)
        self._smtp: smtplib.SMTP | None = None

    def _connect(self) -> smtplib.SMTP:
        s = self.settings
        try:
            if s.smtp_tls == "implicit":
                smtp: smtplib.SMTP = smtplib.SMTP_SSL(s.smtp_host, s.smtp_port,
                                                      timeout=s.timeout_s, context=self.context)
            else:
                smtp = smtplib.SMTP(s.smtp_host, s.smtp_port, timeout=s.timeout_s)
                smtp.ehlo()
                if not smtp.has_extn("starttls"):
                    smtp.close()
                    raise MailUnavailable("le serveur SMTP ne propose pas STARTTLS")
                smtp.starttls(context=self.context)
            smtp.ehlo()
            if smtp.has_extn("auth") and "EXTERNAL" in smtp.esmtp_features["auth"].upper():
                smtp.auth("EXTERNAL", lambda challenge=None: "", initial_response_ok=False)
        except (OSError, smtplib.SMTPException) as exc:  # ssl.SSLError is an OSError
            # a refusal of the session (EHLO, TLS, login) is the mailbox's, not the order's:
            # every order waits, none is quarantined
            raise MailUnavailable(f"connexion SMTP impossible : {exc}") from None
        return smtp

    def connect(self) -> None:
        """Open the session now (TLS, certificate, login) unless it is open."""
        if self._smtp is None:
            self._smtp = self._connect()

    def send(self, msg: EmailMessage) -> None:
        self.connect()
        assert self._smtp is not None
        try:
            refused = self._smtp.send_message(msg)
        except smtplib.SMTPRecipientsRefused as exc:
            self._drop()
            code, text = next(iter(exc.recipients.values()))
            raise _classify(smtplib.SMTPResponseException(code, text)) from None
        except smtplib.SMTPResponseException as exc:
            self._drop()
            raise _classify(exc) from None
        except (OSError, smtplib.SMTPException) as exc:
            self._drop()
            raise MailUnavailable(f"envoi SMTP interrompu : {exc}") from None
        if refused:
            code, text = next(iter(refused.values()))
            raise _classify(smtplib.SMTPResponseException(code, text))

    def _drop(self) -> None:
        smtp, self._smtp = self._smtp, None
        if smtp is not None:
            with contextlib.suppress(OSError):
                smtp.close()

    def close(self) -> None:
        smtp, self._smtp = self._smtp, None
        if smtp is not None:
            try:
                smtp.quit()
            except (OSError, smtplib.SMTPException):
                smtp.close()


def _classify(exc: smtplib.SMTPResponseException) -> MailRejected | MailUnavailable:
    text = exc.smtp_error.decode("utf-8", "replace") if isinstance(exc.smtp_error, bytes) \
        else str(exc.smtp_error)
    if exc.smtp_code in AUTH_CODES:  # the establishment's login, not this message
        return MailUnavailable(f"authentification refusée ({exc.smtp_code}) : {text}")
    if 500 <= exc.smtp_code < 600:
        return MailRejected(exc.smtp_code, text)
    return MailUnavailable(f"le serveur SMTP répond {exc.smtp_code} : {text}")


class ImapMailbox:
    """The establishment's inbox over IMAPS (TLS client certificate, SASL EXTERNAL)."""

    def __init__(self, settings: MssanteSettings) -> None:
        _configured(settings, "imap")
        self.settings = settings
        self.context = tls_context(settings)
        self._imap: imaplib.IMAP4_SSL | None = None

    def __enter__(self) -> Self:
        s = self.settings
        try:
            imap = imaplib.IMAP4_SSL(s.imap_host, s.imap_port, ssl_context=self.context,
                                     timeout=s.timeout_s)
            if "AUTH=EXTERNAL" in imap.capabilities:
                imap.authenticate("EXTERNAL", lambda _: b"")
            else:
                imap.logout()
                raise MailUnavailable("le serveur IMAP ne propose pas l'authentification "
                                      "par certificat (AUTH=EXTERNAL)")
            typ, _ = imap.select("INBOX")
            if typ != "OK":
                raise MailUnavailable("boîte INBOX inaccessible")
        except imaplib.IMAP4.error as exc:
            raise MailUnavailable(f"IMAP : {exc}") from None
        except OSError as exc:
            raise MailUnavailable(f"connexion IMAP impossible : {exc}") from None
        self._imap = imap
        return self

    def __exit__(self, *exc: object) -> None:
        imap, self._imap = self._imap, None
        if imap is not None:
            with contextlib.suppress(OSError, imaplib.IMAP4.error):
                imap.close()
                imap.logout()

    @property
    def imap(self) -> imaplib.IMAP4_SSL:
        assert self._imap is not None, "use ImapMailbox as a context manager"
        return self._imap

    def unseen(self, skip_keywords: tuple[str, ...] = ()) -> Iterator[Fetched]:
        criteria = ["UNSEEN", *(f"UNKEYWORD {k}" for k in skip_keywords)]
        typ, data = self.imap.uid("SEARCH", *criteria)
        if typ != "OK":
            raise MailUnavailable(f"recherche IMAP refusée : {data}")
        for uid in (data[0] or b"").split():
            typ, parts = self.imap.uid("FETCH", uid, "(BODY.PEEK[])")
            if typ != "OK":
                continue
            for part in parts:
                if isinstance(part, tuple):
                    yield Fetched(uid, part[1])

    def flag(self, uid: bytes, *flags: str) -> None:
        self.imap.uid("STORE", uid, "+FLAGS", f"({' '.join(flags)})")



# -- what a received message carries -------------------------------------------------------------
class MessageReader:
    """``MessageReader`` of ``appliance.ports.mail``: the prescription a message carries."""

    def read(self, raw: bytes) -> ReceivedMessage | None:
        if len(raw) > MAX_MESSAGE_BYTES:
            raise DocumentRefused(f"message trop volumineux ({len(raw)} octets)")
        msg = email.message_from_bytes(raw, policy=email.policy.default)
        found_cda, found_pdf = _attachments(msg)
        if found_cda is None and found_pdf is None:
            return None
        mid = str(msg.get("Message-ID") or "").strip()
        if not mid:
            raise DocumentRefused("message sans Message-ID")
        document = cda.read_cda(found_cda) if found_cda is not None else None
        return ReceivedMessage(mid, parseaddr(str(msg.get("From") or ""))[1], found_cda,
                               found_pdf or (document.pdf if document else None), document)


def _attachments(msg: email.message.Message) -> tuple[bytes | None, bytes | None]:
    """The CDA and the PDF the message carries (inside an XDM ZIP or attached as such)."""
    found_cda: bytes | None = None
    found_pdf: bytes | None = None
    for part in msg.walk():
        if part.is_multipart():
            continue
        ctype = part.get_content_type()
        name = (part.get_filename() or "").upper()
        data = part.get_payload(decode=True)
        payload = data if isinstance(data, bytes) else b""
        if ctype in ("application/zip", "application/x-zip-compressed") or name.endswith(".ZIP"):
            for doc in xdm.read_xdm(payload):
                if doc.name.endswith(".XML") and found_cda is None:
                    found_cda = doc.data
                elif doc.name.endswith(".PDF") and found_pdf is None:
                    found_pdf = doc.data
        elif ctype in ("text/xml", "application/xml", "application/hl7-v3+xml") or \
                name.endswith(".XML"):
            found_cda = found_cda or payload
        elif ctype == "application/pdf" or name.endswith(".PDF"):
            found_pdf = found_pdf or payload
    if found_pdf is not None and not found_pdf.startswith(b"%PDF"):
        raise DocumentRefused("pièce jointe PDF illisible (en-tête %PDF absent)")
    return found_cda, found_pdf


# -- ordo doctor ----------------------------------------------------------------------------------
def probe(settings: MssanteSettings) -> list[str]:
    """Open the SMTP submission and IMAP sessions of ``[mssante]`` (those configured) with
    the establishment's certificate and log in; returns what was checked. Raises
    ``MailUnavailable`` (or ``ConfigError``) with the reason."""
    done = []
    if settings.smtp_host:
        transport = SmtpTransport(settings)
        try:
            transport.connect()
        finally:
            transport.close()
        done.append(f"SMTP {settings.smtp_host}:{settings.smtp_port}")
    if settings.imap_host:
        with ImapMailbox(settings):
            pass
        done.append(f"IMAP {settings.imap_host}:{settings.imap_port}")
    return done
