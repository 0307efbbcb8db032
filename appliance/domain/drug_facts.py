"""What the prescribing-safety checks know about a drug and about a resident's allergies.

A ``DrugInfo`` is one specialty (CIS) as a drug database describes it: its form, routes,
prescription conditions and active components. A ``Component`` is one active substance of
one pharmaceutical element, with its strength when the source gives it in a form the checks
can compute with (mg or UI per counted unit or per mL). The BDPM adapter
(``appliance.store.referential.facts``) builds them from the ANSM files; a licensed drug
database could build the same records.

``moiety_key`` folds a substance name to the active moiety it names, dropping the salt,
hydrate or counter-ion words, so that ``CHLORHYDRATE DE TRAMADOL``, ``TRAMADOL
(CHLORHYDRATE DE)`` and ``TRAMADOL BASE`` meet while ``CHLORURE DE SODIUM`` and ``CHLORURE
DE POTASSIUM`` stay apart.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal

from appliance.domain.people import fold

MASS_UNIT = "mg"
IU_UNIT = "UI"



def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


# Salt, hydrate and counter-ion words (folded), dropped by ``moiety_key``.
_SALT_WORDS = _words("""
    chlorhydrate dichlorhydrate monochlorhydrate bromhydrate hydrobromure maleate hydrogenomaleate
    besilate besylate mesilate mesylate fumarate hemifumarate tartrate hydrogenotartrate
    bitartrate succinate hemisuccinate acetate sulfate hydrogenosulfate bisulfate phosphate
    oxalate tosilate tosylate citrate dihydrogenocitrate lactate gluconate nitrate carbonate
    valerate propionate dipropionate butyrate embonate pamoate napadisilate camsilate
    metilsulfate methylsulfate hydrogenooxalate glycerophosphate hydrogenophosphate
    dihydrogenophosphate palmitate aspartate caproate malate decanoate pivalate furoate
    acetonide digluconate diisethionate diisetionate ditartrate dimaleate hyclate
    trifluoroacetate hydrogenosuccinate
    sodique disodique potassique dipotassique calcique magnesique sodium potassium
    arginine erbumine tert butylamine diethylamine epolamine meglumine trometamol
    hydrate hydratee monohydrate monohydratee dihydrate dihydratee trihydrate trihydratee
    hemihydrate hemihydratee sesquihydrate sesquihydratee hemipentahydrate anhydre base
    de d du des
""")
# Words that name an anion alone: a name that would fold to these keeps its salt words.
_ANION_WORDS = _words("""
    chlorure iodure fluorure bromure sulfate carbonate phosphate citrate acetate gluconate
    lactate nitrate oxyde hydroxyde bicarbonate hydrogenocarbonate
""")
_PARENTHESIS = re.compile(r"^(?P<outer>[^()]+?)\s*\((?P<inner>[^()]+)\)\s*$")
_WORD = re.compile(r"[a-z0-9]+")


@functools.lru_cache(maxsize=1 << 14)
def folded(name: str) -> str:
    """``fold`` of a substance, specialty or form name, cached."""
    return fold(name)


@functools.lru_cache(maxsize=1 << 14)
def moiety_key(name: str) -> str:
    """The folded name of the active moiety: 'BÉSILATE D'AMLODIPINE' -> 'amlodipine'.

    Cached: the checks ask for the same few hundred substances over and over."""
    text = fold(name.replace("œ", "oe").replace("Œ", "OE")).strip()
    match = _PARENTHESIS.match(text)
    if match:  # "amlodipine (besilate d')" reads as "besilate d' amlodipine"
        text = f"{match['inner']} {match['outer']}"
    words = _WORD.findall(text)
    kept = [w for w in words if w not in _SALT_WORDS]
    if not kept or all(w in _ANION_WORDS for w in kept):
        kept = [w for w in words if w not in {"de", "d", "du", "des"}]
    return " ".join(kept)


@dataclass(frozen=True, slots=True)
class Component:
    """One active substance of one element of a specialty.

    ``amount``/``amount_unit``: the strength in mg or UI (None when the source gives it
    otherwise, e.g. "2CH", "qsp", a concentration); it is the amount in ``per_count`` units
    of ``per_unit`` (e.g. 1 "comprimé") and/or in ``per_ml`` millilitres. ``nature`` is SA
    (active substance) or FT (therapeutic fraction: the base of a salt); ``element`` and
    ``link`` group an SA with the FT it is expressed as.
    """

    substance_code: str
    substance: str
    nature: str = "SA"
    element: str = ""
    link: int = 0
    amount: Decimal | None = None
    amount_unit: str | None = None
    per_unit: str | None = None
    per_ml: Decimal | None = None
    dosage_text: str = ""

    @property
    def moiety(self) -> str:
        return moiety_key(self.substance)

    @property
    def group(self) -> tuple[str, int]:
        return (self.element, self.link)


@dataclass(frozen=True, slots=True)
class DrugInfo:
    """A specialty: name, form, routes, prescription conditions, active components."""

    cis: str
    name: str
    form: str = ""
    routes: tuple[str, ...] = ()
    conditions: tuple[str, ...] = ()
    components: tuple[Component, ...] = ()
    # Values derived from the fields above by their readers, kept with the record (the drug
    # facts adapter hands the same record out again and again); not part of its identity.
    derived: dict[str, object] = field(default_factory=dict, init=False, repr=False,
                                       compare=False, hash=False)

    @property
    def substance_codes(self) -> frozenset[str]:
        return frozenset(c.substance_code for c in self.components)

    @property
    def moieties(self) -> frozenset[str]:
        return frozenset(c.moiety for c in self.components)

    @property
    def single_substance(self) -> bool:
        """One active moiety (a salt and its base count once)."""
        return len({c.group for c in self.components}) == 1

    def shown_substances(self) -> tuple[str, ...]:
        """Substance names as a physician reads them: the FT of a group, else its SA."""
        groups: dict[tuple[str, int], list[Component]] = {}
        for c in self.components:
            groups.setdefault(c.group, []).append(c)
        names: dict[str, None] = {}
        for members in groups.values():
            fractions = [c for c in members if c.nature == "FT"]
            for c in fractions or members:
                names[c.substance] = None
        return tuple(names)


@dataclass(frozen=True, slots=True)
class Allergy:
    """An allergy or intolerance of a resident to one substance, with when and who said so."""

    substance_code: str
    substance: str
    recorded_on: date
    source: str
    id: int | None = None

    @property
    def moiety(self) -> str:
        return moiety_key(self.substance)

    def concerns(self, component: Component) -> bool:
        """The component is this substance (same code) or the same moiety (another salt)."""
        return (component.substance_code == self.substance_code
                or component.moiety == self.moiety)
