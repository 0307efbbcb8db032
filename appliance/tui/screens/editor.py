"""The prescription editor, keyboard first.

One entry line at a time, in one of three modes (F2 medication, F3 device, F4 act):

- medication: type a name (as-you-type search of the BDPM, one row per specialty) or scan
  the box's barcode, Enter picks the highlighted row (arrows move it); then the posology
  (a pattern number, ``1-0-1``, ``3/j`` or free text, optionally ending with a duration
  such as ``7j``; see ``appliance.tui.shorthand``) and optionally a quantity of boxes;
  Enter adds the line;
- device: LPP search or a free label, then the quantity;
- act: free text, Enter adds it.

F6 marks the line being typed as related to the ALD, F7 cycles the non-substitution
mention, F5 the number of renewals, F8 removes the highlighted line, F10 opens the review.

A draft made by renewing the current treatment marks the lines it renews: ``R`` as signed
before, ``R*`` the same drug with a changed posology or quantity
(``appliance.services.treatment.renewal_marks``); each stays editable like any other.

Everything is saved as typed: each added or removed line at once, the half-typed line
(``form``) half a second after the last key, and both when the session locks.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from decimal import Decimal
from typing import Any, ClassVar

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal
from textual.timer import Timer
from textual.widgets import Footer, Input, Label, OptionList, Static
from textual.widgets.option_list import Option

from appliance.domain.prescription import (
    MAX_RENEWALS,
    ActLine,
    DeviceLine,
    Line,
    MedicationLine,
    NonSubstitution,
    Prescription,
)
from appliance.errors import ValidationError
from appliance.services import treatment
from appliance.tui.screens.base import KioskScreen, describe_error
from appliance.tui.screens.resident import describe_line
from appliance.tui.shorthand import parse_posology, parse_quantity, pattern_hint, unit_for
from appliance.tui.widgets.status_bar import StatusBar

MODE_LABELS = {"medication": "Médicament : ", "device": "Dispositif : ", "act": "Acte : "}
MODE_PLACEHOLDERS = {"medication": "nom, DCI ou code-barres", "device": "nom ou code LPP",
                     "act": "texte libre (examen, soins, kiné...)"}
RESULTS = 6
SEARCH_LIMIT = 40
SAVE_DELAY_S = 0.5
NS_CYCLE: tuple[NonSubstitution | None, ...] = (None, *NonSubstitution)


@dataclass(frozen=True)
class Chosen:
    """The drug or device picked for the line being typed."""

    kind: str  # drug | device
    label: str
    cis: str | None = None
    cip13: str | None = None
    unit: str = "dose"
    lpp: str | None = None

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Chosen:
        return cls(**{k: data.get(k) for k in ("kind", "label", "cis", "cip13", "lpp")},
                   unit=data.get("unit") or "dose")


def distinct_specialties(presentations: list[Any], limit: int = RESULTS) -> list[Any]:
    """One presentation per specialty (CIS), in the referential's order."""
    seen: set[str] = set()
    out = []
    for p in presentations:
        if p.cis not in seen:
            seen.add(p.cis)
            out.append(p)
            if len(out) == limit:
                break
    return out


def names_the_box(query: str, presentation: Any) -> bool:
    """The query was the box's barcode or code (CIP13, CIP7, GS1 string), not a name: then
    the line keeps the box's CIP13 as well as the specialty's CIS."""
    digits = "".join(c for c in query if c.isdigit())
    return len(digits) >= 7 and (presentation.cip13 in digits
                                 or digits == presentation.cip7)


def _clip(text: str, width: int = 74) -> str:
    return text if len(text) <= width else text[:width - 1] + "."


class EditorScreen(KioskScreen):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("f2", "mode('medication')", "Médicament", show=False),
        Binding("f3", "mode('device')", "Dispo"),
        Binding("f4", "mode('act')", "Acte"),
        Binding("f5", "renewals", "Renouv"),
        Binding("f6", "ald", "ALD"),
        Binding("f7", "ns", "NS"),
        Binding("f8", "delete_line", "Suppr"),
        Binding("f10", "review", "Vérifier"),
        Binding("escape", "leave", "Retour"),
        Binding("up", "move(-1)", show=False),
        Binding("down", "move(1)", show=False),
    ]

    def __init__(self, draft: Prescription, form: dict[str, Any] | None = None, *,
                 renewal: list[treatment.RenewalSource] | None = None) -> None:
        super().__init__()
        self.draft = draft
        self.form_in = form
        self.renewal = renewal  # the signed lines this draft renews (None: not read yet)
        self.owner: Any = None
        self.mode = "medication"
        self.results: list[Any] = []
        self.results_for: str | None = None
        self.chosen: Chosen | None = None
        self.chosen_query = ""
        self.ald = False
        self.ns: NonSubstitution | None = None
        self._save_timer: Timer | None = None

    def compose(self) -> ComposeResult:
        r = self.draft.resident
        yield Static(_clip(f"Ordonnance - {r.display_name}, ch. {r.room or '?'}", 78),
                     id="title", classes="title")
        yield OptionList(id="lines", compact=True)
        yield Static("", id="flags")
        with Horizontal(classes="field"):
            yield Label(MODE_LABELS["medication"], id="mode-label")
            yield Input(id="search", compact=True,
                        placeholder=MODE_PLACEHOLDERS["medication"])
        yield OptionList(id="results", compact=True)
        yield Static("", id="chosen")
        with Horizontal(classes="field", id="posology-row"):
            yield Label("Posologie : ", id="posology-label")
            yield Input(id="posology", compact=True, placeholder="1 à 9, 1-0-1, 3/j ou texte")
            yield Label(" Boîtes : ", id="quantity-label")
            yield Input(id="quantity", compact=True, restrict=r"[0-9,.]*", max_length=6)
        yield Static("", id="hint", classes="hint")
        yield Static("", id="message", classes="message")
        yield StatusBar()
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self.owner = self.session
        self._show_lines()
        if self.renewal is None:
            self._load_renewal()
        elif self.renewal:
            self.show_error(f"Renouvellement : {len(self.renewal)} ligne(s) reprise(s) (R), "
                            "modifiables. F10 : vérifier et signer.")
        if self.form_in:
            self._restore(self.form_in)
        self._show_mode()
        self._show_flags()
        self._show_chosen()
        self.query_one("#search", Input).focus()

    def show_error(self, message: Any) -> None:
        self.query_one("#message", Static).update(str(message))

    def _load_renewal(self) -> None:
        ctx, pid = self.ctx, self.draft.id

        def load() -> list[treatment.RenewalSource]:
            with ctx.uow() as uow:
                return treatment.renewal_sources(uow, pid)

        def loaded(sources: list[treatment.RenewalSource]) -> None:
            self.renewal = sources
            if sources:
                self._show_lines()

        self.background(load, loaded, group="renewal")

    # -- display -----------------------------------------------------------------------------
    def _show_lines(self) -> None:
        listing = self.query_one("#lines", OptionList)
        listing.clear_options()
        if not self.draft.lines:
            listing.add_option(Option("(aucune ligne pour l'instant)", disabled=True))
            return
        marks = treatment.renewal_marks(self.draft.lines, self.renewal or [])
        listing.add_options(Option(_clip(f"{n}. {(mark or '').ljust(3) if self.renewal else ''}"
                                         f"{describe_line(line)}", 76))
                            for n, (line, mark) in enumerate(zip(self.draft.lines, marks,
                                                                 strict=True), start=1))
        listing.highlighted = len(self.draft.lines) - 1

    def _show_flags(self) -> None:
        ns = self.ns.label if self.ns else "substituable"
        self.query_one("#flags", Static).update(
            f"Renouvellements : {self.draft.renewals}    Ligne en cours : "
            f"{'ALD' if self.ald else 'hors ALD'}, {ns}")

    def _show_mode(self) -> None:
        self.query_one("#mode-label", Label).update(MODE_LABELS[self.mode])
        self.query_one("#search", Input).placeholder = MODE_PLACEHOLDERS[self.mode]
        drug = self.mode == "medication"
        for selector in ("#posology-label", "#posology"):
            self.query_one(selector).display = drug  # the quantity then moves left
        self.query_one("#hint", Static).update(
            pattern_hint() + "  + durée : 7j 2s 1m" if drug
            else "F2 : revenir aux médicaments")
        # Hidden, not removed: the layout stays put from one mode to the other.
        self.query_one("#posology-row").visible = self.mode != "act"
        self.query_one("#quantity-label", Label).update(" Boîtes : " if drug else "Quantité : ")
        self.query_one("#results").visible = self.mode != "act"

    def _show_chosen(self) -> None:
        chosen = self.chosen
        text = ""
        if chosen is not None:
            unit = f" (en {chosen.unit})" if chosen.kind == "drug" else ""
            text = _clip(f"> {chosen.label}{unit}", 78)
        self.query_one("#chosen", Static).update(text)

    def _show_results(self, results: list[Any]) -> None:
        self.results = results
        listing = self.query_one("#results", OptionList)
        listing.clear_options()
        for item in results:
            if self.mode == "medication":
                label = item.name + ("" if item.marketed else " (non commercialisé)")
            else:
                label = f"{item.label} (LPP {item.code})"
            listing.add_option(Option(_clip(label)))
        if results:
            listing.highlighted = 0

    # -- search --------------------------------------------------------------------------------
    @on(Input.Changed, "#search")
    def _search_changed(self, event: Input.Changed) -> None:
        if event.value != self.chosen_query and self.chosen is not None:
            self.chosen = None
            self._show_chosen()
        self._schedule_save()
        if self.mode != "act":
            self._run_search(event.value)

    def _run_search(self, text: str, pick: bool = False) -> None:
        referential, mode = self.ctx.referential, self.mode
        if referential is None:
            self.show_error("Référentiel des médicaments absent : ordo drugs import.")
            return

        def search() -> tuple[str, str, list[Any]]:
            if len(text.strip()) < 2:
                return text, mode, []
            if mode == "medication":
                return text, mode, distinct_specialties(referential.search(text, SEARCH_LIMIT))
            return text, mode, referential.search_devices(text, RESULTS)

        self.background(search, lambda result: self._searched(result, pick), group="search",
                        exclusive=True)

    def _searched(self, result: tuple[str, str, list[Any]], pick: bool) -> None:
        text, mode, results = result
        if mode != self.mode or text != self.query_one("#search", Input).value:
            return
        self.results_for = text
        self._show_results(results)
        if pick:
            self._pick()

    def action_move(self, step: int) -> None:
        focused = self.focused
        if isinstance(focused, OptionList):
            return
        listing = self.query_one("#results", OptionList)
        if self.results:
            current = listing.highlighted or 0
            listing.highlighted = max(0, min(len(self.results) - 1, current + step))

    @on(Input.Submitted, "#search")
    def _search_submitted(self, event: Input.Submitted) -> None:
        text = event.value.strip()
        if self.mode == "act":
            if text:
                self._add(ActLine(text=text, ald=self.ald))
            return
        if self.results_for != event.value:
            self._run_search(event.value, pick=True)
        else:
            self._pick()

    @on(OptionList.OptionSelected, "#results")
    def _result_selected(self) -> None:
        self._pick()

    def _pick(self) -> None:
        search = self.query_one("#search", Input)
        index = self.query_one("#results", OptionList).highlighted or 0
        if self.mode == "medication":
            if not self.results:
                self.show_error("Aucun médicament trouvé : vérifiez le nom ou scannez la "
                                "boîte.")
                return
            p = self.results[index]
            self.chosen = Chosen("drug", p.name, cis=p.cis,
                                 cip13=p.cip13 if names_the_box(self.results_for or "", p)
                                 else None, unit=unit_for(p.name, p.form))
            target = "#posology"
        else:
            if self.results:
                device = self.results[index]
                self.chosen = Chosen("device", device.label, lpp=device.code)
            elif search.value.strip():
                self.chosen = Chosen("device", search.value.strip())
            else:
                return
            target = "#quantity"
        self.chosen_query = search.value
        self.show_error("")
        self._show_chosen()
        self._schedule_save()
        self.query_one(target, Input).focus()

    # -- adding lines ----------------------------------------------------------------------------
    @on(Input.Submitted, "#posology")
    @on(Input.Submitted, "#quantity")
    def _line_submitted(self) -> None:
        chosen = self.chosen
        if chosen is None:
            self.show_error("Choisissez d'abord le médicament ou le dispositif (Entrée dans "
                            "la recherche).")
            self.query_one("#search", Input).focus()
            return
        try:
            quantity = parse_quantity(self.query_one("#quantity", Input).value)
            line: Line
            if chosen.kind == "drug":
                posology = parse_posology(self.query_one("#posology", Input).value,
                                          chosen.unit)
                line = MedicationLine(label=chosen.label, cis=chosen.cis, cip13=chosen.cip13,
                                      posology=posology, quantity=quantity,
                                      non_substitution=self.ns, ald=self.ald)
            else:
                line = DeviceLine(label=chosen.label, lpp=chosen.lpp,
                                  quantity=quantity or Decimal(1), ald=self.ald)
        except ValidationError as exc:
            self.show_error(describe_error(exc))
            return
        self._add(line)

    def _add(self, line: Line) -> None:
        self.draft = replace(self.draft, lines=(*self.draft.lines, line))
        self._reset_entry()
        self._show_lines()
        self.show_error(_clip(f"Ligne ajoutée : {describe_line(line)}", 78))
        self.save_now()

    def _reset_entry(self) -> None:
        self.chosen, self.chosen_query = None, ""
        self.ald, self.ns = False, None
        self.results, self.results_for = [], None
        for selector in ("#search", "#posology", "#quantity"):
            self.query_one(selector, Input).value = ""
        self._show_results([])
        self._show_chosen()
        self._show_flags()
        self.query_one("#search", Input).focus()

    # -- keys ---------------------------------------------------------------------------------
    def action_mode(self, mode: str) -> None:
        if mode == self.mode:
            self.query_one("#search", Input).focus()
            return
        self.mode = mode
        self.chosen, self.chosen_query = None, ""
        self.results, self.results_for = [], None
        search = self.query_one("#search", Input)
        search.value = ""
        self._show_results([])
        self._show_chosen()
        self._show_mode()
        search.focus()
        self._schedule_save()

    def action_renewals(self) -> None:
        self.draft = replace(self.draft, renewals=(self.draft.renewals + 1) % (MAX_RENEWALS + 1))
        self._show_flags()
        self.save_now()

    def action_ald(self) -> None:
        self.ald = not self.ald
        self._show_flags()
        self._schedule_save()

    def action_ns(self) -> None:
        self.ns = NS_CYCLE[(NS_CYCLE.index(self.ns) + 1) % len(NS_CYCLE)]
        self._show_flags()
        self._schedule_save()

    def action_delete_line(self) -> None:
        if not self.draft.lines:
            return
        index = self.query_one("#lines", OptionList).highlighted
        if index is None or not 0 <= index < len(self.draft.lines):
            index = len(self.draft.lines) - 1
        removed = self.draft.lines[index]
        self.draft = replace(self.draft, lines=self.draft.lines[:index]
                             + self.draft.lines[index + 1:])
        self._show_lines()
        self.show_error(_clip(f"Ligne retirée : {describe_line(removed)}", 78))
        self.save_now()

    def _pending(self) -> bool:
        return bool(self.chosen is not None
                    or self.query_one("#search", Input).value.strip()
                    or self.query_one("#posology", Input).value.strip())

    def action_review(self) -> None:
        from appliance.tui.screens.review import ReviewScreen

        if self._pending():
            self.show_error("Une ligne est en cours : validez-la (Entrée) ou effacez-la.")
            return
        if not self.draft.lines:
            self.show_error("Ajoutez au moins une ligne.")
            return
        self.save_now()
        self.app.push_screen(ReviewScreen(self.draft))

    def action_leave(self) -> None:
        self.save_now()
        if not self.draft.lines and not self._pending() and self.owner is not None:
            self.kiosk.discard_draft(self.owner, self.draft.id)
        self.app.pop_screen()

    # -- saving as typed -----------------------------------------------------------------------
    def form(self) -> dict[str, Any] | None:
        """The half-typed line, or None when there is none."""
        values = {selector: self.query_one(f"#{selector}", Input).value
                  for selector in ("search", "posology", "quantity")}
        if (not any(v.strip() for v in values.values()) and self.chosen is None
                and not self.ald and self.ns is None and self.mode == "medication"):
            return None
        return {"mode": self.mode, **values, "chosen_query": self.chosen_query,
                "chosen": asdict(self.chosen) if self.chosen else None,
                "ald": self.ald, "ns": self.ns.value if self.ns else None}

    def _restore(self, form: dict[str, Any]) -> None:
        self.mode = form.get("mode") if form.get("mode") in MODE_LABELS else "medication"
        chosen = form.get("chosen")
        self.chosen = Chosen.from_dict(chosen) if isinstance(chosen, dict) else None
        self.chosen_query = str(form.get("chosen_query") or "")
        self.ald = bool(form.get("ald"))
        ns = form.get("ns")
        self.ns = NonSubstitution(ns) if ns in NonSubstitution.__members__ else None
        for selector in ("search", "posology", "quantity"):
            self.query_one(f"#{selector}", Input).value = str(form.get(selector) or "")

    def _schedule_save(self) -> None:
        if self._save_timer is not None:
            self._save_timer.stop()
        self._save_timer = self.set_timer(SAVE_DELAY_S, self.save_now)

    def save_now(self) -> None:
        if self._save_timer is not None:
            self._save_timer.stop()
            self._save_timer = None
        if self.owner is not None and self.is_mounted:
            self.kiosk.save_draft(self.owner, self.draft, self.form())

    def flush_draft(self) -> None:
        """The session is locking: write what was typed, now."""
        self.save_now()

