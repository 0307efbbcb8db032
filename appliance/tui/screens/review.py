"""Review before signing: exactly the text the printer will print (the printer's own layout
module renders it), then sign with the card and print at once."""

from __future__ import annotations

from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.widgets import Footer, Static

from appliance.domain.prescription import Prescription, State
from appliance.services import prescribing
from appliance.services.prescribing import AmRequired, SignResult
from appliance.tui.screens.base import KioskScreen, describe_error
from appliance.tui.widgets.status_bar import StatusBar


class ReviewScreen(KioskScreen):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("enter", "sign", "Signer et imprimer"),
        Binding("f10", "sign", "Signer et imprimer", show=False),
        Binding("escape", "back", "Modifier"),
    ]

    def __init__(self, draft: Prescription) -> None:
        super().__init__()
        self.draft = draft
        self.busy = False

    def compose(self) -> ComposeResult:
        yield Static("Vérifiez : voici ce qui sera imprimé. Entrée pour signer avec la carte.",
                     id="title", classes="title")
        with VerticalScroll(id="preview-box"):
            yield Static("", id="preview")
        yield Static("", id="message", classes="message")
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

    def action_back(self) -> None:
        if not self.busy:
            self.app.pop_screen()

    def action_sign(self) -> None:
        session = self.session
        if self.busy or session is None:
            return
        self.busy = True
        self.show_info("Signature avec la carte CPS…")
        ctx, pid = self.ctx, self.draft.id

        def on_card() -> SignResult:
            with ctx.uow() as uow:
                return prescribing.sign(uow, session, pid, now=ctx.now())

        def sign() -> SignResult:
            result: SignResult = ctx.card_call(on_card)
            if ctx.printer is not None:
                ctx.printer.wake()
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
