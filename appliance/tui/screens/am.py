"""First login of a physician without a N° AM on record: ask for it once (it is printed on
every order and the card does not carry it)."""

from __future__ import annotations

from typing import ClassVar

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.widgets import Input, Label, Static

from appliance.services import prescribing
from appliance.tui.screens.base import KioskModal


class AmScreen(KioskModal):
    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "later", "Plus tard")]

    def compose(self) -> ComposeResult:
        with Vertical(id="am-box", classes="dialog"):
            yield Static("Première connexion sur ce poste", classes="dialog-title", markup=False)
            yield Static("Votre N° AM (numéro Assurance Maladie du prescripteur, 9 chiffres) "
                         "n'est pas connu. Il figure sur chaque ordonnance.", markup=False)
            with Horizontal(classes="field"):
                yield Label("N° AM : ")
                yield Input(restrict=r"[0-9]*", max_length=9, id="am", compact=True)
            yield Static("Entrée : enregistrer    Échap : plus tard", classes="hint", markup=False)
            yield Static("", id="message", classes="message", markup=False)

    def on_mount(self) -> None:
        self.query_one("#am", Input).focus()

    def action_later(self) -> None:
        self.dismiss(None)

    @on(Input.Submitted, "#am")
    def submit(self, event: Input.Submitted) -> None:
        session = self.session
        if session is None:
            return
        am, ctx = event.value, self.ctx
        who = session.practitioner.id_nat_ps

        def save() -> str:
            with ctx.uow() as uow:
                prescribing.set_am(uow, who, am, actor=who)
            return am

        self.background(save, self.dismiss)
