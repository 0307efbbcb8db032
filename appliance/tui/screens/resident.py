"""A resident's file: current and past prescriptions, their state, what the registry and the
pharmacy said, alerts; new prescription, open a draft, duplicate, cancel."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.widgets import Footer, OptionList, Static
from textual.widgets.option_list import Option

from appliance.domain.people import Resident, Role
from appliance.domain.prescription import (
    STATE_LABELS_FR,
    ActLine,
    DeviceLine,
    Line,
    MedicationLine,
    Prescription,
    State,
    format_local,
    local,
)
from appliance.domain.prescription_id import GROUP, format_id
from appliance.errors import TamperedPrescription
from appliance.ports.uow import HistoryRow, UnitOfWork
from appliance.services import prescribing, residents
from appliance.services.signature import checked_prescription
from appliance.tui.context import DispensationView
from appliance.tui.screens.base import KioskScreen, describe_error
from appliance.tui.widgets.status_bar import StatusBar

if TYPE_CHECKING:
    from appliance.tui.context import OtherSubstances

REGISTRY_FR = {"pending": "envoi au registre en attente", "acknowledged": "reçue par le registre",
               "quarantined": "REFUSÉE par le registre"}
PRINT_FR = {"queued": "impression en attente", "done": "imprimée", "failed": "non imprimée"}
OTHER_SUBSTANCE = "Autre substance que la prescrite"


def describe_line(line: Line) -> str:
    """One line as the physician reads it back."""
    flags = ""
    if line.ald:
        flags += " [ALD]"
    if isinstance(line, MedicationLine):
        if line.non_substitution is not None:
            flags += f" [{line.non_substitution.label}]"
        quantity = f", qté {line.quantity}" if line.quantity is not None else ""
        return f"{line.label} : {line.posology.describe()}{quantity}{flags}"
    if isinstance(line, DeviceLine):
        code = f" (LPP {line.lpp})" if line.lpp else ""
        return f"Dispositif : {line.label}{code}, qté {line.quantity}{flags}"
    assert isinstance(line, ActLine)
    return f"Acte : {line.text}{flags}"


@dataclass
class RxView:
    """One prescription of the file: its history row at once, its body when opened."""

    row_data: HistoryRow
    prescription: Prescription | None = None
    registry: str | None = None
    registry_error: str | None = None
    prints: list[tuple[str, str, str | None]] = field(default_factory=list)
    dispensations: list[DispensationView] = field(default_factory=list)

    @property
    def id(self) -> str:
        return self.row_data.id

    @property
    def state_text(self) -> str:
        return STATE_LABELS_FR[self.row_data.state]

    def row(self) -> str:
        """The list line; the screen makes one per prescription when the file opens, so it
        avoids ``strftime`` and ``format_id`` (5 µs each: the ID was validated when it was
        stored, and only its first two groups are shown)."""
        h = self.row_data
        w = local(h.signed_at or h.created_at)
        when = f"{w.day:02d}/{w.month:02d}/{w.year % 100:02d} {w.hour:02d}:{w.minute:02d}"
        short = f"{h.id[:GROUP]} {h.id[GROUP:2 * GROUP]}"
        extra = ""
        if self.registry == "quarantined":
            extra = " ! registre"
        elif any(d.other_substance for d in self.dispensations):
            extra = " ! autre substance"
        elif any(d.substituted for d in self.dispensations):
            extra = " ! substitution"
        return f"{when}  {short}  {self.state_text:<22}{extra}"

    def alerts(self) -> list[str]:
        out = []
        if self.registry == "quarantined":
            out.append(f"Refusée par le registre : {self.registry_error or '?'}")
        out += [f"{OTHER_SUBSTANCE if d.other_substance else 'Substitution'} : {d.text}"
                for d in self.dispensations if d.substituted]
        return out


def load_views(uow: UnitOfWork, resident: Resident, who: str | None,
               other_substances: OtherSubstances | None = None) -> list[RxView]:
    """The file's list: history rows from the index, with registry, print and pharmacy
    status (``residents.resident_file``: a few queries for the whole file), the
    substitutions by another substance marked (``other_substances``, see ``KioskContext``);
    bodies are read one at a time when a prescription is looked at."""
    from appliance.services.sync import describe_fr

    entries = residents.resident_file(uow, resident.ins.value, who)
    other = other_substances(uow, ((d.prescription_id, d.line, d.product_code)
                                   for entry in entries for d in entry.dispensations
                                   if d.substituted)) if other_substances else set()
    return [RxView(entry.row, registry=entry.registry, registry_error=entry.registry_error,
                   prints=entry.prints,
                   dispensations=[DispensationView(
                       describe_fr(d).replace("\u2014", "-"), d.substituted, d.complete,
                       (d.prescription_id, d.line, d.product_code) in other)
                       for d in entry.dispensations])
            for entry in entries]


class ResidentScreen(KioskScreen):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("f2", "new", "Nouvelle"),
        Binding("enter", "open", "Ouvrir", show=False),
        Binding("f9", "reprint", "Duplicata"),
        Binding("f8", "cancel_rx", "Annuler l'ordonnance"),
        Binding("escape", "back", "Retour"),
    ]

    def __init__(self, resident: Resident) -> None:
        super().__init__()
        self.resident = resident
        self.views: list[RxView] = []

    def compose(self) -> ComposeResult:
        r = self.resident
        born = "Née" if r.sex.value == "F" else "Né"
        yield Static(f"{r.display_name} - ch. {r.room or '?'} - {born} le "
                     f"{r.birth_date:%d/%m/%Y}", id="title", classes="title")
        yield Static("", id="alerts", classes="alerts")
        yield OptionList(id="rx", compact=True)
        with VerticalScroll(id="detail-box"):
            yield Static("", id="detail")
        yield Static("", id="message", classes="message")
        yield StatusBar()
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self.query_one("#rx", OptionList).focus()
        self._show_alerts()
        self.refresh_data()

    def _show_alerts(self) -> None:
        """Above the list: the resident's objection, and the prescriptions for which the
        pharmacy handed over another substance than the prescribed one."""
        alerts = []
        if self.resident.objection:
            alerts.append("Opposition du résident : les délivrances ne sont pas consultables.")
        for view in self.views:
            lines = [d.text.split(" : ", 1)[0] for d in view.dispensations if d.other_substance]
            if lines:
                w = local(view.row_data.signed_at or view.row_data.created_at)
                alerts.append(f"! {OTHER_SUBSTANCE} : ordonnance du {w:%d/%m/%y}, "
                              f"{', '.join(lines).lower()}")
        widget = self.query_one("#alerts", Static)
        widget.update("\n".join(alerts))
        widget.display = bool(alerts)

    def on_screen_resume(self) -> None:
        if self.focused is None:
            self.query_one("#rx", OptionList).focus()
        self.refresh_data()

    def show_error(self, message: Any) -> None:
        self.query_one("#message", Static).update(str(message))

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in ("new", "cancel_rx"):
            return self.kiosk.role is Role.PRESCRIBER
        return True

    def refresh_data(self) -> None:
        session = self.session
        who = session.practitioner.id_nat_ps if session is not None else None
        ctx, resident = self.ctx, self.resident

        def load() -> list[RxView]:
            with ctx.uow() as uow:
                return load_views(uow, resident, who, ctx.other_substances)

        self.background(load, self._show, group="load", exclusive=True)

    def _show(self, views: list[RxView]) -> None:
        listing = self.query_one("#rx", OptionList)
        keep = listing.highlighted
        self.views = views
        self._show_alerts()
        listing.clear_options()
        listing.add_options(Option(v.row()) for v in views)
        if views:
            listing.highlighted = min(keep or 0, len(views) - 1)
        else:
            self.query_one("#detail", Static).update("Aucune ordonnance pour ce résident.")

    @on(OptionList.OptionHighlighted, "#rx")
    def _highlighted(self, event: OptionList.OptionHighlighted) -> None:
        if 0 <= event.option_index < len(self.views):
            view = self.views[event.option_index]
            self.with_prescription(view, self._show_detail)

    def with_prescription(self, view: RxView, then: Any) -> None:
        """Call ``then(view)`` once the prescription's body is loaded (in a worker)."""
        if view.prescription is not None:
            then(view)
            return
        ctx, session = self.ctx, self.session
        who = session.practitioner.id_nat_ps if session is not None else "kiosk"

        def load() -> Prescription | None:
            with ctx.uow() as uow:  # a signed one is checked against its signature
                return checked_prescription(uow, view.id, actor=who, during="kiosk")

        def loaded(p: Prescription | None) -> None:
            if p is not None:
                view.prescription = p
                then(view)

        def refused(exc: BaseException) -> None:
            if isinstance(exc, TamperedPrescription):
                self.query_one("#detail", Static).update(
                    f"ALERTE : ordonnance {format_id(view.id)} modifiée dans la base après "
                    "sa signature. Elle n'est ni affichée, ni imprimée, ni envoyée. "
                    "Prévenez le responsable de l'appareil.")
            self.show_error(describe_error(exc))

        self.background(load, loaded, failed=refused, group="detail", exclusive=True)

    def _show_detail(self, view: RxView) -> None:
        current = self._current()
        if current is view:
            self.query_one("#detail", Static).update(self._detail(view))

    def _detail(self, view: RxView) -> str:
        p = view.prescription
        assert p is not None
        out = [f"Ordonnance {format_id(p.id)} - {view.state_text}",
               f"Dr {p.prescriber.display_name}, le {format_local(p.signed_at or p.created_at)}"]
        for n, line in enumerate(p.lines, start=1):
            out.append(f" {n}. {describe_line(line)}")
        if p.renewals:
            out.append(f" À renouveler {p.renewals} fois")
        if p.cancel_reason:
            out.append(f"Motif d'annulation : {p.cancel_reason}")
        if view.registry:
            out.append(f"Registre : {REGISTRY_FR.get(view.registry, view.registry)}")
        for kind, status, error in view.prints:
            label = "Duplicata" if kind == "duplicate" else "Original"
            out.append(f"{label} : {PRINT_FR.get(status, status)}"
                       + (f" ({error})" if error and status != "done" else ""))
        if view.dispensations:
            out.append("Délivrances :")
            out += [f" - {d.text}" for d in view.dispensations]
        out += [f"! {a}" for a in view.alerts()]
        return "\n".join(out)

    def _current(self) -> RxView | None:
        index = self.query_one("#rx", OptionList).highlighted
        if index is None or not 0 <= index < len(self.views):
            return None
        return self.views[index]

    # -- actions -----------------------------------------------------------------------------
    def action_back(self) -> None:
        self.app.pop_screen()

    def action_new(self) -> None:
        from appliance.tui.screens.home import open_new_draft

        open_new_draft(self, self.resident)

    def action_open(self) -> None:
        view = self._current()
        if view is not None and view.row_data.state is State.DRAFT:
            from appliance.tui.screens.home import open_draft

            self.with_prescription(view, lambda v: open_draft(self, v.prescription))

    @on(OptionList.OptionSelected, "#rx")
    def _selected(self) -> None:
        self.action_open()

    def action_reprint(self) -> None:
        view, session = self._current(), self.session
        if view is None or session is None:
            return
        ctx, pid = self.ctx, view.id

        def queue() -> int:
            with ctx.uow() as uow:
                job = prescribing.reprint(uow, session, pid, now=ctx.now())
            if ctx.printer is not None:
                ctx.printer.wake()
            return job

        self.background(queue, lambda job: (
            self.show_error(f"Duplicata demandé (travail n° {job})."), self.refresh_data()))

    def action_cancel_rx(self) -> None:
        view = self._current()
        if view is None or self.session is None:
            return
        from appliance.tui.screens.cancel import CancelScreen

        pid = view.id
        self.app.push_screen(CancelScreen(pid), lambda reason: self._cancel(pid, reason))

    def _cancel(self, pid: str, reason: str | None) -> None:
        session = self.session
        if not reason or session is None:
            return
        ctx = self.ctx

        def cancel() -> Prescription:
            with ctx.uow() as uow:
                return prescribing.cancel(uow, session, pid, reason, now=ctx.now())

        self.background(cancel, lambda p: (
            self.show_error(f"Ordonnance {format_id(p.id)} annulée ; le registre sera "
                            "prévenu."), self.refresh_data()))
