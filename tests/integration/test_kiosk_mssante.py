"""MSSanté in the kiosk, with the real card, printer emulator, SQLite store and SMTP
submission server: an order signed in the kiosk is queued for the partner pharmacy in its
signing transaction and, once the server refused it for good, the alerts screen shows it
with the server's reason; the resident file lists the prescriptions received by MSSanté,
the home screen warns of those no resident matched, and the alerts screen lists them."""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest

from appliance.bootstrap import bootstrap
from appliance.domain.prescription_id import format_id
from appliance.ports.mail import ExternalLine
from appliance.ports.uow import ReceivedPrescription
from appliance.tui.demo_data import demo_residents
from tests import mailservers
from tests.integration.test_kiosk import (
    KioskEnv,
    kiosk_bdpm,
    kiosk_env,
    log_in,
    make_kiosk,
    options,
    run,
    screen_name,
    set_am,
    text_of,
    until,
)

pytestmark = pytest.mark.integration
SHARED_FIXTURES = (kiosk_bdpm, kiosk_env)  # from test_kiosk, for pytest to find them
PHARMACY = "pharmacie@exemple.mssante.fr"
RECEIVED = datetime(2026, 11, 20, 9, 30, tzinfo=UTC)


@pytest.fixture
def refusing_smtp(card_pki):
    """The operator's SMTP submission server (TLS, client certificate from the test PKI)
    refusing the pharmacy's address for good (550)."""
    root = Path(tempfile.mkdtemp(prefix="ordo-mail-"))
    os.chmod(root, 0o755)
    m = card_pki.mssante
    server = mailservers.SmtpSubmission(root, m / "server.pem", m / "server.key",
                                        m / "ca.pem").start()
    server.refuse.add(PHARMACY)
    yield server
    server.stop()
    shutil.rmtree(root, ignore_errors=True)


def with_pharmacy(env: KioskEnv, card_pki, smtp_port: int) -> KioskEnv:
    """The same appliance with ``[pharmacy] mssante`` set and ``[mssante]`` pointing at the
    test server with the test PKI's establishment certificate."""
    settings = env.app.settings
    m, mail = card_pki.mssante, card_pki.environment()
    app = bootstrap(replace(
        settings, pharmacy=replace(settings.pharmacy, mssante=PHARMACY),
        mssante=replace(settings.mssante, mailbox=mail["ORDO_MSSANTE_MAILBOX"],
                        smtp_host="127.0.0.1", smtp_port=smtp_port,
                        client_cert=str(m / "client.pem"), client_key=str(m / "client.key"),
                        ca_file=str(m / "ca.pem"), timeout_s=10.0)))
    return KioskEnv(app, env.emulator, env.data_dir, env.vcards)


def test_an_order_signed_in_the_kiosk_goes_to_the_pharmacy_and_its_refusal_shows(
        kiosk_env, card_pki, refusing_smtp):
    set_am(kiosk_env)
    env = with_pharmacy(kiosk_env, card_pki, refusing_smtp.port)
    env.vcards.insert("physician")
    app, parts = make_kiosk(env)
    signed: dict[str, str] = {}

    async def scenario():
        async with app.run_test(size=(80, 24)) as pilot:
            await log_in(pilot, app)
            await until(pilot, lambda: len(options(app, "#residents")) == 6)
            await pilot.press(*"dup")
            await until(pilot, lambda: len(options(app, "#residents")) == 1)
            await pilot.press("f2")
            await until(pilot, lambda: screen_name(app) == "EditorScreen")
            await pilot.press("f4", *"ECG", "enter")
            await until(pilot, lambda: len(app.screen.draft.lines) == 1)
            await pilot.press("f10")
            await until(pilot, lambda: screen_name(app) == "ReviewScreen")
            await pilot.press("enter")
            await until(pilot, lambda: screen_name(app) == "DoneScreen", timeout=20)
            signed["id"] = app.screen.result.prescription.id
            uow = env.app.uow
            due = uow.mail_outbox.due(datetime.now(UTC), 10)
            assert [(m.prescription_id, m.recipient) for m in due] == \
                [(signed["id"], PHARMACY)]
            entry = next(e for e in uow.audit.entries() if e.action == "prescription.signed")
            assert entry.details["mail"] == due[0].seq  # written by the signing transaction

            report = await asyncio.to_thread(env.app.mail_sender().drain)  # the sync service
            assert (report.sent, report.quarantined) == (0, 1)
            await pilot.press("enter")
            await until(pilot, lambda: screen_name(app) == "HomeScreen")
            await pilot.press("f6")
            await until(pilot, lambda: "MSSanté" in text_of(app, "#sync"),
                        what="the MSSanté part of the alerts")
            text = text_of(app, "#sync")
            assert "MSSanté (pharmacie) : 0 en attente, 0 envoyée(s), 1 refusée(s)" in text
            refused = next(line for line in text.splitlines() if line.startswith(" ! "))
            assert format_id(signed["id"]) in refused and "550" in refused
            assert f"ordo mss release {due[0].seq}" in refused

    try:
        run(scenario())
    finally:
        parts.close()
        env.app.close()
    assert refusing_smtp.accepted == 0


def _received(uow, n: int, ins: str | None, lines=()) -> None:
    with uow:
        uow.external_prescriptions.add(ReceivedPrescription(
            message_id=f"<gp-{n}@medecin>", document_id=f"D{n}" if lines else None,
            resident_ins=ins, matched_by="ins" if ins else "none",
            sender="dr.piou@medecin.mssante.fr",
            author="Dr Jean PIOU" if lines else "dr.piou@medecin.mssante.fr",
            author_id=None, issued_at=RECEIVED if lines else None, received_at=RECEIVED,
            lines=tuple(lines),
            patient={"birth_name": "INCONNUE", "first_names": "Rose",
                     "birth_date": "1931-02-03"} if ins is None else {},
            cda=b"<ClinicalDocument/>" if lines else None, pdf=b"%PDF-1.4"))
        uow.commit()


def test_received_prescriptions_in_the_file_on_home_and_in_the_alerts(kiosk_env):
    set_am(kiosk_env)
    dupont = next(r for r in demo_residents() if r.used_name == "DUPONT")
    uow = kiosk_env.uow
    _received(uow, 1, dupont.ins.value,
              [ExternalLine("LASILIX 40 mg, comprimé sécable", "3400930000000", "1 le matin")])
    _received(uow, 2, None)
    kiosk_env.vcards.insert("physician")
    app, parts = make_kiosk(kiosk_env)

    async def scenario():
        async with app.run_test(size=(80, 24)) as pilot:
            await log_in(pilot, app)
            await until(pilot, lambda: app.screen.query_one("#mail-alert").display,
                        what="the home screen's alert")
            assert "1 ordonnance(s) reçue(s) par MSSanté à rattacher" in \
                text_of(app, "#mail-alert")
            await pilot.press(*"dup")
            await until(pilot, lambda: len(options(app, "#residents")) == 1)
            await pilot.press("enter")
            await until(pilot, lambda: screen_name(app) == "ResidentScreen")
            await until(pilot, lambda: app.screen.query_one("#external-box").display,
                        what="the received prescriptions")
            text = text_of(app, "#external")
            assert "20/11/26 Dr Jean PIOU - reçue par MSSanté" in text
            assert "LASILIX 40 mg, comprimé sécable : 1 le matin" in text
            await pilot.press("escape")
            await until(pilot, lambda: screen_name(app) == "HomeScreen")
            await pilot.press("f6")
            await until(pilot, lambda: "MSSanté" in text_of(app, "#sync"),
                        what="the MSSanté part of the alerts")
            text = text_of(app, "#sync")
            assert "Reçues par MSSanté à rattacher à un résident : 1" in text
            assert "patient : INCONNUE Rose (1931-02-03)" in text

    try:
        run(scenario())
    finally:
        parts.close()
