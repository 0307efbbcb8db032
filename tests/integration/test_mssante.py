"""MSSanté against real mail servers: aiosmtpd (SMTP submission) and Dovecot (IMAPS), both
with TLS and client-certificate authentication (SASL EXTERNAL) from the test PKI."""

from __future__ import annotations

import email
import email.policy
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import zipfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from appliance.bootstrap import bootstrap
from appliance.config import load_settings
from appliance.domain.people import Role
from appliance.domain.prescription import ActLine, Prescription
from appliance.ops import doctor
from appliance.services import mailbox, prescribing
from appliance.services.drafts import Draft
from drivers.card import pki
from sync import mssante, xdm
from sync.service import SyncService
from tests import cisis, factories, mailservers
from tests.cda_orders import doliprane, kardegic
from tests.harness.workers import physician_session

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(not mailservers.available(),
                                 reason="dovecot (Debian dovecot-imapd) and root are needed")]
ROOT = Path(__file__).resolve().parents[2]
PHARMACY = "pharmacie-ordo-test@ordo-test.mssante.invalid"
GP_FIXTURE = ROOT / "tests" / "fixtures" / "gp_ep_med_dm.xml"


@pytest.fixture(scope="module")
def mail_pki(tmp_path_factory):
    return pki.init_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def mail_root():
    root = Path(tempfile.mkdtemp(prefix="ordo-mail-"))
    os.chmod(root, 0o755)
    yield root
    shutil.rmtree(root, ignore_errors=True)


def smtp(mail_pki, root: Path, **kw) -> mailservers.SmtpSubmission:
    m = mail_pki.mssante
    return mailservers.SmtpSubmission(root, m / "server.pem", m / "server.key", m / "ca.pem",
                                      **kw).start()


@pytest.fixture
def dovecot(mail_pki, mail_root):
    m = mail_pki.mssante
    server = mailservers.Dovecot(mail_root, m / "server.pem", m / "server.key", m / "ca.pem")
    server.start()
    yield server
    server.stop()


def environ(mail_pki, *, smtp_port: int = 1, imap_port: int = 1, pharmacy: str = PHARMACY,
            tls: str = "starttls") -> dict[str, str]:
    return {**mail_pki.environment(), "ORDO_MSSANTE_SMTP_HOST": "127.0.0.1",
            "ORDO_MSSANTE_SMTP_PORT": str(smtp_port), "ORDO_MSSANTE_SMTP_TLS": tls,
            "ORDO_MSSANTE_IMAP_HOST": "127.0.0.1", "ORDO_MSSANTE_IMAP_PORT": str(imap_port),
            "ORDO_MSSANTE_TIMEOUT_S": "10", "ORDO_PHARMACY_MSSANTE": pharmacy,
            "ORDO_ESTABLISHMENT_NAME": "EHPAD Les Tilleuls",
            "ORDO_ESTABLISHMENT_FINESS": "750000001",
            "ORDO_ESTABLISHMENT_ADDRESS": "12 rue de l'Église 75011 Paris"}


def make_app(tmp_path: Path, env: dict[str, str]):
    settings = load_settings(data_dir=tmp_path / "data", environ=env)
    return bootstrap(settings)


def sign_orders(app, mail_pki, count: int, *, acts_only_last: bool = False
                ) -> list[Prescription]:
    """Sign through the signing use case, with the composition root's mail policy."""
    session = physician_session(mail_pki.directory)
    doctor_ = session.practitioner.as_practitioner(Role.PRESCRIBER, am="751234567")
    resident = factories.resident(4, birth_name="D'ARTAGNAN", first_names="Zoé Hélène")
    uow = app.uow
    with uow:
        uow.residents.upsert([resident])
        uow.practitioners.upsert(doctor_)
        uow.commit()
    ids = prescribing.IdAllocator()
    made = []
    for n in range(count):
        lines = [ActLine(text="Kinésithérapie : 10 séances")] if acts_only_last and \
            n == count - 1 else [doliprane(), kardegic(ald=True)]
        at = datetime(2026, 11, 25, 9, 0, tzinfo=UTC) + timedelta(minutes=n)
        result = prescribing.prescribe(uow, session, Draft(resident, lines), ids=ids, now=at,
                                       mail=app.mail_policy)
        made.append(result.prescription)
    return made


def parse(raw: bytes) -> email.message.EmailMessage:
    return email.message_from_bytes(raw, policy=email.policy.default)


def by_message_id(messages: list[bytes]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for raw in messages:
        mid = str(parse(raw)["Message-ID"])
        counts[mid] = counts.get(mid, 0) + 1
    return counts


# -- sending ------------------------------------------------------------------------------------
def test_each_order_is_sent_once_with_its_xdm_and_pdf(mail_pki, mail_root, tmp_path):
    server = smtp(mail_pki, mail_root)
    try:
        app = make_app(tmp_path, environ(mail_pki, smtp_port=server.port))
        orders = sign_orders(app, mail_pki, 3, acts_only_last=True)
        assert app.uow.mail_outbox.pending_count() == 3  # queued with the signature
        report = app.mail_sender().drain()
        assert (report.sent, report.retried, report.quarantined) == (3, 0, 0)
        assert app.mail_sender().drain().sent == 0
        messages = server.messages(PHARMACY)
        expected = {mssante.message_id(p.id, app.settings.mssante.mailbox): p for p in orders}
        assert by_message_id(messages) == dict.fromkeys(expected, 1)
        for raw in messages:
            msg = parse(raw)
            p = expected[str(msg["Message-ID"])]
            assert msg["From"] == pki.TEST_MAILBOX and msg["To"] == PHARMACY
            text = msg["Subject"] + msg.get_body(("plain",)).get_content()
            # no health data beyond what the pharmacist needs: no resident, no drug
            for secret in (p.resident.birth_name, p.resident.first_names, p.resident.ins.value,
                           "DOLIPRANE", "KARDEGIC", "Kinésithérapie"):
                assert secret not in text
            assert p.prescriber.last_name in text
            files = {part.get_filename(): part.get_payload(decode=True)
                     for part in msg.iter_attachments()}
            assert set(files) == {"IHE_XDM.ZIP", f"ordonnance-{p.id}.pdf"}
            names = zipfile.ZipFile(io.BytesIO(files["IHE_XDM.ZIP"])).namelist()
            assert {"INDEX.HTM", "README.TXT", "IHE_XDM/SUBSET01/METADATA.XML"} <= set(names)
            docs = {d.name: d for d in xdm.read_xdm(files["IHE_XDM.ZIP"])}
            pdf_name = next(n for n in docs if n.endswith(".PDF"))
            assert docs[pdf_name].data == files[f"ordonnance-{p.id}.pdf"]
            has_cda = any(isinstance(x, type(doliprane())) for x in p.lines)
            assert ("DOC0001.XML" in docs) is has_cda
        sent = [e for e in app.uow.audit.entries() if e.action == "mssante.sent"]
        assert sorted(e.subject for e in sent) == sorted(p.id for p in orders)
        signed = [e for e in app.uow.audit.entries() if e.action == "prescription.signed"]
        assert [e.details["mail"] for e in signed] == [1, 2, 3]
    finally:
        server.stop()


@pytest.mark.skipif(not cisis.available(), reason=cisis.SKIP_REASON)
def test_the_received_xdm_unzips_and_its_cda_validates(mail_pki, mail_root, tmp_path):
    server = smtp(mail_pki, mail_root)
    try:
        app = make_app(tmp_path, environ(mail_pki, smtp_port=server.port))
        sign_orders(app, mail_pki, 2)
        assert app.mail_sender().drain().sent == 2
        with cisis.Validator() as validator:
            for n, raw in enumerate(server.messages(PHARMACY)):
                zipped = next(part.get_payload(decode=True)
                              for part in parse(raw).iter_attachments()
                              if part.get_filename() == "IHE_XDM.ZIP")
                doc = {d.name: d for d in xdm.read_xdm(zipped)}["DOC0001.XML"]
                path = tmp_path / f"received-{n}.xml"
                path.write_bytes(doc.data)
                assert validator.errors(path) == []
    finally:
        server.stop()


def test_a_connection_dropped_after_data_resends_the_same_message(mail_pki, mail_root,
                                                                  tmp_path):
    server = smtp(mail_pki, mail_root, drop=lambda n: n == 1)  # the first message
    try:
        app = make_app(tmp_path, environ(mail_pki, smtp_port=server.port))
        orders = sign_orders(app, mail_pki, 2)
        sender = app.mail_sender(backoff_base_s=0.0)
        first = sender.drain()
        assert first.retried == 1 and first.sent == 1 and server.dropped == 1
        assert app.uow.views.mail_status().last_error
        second = sender.drain()
        assert second.sent == 1 and second.remaining == 0
        counts = by_message_id(server.messages(PHARMACY))
        mids = [mssante.message_id(p.id, pki.TEST_MAILBOX) for p in orders]
        # the dropped one arrived twice, recognisable by the same Message-ID
        assert counts == {mids[0]: 2, mids[1]: 1}
        assert sender.drain().sent == 0
    finally:
        server.stop()


def test_a_killed_sender_loses_nothing_and_resends_the_same_message(mail_pki, mail_root,
                                                                    tmp_path):
    server = smtp(mail_pki, mail_root, drop=lambda n: False)
    try:
        env = environ(mail_pki, smtp_port=server.port)
        app = make_app(tmp_path, env)
        orders = sign_orders(app, mail_pki, 4)
        # the sender is killed (SIGKILL) once the server has stored a message
        child = subprocess.Popen(
            [sys.executable, "-c", _SLOW_SENDER, str(tmp_path / "data")],
            env={**os.environ, **env}, cwd=ROOT)
        deadline = time.monotonic() + 60
        while server.accepted < 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        os.kill(child.pid, signal.SIGKILL)
        child.wait(10)
        assert server.accepted >= 1
        report = app.mail_sender().drain()
        assert report.remaining == 0
        counts = by_message_id(server.messages(PHARMACY))
        mids = {mssante.message_id(p.id, pki.TEST_MAILBOX) for p in orders}
        assert set(counts) == mids  # every order arrived, none under another Message-ID
        assert sum(counts.values()) - len(mids) <= 1  # only the one in flight, if any
        assert app.uow.views.mail_status().sent == 4
    finally:
        server.stop()


# A sender that pauses after each message handed to the server (so that the kill lands
# between the server's acceptance and the outbox's "sent").
_SLOW_SENDER = """
import sys, time
from pathlib import Path
from appliance.bootstrap import bootstrap
from appliance.config import load_settings
from sync import mssante

class Slow(mssante.SmtpTransport):
    def send(self, msg):
        super().send(msg)
        time.sleep(5)

settings = load_settings(data_dir=Path(sys.argv[1]))
app = bootstrap(settings, mail_transport=lambda: Slow(settings.mssante))
app.mail_sender().drain()
"""


def test_implicit_tls_and_a_permanent_refusal_quarantines_with_the_reason(
        mail_pki, mail_root, tmp_path):
    server = smtp(mail_pki, mail_root, implicit=True)
    server.refuse.add(PHARMACY)
    try:
        app = make_app(tmp_path, environ(mail_pki, smtp_port=server.port, tls="implicit"))
        sign_orders(app, mail_pki, 1)
        report = app.mail_sender().drain()
        assert report.quarantined == 1 and report.sent == 0
        out = subprocess.run([sys.executable, "-c", "from appliance.cli import main; main()",
                              "--data-dir", str(tmp_path / "data"), "sync", "status", "--json"],
                             capture_output=True, text=True, cwd=ROOT, check=True,
                             env={**os.environ, **environ(mail_pki, smtp_port=server.port)})
        status = json.loads(out.stdout)["mssante"]
        assert status["quarantined"] == 1
        assert "550" in status["quarantined_records"][0]["reason"]
        assert mailbox.release(app.uow, status["quarantined_records"][0]["seq"], actor="test")
        server.refuse.clear()
        assert app.mail_sender().drain().sent == 1
        actions = [e.action for e in app.uow.audit.entries() if e.actor in {"mssante", "test"}]
        assert actions == ["mssante.quarantined", "mssante.released", "mssante.sent"]
    finally:
        server.stop()


def test_no_pharmacy_address_queues_nothing(mail_pki, tmp_path):
    app = make_app(tmp_path, environ(mail_pki, pharmacy=""))
    sign_orders(app, mail_pki, 2)
    assert app.uow.mail_outbox.pending_count() == 0
    assert not [e for e in app.uow.audit.entries() if "mail" in e.details]


def test_the_server_certificate_is_always_verified(mail_pki, mail_root, tmp_path):
    server = smtp(mail_pki, mail_root)
    try:
        env = environ(mail_pki, smtp_port=server.port)
        env["ORDO_MSSANTE_CA_FILE"] = str(mail_pki.directory / "ca" / "untrusted-root.pem")
        app = make_app(tmp_path, env)
        sign_orders(app, mail_pki, 1)
        report = app.mail_sender().drain()
        assert report.sent == 0 and report.retried == 1
        assert "CERTIFICATE_VERIFY_FAILED" in (report.last_error or "")
        assert server.accepted == 0
    finally:
        server.stop()


# -- receiving ----------------------------------------------------------------------------------
def gp_message(mid: str, attachment: bytes, name: str, ctype: tuple[str, str]) -> bytes:
    msg = email.message.EmailMessage()
    msg["From"] = "dr.piou@medecin.mssante.invalid"
    msg["To"] = pki.TEST_MAILBOX
    msg["Subject"] = "Ordonnance"
    msg["Message-ID"] = mid
    msg.set_content("Ordonnance ci-jointe.")
    msg.add_attachment(attachment, maintype=ctype[0], subtype=ctype[1], filename=name)
    return bytes(msg)


def gp_xdm(cda: bytes) -> bytes:
    sub = xdm.Submission("2.25.1", "2.25.2", datetime(2026, 11, 20, tzinfo=UTC), "x^^^&1&ISO",
                         "a", "b", pki.TEST_MAILBOX, datetime(2026, 11, 20, tzinfo=UTC), "Ord")
    return xdm.build_xdm(sub, [xdm.XdmDocument("DOC0001.XML", cda, "text/xml",
                                               ("a", "b", "c"), "CDA")])


def hostile_zips() -> dict[str, bytes]:
    out = {}
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("../../etc/cron.d/evil", b"x")
    out["traversal"] = buf.getvalue()
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as z:
        z.writestr("IHE_XDM/SUBSET01/DOC0001.XML", b"\0" * (20 * 1024 * 1024))
    out["bomb"] = buf.getvalue()
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("IHE_XDM/SUBSET01/METADATA.XML",
                   b'<?xml version="1.0"?><!DOCTYPE l [<!ENTITY a "aaaa"><!ENTITY b "&a;&a;">'
                   b']><l>&b;</l>')
    out["entities"] = buf.getvalue()
    return out


def test_fetch_imports_a_gps_prescription_once_and_refuses_hostile_mail(
        mail_pki, mail_root, dovecot, tmp_path):
    app = make_app(tmp_path, environ(mail_pki, imap_port=dovecot.port))
    gp_cda = GP_FIXTURE.read_bytes()
    ins_resident = factories.resident(3, birth_name="FONTAINE", first_names="Albertine Rose",
                                      birth_date=datetime(1934, 6, 12).date())
    other = factories.resident(9, birth_name="ÉTIENNE", first_names="Marcel",
                               birth_date=datetime(1930, 1, 2).date())
    with app.uow:
        app.uow.residents.upsert([ins_resident, other])
        app.uow.commit()
    # the same kind of document without an INS, for a resident found by identity
    by_identity = gp_cda.replace(ins_resident.ins.value.encode(), b"000000000000000") \
        .replace(b"FONTAINE", "ÉTIENNE".encode()).replace(b"Albertine Rose", b"Marcel") \
        .replace(b">Albertine<", b">Marcel<").replace(b"19340612", b"19300102")
    by_identity = by_identity.replace(b'<id root="', b'<id root="1', 1)  # another document
    inbox = [
        gp_message("<gp-1@medecin>", gp_xdm(gp_cda), "IHE_XDM.ZIP", ("application", "zip")),
        gp_message("<gp-2@medecin>", by_identity, "ordonnance.xml", ("text", "xml")),
        gp_message("<gp-3@medecin>", b"%PDF-1.4 scanned order", "scan.pdf",
                   ("application", "pdf")),
        b"From: collegue@x.invalid\r\nTo: x@y\r\nSubject: Bonjour\r\nMessage-ID: <hello@x>\r\n"
        b"\r\nRien a voir.\r\n",
        # the same document again under another Message-ID: kept once (document ID)
        gp_message("<gp-1-again@medecin>", gp_xdm(gp_cda), "IHE_XDM.ZIP",
                   ("application", "zip")),
    ]
    for name, data in hostile_zips().items():
        inbox.append(gp_message(f"<{name}@attacker>", data, "IHE_XDM.ZIP",
                                ("application", "zip")))
    for raw in inbox:
        mailservers.deliver_to_maildir(mail_root, pki.TEST_MAILBOX, raw)

    report = app.mail_fetch()()
    assert (report.imported, report.matched, report.unmatched) == (3, 2, 1)
    assert report.duplicates == 1 and report.ignored == 1
    reasons = " | ".join(report.refused)
    assert len(report.refused) == 3, reasons
    assert "traversée" in reasons and "bombe" in reasons and "DTD" in reasons

    mine = app.uow.views.external_prescriptions(ins_resident.ins.value)
    assert len(mine) == 1 and mine[0].matched_by == "ins" and "PIOU" in mine[0].author
    assert [x.label for x in mine[0].lines] == ["DOLIPRANE 500 mg, comprimé",
                                                "LASILIX 40 mg, comprimé sécable"]
    assert mine[0].has_cda and mine[0].has_pdf
    theirs = app.uow.views.external_prescriptions(other.ins.value)
    assert len(theirs) == 1 and theirs[0].matched_by == "identity"
    assert app.uow.views.unmatched_count() == 1  # the scanned PDF

    again = app.mail_fetch()()
    assert (again.imported, again.duplicates, len(again.refused), again.ignored) == (0, 0, 0, 0)
    # the other mail is still unseen for the people who read this mailbox
    with mssante.ImapMailbox(app.settings.mssante) as imap:
        _, data = imap.imap.uid("SEARCH", "UNSEEN")
        assert len(data[0].split()) == 1


@pytest.mark.skipif(not cisis.available(), reason=cisis.SKIP_REASON)
def test_fetch_imports_the_ans_example(mail_pki, mail_root, dovecot, tmp_path):
    app = make_app(tmp_path, environ(mail_pki, imap_port=dovecot.port))
    example = (cisis.CISIS / "ExemplesCDA" / "eP-MED-DM_2024.01_PosoStruct.xml").read_bytes()
    mailservers.deliver_to_maildir(mail_root, pki.TEST_MAILBOX, gp_message(
        "<ans@example>", gp_xdm(example), "IHE_XDM.ZIP", ("application", "zip")))
    report = app.mail_fetch()()
    assert report.imported == 1 and report.unmatched == 1  # no such resident here
    got = app.uow.views.external_prescriptions(unmatched=True)[0]
    assert got.patient["ins"] == "279035121518989" and got.has_pdf
    assert got.lines[0].label == "PARACETAMOL MYLAN 500 mg, comprimé"


def test_doctor_checks_tls_certificate_and_login(mail_pki, mail_root, dovecot, tmp_path):
    server = smtp(mail_pki, mail_root)
    try:
        env = environ(mail_pki, smtp_port=server.port, imap_port=dovecot.port)
        settings = load_settings(data_dir=tmp_path / "data", environ=env)
        ok = doctor._mssante(doctor._Context(settings, datetime.now(UTC)))
        assert ok[0].status == doctor.OK and "IMAP" in ok[0].detail and "SMTP" in ok[0].detail
        env["ORDO_MSSANTE_CLIENT_CERT"] = str(mail_pki.establishment / "client.pem")
        env["ORDO_MSSANTE_CLIENT_KEY"] = str(mail_pki.establishment / "client.key")
        wrong = load_settings(data_dir=tmp_path / "data", environ=env)
        bad = doctor._mssante(doctor._Context(wrong, datetime.now(UTC)))
        assert bad[0].status == doctor.FAIL
    finally:
        server.stop()


def test_the_sync_service_sends_and_reads_the_mailbox(mail_pki, mail_root, dovecot, tmp_path):
    server = smtp(mail_pki, mail_root)
    try:
        app = make_app(tmp_path, environ(mail_pki, smtp_port=server.port,
                                         imap_port=dovecot.port))
        sign_orders(app, mail_pki, 2)
        mailservers.deliver_to_maildir(mail_root, pki.TEST_MAILBOX, gp_message(
            "<gp@medecin>", GP_FIXTURE.read_bytes(), "o.xml", ("text", "xml")))
        assert app.sends_mail and app.reads_mail
        service = SyncService(app.sync_engine(), app.uow, mail_sender=app.mail_sender(),
                              mail_fetch=app.mail_fetch())
        service.mail_cycle(time.monotonic())
        assert app.uow.views.mail_status().sent == 2
        assert len(server.messages(PHARMACY)) == 2
        assert app.uow.views.unmatched_count() == 1
    finally:
        server.stop()
