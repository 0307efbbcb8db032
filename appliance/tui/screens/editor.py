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
mention, F5 the number of renewals of the highlighted line (the last one added, unless the
arrows moved). With the search empty, the arrows move along the lines already written: F9
takes the highlighted one back into the fields (Entrée puts it back in its place), F8
removes it. F11 discards the whole draft (after a confirmation), F10 opens the review.

Entrée in the drug search picks a drug only when the text reads as a drug query: not a
posology typed there by mistake ("1 matin"), and with a result whose name or substance
starts as the text does ("matin" never picks imatinib), unless the physician moved to the
result with the arrows.

The prescribing checks run again in the background each time the lines or the renewals
change: a line with an alert is marked (``!!`` blocking, ``!`` important, ``i`` info) and
the message line shows the most severe alert of the line just added; the review lists them
all and asks for their acknowledgement or override.

A draft made by renewing the current treatment marks the lines it renews: ``R`` as signed
before, ``R*`` the same drug with a changed posology or quantity
(``appliance.services.treatment.renewal_marks``); each stays editable like any other.

Everything is saved as typed: each added or removed line at once, the half-typed line
(``form``, with the field the cursor was in) half a second after the last key, and both
when the session locks. A draft reopened puts the cursor back where the typing stopped.
"""

from __future__ import annotations

import re
import unicodedata
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
    MAX_LINES,
    MAX_RENEWALS,
    ActLine,
    DeviceLine,
    Line,
    MedicationLine,
    NonSubstitution,
    Prescription,
)
from appliance.errors import OrdoError, ValidationError
from appliance.services import treatment
from appliance.services.checks import Alert, Severity
from appliance.services.drug_lines import result_lines
from appliance.tui.screens.base import KioskScreen, describe_error
from appliance.tui.screens.resident import describe_line
from appliance.tui.shorthand import (
    format_posology,
    format_quantity,
    parse_posology,
    parse_quantity,
    pattern_hint,
    unit_for,
)
from appliance.tui.widgets.status_bar import StatusBar

MODE_LABELS = {"medication": "Médicament : ", "device": "Dispositif : ", "act": "Acte : "}
MODE_PLACEHOLDERS = {"medication": "nom, DCI ou code-barres", "device": "nom ou code LPP",
                     "act": "texte libre (examen, soins, kiné...)"}
RESULTS = 6
SEARCH_LIMIT = 40
SAVE_DELAY_S = 0.5
NS_CYCLE: tuple[NonSubstitution | None, ...] = (None, *NonSubstitution)
ALERT_MARKS = {Severity.BLOQUANT: "!! ", Severity.IMPORTANT: "! ", Severity.INFO: "i "}


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


def _fold(text: str) -> str:
    return "".join(c for c in unicodedata.normalize("NFKD", text.casefold())
                   if not unicodedata.combining(c))


def meant_query(query: str, presentation: Any) -> bool:
    """Whether ``query`` reads as a search for ``presentation``: its box's code or scan,
    or a name, not a posology typed in the wrong field ("1 matin"), and some word of the
    name or of a substance starts with the query's first three letters ("matin" is not
    imatinib)."""
    text = query.strip()
    if text.startswith("]") or names_the_box(text, presentation):
        return True
    compact = "".join(text.split())
    if compact.isdigit() and compact == presentation.cis:
        return True
    if not text or not text[0].isalpha():
        return False
    start = _fold(re.split(r"[^\w]+", text)[0])[:3]
    words = re.split(r"[^\w]+", _fold(" ".join((presentation.name,
                                                *getattr(presentation, "substances", ())))))
    return any(word.startswith(start) for word in words)


def _clip(text: str, width: int = 74) -> str:
    return text if len(text) <= width else text[:width - 1].rstrip() + "…"


def editor_title(r: Any, width: int = 78) -> str:
    """Whose prescription this is: name (cut with "…" if it must be), birth date and room,
    which are never cut."""
    tail = f" - {r.birth_date:%d/%m/%Y} - ch. {r.room or '?'}"
    return _clip(f"Ordonnance : {r.display_name}", width - len(tail)) + tail


class EditorScreen(KioskScreen):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("f2", "mode('medication')", "Médicament", show=False),
        Binding("f3", "mode('device')", "Dispo"),
        Binding("f4", "mode('act')", "Acte"),
        # shown on the flags line, which says what they change
        Binding("f5", "renewals", "Renouv", show=False),
        Binding("f6", "ald", "ALD", show=False),
        Binding("f7", "ns", "NS", show=False),
        Binding("f8", "delete_line", "Suppr"),
        Binding("f9", "edit_line", "Modifier"),
        Binding("f10", "review", "Vérifier"),
        Binding("f11", "discard", "Jeter"),
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
        self.editing: int | None = None  # the line taken back into the fields (F9)
        self.edited_posology: tuple[str, Any] | None = None  # its text, its posology
        self.moved = False  # the arrows moved in the results since they were shown
        self._save_timer: Timer | None = None
        self.alerts: list[Alert] = []
        self._announce: int | None = None  # the line just added: say its alert

    def compose(self) -> ComposeResult:
        yield Static(editor_title(self.draft.resident), id="title", classes="title", markup=False)
        yield OptionList(id="lines", compact=True, markup=False)
        yield Static("", id="flags", markup=False)
        with Horizontal(classes="field"):
            yield Label(MODE_LABELS["medication"], id="mode-label")
            yield Input(id="search", compact=True, select_on_focus=False,
                        placeholder=MODE_PLACEHOLDERS["medication"])
        yield OptionList(id="results", compact=True, markup=False)
        yield Static("", id="chosen", markup=False)
        with Horizontal(classes="field", id="posology-row"):
            yield Label("Posologie : ", id="posology-label")
            yield Input(id="posology", compact=True, select_on_focus=False,
                        placeholder="1 à 9, 1-0-1, 3/j ou texte")
            yield Label(" Boîtes : ", id="quantity-label")
            yield Input(id="quantity", compact=True, restrict=r"[0-9,.]*", max_length=6,
                        select_on_focus=False)
        yield Static("", id="hint", classes="hint", markup=False)
        yield Static("", id="message", classes="message", markup=False)
        yield StatusBar()
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self.owner = self.session
        self._show_lines()
        self._run_checks()
        if self.renewal is None:
            self._load_renewal()
        elif self.renewal:
            self.show_info(f"Renouvellement : {len(self.renewal)} ligne(s) reprise(s) (R), "
                            "modifiables. F10 : vérifier et signer.")
        if self.form_in:
            self._restore(self.form_in)
        self._show_mode()
        self._show_flags()
        self._show_chosen()
        self.query_one(f"#{self._resume_field(self.form_in)}", Input).focus()
        if self.editing is not None:
            self.show_info(f"Modification de la ligne {self.editing + 1} : corrigez, puis "
                           "Entrée.")

    def _resume_field(self, form: dict[str, Any] | None) -> str:
        """Where the typing stopped: the field saved with the form, else the one after
        what is filled."""
        field = (form or {}).get("focus")
        if field in ("search", "posology", "quantity") and self.query_one(f"#{field}").display:
            return str(field)
        if self.chosen is not None:
            return "posology" if self.chosen.kind == "drug" else "quantity"
        return "search"

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
    def _show_lines(self, highlight: int | None = None) -> None:
        listing = self.query_one("#lines", OptionList)
        listing.clear_options()
        if not self.draft.lines:
            listing.add_option(Option("(aucune ligne pour l'instant)", disabled=True))
            return
        marks: dict[int, str] = {}
        for alert in self.alerts:  # most severe first: the first mark of a line stays
            if alert.line is not None:
                marks.setdefault(alert.line, ALERT_MARKS[alert.severity])
        # a renewal marks the lines it renews: R as signed before, R* changed
        renewed = treatment.renewal_marks(self.draft.lines, self.renewal or [])
        rows = []
        for n, (line, again) in enumerate(zip(self.draft.lines, renewed, strict=True), start=1):
            alert = marks.get(n - 1, "")
            renewal = (again or "").ljust(3) if self.renewal else ""
            number, text = line_row(n, line, 76 - len(alert) - len(renewal)).split(". ", 1)
            rows.append(Option(f"{alert}{number}. {renewal}{text}"))
        listing.add_options(rows)
        if highlight is None and self.editing is not None \
                and self.editing < len(self.draft.lines):
            highlight = self.editing
        listing.highlighted = len(self.draft.lines) - 1 if highlight is None else highlight

    def _current(self) -> int | None:
        """The highlighted line of the list (the last added by default)."""
        if not self.draft.lines:
            return None
        index = self.query_one("#lines", OptionList).highlighted
        if index is None or not 0 <= index < len(self.draft.lines):
            index = len(self.draft.lines) - 1
        return index

    # -- the prescribing checks --------------------------------------------------------------
    def _run_checks(self) -> None:
        checks, ctx, draft = self.ctx.checks, self.ctx, self.draft
        if checks is None or not draft.lines:
            self.alerts = []
            return

        def run() -> tuple[Prescription, list[Alert]]:
            with ctx.uow() as uow:
                return draft, list(checks(uow, draft))

        self.background(run, self._checked, failed=lambda exc: None, group="checks",
                        exclusive=True)

    def _checked(self, result: tuple[Prescription, list[Alert]]) -> None:
        draft, alerts = result
        if draft is not self.draft:  # the lines changed meanwhile: another check comes
            return
        self.alerts = alerts
        self._show_lines()
        announce, self._announce = self._announce, None
        found = [a for a in alerts if a.line == announce and a.severity is not Severity.INFO]
        if announce is not None and found:
            self.show_error(_clip(f"Alerte {found[0].severity.value} : {found[0].message}",
                                  156))

    def _show_flags(self) -> None:
        ns = self.ns.label if self.ns else "substituable"
        index = self._current()
        renewals = "" if index is None else (
            f"F5 Renouvellements (ligne {index + 1}) : {self.draft.lines[index].renewals}   ")
        self.query_one("#flags", Static).update(
            f"{renewals}Ligne : F6 {'ALD' if self.ald else 'hors ALD'}, F7 {ns}")

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

    def _show_results(self, results: list[Any], hint: str = "") -> None:
        self.results = results
        listing = self.query_one("#results", OptionList)
        listing.clear_options()
        if self.mode == "medication":  # name, box size, reimbursement; never cut alike
            labels = result_lines(results, 74)
        else:
            labels = [_clip(f"{item.label} (LPP {item.code})") for item in results]
        listing.add_options(Option(label) for label in labels)
        if hint:  # "Aucun résultat" and what to type instead
            listing.add_option(Option(_clip(hint), disabled=True))
        self.moved = False
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

        def search() -> tuple[str, str, list[Any], str]:
            if len(text.strip()) < 2:
                return text, mode, [], ""
            if mode == "medication":
                found = distinct_specialties(referential.search(text, SEARCH_LIMIT))
                return text, mode, found, "" if found else referential.hint(text)
            return text, mode, referential.search_devices(text, RESULTS), ""

        self.background(search, lambda result: self._searched(result, pick), group="search",
                        exclusive=True)

    def _searched(self, result: tuple[str, str, list[Any], str], pick: bool) -> None:
        text, mode, results, hint = result
        if mode != self.mode or text != self.query_one("#search", Input).value:
            return
        self.results_for = text
        self._show_results(results, hint)
        if pick:
            self._pick()

    def action_move(self, step: int) -> None:
        """The arrows move in the results; with none shown, along the lines written."""
        focused = self.focused
        if isinstance(focused, OptionList):
            return
        if self.results:
            listing = self.query_one("#results", OptionList)
            current = listing.highlighted or 0
            listing.highlighted = max(0, min(len(self.results) - 1, current + step))
            self.moved = True
        elif self.draft.lines and not self.query_one("#search", Input).value.strip():
            lines = self.query_one("#lines", OptionList)
            current = lines.highlighted if lines.highlighted is not None else 0
            lines.highlighted = max(0, min(len(self.draft.lines) - 1, current + step))

    @on(Input.Submitted, "#search")
    def _search_submitted(self, event: Input.Submitted) -> None:
        text = event.value.strip()
        if self.mode == "act":
            if text:
                try:
                    line = ActLine(text=text, ald=self.ald)
                except ValidationError as exc:
                    self.show_error(describe_error(exc))
                    return
                self._add(line)
            return
        if self.results_for != event.value:
            self._run_search(event.value, pick=True)
        else:
            self._pick()

    @on(OptionList.OptionSelected, "#results")
    def _result_selected(self) -> None:
        self._pick(chosen_in_list=True)

    def _pick(self, chosen_in_list: bool = False) -> None:
        search = self.query_one("#search", Input)
        index = self.query_one("#results", OptionList).highlighted or 0
        if self.mode == "medication":
            text = search.value.strip()
            compact = "".join(text.split())
            code = compact.isdigit() and len(compact) >= 7  # a CIS, CIP or barcode typed
            if text[:1].isdigit() and not code and not (
                    self.results and meant_query(text, self.results[0])):
                self.show_error(f"« {_clip(text, 20)} » ressemble à une posologie : "
                                "choisissez d'abord le médicament (son nom), puis Entrée.")
                return
            if not self.results:
                self.show_error("Aucun médicament trouvé : vérifiez le nom ou scannez la "
                                "boîte.")
                return
            p = self.results[min(index, len(self.results) - 1)]
            if not (chosen_in_list or self.moved or meant_query(text, p)):
                self.show_error(f"Aucun résultat ne commence par « {_clip(text, 20)} » : "
                                "choisissez-le avec les flèches ou précisez le nom.")
                return
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
    def _posology(self, text: str, unit: str) -> Any:
        """The posology typed; the line's own when it was taken back (F9) and its text,
        which the shorthand may not say exactly, is unchanged."""
        edited = self.edited_posology
        if edited is not None and text == edited[0]:
            return edited[1]
        return parse_posology(text, unit)

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
                posology = self._posology(self.query_one("#posology", Input).value,
                                          chosen.unit)
                common, conditions = self._facts(chosen.cis)
                line = MedicationLine(label=chosen.label, cis=chosen.cis, cip13=chosen.cip13,
                                      posology=posology, quantity=quantity,
                                      non_substitution=self.ns, ald=self.ald,
                                      common_name=common, conditions=conditions)
                line.check_limits()
            else:
                line = DeviceLine(label=chosen.label, lpp=chosen.lpp,
                                  quantity=quantity or Decimal(1), ald=self.ald)
        except ValidationError as exc:
            self.show_error(describe_error(exc))
            return
        self._add(line)

    def _facts(self, cis: str | None) -> tuple[str | None, tuple[str, ...]]:
        """The DC and the BDPM conditions of the chosen specialty (none when unknown)."""
        referential = self.ctx.referential
        if referential is None or not cis:
            return None, ()
        try:
            facts = referential.facts(cis)
        except OrdoError:
            return None, ()
        return facts.common_name, facts.conditions

    def _add(self, line: Line) -> None:
        try:
            line.check_input()  # what was typed or pasted: no control or bidi character
        except ValidationError as exc:
            self.show_error(describe_error(exc))
            return
        editing = self.editing
        if editing is not None and editing < len(self.draft.lines):
            lines = list(self.draft.lines)
            line = replace(line, renewals=lines[editing].renewals)  # F5 set them, not the fields
            lines[editing] = line
            self.draft = replace(self.draft, lines=tuple(lines))
            said = f"Ligne {editing + 1} modifiée : "
        elif len(self.draft.lines) >= MAX_LINES:
            self.show_error(f"Une ordonnance a au plus {MAX_LINES} lignes : signez celle-ci, "
                            "puis commencez-en une autre.")
            return
        else:
            self.draft = replace(self.draft, lines=(*self.draft.lines, line))
            said = "Ligne ajoutée : "
        self._show_lines()
        self._reset_entry()
        self.show_info(said + line_row(0, line, 78 - len(said))[3:])
        self.save_now()
        self._announce = len(self.draft.lines) - 1 if editing is None else editing
        self._run_checks()

    @on(OptionList.OptionHighlighted, "#lines")
    def _line_highlighted(self) -> None:
        self._show_flags()  # the renewals shown are the highlighted line's

    def _reset_entry(self) -> None:
        self.chosen, self.chosen_query = None, ""
        self.ald, self.ns = False, None
        self.editing, self.edited_posology = None, None
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
        index = self._current()
        if index is None:
            self.show_error("F5 : ajoutez d'abord une ligne ; F5 règle ensuite ses "
                            "renouvellements.")
            return
        line = self.draft.lines[index]
        lines = list(self.draft.lines)
        lines[index] = replace(line, renewals=(line.renewals + 1) % (MAX_RENEWALS + 1))
        self.draft = replace(self.draft, lines=tuple(lines))
        self._show_lines(highlight=index)
        self._show_flags()
        self.save_now()
        self._run_checks()

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
        self.alerts = []  # the line numbers moved: no stale mark until the check is back
        if self.editing is not None:  # the line taken back is no longer where it was
            self.editing, self.edited_posology = None, None
        self._show_lines()
        self.show_info("Ligne retirée : " + line_row(0, removed, 62)[3:])
        self.save_now()
        self._run_checks()

    def action_edit_line(self) -> None:
        """Take the highlighted line back into the fields; Entrée puts it back in place."""
        if not self.draft.lines:
            return
        if self._pending():
            self.show_error("Une ligne est en cours : validez-la (Entrée) ou effacez-la.")
            return
        index = self.query_one("#lines", OptionList).highlighted
        if index is None or not 0 <= index < len(self.draft.lines):
            index = len(self.draft.lines) - 1
        line = self.draft.lines[index]
        form: dict[str, Any] = {"ald": line.ald, "editing": index}
        if isinstance(line, MedicationLine):
            unit = getattr(line.posology, "unit", None) or unit_for(line.label)
            text = format_posology(line.posology) or line.posology.describe()
            self.edited_posology = (text, line.posology)
            form.update(mode="medication", posology=text, focus="posology",
                        chosen=asdict(Chosen("drug", line.label, cis=line.cis,
                                             cip13=line.cip13, unit=unit)),
                        ns=line.non_substitution.value if line.non_substitution else None,
                        quantity=format_quantity(line.quantity) if line.quantity else "")
        elif isinstance(line, DeviceLine):
            form.update(mode="device", focus="quantity", quantity=format_quantity(
                line.quantity), chosen=asdict(Chosen("device", line.label, lpp=line.lpp)))
        else:
            form.update(mode="act", search=line.text, focus="search")
        self._restore(form)
        self._show_mode()
        self._show_flags()
        self._show_chosen()
        self._show_results([])
        self.query_one(f"#{form['focus']}", Input).focus()
        self.show_info(f"Modification de la ligne {index + 1} : corrigez, puis Entrée.")
        self._schedule_save()

    def action_discard(self) -> None:
        """Throw the whole draft away, once the physician has said yes."""
        from appliance.tui.screens.confirm import ConfirmScreen

        count = len(self.draft.lines)
        what = f"{count} ligne{'s' if count > 1 else ''}" if count else "aucune ligne"
        self.app.push_screen(ConfirmScreen(
            "Jeter ce brouillon ?",
            f"Ordonnance de {self.draft.resident.display_name} ({what}). Elle sera "
            "supprimée, sans signature ni impression.", "jeter le brouillon"),
            self._discard_answered)

    def _discard_answered(self, yes: bool | None) -> None:
        if not yes or self.owner is None:
            return
        if self._save_timer is not None:
            self._save_timer.stop()
            self._save_timer = None
        self.kiosk.discard_draft(self.owner, self.draft.id)
        self.app.pop_screen()
        self.kiosk.screen_info("Brouillon jeté.")

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
        focused = self.focused
        return {"mode": self.mode, **values, "chosen_query": self.chosen_query,
                "chosen": asdict(self.chosen) if self.chosen else None,
                "ald": self.ald, "ns": self.ns.value if self.ns else None,
                "editing": self.editing,
                "focus": focused.id if isinstance(focused, Input) else None}

    def _restore(self, form: dict[str, Any]) -> None:
        self.mode = form.get("mode") if form.get("mode") in MODE_LABELS else "medication"
        chosen = form.get("chosen")
        self.chosen = Chosen.from_dict(chosen) if isinstance(chosen, dict) else None
        self.chosen_query = str(form.get("chosen_query") or "")
        self.ald = bool(form.get("ald"))
        ns = form.get("ns")
        self.ns = NonSubstitution(ns) if ns in NonSubstitution.__members__ else None
        editing = form.get("editing")
        self.editing = (editing if isinstance(editing, int)
                        and 0 <= editing < len(self.draft.lines) else None)
        for selector in ("search", "posology", "quantity"):
            field = self.query_one(f"#{selector}", Input)
            field.value = str(form.get(selector) or "")
            field.cursor_position = len(field.value)  # typing goes on after what is there

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

    def take_over(self, saved: Prescription) -> None:
        """The draft vanished from the store; ``saved`` holds what was typed: go on in it."""
        self.draft = replace(saved, lines=self.draft.lines)
        self.show_error("Le brouillon avait disparu : ce qui était saisi est enregistré dans "
                        "un nouveau brouillon.")
        self.save_now()

    def flush_draft(self) -> None:
        """The session is locking: write what was typed, now."""
        self.save_now()



def line_row(n: int, line: Line, width: int) -> str:
    """``n. line`` in ``width`` characters: what must not be lost (the posology with its
    duration, the quantity, the flags) is kept whole and the name is cut with "…"; a
    posology too long itself is cut in its middle so that its duration still shows."""
    number = f"{n}. "
    text = describe_line(line)
    if len(number) + len(text) <= width:
        return number + text
    if isinstance(line, MedicationLine):
        tail = text[len(line.label):]  # " : posology, qté N [flags]"
        room = width - len(number) - len(tail)
        if room >= 12:
            return number + _clip(line.label, room) + tail
        head = _clip(line.label, 20)
        room = width - len(number) - len(head)
        duration = getattr(line.posology, "duration", None)
        said = f" pendant {duration.describe()}" if duration is not None else ""
        # its end: the duration, the quantity and the flags (or a free text's last words)
        keep = tail[tail.rindex(said):] if said and said in tail else tail[-20:]
        return number + head + tail[:room - len(keep) - 1].rstrip() + "…" + keep
    return _clip(number + text, width)
