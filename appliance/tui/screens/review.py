"""Review before signing: exactly the text the printer will print (the printer's own layout
module renders it), the prescribing checks' alerts, then sign with the card and print at
once.

The alerts are listed most severe first, each with its severity, its French message and its
source. Signing needs, before the card is asked: every ``important`` alert acknowledged
(one key, F2, for all of them), every ``bloquant`` one overridden with a typed reason (the
reason line takes them one after the other), and none that cannot be overridden (a
hospital-only drug). The decision goes with the signature (``prescribing.sign``): the
alerts are kept with the prescription and the acknowledgements and overrides go to the
audit chain (alert keys only)."""

from __future__ import annotations

from typing import ClassVar

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, VerticalScroll
from textual.widgets import Footer, Input, Label, Static

from appliance.domain.prescription import Prescription, State
from appliance.errors import ValidationError
from appliance.services import prescribing
from appliance.services.checks import Alert, Decision, Severity, decide
from appliance.services.checks.decision import MAX_REASON, MIN_REASON
from appliance.services.prescribing import AmRequired, SignResult
from appliance.tui.screens.base import KioskScreen, describe_error
from appliance.tui.widgets.status_bar import StatusBar

SEVERITY_FR = {Severity.BLOQUANT: "BLOQUANT", Severity.IMPORTANT: "IMPORTANT",
               Severity.INFO: "info"}


def alert_text(alert: Alert, status: str = "") -> str:
    """One alert as the review lists it: severity, message, source (and what was done)."""
    done = {"acknowledged": " [acquittée]", "overridden": " [levée]",
            "refused": " [ne peut pas être levée]"}.get(status, "")
    return (f"[{SEVERITY_FR[alert.severity]}]{done} {alert.message}\n"
            f"    Source : {alert.source}")


class ReviewScreen(KioskScreen):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("enter", "sign", "Signer et imprimer"),
        Binding("f10", "sign", "Signer et imprimer", show=False),
        Binding("f2", "acknowledge", "Acquitter", show=False),
        Binding("escape", "back", "Modifier"),
    ]

    def __init__(self, draft: Prescription) -> None:
        super().__init__()
        self.draft = draft
        self.busy = False
        self.alerts: list[Alert] | None = None   # None until the checks have run
        self.acknowledged = False                # F2: every important alert
        self.reasons: dict[str, str] = {}        # alert key -> override reason

    def compose(self) -> ComposeResult:
        yield Static("Vérifiez : voici ce qui sera imprimé. Entrée pour signer avec la carte.",
                     id="title", classes="title", markup=False)
        alerts = Static("", id="alerts", classes="alerts", markup=False)
        alerts.display = False  # shown once the checks found something
        with VerticalScroll(id="preview-box"):
            yield alerts
            yield Static("", id="preview", markup=False)
        reason_row = Horizontal(classes="field", id="reason-row")
        reason_row.display = False  # shown while a blocking alert waits for its reason
        with reason_row:
            yield Label("Motif : ", id="reason-label")
            yield Input(id="reason", compact=True, max_length=500,
                        placeholder="motif pour lever l'alerte bloquante")
        yield Static("", id="message", classes="message", markup=False)
        yield StatusBar()
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self.query_one("#preview-box").focus()
        preview, draft, now = self.ctx.preview, self.draft, self.ctx.now()

        def render() -> str:
            if preview is None:
                return "\n".join(str(line) for line in draft.lines)
            return "\n".join(preview(draft.transition(State.SIGNED, now)))

        self.background(render, self.query_one("#preview", Static).update)
        printer = self.ctx.printer
        if printer is not None:  # the receipt made ahead: signing then only prints it
            self.background(lambda: printer.prepare(draft, now), failed=self._not_prepared,
                            group="prepare")
        checks, ctx = self.ctx.checks, self.ctx
        if checks is None:
            self.alerts = []
            return

        def run_checks() -> list[Alert]:
            with ctx.uow() as uow:
                return list(checks(uow, draft))

        self.background(run_checks, self._checked, failed=self._checks_failed)

    def _not_prepared(self, exc: BaseException) -> None:
        """Nothing to show: the order prints all the same, only less quickly."""

    def _checks_failed(self, exc: BaseException) -> None:
        self.alerts = []
        self.show_error("Contrôles de prescription indisponibles : " + describe_error(exc))

    def _checked(self, alerts: list[Alert]) -> None:
        self.alerts = alerts
        self._show_alerts()

    # -- the alerts ------------------------------------------------------------------------------
    def decision(self) -> Decision:
        alerts = self.alerts or []
        acks = [a.key for a in alerts if a.severity is Severity.IMPORTANT] \
            if self.acknowledged else []
        return decide(alerts, acks, self.reasons)

    def _next_override(self, decision: Decision) -> Alert | None:
        return decision.needs_override[0] if decision.needs_override else None

    def _show_alerts(self) -> None:
        alerts = self.alerts or []
        box = self.query_one("#alerts", Static)
        box.display = bool(alerts)
        if not alerts:
            self.query_one("#reason-row").display = False
            return
        decision = self.decision()
        counts = {s: sum(a.severity is s for a in alerts) for s in Severity}
        header = (f"Alertes : {counts[Severity.BLOQUANT]} bloquante(s), "
                  f"{counts[Severity.IMPORTANT]} importante(s), {counts[Severity.INFO]} info")
        box.update("\n".join([header, *(alert_text(a, decision.status_of(a)) for a in alerts),
                              ""]))
        pending = self._next_override(decision)
        row = self.query_one("#reason-row")
        row.display = pending is not None
        if pending is not None:
            self.query_one("#reason-label", Label).update(
                f"Motif ({pending.key}) : ")
            self.query_one("#reason", Input).focus()
        self._show_what_is_needed(decision)

    def _show_what_is_needed(self, decision: Decision) -> None:
        if decision.refused:
            self.show_error("Signature impossible : " + decision.refused[0].message)
        elif decision.needs_override:
            self.show_error("Alerte bloquante : tapez le motif pour la lever, puis Entrée.")
        elif decision.needs_acknowledgement:
            self.show_error("Alertes importantes : F2 pour les acquitter, puis Entrée pour "
                            "signer.")
        else:
            self.show_error("")

    def action_acknowledge(self) -> None:
        if not self.alerts or self.busy:
            return
        self.acknowledged = True
        self._show_alerts()

    @on(Input.Submitted, "#reason")
    def _reason_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        pending = self._next_override(self.decision())
        if pending is None:
            return
        try:
            decide([pending], (), {pending.key: event.value})  # the reason's own rules
        except ValidationError:
            self.show_error(f"Motif refusé ({pending.key}) : de {MIN_REASON} à {MAX_REASON} "
                            "caractères.")
            return
        self.reasons[pending.key] = event.value
        event.input.value = ""
        self._show_alerts()
        if self._next_override(self.decision()) is None:
            self.query_one("#preview-box").focus()

    # -- signing --------------------------------------------------------------------------------
    def action_back(self) -> None:
        if not self.busy:
            self.app.pop_screen()

    def action_sign(self) -> None:
        session = self.session
        if self.busy or session is None:
            return
        if self.alerts is None:
            self.show_error("Contrôles de prescription en cours, un instant...")
            return
        decision = self.decision()
        if not decision.may_sign:
            self._show_what_is_needed(decision)
            return
        self.busy = True
        self.show_info("Signature avec la carte CPS…")
        ctx, pid = self.ctx, self.draft.id

        def on_card() -> SignResult:
            with ctx.uow() as uow:
                return prescribing.sign(uow, session, pid, now=ctx.now(), mail=ctx.mail,
                                        decision=decision if decision.alerts else None)

        def sign() -> SignResult:
            result: SignResult = ctx.card_call(on_card)
            if ctx.printer is not None:
                ctx.printer.wake(result)
            return result

        self.background(sign, self._signed, failed=self._refused)

    def _refused(self, exc: BaseException) -> None:
        from appliance.tui.screens.am import AmScreen

        self.busy = False
        if isinstance(exc, AmRequired):
            self.show_error("Saisissez votre N° AM, puis Entrée pour signer.")
            self.app.push_screen(AmScreen())
            return
        self.show_error(describe_error(exc))

    def _signed(self, result: SignResult) -> None:
        from appliance.tui.screens.done import DoneScreen
        from appliance.tui.screens.editor import EditorScreen

        app = self.app
        while len(app.screen_stack) > 1 and isinstance(app.screen_stack[-1],
                                                        ReviewScreen | EditorScreen):
            app.pop_screen()
        app.push_screen(DoneScreen(result))
