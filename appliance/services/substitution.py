"""Did the pharmacy hand over the prescribed substance?

A pharmacy may hand over another product than the one prescribed (a substitution, reported
with the dispensation). Ordo compares the substances of the product handed over with those
of the prescribed specialty, from the referential (BDPM):

- two specialties of the same generic group (``CIS_GENER``, the répertoire des génériques)
  hold the same substance;
- otherwise their compositions (``CIS_COMPO``) are compared by active ingredient: an active
  substance (SA) and the therapeutic fraction (FT) linked to it count as one ingredient, so
  that the same ingredient given as another salt matches through its fraction. The two hold
  the same substances when every ingredient of each is found in the other.

``outside_prescribed_substance`` answers ``True`` only when both compositions are known and
differ: a product or a specialty that the referential does not know gives ``None``, and no
alert (no alert is better than a false one). ``other_substances`` answers it for the
dispensations a screen lists (the alerts of the sync screen, a resident's file), reading
their prescriptions through the unit of work.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Protocol

from appliance.domain.prescription import MedicationLine, Prescription
from appliance.errors import OrdoError, ValidationError
from appliance.ports.uow import UnitOfWork

Ingredient = frozenset[str]
"""The substance codes of one active ingredient: its SA and the FT linked to it."""

Handed = tuple[str, int, str]
"""A product handed over: (prescription ID, 1-based line number, CIP13 of the product)."""

ACTIVE_NATURES = ("SA", "FT")


# -- what the comparison reads from the drug referential (the BDPM's ``Referential``) ----------
class Component(Protocol):
    """One composition row: ``nature`` SA (active substance) or FT (therapeutic fraction);
    an SA and its FT share ``element`` and ``link``."""

    @property
    def element(self) -> str: ...

    @property
    def substance_code(self) -> str: ...

    @property
    def nature(self) -> str: ...

    @property
    def link(self) -> int: ...


class GroupMember(Protocol):
    """A specialty of a generic group."""

    @property
    def cis(self) -> str: ...


class Box(Protocol):
    """A presentation (box) and its specialty."""

    @property
    def cis(self) -> str: ...


class Compositions(Protocol):
    """The three look-ups the comparison makes in the referential."""

    def composition(self, cis: str) -> Sequence[Component]: ...

    def generic_group(self, cis: str) -> Sequence[GroupMember]: ...

    def by_cip13(self, code: str) -> Box | None: ...


def ingredients(components: Iterable[Component]) -> set[Ingredient]:
    """The active ingredients of a specialty from its composition rows."""
    linked: dict[tuple[str, int], set[str]] = defaultdict(set)
    for c in components:
        if c.nature in ACTIVE_NATURES:
            linked[(c.element, c.link)].add(c.substance_code)
    return {frozenset(codes) for codes in linked.values()}


def same_ingredients(prescribed: set[Ingredient], dispensed: set[Ingredient]) -> bool:
    """Every ingredient of each is found in the other (by a substance code in common)."""

    def covered(these: set[Ingredient], those: set[Ingredient]) -> bool:
        return all(any(one & other for other in those) for one in these)

    return covered(prescribed, dispensed) and covered(dispensed, prescribed)


def outside_prescribed_substance(referential: Compositions, prescribed_cis: str,
                                 dispensed_cis: str) -> bool | None:
    """``True`` when the specialty handed over does not hold the prescribed substances,
    ``False`` when it does, ``None`` when the referential cannot tell."""
    if prescribed_cis == dispensed_cis:
        return False
    if any(m.cis == dispensed_cis for m in referential.generic_group(prescribed_cis)):
        return False
    prescribed = ingredients(referential.composition(prescribed_cis))
    dispensed = ingredients(referential.composition(dispensed_cis))
    if not prescribed or not dispensed:
        return None
    return not same_ingredients(prescribed, dispensed)


def _prescribed_cis(referential: Compositions, line: MedicationLine) -> str | None:
    if line.cis:
        return line.cis
    if line.cip13:
        box = referential.by_cip13(line.cip13)
        return box.cis if box is not None else None
    return None


def dispensed_outside_prescription(referential: Compositions | None,
                                   prescription: Prescription | None, line_no: int,
                                   product_code: str | None) -> bool:
    """The product (CIP13) handed over for line ``line_no`` (1-based) of ``prescription``
    holds other substances than the prescribed ones, as far as the referential tells."""
    if referential is None or prescription is None or not product_code:
        return False
    if not 1 <= line_no <= len(prescription.lines):
        return False
    line = prescription.lines[line_no - 1]
    if not isinstance(line, MedicationLine):
        return False
    try:
        prescribed = _prescribed_cis(referential, line)
        box = referential.by_cip13(product_code)
        if prescribed is None or box is None:
            return False
        return outside_prescribed_substance(referential, prescribed, box.cis) is True
    except OrdoError:  # a malformed code, no referential: nothing to tell
        return False


def other_substances(uow: UnitOfWork, referential: Compositions | None,
                     handed: Iterable[tuple[str, int, str | None]]) -> set[Handed]:
    """Of the products handed over in place of the prescribed ones, ``(prescription ID,
    line number, CIP13)``, those that hold other substances than the prescribed line, as
    far as the referential tells (``dispensed_outside_prescription``). The prescriptions
    are read in one query, whatever their number; one whose body no longer loads gives no
    alert."""
    wanted = {(pid, line, code) for pid, line, code in handed if code}
    if referential is None or not wanted:
        return set()
    prescriptions: dict[str, Prescription] = {}
    for pid, row in uow.prescriptions.signed_rows({pid for pid, _, _ in wanted}).items():
        try:
            prescriptions[pid] = Prescription.from_dict(json.loads(row.body))
        except (ValueError, ValidationError):
            continue
    return {item for item in wanted
            if dispensed_outside_prescription(referential, prescriptions.get(item[0]),
                                              item[1], item[2])}
