"""A signed prescription altered in the database after signing (``UPDATE prescriptions SET
body = …`` on the real SQLite file: the dose of its first line raised to 4) is never
printed, reprinted, written as a PDF, sent to the registry or shown in the kiosk: each path
refuses it with a French message and an audit entry ``prescription_tampered`` that names
the prescription only. The kiosk's resident file is in ``test_kiosk_tampered.py``."""

from __future__ import annotations

import hashlib
import json
import sqlite3
from datetime import UTC, datetime

import pytest
from click.testing import CliRunner

from appliance.cli import main
from appliance.domain.prescription import Prescription
from appliance.domain.qr import SignedOrder
from appliance.errors import TamperedPrescription
from appliance.services import printing
from appliance.services.signature import TAMPERED_ACTION
from appliance.store import audit
from appliance.store.prescriptions import decode_body, encode_body

pytestmark = pytest.mark.integration

ALTERED = "modifiée dans la base après sa signature"


def tamper(db_path, prescription_id: str, *, signed_part_too: bool = False) -> None:
    """What an intruder with write access to the file does: 4 tablets instead of 1 (40
    sessions instead of 10 on an act); with
    ``signed_part_too`` the stored signed part is rebuilt over the altered body as well (its
    hash then matches: only the signature can tell)."""
    conn = sqlite3.connect(db_path)
    try:
        body = json.loads(decode_body(conn.execute(
            "SELECT body FROM prescriptions WHERE id = ?", [prescription_id]).fetchone()[0]))
        first = body["lines"][0]
        if "posology" in first:
            first["posology"]["dose"] = "4"
        else:
            first["text"] = "Kinésithérapie : 40 séances"
        # written back as the appliance writes a signed body (compressed)
        conn.execute("UPDATE prescriptions SET body = ? WHERE id = ?",
                     [encode_body(body), prescription_id])
        if signed_part_too:
            part = SignedOrder.from_prescription(Prescription.from_dict(body)).to_bytes()
            conn.execute("UPDATE prescriptions SET signed_payload = ? WHERE id = ?",
                         [part, prescription_id])
        conn.commit()
    finally:
        conn.close()


def _ordo(data_dir, *args, env=None):
    return CliRunner().invoke(main, ["--data-dir", str(data_dir), *args], env=env,
                              catch_exceptions=False)


def tamper_entries(store) -> list:
    return [e for e in audit.entries(store) if e.action == TAMPERED_ACTION]


def assert_audited(store, prescription_id: str, during: str) -> None:
    entries = tamper_entries(store)
    assert [(e.subject, e.details) for e in entries] == [(prescription_id, {"during": during})]
    audit.verify(store)


@pytest.fixture
def data_dir(store):
    return store.path.parent


def test_print_pending_refuses_an_altered_order_and_prints_the_others(orders, data_dir,
                                                                      emulators, store):
    emulator = emulators("58mm")
    altered, intact = orders.sign_many(2)
    tamper(store.path, altered.id)
    result = _ordo(data_dir, "print", "pending", "--json",
                   env={"ORDO_PRINTER_URI": emulator.uri, "ORDO_PRINTER_MEDIA": "58mm"})
    assert result.exit_code == 1
    report = json.loads(result.stdout)
    assert report["failed"] == [1] and report["printed"] == [2]
    assert ALTERED in report["reasons"]["1"]
    [job] = emulator.wait_for_jobs(1)
    assert len(job.qr_texts) == 1 and intact.id in " ".join(job.text).replace(" ", "")
    assert not any("4 comprimés" in line for line in job.text)
    assert_audited(store, altered.id, "print")
    statuses = [r["status"] for r in store.query("SELECT status FROM print_jobs ORDER BY id")]
    assert statuses == ["failed", "done"]


def test_print_pending_says_why_in_french(orders, data_dir, emulators, store):
    emulator = emulators("80mm")
    [p] = orders.sign_many()
    tamper(store.path, p.id)
    result = _ordo(data_dir, "print", "pending", env={"ORDO_PRINTER_URI": emulator.uri})
    assert result.exit_code == 1
    assert f"impossible à imprimer : travail n° 1 : ordonnance {p.id} {ALTERED}" \
        in result.output
    assert emulator.jobs == []


def test_a_reprint_of_an_altered_order_is_refused_before_it_is_queued(orders, store, uow):
    [p] = orders.sign_many()
    tamper(store.path, p.id)
    nurse = orders.practitioner("nurse").id_nat_ps
    with pytest.raises(TamperedPrescription, match=ALTERED):
        printing.request_reprint(uow, p.id, actor=nurse, role="nurse")
    assert [r["kind"] for r in store.query("SELECT kind FROM print_jobs")] == ["original"]
    entries = tamper_entries(store)
    assert [(e.actor, e.subject, e.details) for e in entries] == \
        [(nurse, p.id, {"during": "reprint"})]


def test_print_pdf_refuses_an_altered_order_and_writes_nothing(orders, data_dir, store,
                                                                tmp_path):
    [p] = orders.sign_many()
    tamper(store.path, p.id)
    out = tmp_path / "order.pdf"
    result = _ordo(data_dir, "print", "pdf", p.id, str(out))
    assert result.exit_code == 4
    assert result.stderr.strip().splitlines()[-1] == (
        f"Erreur : ordonnance {p.id} {ALTERED} (le contenu ne correspond plus à l'empreinte "
        "signée) : refusée, ni imprimée, ni affichée, ni envoyée ; prévenez le responsable "
        "de l'appareil")
    assert not out.exists()
    assert_audited(store, p.id, "pdf")
    assert "print.pdf" not in [e.action for e in audit.entries(store)]


def test_sync_never_uploads_an_altered_order_and_quarantines_it_aloud(
        orders, registry_sim, make_engine, store, uow):
    altered, intact = orders.sign_many(2)
    tamper(store.path, altered.id)
    report = make_engine(registry_sim.url).push()
    assert (report.acknowledged, report.quarantined, report.remaining) == (1, 1, 0)
    held = {row["id"] for row in registry_sim.db.list_prescriptions()}
    assert held == {intact.id}                       # the altered one never left
    status = uow.views.sync_status(datetime.now(UTC))
    [record] = status.quarantined_records
    assert record["prescription_id"] == altered.id and ALTERED in record["reason"]
    assert_audited(store, altered.id, "registry")
    assert ("registry.create.quarantined", altered.id) in \
        [(e.action, e.subject) for e in audit.entries(store)]


def test_a_body_altered_with_its_signed_part_is_caught_by_the_signature(orders, store, uow):
    [p] = orders.sign_many()
    tamper(store.path, p.id, signed_part_too=True)
    row = uow.prescriptions.signed_rows([p.id])[p.id]
    part = SignedOrder.from_bytes(row.signed_payload)
    assert part.content_hash == hashlib.sha256(
        Prescription.from_dict(json.loads(row.body)).canonical_bytes()).digest()
    with pytest.raises(TamperedPrescription, match="la signature ne correspond plus"):
        printing.order_payload(uow, p.id)
    assert_audited(store, p.id, "print")


def test_an_intact_order_still_loads(orders, store, uow):
    [p] = orders.sign_many()
    prescription, payload = printing.order_payload(uow, p.id)
    assert prescription == p and payload.startswith("EPU1*")
    prescription, payload = printing.order_payload(uow, p.id, "signed")
    assert prescription == p and payload.startswith("ORD2:")
    assert tamper_entries(store) == []
