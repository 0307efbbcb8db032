"""``check()``: every rule over a draft, its resident and the current treatment.

Pure: the drug facts come through the ``DrugFacts`` port (read once per line), the clinical
tables are loaded once per process, ``today`` is given. Rules, each with its alert codes:

- posology sanity (``posology.*``): more than 6 intakes a day outside "si besoin", more than
  4 units of a solid form per intake, a unit or a free text that names another form than the
  presentation's;
- dose (``dose.*``): the daily amount of each substance, from the structured posology and the
  strength, above the maximum daily dose of the table (adult: ``bloquant``; elderly:
  ``important``), per line and summed over the draft and the current treatment;
- duplicates (``duplicate.*``): the same substance twice in the draft, or in the draft and
  the current treatment (by BDPM substance code or moiety, between systemic forms or forms
  sharing a route);
- allergies (``allergy.substance``);
- prescription conditions of the BDPM (``condition.*``);
- potentially inappropriate medications from 75 years (``pim.laroche``);
- interactions, when a licensed database is plugged in (``interaction.*``).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date
from decimal import Context, Decimal

from appliance.domain.drug_facts import Component, DrugInfo, folded
from appliance.domain.people import fold
from appliance.domain.posology import FreeTextPosology, Posology
from appliance.domain.prescription import MedicationLine
from appliance.services.checks import amounts
from appliance.services.checks.conditions import Condition, ConditionKind, classify
from appliance.services.checks.model import (
    Alert,
    CurrentMedication,
    DraftLike,
    DrugFacts,
    InteractionLevel,
    InteractionSource,
    ResidentProfile,
    Severity,
    sort_alerts,
)
from appliance.services.checks.tables import DoseLimit, PimCriterion, Tables, load_tables

MAX_INTAKES_PER_DAY = 6
MAX_UNITS_PER_INTAKE = 4
PIM_AGE = 75
# A computed dose above the maximum by less than this share is rounding, not an overdose.
TOLERANCE = Decimal("0.001")
SYSTEMIC_ROUTES = frozenset({"orale", "sublinguale", "rectale", "transdermique",
                             "intraveineuse", "intramusculaire", "sous-cutanée"})
SANITY_SOURCE = "Contrôle de cohérence de la saisie (Ordo)"
BDPM_COMPO = "ANSM — base de données publique des médicaments, composition (CIS_COMPO)"
BDPM_CPD = ("ANSM — base de données publique des médicaments, conditions de prescription "
            "et de délivrance (CIS_CPD)")
LABEL_CHARS = 60


# -- a line and its drug -------------------------------------------------------------------
@dataclass
class _Line:
    index: int
    line: MedicationLine
    drug: DrugInfo | None

    @functools.cached_property
    def name(self) -> str:
        label = " ".join(self.line.label.split())
        return label if len(label) <= LABEL_CHARS else label[:LABEL_CHARS - 1] + "…"

    @functools.cached_property
    def prefix(self) -> str:
        return f"Ligne {self.index + 1} ({self.name})"


@dataclass
class _Current:
    medication: CurrentMedication
    drug: DrugInfo | None

    @functools.cached_property
    def name(self) -> str:
        label = " ".join(self.medication.label.split())
        return label if len(label) <= LABEL_CHARS else label[:LABEL_CHARS - 1] + "…"


@dataclass
class _Context:
    lines: list[_Line]
    current: list[_Current]
    age: int | None
    resident: ResidentProfile
    tables: Tables
    alerts: list[Alert] = field(default_factory=list)

    def add(self, code: str, severity: Severity, message: str, source: str,
            line: int | None, overridable: bool = True) -> None:
        self.alerts.append(Alert(code, severity, message, source, line, overridable))


# -- numbers in French ---------------------------------------------------------------------
_WIDE = Context(prec=80)  # figures computed from any strength and dose fit, never overflow

def _fr(amount: Decimal, unit: str) -> str:
    """'4 000 mg', '2,5 mg', '0,125 mg' (at most 3 decimals, no trailing zeros)."""
    quantized = amount.quantize(Decimal("0.001"), context=_WIDE).normalize(_WIDE)
    whole, _, decimals = format(quantized, "f").partition(".")
    if len(whole) > 3:
        head = len(whole) % 3 or 3
        whole = " ".join([whole[:head]] + [whole[i:i + 3] for i in range(head, len(whole), 3)])
    return f"{whole}{',' + decimals if decimals else ''} {unit}"


def _display_unit(amount: Decimal, unit: str) -> tuple[Decimal, str]:
    if unit == "mg" and amount < 1:
        return amount * 1000, "µg"
    return amount, unit


def _quantity(amount: Decimal, unit: str) -> str:
    return _fr(*_display_unit(amount, unit))


def _of(substance: str) -> str:
    """'de paracétamol', 'd'hydroxyzine' (elision before a vowel or a mute h)."""
    return f"d'{substance}" if fold(substance[:1]) in set("aeiouyh") else f"de {substance}"


# -- posology sanity -----------------------------------------------------------------------
_FORM_FAMILIES = (("comprime", "comprimé"), ("gelule", "gélule"), ("capsule", "gélule"),
                  ("suppositoire", "suppositoire"),
                  ("transdermique", "patch"), ("emplatre", "patch"), ("ovule", "ovule"),
                  ("solution buvable", "liquide"), ("suspension buvable", "liquide"),
                  ("sirop", "liquide"), ("emulsion buvable", "liquide"),
                  ("en gouttes", "liquide"))
UNIT_FAMILIES = {"comprimé": "comprimé", "gélule": "gélule", "sachet": "sachet",
                 "suppositoire": "suppositoire", "patch": "patch", "ovule": "ovule",
                 "goutte": "liquide", "cuillère à café": "liquide",
                 "cuillère à soupe": "liquide", "mL": "liquide"}
_FAMILY_WORDS = {"comprimé": "comprimés", "gélule": "gélules", "sachet": "sachets",
                 "suppositoire": "suppositoires", "patch": "patchs", "ovule": "ovules",
                 "liquide": "une forme liquide (mL, gouttes, cuillères)"}


@functools.lru_cache(maxsize=4096)
def form_family(form: str, name: str = "") -> str | None:
    """The kind of unit a specialty is taken in, from its BDPM form and the end of its name
    ("..., poudre pour solution buvable en sachet"); None if unclear. A powder or granules
    not in sachets are made up before use: no family."""
    folded = fold(f"{form} {name.rpartition(',')[2]}")
    if "sachet" in folded:
        return "sachet"
    if "poudre" in folded or "granule" in folded:
        return None
    for word, family in _FORM_FAMILIES:
        if word in folded:
            return family
    return None


def _family(drug: DrugInfo | None) -> str | None:
    return form_family(drug.form, drug.name) if drug is not None else None


_ORAL_SOLIDS = frozenset({"comprimé", "gélule"})


def _compatible(unit_family: str, drug_family: str) -> bool:
    """Whether a unit can name a unit of the presentation. Tablets and capsules are taken
    alike and often named one for the other: no contradiction between them. A sachet's
    content is taken dissolved: a dose in mL is not one either."""
    if unit_family == drug_family:
        return True
    if unit_family in _ORAL_SOLIDS and drug_family in _ORAL_SOLIDS:
        return True
    return unit_family == "liquide" and drug_family == "sachet"


def _systemic(drug: DrugInfo | None) -> bool:
    return drug is None or not drug.routes or bool(SYSTEMIC_ROUTES & set(drug.routes))


_NUMBER_WORDS = {"un": 1, "une": 1, "deux": 2, "trois": 3, "quatre": 4, "cinq": 5, "six": 6,
                 "sept": 7, "huit": 8, "neuf": 9, "dix": 10}
# Units a free text may count. Volumes and spoons are left out: "dans 100 ml d'eau" or "dans
# une cuillère de compote" say how to take a tablet, not what it is.
_TEXT_UNITS = {"comprime": "comprimé", "cp": "comprimé", "cpr": "comprimé", "cps": "comprimé",
               "gelule": "gélule", "sachet": "sachet", "suppositoire": "suppositoire",
               "goutte": "liquide", "patch": "patch", "ovule": "ovule"}
_TEXT_QUANTITY = re.compile(
    r"(?<![\w.,/])(?:(?P<n>\d+(?:[.,]\d+)?(?:/\d+)?|un|une|deux|trois|quatre|cinq|six|sept"
    r"|huit|neuf|dix)\s*)?(?P<u>comprimes?|cpr?s?|gelules?|sachets?|suppositoires?|gouttes?"
    r"|patchs?|ovules?)\b")
# A count that is a total, not one intake: "6 comprimés par jour", "jusqu'à 6 comprimés",
# "6 comprimés en 3 prises".
_TOTAL_AFTER = re.compile(r"^\W*(?:/|par\b|au total|maximum|max\b|en \d+ prises|en \w+ prises"
                          r"|sur \d+|pendant|pour \d+)")
_TOTAL_BEFORE = re.compile(r"(?:jusqu|maximum|max|au plus|pas plus de|depasser|total)\W*"
                           r"(?:\w+\W+){0,2}$")


def _unit_word(word: str) -> str:
    return word if word in _TEXT_UNITS else word.rstrip("s")


def _text_quantities(text: str) -> list[tuple[Decimal | None, str, bool]]:
    """(number or None, unit family, whether the number is a total rather than one intake)
    for each counted unit in a free text."""
    folded = fold(text)
    found = []
    for match in _TEXT_QUANTITY.finditer(folded):
        family = _TEXT_UNITS.get(_unit_word(match["u"]))
        if family is None:
            continue
        number: Decimal | None = None
        raw = match["n"]
        if raw in _NUMBER_WORDS:
            number = Decimal(_NUMBER_WORDS[raw])
        elif raw and "/" in raw:
            top, bottom = raw.split("/")
            number = Decimal(top) / Decimal(bottom) if int(bottom) else None
        elif raw:
            number = Decimal(raw.replace(",", "."))
        total = bool(_TOTAL_AFTER.match(folded[match.end():])
                     or _TOTAL_BEFORE.search(folded[:match.start()]))
        found.append((number, family, total))
    return found


def _check_posology(ctx: _Context, item: _Line) -> None:
    posology, drug = item.line.posology, item.drug
    drug_family = _family(drug)
    if isinstance(posology, FreeTextPosology):
        _check_text(ctx, item, posology.text, drug_family)
        return
    count = amounts.intakes_per_day(posology)
    if (count is not None and count > MAX_INTAKES_PER_DAY and not posology.as_needed
            and _systemic(drug)):
        ctx.add("posology.intakes_per_day", Severity.IMPORTANT,
                f"{item.prefix} : {_fr(count, 'prises')} par jour, plus de "
                f"{MAX_INTAKES_PER_DAY} prises par jour en dehors de « si besoin »",
                SANITY_SOURCE, item.index)
    unit_family = UNIT_FAMILIES.get(posology.unit)
    largest = amounts.largest_intake(posology)
    if posology.unit in amounts.SOLID_UNITS and largest > MAX_UNITS_PER_INTAKE:
        ctx.add("posology.units_per_intake", Severity.IMPORTANT,
                f"{item.prefix} : {_fr(largest, posology.unit + 's')} en une prise, plus de "
                f"{MAX_UNITS_PER_INTAKE} unités d'une forme solide par prise",
                SANITY_SOURCE, item.index)
    if unit_family and drug_family and not _compatible(unit_family, drug_family):
        ctx.add("posology.unit_form", Severity.IMPORTANT,
                f"{item.prefix} : posologie en {posology.unit}, mais la présentation est en "
                f"{_FAMILY_WORDS[drug_family]} ({drug.form if drug else ''})",
                SANITY_SOURCE, item.index)


def _check_text(ctx: _Context, item: _Line, text: str, drug_family: str | None) -> None:
    quantities = _text_quantities(text)
    other = sorted({family for _, family, _ in quantities
                    if drug_family and not _compatible(family, drug_family)})
    if other and item.drug is not None:
        named = ", ".join(_FAMILY_WORDS[f] for f in other)
        ctx.add("posology.text_form", Severity.IMPORTANT,
                f"{item.prefix} : la posologie en texte libre parle de {named}, mais la "
                f"présentation est en {_FAMILY_WORDS[drug_family or '']} "
                f"({item.drug.form})", SANITY_SOURCE, item.index)
    per_intake = [n for n, family, total in quantities
                  if n is not None and family in amounts.SOLID_UNITS and not total
                  and n > MAX_UNITS_PER_INTAKE]
    if per_intake:
        ctx.add("posology.units_per_intake", Severity.IMPORTANT,
                f"{item.prefix} : {_fr(max(per_intake), 'unités')} en une prise dans la "
                f"posologie en texte libre, plus de {MAX_UNITS_PER_INTAKE} unités d'une forme "
                "solide par prise", SANITY_SOURCE, item.index)


# -- doses ---------------------------------------------------------------------------------
def _daily_amounts(drug: DrugInfo, posology: Posology,
                   tables: Tables) -> dict[DoseLimit, tuple[Decimal, Component]]:
    """For each dose limit that applies to the drug: the most the posology gives in a day
    of the limit's substance, and the component it was computed from."""
    units = amounts.units_per_day(posology)
    if units is None:
        return {}
    family = _family(drug)
    out: dict[DoseLimit, tuple[Decimal, Component]] = {}
    for component in drug.components:
        for limit in tables.dose_limits(drug, component):
            amount = amounts.amount_in(component, drug, units, posology.unit, family)
            if amount is None or amount[1] != limit.unit:
                continue
            if limit not in out or amount[0] > out[limit][0]:
                out[limit] = (amount[0], component)
    return out


def _over(amount: Decimal, limit: Decimal) -> bool:
    return amount > limit * (1 + TOLERANCE)


def _check_doses(ctx: _Context) -> None:
    per_limit: dict[DoseLimit, list[tuple[Decimal, str, int | None]]] = {}
    alerted: set[tuple[DoseLimit, bool]] = set()
    for item in ctx.lines:
        if item.drug is None or not isinstance(item.line.posology, Posology):
            continue
        posology = item.line.posology
        for limit, (amount, _) in _daily_amounts(item.drug, posology, ctx.tables).items():
            per_limit.setdefault(limit, []).append((amount, item.prefix, item.index))
            up_to = "jusqu'à " if posology.as_needed else ""
            if _over(amount, limit.max_daily):
                alerted.add((limit, False))
                ctx.add("dose.max_daily", Severity.BLOQUANT,
                        f"{item.prefix} : {up_to}{_quantity(amount, limit.unit)} "
                        f"{_of(limit.substance)} par jour, au-dessus de la dose maximale de "
                        f"{_quantity(limit.max_daily, limit.unit)} par jour chez l'adulte",
                        limit.source, item.index)
            elif _elderly(ctx, limit) and _over(amount, limit.elderly_max_daily or amount):
                alerted.add((limit, True))
                ctx.add("dose.max_daily_elderly", Severity.IMPORTANT,
                        f"{item.prefix} : {up_to}{_quantity(amount, limit.unit)} "
                        f"{_of(limit.substance)} par jour, au-dessus de la dose maximale de "
                        f"{_quantity(limit.elderly_max_daily or amount, limit.unit)} par jour "
                        f"à partir de {limit.elderly_from_age} ans", limit.source, item.index)
    for current in ctx.current:
        taken = current.medication.posology
        if current.drug is None or not isinstance(taken, Posology):
            continue
        for limit, (amount, _) in _daily_amounts(current.drug, taken, ctx.tables).items():
            if limit in per_limit:
                per_limit[limit].append(
                    (amount, f"le traitement en cours ({current.name})", None))
    for limit, parts in per_limit.items():
        _check_total(ctx, limit, parts, alerted)


def _elderly(ctx: _Context, limit: DoseLimit) -> bool:
    return (limit.elderly_max_daily is not None and limit.elderly_from_age is not None
            and ctx.age is not None and ctx.age >= limit.elderly_from_age)


def _check_total(ctx: _Context, limit: DoseLimit,
                 parts: list[tuple[Decimal, str, int | None]],
                 alerted: set[tuple[DoseLimit, bool]]) -> None:
    if len(parts) < 2:
        return
    total = sum((amount for amount, _, _ in parts), Decimal(0))
    last = max(index for _, _, index in parts if index is not None)
    prefix = next(name for _, name, index in parts if index == last)
    others = [name.replace("Ligne", "la ligne", 1) if index is not None else name
              for _, name, index in parts if index != last]
    together = (f"{prefix} : avec {' et '.join(others)}, {_quantity(total, limit.unit)} "
                f"{_of(limit.substance)} par jour au total")
    if _over(total, limit.max_daily):
        if (limit, False) not in alerted:
            ctx.add("dose.max_daily_combined", Severity.BLOQUANT,
                    f"{together}, au-dessus de la dose maximale de "
                    f"{_quantity(limit.max_daily, limit.unit)} par jour chez l'adulte",
                    limit.source, last)
    elif (_elderly(ctx, limit) and _over(total, limit.elderly_max_daily or total)
          and (limit, True) not in alerted):
        ctx.add("dose.max_daily_elderly_combined", Severity.IMPORTANT,
                f"{together}, au-dessus de la dose maximale de "
                f"{_quantity(limit.elderly_max_daily or total, limit.unit)} par jour à partir "
                f"de {limit.elderly_from_age} ans", limit.source, last)


# -- duplicates ----------------------------------------------------------------------------
def _routes_overlap(a: DrugInfo, b: DrugInfo) -> bool:
    """Two forms can duplicate each other's substance: both systemic, or a shared route (an
    eye drop and a tablet of the same substance are not a duplicate)."""
    if not a.routes or not b.routes:
        return True
    if set(a.routes) & set(b.routes):
        return True
    return _systemic(a) and _systemic(b)


# Electrolytes that compound preparations (macrogol with electrolytes, oral rehydration
# salts) carry in small amounts beside their active substance: shared with a drug of their
# own (DIFFU-K and MOVICOL both list potassium chloride) they are not a duplicate treatment.
_ELECTROLYTES = ("chlorure de sodium", "chlorure de potassium", "bicarbonate de sodium",
                 "sulfate de sodium", "chlorure de calcium", "chlorure de magnesium",
                 "citrate de sodium", "citrate de potassium")
COMPOUND_GROUPS = 3


@dataclass(frozen=True)
class _Substances:
    """A drug's substance codes and moieties, all of them and without the electrolytes."""

    compound: bool
    every: frozenset[str]
    major: frozenset[str]


def _substances(drug: DrugInfo) -> _Substances:
    """Kept with the drug record: the drug facts adapter hands out the same records again."""
    found = drug.derived.get("checks.substances")
    if not isinstance(found, _Substances):  # None: not computed yet
        found = drug.derived["checks.substances"] = _compute_substances(drug)
    return found


def _compute_substances(drug: DrugInfo) -> _Substances:
    every = {c.substance_code for c in drug.components} | {"m:" + c.moiety
                                                           for c in drug.components}
    minor = {c.substance_code for c in drug.components if _minor(c)} | {
        "m:" + c.moiety for c in drug.components if _minor(c)}
    compound = len({c.group for c in drug.components}) >= COMPOUND_GROUPS
    return _Substances(compound, frozenset(every), frozenset(every - minor))


def _minor(component: Component) -> bool:
    return folded(component.substance).startswith(_ELECTROLYTES)


def _shared(a: DrugInfo, b: DrugInfo, sa: _Substances,
            sb: _Substances) -> tuple[str, str] | None:
    """(substance name as shown, code) of a substance in both drugs, or None."""
    common = sa.major & sb.major if sa.compound or sb.compound else sa.every & sb.every
    if not common:
        return None
    codes = {k for k in common if not k.startswith("m:")}
    moieties = {k[2:] for k in common if k.startswith("m:")}
    shown = set(a.shown_substances())
    for c in a.components:
        if (c.substance_code in codes or c.moiety in moieties) and c.substance in shown:
            return c.substance, c.substance_code
    c = next(c for c in a.components if c.substance_code in codes or c.moiety in moieties)
    return c.substance, c.substance_code


def _check_duplicates(ctx: _Context) -> None:
    known = [item for item in ctx.lines if item.drug is not None]
    current = [c for c in ctx.current if c.drug is not None]
    both: list[_Line | _Current] = [*known, *current]
    subs = {id(x.drug): _substances(x.drug) for x in both if x.drug is not None}
    for j, later in enumerate(known):
        assert later.drug is not None
        mine = subs[id(later.drug)]
        for earlier in known[:j]:
            assert earlier.drug is not None
            theirs = subs[id(earlier.drug)]
            if not (mine.every & theirs.every) or not _routes_overlap(later.drug, earlier.drug):
                continue
            shared = _shared(later.drug, earlier.drug, mine, theirs)
            if shared:
                ctx.add("duplicate.substance", Severity.IMPORTANT,
                        f"{later.prefix} : même substance ({shared[0]}) que la ligne "
                        f"{earlier.index + 1} ({earlier.name})",
                        f"{BDPM_COMPO} : code substance {shared[1]}", later.index)
        for other in current:
            assert other.drug is not None
            theirs = subs[id(other.drug)]
            if not (mine.every & theirs.every) or not _routes_overlap(later.drug, other.drug):
                continue
            shared = _shared(later.drug, other.drug, mine, theirs)
            if shared:
                ctx.add("duplicate.current", Severity.IMPORTANT,
                        f"{later.prefix} : même substance ({shared[0]}) que le traitement en "
                        f"cours : {other.name}",
                        f"{BDPM_COMPO} : code substance {shared[1]}", later.index)


# -- allergies -----------------------------------------------------------------------------
def _check_allergies(ctx: _Context) -> None:
    for item in ctx.lines:
        if item.drug is None:
            continue
        for allergy in ctx.resident.allergies:
            hit = next((c for c in item.drug.components if allergy.concerns(c)), None)
            if hit is None:
                continue
            when = allergy.recorded_on.strftime("%d/%m/%Y")
            ctx.add("allergy.substance", Severity.BLOQUANT,
                    f"{item.prefix} : contient {hit.substance}, substance à laquelle le "
                    f"résident est allergique ou intolérant ({allergy.substance})",
                    f"Allergie enregistrée le {when}, source : {allergy.source}", item.index)


# -- prescription conditions ---------------------------------------------------------------
def _source(conditions: Iterable[Condition]) -> str:
    return f"{BDPM_CPD} : " + " ; ".join(f"« {c.text} »" for c in conditions)


def _check_conditions(ctx: _Context) -> None:
    for item in ctx.lines:
        if item.drug is None:
            continue
        by_kind: dict[ConditionKind, list[Condition]] = {}
        for text in item.drug.conditions:
            condition = classify(text)
            if condition is not None:
                by_kind.setdefault(condition.kind, []).append(condition)
        _conditions_of_line(ctx, item, by_kind)


def _conditions_of_line(ctx: _Context, item: _Line,
                        by_kind: dict[ConditionKind, list[Condition]]) -> None:
    p = item.prefix
    refusals = by_kind.get(ConditionKind.HOSPITAL_ONLY, []) + by_kind.get(
        ConditionKind.PUI_ONLY, [])
    if by_kind.get(ConditionKind.HOSPITAL_ONLY):
        ctx.add("condition.hospital_only", Severity.BLOQUANT,
                f"{p} : réservé à l'usage hospitalier, ne peut pas être prescrit ici",
                _source(refusals), item.index, overridable=False)
    elif by_kind.get(ConditionKind.PUI_ONLY):
        ctx.add("condition.pui_only", Severity.BLOQUANT,
                f"{p} : délivrance réservée aux pharmacies à usage intérieur, ne peut pas être "
                "prescrit ici", _source(refusals), item.index, overridable=False)
    simple = (
        (ConditionKind.HOSPITAL_PRESCRIPTION, "condition.hospital_prescription",
         "prescription hospitalière"),
        (ConditionKind.INITIAL_HOSPITAL, "condition.initial_hospital",
         "prescription initiale hospitalière requise"),
        (ConditionKind.SPECIALIST, "condition.specialist", "prescription restreinte"),
        (ConditionKind.RESTRICTED_USE, "condition.restricted_use", "usage restreint"),
    )
    for kind, code, what in simple:
        found = by_kind.get(kind)
        if found:
            texts = " ; ".join(c.text for c in found)
            ctx.add(code, Severity.IMPORTANT, f"{p} : {what} ({texts})", _source(found),
                    item.index)
    limits = by_kind.get(ConditionKind.MAX_DURATION)
    if limits:
        _check_duration(ctx, item, min(limits, key=lambda c: c.max_days or 0))
    secure = by_kind.get(ConditionKind.SECURE, []) + by_kind.get(ConditionKind.FRACTIONED, [])
    if by_kind.get(ConditionKind.SECURE):
        texts = " ; ".join(c.text for c in secure)
        ctx.add("condition.secure_prescription", Severity.INFO,
                f"{p} : à prescrire sur ordonnance sécurisée, en toutes lettres ({texts})",
                _source(secure), item.index)
    if by_kind.get(ConditionKind.MONITORING):
        ctx.add("condition.monitoring", Severity.INFO,
                f"{p} : médicament nécessitant une surveillance particulière pendant le "
                "traitement", _source(by_kind[ConditionKind.MONITORING]), item.index)


def _check_duration(ctx: _Context, item: _Line, limit: Condition) -> None:
    posology = item.line.posology
    renewals = item.line.renewals
    days = (amounts.duration_days(posology, renewals)
            if isinstance(posology, Posology) else None)
    if days is None:
        ctx.add("condition.duration_unknown", Severity.INFO,
                f"{item.prefix} : {limit.text} ; précisez la durée du traitement",
                _source([limit]), item.index)
        return
    shortest, _ = days
    if limit.max_days is not None and shortest > limit.max_days:
        with_renewals = f", renouvellements compris ({renewals})" if renewals else ""
        ctx.add("condition.max_duration", Severity.BLOQUANT,
                f"{item.prefix} : {shortest} jours de traitement{with_renewals}, au-delà de "
                f"la durée autorisée ({limit.text})", _source([limit]), item.index)


# -- potentially inappropriate medications -------------------------------------------------
def _check_pims(ctx: _Context) -> None:
    if ctx.age is None or ctx.age < PIM_AGE:
        return
    for item in ctx.lines:
        if item.drug is None:
            continue
        for component in item.drug.components:
            criteria = ctx.tables.pim_criteria(item.drug, component)
            hit = next((c for c in criteria if _pim_applies(c, item, component)), None)
            if hit is None:
                continue
            alternative = f" Alternative : {hit.alternative}." if hit.alternative else ""
            ctx.add("pim.laroche", Severity.IMPORTANT,
                    f"{item.prefix} : médicament potentiellement inapproprié à partir de "
                    f"{PIM_AGE} ans — {hit.criterion} : {hit.reason}.{alternative}",
                    hit.source, item.index)
            break


def _pim_applies(criterion: PimCriterion, item: _Line, component: Component) -> bool:
    if criterion.max_daily is None:
        return True
    posology = item.line.posology
    if not isinstance(posology, Posology) or item.drug is None:
        return False  # a dose criterion needs a dose: none is better than a guess
    if not criterion.selector.matches(component):  # the exact substance, not another salt
        return False
    units = amounts.units_per_day(posology)
    if units is None:
        return False
    amount = amounts.amount_in(component, item.drug, units, posology.unit, _family(item.drug))
    return (amount is not None and amount[1] == criterion.unit
            and _over(amount[0], criterion.max_daily))


# -- interactions --------------------------------------------------------------------------
_INTERACTION_SEVERITY = {
    InteractionLevel.CONTRAINDICATION: ("interaction.contraindication", Severity.BLOQUANT),
    InteractionLevel.NOT_RECOMMENDED: ("interaction.not_recommended", Severity.IMPORTANT),
    InteractionLevel.PRECAUTION: ("interaction.precaution", Severity.INFO),
    InteractionLevel.TAKE_INTO_ACCOUNT: ("interaction.take_into_account", Severity.INFO),
}


def _check_interactions(ctx: _Context, source: InteractionSource) -> None:
    drugs: list[DrugInfo] = []
    owners: list[_Line | _Current] = []
    for item in ctx.lines:
        if item.drug is not None:
            drugs.append(item.drug)
            owners.append(item)
    for current in ctx.current:
        if current.drug is not None:
            drugs.append(current.drug)
            owners.append(current)
    if len(drugs) < 2:
        return
    for found in source.interactions(drugs):
        if not (0 <= found.first < len(owners) and 0 <= found.second < len(owners)):
            continue
        a, b = owners[found.first], owners[found.second]
        lines = sorted((x for x in (a, b) if isinstance(x, _Line)), key=lambda x: x.index)
        if not lines:
            continue  # both already in the current treatment: not this draft's doing
        target = lines[-1]
        other = b if target is a else a
        with_ = (f"la ligne {other.index + 1} ({other.name})" if isinstance(other, _Line)
                 else f"le traitement en cours ({other.name})")
        code, severity = _INTERACTION_SEVERITY[InteractionLevel(found.level)]
        ctx.add(code, severity, f"{target.prefix} : {found.level} avec {with_} — {found.text}",
                found.source, target.index)


# -- the entry point -----------------------------------------------------------------------
def check(draft: DraftLike, resident: ResidentProfile,
          current_treatment: Sequence[CurrentMedication], facts: DrugFacts, *, today: date,
          interactions: InteractionSource | None = None,
          tables: Tables | None = None) -> list[Alert]:
    """Every alert on ``draft`` for ``resident``, most severe first."""
    prefetch = getattr(facts, "prefetch", None)
    if prefetch is not None:
        meds: list[MedicationLine | CurrentMedication] = [
            *(line for line in draft.lines if isinstance(line, MedicationLine)),
            *current_treatment]
        prefetch(cis=[m.cis for m in meds if m.cis and not m.cip13],
                 cip13=[m.cip13 for m in meds if m.cip13])
    lines = [_Line(i, line, facts.drug(cis=line.cis, cip13=line.cip13))
             for i, line in enumerate(draft.lines) if isinstance(line, MedicationLine)]
    current = [_Current(m, facts.drug(cis=m.cis, cip13=m.cip13)) for m in current_treatment
               if m.until is None or m.until >= today]
    ctx = _Context(lines, current, resident.age(today), resident,
                   tables or load_tables())
    for item in lines:
        _check_posology(ctx, item)
    _check_doses(ctx)
    _check_duplicates(ctx)
    _check_allergies(ctx)
    _check_conditions(ctx)
    _check_pims(ctx)
    if interactions is not None:
        _check_interactions(ctx, interactions)
    return sort_alerts(ctx.alerts)
