"""Printing over real TCP into the printer emulator: the QR is decoded from the raster rebuilt
from the captured bytes, then verified; paper out, stalls, resets and power cuts leave the
job queued until one good copy is out; reprints say DUPLICATA and are audited."""

import json
import math
from datetime import UTC, datetime

import pytest
import zxingcpp

from appliance.domain.prescription import State
from appliance.domain.prescription_id import format_id
from appliance.domain.qr import content_hash
from appliance.ports.printer import PrinterState
from appliance.services import printing
from appliance.services.prescribing import record_transition
from appliance.services.signature import verify_payload
from appliance.store import audit
from drivers.printer.emulator import render_bytes
from drivers.printer.escpos import EscPosOrderPrinter
from drivers.printer.layout import Letterhead, media_for, qr_spec

pytestmark = pytest.mark.integration

HOME = Letterhead("EHPAD Les Tilleuls", "750000001", "12 rue des Lilas, 75012 Paris")


def _printer(emulator, media="80mm", **kw):
    kw.setdefault("timeout", 3.0)
    kw.setdefault("status_timeout", 1.0)
    return EscPosOrderPrinter(emulator.uri, establishment=HOME, media=media, **kw)


def _qr_from_raster(job, media):
    """Rebuild the tickets from the captured bytes and decode them (not the emulator's own
    decoding: the bytes are the evidence)."""
    tickets = render_bytes(bytes(job.raw), media_for(media).width_dots)
    return [(ticket, result) for ticket in tickets
            for result in zxingcpp.read_barcodes(ticket.image)]


def _module_dots(result, version):
    pos = result.position
    width = math.dist((pos.top_left.x, pos.top_left.y), (pos.top_right.x, pos.top_right.y))
    return width / (17 + 4 * version - 1)  # corners are module centres


@pytest.mark.parametrize("media", ["58mm", "80mm", "label62"])
def test_print_decode_from_the_raster_and_verify(media, emulators, orders, store,
                                                  print_trust, uow):
    emulator = emulators(media)
    signed = orders.sign(renewals=2)
    p = signed.prescription
    statuses = []
    queue = printing.PrintQueue(uow, _printer(emulator, media), on_status=statuses.append)
    report = queue.run_once()
    assert report.printed == [1] and report.error is None
    (job,) = emulator.wait_for_jobs(1)
    assert job.complete and job.end == "closed"

    found = _qr_from_raster(job, media)
    assert len(found) == 1
    ticket, result = found[0]
    payload = result.text
    assert payload == signed.payload.encode()
    roots, crls = print_trust
    fields = verify_payload(payload, roots, crls).fields
    assert (fields.prescription_id, fields.rpps, fields.am) == (
        p.id, p.prescriber.rpps, p.prescriber.am)
    assert (fields.last_name, fields.first_names, fields.birth_date) == (
        p.resident.birth_name, p.resident.first_names, p.resident.birth_date)
    assert fields.issued_at == p.signed_at and fields.content_hash == content_hash(p)

    spec = qr_spec(payload, media_for(media).width_dots)
    assert spec.module >= 3
    assert _module_dots(result, spec.version) == pytest.approx(spec.module, abs=0.3)
    assert format_id(p.id) in ticket.text  # the ID in clear, under the QR
    if media != "label62":
        assert "N°\u00a0AM\u00a0751234567" in ticket.text and "À renouveler 2 fois" in ticket.text
    assert job.qr_texts == [payload]  # the emulator's own decoding agrees

    row = store.query("SELECT status, attempts, done_at FROM print_jobs")[0]
    assert (row["status"], row["attempts"]) == ("done", 1) and row["done_at"]
    printed = [e for e in audit.entries(store) if e.action == "print.printed"]
    assert [(e.actor, e.subject, e.details["kind"]) for e in printed] == [
        (p.prescriber.id_nat_ps, p.id, "original")]
    assert statuses[-1].pending == 0 and statuses[-1].last_printed == 1


@pytest.mark.parametrize("mode", ["drop", "stall"])
def test_paper_out_mid_job_then_recovery_gives_exactly_one_good_copy(mode, emulators, orders,
                                                                      store, print_trust, uow):
    emulator = emulators("58mm")
    first, second = orders.sign(), orders.sign()
    statuses = []
    queue = printing.PrintQueue(uow, _printer(emulator, "58mm", timeout=1.0),
                                on_status=statuses.append)
    emulator.paper_after(600, mode)  # the roll ends a few lines into the first ticket

    report = queue.run_once()
    assert report.printed == [] and report.retry == [1]
    assert "papier" in report.error or "confirmé" in report.error
    if mode == "drop":
        assert statuses[-1].printer is PrinterState.PAPER_OUT
    jobs = uow.print_jobs.list()
    assert [(j.status, j.attempts) for j in jobs] == [("queued", 1), ("queued", 0)]
    assert jobs[0].last_error == report.error

    again = queue.run_once()  # still no paper: nothing is sent at all
    assert again.printed == [] and "papier" in again.error
    assert [j.attempts for j in uow.print_jobs.list()] == [2, 0]

    emulator.load_paper()
    assert queue.run_once().printed == [1, 2]
    captured = emulator.wait_for_jobs(3)
    partial, *good = captured
    assert not partial.complete and partial.end == "paper_out" and partial.qr_texts == []
    assert [j.complete for j in good] == [True, True]
    roots, crls = print_trust
    ids = [verify_payload(_qr_from_raster(j, "58mm")[0][1].text, roots, crls)
           .fields.prescription_id for j in good]
    assert ids == [first.prescription.id, second.prescription.id]  # one copy each, in order
    assert [(j.status, j.attempts) for j in uow.print_jobs.list()] == [
        ("done", 3), ("done", 1)]
    assert queue.run_once().printed == []  # nothing printed twice
    assert statuses[-1].pending == 0


def test_a_connection_reset_mid_job_leaves_the_job_queued(emulators, orders, store, uow):
    emulator = emulators("80mm")
    orders.sign()
    queue = printing.PrintQueue(uow, _printer(emulator))
    emulator.reset_after(5000)
    report = queue.run_once()
    assert report.error == "Connexion à l'imprimante perdue pendant l'impression"
    assert uow.print_jobs.list()[0].status == "queued"
    assert queue.run_once().printed == [1]
    cut_short, good = emulator.wait_for_jobs(2)
    assert (cut_short.end, len(cut_short.raw)) == ("reset", 5000)
    assert good.complete and len(good.qr_texts) == 1


def test_a_printer_switched_off_is_retried_when_it_comes_back(emulators, orders, store, uow):
    emulator = emulators("80mm")
    orders.sign()
    printer = _printer(emulator)
    queue = printing.PrintQueue(uow, printer)
    emulator.power(False)
    assert emulator.wait_for_jobs(0) == []
    _wait(lambda: printer.status().state is PrinterState.UNREACHABLE)
    report = queue.run_once()
    assert report.error.startswith("Imprimante injoignable")
    assert queue.status().printer is PrinterState.UNREACHABLE
    emulator.power(True)
    _wait(lambda: printer.status().state is PrinterState.READY)
    assert queue.run_once().printed == [1]


def test_an_offline_printer_gets_nothing(emulators, orders, store, uow):
    emulator = emulators("80mm")
    orders.sign()
    emulator.set_offline(True)
    queue = printing.PrintQueue(uow, _printer(emulator))
    report = queue.run_once()
    assert report.error.startswith("Imprimante hors ligne")
    assert emulator.jobs == [] and emulator.status_connections >= 1
    emulator.set_offline(False)
    assert queue.run_once().printed == [1]


def test_reprint_is_marked_duplicata_and_audited(emulators, orders, store, print_trust, uow):
    emulator = emulators("80mm")
    signed = orders.sign()
    pid = signed.prescription.id
    queue = printing.PrintQueue(uow, _printer(emulator))
    assert queue.run_once().printed == [1]
    nurse = orders.practitioner("nurse")
    asked = datetime(2026, 11, 26, 13, 5, tzinfo=UTC)
    job_id = printing.request_reprint(uow, pid, actor=nurse.id_nat_ps,
                                      role=nurse.role.value, at=asked)
    assert uow.print_jobs.get(job_id).kind == "duplicate"
    assert queue.run_once().printed == [job_id]
    original, duplicate = emulator.wait_for_jobs(2)
    assert "DUPLICATA" not in original.text
    assert "DUPLICATA" in duplicate.text
    assert "Réimprimé le 26/11/2026 à 14:05" in duplicate.text
    roots, crls = print_trust
    text = _qr_from_raster(duplicate, "80mm")[0][1].text
    assert verify_payload(text, roots, crls).fields.prescription_id == pid
    trail = [(e.action, e.actor, e.subject, e.details.get("job"))
             for e in audit.entries(store) if e.action.startswith("print.")]
    assert trail == [("print.printed", signed.prescription.prescriber.id_nat_ps, pid, 1),
                     ("print.reprint_requested", nurse.id_nat_ps, pid, job_id),
                     ("print.printed", nurse.id_nat_ps, pid, job_id)]
    assert audit.verify(store) == len(audit.entries(store))


def test_no_duplicate_of_a_cancelled_order(orders, store, uow):
    signed = orders.sign()
    cancelled = signed.prescription.transition(State.CANCELLED, datetime.now(UTC),
                                               reason="erreur de patient")
    with uow:
        record_transition(uow, cancelled, actor="8100")
        uow.commit()
    with pytest.raises(Exception, match="annulée"):
        printing.request_reprint(uow, signed.prescription.id, actor="8100",
                                 role="nurse")


def test_a_long_order_prints_on_several_tickets_each_with_a_good_qr(emulators, orders,
                                                                     store, uow):
    from decimal import Decimal

    from appliance.domain.posology import Duration, Posology
    from appliance.domain.prescription import MedicationLine

    many = tuple(MedicationLine(label=f"MEDICAMENT {n} 100 mg, comprimé", cis="60234100",
                                posology=Posology(dose=Decimal(1), unit="comprimé",
                                                  moments=("matin", "soir"),
                                                  duration=Duration(10, "jour")))
                 for n in range(1, 25))
    emulator = emulators("58mm")
    signed = orders.sign(lines=many)
    printer = _printer(emulator, "58mm")
    assert printing.PrintQueue(uow, printer).run_once().printed == [1]
    (job,) = emulator.wait_for_jobs(1)
    found = _qr_from_raster(job, "58mm")
    n = len(job.tickets)
    assert n >= 2 and len(found) == n
    assert {r.text for _, r in found} == {signed.payload.encode()}
    assert [t.cut for t in job.tickets] == [True] * n
    assert f"suite {n}/{n}" in job.tickets[-1].text


def test_a_job_for_an_unknown_prescription_fails_without_blocking_the_queue(
        emulators, orders, store, uow):
    emulator = emulators("80mm")
    orders.sign()
    draft = orders.sign().prescription  # an unsigned draft somehow queued
    store.execute("UPDATE prescriptions SET signature = NULL WHERE id = ?", [draft.id])
    queue = printing.PrintQueue(uow, _printer(emulator))
    report = queue.run_once()
    assert (report.printed, report.failed) == ([1], [2])
    assert uow.print_jobs.get(2).status == "failed"
    assert [e.action for e in audit.entries(store)][-1] == "print.failed"


def test_the_worker_prints_when_woken_and_retries_after_a_failure(emulators, orders,
                                                                   store, tmp_path):
    from appliance.store.uow import SqliteUnitOfWork

    emulator = emulators("80mm")
    emulator.paper_out()
    orders.sign()
    seen = []
    own = SqliteUnitOfWork.open(store.path)  # the worker's own connection
    queue = printing.PrintQueue(own, _printer(emulator), on_status=seen.append)
    worker = printing.PrintWorker(queue, idle_s=30, retry_s=[0.2])
    worker.start()
    try:
        _wait(lambda: any(s.printer is PrinterState.PAPER_OUT for s in seen))
        emulator.load_paper()
        _wait(lambda: seen and seen[-1].last_printed == 1)
        orders.sign()
        worker.wake()
        _wait(lambda: seen[-1].last_printed == 2)
    finally:
        worker.stop()
        own.close()
    assert len(emulator.wait_for_jobs(2)) == 2


def _wait(predicate, timeout=5.0):
    import time

    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)



def test_the_control_channel_acts_out_trouble(emulators):
    import socket

    emulator = emulators("80mm", control_port=0)
    with socket.create_connection(("127.0.0.1", emulator.control_port), timeout=5) as conn:
        stream = conn.makefile("rw", encoding="utf-8", newline="\n")

        def ask(line):
            stream.write(line + "\n")
            stream.flush()
            return stream.readline().strip()

        assert ask("paper-out stall") == "ok"
        state = json.loads(ask("status"))
        assert state["paper_out"] and state["on_paper_out"] == "stall"
        assert ask("paper-in") == "ok" and ask("offline") == "ok"
        assert json.loads(ask("status"))["cover_open"] is True
        assert ask("reset-after 10") == "ok" and ask("jobs") == "[]"
        assert ask("fly") == "error: unknown command fly"
        assert ask("paper-after lots") == "error: bad arguments for paper-after"


def test_a_file_uri_gets_the_same_job_without_acknowledgement(orders, tmp_path):
    from appliance.ports.printer import PrintRequest

    device = tmp_path / "lp0"
    signed = orders.sign()
    printer = EscPosOrderPrinter(f"file://{device}", establishment=HOME, media="58mm")
    receipt = printer.print_order(PrintRequest(1, signed.prescription, signed.payload.encode()))
    assert not receipt.confirmed and receipt.bytes_sent == device.stat().st_size
    assert printer.status().state is PrinterState.UNKNOWN
    (ticket,) = render_bytes(device.read_bytes(), 384)
    assert [r.text for r in zxingcpp.read_barcodes(ticket.image)] == [signed.payload.encode()]
