"""The use cases on an in-memory unit of work (``tests.fakes.FakeUnitOfWork``): what each
writes, together or not at all, with a software card, a fake printer and a fake registry.
The same use cases run on the real SQLite file in the integration tests."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from appliance.domain.people import Role
from appliance.domain.prescription import State
from appliance.errors import (
    PrinterError,
    RegistryRejected,
    RegistryUnavailable,
    StateError,
    StoreError,
)
from appliance.ports.printer import PrinterState, PrinterUnavailable, PrintReceipt
from appliance.ports.registry import Dispensation, DispensationPage, RegistryReceipt
from appliance.services import prescribing, printing, residents, sync
from appliance.services.drafts import Draft
from appliance.services.prescribing import IdAllocator
from appliance.services.signature import SoftwareSigner
from tests import factories
from tests.fakes import FakeUnitOfWork

NOW = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
DOCTOR = factories.physician()


@dataclass
class Holder:
    id_nat_ps: str = DOCTOR.id_nat_ps
    family_name: str = DOCTOR.last_name
    given_name: str = DOCTOR.first_name
    profession: str = "Médecin"

    def as_practitioner(self, role, am=None, finess=None):
        return factories.physician(role=role, am=am, finess=finess)


@dataclass
class CardSession:
    """A prescriber's open session whose card is a software key."""

    signer: SoftwareSigner
    role: Role = Role.PRESCRIBER
    locked: bool = False
    practitioner: Holder = field(default_factory=Holder)
    can_sign: bool = True
    refuse: bool = False

    @property
    def certificate_der(self) -> bytes:
        return self.signer.certificate_der

    def touch(self) -> None:
        """Open."""

    def sign(self, data: bytes) -> bytes:
        if self.refuse:
            raise PrinterError("the card is not there")  # any failure before storing
        return self.signer.sign(data)


@pytest.fixture(scope="module")
def signer():
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.SERIAL_NUMBER, DOCTOR.id_nat_ps),
                      x509.NameAttribute(NameOID.COMMON_NAME, "Paul DURAND")])
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(1)
            .not_valid_before(NOW - timedelta(days=1)).not_valid_after(NOW + timedelta(days=9))
            .sign(key, hashes.SHA256()))
    return SoftwareSigner(key, cert)


@pytest.fixture
def uow():
    uow = FakeUnitOfWork()
    with uow:
        uow.residents.upsert([factories.resident()])
        uow.practitioners.upsert(DOCTOR)
        uow.commit()
    return uow


def _draft(uow, session):
    draft = prescribing.new_draft(uow, session, factories.resident().ins.value,
                                  ids=IdAllocator(), now=NOW)
    return prescribing.update_draft(uow, session, factories.prescription(
        draft.id, lines=factories.lines()[:2]), form={"line": "dol"})


def test_a_draft_is_saved_as_typed_then_signed_with_its_four_records_at_once(uow, signer):
    session = CardSession(signer)
    draft = _draft(uow, session)
    assert prescribing.drafts_of(uow, DOCTOR.id_nat_ps) == [draft]
    assert prescribing.draft_form(uow, draft.id) == {"line": "dol"}
    commits = uow.committed
    result = prescribing.sign(uow, session, draft.id, now=NOW)
    assert uow.committed == commits + 1        # one transaction
    assert uow.prescriptions.get(draft.id).state is State.SIGNED
    assert [(o.prescription_id, o.kind) for o in uow.outbox.due(NOW, 10)] == [
        (draft.id, "create")]
    assert [(j.id, j.kind) for j in uow.print_jobs.list(draft.id)] == [(result.print_job,
                                                                         "original")]
    signed = uow.audit.entries()[-1]
    assert (signed.action, signed.subject) == ("prescription.signed", draft.id)
    assert signed.details == {"lines": 2, "print_job": result.print_job}
    assert prescribing.draft_form(uow, draft.id) is None
    assert result.qr_payload.startswith("ORD2:")  # the signed payload, certificate by reference


def test_a_failed_signature_or_a_failed_write_leaves_the_draft_and_nothing_else(uow, signer):
    session = CardSession(signer)
    draft = _draft(uow, session)
    audit_before = len(uow.audit.entries())
    with pytest.raises(PrinterError):
        prescribing.sign(uow, CardSession(signer, refuse=True), draft.id, now=NOW)

    def broken(*args, **kwargs):
        raise StoreError("disk full")

    uow.print_jobs.add = broken  # the third of the four writes fails
    with pytest.raises(StoreError, match="disk full"):
        prescribing.sign(uow, session, draft.id, now=NOW)
    assert uow.prescriptions.get(draft.id).state is State.DRAFT
    assert uow.outbox.pending_count() == 0 and uow.print_jobs.list() == []
    assert [e.action for e in uow.audit.entries()[audit_before:]] == []
    assert prescribing.draft_form(uow, draft.id) == {"line": "dol"}


def _mixed_draft(uow, session):
    oxycodone = factories.secure_line()
    draft = prescribing.new_draft(uow, session, factories.resident().ins.value,
                                  ids=IdAllocator(), now=NOW)
    lines = factories.lines()[:2]
    return prescribing.update_draft(uow, session, factories.prescription(
        draft.id, lines=(lines[0], oxycodone, lines[1])), form={"line": "oxy"})


def test_a_mixed_draft_becomes_two_orders_stored_in_one_transaction(uow, signer):
    session = CardSession(signer)
    draft = _mixed_draft(uow, session)
    commits, audit_before = uow.committed, len(uow.audit.entries())
    result = prescribing.sign(uow, session, draft.id, ids=IdAllocator(), now=NOW)
    (secure,) = result.also
    # One commit reserves the second ID (the generator's floor in meta, no prescription),
    # the other stores both orders, their outbox rows, print jobs and audit entries.
    assert uow.committed == commits + 2
    assert result.prescription.id == draft.id and secure.prescription.id != draft.id
    assert not result.secure and secure.secure
    assert [line.label for line in secure.prescription.lines] == [
        "OXYCODONE SANDOZ 20 mg, gélule"]
    assert len(result.prescription.lines) == 2
    for order in result.orders:
        assert uow.prescriptions.get(order.prescription.id).state is State.SIGNED
        assert [j.id for j in uow.print_jobs.list(order.prescription.id)] == [order.print_job]
    assert sorted(o.prescription_id for o in uow.outbox.due(NOW, 10)) == sorted(
        [draft.id, secure.prescription.id])
    assert [(e.action, e.subject) for e in uow.audit.entries()[audit_before:]] == [
        ("prescription.split", draft.id), ("prescription.signed", draft.id),
        ("prescription.signed", secure.prescription.id)]
    assert prescribing.draft_form(uow, draft.id) is None


def test_a_mixed_draft_whose_second_order_cannot_be_stored_leaves_both_unsigned(uow, signer):
    session = CardSession(signer)
    draft = _mixed_draft(uow, session)
    audit_before = len(uow.audit.entries())
    add = uow.print_jobs.add
    calls = []

    def second_fails(*args, **kwargs):
        calls.append(args)
        if len(calls) == 2:
            raise StoreError("disk full")  # the secure order's print job
        return add(*args, **kwargs)

    uow.print_jobs.add = second_fails
    with pytest.raises(StoreError, match="disk full"):
        prescribing.sign(uow, session, draft.id, ids=IdAllocator(), now=NOW)
    kept = uow.prescriptions.get(draft.id)
    assert kept.state is State.DRAFT and kept.lines == draft.lines  # still the mixed draft
    assert [p.id for p in uow.prescriptions.of_resident(factories.resident().ins.value)] == [
        draft.id]
    assert uow.outbox.pending_count() == 0 and uow.print_jobs.list() == []
    assert [e.action for e in uow.audit.entries()[audit_before:]] == []
    assert prescribing.draft_form(uow, draft.id) == {"line": "oxy"}


def test_cancel_writes_state_outbox_and_drops_the_queued_print_in_one_block(uow, signer):
    session = CardSession(signer)
    pid = prescribing.sign(uow, session, _draft(uow, session).id, now=NOW).prescription.id
    cancelled = prescribing.cancel(uow, session, pid, "  erreur   de saisie ", now=NOW)
    assert cancelled.state is State.CANCELLED and cancelled.cancel_reason == "erreur de saisie"
    assert [o.kind for o in uow.outbox.due(NOW, 10)] == ["create"]  # cancel waits for it
    assert uow.outbox.pending_count() == 2
    [job] = uow.print_jobs.list(pid)
    assert (job.status, job.last_error) == ("failed", prescribing.CANCELLED_BEFORE_PRINT)
    assert [e.action for e in uow.audit.entries()[-1:]] == ["prescription.cancelled"]
    with pytest.raises(StateError):
        prescribing.cancel(uow, session, pid, "encore")
    with pytest.raises(StateError, match="annulée"):
        prescribing.reprint(uow, session, pid)


def test_a_reprint_is_queued_and_audited_for_a_nurse(uow, signer):
    session = CardSession(signer)
    pid = prescribing.sign(uow, session, _draft(uow, session).id, now=NOW).prescription.id
    nurse = CardSession(signer, role=Role.NURSE)
    job = prescribing.reprint(uow, nurse, pid, now=NOW)
    assert uow.print_jobs.get(job).kind == "duplicate"
    last = uow.audit.entries()[-1]
    assert (last.action, last.details) == ("print.reprint_requested",
                                           {"job": job, "role": "nurse"})
    with pytest.raises(StoreError, match="ordonnance inconnue"):
        prescribing.reprint(uow, nurse, "01KAX5JDE0000G40R40M30EH")


def test_the_headless_path_and_the_resident_file(uow, signer):
    session = CardSession(signer)
    resident = factories.resident()
    result = prescribing.prescribe(uow, session, Draft(resident, list(factories.lines())),
                                   ids=IdAllocator(), now=NOW)
    other = prescribing.new_draft(uow, session, resident.ins.value, ids=IdAllocator(), now=NOW)
    [mine, draft] = residents.resident_file(uow, resident.ins.value, DOCTOR.id_nat_ps)
    assert {mine.row.id, draft.row.id} == {result.prescription.id, other.id}
    signed = mine if mine.row.id == result.prescription.id else draft
    assert (signed.registry, list(signed.prints)) == ("pending", [])
    assert uow.views.trail(signed.row.id).prints == [("original", "queued", None)]
    assert [e.row.id for e in residents.resident_file(uow, resident.ins.value, "8" * 12)] == [
        result.prescription.id]                      # another physician's draft is theirs


@dataclass
class Printer:
    fail: bool = False
    printed: list = field(default_factory=list)
    qr_capacity: int = 4000
    description: str = "fake://printer"

    def status(self):
        raise AssertionError("not asked")

    def print_order(self, request):
        if self.fail:
            raise PrinterUnavailable(PrinterState.PAPER_OUT, "Plus de papier")
        self.printed.append(request.job_id)
        return PrintReceipt(bytes_sent=100, tickets=1, seconds=0.01, confirmed=True)


def test_the_print_queue_prints_keeps_on_paper_out_and_fails_what_cannot_print(uow, signer):
    session = CardSession(signer)
    job = prescribing.sign(uow, session, _draft(uow, session).id, now=NOW).print_job
    printer = Printer(fail=True)
    report = printing.PrintQueue(uow, printer, clock=lambda: NOW).run_once()
    assert (report.printed, report.retry, report.error) == ([], [job], "Plus de papier")
    assert uow.print_jobs.get(job).status == "queued"
    printer.fail = False
    later = lambda: NOW + printing.LEASE  # noqa: E731
    report = printing.PrintQueue(uow, printer, clock=later).run_once()
    assert report.printed == [job] and uow.print_jobs.get(job).status == "done"
    with uow:
        orphan = uow.print_jobs.add("01KAX5JDE0000G40R40M30EH", "duplicate", "x", NOW)
        uow.commit()
    report = printing.PrintQueue(uow, printer, clock=later).run_once()
    assert report.failed == [orphan]
    assert "ordonnance inconnue" in uow.print_jobs.get(orphan).last_error


@dataclass
class Recorder:
    """A printer that keeps what it was asked to prepare and to print."""

    prepared: list = field(default_factory=list)
    requests: list = field(default_factory=list)
    qr_capacity: int = 4000
    description: str = "fake://printer"

    def status(self):
        raise AssertionError("not asked")

    def prepare(self, request):
        self.prepared.append(request)

    def print_order(self, request):
        self.requests.append(request)
        return PrintReceipt(bytes_sent=100, tickets=1, seconds=0.01, confirmed=True)


@pytest.mark.parametrize("qr", ["epu", "signed"])
def test_an_order_signed_here_prints_as_signed_and_only_stored_ones_are_read_back(
        uow, signer, monkeypatch, qr):
    session = CardSession(signer)
    result = prescribing.sign(uow, session, _draft(uow, session).id, now=NOW)
    printer = Recorder()
    queue = printing.PrintQueue(uow, printer, clock=lambda: NOW, qr=qr)
    read_back = []
    stored = uow.prescriptions.signed_rows
    monkeypatch.setattr(uow.prescriptions, "signed_rows",
                        lambda ids: read_back.append(list(ids)) or stored(ids))
    queue.signed_here([(result.prescription, result.qr_payload)])
    assert queue.run_once().printed == [result.print_job]
    assert read_back == []                        # printed from what was signed
    (request,) = printer.requests
    assert request.prescription == result.prescription
    expected = printing.order_payload(uow, result.prescription.id, qr)[1]
    assert request.qr_payload == expected
    assert qr == "epu" or expected == result.qr_payload
    read_back.clear()
    duplicate = printing.request_reprint(uow, result.prescription.id, actor="x", role="nurse")
    assert queue.run_once().printed == [duplicate]
    assert read_back and all(ids == [result.prescription.id] for ids in read_back)


def test_a_job_whose_order_was_not_signed_here_is_read_back(uow, signer, monkeypatch):
    session = CardSession(signer)
    result = prescribing.sign(uow, session, _draft(uow, session).id, now=NOW)
    other = prescribing.sign(uow, session, _draft(uow, session).id, now=NOW)
    queue = printing.PrintQueue(uow, Recorder(), clock=lambda: NOW)
    queue.signed_here([(other.prescription, other.qr_payload)])
    read_back = []
    stored = uow.prescriptions.signed_rows
    monkeypatch.setattr(uow.prescriptions, "signed_rows",
                        lambda ids: read_back.append(list(ids)) or stored(ids))
    assert queue.run_once().printed == [result.print_job, other.print_job]
    assert read_back == [[result.prescription.id]]


def test_the_receipt_prepared_during_review_is_the_one_printed(uow, signer):
    session = CardSession(signer)
    draft = _draft(uow, session)
    printer = Recorder()
    assert printing.prepare_print(printer, draft, at=NOW)
    result = prescribing.sign(uow, session, draft.id, now=NOW)
    printing.PrintQueue(uow, printer, clock=lambda: NOW).run_once()
    (prepared,), (printed,) = printer.prepared, printer.requests
    assert prepared.qr_payload == printed.qr_payload
    assert prepared.prescription.lines == printed.prescription.lines
    assert prepared.prescription.signed_at == result.prescription.signed_at
    assert not printing.prepare_print(printer, draft, kind="signed", at=NOW)  # needs the card
    assert not printing.prepare_print(printer, factories.prescription(
        draft.id, prescriber=factories.physician(am=None)), at=NOW)       # no N° AM yet
    secure = factories.prescription(draft.id, lines=(factories.secure_line(),))
    assert not printing.prepare_print(printer, secure, at=NOW)            # a PDF
    assert len(printer.prepared) == 1


@dataclass
class Registry:
    answers: list = field(default_factory=list)  # per register call: a receipt or an error
    pages: list = field(default_factory=list)

    def register(self, prescription, proof):
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    def cancel(self, prescription_id, reason):
        return RegistryReceipt("R-cancel", NOW)

    def dispensations(self, cursor, limit):
        return self.pages.pop(0) if self.pages else DispensationPage((), cursor, False)

    def close(self) -> None:
        """Nothing to close."""


def test_the_sync_use_case_acknowledges_retries_quarantines_and_pulls(uow, signer):
    session = CardSession(signer)
    ids = [prescribing.sign(uow, session, _draft(uow, session).id, now=NOW).prescription.id
           for _ in range(3)]
    registry = Registry(answers=[RegistryReceipt("R-1", NOW),
                                 RegistryUnavailable("503", status=503),
                                 RegistryRejected(422, "INS inconnu")])
    engine = sync.SyncEngine(uow, registry, sync.EngineConfig(concurrency=1, max_wait_s=0),
                             clock=lambda: NOW)
    report = engine.push()
    assert (report.acknowledged, report.retried, report.quarantined) == (1, 1, 1)
    assert [uow.prescriptions.get(pid).state for pid in ids] == [
        State.REGISTERED, State.SIGNED, State.SIGNED]
    status = sync.status(uow, NOW)
    assert (status.acknowledged, status.queue_depth, status.quarantined) == (1, 1, 1)
    assert status.quarantined_records[0]["reason"] == "INS inconnu"
    assert status.last_error and status.last_success_at
    actions = [e.action for e in uow.audit.entries()]
    assert "registry.create.acknowledged" in actions
    assert "registry.create.quarantined" in actions

    line = Dispensation("D-1", ids[0], 1, True, NOW, "DOLIPRANE", quantity=Decimal(1))
    registry.pages = [DispensationPage((line,), "c1", False)]
    pulled = engine.pull()
    assert pulled.prescriptions == [ids[0]]
    assert uow.prescriptions.get(ids[0]).state is State.PARTIALLY_DISPENSED  # line 2 open
    assert uow.meta.get(sync.CURSOR_KEY) == "c1"
    assert sync.release(uow, status.quarantined_records[0]["seq"], actor="cli")
    assert sync.status(uow, NOW).queue_depth == 2


def test_the_sequential_engine_sends_from_the_calling_thread_and_writes_each_batch_first(
        uow, signer):
    """One request at a time: no other thread, and a batch's acknowledgements are stored
    before the next batch is sent (a crash then resends one batch at most)."""
    import threading

    session = CardSession(signer)
    for _ in range(3):
        prescribing.sign(uow, session, _draft(uow, session).id, now=NOW)
    seen: list[tuple[str, int]] = []

    class Watching(Registry):
        def register(self, prescription, proof):
            seen.append((threading.current_thread().name, sync.status(uow, NOW).acknowledged))
            return RegistryReceipt(f"R-{len(seen)}", NOW)

    engine = sync.SyncEngine(uow, Watching(), sync.EngineConfig(concurrency=1, batch_size=1,
                                                                max_wait_s=0),
                             clock=lambda: NOW)
    assert engine.push().acknowledged == 3
    main = threading.current_thread().name
    assert seen == [(main, 0), (main, 1), (main, 2)]


def test_the_composition_root_takes_fakes_for_every_adapter(tmp_path, signer):
    """Tests build the same ``App`` as the appliance, with fakes where they want them."""
    from appliance.bootstrap import CardBackend, bootstrap, card_backend
    from appliance.config import load_settings
    from appliance.errors import CardError, CardRemoved

    class EmptyReaders:
        def readers(self) -> list[str]:
            return ["Reader 0", "Reader 1"]

        def open(self, slot: int = 0):
            raise CardRemoved(f"no card in slot {slot}")

    settings = load_settings(data_dir=tmp_path, environ={})
    uow = FakeUnitOfWork()
    registry = Registry(answers=[RegistryReceipt("R-1", NOW)])
    app = bootstrap(settings, new_uow=lambda: uow, registry=registry, clock=lambda: NOW,
                    card=CardBackend(EmptyReaders(), watcher=lambda: None))
    with uow:
        uow.residents.upsert([factories.resident()])
        uow.practitioners.upsert(DOCTOR)
        uow.commit()
    session = CardSession(signer)
    prescribing.sign(app.uow, session, _draft(app.uow, session).id, now=NOW)
    assert app.sync_engine(concurrency=1).push().acknowledged == 1
    assert registry.answers == []
    with pytest.raises(CardError, match="aucune carte"):  # the login recipe, on the fake
        app.login("1234")
    assert not (tmp_path / "ordo.sqlite").exists()     # nothing real was opened
    assert type(card_backend(settings).reader).__name__ == "PcscReader"
    app.close()
