"""The printing commands end to end: ``ordo qr verify``, ``ordo print
pending``, ``ordo printer status`` against the emulator, and ``ordo printer emulator`` run as
a real process."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from appliance.cli import main
from appliance.services import printing
from appliance.store import audit

pytestmark = pytest.mark.integration


def _ordo(data_dir, *args, input=None, env=None):
    return CliRunner().invoke(main, ["--data-dir", str(data_dir), *args], input=input,
                              env=env, catch_exceptions=False)


@pytest.fixture
def data_dir(store):
    return store.path.parent


def test_qr_verify_valid_from_the_argument_and_from_stdin(orders, data_dir, card_pki):
    signed = orders.sign()
    payload = signed.payload.encode()
    root = str(card_pki.trust_roots[0])
    result = _ordo(data_dir, "qr", "verify", payload, "--trust-root", root)
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[-1] == "VALID"
    assert "Patient        : MARTIN Jeanne, né(e) le 15/01/1940" in lines
    assert f"RPPS           : {signed.prescription.prescriber.rpps}" in lines
    assert _ordo(data_dir, "qr", "verify", "--trust-root", root,
                 input=payload + "\n").output.splitlines()[-1] == "VALID"
    as_json = json.loads(_ordo(data_dir, "qr", "verify", payload, "--trust-root", root,
                               "--json").stdout)
    assert as_json["result"] == "VALID"
    assert as_json["fields"]["prescription_id"] == signed.prescription.id


def test_qr_verify_uses_the_trust_roots_of_the_settings(orders, data_dir, card_pki):
    payload = orders.sign("revoked").payload.encode()
    env = {k: v for k, v in card_pki.environment().items() if k.startswith("ORDO_SECURITY")}
    result = _ordo(data_dir, "qr", "verify", payload, env=env)
    assert result.exit_code == 1
    assert result.output.splitlines()[-1].startswith("INVALID: the certificate of CN=Anne REVOQUE")


def test_qr_verify_invalid_exits_1_with_the_reason(orders, data_dir, card_pki):
    payload = orders.sign().payload.encode()
    root = str(card_pki.trust_roots[0])
    broken = payload[:50] + ("Z" if payload[50] != "Z" else "Y") + payload[51:]
    result = _ordo(data_dir, "qr", "verify", broken, "--trust-root", root)
    assert result.exit_code == 1
    assert result.output.startswith("INVALID: malformed payload: qr.")
    other = str(card_pki.directory / "ca" / "untrusted-root.pem")
    result = _ordo(data_dir, "qr", "verify", payload, "--trust-root", other)
    assert result.exit_code == 1
    assert result.output.splitlines()[0].startswith("Ordonnance     : ")  # fields still shown
    assert result.output.splitlines()[-1].startswith("INVALID: no trusted root issued")
    assert _ordo(data_dir, "qr", "verify", "not a payload", "--trust-root", root).exit_code == 1


def test_reprint_then_print_pending_through_the_emulator(orders, data_dir, emulators,
                                                          store, uow):
    emulator = emulators("58mm")
    signed = orders.sign()
    env = {"ORDO_PRINTER_URI": emulator.uri, "ORDO_PRINTER_MEDIA": "58mm"}
    nurse = orders.practitioner("nurse").id_nat_ps
    job = {"job": printing.request_reprint(uow, signed.prescription.id, actor=nurse,
                                           role="nurse")}

    result = _ordo(data_dir, "print", "pending", "--json", env=env)
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["printed"] == [1, job["job"]] and report["pending"] == 0
    original, duplicate = emulator.wait_for_jobs(2)
    assert "DUPLICATA" in duplicate.text and "DUPLICATA" not in original.text
    actions = [(e.action, e.actor) for e in audit.entries(store)]
    assert ("print.reprint_requested", nurse) in actions
    assert ("print.printed", nurse) in actions

    listed = json.loads(_ordo(data_dir, "print", "jobs", "--json").stdout)
    assert [(j["kind"], j["status"]) for j in listed] == [("original", "done"),
                                                          ("duplicate", "done")]


def test_reprint_refuses_a_bad_id_before_asking_for_the_card(data_dir):
    result = _ordo(data_dir, "reprint", "not-an-id", "--pin-stdin", input="1234\n")
    assert result.exit_code == 1 and "identifiant d'ordonnance invalide" in result.output


def test_print_pending_says_why_when_the_printer_fails(orders, data_dir, emulators):
    emulator = emulators("80mm")
    emulator.paper_out()
    orders.sign()
    result = _ordo(data_dir, "print", "pending", env={"ORDO_PRINTER_URI": emulator.uri})
    assert result.exit_code == 1
    assert "imprimante : Plus de papier dans l'imprimante" in result.output
    assert "en attente : 1" in result.output


def test_printer_status(data_dir, emulators):
    emulator = emulators("80mm")
    env = {"ORDO_PRINTER_URI": emulator.uri}
    result = _ordo(data_dir, "printer", "status", env=env)
    assert result.exit_code == 0 and "Imprimante prête" in result.output
    emulator.set_near_end(True)
    assert "fin de rouleau proche" in _ordo(data_dir, "printer", "status", env=env).output
    emulator.paper_out()
    result = _ordo(data_dir, "printer", "status", "--json", env=env)
    assert result.exit_code == 1
    assert json.loads(result.stdout)["state"] == "paper_out"


def test_the_emulator_command_runs_as_a_process(orders, tmp_path):
    from drivers.printer.escpos import EscPosOrderPrinter
    from drivers.printer.layout import Letterhead

    out = tmp_path / "jobs"
    env = {**os.environ, "ORDO_DATA_DIR": str(tmp_path / "data")}
    process = subprocess.Popen(
        [str(Path(sys.executable).parent / "ordo"), "printer-emulator", "--port", "0", "--out",
         str(out), "--media", "58mm", "--exit-after", "1"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
        cwd=Path(__file__).parents[2])
    try:
        banner = process.stdout.readline()
        assert "à l'écoute sur tcp://127.0.0.1:" in banner, process.stderr.read()
        uri = banner.split("sur ")[1].split()[0]
        signed = orders.sign()
        from appliance.ports.printer import PrintRequest

        printer = EscPosOrderPrinter(uri, establishment=Letterhead("EHPAD"), media="58mm")
        printer.print_order(PrintRequest(1, signed.prescription, signed.payload.encode()))
        assert process.wait(timeout=20) == 0
    finally:
        process.kill()
    report = json.loads((out / "job-0001.json").read_text())
    assert report["complete"] and report["end"] == "closed"
    assert report["tickets"][0]["qr"][0]["text"] == signed.payload.encode()
    assert (out / "job-0001-1.png").stat().st_size > 0
    assert (out / "job-0001.bin").stat().st_size == report["bytes"]


def test_qr_verify_a_certificate_by_reference_with_the_certificate_given(orders, data_dir,
                                                                         card_pki):
    from appliance.domain.qr import QrPayload

    signed = orders.sign()
    ref = QrPayload.build(signed.payload.signed_bytes, signed.signature, signed.certificate_der,
                          embed_certificate=False).encode()
    root = str(card_pki.trust_roots[0])
    result = _ordo(data_dir, "qr", "verify", ref, "--trust-root", root)
    assert result.exit_code == 1 and "not among the known certificates" in result.output
    cert = str(card_pki.card_dir("physician") / "sign.der")
    result = _ordo(data_dir, "qr", "verify", ref, "--trust-root", root, "--certificate", cert)
    assert result.exit_code == 0 and result.output.splitlines()[-1] == "VALID"


def test_a_prescription_stored_with_a_tab_still_loads_prints_and_reprints(
        orders, data_dir, emulators, uow, card_pki):
    """Control characters are refused where text comes in, never when a stored row is read
    back: a prescription signed while a tab was still accepted in its free texts loads,
    prints, reprints and its QR verifies, as it was signed."""
    from decimal import Decimal

    from appliance.domain.posology import FreeTextPosology
    from appliance.domain.prescription import ActLine, MedicationLine

    lines = (MedicationLine(label="AMOXICILLINE 500 mg", cis="60234100",
                            posology=FreeTextPosology("selon schéma"), quantity=Decimal(2),
                            instructions="à jeun\tavec un grand verre d'eau"),
             ActLine(text="Kinésithérapie :\t10 séances"))
    signed = orders.sign(lines=lines)
    pid = signed.prescription.id
    loaded = uow.prescriptions.get(pid)
    assert loaded.lines == lines and loaded.canonical_bytes() == \
        signed.prescription.canonical_bytes()

    emulator = emulators("80mm")
    env = {"ORDO_PRINTER_URI": emulator.uri}
    nurse = orders.practitioner("nurse").id_nat_ps
    printing.request_reprint(uow, pid, actor=nurse, role="nurse")
    result = _ordo(data_dir, "print", "pending", "--json", env=env)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["pending"] == 0
    original, duplicate = emulator.wait_for_jobs(2)
    assert any("Kinésithérapie" in line for line in original.text)
    assert "DUPLICATA" in duplicate.text
    for job in (original, duplicate):
        (payload,) = job.qr_texts
        verified = _ordo(data_dir, "qr", "verify", payload, "--trust-root",
                         str(card_pki.trust_roots[0]))
        assert verified.output.splitlines()[-1] == "VALID", verified.output
