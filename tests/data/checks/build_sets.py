"""Build the test sets of the prescribing checks from the real BDPM extract.

    .venv/bin/python tests/data/checks/build_sets.py [--bdpm ../shared/data/bdpm]

Writes, next to this file:

- ``residents.csv``: fictitious residents (valid NIR keys) with their allergies, in the
  format of ``ordo residents import``;
- ``ordinary.json``: 200 ordinary, correct geriatric prescriptions (drafts in the format of
  ``ordo prescribe``, with each resident's current treatment), built from a catalogue of
  common nursing-home treatments at their usual geriatric posology;
- ``dangerous.json``: 100 prescriptions each seeding one danger (overdose, duplicate
  substance, allergy, hospital-only drug, over-long hypnotic or anxiolytic, inappropriate
  drug at 85) with the alert key expected;
- ``bdpm/``: the rows of the five BDPM files for the specialties of the cases marked
  ``"fixture": true`` (a representative subset covering every rule), so that a clone without
  the full extract still runs them.

The output is deterministic (seeded). Presentations are the first marketed CIP13 of each
specialty in the extract.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import random
import sqlite3
import sys
import tempfile
from datetime import date
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[2]
sys.path.insert(0, str(ROOT))

from appliance.domain.ids import nir_key  # noqa: E402
from appliance.services.referential import import_bdpm  # noqa: E402
from appliance.store.referential.build import referential_path  # noqa: E402
from appliance.store.referential.facts import ReferentialFacts  # noqa: E402

TODAY = "2025-01-15"
SEED = 18
BDPM_FILES = ("CIS_bdpm.txt", "CIS_CIP_bdpm.txt", "CIS_COMPO_bdpm.txt", "CIS_GENER_bdpm.txt",
              "CIS_CPD_bdpm.txt")


def P(dose, unit, **kw):
    """A structured posology in the draft format ("dose" as a string)."""
    out = {"kind": "structured", "dose": str(dose), "unit": unit}
    for key, value in kw.items():
        out[key] = str(value) if key == "max_per_day" else value
    return out


def D(value, unit):
    return {"value": value, "unit": unit}


def T(text):
    return {"kind": "text", "text": text}


M, MS, MMS, S, C = ["matin"], ["matin", "soir"], ["matin", "midi", "soir"], ["soir"], ["coucher"]

# -- the catalogue of ordinary treatments ----------------------------------------------------
# key: (CIS, group, posologies, fixed duration or None, limit). One drug per group per
# prescription; ``limit``: the specialty's CIS_CPD duration limit in days (its lines keep
# the duration given, and the prescription then has no renewal).
CATALOGUE = {
    "AMLOR5": ("63458349", "ccb", [P(1, "gélule", moments=M)], None, None),
    "TRIATEC2.5": ("62341282", "acei", [P(1, "comprimé", moments=M)], None, None),
    "COVERSYL5": ("63849839", "acei", [P(1, "comprimé", moments=M)], None, None),
    "APROVEL150": ("67481345", "arb", [P(1, "comprimé", moments=M)], None, None),
    "DETENSIEL10": ("60747455", "bb", [P("0.5", "comprimé", moments=M),
                                       P(1, "comprimé", moments=M)], None, None),
    "LASILIX40": ("65606743", "loop", [P(1, "comprimé", moments=M),
                                       P("0.5", "comprimé", moments=M)], None, None),
    "FLUDEX1.5": ("61631770", "thiazide", [P(1, "comprimé", moments=M)], None, None),
    "ESIDREX25": ("66153192", "thiazide", [P("0.5", "comprimé", moments=M)], None, None),
    "ALDACTONE25": ("64565845", "mra", [P(1, "comprimé", moments=M)], None, None),
    "ELIQUIS2.5": ("69340279", "anticoag", [P(1, "comprimé", moments=MS)], None, None),
    "XARELTO15": ("69800507", "anticoag", [P(1, "comprimé", moments=S)], None, None),
    "PREVISCAN20": ("68133651", "anticoag", [P("0.75", "comprimé", moments=S)], None, None),
    "PLAVIX75": ("63564053", "antiplatelet", [P(1, "comprimé", moments=["midi"])], None, None),
    "KARDEGIC75": ("64755969", "antiplatelet", [P(1, "sachet", moments=["midi"])], None, None),
    "TAHOR20": ("69902323", "statin", [P(1, "comprimé", moments=S)], None, None),
    "CRESTOR5": ("63191743", "statin", [P(1, "comprimé", moments=S)], None, None),
    "DIGOXINE0.25": ("67681303", "digoxin", [P("0.5", "comprimé", moments=M)], None, None),
    "CORDARONE200": ("60662396", "antiarrhythmic", [P(1, "comprimé", moments=M)], None, None),
    "GLUCOPHAGE850": ("67547090", "metformin", [P(1, "comprimé", moments=MS),
                                                P(1, "comprimé", moments=MMS)], None, None),
    "DIAMICRON60": ("60331738", "sulfonylurea", [P(1, "comprimé", moments=M)], None, None),
    "JANUVIA50": ("60595727", "dpp4", [P(1, "comprimé", moments=M)], None, None),
    "LANTUS": ("65979151", "insulin", [P(12, "UI", moments=S, route="sous-cutanée"),
                                       P(18, "UI", moments=S, route="sous-cutanée")],
               None, None),
    "LEVOTHYROX75": ("62080626", "thyroid", [P(1, "comprimé", moments=M)], None, None),
    "SEROPLEX10": ("67219535", "antidepressant", [P("0.5", "comprimé", moments=M),
                                                  P(1, "comprimé", moments=M)], None, None),
    "ZOLOFT50": ("60683198", "antidepressant", [P(1, "gélule", moments=M)], None, None),
    "NORSET15": ("65124914", "antidepressant2", [P(1, "comprimé", moments=C)], None, None),
    "IMOVANE3.75": ("61435939", "hypnotic", [P(1, "comprimé", moments=C, duration=D(14, "jour")),
                                             P(1, "comprimé", moments=C,
                                               duration=D(4, "semaine"))], "fixed", 28),
    "SERESTA10": ("68269975", "anxiolytic", [P(1, "comprimé", moments=S,
                                               duration=D(4, "semaine")),
                                             P(1, "comprimé", moments=MS,
                                               duration=D(2, "semaine"))], "fixed", 84),
    "XEROQUEL50": ("64822649", "antipsychotic", [P(1, "comprimé", moments=S)], None, None),
    "RISPERDAL1": ("63605525", "antipsychotic", [P("0.5", "comprimé", moments=MS)], None, None),
    "KEPPRA500": ("68596770", "antiepileptic", [P(1, "comprimé", moments=MS)], None, None),
    "MODOPAR125": ("65122219", "levodopa", [P(1, "gélule", moments=MMS)], None, None),
    # pregabalin is on secure prescription: a structured posology with its duration
    "LYRICA75": ("63096099", "neuropathic", [P(1, "gélule", moments=MS,
                                               duration=D(1, "mois"))], None, 186),
    "DOLIPRANE500": ("67119691", "paracetamol", [P(2, "gélule", moments=MMS),
                                                 P(1, "gélule", moments=MMS)], None, None),
    "DOLIPRANE1000": ("60234100", "paracetamol", [P(1, "comprimé", moments=MMS)], None, None),
    "DAFALGANCAPS": ("60281210", "paracetamol", [P(1, "gélule", interval_hours=8,
                                                   as_needed=True, max_per_day=3)],
                     None, None),
    "EFFERALGAN1000": ("60025403", "paracetamol", [P(1, "comprimé", times_per_day=3)],
                       None, None),
    "IXPRIM": ("60392513", "paracetamol+opioid", [P(1, "comprimé", moments=MMS,
                                             duration=D(10, "jour"))], "fixed", 84),
    "TOPALGIC50": ("63435884", "opioid", [P(1, "gélule", moments=MS, duration=D(1, "mois"))],
                   "fixed", 84),
    "SKENAN10": ("61227030", "opioid", [P(1, "gélule", moments=MS, duration=D(28, "jour"))],
                 "fixed", 28),
    "FORLAX10": ("69298346", "laxative", [P(1, "sachet", moments=M)], None, None),
    "MOVICOL": ("60885246", "laxative", [P(1, "sachet", moments=M)], None, None),
    "DUPHALAC": ("60155329", "laxative", [P(1, "sachet", moments=M)], None, None),
    "TRANSIPEG5.9": ("66948867", "laxative", [P(1, "sachet", moments=M)], None, None),
    "EDUCTYL": ("68550890", "laxative2", [P(1, "suppositoire", as_needed=True,
                                            max_per_day=1)], None, None),
    "INEXIUM20": ("64578892", "ppi", [P(1, "comprimé", moments=M)], None, None),
    "MOPRAL20": ("64103828", "ppi", [P(1, "gélule", moments=M)], None, None),
    "EUPANTOL20": ("67232155", "ppi", [P(1, "comprimé", moments=M)], None, None),
    "SPASFON": ("68081368", "antispasmodic", [P(2, "comprimé", as_needed=True,
                                                max_per_day=6)], None, None),
    "SMECTA": ("64450063", "antidiarrheal", [P(1, "sachet", moments=MMS,
                                               duration=D(3, "jour"))], "fixed", None),
    "IMODIUM2": ("61651634", "antidiarrheal", [P(1, "gélule", as_needed=True, max_per_day=4,
                                                 duration=D(3, "jour"))], "fixed", None),
    "MOTILIUM10": ("63679194", "antiemetic", [P(1, "comprimé", moments=MMS,
                                                duration=D(5, "jour"))], "fixed", None),
    "UVEDOSE100000": ("63489259", "vitd", [P(1, "ampoule", every_days=90)], None, None),
    "CACITD3": ("61896199", "vitd", [P(1, "sachet", moments=["midi"])], None, None),
    "DIFFUK": ("60875266", "potassium", [P(1, "gélule", moments=MS)], None, None),
    "TARDYFERON80": ("68269288", "iron", [P(1, "comprimé", moments=M)], None, None),
    "SPECIAFOLDINE5": ("69630186", "folate", [P(1, "comprimé", moments=M)], None, None),
    "OMIX": ("63729537", "alpha", [P(1, "gélule", moments=S)], None, None),
    "PROSCAR": ("67859371", "5ari", [P(1, "comprimé", moments=M)], None, None),
    "ZYLORIC100": ("64148136", "gout", [P(1, "comprimé", moments=M)], None, None),
    "AERIUS5": ("61833327", "antihistamine", [P(1, "comprimé", moments=M,
                                                duration=D(10, "jour"))], "fixed", None),
    "CLAMOXYL1G": ("64539416", "antibiotic", [P(1, "comprimé", moments=MMS,
                                                duration=D(7, "jour"))], "fixed", None),
    "AUGMENTIN1G": ("66053338", "antibiotic", [P(1, "sachet", moments=MMS,
                                                 duration=D(7, "jour"))], "fixed", None),
    "OROKEN200": ("67393849", "antibiotic", [P(1, "comprimé", moments=MS,
                                               duration=D(5, "jour"))], "fixed", None),
    "CIFLOX500": ("65636245", "antibiotic", [P(1, "comprimé", moments=MS,
                                               duration=D(7, "jour"))], "fixed", None),
    "VENTOLINE": ("60928110", "saba", [P(2, "bouffée", as_needed=True, max_per_day=8,
                                         route="inhalée")], None, None),
    "SERETIDE250": ("61572165", "ics", [P(1, "dose", moments=MS, route="inhalée")], None, None),
    "XALATAN": ("60047271", "glaucoma", [P(1, "goutte", moments=S, route="ophtalmique")],
                None, None),
}
# A smaller catalogue whose specialties go into the repository's BDPM fixture.
FIXTURE_CATALOGUE = ("AMLOR5", "TRIATEC2.5", "DETENSIEL10", "LASILIX40", "ELIQUIS2.5",
                     "KARDEGIC75", "TAHOR20", "GLUCOPHAGE850", "LEVOTHYROX75", "SEROPLEX10",
                     "IMOVANE3.75", "DOLIPRANE1000", "SKENAN10", "FORLAX10", "MOVICOL",
                     "DIFFUK", "INEXIUM20", "CACITD3", "CLAMOXYL1G", "XALATAN")
CHRONIC_DURATIONS = [None, D(1, "mois"), D(3, "mois")]


# -- residents -------------------------------------------------------------------------------
FIRST_F = ["Jeanne", "Marie", "Odette", "Suzanne", "Paulette", "Germaine", "Simone", "Yvette",
           "Madeleine", "Colette", "Lucienne", "Raymonde"]
FIRST_M = ["Jean", "André", "Lucien", "Marcel", "René", "Roger", "Henri", "Louis", "Robert",
           "Georges"]
LAST = ["BERNARD", "DUBOIS", "THOMAS", "ROBERT", "RICHARD", "PETIT", "DURAND", "LEROY",
        "MOREAU", "SIMON", "LAURENT", "LEFEBVRE", "MICHEL", "GARCIA", "DAVID", "BERTRAND",
        "ROUX", "VINCENT", "FOURNIER", "MOREL", "GIRARD", "ANDRE", "MERCIER", "DUPONT",
        "LAMBERT", "BONNET", "FRANCOIS", "MARTINEZ", "LEGRAND", "GARNIER", "FAURE", "ROUSSEL",
        "BLANC", "GUERIN", "MULLER", "HENRY", "ROUSSEAU", "NICOLAS", "PERRIN", "MORIN"]
ALLERGY_CHOICES = ["", "", "", "amoxicilline", "codéine", "ibuprofène", "sulfaméthoxazole",
                   "clarithromycine", "", "céfixime"]


def make_resident(n: int, rng: random.Random, *, born: date | None = None,
                  allergies: str = "") -> dict:
    sex = rng.choice("12")
    if born is None:
        born = date(rng.randint(1923, 1948), rng.randint(1, 12), rng.randint(1, 28))
    body = f"{sex}{born.year % 100:02d}{born.month:02d}75{100 + n:03d}{n:03d}"
    first = rng.choice(FIRST_M if sex == "1" else FIRST_F)
    return {"nir": body + nir_key(body), "nom": LAST[n % len(LAST)], "prenoms": first,
            "date_naissance": born.isoformat(), "sexe": "M" if sex == "1" else "F",
            "chambre": str(100 + n), "allergies": allergies}


# -- helpers ---------------------------------------------------------------------------------
class Bdpm:
    """The real extract, imported in a temporary directory."""

    def __init__(self, source: Path) -> None:
        self.source = source
        self.dir = Path(tempfile.mkdtemp(prefix="ordo-checks-build-"))
        import_bdpm(self.dir, source, referential_date="2022-06-03")
        self.db = sqlite3.connect(referential_path(self.dir))
        self.facts = ReferentialFacts(referential_path(self.dir))

    def cip13(self, cis: str) -> str:
        rows = self.db.execute(
            "SELECT cip13, marketing, admin_status FROM presentation WHERE cis = ?"
            " ORDER BY cip13", (cis,)).fetchall()
        if not rows:
            raise SystemExit(f"CIS {cis}: no presentation in the extract")
        marketed = [r[0] for r in rows if r[1] == "Déclaration de commercialisation"
                    and r[2] == "Présentation active"]
        return (marketed or [rows[0][0]])[0]

    def conflicts(self, cis: str, allergies: str) -> bool:
        drug = self.facts.drug(cis=cis)
        names = [a for a in allergies.split("|") if a]
        for name in names:
            code, substance = self.facts.substances(name)[0]
            from appliance.domain.drug_facts import Allergy
            allergy = Allergy(code, substance, date(2020, 1, 1), "x")
            if any(allergy.concerns(c) for c in drug.components):
                return True
        return False


def line(bdpm: Bdpm, cis: str, posology: dict, **extra) -> dict:
    return {"type": "medication", "cip13": bdpm.cip13(cis), "posology": posology, **extra}


def draft(resident: dict, lines: list, renewals: int = 0) -> dict:
    return {"resident": {"nir": resident["nir"]}, "renewals": renewals, "lines": lines}


# -- ordinary set ----------------------------------------------------------------------------
def ordinary_cases(bdpm: Bdpm, residents: list[dict], rng: random.Random) -> list[dict]:
    cases = []
    for number in range(200):
        fixture = number < 30
        keys = list(FIXTURE_CATALOGUE if fixture else CATALOGUE)
        resident = residents[number % len(residents)]
        rng.shuffle(keys)
        used_groups: set[str] = set()
        chosen: list[str] = []
        wanted = rng.randint(3, 8) + rng.randint(0, 5)
        for key in keys:
            cis, group, _, _, _ = CATALOGUE[key]
            groups = set(group.split("+"))
            if groups & used_groups or bdpm.conflicts(cis, resident["allergies"]):
                continue
            used_groups |= groups
            chosen.append(key)
            if len(chosen) >= wanted:
                break
        split = rng.randint(min(2, len(chosen)), min(6, len(chosen)))
        draft_keys, current_keys = chosen[:split], chosen[split:]
        limited = any(CATALOGUE[k][4] for k in draft_keys)
        renewals = 0 if limited else rng.choice([0, 0, 2, 2, 5])
        chronic = rng.choice(CHRONIC_DURATIONS) if not renewals else D(1, "mois")
        lines = []
        for key in draft_keys:
            cis, _, posologies, fixed, _ = CATALOGUE[key]
            posology = dict(rng.choice(posologies))
            if not fixed and chronic and "duration" not in posology \
                    and (posology.get("moments") or posology.get("times_per_day")):
                posology["duration"] = chronic
            lines.append(line(bdpm, cis, posology))
        current = [line(bdpm, CATALOGUE[k][0], dict(rng.choice(CATALOGUE[k][2])))
                   for k in current_keys]
        cases.append({"id": f"O{number + 1:03d}", "fixture": fixture,
                      "drugs": draft_keys, "current_drugs": current_keys,
                      "current": current, "draft": draft(resident, lines, renewals)})
    return cases


# -- dangerous set ---------------------------------------------------------------------------
CHRONIC = D(1, "mois")


def _pim(title: str, cis: str, posology: dict, fixture: bool = False) -> tuple:
    """A potentially inappropriate drug, alone in a draft for the resident aged 85."""
    return ("pim", title, [(cis, posology)], [], 0, "pim.laroche@1", "85", fixture)


# (danger, title, draft lines [(CIS, posology)], current [(CIS, posology)], renewals,
#  expected key, resident: "85" or an allergy, fixture)
DANGERS = [
    # overdose
    ("overdose", "DOLIPRANE 1000 mg, 1 comprimé 24 fois par jour",
     [("60234100", P(1, "comprimé", times_per_day=24, duration=D(7, "jour")))], [], 0,
     "dose.max_daily@1", "85", True),
    ("overdose", "DOLIPRANE 500 mg, 3 gélules 4 fois par jour",
     [("63458349", P(1, "gélule", moments=M)),
      ("67119691", P(3, "gélule", times_per_day=4, duration=D(5, "jour")))], [], 0,
     "dose.max_daily@2", "85", False),
    ("overdose", "DOLIPRANE 1000 mg toutes les 4 heures",
     [("60234100", P(1, "comprimé", interval_hours=4, duration=D(5, "jour")))], [], 0,
     "dose.max_daily@1", "85", True),
    ("overdose", "TOPALGIC 50 mg, 2 gélules 5 fois par jour",
     [("63435884", P(2, "gélule", times_per_day=5, duration=D(5, "jour")))], [], 0,
     "dose.max_daily@1", "85", False),
    ("overdose", "STILNOX 10 mg, 2 comprimés au coucher",
     [("63179285", P(2, "comprimé", moments=C, duration=D(7, "jour")))], [], 0,
     "dose.max_daily@1", "85", False),
    ("overdose", "SEROPLEX 10 mg, 2 comprimés le matin à 85 ans",
     [("67219535", P(2, "comprimé", moments=M, duration=CHRONIC))], [], 0,
     "dose.max_daily_elderly@1", "85", True),
    ("overdose", "SEROPRAM 20 mg matin et soir à 85 ans",
     [("69388669", P(1, "comprimé", moments=MS, duration=CHRONIC))], [], 0,
     "dose.max_daily_elderly@1", "85", False),
    ("overdose", "HALDOL 5 mg matin et soir à 85 ans",
     [("61697400", P(1, "comprimé", moments=MS, duration=D(7, "jour")))], [], 0,
     "dose.max_daily_elderly@1", "85", False),
    ("overdose", "AMLOR 10 mg matin et soir",
     [("61939921", P(1, "gélule", moments=MS, duration=CHRONIC))], [], 0,
     "dose.max_daily@1", "85", False),
    ("overdose", "ELIQUIS 5 mg, 2 comprimés 3 fois par jour",
     [("61902218", P(2, "comprimé", moments=MMS, duration=CHRONIC))], [], 0,
     "dose.max_daily@1", "85", False),
    ("overdose", "RISPERDAL 1 mg, 3 comprimés matin et soir à 85 ans",
     [("63605525", P(3, "comprimé", moments=MS, duration=CHRONIC))], [], 0,
     "dose.max_daily_elderly@1", "85", False),
    ("overdose", "GLUCOPHAGE 1000 mg 4 fois par jour",
     [("61052830", P(1, "comprimé", times_per_day=4, duration=CHRONIC))], [], 0,
     "dose.max_daily@1", "85", False),
    ("overdose", "COLCHICINE 1 mg 4 fois par jour",
     [("68066715", P(1, "comprimé", times_per_day=4, duration=D(3, "jour")))], [], 0,
     "dose.max_daily@1", "85", False),
    ("overdose", "MOTILIUM 10 mg 4 fois par jour",
     [("63679194", P(1, "comprimé", times_per_day=4, duration=D(5, "jour")))], [], 0,
     "dose.max_daily@1", "85", False),
    ("overdose", "KEPPRA 1000 mg, 2 comprimés matin et soir",
     [("68719194", P(2, "comprimé", moments=MS, duration=CHRONIC))], [], 0,
     "dose.max_daily@1", "85", False),
    ("overdose", "IMOVANE 7,5 mg, 2 comprimés au coucher",
     [("68508795", P(2, "comprimé", moments=C, duration=D(7, "jour")))], [], 0,
     "dose.max_daily@1", "85", False),
    ("overdose", "LYRICA 300 mg 3 fois par jour",
     [("60018088", P(1, "gélule", moments=MMS, duration=CHRONIC))], [], 0,
     "dose.max_daily@1", "85", False),
    ("overdose", "DOLIPRANE 1000 mg 3 fois par jour et DAFALGANCAPS 1000 mg 2 fois",
     [("60234100", P(1, "comprimé", moments=MMS, duration=D(5, "jour"))),
      ("60281210", P(1, "gélule", moments=MS, duration=D(5, "jour")))], [], 0,
     "dose.max_daily_combined@2", "85", True),
    ("overdose", "EFFERALGAN 1000 mg 2 fois par jour sur un DOLIPRANE 1000 mg 3 fois en cours",
     [("60025403", P(1, "comprimé", moments=MS, duration=D(5, "jour")))],
     [("60234100", P(1, "comprimé", moments=MMS))], 0,
     "dose.max_daily_combined@1", "85", True),
    ("overdose", "FORLAX en texte libre : 999 comprimés",
     [("69298346", T("999 comprimés le matin"))], [], 0,
     "posology.units_per_intake@1", "85", True),
    # duplicate substance
    ("duplicate", "DOLIPRANE et DAFALGAN dans la même ordonnance",
     [("60234100", P(1, "comprimé", moments=MS, duration=D(5, "jour"))),
      ("60281210", P(1, "gélule", moments=["midi"], duration=D(5, "jour")))], [], 0,
     "duplicate.substance@2", "85", False),
    ("duplicate", "DOLIPRANE et IXPRIM (paracétamol)",
     [("60234100", P(1, "comprimé", moments=MS, duration=D(5, "jour"))),
      ("60392513", P(1, "comprimé", moments=["midi"], duration=D(5, "jour")))], [], 0,
     "duplicate.substance@2", "85", False),
    ("duplicate", "TOPALGIC et IXPRIM (tramadol)",
     [("63435884", P(1, "gélule", moments=MS, duration=D(5, "jour"))),
      ("60392513", P(1, "comprimé", moments=["midi"], duration=D(5, "jour")))], [], 0,
     "duplicate.substance@2", "85", False),
    ("duplicate", "AMLOR et AMLODIPINE BIOGARAN",
     [("63458349", P(1, "gélule", moments=M, duration=CHRONIC)),
      ("65728601", P(1, "gélule", moments=S, duration=CHRONIC))], [], 0,
     "duplicate.substance@2", "85", True),
    ("duplicate", "AMLOR et COVERAM (amlodipine)",
     [("63458349", P(1, "gélule", moments=M, duration=CHRONIC)),
      ("60367022", P(1, "comprimé", moments=M, duration=CHRONIC))], [], 0,
     "duplicate.substance@2", "85", False),
    ("duplicate", "TAHOR et ATORVASTATINE BIOGARAN",
     [("69902323", P(1, "comprimé", moments=S, duration=CHRONIC)),
      ("68212077", P(1, "comprimé", moments=M, duration=CHRONIC))], [], 0,
     "duplicate.substance@2", "85", True),
    ("duplicate", "SEROPLEX et ESCITALOPRAM BIOGARAN",
     [("67219535", P("0.5", "comprimé", moments=M, duration=CHRONIC)),
      ("68770687", P("0.5", "comprimé", moments=S, duration=CHRONIC))], [], 0,
     "duplicate.substance@2", "85", False),
    ("duplicate", "CACIT VITAMINE D3 et UVEDOSE (cholécalciférol)",
     [("61896199", P(1, "sachet", moments=["midi"], duration=CHRONIC)),
      ("63489259", P(1, "ampoule", every_days=90))], [], 0,
     "duplicate.substance@2", "85", False),
    ("duplicate", "INEXIUM et ESOMEPRAZOLE BIOGARAN",
     [("64578892", P(1, "comprimé", moments=M, duration=CHRONIC)),
      ("69047251", P(1, "gélule", moments=S, duration=CHRONIC))], [], 0,
     "duplicate.substance@2", "85", False),
    ("duplicate", "KEPPRA et LEVETIRACETAM BIOGARAN",
     [("68596770", P(1, "comprimé", moments=M, duration=CHRONIC)),
      ("64718764", P(1, "comprimé", moments=S, duration=CHRONIC))], [], 0,
     "duplicate.substance@2", "85", False),
    ("duplicate", "DIFFU-K et KALEORID (chlorure de potassium)",
     [("60875266", P(1, "gélule", moments=M, duration=CHRONIC)),
      ("61958925", P(1, "comprimé", moments=S, duration=CHRONIC))], [], 0,
     "duplicate.substance@2", "85", False),
    ("duplicate", "DAFALGANCAPS sur un DOLIPRANE en cours",
     [("60281210", P(1, "gélule", moments=MS, duration=D(5, "jour")))],
     [("60234100", P(1, "comprimé", moments=MMS))], 0,
     "duplicate.current@1", "85", False),
    ("duplicate", "AMLODIPINE BIOGARAN sur un AMLOR en cours",
     [("65728601", P(1, "gélule", moments=M, duration=CHRONIC))],
     [("63458349", P(1, "gélule", moments=M))], 0, "duplicate.current@1", "85", True),
    ("duplicate", "FUROSEMIDE BIOGARAN sur un LASILIX en cours",
     [("61337509", P(1, "comprimé", moments=M, duration=CHRONIC))],
     [("65606743", P(1, "comprimé", moments=M))], 0, "duplicate.current@1", "85", True),
    ("duplicate", "ATORVASTATINE BIOGARAN sur un TAHOR en cours",
     [("68212077", P(1, "comprimé", moments=S, duration=CHRONIC))],
     [("69902323", P(1, "comprimé", moments=S))], 0, "duplicate.current@1", "85", False),
    ("duplicate", "ESCITALOPRAM BIOGARAN sur un SEROPLEX en cours",
     [("68770687", P("0.5", "comprimé", moments=M, duration=CHRONIC))],
     [("67219535", P("0.5", "comprimé", moments=M))], 0, "duplicate.current@1", "85", False),
    ("duplicate", "ESOMEPRAZOLE BIOGARAN sur un INEXIUM en cours",
     [("69047251", P(1, "gélule", moments=M, duration=CHRONIC))],
     [("64578892", P(1, "comprimé", moments=M))], 0, "duplicate.current@1", "85", False),
    ("duplicate", "UVEDOSE sur un CACIT VITAMINE D3 en cours",
     [("63489259", P(1, "ampoule", every_days=90))],
     [("61896199", P(1, "sachet", moments=["midi"]))], 0, "duplicate.current@1", "85", True),
    ("duplicate", "LEVETIRACETAM BIOGARAN sur un KEPPRA en cours",
     [("64718764", P(1, "comprimé", moments=MS, duration=CHRONIC))],
     [("68596770", P(1, "comprimé", moments=MS))], 0, "duplicate.current@1", "85", False),
    ("duplicate", "IXPRIM sur un TOPALGIC en cours",
     [("60392513", P(1, "comprimé", moments=MS, duration=D(5, "jour")))],
     [("63435884", P(1, "gélule", moments=MS))], 0, "duplicate.current@1", "85", False),
    # allergy
    ("allergy", "AUGMENTIN chez un résident allergique à l'amoxicilline",
     [("66053338", P(1, "sachet", moments=MMS, duration=D(7, "jour")))], [], 0,
     "allergy.substance@1", "amoxicilline", False),
    ("allergy", "CLAMOXYL chez un résident allergique à l'amoxicilline",
     [("64539416", P(1, "comprimé", moments=MMS, duration=D(7, "jour")))], [], 0,
     "allergy.substance@1", "amoxicilline", True),
    ("allergy", "DOLIPRANE chez un résident allergique au paracétamol",
     [("60234100", P(1, "comprimé", moments=MMS, duration=D(5, "jour")))], [], 0,
     "allergy.substance@1", "paracétamol", True),
    ("allergy", "KARDEGIC chez un résident allergique à l'acide acétylsalicylique",
     [("64755969", P(1, "sachet", moments=["midi"], duration=CHRONIC))], [], 0,
     "allergy.substance@1", "acide acétylsalicylique", True),
    ("allergy", "CIFLOX chez un résident allergique à la ciprofloxacine",
     [("65636245", P(1, "comprimé", moments=MS, duration=D(7, "jour")))], [], 0,
     "allergy.substance@1", "ciprofloxacine", False),
    ("allergy", "OROKEN chez un résident allergique au céfixime",
     [("67393849", P(1, "comprimé", moments=MS, duration=D(5, "jour")))], [], 0,
     "allergy.substance@1", "céfixime", False),
    ("allergy", "IXPRIM chez un résident allergique au tramadol",
     [("60392513", P(1, "comprimé", moments=MMS, duration=D(5, "jour")))], [], 0,
     "allergy.substance@1", "tramadol", False),
    ("allergy", "BACTRIM FORTE chez un résident allergique au sulfaméthoxazole",
     [("64121235", P(1, "comprimé", moments=MS, duration=D(5, "jour")))], [], 0,
     "allergy.substance@1", "sulfaméthoxazole", False),
    ("allergy", "DAFALGAN CODEINE chez un résident allergique à la codéine",
     [("66003374", P(1, "comprimé", moments=MMS, duration=D(3, "jour")))], [], 0,
     "allergy.substance@1", "codéine", False),
    ("allergy", "IBUPROFENE chez un résident allergique à l'ibuprofène",
     [("60550988", P(1, "comprimé", moments=MMS, duration=D(3, "jour")))], [], 0,
     "allergy.substance@1", "ibuprofène", False),
    ("allergy", "ZYLORIC chez un résident allergique à l'allopurinol",
     [("64148136", P(1, "comprimé", moments=M, duration=CHRONIC))], [], 0,
     "allergy.substance@1", "allopurinol", False),
    ("allergy", "ZECLAR chez un résident allergique à la clarithromycine",
     [("67997205", P(1, "comprimé", moments=MS, duration=D(7, "jour")))], [], 0,
     "allergy.substance@1", "clarithromycine", False),
    ("allergy", "TAVANIC chez un résident allergique à la lévofloxacine",
     [("64784789", P(1, "comprimé", moments=M, duration=D(7, "jour")))], [], 0,
     "allergy.substance@1", "lévofloxacine", False),
    ("allergy", "AMLOR (amlodipine) en 2e ligne chez un résident allergique à l'amlodipine",
     [("60234100", P(1, "comprimé", moments=MMS, duration=D(5, "jour"))),
      ("63458349", P(1, "gélule", moments=M, duration=CHRONIC))], [], 0,
     "allergy.substance@2", "amlodipine", True),
    ("allergy", "PRIMPERAN chez un résident allergique au métoclopramide",
     [("62684103", P(1, "comprimé", moments=MMS, duration=D(3, "jour")))], [], 0,
     "allergy.substance@1", "métoclopramide", False),
    # hospital-only
    ("hospital_only", "XANAX 1 mg (réservé à l'usage hospitalier)",
     [("67426893", P("0.25", "comprimé", moments=S, duration=D(7, "jour")))], [], 0,
     "condition.hospital_only@1", "85", True),
    ("hospital_only", "ALPRAZOLAM VIATRIS 1 mg",
     [("60377803", P("0.25", "comprimé", moments=S, duration=D(7, "jour")))], [], 0,
     "condition.hospital_only@1", "85", False),
    ("hospital_only", "ALPRAZOLAM ARROW LAB 1 mg",
     [("68808515", P("0.25", "comprimé", moments=S, duration=D(7, "jour")))], [], 0,
     "condition.hospital_only@1", "85", False),
    ("hospital_only", "PERFALGAN 10 mg/ml en perfusion",
     [("69387574", P(100, "mL", times_per_day=3, route="intraveineuse",
                     duration=D(3, "jour")))], [], 0, "condition.hospital_only@1", "85", False),
    ("hospital_only", "PARACETAMOL B. BRAUN 10 mg/ml en perfusion",
     [("61304982", P(100, "mL", times_per_day=3, route="intraveineuse",
                     duration=D(3, "jour")))], [], 0, "condition.hospital_only@1", "85", False),
    ("hospital_only", "PARACETAMOL KABI 10 mg/ml en perfusion",
     [("64454154", P(100, "mL", times_per_day=3, route="intraveineuse",
                     duration=D(3, "jour")))], [], 0, "condition.hospital_only@1", "85", False),
    ("hospital_only", "MIDAZOLAM PANPHARMA 5 mg/ml",
     [("61324091", P("0.5", "mL", as_needed=True, max_per_day=1, route="sous-cutanée"))], [],
     0, "condition.hospital_only@1", "85", False),
    ("hospital_only", "FUROSEMIDE RENAUDIN 250 mg/25 mL",
     [("68888874", P(4, "mL", moments=M, route="intraveineuse", duration=D(3, "jour")))], [],
     0, "condition.hospital_only@1", "85", False),
    ("hospital_only", "OZALIN 2 mg/mL solution buvable",
     [("62149015", P(5, "mL", as_needed=True, max_per_day=5))], [], 0,
     "condition.hospital_only@1", "85", False),
    ("hospital_only", "UROMITEXAN 600 mg",
     [("66310626", P(1, "comprimé", moments=MS, duration=D(3, "jour")))], [], 0,
     "condition.hospital_only@1", "85", False),
    # over-long hypnotic or anxiolytic
    ("over_long", "IMOVANE 3,75 mg pendant 2 mois",
     [("61435939", P(1, "comprimé", moments=C, duration=D(2, "mois")))], [], 0,
     "condition.max_duration@1", "85", True),
    ("over_long", "IMOVANE 3,75 mg 1 mois à renouveler 2 fois",
     [("61435939", P(1, "comprimé", moments=C, duration=D(1, "mois")))], [], 2,
     "condition.max_duration@1", "85", True),
    ("over_long", "STILNOX 10 mg, 1/2 comprimé pendant 6 semaines",
     [("63179285", P("0.5", "comprimé", moments=C, duration=D(6, "semaine")))], [], 0,
     "condition.max_duration@1", "85", False),
    ("over_long", "ZOPICLONE ARROW LAB 3,75 mg pendant 5 semaines",
     [("61271518", P(1, "comprimé", moments=C, duration=D(5, "semaine")))], [], 0,
     "condition.max_duration@1", "85", False),
    ("over_long", "HAVLANE pendant 3 mois",
     [("69071035", P("0.5", "comprimé", moments=C, duration=D(3, "mois")))], [], 0,
     "condition.max_duration@1", "85", False),
    ("over_long", "SERESTA 10 mg pendant 6 mois",
     [("68269975", P(1, "comprimé", moments=S, duration=D(6, "mois")))], [], 0,
     "condition.max_duration@1", "85", True),
    ("over_long", "SERESTA 10 mg 1 mois à renouveler 5 fois",
     [("68269975", P(1, "comprimé", moments=S, duration=D(1, "mois")))], [], 5,
     "condition.max_duration@1", "85", True),
    ("over_long", "XANAX 0,25 mg pendant 4 mois",
     [("69847791", P(1, "comprimé", moments=S, duration=D(4, "mois")))], [], 0,
     "condition.max_duration@1", "85", False),
    ("over_long", "XANAX 0,50 mg 3 mois à renouveler une fois",
     [("60647049", P("0.5", "comprimé", moments=S, duration=D(3, "mois")))], [], 1,
     "condition.max_duration@1", "85", False),
    ("over_long", "LEXOMIL 6 mg pendant 16 semaines",
     [("66796142", P("0.25", "comprimé", moments=S, duration=D(16, "semaine")))], [], 0,
     "condition.max_duration@1", "85", False),
    ("over_long", "TEMESTA 1 mg pendant 4 mois",
     [("67917629", P(1, "comprimé", moments=S, duration=D(4, "mois")))], [], 0,
     "condition.max_duration@1", "85", False),
    ("over_long", "TRANXENE 5 mg pendant 100 jours",
     [("68494908", P(1, "gélule", moments=S, duration=D(100, "jour")))], [], 0,
     "condition.max_duration@1", "85", False),
    ("over_long", "VALIUM 10 mg, 1/2 comprimé 2 mois à renouveler 1 fois",
     [("60290800", P("0.5", "comprimé", moments=S, duration=D(2, "mois")))], [], 1,
     "condition.max_duration@1", "85", False),
    ("over_long", "SERESTA 10 mg en 2e ligne, 12 semaines à renouveler 1 fois",
     [("63458349", P(1, "gélule", moments=M, duration=D(12, "semaine"))),
      ("68269975", P(1, "comprimé", moments=S, duration=D(12, "semaine")))], [], 1,
     "condition.max_duration@2", "85", True),
    ("over_long", "DIAZEPAM TEVA 5 mg pendant 13 semaines",
     [("66023836", P(1, "comprimé", moments=S, duration=D(13, "semaine")))], [], 0,
     "condition.max_duration@1", "85", False),
    # potentially inappropriate at 85 (criteria of the Laroche list re-read in its Tableau 1)
    _pim("ATARAX 25 mg à 85 ans", "61519586",
         P(1, "comprimé", moments=S, duration=D(2, "semaine")), fixture=True),
    _pim("LEXOMIL 6 mg à 85 ans", "66796142",
         P("0.25", "comprimé", moments=S, duration=D(4, "semaine"))),
    _pim("TERCIAN 25 mg à 85 ans", "63400513", P(1, "comprimé", moments=S, duration=CHRONIC)),
    _pim("LAROXYL 25 mg à 85 ans", "65892928", P(1, "comprimé", moments=S, duration=CHRONIC)),
    _pim("ANAFRANIL 25 mg à 85 ans", "69235342", P(1, "comprimé", moments=M, duration=CHRONIC)),
    _pim("DITROPAN 5 mg à 85 ans", "69224470", P(1, "comprimé", moments=MS, duration=CHRONIC)),
    _pim("VESICARE 5 mg à 85 ans", "67862887", P(1, "comprimé", moments=M, duration=CHRONIC)),
    _pim("CATAPRESSAN 0,15 mg à 85 ans", "68678872",
         P(1, "comprimé", moments=MS, duration=CHRONIC)),
    _pim("HYPERIUM 1 mg à 85 ans", "62174246", P(1, "comprimé", moments=M, duration=CHRONIC)),
    _pim("VOGALENE 15 mg à 85 ans", "69503737", P(1, "gélule", moments=MMS, duration=D(5, "jour"))),
    _pim("DIGOXINE NATIVELLE 0,25 mg, 1 comprimé par jour à 85 ans", "67681303",
         P(1, "comprimé", moments=M, duration=CHRONIC), fixture=True),
    _pim("THERALENE 5 mg à 85 ans", "66801066", P(1, "comprimé", moments=C, duration=D(7, "jour"))),
    _pim("DONORMYL 15 mg à 85 ans", "62382724",
         P("0.5", "comprimé", moments=C, duration=D(7, "jour"))),
    _pim("PHENERGAN 25 mg à 85 ans", "69764032",
         P(1, "comprimé", moments=C, duration=D(7, "jour"))),
    _pim("TRANXENE 5 mg à 85 ans", "68494908", P(1, "gélule", moments=S, duration=D(4, "semaine"))),
    _pim("STILNOX 10 mg, 1 comprimé au coucher à 85 ans", "63179285",
         P(1, "comprimé", moments=C, duration=D(14, "jour")), fixture=True),
    _pim("IMOVANE 7,5 mg, 1 comprimé au coucher à 85 ans", "68508795",
         P(1, "comprimé", moments=C, duration=D(14, "jour"))),
    _pim("SERESTA 50 mg matin et soir à 85 ans", "60351986",
         P(1, "comprimé", moments=MS, duration=D(2, "semaine"))),
    _pim("DULCOLAX 5 mg à 85 ans", "63476404", P(1, "comprimé", moments=S, duration=D(5, "jour"))),
    _pim("NAFTIDROFURYL BIOGARAN 200 mg à 85 ans", "60639052",
         P(1, "comprimé", moments=MMS, duration=CHRONIC)),
]


def dangerous_cases(bdpm: Bdpm, resident_for: dict[str, dict]) -> list[dict]:
    cases = []
    for number, (danger, title, lines, current, renewals, expect, who, fixture) in \
            enumerate(DANGERS, start=1):
        resident = resident_for[who]
        cases.append({
            "id": f"D{number:03d}", "danger": danger, "title": title, "fixture": fixture,
            "expect": [expect],
            "current": [line(bdpm, cis, p) for cis, p in current],
            "draft": draft(resident, [line(bdpm, cis, p) for cis, p in lines], renewals)})
    return cases


# -- the BDPM fixture ------------------------------------------------------------------------
def cis_of_cases(bdpm: Bdpm, cases: list[dict]) -> set[str]:
    found = set()
    for case in cases:
        for item in case["draft"]["lines"] + case["current"]:
            found.add(bdpm.facts.drug(cip13=item["cip13"]).cis)
    return found


def write_fixture(source: Path, target: Path, wanted: set[str]) -> None:
    """Copy the rows of the wanted specialties from the five files, bytes unchanged."""
    target.mkdir(exist_ok=True)
    for name in BDPM_FILES:
        column = 2 if name == "CIS_GENER_bdpm.txt" else 0
        kept = []
        for raw in (source / name).read_bytes().split(b"\n"):
            fields = raw.split(b"\t")
            if len(fields) > column and fields[column].strip().decode("ascii", "replace") \
                    in wanted:
                kept.append(raw)
        (target / name).write_bytes(b"\n".join(kept) + b"\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bdpm", type=Path, default=ROOT.parent / "shared" / "data" / "bdpm")
    args = parser.parse_args()
    bdpm = Bdpm(args.bdpm)
    rng = random.Random(SEED)
    residents = [make_resident(n, rng, allergies=rng.choice(ALLERGY_CHOICES))
                 for n in range(1, 41)]
    special = {"85": make_resident(41, rng, born=date(1939, 6, 2))}
    for n, allergy in enumerate(sorted({d[6] for d in DANGERS} - {"85"}), start=42):
        special[allergy] = make_resident(n, rng, born=date(1931 + n % 10, 3, 14),
                                         allergies=allergy)
    ordinary = ordinary_cases(bdpm, residents, rng)
    dangerous = dangerous_cases(bdpm, special)
    with (HERE / "residents.csv").open("w", encoding="utf-8", newline="") as out:
        writer = csv.DictWriter(out, fieldnames=list(residents[0]), delimiter=";")
        writer.writeheader()
        writer.writerows(residents + list(special.values()))
    for name, cases in (("ordinary.json", ordinary), ("dangerous.json", dangerous)):
        body = ",\n".join(json.dumps(case, ensure_ascii=False) for case in cases)
        (HERE / name).write_text(f'{{"today": "{TODAY}", "cases": [\n{body}\n]}}\n', "utf-8")
    fixture = [c for c in ordinary + dangerous if c["fixture"]]
    wanted = cis_of_cases(bdpm, fixture) | UNIT_TEST_CIS
    write_fixture(args.bdpm, HERE / "bdpm", wanted)
    buf = io.StringIO()
    print(f"{len(ordinary)} ordinary, {len(dangerous)} dangerous, {len(fixture)} on the "
          f"fixture ({len(wanted)} specialties)", file=buf)
    print(buf.getvalue(), end="")


# A specialty holding each substance residents.csv names as an allergy, so that the
# residents' allergies resolve against the fixture too.
ALLERGEN_CIS = {"codéine": "66003374", "ibuprofène": "60550988", "sulfaméthoxazole": "64121235",
                "clarithromycine": "67997205", "lévofloxacine": "64784789",
                "métoclopramide": "62684103", "céfixime": "67393849",
                "ciprofloxacine": "65636245", "tramadol": "60392513", "allopurinol": "64148136",
                "amoxicilline": "64539416", "paracétamol": "60234100",
                "acide acétylsalicylique": "64755969", "amlodipine": "63458349"}
# Specialties the unit tests read from the fixture besides the cases' own.
UNIT_TEST_CIS = set(ALLERGEN_CIS.values()) | {
    "69309629", "61519586", "61939921", "62650485", "60562855", "61162294", "63093669",
    "67426893", "63179285", "68066715", "60367022", "63855240"}

if __name__ == "__main__":
    main()
