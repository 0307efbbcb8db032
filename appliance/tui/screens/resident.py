"""A resident's file: the current treatment (each running line with its posology, last day
and prescriber; the stopped, replaced and ended lines apart), the prescriptions received by
MSSanté, current and past prescriptions, their state, what the registry and the pharmacy
said, alerts, recorded allergies; new prescription, renew the treatment (all lines or the
ones ticked), stop a line or take a stop back, open a draft, duplicate, cancel, record an
allergy (F6)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
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
from appliance.ports.uow import (
    ExternalPrescription,
    HistoryRow,
    StoppedLine,
    Trail,
    Treatment,
    TreatmentLine,
    UnitOfWork,
)
from appliance.services import prescribing, residents, treatment
from appliance.services.signature import checked_prescription
from appliance.tui.context import DispensationView
from appliance.tui.screens.base import KioskScreen, describe_error, registry_text_fr
from appliance.tui.shorthand import format_quantity
from appliance.tui.widgets.status_bar import StatusBar

if TYPE_CHECKING:
    from appliance.tui.context import OtherSubstances

REGISTRY_FR = {"pending": "envoi au registre en attente", "acknowledged": "reçue par le registre",
               "quarantined": "REFUSÉE par le registre"}
PRINT_FR = {"queued": "impression en attente", "done": "imprimé", "failed": "non imprimé"}
OTHER_SUBSTANCE = "Autre substance que la prescrite"
ROW_WIDTH = 76  # an option's text at 80 columns (the list's padding and scroll bar aside)


def clip(text: str, width: int) -> str:
    """``text`` in ``width`` columns, cut with "…" when longer."""
    return text if len(text) <= width else text[:width - 1] + "…"


def short_label(label: str) -> str:
    """The drug's name and strength, without the form ("DOLIPRANE 1000 mg")."""
    return label.split(",")[0].strip() or label


def _day(day: date) -> str:
    return f"{day.day:02d}/{day.month:02d}/{day.year % 100:02d}"


def treatment_row(t: TreatmentLine, ticked: bool) -> str:
    """A running line on one row: tick box, drug, posology, last day, prescriber. The
    posology's duration gives way to the last day shown beside it; the drug's name is cut
    before the posology is."""
    doctor = t.prescriber_name.split()[-1] if t.prescriber_name.split() else "?"
    tail = f" {'valable' if t.open_ended else 'fin'} {_day(t.end)} Dr {doctor[:12]}"
    room = ROW_WIDTH - len(tail) - 4
    posology = t.posology_text if t.open_ended else t.posology_text.split(" pendant ")[0]
    label = clip(short_label(t.label), max(14, room - 3 - len(posology)))
    head = clip(f"{label} : {posology}", room)
    return f"{'[x]' if ticked else '[ ]'} {head.ljust(room)}{tail}"


def stopped_row(t: TreatmentLine, stopped: StoppedLine) -> str:
    when = _day(local(stopped.stopped_at).date())
    if stopped.replaced_by is not None:
        what = f"renouvelée le {when}"
    else:
        what = f"ARRÊTÉE le {when} : {stopped.reason}"
    return clip(f"    {short_label(t.label)} - {what}", ROW_WIDTH)


def ended_row(t: TreatmentLine) -> str:
    return clip(f"    {short_label(t.label)} - terminée le {_day(t.end)}", ROW_WIDTH)


def treatment_detail(t: TreatmentLine, ticked: bool) -> str:
    renewals = f", à renouveler {t.renewals} fois" if t.renewals else ""
    end = (f"Sans durée : valable jusqu'au {t.end:%d/%m/%Y}" if t.open_ended
           else f"Jusqu'au {t.end:%d/%m/%Y} inclus")
    return "\n".join([
        t.label, f"Posologie : {t.posology_text}", f"{end}{renewals}",
        f"Dr {t.prescriber_name}, ordonnance {format_id(t.prescription_id)} du "
        f"{t.signed_on:%d/%m/%Y}",
        "Cochée pour le renouvellement (Espace : décocher)" if ticked
        else "Espace : cocher pour ne renouveler que les lignes cochées ; F7 : arrêter"])


def stopped_detail(t: TreatmentLine, stopped: StoppedLine) -> str:
    return "\n".join([
        t.label, f"Posologie : {t.posology_text}",
        f"ARRÊTÉE le {local(stopped.stopped_at):%d/%m/%Y} : {stopped.reason}",
        f"Dr {t.prescriber_name}, ordonnance {format_id(t.prescription_id)} du "
        f"{t.signed_on:%d/%m/%Y}",
        f"F7 : reprendre la ligne (arrêtée par erreur), jusqu'au {t.end:%d/%m/%Y}"])


def describe_line(line: Line) -> str:
    """One line as the physician reads it back."""
    flags = ""
    if line.ald:
        flags += " [ALD]"
    if line.renewals:
        flags += f" [à renouveler {line.renewals} fois]"
    if isinstance(line, MedicationLine):
        if line.non_substitution is not None:
            flags += f" [{line.non_substitution.label}]"
        quantity = f", qté {format_quantity(line.quantity)}" if line.quantity is not None else ""
        return f"{line.label} : {line.posology.describe()}{quantity}{flags}"
    if isinstance(line, DeviceLine):
        code = f" (LPP {line.lpp})" if line.lpp else ""
        return f"Dispositif : {line.label}{code}, qté {format_quantity(line.quantity)}{flags}"
    assert isinstance(line, ActLine)
    return f"Acte : {line.text}{flags}"


@dataclass(slots=True)
class RxView:
    """One prescription of the file: its history row at once (with the registry's answer
    while it has not acknowledged it, and the pharmacy's), its body, the registry's answer
    and its print jobs when opened (``Views.trail``)."""

    row_data: HistoryRow
    prescription: Prescription | None = None
    registry: str | None = None
    registry_error: str | None = None
    prints: Sequence[tuple[str, str, str | None]] = ()
    dispensations: Sequence[DispensationView] = ()

    @property
    def id(self) -> str:
        return self.row_data.id

    @property
    def state_text(self) -> str:
        return STATE_LABELS_FR[self.row_data.state]

    def row(self) -> str:
        """The list line; the screen makes one per prescription when the file opens, so it
        avoids ``strftime`` and ``format_id`` (5 µs each: the ID was validated when it was
        stored, and only its first two groups are shown), and formats the line in one
        printf-style operation (half the cost of the f-string's five ``:02d`` fields)."""
        h = self.row_data
        w = local(h.signed_at or h.created_at)
        extra = ""
        if self.registry == "quarantined":
            extra = " ! registre"
        elif self.dispensations:
            if any(d.other_substance for d in self.dispensations):
                extra = " ! autre substance"
            elif any(d.substituted for d in self.dispensations):
                extra = " ! substitution"
        return "%02d/%02d/%02d %02d:%02d  %s %s  %-22s%s" % (  # noqa: UP031 (see above)
            w.day, w.month, w.year % 100, w.hour, w.minute, h.id[:GROUP],
            h.id[GROUP:2 * GROUP], STATE_LABELS_FR[h.state], extra)

    def alerts(self) -> list[str]:
        out = []
        if self.registry == "quarantined":
            out.append(f"Refusée par le registre : {registry_text_fr(self.registry_error)}")
        out += [f"{OTHER_SUBSTANCE if d.other_substance else 'Substitution'} : {d.text}"
                for d in self.dispensations if d.substituted]
        return out


def load_views(uow: UnitOfWork, resident: Resident, who: str | None,
               other_substances: OtherSubstances | None = None) -> list[RxView]:
    """The file's list: history rows from the index, with the registry's refusals and
    pending records and the pharmacy's dispensations (``residents.resident_file``: a few
    queries for the whole file), the substitutions by another substance marked
    (``other_substances``, see ``KioskContext``); bodies, print jobs and acknowledgements
    are read one prescription at a time when it is looked at."""
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
                       for d in entry.dispensations] if entry.dispensations else ())
            for entry in entries]


def describe_external(x: ExternalPrescription) -> list[str]:
    """A prescription received by MSSanté as the file lists it: date, author, its lines when
    its CDA is structured, else its PDF. The sender's texts are shown as written (the
    kiosk's widgets never read markup)."""
    when = local(x.issued_at or x.received_at)
    out = [f" {when:%d/%m/%y} {x.author[:40]} - reçue par MSSanté"]
    if x.lines:
        out += [f"   {line.label[:50]}"
                + (f" : {line.posology[:40]}" if line.posology else "")
                for line in x.lines]
    elif x.has_pdf:
        out.append(f"   document PDF (ordo mss received, n° {x.id})")
    return out


class ResidentScreen(KioskScreen):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("f2", "new", "Nouvelle"),
        Binding("f5", "renew", "Renouveler"),
        Binding("space", "tick", "Cocher", show=False),
        Binding("f7", "stop_line", "Arrêter", show=False),
        Binding("enter", "open", "Ouvrir", show=False),
        Binding("f9", "reprint", "Duplicata"),
        Binding("f6", "allergy", "Allergie"),
        Binding("f8", "cancel_rx", "Annuler"),
        Binding("escape", "back", "Retour"),
    ]

    def __init__(self, resident: Resident) -> None:
        super().__init__()
        self.resident = resident
        self.views: list[RxView] = []
        self.allergies: list[str] = []
        self.treatment = Treatment([], [], [])
        self.resumable: dict[int, tuple[TreatmentLine, StoppedLine]] = {}
        self.ticked: set[tuple[str, int]] = set()

    def compose(self) -> ComposeResult:
        r = self.resident
        born = "Née" if r.sex.value == "F" else "Né"
        yield Static(f"{r.display_name} - ch. {r.room or '?'} - {born} le "
                     f"{r.birth_date:%d/%m/%Y}", id="title", classes="title", markup=False)
        yield Static("", id="alerts", classes="alerts", markup=False)
        with VerticalScroll(id="external-box"):
            yield Static("", id="external", markup=False)
        yield Static("Traitement en cours", id="treatment-title", classes="section", markup=False)
        yield OptionList(id="treatment", compact=True, markup=False)
        yield Static("Ordonnances", classes="section", markup=False)
        yield OptionList(id="rx", compact=True, markup=False)
        with VerticalScroll(id="detail-box"):
            yield Static("", id="detail", markup=False)
        yield Static("", id="message", classes="message", markup=False)
        yield StatusBar()
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self.query_one("#rx", OptionList).focus()
        self.query_one("#external-box").display = False
        self._show_alerts()
        self.refresh_data()

    def _show_alerts(self) -> None:
        """Above the list: the resident's objection, and the prescriptions for which the
        pharmacy handed over another substance than the prescribed one."""
        alerts = []
        if self.allergies:
            alerts.append("Allergies : " + ", ".join(self.allergies))
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

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in ("new", "cancel_rx", "renew", "stop_line"):
            return self.kiosk.role is Role.PRESCRIBER
        return True

    def refresh_data(self) -> None:
        session = self.session
        who = session.practitioner.id_nat_ps if session is not None else None
        ctx, resident = self.ctx, self.resident

        def load() -> tuple[list[RxView], list[str], Treatment]:
            with ctx.uow() as uow:
                return (load_views(uow, resident, who, ctx.other_substances),
                        [a.substance for a in uow.allergies.of_resident(resident.ins.value)],
                        treatment.resident_treatment(
                            uow, resident.ins.value, today=treatment.today_of(ctx.now())))

        def received() -> list[ExternalPrescription]:
            with ctx.uow() as uow:
                return uow.views.external_prescriptions(resident.ins.value)

        self.background(load, self._loaded, group="load", exclusive=True)
        self.background(received, self._show_external, group="external", exclusive=True)

    def _loaded(self, loaded: tuple[list[RxView], list[str], Treatment]) -> None:
        views, allergies, current = loaded
        self._show_treatment(current)
        self._show((views, allergies))

    def _show_treatment(self, current: Treatment) -> None:
        self.treatment = current
        running = {(t.prescription_id, t.line) for t in current.current}
        self.ticked &= running
        listing = self.query_one("#treatment", OptionList)
        keep = listing.highlighted
        listing.clear_options()
        listing.add_options(Option(treatment_row(t, (t.prescription_id, t.line) in self.ticked))
                            for t in current.current)
        if not current.current:
            listing.add_option(Option("(aucun traitement en cours)", disabled=True))
        today = treatment.today_of(self.ctx.now())
        self.resumable = {}
        if current.stopped or current.ended:
            listing.add_option(Option("Arrêtés, renouvelés ou terminés :", disabled=True))
        for t, stop in current.stopped:    # a physician's stop can be taken back (F7)
            if stop.replaced_by is None and t.end >= today:
                self.resumable[listing.option_count] = (t, stop)
            listing.add_option(Option(stopped_row(t, stop),
                                      disabled=listing.option_count not in self.resumable))
        listing.add_options(Option(ended_row(t), disabled=True) for t in current.ended)
        if current.current:
            listing.highlighted = min(keep or 0, len(current.current) - 1)
        ticked = f", {len(self.ticked)} cochée(s)" if self.ticked else ""
        self.query_one("#treatment-title", Static).update(
            f"Traitement en cours : {len(current.current)} ligne(s){ticked}"
            + ("   F5 : renouveler" if current.current else ""))

    def _show_external(self, items: list[ExternalPrescription]) -> None:
        lines = [f"Ordonnances d'autres prescripteurs ({len(items)}) :"]
        for x in items:
            lines += describe_external(x)
        self.query_one("#external", Static).update("\n".join(lines))
        self.query_one("#external-box").display = bool(items)

    def _show(self, loaded: tuple[list[RxView], list[str]]) -> None:
        views, self.allergies = loaded
        listing = self.query_one("#rx", OptionList)
        keep = listing.highlighted
        views = [v for v in views if not (v.row_data.state is State.DRAFT
                                          and v.id in self.kiosk.discarded)]
        self.views = views
        self._show_alerts()
        listing.clear_options()
        listing.add_options(Option(v.row()) for v in views)
        if views:
            listing.highlighted = min(keep or 0, len(views) - 1)
        else:
            self.query_one("#detail", Static).update("Aucune ordonnance pour ce résident.")

    def _treatment_line(self) -> TreatmentLine | None:
        index = self.query_one("#treatment", OptionList).highlighted
        if index is None or not 0 <= index < len(self.treatment.current):
            return None
        return self.treatment.current[index]

    def _stopped_line(self) -> tuple[TreatmentLine, StoppedLine] | None:
        """The highlighted stopped line when its stop can be taken back."""
        return self.resumable.get(self.query_one("#treatment", OptionList).highlighted or -1)

    @on(OptionList.OptionHighlighted, "#treatment")
    def _treatment_highlighted(self) -> None:
        self._show_treatment_detail()

    def _show_treatment_detail(self) -> None:
        if self.focused is not self.query_one("#treatment", OptionList):
            return
        line, stopped = self._treatment_line(), self._stopped_line()
        if line is not None:
            key = (line.prescription_id, line.line)
            self.query_one("#detail", Static).update(treatment_detail(line, key in self.ticked))
        elif stopped is not None:
            self.query_one("#detail", Static).update(stopped_detail(*stopped))

    def on_descendant_focus(self) -> None:
        if self.focused is self.query_one("#treatment", OptionList):
            self._show_treatment_detail()
        elif self.focused is self.query_one("#rx", OptionList):
            view = self._current()
            if view is not None:
                self.with_prescription(view, self._show_detail)

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

        def load() -> tuple[Prescription | None, Trail]:
            with ctx.uow() as uow:  # a signed one is checked against its signature
                return (checked_prescription(uow, view.id, actor=who, during="kiosk"),
                        uow.views.trail(view.id))

        def loaded(found: tuple[Prescription | None, Trail]) -> None:
            p, trail = found
            if p is not None:
                view.registry, view.registry_error = trail.registry, trail.registry_error
                view.prints = trail.prints
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

    def action_renew(self) -> None:
        """A new draft from the current treatment: the ticked lines, or all of them."""
        session = self.session
        if session is None:
            return
        if not self.treatment.current:
            self.show_error("Aucun traitement en cours à renouveler.")
            return
        ctx, ins = self.ctx, self.resident.ins.value
        only = set(self.ticked) or None

        def make() -> tuple[Prescription, list[treatment.RenewalSource]]:
            with ctx.uow() as uow:
                return treatment.renew(uow, session, ins, ids=ctx.ids, only=only,
                                       now=ctx.now())

        def made(result: tuple[Prescription, list[treatment.RenewalSource]]) -> None:
            from appliance.tui.screens.editor import EditorScreen

            self.ticked.clear()
            draft, sources = result
            self.app.push_screen(EditorScreen(draft, None, renewal=sources))

        self.background(make, made)

    def action_tick(self) -> None:
        listing = self.query_one("#treatment", OptionList)
        line = self._treatment_line()
        if self.focused is not listing or line is None:
            return
        key = (line.prescription_id, line.line)
        self.ticked ^= {key}
        self._show_treatment(self.treatment)
        self._show_treatment_detail()

    @on(OptionList.OptionSelected, "#treatment")
    def _treatment_selected(self) -> None:
        self.action_tick()

    def action_stop_line(self) -> None:
        from appliance.tui.screens.stop import StopLineScreen

        stopped = self._stopped_line()
        if stopped is not None and self.focused is self.query_one("#treatment", OptionList):
            self._ask_resume(*stopped)
            return
        line = self._treatment_line()
        if self.focused is not self.query_one("#treatment", OptionList) or line is None:
            self.show_error("Choisissez d'abord la ligne dans le traitement en cours "
                            "(Maj+Tab), puis F7.")
            return
        self.app.push_screen(StopLineScreen(line.label),
                             lambda reason: self._stop(line, reason))

    def _stop(self, line: TreatmentLine, reason: str | None) -> None:
        session = self.session
        if not reason or session is None:
            return
        ctx = self.ctx

        def stop() -> StoppedLine:
            with ctx.uow() as uow:
                return treatment.stop_line(uow, session, line.prescription_id, line.line,
                                           reason, now=ctx.now())

        self.background(stop, lambda _: (
            self.say(clip(f"Ligne arrêtée : {short_label(line.label)}.", ROW_WIDTH), error=False),
            self.refresh_data()))

    def _ask_resume(self, line: TreatmentLine, stopped: StoppedLine) -> None:
        from appliance.tui.screens.confirm import ConfirmScreen

        self.app.push_screen(ConfirmScreen(
            clip(f"Reprendre : {short_label(line.label)}", 60),
            f"Arrêtée le {local(stopped.stopped_at):%d/%m/%Y} ({stopped.reason[:60]}).\n"
            f"La ligne revient dans le traitement en cours jusqu'au {line.end:%d/%m/%Y}.",
            "reprendre la ligne"), lambda yes: self._resume(line) if yes else None)

    def _resume(self, line: TreatmentLine) -> None:
        session = self.session
        if session is None:
            return
        ctx = self.ctx

        def resume() -> TreatmentLine:
            with ctx.uow() as uow:
                return treatment.resume_line(uow, session, line.prescription_id, line.line,
                                             now=ctx.now())

        self.background(resume, lambda _: (
            self.say(clip(f"Ligne reprise : {short_label(line.label)}.", ROW_WIDTH), error=False),
            self.refresh_data()))

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
            self.show_info(f"Duplicata demandé (travail n° {job})."), self.refresh_data()))

    def action_allergy(self) -> None:
        if self.session is None or self.ctx.add_allergy is None:
            self.show_error("Référentiel des médicaments absent : ordo drugs import.")
            return
        from appliance.tui.screens.allergy import AllergyScreen

        self.app.push_screen(AllergyScreen(self.resident), self._add_allergy)

    def _add_allergy(self, given: tuple[str, str] | None) -> None:
        session, add = self.session, self.ctx.add_allergy
        if given is None or session is None or add is None:
            return
        text, source = given
        ctx, ins, actor = self.ctx, self.resident.ins.value, session.practitioner.id_nat_ps

        def record() -> str:
            with ctx.uow() as uow:
                return add(uow, ins, text, source, actor)

        def refused(exc: BaseException) -> None:
            from appliance.errors import ValidationError
            from appliance.tui.screens.base import describe_error

            self.show_error(f"Substance inconnue du référentiel des médicaments : {text!r}."
                            if isinstance(exc, ValidationError) and exc.field == "allergies"
                            else describe_error(exc))

        self.background(record, lambda name: (
            self.show_error(f"Allergie enregistrée : {name}."), self.refresh_data()),
            failed=refused)

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
            self.show_info(f"Ordonnance {format_id(p.id)} annulée ; le registre sera "
                            "prévenu."), self.refresh_data()))
