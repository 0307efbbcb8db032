"""Whether a pharmacy's substitution stays within the prescribed substance. The compositions
below are rows of the ANSM's BDPM (2022 extract, CIS_COMPO_bdpm.txt and CIS_GENER_bdpm.txt),
held in a small in-memory referential."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal

import pytest

from appliance.domain.posology import Posology
from appliance.domain.prescription import ActLine, MedicationLine
from appliance.errors import InvalidIdentifier
from appliance.services.substitution import (
    dispensed_outside_prescription,
    ingredients,
    other_substances,
    outside_prescribed_substance,
    same_ingredients,
)
from appliance.store.referential.search import Component, GenericMember
from tests.factories import prescription
from tests.fakes import FakeUnitOfWork

KARDEGIC = "64755969"         # KARDEGIC 75 mg, poudre pour solution buvable en sachet-dose
DOLIPRANE = "60234100"        # DOLIPRANE 1000 mg, comprimé
PARA_CODEINE = "69355295"     # PARACETAMOL CODEINE BIOGARAN 500 mg/30 mg
INEXIUM = "64578892"          # INEXIUM 20 mg, comprimé gastro-résistant
ESOMEPRAZOLE_ALTER = "60620664"  # ESOMEPRAZOLE ALTER 20 mg, comprimé gastro-résistant
LASILIX = "65606743"          # LASILIX 40 mg, comprimé sécable
FUROSEMIDE_ARROW = "60192594"  # FUROSEMIDE ARROW 40 mg, comprimé sécable
UNKNOWN = "61234567"

COMPOSITIONS = {
    KARDEGIC: [Component("poudre", "00005", "ACIDE ACÉTYLSALICYLIQUE", "FT", 1),
               Component("poudre", "03107", "DL-LYSINE (ACÉTYLSALICYLATE DE)", "SA", 1)],
    DOLIPRANE: [Component("comprimé", "02202", "PARACÉTAMOL", "SA", 1)],
    PARA_CODEINE: [Component("comprimé", "02202", "PARACÉTAMOL", "SA", 1),
                   Component("comprimé", "74765", "CODÉINE (PHOSPHATE DE) HÉMIHYDRATÉ", "SA",
                             2)],
    INEXIUM: [Component("comprimé", "17407", "ÉSOMÉPRAZOLE", "FT", 5),
              Component("comprimé", "61112", "ÉSOMÉPRAZOLE MAGNÉSIUM TRIHYDRATÉ", "SA", 5)],
    ESOMEPRAZOLE_ALTER: [Component("comprimé", "17407", "ÉSOMÉPRAZOLE", "FT", 1),
                         Component("comprimé", "96973", "ÉSOMÉPRAZOLE MAGNÉSIQUE DIHYDRATÉ",
                                   "SA", 1)],
    LASILIX: [Component("comprimé", "01958", "FUROSÉMIDE", "SA", 1)],
    FUROSEMIDE_ARROW: [Component("comprimé", "01958", "FUROSÉMIDE", "SA", 1)],
}
GROUPS = {56: [GenericMember(56, LASILIX, 0, 1), GenericMember(56, FUROSEMIDE_ARROW, 1, 2)]}
BOXES = {"3400934744198": KARDEGIC, "3400935955838": DOLIPRANE,
         "3400936476769": FUROSEMIDE_ARROW}


class Box:
    def __init__(self, cis: str) -> None:
        self.cis = cis


class Referential:
    """The three look-ups the comparison makes, over the rows above."""

    def composition(self, cis: str) -> list[Component]:
        return COMPOSITIONS.get(cis, [])

    def generic_group(self, cis: str) -> list[GenericMember]:
        return [m for members in GROUPS.values() if any(x.cis == cis for x in members)
                for m in members]

    def by_cip13(self, code: str) -> Box | None:
        if not code.isdigit() or len(code) != 13:
            raise InvalidIdentifier("cip13", code, "13 digits")
        return Box(BOXES[code]) if code in BOXES else None


REF = Referential()


def test_an_active_substance_and_its_fraction_are_one_ingredient():
    assert ingredients(COMPOSITIONS[KARDEGIC]) == {frozenset({"00005", "03107"})}
    assert ingredients(COMPOSITIONS[PARA_CODEINE]) == {frozenset({"02202"}),
                                                        frozenset({"74765"})}


def test_another_salt_of_the_same_ingredient_matches_through_its_fraction():
    assert same_ingredients(ingredients(COMPOSITIONS[INEXIUM]),
                            ingredients(COMPOSITIONS[ESOMEPRAZOLE_ALTER]))
    assert outside_prescribed_substance(REF, INEXIUM, ESOMEPRAZOLE_ALTER) is False


def test_paracetamol_for_kardegic_is_outside_the_prescribed_substance():
    assert outside_prescribed_substance(REF, KARDEGIC, DOLIPRANE) is True


def test_an_added_ingredient_is_outside_too():
    assert outside_prescribed_substance(REF, DOLIPRANE, PARA_CODEINE) is True
    assert outside_prescribed_substance(REF, PARA_CODEINE, DOLIPRANE) is True


def test_the_same_generic_group_or_the_same_specialty_is_the_same_substance():
    assert outside_prescribed_substance(REF, LASILIX, FUROSEMIDE_ARROW) is False
    assert outside_prescribed_substance(REF, UNKNOWN, UNKNOWN) is False


def test_an_unknown_composition_tells_nothing():
    assert outside_prescribed_substance(REF, KARDEGIC, UNKNOWN) is None
    assert outside_prescribed_substance(REF, UNKNOWN, KARDEGIC) is None


def _order():
    posology = Posology(dose=Decimal(1), unit="comprimé", moments=("matin",))
    return prescription("01M8AA52X8ECJK0TE86HARRT", lines=(
        MedicationLine(label="KARDEGIC 75 mg", cis=KARDEGIC, posology=posology),
        MedicationLine(label="LASILIX 40 mg", cip13="3400936476769", posology=posology),
        ActLine(text="NFS")))


@pytest.mark.parametrize(("line", "product", "outside"), [
    (1, "3400935955838", True),       # paracetamol for Kardégic
    (1, "3400934744198", False),      # Kardégic itself
    (2, "3400936476769", False),      # the prescribed box (by its CIP13)
    (1, "3400930000000", False),      # a box the referential does not know
    (1, "34009", False),              # a malformed code
    (1, None, False),
    (3, "3400935955838", False),      # an act is not a medication
    (4, "3400935955838", False),      # no such line
])
def test_a_dispensation_against_its_prescription_line(line, product, outside):
    assert dispensed_outside_prescription(REF, _order(), line, product) is outside


def test_without_a_referential_or_a_prescription_there_is_no_alert():
    assert dispensed_outside_prescription(None, _order(), 1, "3400935955838") is False
    assert dispensed_outside_prescription(REF, None, 1, "3400935955838") is False


def test_the_flags_on_the_screens_come_from_the_stored_prescriptions_in_one_read():
    """``other_substances`` (the sync screen's alerts, a resident's file): the products
    handed over are checked against the prescriptions of the unit of work, read at once."""
    uow = FakeUnitOfWork()
    order = _order()
    with uow:
        uow.prescriptions.save_draft(order)
        uow.commit()
    reads = []
    signed_rows = uow.prescriptions.signed_rows
    uow.prescriptions.signed_rows = lambda ids: reads.append(set(ids)) or signed_rows(ids)
    paracetamol = (order.id, 1, "3400935955838")          # for Kardégic: flagged
    handed = [paracetamol, (order.id, 2, "3400936476769"), (order.id, 1, None),
              ("01M8AA52X8ECJK0TE86HARRV", 1, "3400935955838")]  # a prescription not here
    assert other_substances(uow, REF, handed) == {paracetamol}
    assert reads == [{order.id, "01M8AA52X8ECJK0TE86HARRV"}]
    assert other_substances(uow, None, handed) == set()   # no referential: no alert
    assert other_substances(uow, REF, []) == set()


# -- the demo's pharmacy: a generic of the same group -------------------------------------------
class Boxes(Referential):
    """Adds boxes, and a fictitious "substitutable" specialty (kind 4) to LASILIX's group,
    which comes after the generics."""

    def __init__(self, marketed: dict[str, list[tuple[str, str, bool]]]) -> None:
        self.marketed = marketed

    def generic_group(self, cis: str) -> list[GenericMember]:
        return [*super().generic_group(cis), *([GenericMember(56, "69999999", 4, 3)]
                                               if cis == LASILIX else [])]

    def by_cis(self, cis: str):
        from types import SimpleNamespace

        return [SimpleNamespace(cip13=code, name=name, marketed=on)
                for code, name, on in self.marketed.get(cis, [])]


def test_the_demo_pharmacy_hands_over_a_generic_of_the_group():
    from appliance.commands.demo import generic_substitute
    from appliance.domain.prescription import NonSubstitution

    ref = Boxes({FUROSEMIDE_ARROW: [("3400937394383", "FUROSEMIDE ARROW 40 mg", False),
                                    ("3400936476769", "FUROSEMIDE ARROW 40 mg", True)],
                 "69999999": [("3400900000000", "SUBSTITUABLE", True)]})
    posology = Posology(dose=Decimal(1), unit="comprimé", moments=("matin",))
    kardegic = MedicationLine(label="KARDEGIC 75 mg", cis=KARDEGIC, posology=posology)
    lasilix = MedicationLine(label="LASILIX 40 mg", cis=LASILIX, posology=posology)
    order = prescription("01M8AA52X8ECJK0TE86HARRT", lines=(kardegic, lasilix))
    line_no, line, box = generic_substitute(ref, order)
    assert (line_no, line, box.cip13) == (2, lasilix, "3400936476769")  # a marketed generic
    kept = replace(lasilix, non_substitution=NonSubstitution.MTE)
    assert generic_substitute(ref, prescription("01M8AA52X8ECJK0TE86HARRT",
                                                lines=(kardegic, kept))) is None
