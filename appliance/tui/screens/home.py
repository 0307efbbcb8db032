"""Home: the residents (search by name or room, accents and case ignored) and, for a
physician, the drafts to take up again (after a lock or a crash).

Whatever has the focus, a typed character goes to the search. F2 and Entrée act on the
highlighted resident of the list that answers the text in the search box, never on a row
left from an earlier search: pressed before the answer arrives, they wait for it."""

from __future__ import annotations

from typing import ClassVar

from textual import events, on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal
from textual.widgets import Footer, Input, Label, OptionList, Static
from textual.widgets.option_list import Option

from appliance.domain.people import Resident, Role
from appliance.domain.prescription import Prescription, local
from appliance.services import prescribing, residents
from appliance.tui.screens.base import KioskScreen
from appliance.tui.widgets.status_bar import StatusBar


def resident_row(r: Resident) -> str:
    name = r.display_name
    if len(name) > 44:
        name = name[:43] + "…"
    return f"{name:<44} ch. {r.room:<5} {r.birth_date:%d/%m/%Y}"


NO_MATCH = "Aucun résident ne correspond."


def _cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[:width - 1] + "…"


class HomeScreen(KioskScreen):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("f2", "new", "Nouvelle ordonnance"),
        Binding("f3", "drafts", "Brouillons"),
        Binding("f6", "sync", "Synchro/alertes"),
        Binding("f12", "lock", "Verrouiller"),
        Binding("up", "move(-1)", show=False),
        Binding("down", "move(1)", show=False),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.residents: list[Resident] = []
        self.shown_for: str | None = None  # the search text the list answers
        self.drafts: list[Prescription] = []
        self._waiting: str | None = None  # "new" or "open": once the list answers the search

    def compose(self) -> ComposeResult:
        yield Static("", id="title", classes="title", markup=False)
        yield Static("", id="mail-alert", classes="alerts", markup=False)
        with Horizontal(classes="field"):
            yield Label("Résident : ")
            yield Input(placeholder="nom ou chambre", id="search", compact=True)
        yield Static("", id="drafts-title", classes="section", markup=False)
        yield OptionList(id="drafts", compact=True, markup=False)
        yield Static("Résidents", classes="section", markup=False)
        yield OptionList(id="residents", compact=True, markup=False)
        yield Static("", id="message", classes="message", markup=False)
        yield StatusBar()
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self.query_one("#title", Static).update(
            f"{self.ctx.establishment} - {self.kiosk.who}")
        self.query_one("#mail-alert", Static).display = False
        self.query_one("#search", Input).focus()
        self.refresh_data()

    def on_screen_resume(self) -> None:
        self.query_one("#search", Input).focus()
        self.refresh_data()

    def on_key(self, event: events.Key) -> None:
        """A character typed while a list has the focus goes to the search."""
        search = self.query_one("#search", Input)
        if event.is_printable and event.character and self.focused is not search:
            event.stop()
            event.prevent_default()
            search.focus()
            search.insert_text_at_cursor(event.character)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "new":
            return self.kiosk.role is Role.PRESCRIBER
        if action == "drafts":
            return bool(self.drafts)
        return True

    # -- data --------------------------------------------------------------------------------
    def refresh_data(self) -> None:
        self._search(self.query_one("#search", Input).value)
        ctx = self.ctx

        def unmatched() -> int:
            with ctx.uow() as uow:
                return uow.views.unmatched_count()

        self.background(unmatched, self._show_unmatched, group="mail", exclusive=True)
        session = self.session
        if session is None or session.role is not Role.PRESCRIBER:
            self._show_drafts([])
            return
        ctx, who = self.ctx, session.practitioner.id_nat_ps

        def load() -> list[Prescription]:
            with ctx.uow() as uow:
                return prescribing.drafts_of(uow, who)

        self.background(load, self._show_drafts, group="drafts", exclusive=True)

    def _show_unmatched(self, count: int) -> None:
        alert = self.query_one("#mail-alert", Static)
        alert.update(f"! {count} ordonnance(s) reçue(s) par MSSanté à rattacher à un "
                     "résident : F6")
        alert.display = count > 0

    def _show_drafts(self, drafts: list[Prescription]) -> None:
        drafts = [d for d in drafts if d.id not in self.kiosk.discarded]
        self.drafts = drafts
        listing = self.query_one("#drafts", OptionList)
        listing.clear_options()
        listing.add_options(Option(
            f"{local(d.created_at):%d/%m %H:%M}  {_cut(d.resident.display_name, 40):<40} "
            f"{len(d.lines)} ligne(s)") for d in drafts)
        listing.display = bool(drafts)
        title = self.query_one("#drafts-title", Static)
        title.display = bool(drafts)
        title.update(f"Brouillons à reprendre ({len(drafts)}) : F3")
        self.refresh_bindings()

    @on(Input.Changed, "#search")
    def _changed(self, event: Input.Changed) -> None:
        self._search(event.value)

    def _search(self, text: str) -> None:
        ctx = self.ctx

        def load() -> tuple[str, list[Resident]]:
            with ctx.uow() as uow:
                return text, residents.search(uow, text)

        self.background(load, self._show_residents, group="search", exclusive=True)

    def _show_residents(self, result: tuple[str, list[Resident]]) -> None:
        text, residents = result
        if text != self.query_one("#search", Input).value:
            return
        # a refresh of the same search keeps the resident highlighted (not the row number)
        kept = self._highlighted() if text == self.shown_for else None
        self.residents, self.shown_for = residents, text
        listing = self.query_one("#residents", OptionList)
        listing.clear_options()
        listing.add_options(Option(resident_row(r)) for r in residents)
        if residents:
            same = [i for i, r in enumerate(residents) if kept is not None and r.ins == kept.ins]
            listing.highlighted = same[0] if same else 0
        if not residents:
            self.show_error(NO_MATCH)
        elif str(self.query_one("#message", Static).render()).startswith(NO_MATCH[:14]):
            self.show_error("")
        waiting, self._waiting = self._waiting, None
        if waiting == "new":
            self.action_new()
        elif waiting == "open":
            self._open_highlighted()

    # -- actions -----------------------------------------------------------------------------
    def _answers_search(self) -> bool:
        """The list shown answers the text in the search box (not an earlier text)."""
        return self.shown_for == self.query_one("#search", Input).value

    def _highlighted(self) -> Resident | None:
        if not self._answers_search():
            return None
        index = self.query_one("#residents", OptionList).highlighted
        if index is None or not 0 <= index < len(self.residents):
            return None
        return self.residents[index]

    def action_move(self, step: int) -> None:
        listing = self.query_one("#residents", OptionList)
        if self.focused is listing or not self.residents:
            return
        current = listing.highlighted or 0
        listing.highlighted = max(0, min(len(self.residents) - 1, current + step))

    @on(Input.Submitted, "#search")
    def _open_highlighted(self) -> None:
        if not self._answers_search():
            self._waiting = "open"
            return
        resident = self._highlighted()
        if resident is not None:
            self._open(resident)

    @on(OptionList.OptionSelected, "#residents")
    def _selected(self, event: OptionList.OptionSelected) -> None:
        if self._answers_search() and 0 <= event.option_index < len(self.residents):
            self._open(self.residents[event.option_index])

    def _open(self, resident: Resident) -> None:
        from appliance.tui.screens.resident import ResidentScreen

        self.app.push_screen(ResidentScreen(resident))

    def action_new(self) -> None:
        if not self._answers_search():
            self._waiting = "new"
            return
        resident = self._highlighted()
        if resident is None:
            self.show_error(f"{NO_MATCH[:-1]} : tapez son nom ou sa chambre."
                            if not self.residents else "Choisissez d'abord un résident.")
            return
        open_new_draft(self, resident)

    def action_drafts(self) -> None:
        if self.drafts:
            listing = self.query_one("#drafts", OptionList)
            listing.highlighted = 0
            listing.focus()

    @on(OptionList.OptionSelected, "#drafts")
    def _draft_selected(self, event: OptionList.OptionSelected) -> None:
        open_draft(self, self.drafts[event.option_index])

    def action_sync(self) -> None:
        from appliance.tui.screens.sync import SyncScreen

        self.app.push_screen(SyncScreen())

    def action_lock(self) -> None:
        self.kiosk.lock_session("logout")


def open_new_draft(screen: KioskScreen, resident: Resident) -> None:
    """Create a draft for ``resident`` (physician only, checked by the service) and open
    the editor on it."""
    session = screen.session
    if session is None:
        return
    ctx = screen.ctx

    def create() -> Prescription:
        with ctx.uow() as uow:
            return prescribing.new_draft(uow, session, resident.ins.value, ids=ctx.ids,
                                         now=ctx.now())

    screen.background(create, lambda draft: _edit(screen, draft, None))


def open_draft(screen: KioskScreen, draft: Prescription) -> None:
    """Open the editor on a saved draft, with the line that was being typed."""
    ctx = screen.ctx

    def load() -> tuple[Prescription | None, dict | None]:
        with ctx.uow() as uow:
            current = uow.prescriptions.get(draft.id)
            return current, prescribing.draft_form(uow, draft.id)

    def loaded(result: tuple[Prescription | None, dict | None]) -> None:
        current, form = result
        if current is None or current.id in screen.kiosk.discarded:
            screen.show_error("Ce brouillon n'existe plus.")
            refresh = getattr(screen, "refresh_data", None)
            if refresh is not None:
                refresh()
            return
        _edit(screen, current, form)

    screen.background(load, loaded)


def _edit(screen: KioskScreen, draft: Prescription, form: dict | None) -> None:
    from appliance.tui.screens.editor import EditorScreen

    screen.app.push_screen(EditorScreen(draft, form))
