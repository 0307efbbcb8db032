"""After signing: the prescription ID in groups of 4 and the printing as it happens. A
secure prescription (narcotics and the like) is not printed on the receipt: the screen
says where its PDF goes (secure paper), and gives both IDs when the order was split."""

from __future__ import annotations

from typing import Any, ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Center, Vertical
from textual.widgets import Footer, Static

from appliance.domain.prescription_id import format_id
from appliance.services.prescribing import SignResult
from appliance.tui.screens.base import KioskScreen
from appliance.tui.widgets.status_bar import StatusBar

POLL_S = 0.3
SECURE_NOTICE = ("Ordonnance sécurisée : imprimée en PDF sur le papier sécurisé, "
                 "jamais sur le ticket.")


class DoneScreen(KioskScreen):
    BINDINGS: ClassVar[list[BindingType]] = [Binding("enter", "finish", "Terminer"),
                                             Binding("escape", "finish", "Terminer",
                                                     show=False)]

    def __init__(self, result: SignResult) -> None:
        super().__init__()
        self.result = result
        self.job_status = "queued"

    def compose(self) -> ComposeResult:
        p = self.result.prescription
        with Vertical(id="done-box"):
            yield Static("Ordonnance signée", classes="title", markup=False)
            yield Static(f"Résident : {p.resident.display_name}", markup=False)
            with Center():
                yield Static(f"N° {format_id(p.id)}", id="done-id", markup=False)
            yield Static("Impression en cours...", id="print-state", markup=False)
            for other in self.result.also:
                yield Static("Ordonnance sécurisée séparée : "
                             f"N° {format_id(other.prescription.id)}", markup=False)
            if any(r.secure for r in self.result.orders):
                yield Static(SECURE_NOTICE, id="secure-notice", markup=False)
            yield Static("Envoi au registre : dès que le réseau le permet (file d'attente).",
                         markup=False)
        yield StatusBar()
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self._timer = self.set_interval(POLL_S, self._poll)
        self._poll()

    def _poll(self) -> None:
        ctx, job = self.ctx, self.result.print_job

        def read() -> Any:
            with ctx.uow() as uow:
                return uow.print_jobs.get(job)

        self.background(read, self._show, group="poll", exclusive=True)

    def _show(self, job: Any) -> None:
        if job is None:
            return
        self.job_status = job.status
        label = self.query_one("#print-state", Static)
        if job.status == "done" and self.result.secure:
            label.update("PDF de l'ordonnance sécurisée prêt pour le papier sécurisé.")
            self._timer.stop()
        elif job.status == "done":
            label.update("Ordonnance imprimée : remettez-la avec le QR code.")
            self._timer.stop()
        elif job.status == "failed":
            label.update(f"Impression impossible : {job.last_error}")
            self._timer.stop()
        elif job.last_error:
            label.update(f"En attente d'impression : {job.last_error} "
                         "(elle sortira dès que l'imprimante sera prête)")

    def action_finish(self) -> None:
        self.app.pop_screen()
