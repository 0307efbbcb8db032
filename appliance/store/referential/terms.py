"""Strengths, forms and age groups: read from the BDPM at import and from the query.

One tokenizer reads both a specialty's name ("LOVENOX 4 000 UI (40 mg)/0,4 mL, solution
injectable") and what a physician types ("lovenox 4000ui", "doliprane 1g cp"), so that
the two meet as the same **facet tokens**, stored beside each search document:

- strengths, in one canonical unit per dimension: ``m`` mass in mg (``1 g``, ``1000 mg``
  and ``1000mg`` are all ``m1000``; ``25 µg`` is ``m0d025``, ``d`` standing for the
  decimal point), ``v`` volume in ml, ``u`` international units, ``p`` percent;
- ``n`` + every number as written (``n1`` for "1 g", ``n25`` for "25 microgrammes"):
  a number typed without a unit matches it, or its value in mg, or a longer number it
  starts (typing "doliprane 10" on the way to "1000");
- ``f`` + a form family (``fcp`` comprimé, ``fgel`` gélule, ``fsach`` sachet, ``finj``
  injectable…), from the specialty's form, name and pack;
- ``xped`` for paediatric presentations, ``xadu`` for the others;
- ``b`` + the number of units in the box (``b30``), for "x30", "x 30" or "bte de 30".

A word of the query that names a form ("cp", "cpr", "gél", "sachet", "buv", "inj",
"suppo"…) or an age group ("enfant", "nourrisson", "adulte") is a filter on those tokens
when a drug word comes before it; a number is a filter on the strengths. Everything else
is a word matched against names and substances (see ``search``). Pure functions.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation

from appliance.store.referential.text import fold_french

MASS, VOLUME, UNITS, PERCENT = "m", "v", "u", "p"
NUMBER = "n"
BOX = "b"  # + the number of units in the box: "b30"
BOX_WORDS = frozenset({"x", "bte", "boite", "boites", "bt"})
_BOX_GLUED = re.compile(r"x([0-9]+)")
PAEDIATRIC, ADULT = "xped", "xadu"

# Unit spellings (folded, "µ" read as "u") -> (dimension, factor to the canonical unit).
UNIT_FACTORS: dict[str, tuple[str, Decimal]] = {
    **dict.fromkeys(("mg", "milligramme", "milligrammes"), (MASS, Decimal(1))),
    **dict.fromkeys(("g", "gr", "gramme", "grammes"), (MASS, Decimal(1000))),
    **dict.fromkeys(("ug", "mcg", "microg", "microgramme", "microgrammes", "gamma"),
                    (MASS, Decimal("0.001"))),
    **dict.fromkeys(("ng", "nanogramme", "nanogrammes"), (MASS, Decimal("0.000001"))),
    **dict.fromkeys(("ml", "millilitre", "millilitres"), (VOLUME, Decimal(1))),
    **dict.fromkeys(("l", "litre", "litres"), (VOLUME, Decimal(1000))),
    **dict.fromkeys(("ul", "microlitre", "microlitres"), (VOLUME, Decimal("0.001"))),
    **dict.fromkeys(("ui", "u", "unite", "unites"), (UNITS, Decimal(1))),
    **dict.fromkeys(("mui",), (UNITS, Decimal(1000000))),
    "%": (PERCENT, Decimal(1)),
}

# Form words of the query (folded) -> facet tokens; abbreviations as prescriptions use them.
_FORMS: dict[tuple[str, ...], tuple[str, ...]] = {
    ("cp", "cpr", "cpe", "cps", "cprs", "comp", "compr", "comprime", "comprimes"): ("fcp",),
    ("gel",): ("fgel", "fgelc"),  # "gél" (gélule) and a gel both fold to "gel"
    ("gelu", "gelul", "gelule", "gelules"): ("fgel",),
    ("caps", "capsule", "capsules"): ("fcaps",),
    ("sach", "sachet", "sachets"): ("fsach",),
    ("buv", "buvable", "buvables"): ("fbuv",),
    ("sirop", "sirops"): ("fsirop",),
    ("inj", "injectable", "injectables", "amp", "ampoule", "ampoules", "perf",
     "perfusion"): ("finj",),
    ("sup", "supp", "suppo", "suppos", "suppositoire", "suppositoires"): ("fsupp",),
    ("eff", "efferv", "effervescent", "effervescents", "effervescente"): ("feff",),
    ("oro", "orodisp", "orodispersible", "orodispersibles", "lyoc"): ("foro",),
    ("sol", "solution"): ("fsol",),
    ("susp", "suspension"): ("fsusp",),
    ("pdr", "poudre"): ("fpdr",),
    ("gran", "granule", "granules"): ("fgran",),
    ("gtt", "goutte", "gouttes"): ("fgtt",),
    ("coll", "collyre"): ("fcoll",),
    ("pom", "pommade"): ("fpom",),
    ("creme",): ("fcreme",),
    ("patch", "patchs", "transdermique"): ("fpatch",),
    ("lp",): ("flp",),
    ("sec", "secable"): ("fsec",),
    ("enfant", "enfants", "nourrisson", "nourrissons", "pediatrique", "bebe",
     "junior"): (PAEDIATRIC,),
    ("adulte", "adultes"): (ADULT,),
}
FORM_WORDS: dict[str, tuple[str, ...]] = {
    word: tokens for words, tokens in _FORMS.items() for word in words}

# Facet form tokens of a document: the words of its form, name and pack that give them.
_DOC_FORM_WORDS: dict[str, tuple[str, ...]] = {
    "comprime": ("fcp",), "gelule": ("fgel",), "gel": ("fgelc",), "capsule": ("fcaps",),
    "sachet": ("fsach",), "buvable": ("fbuv",), "sirop": ("fbuv", "fsirop"),
    "injectable": ("finj",), "perfusion": ("finj",), "suppositoire": ("fsupp",),
    "effervescent": ("feff",), "orodispersible": ("foro",), "lyophilisat oral": ("foro",),
    "solution": ("fsol",), "suspension": ("fsusp",), "poudre": ("fpdr",),
    "granule": ("fgran",), "goutte": ("fgtt",), "collyre": ("fcoll",),
    "pommade": ("fpom",), "creme": ("fcreme",), "transdermique": ("fpatch",),
    "patch": ("fpatch",), "liberation prolongee": ("flp",), "lp": ("flp",),
    "secable": ("fsec",),
}
_DOC_FORMS = re.compile(r"\b(" + "|".join(
    rf"{word}\b" if word in ("gel", "lp") else word
    for word in sorted(_DOC_FORM_WORDS, key=len, reverse=True)) + ")")
# Words in a specialty's name that say it is for children (BDPM names: "ENFANTS ET
# NOURRISSONS", "PEDIATRIQUE", "BEBE", "NOUVEAU-NE", "JUNIOR").
_PAEDIATRIC_NAME = re.compile(
    r"\b(enfants?|nourrissons?|nourissons?|pediatriques?|bebes?|nouveau\s*nes?|junior)\b")
# Form classes, best first for an adult in a geriatric ward (see ``build.drug_rank``).
SOLID, SPECIAL_SOLID, OTHER_ORAL, OTHER_ROUTE = 0, 1, 2, 3
_SPECIAL_SOLID = re.compile(r"effervescent|dispersible|\ba croquer|\ba sucer|\blyophilisat"
                            r"|\bpastille|\bgomme")
_SOLID_ORAL_FORM = re.compile(r"\bcomprime|\bgelule|\bcapsule|\blyophilisat|\bpastille"
                              r"|\bgomme")
_ORAL_ROUTES = frozenset({"orale", "buccale", "sublinguale"})

_NON_WORD = re.compile(r"[\W_]+")
_DIGIT = re.compile(r"[0-9]")
# Digits are ASCII ones: the index holds numbers as the BDPM writes them.
# A number and the letters glued to it ("1000mg"); a word (letters, or one or two letters
# and digits: "b12", "d3"; "doliprane1000" is a word and a number); a percent sign.
_CHUNK = re.compile(r"([0-9]+(?:[.,][0-9]+)?)([a-z]*)|([a-z]{1,2}[0-9][a-z0-9]*|[a-z]+)|(%)")
_UI = re.compile(r"\b(m\.?\s?)?u\.\s?i\b\.?")
# "4 000 UI", "1 000 000 UI": digits grouped by three, then a unit.
_THOUSANDS = re.compile(r"(?<![0-9.,])[0-9]{1,3}(?: [0-9]{3})+(?![0-9.,])"
                        r"(?=\s*(?:ui|u|mui|mg|g|ug|mcg|ml|%)(?![a-z0-9]))")


def _join_thousands(match: re.Match[str]) -> str:
    return match.group().replace(" ", "")


@dataclass(frozen=True, slots=True)
class Amount:
    """A number read in a text, with its unit if one followed it."""

    value: Decimal
    dimension: str | None = None  # MASS, VOLUME, UNITS, PERCENT or None (no unit)
    canonical: Decimal | None = None  # the value in mg, ml, UI or %

    def tokens(self) -> tuple[str, ...]:
        """The facet tokens a document with this amount carries."""
        written = NUMBER + number_token(self.value)
        if self.dimension is None or self.canonical is None:
            return (written,)
        return (written, self.dimension + number_token(self.canonical))


@dataclass(frozen=True, slots=True)
class Query:
    """What a search text asks for.

    ``words``: folded words matched against names and substances; ``filters``: one
    tuple of facet alternatives per number or form word (each filter must match one of
    its alternatives; an alternative ending in ``*`` is a prefix).
    """

    words: tuple[str, ...]
    filters: tuple[tuple[str, ...], ...]
    amounts: tuple[Amount, ...] = ()

    @property
    def empty(self) -> bool:
        return not self.words and not self.filters


@functools.lru_cache(maxsize=1 << 12)
def number_token(value: Decimal) -> str:
    """``1000``, ``0d025``: a number as FTS5 keeps it in one token."""
    text = format(value.normalize(), "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text.replace(".", "d")


def _decimal(text: str) -> Decimal | None:
    try:
        value = Decimal(text.replace(",", "."))
    except InvalidOperation:
        return None
    return value if value.is_finite() else None


@functools.lru_cache(maxsize=1 << 16)
def fold_text(text: str) -> str:
    """Lower case without accents, "µ" read as "u", "U.I." as "ui", "pour cent" as "%".

    Cached: an import reads the same forms, dosages and pack labels many times."""
    folded = fold_french(text).replace("\u03bc", "u")
    if "u." in folded or "u ." in folded:
        folded = _UI.sub(lambda m: " mui " if m.group(1) else " ui ", folded)
    return folded.replace("pour cent", "%")


def _is_unit_prefix(word: str) -> bool:
    return any(unit.startswith(word) for unit in UNIT_FACTORS)


def _is_form_prefix(word: str) -> bool:
    return any(form.startswith(word) for form in FORM_WORDS)


@dataclass
class _Reading:
    words: list[str]
    amounts: list[tuple[Amount, bool]]  # (amount, bare number typed last: also a prefix)
    forms: list[tuple[str, ...]]
    boxes: list[int] = field(default_factory=list)


def _read(folded: str, typing: bool) -> _Reading:
    """Split a folded text (``fold_text``) into words, amounts and form words.

    ``typing``: the text is a query being typed, so its last chunk may be unfinished
    ("doliprane 1000m", "tramadol 50 g" on the way to "gél")."""
    chunks = _CHUNK.findall(_THOUSANDS.sub(_join_thousands, folded))
    reading = _Reading([], [], [])
    i, count = 0, len(chunks)
    while i < count:
        number, suffix, word, _ = chunks[i]
        i += 1
        if not number:
            if not word:
                continue
            if reading.words and (word in BOX_WORDS or _BOX_GLUED.fullmatch(word)):
                # "x30", "x 30", "bte de 30": the box size; dropped while still typed
                glued = _BOX_GLUED.fullmatch(word)
                if glued:
                    reading.boxes.append(int(glued.group(1)))
                    continue
                if i < count and chunks[i][2] == "de":
                    i += 1
                if i < count and chunks[i][0].isdigit() and not chunks[i][1]:
                    reading.boxes.append(int(chunks[i][0]))
                    i += 1
                    continue
                if i >= count and typing:
                    continue
            if word in FORM_WORDS and reading.words:
                reading.forms.append(FORM_WORDS[word])
            else:
                reading.words.append(word)
            continue
        value = _decimal(number)
        if value is None:
            continue
        unit = suffix
        if not unit and i < count and (chunks[i][2] in UNIT_FACTORS or chunks[i][3]):
            unit = chunks[i][2] or chunks[i][3]
            i += 1
            if typing and i == count and _is_form_prefix(unit):
                unit = ""  # "tramadol 50 g": the unit, or "gél" being typed
        last = i == count
        if unit in UNIT_FACTORS:
            dimension, factor = UNIT_FACTORS[unit]
            reading.amounts.append((Amount(value, dimension, value * factor), False))
            continue
        reading.amounts.append((Amount(value), typing and (last or bool(suffix))))
        if suffix:
            if suffix in FORM_WORDS:
                reading.forms.append(FORM_WORDS[suffix])
            elif not (typing and last and (_is_unit_prefix(suffix) or _is_form_prefix(suffix))):
                reading.words.append(suffix)
    return reading


@functools.lru_cache(maxsize=4096)
def parse_query(text: str) -> Query:
    """The words, strength filters and form filters of a search text."""
    # The last chunk may be unfinished, unless a space follows it.
    reading = _read(fold_text(text), typing=not text[-1:].isspace())
    filters: list[tuple[str, ...]] = []
    for amount, prefix in reading.amounts:
        if amount.dimension is not None and amount.canonical is not None:
            filters.append((amount.dimension + number_token(amount.canonical),))
            continue
        written = number_token(amount.value)
        alternatives = [NUMBER + written, MASS + written]
        if prefix or amount.value == amount.value.to_integral_value():
            alternatives.append(NUMBER + written + "*")
        filters.append(tuple(alternatives))
    filters.extend(reading.forms)
    filters.extend((BOX + str(count),) for count in reading.boxes)
    return Query(tuple(reading.words), tuple(dict.fromkeys(filters)),
                 tuple(amount for amount, _ in reading.amounts))


@functools.lru_cache(maxsize=1 << 14)
def amounts(text: str) -> tuple[Amount, ...]:
    """Every number of a finished text (a name, a dosage), with its unit if any."""
    return _amounts(fold_text(text))


def _amounts(folded: str) -> tuple[Amount, ...]:
    first = _DIGIT.search(folded)
    # The words before the first number are not amounts; what follows it repeats from
    # name to name ("1 g, comprime"), hence the cache.
    return () if first is None else _amounts_from(folded[first.start():])


@functools.lru_cache(maxsize=1 << 14)
def _amounts_from(folded: str) -> tuple[Amount, ...]:
    return tuple(amount for amount, _ in _read(folded, typing=False).amounts)


# --- documents ------------------------------------------------------------------------


def _form_tokens(folded: str) -> frozenset[str]:
    return frozenset(token for found in _DOC_FORMS.findall(folded)
                     for token in _DOC_FORM_WORDS[found])


@functools.lru_cache(maxsize=1 << 10)
def _form_facts(form: str, routes: tuple[str, ...]) -> tuple[frozenset[str], int]:
    """The form tokens of a specialty's form, and its class (see ``NameFacts``)."""
    folded = fold_text(form)
    if not _ORAL_ROUTES.intersection(fold_text(route) for route in routes):
        form_class = OTHER_ROUTE
    elif not _SOLID_ORAL_FORM.search(folded):
        form_class = OTHER_ORAL
    else:
        form_class = SPECIAL_SOLID if _SPECIAL_SOLID.search(folded) else SOLID
    return _form_tokens(folded), form_class


@dataclass(frozen=True, slots=True)
class NameFacts:
    """What a specialty's name, form and routes say, for its search documents.

    ``stem``: the folded name before its first number or comma ("doliprane",
    "paracetamol arrow", "movicol"); ``tokens``: the facet tokens of its strengths and
    forms; ``strength``: its first mass in mg when that is a strength per unit (not per
    ml or per g); ``paediatric``: the name says it is for children; ``form_class``:
    ``SOLID`` a tablet or capsule to swallow, ``SPECIAL_SOLID`` an effervescent,
    dispersible, orodispersible or chewable one, ``OTHER_ORAL`` a sachet, solution,
    syrup…, ``OTHER_ROUTE`` any other route.
    """

    stem: str
    tokens: frozenset[str]
    strength: Decimal | None
    paediatric: bool
    form_class: int


_STEM = re.compile(r"[^0-9,]*")
_UNIT_STRENGTH = re.compile(r"([0-9]+(?:[.,][0-9]+)?)\s*(mg|g|ug|microgrammes?)\b"
                            r"(\s*/\s*[0-9]*[.,]?[0-9]*\s*(ml|g|l)\b)?")


def name_facts(name: str, form: str, routes: tuple[str, ...]) -> NameFacts:
    """Read a specialty's name, form and routes once (see ``NameFacts``)."""
    folded = fold_text(name)
    stem_match = _STEM.match(folded)
    head = stem_match.group() if stem_match else ""
    tail_tokens, strength, child = _tail_facts(folded[len(head):])
    form_tokens, form_class = _form_facts(form, routes)
    return NameFacts(
        " ".join(_NON_WORD.sub(" ", head).split()),
        tail_tokens | form_tokens | _form_tokens(head), strength,
        child or bool(_PAEDIATRIC_NAME.search(head.replace("-", " "))), form_class)


@functools.lru_cache(maxsize=1 << 14)
def _tail_facts(tail: str) -> tuple[frozenset[str], Decimal | None, bool]:
    """Tokens, strength per unit and paediatric words of a name from its first number
    or comma on ("1 g, comprime"): the same tail ends many names."""
    tokens = {token for amount in _amounts(tail) for token in amount.tokens()}
    tokens.update(_form_tokens(tail))
    strength = None
    found = _UNIT_STRENGTH.search(tail)
    if found is not None and not found.group(3):
        value = _decimal(found.group(1))
        strength = None if value is None else value * UNIT_FACTORS[found.group(2)][1]
    return frozenset(tokens), strength, bool(_PAEDIATRIC_NAME.search(tail.replace("-", " ")))


_PACK_VOLUME = re.compile(r"\bde ([0-9]+(?:[.,][0-9]+)?) ?(ml|l)\b")


@functools.lru_cache(maxsize=1 << 14)
def pack_facts(pack: str) -> tuple[str, str]:
    """A pack label's box size (``box_size``) and facet tokens, space-separated: its
    forms ("sachet") and the volume of each unit ("1 flacon(s) en verre de 100 ml" is
    ``v100``)."""
    folded = fold_text(pack)
    tokens = set(_form_tokens(folded))
    for number, unit in _PACK_VOLUME.findall(folded):
        value = _decimal(number)
        if value is not None:
            tokens.add(VOLUME + number_token(value * UNIT_FACTORS[unit][1]))
    return _box_size(folded), " ".join(sorted(tokens))


# --- box size ----------------------------------------------------------------------------

# Units a box is counted in when the pack label says "de N <unit>(s)".
_DOSE_UNITS = ("comprime", "gelule", "capsule", "sachet", "suppositoire", "dose", "pastille",
               "ovule", "lyophilisat", "patch", "dispositif", "film", "gomme", "ampoule",
               "seringue", "recipient unidose", "stylo", "cartouche", "applicateur",
               "compresse", "emplatre", "pipette")
# Containers counted themselves when the label names no dose unit: "30 sachet(s)",
# "1 flacon(s) en verre de 100 ml".
_CONTAINERS = ("sachet", "ampoule", "seringue", "flacon", "tube", "poche", "stylo",
               "cartouche", "recipient unidose", "pot", "suppositoire", "dispositif",
               "pipette", "inhalateur", "recipient", "bouteille", "applicateur", "ovule")


def _alternation(words: tuple[str, ...]) -> str:
    return "|".join(sorted(words, key=len, reverse=True))


_CONTENT = re.compile(rf"\bde ([0-9]+)(?: x ([0-9]+))? ({_alternation(_DOSE_UNITS)})s?\b")
_LEADING = re.compile(r"^([0-9]+) ")
_CONTAINER = re.compile(rf"^(?:[0-9]+ )?({_alternation(_CONTAINERS)})s?\b")
_SIZE = re.compile(r"\bde ([0-9]+(?:[.,][0-9]+)?) ?(ml|g|l)\b")
_WEIGHED = frozenset({"tube", "pot", "flacon", "poche", "bouteille"})
_SHOWN = {"comprime": "comprimé", "gelule": "gélule", "recipient unidose":
          "récipient unidose", "recipient": "récipient", "emplatre": "emplâtre"}


def _counted(count: int, noun: str) -> str:
    shown = _SHOWN.get(noun, noun)
    if count > 1:
        head, _, rest = shown.partition(" ")
        shown = (head if head.endswith(("s", "x")) else head + "s") + (" " + rest if rest
                                                                      else "")
    return f"{count} {shown}"


def box_size(pack: str) -> str:
    """What a box holds, for the result list: "30 comprimés", "100 gélules",
    "20 sachets", "1 flacon de 100 ml"; "" when the pack label does not say.

    Read from the BDPM pack label: "3 plaquette(s) PVC aluminium de 10 gélule(s)" is
    30 gélules, "1 flacon(s) en verre de 100 ml" one bottle of 100 ml."""
    return _box_size(fold_text(pack))


def _box_size(folded: str) -> str:
    text = " ".join(folded.replace("(s)", " ").replace("-", " ").split())
    leading = _LEADING.match(text)
    times = int(leading.group(1)) if leading else 1
    content = _CONTENT.search(text)
    if content is not None:
        each = int(content.group(1)) * int(content.group(2) or 1)
        return _counted(times * each, content.group(3))
    container = _CONTAINER.match(text)
    if container is None:
        return ""
    shown = _counted(times, container.group(1))
    size = _SIZE.search(text)
    if size is None or (size.group(2) == "g" and container.group(1) not in _WEIGHED):
        return shown  # a sachet's weight says nothing to the prescriber
    return f"{shown} de {size.group(1)} {size.group(2)}"
