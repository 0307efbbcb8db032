"""What senders and mail servers write (a received prescription's author, lines and patient,
a server's refusal) is shown as written in the kiosk: a ``[/]`` in it is never read as
Textual markup, which would stop the screen with a MarkupError."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from textual.app import App, ComposeResult
from textual.widgets import Static

from appliance.ports.mail import ExternalLine
from appliance.ports.uow import ExternalPrescription, MailStatus
from appliance.tui.screens.resident import describe_external
from appliance.tui.screens.sync import render_mail

AT = datetime(2026, 11, 20, 9, 30, tzinfo=UTC)
HOSTILE = ExternalPrescription(
    id=3, message_id="<m@gp>", document_id="D3", resident_ins=None, matched_by="none",
    sender="dr@medecin.mssante.fr", author="Dr [/]Marc [bold]ROUX", author_id=None,
    issued_at=AT, received_at=AT,
    lines=(ExternalLine("KARDEGIC [/] 75 mg [b]", None, "[/i]"),), has_cda=True, has_pdf=True,
    patient={"birth_name": "[/]MARTIN", "first_names": "Rose", "birth_date": "1931-02-03"})


def shown(text: str) -> str:
    """The text as the kiosk's widgets display it (markup off)."""

    class One(App):
        def compose(self) -> ComposeResult:
            yield Static("", id="s", markup=False)

    async def run() -> str:
        app = One()
        async with app.run_test() as pilot:
            app.query_one("#s", Static).update(text)
            await pilot.pause()
            return str(app.query_one("#s", Static).render())

    return asyncio.run(run())


def test_a_received_prescription_is_shown_as_its_sender_wrote_it():
    text = shown("\n".join(describe_external(HOSTILE)))
    assert "Dr [/]Marc [bold]ROUX - reçue par MSSanté" in text
    assert "KARDEGIC [/] 75 mg [b] : [/i]" in text


def test_the_alerts_show_servers_and_senders_texts_as_written():
    mail = MailStatus(pending=1, sent=0, quarantined=0, last_error="421 [/] occupé",
                      quarantined_records=[])
    text = shown("\n".join(render_mail(mail, [HOSTILE])))
    assert "Dernière erreur : 421 [/] occupé" in text
    assert "de Dr [/]Marc [bold]ROUX - patient : [/]MARTIN Rose (1931-02-03)" in text
