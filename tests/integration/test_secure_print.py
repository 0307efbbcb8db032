"""Secure prescriptions end to end: a draft mixing a narcotic with other lines is signed as
two orders with their own IDs; the secure one goes to a PDF/A for the secure-paper printer
(written to its directory and sent over real TCP to a capturing printer), never to the
thermal receipt; the other prints on the receipt emulator as usual."""

import socket
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal

import pytest
import zxingcpp

from appliance.domain.people import Practitioner, Role
from appliance.domain.posology import Duration, Posology
from appliance.domain.prescription import ActLine, MedicationLine, Prescription
from appliance.domain.qr import EpuPayload
from appliance.services import prescribing, printing
from drivers.printer.escpos import EscPosOrderPrinter
from drivers.printer.layout import Letterhead
from drivers.printer.secure import SecurePdfPrinter
from tests.factories import resident
from tests.integration.test_print_pdf import _images, check_pdfa, pdf_text

pytestmark = pytest.mark.integration

HOME = Letterhead("EHPAD Les Tilleuls", "750000001", "12 rue des Lilas\n75012 Paris",
                  "+33 1 43 00 00 00", "accueil@tilleuls.fr")
# CIS_CPD_bdpm.txt rows of OXYCODONE SANDOZ 20 mg, gélule (CIS 60108518), as written there.
OXYCODONE_CONDITIONS = ("prescription limitée à 4 semaines",
                        "prescription en toutes lettres sur ordonnance sécurisée",
                        "stupéfiants")


@dataclass
class Holder:
    id_nat_ps: str
    family_name: str = "DUVAL"
    given_name: str = "Claire"
    profession: str = "Médecin"

    def as_practitioner(self, role, am=None, finess=None):
        return Practitioner(self.id_nat_ps, self.family_name, self.given_name, self.profession,
                            role, am=am, finess=finess)


@dataclass
class SoftwareSession:
    """A physician's session over a software key of the test PKI (the card's role)."""

    signer: object
    practitioner: Holder
    role: Role = Role.PRESCRIBER
    locked: bool = False
    can_sign: bool = True
    touched: list = field(default_factory=list)

    @property
    def certificate_der(self) -> bytes:
        return self.signer.certificate_der

    def touch(self) -> None:
        self.touched.append(1)

    def sign(self, data: bytes) -> bytes:
        return self.signer.sign(data)


class CapturePrinter:
    """A raw TCP printer that keeps what it is sent (a PDF-capable printer on port 9100)."""

    def __init__(self) -> None:
        self.server = socket.create_server(("127.0.0.1", 0))
        self.received: list[bytes] = []
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    @property
    def uri(self) -> str:
        return f"tcp://127.0.0.1:{self.server.getsockname()[1]}"

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            with conn:
                data = bytearray()
                while chunk := conn.recv(65536):
                    data += chunk
                if data:
                    self.received.append(bytes(data))

    def close(self) -> None:
        self.server.close()


def _lines():
    doliprane = MedicationLine(label="DOLIPRANE 1000 mg, comprimé", cis="60234100",
                               common_name="paracétamol 1000 mg",
                               posology=Posology(dose=Decimal(1), unit="comprimé",
                                                 moments=("matin", "soir"),
                                                 duration=Duration(5, "jour")))
    oxycodone = MedicationLine(label="OXYCODONE SANDOZ 20 mg, gélule", cis="60108518",
                               common_name="oxycodone 17,93 mg", quantity=Decimal(2),
                               conditions=OXYCODONE_CONDITIONS,
                               posology=Posology(dose=Decimal(2), unit="gélule",
                                                 moments=("matin", "soir"),
                                                 duration=Duration(14, "jour")))
    return doliprane, oxycodone, ActLine("NFS, CRP")


@pytest.fixture
def mixed(uow, signers, orders):
    doctor = orders.practitioner("physician")
    who = resident()
    with uow:
        uow.residents.upsert([who])
        uow.practitioners.upsert(doctor)
        draft = Prescription(id=prescribing.IdAllocator().new(uow), prescriber=doctor,
                             resident=who, created_at=datetime.now(UTC), lines=_lines())
        uow.prescriptions.save_draft(draft)
        uow.commit()
    session = SoftwareSession(signers["physician"], Holder(doctor.id_nat_ps))
    return draft, session


def test_a_mixed_prescription_becomes_two_signed_orders(mixed, uow):
    draft, session = mixed
    result = prescribing.sign(uow, session, draft.id)
    (secure,) = result.also
    assert result.prescription.id == draft.id and secure.prescription.id != draft.id
    assert [getattr(line, "label", None) or line.text for line in result.prescription.lines
            ] == ["DOLIPRANE 1000 mg, comprimé", "NFS, CRP"]
    assert [line.label for line in secure.prescription.lines] == [
        "OXYCODONE SANDOZ 20 mg, gélule"]
    assert not result.secure and secure.secure
    assert secure.prescription.signed_at and secure.print_job != result.print_job
    split = [e for e in uow.audit.entries() if e.action == "prescription.split"]
    assert [(e.subject, e.details["secure"]) for e in split] == [
        (draft.id, secure.prescription.id)]
    states = {row["id"]: row["state"] for row in uow.store.query(
        "SELECT id, state FROM prescriptions")}
    assert states == {draft.id: "signed", secure.prescription.id: "signed"}


def test_the_secure_order_goes_to_secure_paper_and_never_to_the_receipt(
        mixed, uow, emulators, tmp_path):
    draft, session = mixed
    result = prescribing.sign(uow, session, draft.id)
    secure_id = result.also[0].prescription.id
    emulator = emulators("58mm")
    capture = CapturePrinter()
    try:
        secure_printer = SecurePdfPrinter(tmp_path / "secure", establishment=HOME,
                                          uri=capture.uri)
        queue = printing.PrintQueue(
            uow, EscPosOrderPrinter(emulator.uri, establishment=HOME, media="58mm",
                                            timeout=3.0, status_timeout=1.0),
            secure_printer=secure_printer)
        report = queue.run_once()
        assert report.printed == [result.print_job, result.also[0].print_job]
        (job,) = emulator.wait_for_jobs(1)  # one receipt only: the regular order
        assert [EpuPayload.decode(t).prescription_id for t in job.qr_texts] == [draft.id]
        assert not any("oxycodone" in line.casefold() for line in job.text)
        for _ in range(100):
            if capture.received:
                break
            threading.Event().wait(0.05)
    finally:
        capture.close()
    path = tmp_path / "secure" / f"{secure_id}.pdf"
    assert (path.stat().st_mode & 0o777, path.parent.stat().st_mode & 0o777) == (0o600, 0o700)
    assert capture.received == [path.read_bytes()]  # the same PDF, sent whole
    data = path.read_bytes()
    check_pdfa(data)
    qr = [r.text for image in _images(data) for r in zxingcpp.read_barcodes(
        image, formats=zxingcpp.BarcodeFormat.QRCode)]
    assert [EpuPayload.decode(t).prescription_id for t in qr] == [secure_id]
    text = pdf_text(path)
    for mention in ("ORDONNANCE SÉCURISÉE", "oxycodone 17,93 mg",
                    "OXYCODONE SANDOZ 20 mg, gélule",
                    "deux gélules matin et soir pendant quatorze jours",
                    "Quantité : deux boîtes", "prescription limitée à 28 jours",
                    "Nombre de médicaments prescrits : un (1)"):
        assert mention in text, mention
    printed = [e for e in uow.audit.entries() if e.action == "print.printed"]
    assert [e.details["printer"].startswith("pdf:") for e in printed] == [False, True]


def test_without_a_secure_printer_the_secure_job_fails_and_the_others_print(
        mixed, uow, emulators):
    draft, session = mixed
    result = prescribing.sign(uow, session, draft.id)
    emulator = emulators("80mm")
    queue = printing.PrintQueue(uow, EscPosOrderPrinter(
        emulator.uri, establishment=HOME, media="80mm", timeout=3.0, status_timeout=1.0))
    report = queue.run_once()
    assert report.printed == [result.print_job]
    assert report.failed == [result.also[0].print_job]
    failed = uow.print_jobs.get(result.also[0].print_job)
    assert failed.status == "failed" and "jamais imprimée sur ticket" in failed.last_error
