"""Sync and alerts: the registry queue, records the registry refused (quarantined), the
dispensations that differ from the order (substitution, partial fill) and, when MSSanté is
in use, the orders waiting for the pharmacy or refused by its mail server and the
prescriptions received that no resident matched."""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime
from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.widgets import Footer, Static

from appliance.domain.prescription import local
from appliance.domain.prescription_id import format_id
from appliance.ports.uow import DispensationAlert, ExternalPrescription, MailStatus, SyncStatus
from appliance.tui.screens.base import KioskScreen, registry_text_fr
from appliance.tui.widgets.status_bar import StatusBar

REFRESH_S = 3.0


def _when(iso: str | None) -> str:
    if not iso:
        return "jamais"
    try:
        return f"{local(datetime.fromisoformat(iso)):%d/%m %H:%M}"
    except ValueError:
        return iso


def render_mail(mail: MailStatus, unmatched: list[ExternalPrescription]) -> list[str]:
    """The MSSanté part of the screen (nothing when MSSanté was never used); the servers' and
    senders' texts shown as written (the kiosk's widgets never read markup)."""
    if not (mail.pending or mail.sent or mail.quarantined or unmatched):
        return []
    out = ["", f"MSSanté (pharmacie) : {mail.pending} en attente, {mail.sent} envoyée(s), "
               f"{mail.quarantined} refusée(s)"]
    if mail.pending and mail.last_error:
        out.append(f" Dernière erreur : {mail.last_error[:120]}")
    for record in mail.quarantined_records:
        out.append(f" ! {format_id(record['prescription_id'])} : "
                   f"{(record['reason'] or '?')[:100]} "
                   f"(ordo mss release {record['seq']})")
    out.append(f"Reçues par MSSanté à rattacher à un résident : {len(unmatched)}")
    for x in unmatched:
        who = " ".join(filter(None, [x.patient.get("birth_name"), x.patient.get("first_names")]))
        born = x.patient.get("birth_date") or "?"
        out.append(f" n° {x.id} du {_when(x.received_at.isoformat())} de "
                   f"{x.author[:30]} - patient : {who or 'non indiqué'} "
                   f"({born})")
    return out


def render_sync(status: SyncStatus | None, alerts: list[DispensationAlert],
                other_substance: Collection[tuple[str, int, str | None]] = (), *,
                mail: list[str] | None = None) -> str:
    """The screen's text. An alert whose ``(prescription ID, line, CIP13)`` is in
    ``other_substance`` handed over another substance than the prescribed one: it is
    marked so. ``mail``: the MSSanté part (``render_mail``), after the registry's."""
    out = ["Registre national"]
    if status is None:
        out.append(" état inconnu")
    else:
        out.append(f" En attente d'envoi : {status.queue_depth} ({status.pending_creates} "
                   f"création(s), {status.pending_cancels} annulation(s))")
        out.append(f" Accusés de réception : {status.acknowledged} - dernier échange réussi : "
                   f"{_when(status.last_success_at)}")
        if status.last_error:
            out.append(f" Dernière erreur ({_when(status.last_error_at)}) : "
                       f"{registry_text_fr(status.last_error)[:120]}")
        out.append("")
        out.append(f"Refusées par le registre (quarantaine) : {status.quarantined}")
        for record in status.quarantined_records:
            kind = {"create": "création", "cancel": "annulation"}.get(record["kind"],
                                                                       record["kind"])
            out.append(f" ! {format_id(record['prescription_id'])} ({kind}) : "
                       f"{registry_text_fr(record['reason'])[:100]}")
    out += mail or []
    out.append("")
    out.append(f"Délivrances modifiées par la pharmacie : {len(alerts)}")
    for a in alerts:
        name = " ".join(filter(None, [a.used_name or a.birth_name, a.first_names]))
        what = "substitution" if a.substituted else "délivrance partielle"
        mark = " "
        if (a.prescription_id, a.line_no, a.product_code) in other_substance:
            what, mark = "AUTRE SUBSTANCE que la prescrite", " ! "
        out.append(f"{mark}{_when(a.handed_over_at)} ch. {a.room or '?'} {name[:28]} - "
                   f"{format_id(a.prescription_id)[:9]} ligne {a.line_no} : {what} -> "
                   f"{a.product_label[:40]}")
    return "\n".join(out)


class SyncScreen(KioskScreen):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "back", "Retour"),
        Binding("f5", "demo_dispense", "Démo : délivrance en pharmacie"),
    ]

    def compose(self) -> ComposeResult:
        yield Static("Synchronisation et alertes", classes="title", markup=False)
        with VerticalScroll(id="sync-box"):
            yield Static("", id="sync", markup=False)
        yield Static("", id="message", classes="message", markup=False)
        yield StatusBar()
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self.query_one("#sync-box").focus()
        self.refresh_data()
        self.set_interval(REFRESH_S, self.refresh_data)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "demo_dispense":
            return self.ctx.demo_dispense is not None
        return True

    def refresh_data(self) -> None:
        ctx = self.ctx

        def load() -> str:
            with ctx.uow() as uow:
                views = uow.views
                alerts = views.dispensation_alerts()
                other = (ctx.other_substances(uow, (
                    (a.prescription_id, a.line_no, a.product_code) for a in alerts
                    if a.substituted)) if ctx.other_substances is not None else set())
                return render_sync(views.sync_status(ctx.now()), alerts, other,
                                   mail=render_mail(views.mail_status(),
                                                    views.external_prescriptions(unmatched=True)))

        self.background(load, self.query_one("#sync", Static).update, group="load",
                        exclusive=True)

    def action_back(self) -> None:
        self.app.pop_screen()

    def action_demo_dispense(self) -> None:
        demo = self.ctx.demo_dispense
        if demo is None:
            return
        ctx = self.ctx

        def dispense() -> str:
            with ctx.uow() as uow:
                latest = uow.views.latest_registered()
            if latest is None:
                return ("Aucune ordonnance enregistrée par le registre à délivrer (attendez "
                        "la synchronisation).")
            return demo(latest)

        self.background(dispense, self.show_error)
