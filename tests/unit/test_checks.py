"""The prescribing checks, rule by rule, on drug facts written out by hand (BDPM codes and
strengths as the 2022 extract has them) and the shipped clinical tables."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from importlib import resources

import pytest

from appliance.domain.drug_facts import Allergy, Component, DrugInfo, moiety_key
from appliance.domain.posology import Duration, FreeTextPosology, Posology
from appliance.domain.prescription import ActLine, MedicationLine
from appliance.services.checks import (
    CurrentMedication,
    Interaction,
    InteractionLevel,
    ResidentProfile,
    Severity,
    TableError,
    check,
    form_family,
)
from appliance.services.checks.tables import (
    PIM_COLUMNS,
    PIM_FILE,
    Tables,
    load_tables,
    parse_doses,
    parse_pims,
)

TODAY = date(2025, 6, 1)
AT_85 = ResidentProfile(date(1940, 3, 1))
AT_60 = ResidentProfile(date(1965, 3, 1))
AT_74 = ResidentProfile(date(1950, 12, 1))


def comp(code, name, amount=None, unit="mg", per="comprimé", per_ml=None, nature="SA",
         element="comprimé", link=1):
    value = None if amount is None else Decimal(str(amount))
    return Component(code, name, nature, element, link, value, unit if value else None,
                     per if value else None, None if per_ml is None else Decimal(per_ml),
                     f"{amount} {unit}")


def drug(cis, name, form, *components, routes=("orale",), conditions=()):
    return DrugInfo(cis, name, form, tuple(routes), tuple(conditions), tuple(components))


DOLIPRANE = drug("60234100", "DOLIPRANE 1000 mg, comprimé", "comprimé",
                 comp("02202", "PARACÉTAMOL", 1000))
DAFALGAN = drug("60281210", "DAFALGANCAPS 1000 mg, gélule", "gélule",
                comp("02202", "PARACÉTAMOL", 1000, per="gélule", element="gélule"))
AMLOR = drug("61939921", "AMLOR 10 mg, gélule", "gélule",
             comp("39727", "AMLODIPINE", 10, per="gélule", nature="FT", element="gélule"),
             comp("93748", "BÉSILATE D'AMLODIPINE", "13.889", per="gélule", element="gélule"))
AMLO_MALEATE = drug("60000001", "AMLODIPINE X 5 mg, comprimé", "comprimé",
                    comp("99999", "MALÉATE D'AMLODIPINE", 5))
ATARAX_SIROP = drug("61162294", "ATARAX, sirop", "sirop",
                    comp("02087", "HYDROXYZINE (CHLORHYDRATE D')", 200, per=None, per_ml=100,
                         element="sirop"),
                    conditions=("prescription limitée à 12 semaines", "liste I"))
ATARAX = drug("61519586", "ATARAX 25 mg, comprimé pelliculé sécable",
              "comprimé pelliculé sécable", comp("02087", "HYDROXYZINE (DICHLORHYDRATE DE)", 25),
              conditions=("prescription limitée à 12 semaines", "liste I"))
SEROPLEX = drug("65503782", "SEROPLEX 20 mg, comprimé pelliculé sécable", "comprimé",
                comp("78924", "OXALATE D'ESCITALOPRAM"),
                comp("89971", "ESCITALOPRAM", 20, nature="FT"))
STILNOX = drug("63179285", "STILNOX 10 mg, comprimé pelliculé sécable",
               "comprimé pelliculé sécable", comp("25975", "TARTRATE DE ZOLPIDEM", 10),
               conditions=("prescription limitée à 4 semaines", "liste I",
                           "prescription en toutes lettres sur ordonnance sécurisée"))
EXELON_PATCH = drug("63093669", "EXELON 9,5 mg/24 h, dispositif transdermique", "dispositif",
                    comp("37973", "RIVASTIGMINE BASE", 18, per="patch", element="dispositif"),
                    routes=("transdermique",))
EXELON = drug("61689033", "EXELON 3 mg, gélule", "gélule",
              comp("37973", "RIVASTIGMINE BASE", 3, per="gélule", nature="FT",
                   element="gélule"))
FORLAX = drug("69298346", "FORLAX 10 g, poudre pour solution buvable en sachet",
              "poudre pour solution buvable", comp("06206", "MACROGOL 4000", "10000",
                                                   per="sachet", element="poudre"))
MOVICOL = drug("60885246", "MOVICOL, poudre pour solution buvable en sachet",
               "poudre pour solution buvable",
               comp("00093", "CHLORURE DE POTASSIUM", "46.6", per="sachet", link=1),
               comp("00899", "BICARBONATE DE SODIUM", "178.5", per="sachet", link=2),
               comp("00901", "CHLORURE DE SODIUM", "350.7", per="sachet", link=3),
               comp("79576", "MACROGOL 3350", "13125", per="sachet", link=4))
DIFFUK = drug("60875266", "DIFFU-K 600 mg, gélule", "gélule",
              comp("00093", "CHLORURE DE POTASSIUM", 600, per="gélule", element="gélule"))
XALATAN = drug("60047271", "XALATAN 50 microgrammes/ml, collyre en solution",
               "collyre en solution", comp("11111", "LATANOPROST", 50, unit="µg"),
               routes=("ophtalmique",))
TIMOPTOL = drug("60000002", "TIMOLOL X 0,25 %, collyre", "collyre en solution",
                comp("22222", "MALÉATE DE TIMOLOL"), routes=("ophtalmique",))
TIMOLOL_ORAL = drug("60000003", "TIMOLOL Y 10 mg, comprimé", "comprimé",
                    comp("22223", "TIMOLOL (MALÉATE DE)", 10))
PATCH_ORAL = drug("60000004", "FENTANYL X, dispositif transdermique", "dispositif",
                  comp("33333", "FENTANYL"), routes=("transdermique",))
ORAL_FENTANYL = drug("60000005", "FENTANYL Y, comprimé sublingual", "comprimé sublingual",
                     comp("33334", "CITRATE DE FENTANYL", "0.1"), routes=("sublinguale",))
COMBO = drug("60392513", "IXPRIM 37,5 mg/325 mg, comprimé pelliculé", "comprimé pelliculé",
             comp("02202", "PARACÉTAMOL", 325, link=1),
             comp("86571", "CHLORHYDRATE DE TRAMADOL", "37.5", link=2))
HOMEO = drug("62774383", "GINKGO BILOBA BOIRON, degré de dilution", "comprimé",
             comp("39116", "GINKGO BILOBA POUR PRÉPARATIONS HOMÉOPATHIQUES"))
GINKGO = drug("62252570", "GINKGO EG LABO CONSEIL 40 mg, comprimé pelliculé", "comprimé",
              comp("19770", "EXTRAIT SEC RAFFINÉ ET QUANTIFIÉ DE GINKGO", 40))
ADALATE = drug("62287112", "ADALATE 10 mg, capsule", "capsule molle",
               comp("00842", "NIFÉDIPINE", 10, per="gélule", element="capsule"))
CHRONADALATE = drug("60000006", "CHRONADALATE LP 30 mg, comprimé pelliculé à libération "
                    "prolongée", "comprimé pelliculé à libération prolongée",
                    comp("00842", "NIFÉDIPINE", 30))
PRADAXA = drug("63484283", "PRADAXA 150 mg, gélule", "gélule",
               comp("82447", "DABIGATRAN ÉTEXILATE BASE", 150, nature="FT", element="gélule"),
               comp("83321", "DABIGATRAN ÉTEXILATE (MÉSILATE DE)", "172.95",
                    element="gélule"))


@dataclass
class Facts:
    """``DrugFacts`` over a few hand-written drugs."""

    drugs: dict[str, DrugInfo] = field(default_factory=dict)
    by_cip13: dict[str, str] = field(default_factory=dict)
    calls: int = 0

    def drug(self, cis=None, cip13=None):
        self.calls += 1
        if cip13:
            cis = self.by_cip13.get(cip13)
        return self.drugs.get(cis) if cis else None


@dataclass
class Draft:
    lines: list


def facts(*drugs):
    return Facts({d.cis: d for d in drugs})


def line(d: DrugInfo, posology, renewals: int = 0) -> MedicationLine:
    return MedicationLine(label=d.name, cis=d.cis, posology=posology, renewals=renewals)


def P(dose=1, unit="comprimé", **kw) -> Posology:
    if "duration" in kw and isinstance(kw["duration"], tuple):
        kw["duration"] = Duration(*kw["duration"])
    if "max_per_day" in kw:
        kw["max_per_day"] = Decimal(kw["max_per_day"])
    return Posology(dose=Decimal(str(dose)), unit=unit, **kw)


def run(*pairs, resident=AT_85, current=(), renewals=0, **kw):
    drugs = [d for d, _ in pairs] + [c.drug for c in current if hasattr(c, "drug")]
    meds = [line(d, p, renewals) for d, p in pairs]
    currents = [c.medication if hasattr(c, "medication") else c for c in current]
    return check(Draft(meds), resident, currents, facts(*drugs, *kw.pop("extra", ())),
                 today=TODAY, **kw)


@dataclass
class Cur:
    drug: DrugInfo
    medication: CurrentMedication


def current(d: DrugInfo, posology=None, until=None) -> Cur:
    return Cur(d, CurrentMedication(d.name, cis=d.cis, posology=posology, until=until))


def keys(alerts):
    return {a.key for a in alerts}


# -- doses -----------------------------------------------------------------------------------
def test_paracetamol_24_times_a_day_is_a_blocking_overdose_with_its_source() -> None:
    alerts = run((DOLIPRANE, P(times_per_day=24, duration=(7, "jour"))))
    dose = next(a for a in alerts if a.code == "dose.max_daily")
    assert dose.severity is Severity.BLOQUANT and dose.line == 0 and dose.key == "dose.max_daily@1"
    assert dose.message.startswith("Ligne 1 (DOLIPRANE 1000 mg, comprimé) : 24 000 mg de "
                                   "paracétamol par jour")
    assert "4 000 mg" in dose.message
    assert dose.source == "RCP DOLIPRANE 1000 mg, gélule (CIS 69309629), rubrique 4.2"
    assert "posology.intakes_per_day@1" in keys(alerts)


def test_the_maximum_itself_is_no_alert() -> None:
    assert run((DOLIPRANE, P(times_per_day=4)), (AMLOR, P(unit="gélule", moments=("matin",)))) \
        == []


def test_the_elderly_maximum_applies_from_its_age_only() -> None:
    twenty = (SEROPLEX, P(moments=("matin",)))
    at_85 = run(twenty)
    assert keys(at_85) == {"dose.max_daily_elderly@1"}
    assert at_85[0].severity is Severity.IMPORTANT and "10 mg" in at_85[0].message
    assert run(twenty, resident=AT_60) == []
    assert keys(run((SEROPLEX, P(2, moments=("matin",))), resident=AT_60)) == {"dose.max_daily@1"}


def test_a_substance_without_a_verified_maximum_gets_no_dose_alert() -> None:
    # dabigatran is not in the table (its maximum was not re-read against a published text)
    assert not any(a.code.startswith("dose") for a in
                   run((PRADAXA, P(2, "gélule", moments=("matin", "soir")))))


PLAVIX = drug("60562855", "PLAVIX 300 mg, comprimé pelliculé", "comprimé pelliculé",
              comp("52920", "CLOPIDOGREL (HYDROGÉNOSULFATE DE)"),
              comp("54693", "CLOPIDOGREL BASE", 300, nature="FT"))
ZELITREX = drug("67396382", "ZELITREX 500 mg, comprimé pelliculé", "comprimé pelliculé",
                comp("92734", "CHLORHYDRATE DE VALACICLOVIR", 556),
                comp("36192", "VALACICLOVIR", 500, nature="FT"))
XANAX = drug("69847791", "XANAX 0,25 mg, comprimé sécable", "comprimé sécable",
             comp("13112", "ALPRAZOLAM", "0.25"))
RISPERDAL = drug("63605525", "RISPERDAL 1 mg, comprimé pelliculé", "comprimé pelliculé",
                 comp("37430", "RISPÉRIDONE", 1))


def test_the_rows_re_read_against_their_rcp() -> None:
    """Clopidogrel's loading dose is 600 mg in the current RCP; valaciclovir goes up to 2 g
    twice a day (cold sores) and more after a transplant, so it has no row; alprazolam's
    RCP caps it at 4 mg a day; risperidone's RCP titrates the elderly to 1-2 mg twice a day."""
    assert run((PLAVIX, P(2))) == []  # 600 mg loading dose, at once
    assert keys(run((PLAVIX, P(3)))) == {"dose.max_daily@1"}
    assert run((ZELITREX, P(4, moments=("matin", "soir"), duration=(1, "jour"))),
               resident=AT_60) == []
    assert keys(run((XANAX, P(4, times_per_day=4)), resident=AT_60)) == set()
    assert keys(run((XANAX, P(4, times_per_day=5)), resident=AT_60)) == {"dose.max_daily@1"}
    assert run((RISPERDAL, P(2, moments=("matin", "soir"))), resident=AT_60) == []
    at_85 = run((RISPERDAL, P(3, moments=("matin", "soir"))))
    assert keys(at_85) == {"dose.max_daily_elderly@1"} and "4 mg" in at_85[0].message


@pytest.mark.parametrize(("posology", "alert"), [
    (P(as_needed=True), False),                                   # no daily figure: unknown
    (P(as_needed=True, max_per_day=4), False),
    (P(as_needed=True, max_per_day=5), True),
    (P(interval_hours=4, as_needed=True), True),                  # up to 6 a day
    (P(interval_hours=6, as_needed=True, max_per_day=4), False),
    (P(interval_hours=5), True),                                  # 4.8 a day: 4 800 mg
    (P(2, interval_hours=36), False),                             # 2 g on a day of intake
    (P(5, every_days=2), True),                                   # 5 g on each day of intake
    (P(5, times_per_week=2), True),
    (P(5), True),                                                 # a single intake of 5 g
    (P(2, moments=("matin", "midi", "soir"), moment_doses=(Decimal(1), Decimal(2), Decimal(1))),
     False),
    (P(2, moments=("matin", "midi", "soir"), moment_doses=(Decimal(2), Decimal(1), Decimal(2))),
     True),
])
def test_daily_amounts_of_every_frequency(posology, alert) -> None:
    assert ("dose.max_daily@1" in keys(run((DOLIPRANE, posology)))) is alert


def test_doses_in_mass_units_for_a_single_substance_only() -> None:
    assert "dose.max_daily@1" in keys(run((DOLIPRANE, P(5, "g", moments=("matin",)))))
    assert run((DOLIPRANE, P(1000, "mg", times_per_day=4))) == []
    # a combination's dose in mg cannot say which substance: no figure, no alert
    assert run((COMBO, P(5000, "mg", moments=("matin",)))) == []
    # AMLOR's 13.9 mg of besilate per capsule is never read against the 10 mg of the base
    assert run((AMLOR, P(10, "mg", moments=("matin",)))) == []
    assert "dose.max_daily@1" in keys(run((AMLOR, P(30, "mg", moments=("matin",)))))


def test_doses_in_ml_from_the_concentration() -> None:
    alerts = run((ATARAX_SIROP, P(30, "mL", moments=("matin", "midi", "soir"),
                                  duration=(1, "semaine"))), resident=AT_60)
    assert keys(alerts) == {"dose.max_daily@1"}  # 90 mL at 2 mg/mL: 180 mg
    assert "180 mg" in alerts[0].message


def test_no_figure_no_dose_alert() -> None:
    assert run((HOMEO, P(50, times_per_day=10))) == [] or all(
        not a.code.startswith("dose") for a in run((HOMEO, P(50, times_per_day=10))))
    free = run((DOLIPRANE, FreeTextPosology("2 comprimés toutes les heures")))
    assert not any(a.code.startswith("dose") for a in free)
    drops = run((ATARAX_SIROP, P(400, "goutte", moments=("matin",))))
    assert not any(a.code.startswith("dose") for a in drops)
    assert check(Draft([line(DOLIPRANE, P(times_per_day=24))]), AT_85, [], Facts(),
                 today=TODAY) == [a for a in run((DOLIPRANE, P(times_per_day=24)))
                                  if a.code.startswith("posology")]


def test_a_limit_applies_to_its_routes_only() -> None:
    assert run((EXELON_PATCH, P(1, "patch", moments=("matin",)))) == [
        a for a in run((EXELON_PATCH, P(1, "patch", moments=("matin",))))
        if not a.code.startswith("dose")]
    assert not any(a.code.startswith("dose")
                   for a in run((EXELON_PATCH, P(1, "patch", moments=("matin",)))))
    assert "dose.max_daily@1" in keys(run((EXELON, P(3, "gélule", moments=("matin", "soir")))))


def test_a_gelule_whose_strength_is_given_per_comprime_counts_as_one_unit() -> None:
    odd = drug("61939921", "AMLOR 10 mg, gélule", "gélule",
               comp("39727", "AMLODIPINE", 10, nature="FT", element="gélule"))
    assert keys(run((odd, P(unit="gélule", moments=("matin", "soir"))))) == \
        {"dose.max_daily@1"}


def test_daily_amounts_add_up_over_the_draft_and_the_current_treatment() -> None:
    alerts = run((DOLIPRANE, P(moments=("matin", "midi", "soir"))),
                 (DAFALGAN, P(unit="gélule", moments=("matin", "soir"))))
    assert {"dose.max_daily_combined@2", "duplicate.substance@2"} <= keys(alerts)
    combined = next(a for a in alerts if a.code == "dose.max_daily_combined")
    assert "avec la ligne 1 (DOLIPRANE 1000 mg, comprimé), 5 000 mg" in combined.message
    with_current = run((DAFALGAN, P(unit="gélule", moments=("matin", "soir"))),
                       current=[current(DOLIPRANE, P(moments=("matin", "midi", "soir")))])
    assert {"dose.max_daily_combined@1", "duplicate.current@1"} <= keys(with_current)
    ended = run((DAFALGAN, P(unit="gélule", moments=("matin", "soir"))),
                current=[current(DOLIPRANE, P(moments=("matin", "midi", "soir")),
                                 until=date(2025, 5, 31))])
    assert ended == []


# -- posology sanity -------------------------------------------------------------------------
def test_more_than_six_intakes_a_day_outside_as_needed() -> None:
    assert keys(run((AMLOR, P(1, "gélule", interval_hours=3)))) >= {"posology.intakes_per_day@1"}
    assert run((XALATAN, P(1, "goutte", times_per_day=8))) == []  # an eye drop
    assert not any(a.code == "posology.intakes_per_day"
                   for a in run((FORLAX, P(1, "sachet", times_per_day=8, as_needed=True,
                                           max_per_day=2))))


def test_more_than_four_units_per_intake_of_a_solid_form() -> None:
    alerts = run((FORLAX, P(5, "sachet", moments=("matin",))))
    assert keys(alerts) == {"posology.units_per_intake@1"}
    assert alerts[0].severity is Severity.IMPORTANT
    assert run((FORLAX, P(4, "sachet", moments=("matin",)))) == []
    assert run((ATARAX_SIROP, P(10, "mL", moments=("matin",), duration=(7, "jour"))),
               resident=AT_60) == []


def test_a_unit_that_names_another_form() -> None:
    assert keys(run((DOLIPRANE, P(1, "sachet", moments=("matin",))))) == \
        {"posology.unit_form@1"}
    assert keys(run((DOLIPRANE, P(10, "mL", moments=("matin",))))) == {"posology.unit_form@1"}
    assert run((AMLOR, P(1, "comprimé", moments=("matin",)))) == []   # tablets and capsules
    assert run((FORLAX, P(20, "mL", moments=("matin",)))) == []       # a sachet dissolved


@pytest.mark.parametrize(("form", "name", "family"), [
    ("comprimé effervescent sécable", "", "comprimé"),
    ("gélule gastro-résistante", "", "gélule"),
    ("capsule molle", "", "gélule"),
    ("poudre pour solution buvable", "FORLAX 10 g, poudre pour solution buvable en sachet",
     "sachet"),
    ("poudre pour solution buvable", "X, poudre pour solution buvable", None),
    ("solution buvable", "DUPHALAC 10 g/15 ml, solution buvable en sachet", "sachet"),
    ("solution buvable en gouttes", "", "liquide"),
    ("sirop", "", "liquide"),
    ("dispositif", "EXELON 9,5 mg/24 h, dispositif transdermique", "patch"),
    ("lyophilisat oral", "", None),
    ("collyre en solution", "", None),
])
def test_form_families(form, name, family) -> None:
    assert form_family(form, name) == family


@pytest.mark.parametrize(("text", "expected"), [
    ("999 comprimés", {"posology.text_form@1", "posology.units_per_intake@1"}),
    ("1 sachet le matin", set()),
    ("2 sachets dans un verre d'eau le matin", set()),
    ("1 comprimé le matin", {"posology.text_form@1"}),
    ("5 sachets en une prise", {"posology.units_per_intake@1"}),
    ("jusqu'à 6 sachets par jour", set()),
    ("6 sachets en 3 prises", set()),
    ("selon schéma", set()),
])
def test_free_text_counts_and_forms(text, expected) -> None:
    assert keys(run((FORLAX, FreeTextPosology(text)))) == expected


# -- duplicates ------------------------------------------------------------------------------
def test_the_same_substance_twice_in_the_draft() -> None:
    alerts = run((DOLIPRANE, P(moments=("matin",))), (DAFALGAN, P(1, "gélule", moments=("soir",))))
    assert keys(alerts) == {"duplicate.substance@2"}
    dup = alerts[0]
    assert dup.message == ("Ligne 2 (DAFALGANCAPS 1000 mg, gélule) : même substance "
                           "(PARACÉTAMOL) que la ligne 1 (DOLIPRANE 1000 mg, comprimé)")
    assert "code substance 02202" in dup.source and dup.severity is Severity.IMPORTANT
    assert keys(run((DOLIPRANE, P(moments=("matin",))), (COMBO, P(moments=("soir",))))) == \
        {"duplicate.substance@2"}


def test_another_salt_of_the_same_moiety_is_a_duplicate() -> None:
    assert keys(run((AMLOR, P(1, "gélule", moments=("matin",))),
                    (AMLO_MALEATE, P(moments=("soir",))))) == {"duplicate.substance@2"}


def test_routes_decide_whether_two_forms_duplicate() -> None:
    assert run((TIMOPTOL, P(1, "goutte", moments=("matin",))),
               (TIMOLOL_ORAL, P(moments=("matin",)))) == []
    assert keys(run((PATCH_ORAL, P(1, "patch", every_days=3)),
                    (ORAL_FENTANYL, P(as_needed=True, max_per_day=4)))) == \
        {"duplicate.substance@2"}


def test_electrolytes_of_a_compound_preparation_are_not_a_duplicate() -> None:
    assert run((DIFFUK, P(1, "gélule", moments=("matin",))),
               (MOVICOL, P(1, "sachet", moments=("matin",)))) == []
    kaleorid = drug("61958925", "KALEORID LP 600 mg", "comprimé",
                    comp("00093", "CHLORURE DE POTASSIUM", 600))
    assert keys(run((DIFFUK, P(1, "gélule", moments=("matin",))),
                    (kaleorid, P(moments=("soir",))))) == {"duplicate.substance@2"}


# -- allergies -------------------------------------------------------------------------------
def test_an_allergy_blocks_a_drug_holding_the_substance_or_another_salt() -> None:
    resident = ResidentProfile(date(1940, 3, 1), (
        Allergy("02202", "PARACÉTAMOL", date(2021, 3, 12), "dossier médical"),
        Allergy("99999", "AMLODIPINE", date(2020, 1, 2), "déclaration de la famille")))
    alerts = run((COMBO, P(moments=("matin",))), (AMLOR, P(1, "gélule", moments=("matin",))),
                 resident=resident)
    assert keys(alerts) == {"allergy.substance@1", "allergy.substance@2"}
    first = alerts[0]
    assert first.severity is Severity.BLOQUANT and first.overridable
    assert "contient PARACÉTAMOL" in first.message
    assert first.source == "Allergie enregistrée le 12/03/2021, source : dossier médical"


# -- prescription conditions -----------------------------------------------------------------
def conditioned(*texts, form="comprimé", routes=("orale",)):
    return drug("60000009", "X 10 mg, comprimé", form, comp("44444", "SUBSTANCE X", 10),
                conditions=texts, routes=routes)


@pytest.mark.parametrize(("texts", "expected", "severity", "overridable"), [
    (("réservé à l'usage HOSPITALIER", "liste I"), "condition.hospital_only", "bloquant", False),
    (("délivrance réservée aux pharmacies à usage intérieur",), "condition.pui_only",
     "bloquant", False),
    (("prescription hospitalière",), "condition.hospital_prescription", "important", True),
    (("prescription initiale hospitalière annuelle",), "condition.initial_hospital",
     "important", True),
    (("prescription réservée aux spécialistes et services NEUROLOGIE",
      "prescription initiale annuelle réservée à certains spécialistes"),
     "condition.specialist", "important", True),
    (("renouvellement de la prescription réservé aux spécialistes en DERMATOLOGIE",),
     "condition.specialist", "important", True),
    (("réservé à l'usage professionnel DENTAIRE",), "condition.restricted_use", "important",
     True),
    (("stupéfiants", "prescription en toutes lettres sur ordonnance sécurisée",
      "délivrance fractionnée de 14 jours"), "condition.secure_prescription", "info", True),
    (("médicament nécessitant une surveillance particulière pendant le traitement",),
     "condition.monitoring", "info", True),
])
def test_prescription_conditions(texts, expected, severity, overridable) -> None:
    alerts = run((conditioned(*texts), P(moments=("matin",))))
    assert [a.code for a in alerts] == [expected]
    assert alerts[0].severity.value == severity and alerts[0].overridable is overridable
    assert all(f"« {t} »" in alerts[0].source for t in texts if t != "liste I")
    assert alerts[0].source.startswith("ANSM — base de données publique des médicaments")


def test_list_i_and_list_ii_ask_nothing() -> None:
    assert run((conditioned("liste I", "liste II"), P(moments=("matin",)))) == []


@pytest.mark.parametrize(("duration", "renewals", "alert"), [
    ((28, "jour"), 0, None),
    ((4, "semaine"), 0, None),
    ((1, "mois"), 0, None),               # a month lasts at least 28 days
    ((29, "jour"), 0, "condition.max_duration@1"),
    ((5, "semaine"), 0, "condition.max_duration@1"),
    ((2, "semaine"), 1, None),
    ((2, "semaine"), 2, "condition.max_duration@1"),
    ((1, "mois"), 2, "condition.max_duration@1"),
    (None, 0, "condition.duration_unknown@1"),
])
def test_duration_limits_count_the_renewals(duration, renewals, alert) -> None:
    hypnotic = conditioned("prescription limitée à 4 semaines")
    posology = P(moments=("coucher",), duration=duration) if duration else P(moments=("coucher",))
    alerts = run((hypnotic, posology), renewals=renewals)
    assert keys(alerts) == ({alert} if alert else set())
    if alert == "condition.max_duration@1":
        assert alerts[0].severity is Severity.BLOQUANT and "jours de traitement" in \
            alerts[0].message
    if alert == "condition.duration_unknown@1":
        assert alerts[0].severity is Severity.INFO


def test_the_longest_of_two_limits_is_the_limit() -> None:
    limited = conditioned("prescription limitée à 7 jours ou 28 jours")
    assert run((limited, P(moments=("matin",), duration=(28, "jour")))) == []
    assert keys(run((limited, P(moments=("matin",), duration=(5, "semaine"))))) == \
        {"condition.max_duration@1"}


# -- potentially inappropriate medications ---------------------------------------------------
# Only the Laroche criteria re-read in the published list (``checked``, ``verified_on``) are
# active; the rule itself is also tested on every criterion of the file, active or not.
def _every_criterion() -> Tables:
    text = resources.files("appliance.services.checks").joinpath("data", PIM_FILE) \
        .read_text("utf-8")
    return Tables(load_tables().doses, parse_pims(text))


EVERY_CRITERION = _every_criterion()


def test_a_criterion_nobody_re_read_raises_no_alert() -> None:
    # immediate-release calcium channel blockers: transcribed, not re-read (no reason could be
    # attributed to the criterion in the text read), hence inactive
    assert run((ADALATE, P(1, "gélule", moments=("matin", "soir")))) == []
    assert keys(run((ADALATE, P(1, "gélule", moments=("matin", "soir"))),
                    tables=EVERY_CRITERION)) == {"pim.laroche@1"}


def test_the_re_read_criteria_are_active_in_the_shipped_tables() -> None:
    assert keys(run((ATARAX, P(moments=("soir",), duration=(1, "semaine"))))) == \
        {"pim.laroche@1"}
    assert "pim.laroche@1" in keys(run((STILNOX, P(1, moments=("coucher",),
                                                   duration=(7, "jour")))))
    assert not any(a.code == "pim.laroche" for a in
                   run((STILNOX, P("0.5", moments=("coucher",), duration=(7, "jour")))))


def test_inappropriate_from_75_with_reason_alternative_and_source() -> None:
    alerts = run((ATARAX, P(moments=("soir",), duration=(1, "semaine"))),
                 tables=EVERY_CRITERION)
    assert keys(alerts) == {"pim.laroche@1"}
    pim = alerts[0]
    assert pim.severity is Severity.IMPORTANT
    assert "antihistaminiques H1" in pim.message and "Alternative : cétirizine" in pim.message
    assert pim.source.startswith("Laroche ML, Charmes JP, Merle L.") and "2007;63:725" in \
        pim.source
    assert run((ATARAX, P(moments=("soir",), duration=(1, "semaine"))), resident=AT_74,
               tables=EVERY_CRITERION) == []


def test_dose_criteria_need_a_dose_above_their_threshold() -> None:
    half = run((STILNOX, P("0.5", moments=("coucher",), duration=(7, "jour"))),
               tables=EVERY_CRITERION)
    assert not any(a.code == "pim.laroche" for a in half)
    whole = run((STILNOX, P(1, moments=("coucher",), duration=(7, "jour"))),
                tables=EVERY_CRITERION)
    assert "pim.laroche@1" in keys(whole)
    unknown = run((STILNOX, FreeTextPosology("1 le soir")), tables=EVERY_CRITERION)
    assert not any(a.code == "pim.laroche" for a in unknown)


def test_forms_and_homeopathy_are_told_apart() -> None:
    every = EVERY_CRITERION
    assert keys(run((ADALATE, P(1, "gélule", moments=("matin", "soir"))), tables=every)) == \
        {"pim.laroche@1"}
    assert run((CHRONADALATE, P(moments=("matin",))), tables=every) == []
    assert keys(run((GINKGO, P(moments=("matin",))), tables=every)) == {"pim.laroche@1"}
    assert run((HOMEO, P(moments=("matin",))), tables=every) == []


# -- interactions ----------------------------------------------------------------------------
class OneInteraction:
    """A stand-in for a licensed interaction database: one pair, by CIS."""

    def __init__(self, a: str, b: str, level: InteractionLevel) -> None:
        self.pair, self.level = {a, b}, level

    def interactions(self, drugs):
        found = []
        for i, first in enumerate(drugs):
            for j, second in enumerate(drugs[i + 1:], start=i + 1):
                if {first.cis, second.cis} == self.pair:
                    found.append(Interaction(i, j, self.level, "texte de la base",
                                             "Base sous licence, version de test"))
        return found


def test_interactions_come_from_the_port_only() -> None:
    source = OneInteraction(AMLOR.cis, DOLIPRANE.cis, InteractionLevel.CONTRAINDICATION)
    alerts = run((DOLIPRANE, P(moments=("matin",))), (AMLOR, P(1, "gélule", moments=("matin",))),
                 interactions=source)
    assert keys(alerts) == {"interaction.contraindication@2"}
    assert alerts[0].severity is Severity.BLOQUANT
    assert "la ligne 1 (DOLIPRANE 1000 mg, comprimé)" in alerts[0].message
    assert alerts[0].source == "Base sous licence, version de test"
    with_current = run((AMLOR, P(1, "gélule", moments=("matin",))),
                       current=[current(DOLIPRANE)],
                       interactions=OneInteraction(AMLOR.cis, DOLIPRANE.cis,
                                                   InteractionLevel.PRECAUTION))
    assert keys(with_current) == {"interaction.precaution@1"}
    both_current = run((FORLAX, P(1, "sachet", moments=("matin",))),
                       current=[current(DOLIPRANE), current(AMLOR)], interactions=source)
    assert both_current == []
    assert run((DOLIPRANE, P(moments=("matin",))), (AMLOR, P(1, "gélule", moments=("matin",)))) \
        == []


# -- the whole ---------------------------------------------------------------------------------
def test_alerts_are_sorted_by_severity_then_line_and_skip_other_lines() -> None:
    meds = [line(ATARAX, P(moments=("soir",), duration=(1, "semaine"))),
            ActLine(text="Kinésithérapie"),
            line(DOLIPRANE, P(times_per_day=24))]
    alerts = check(Draft(meds), AT_85, [], facts(ATARAX, DOLIPRANE), today=TODAY)
    assert [a.severity.value for a in alerts] == sorted(
        (a.severity.value for a in alerts), key=["bloquant", "important", "info"].index)
    assert alerts[0].key == "dose.max_daily@3"
    assert alerts[0].to_dict()["key"] == "dose.max_daily@3"
    assert alerts[0].to_dict()["overridable"] is True


def test_each_drug_is_looked_up_once() -> None:
    f = facts(DOLIPRANE, AMLOR)
    check(Draft([line(DOLIPRANE, P(moments=("matin",))), line(AMLOR, P(1, "gélule",
                                                                      moments=("matin",)))]),
          AT_85, [CurrentMedication("AMLOR", cis=AMLOR.cis)], f, today=TODAY)
    assert f.calls == 3


def test_an_unknown_birth_date_skips_the_age_rules_only() -> None:
    nobody = ResidentProfile(None)
    assert run((ATARAX, P(moments=("soir",), duration=(1, "semaine"))), resident=nobody) == []
    assert keys(run((DOLIPRANE, P(5, moments=("matin",))), resident=nobody)) == \
        {"dose.max_daily@1", "posology.units_per_intake@1"}


# -- tables and moieties -------------------------------------------------------------------------
DOSE_HEADER = ("substance,bdpm_codes,bdpm_names,max_daily,unit,elderly_max_daily,"
               "elderly_from_age,routes,form_includes,form_excludes,reference_cis,source,"
               "checked,verified_on,note\n")
READ = "texte lu,2026-12-03"


def test_a_malformed_table_names_its_line_and_column() -> None:
    good = f"x,00001,X,10,mg,,,,,,60000000,RCP X (CIS 60000000),{READ},\n"
    assert len(parse_doses(DOSE_HEADER + good)) == 1
    assert parse_doses(DOSE_HEADER + good)[0].verified_on == date(2026, 12, 3)
    with pytest.raises(TableError, match=r"max_daily_doses.csv:2: column source is empty"):
        parse_doses(DOSE_HEADER + f"x,00001,X,10,mg,,,,,,60000000,,{READ},\n")
    with pytest.raises(TableError, match=r":2: max_daily 'dix' is not a number"):
        parse_doses(DOSE_HEADER + f"x,00001,X,dix,mg,,,,,,60000000,RCP,{READ},\n")
    with pytest.raises(TableError, match="elderly_max_daily above max_daily"):
        parse_doses(DOSE_HEADER + f"x,00001,X,10,mg,20,65,,,,60000000,RCP,{READ},\n")
    with pytest.raises(TableError, match="unit 'mmol'"):
        parse_doses(DOSE_HEADER + f"x,00001,X,10,mmol,,,,,,60000000,RCP,{READ},\n")


def test_a_dose_row_nobody_checked_against_a_published_text_is_refused() -> None:
    with pytest.raises(TableError, match=r":2: column checked is empty"):
        parse_doses(DOSE_HEADER + "x,00001,X,10,mg,,,,,,60000000,RCP,,2026-12-03,\n")
    with pytest.raises(TableError, match=r":2: column verified_on is empty"):
        parse_doses(DOSE_HEADER + "x,00001,X,10,mg,,,,,,60000000,RCP,texte lu,,\n")
    with pytest.raises(TableError, match=r":2: verified_on 'hier' is not a date"):
        parse_doses(DOSE_HEADER + "x,00001,X,10,mg,,,,,,60000000,RCP,texte lu,hier,\n")


def test_a_pim_table_with_a_wrong_header_is_refused() -> None:
    with pytest.raises(TableError, match="header"):
        parse_pims("id,criterion\nL1,x\n")


def test_a_criterion_is_active_once_dated_and_a_date_needs_what_was_read() -> None:
    head = ",".join(PIM_COLUMNS) + "\n"
    row = "L1,x,hydroxyzine,02087,,,orale,,effets anticholinergiques,cétirizine,Laroche 2007"
    [inactive] = parse_pims(head + row + ",,\n")
    assert not inactive.active
    [active] = parse_pims(head + row + ",tableau 2 lu,2026-12-03\n")
    assert active.active and active.verified_on == date(2026, 12, 3)
    with pytest.raises(TableError, match=r":2: column checked is empty"):
        parse_pims(head + row + ",,2026-12-03\n")
    with pytest.raises(TableError, match=r":2: verified_on 'hier' is not a date"):
        parse_pims(head + row + ",lu,hier\n")


@pytest.mark.parametrize(("a", "b"), [
    ("BÉSILATE D'AMLODIPINE", "AMLODIPINE (BÉSILATE D')"),
    ("CHLORHYDRATE DE TRAMADOL", "TRAMADOL BASE"),
    ("PÉRINDOPRIL TERT-BUTYLAMINE", "PÉRINDOPRIL ARGININE"),
    ("LÉVOTHYROXINE SODIQUE ANHYDRE", "LÉVOTHYROXINE"),
    ("HYDROGÉNOOXALATE DE NAFTIDROFURYL", "NAFTIDROFURYL"),
])
def test_salts_share_their_moiety(a, b) -> None:
    assert moiety_key(a) == moiety_key(b)


@pytest.mark.parametrize(("a", "b"), [
    ("CHLORURE DE SODIUM", "CHLORURE DE POTASSIUM"),
    ("PHLOROGLUCINOL", "PHLOROGLUCINOL (TRIMÉTHYL ÉTHER DU)"),
    ("INSULINE HUMAINE", "INSULINE GLARGINE"),
    ("ACIDE CLAVULANIQUE", "AMOXICILLINE"),
])
def test_different_substances_keep_different_moieties(a, b) -> None:
    assert moiety_key(a) != moiety_key(b)


def test_nefopam_maximum_applies_to_the_injectable_forms_only() -> None:
    # ACUPAN's RCP: 120 mg/24 h by injection; its 30 mg tablet goes up to 6 tablets a day
    ampoule = drug("62580656", "ACUPAN 20 mg/2 mL, solution injectable", "solution injectable",
                   comp("19859", "NÉFOPAM (CHLORHYDRATE DE)", 20, per="ampoule",
                        element="solution"), routes=("intramusculaire", "intraveineuse"))
    tablet = drug("60000007", "NEFOPAM X 30 mg, comprimé", "comprimé",
                  comp("19859", "NÉFOPAM (CHLORHYDRATE DE)", 30))
    assert "dose.max_daily@1" in keys(run((ampoule, P(1, "ampoule", times_per_day=7))))
    assert not any(a.code.startswith("dose") for a in
                   run((ampoule, P(1, "ampoule", times_per_day=6))))
    assert not any(a.code.startswith("dose") for a in
                   run((tablet, P(1, "comprimé", times_per_day=6))))
