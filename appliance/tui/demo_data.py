"""Demo data for ``ordo demo`` and the kiosk tests: residents and a small BDPM extract.

``demo_residents()`` are fictitious residents with valid NIR keys. ``FALLBACK_BDPM`` holds
real rows of the ANSM BDPM (2022 extract, the five files ``ordo drugs import`` reads) for a
dozen specialties common in nursing homes, and one generic of LASILIX in its generic group
(for the demo's pharmacy substitution): the demo imports it when the full extract is not
available. ``write_bdpm_subset`` copies the rows of chosen specialties out of a full extract,
so that tests search real data in a referential that imports in a fraction of a second.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date
from decimal import Decimal
from pathlib import Path

from appliance.domain.ids import Ins, nir_key
from appliance.domain.people import Resident, Sex
from appliance.domain.posology import Duration, Posology
from appliance.domain.prescription import ActLine, MedicationLine
from appliance.services.drafts import Draft

BDPM_FILES = ("CIS_bdpm.txt", "CIS_CIP_bdpm.txt", "CIS_COMPO_bdpm.txt", "CIS_GENER_bdpm.txt",
              "CIS_CPD_bdpm.txt")
BDPM_ENCODING = "cp1252"

# (NIR without key, birth name, used name, first names, birth date, sex, room)
_RESIDENTS = (
    ("2360575112034", "LEFEBVRE", "DUPONT", "Marie Louise", date(1936, 5, 2), Sex.FEMALE, "12"),
    ("1310269123045", "MARTIN", None, "Jean", date(1931, 2, 17), Sex.MALE, "14"),
    ("2281133063012", "ROUX", None, "Odette", date(1928, 11, 30), Sex.FEMALE, "15"),
    ("1390713055101", "PETIT", None, "André Paul", date(1939, 7, 4), Sex.MALE, "21"),
    ("2330459350088", "GARNIER", "MOREAU", "Suzanne", date(1933, 4, 21), Sex.FEMALE, "22"),
    ("1270806088077", "LAMBERT", None, "Lucien", date(1927, 8, 9), Sex.MALE, "23B"),
)


def demo_residents() -> list[Resident]:
    """Six fictitious residents (valid NIR keys, test data only)."""
    return [Resident(ins=Ins.from_nir(body + nir_key(body)), birth_name=birth, used_name=used,
                     first_names=first, birth_date=born, sex=sex, room=room)
            for body, birth, used, first, born, sex, room in _RESIDENTS]


def demo_draft() -> Draft:
    """Three medications and one act for the first demo resident (the headless demo
    scenario and the sign-to-print benchmark). LASILIX has generics: the demo's pharmacy
    hands one over in its place."""
    lines = [
        MedicationLine(label="DOLIPRANE 1000 mg, comprimé", cis="60234100",
                       posology=Posology(dose=Decimal(1), unit="comprimé",
                                         moments=("matin", "midi", "soir"),
                                         duration=Duration(5, "jour"))),
        MedicationLine(label="KARDEGIC 75 mg, poudre pour solution buvable en sachet-dose",
                       cis="64755969", posology=Posology(dose=Decimal(1), unit="sachet",
                                                         moments=("midi",)),
                       quantity=Decimal(3)),
        MedicationLine(label="LASILIX 40 mg, comprimé sécable", cis="65606743",
                       posology=Posology(dose=Decimal(1), unit="comprimé", moments=("matin",),
                                         duration=Duration(30, "jour"))),
        ActLine(text="NFS, CRP"),
    ]
    return Draft(resident=demo_residents()[0], lines=lines)


def write_fallback_bdpm(directory: Path) -> Path:
    """Write ``FALLBACK_BDPM`` as the five BDPM files (cp1252, CRLF) in ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    for name in BDPM_FILES:
        rows = FALLBACK_BDPM[name]
        (directory / name).write_bytes(("\r\n".join(rows) + "\r\n").encode(BDPM_ENCODING))
    return directory


def write_bdpm_subset(source: Path, directory: Path, name_prefixes: Iterable[str]) -> Path:
    """Copy, from a full BDPM extract in ``source``, the rows of every specialty whose name
    starts with one of ``name_prefixes`` (upper case), into ``directory``."""
    prefixes = tuple(p.upper() for p in name_prefixes)
    directory.mkdir(parents=True, exist_ok=True)
    lines = {name: (source / name).read_bytes().split(b"\n") for name in BDPM_FILES}
    keep: set[bytes] = set()
    for raw in lines["CIS_bdpm.txt"]:
        fields = raw.split(b"\t")
        if len(fields) > 1 and fields[1].decode(BDPM_ENCODING).upper().startswith(prefixes):
            keep.add(fields[0])
    for name, rows in lines.items():
        column = 2 if name == "CIS_GENER_bdpm.txt" else 0
        kept = [row for row in rows
                if len(row.split(b"\t")) > column and row.split(b"\t")[column] in keep]
        (directory / name).write_bytes(b"\n".join(kept) + b"\n")
    return directory


# Real rows of the 2022 BDPM extract (ANSM), for the demo when the full extract is absent.
FALLBACK_BDPM: dict[str, tuple[str, ...]] = {
    'CIS_bdpm.txt': (
        "60234100\tDOLIPRANE 1000 mg, comprimé\tcomprimé\torale\tAutorisation active\t"
        "Procédure nationale\tCommercialisée\t09/07/2002\t\t\t OPELLA HEALTHCARE FRANCE\t"
        "Non",
        "66567738\tDOLIPRANE 1000 mg, comprimé effervescent sécable\t"
        "comprimé effervescent(e) sécable\torale\tAutorisation active\t"
        "Procédure nationale\tCommercialisée\t16/12/1999\t\t\t OPELLA HEALTHCARE FRANCE\t"
        "Non",
        "69309629\tDOLIPRANE 1000 mg, gélule\tgélule\torale\tAutorisation active\t"
        "Procédure nationale\tCommercialisée\t25/02/2011\t\t\t OPELLA HEALTHCARE FRANCE\t"
        "Non",
        "63368332\tDOLIPRANE 500 mg, comprimé\tcomprimé\torale\tAutorisation active\t"
        "Procédure nationale\tCommercialisée\t26/04/1996\t\t\t OPELLA HEALTHCARE FRANCE\t"
        "Non",
        "69340279\tELIQUIS 2,5 mg, comprimé pelliculé\tcomprimé pelliculé\torale\t"
        "Autorisation active\tProcédure centralisée\tCommercialisée\t18/05/2011\t\t"
        "EU/1/11/691\t BRISTOL-MYERS SQUIBB PHARMA (IRLANDE)\tNon",
        "64578892\tINEXIUM 20 mg, comprimé gastro-résistant\t"
        "comprimé gastro-résistant(e)\torale\tAutorisation active\t"
        "Procédure de reconnaissance mutuelle\tCommercialisée\t12/09/2000\t\t\t"
        " LABORATOIRES GRUNENTHAL\tNon",
        "64755969\tKARDEGIC 75 mg, poudre pour solution buvable en sachet-dose\t"
        "poudre pour solution buvable\torale\tAutorisation active\tProcédure nationale\t"
        "Commercialisée\t25/06/1998\t\t\t SANOFI AVENTIS FRANCE\tNon",
        "65606743\tLASILIX 40 mg, comprimé sécable\tcomprimé sécable\torale\t"
        "Autorisation active\tProcédure nationale\tCommercialisée\t16/10/1987\t\t\t"
        " SANOFI AVENTIS FRANCE\tNon",
        "65143010\tLEVOTHYROX 50 microgrammes, comprimé sécable\tcomprimé sécable\t"
        "orale\tAutorisation active\tProcédure nationale\tCommercialisée\t02/06/1980\t\t"
        "\t MERCK SANTE\tNon",
        "60885246\tMOVICOL, poudre pour solution buvable en sachet\t"
        "poudre pour solution buvable\torale\tAutorisation active\tProcédure nationale\t"
        "Commercialisée\t22/12/1995\t\t\t NORGINE HEALTHCARE (PAYS-BAS)\tNon",
        "68269975\tSERESTA 10 mg, comprimé\tcomprimé\torale\tAutorisation active\t"
        "Procédure nationale\tCommercialisée\t22/10/1986\t\t\t NEURAXPHARM FRANCE\tNon",
        "60192594\tFUROSEMIDE ARROW 40 mg, comprimé sécable\tcomprimé sécable\torale\t"
        "Autorisation active\tProcédure nationale\tCommercialisée\t30/07/2004\t\t\t"
        " ARROW GENERIQUES\tNon",
    ),
    'CIS_CIP_bdpm.txt': (
        "60234100\t3595583\t"
        "plaquette(s) thermoformée(s) PVC-aluminium de 8  comprimé(s)\t"
        "Présentation active\tDéclaration de commercialisation\t02/01/2003\t"
        "3400935955838\toui\t65%\t1,07\t2,09\t1,02\t",
        "60234100\t5636955\t"
        "plaquette(s) thermoformée(s) PVC-aluminium de 100  comprimé(s)\t"
        "Présentation active\tDéclaration de commercialisation\t17/03/2003\t"
        "3400956369553\toui\t\t\t\t\t",
        "60885246\t3400102\t20 sachet(s) papier polyéthylène aluminium de 13,8108 g\t"
        "Présentation active\tDéclaration de commercialisation\t19/05/1996\t"
        "3400934001024\toui\t30%\t3,24\t4,26\t1,02\t",
        "63368332\t3232018\t"
        "plaquette(s) thermoformée(s) PVC-Aluminium de 16 comprimé(s)\t"
        "Présentation active\tDéclaration de commercialisation\t19/02/1981\t"
        "3400932320189\toui\t65%\t1,07\t2,09\t1,02\t",
        "63368332\t5547335\t"
        "10 plaquette(s) thermoformée(s) papier aluminium polyéthylène de 10 co"
        "mprimé(s)\tPrésentation active\tDéclaration de commercialisation\t19/05/1984\t"
        "3400955473350\toui\t\t\t\t\t",
        "64578892\t3553320\tplaquette(s) aluminium de 7 comprimé(s) en boîte\t"
        "Présentation active\tDéclaration de commercialisation\t21/07/2003\t"
        "3400935533203\toui\t65%\t1,80\t2,82\t1,02\t",
        "64578892\t3553337\tplaquette(s) aluminium de 14 comprimé(s) en boîte\t"
        "Présentation active\tDéclaration de commercialisation\t28/03/2002\t"
        "3400935533371\toui\t65%\t3,27\t4,29\t1,02\t",
        "64578892\t3553343\tplaquette(s) aluminium de 28 comprimé(s) en boîte\t"
        "Présentation active\tDéclaration de commercialisation\t28/03/2002\t"
        "3400935533432\toui\t65%\t6,25\t7,27\t1,02\t",
        "64578892\t5628281\tplaquette(s) aluminium de 50 comprimé(s) en boîte\t"
        "Présentation active\tDéclaration de commercialisation\t28/03/2002\t"
        "3400956282814\toui\t\t\t\t\t",
        "64755969\t3474419\t"
        "30 sachet(s)-dose(s) papier aluminium polyéthylène de 153,45 mg\t"
        "Présentation active\tDéclaration de commercialisation\t12/03/1999\t"
        "3400934744198\toui\t65%\t1,79\t2,81\t1,02\t"
        "Ce médicament peut être pris en charge ou remboursé par l'Assurance Ma"
        "ladie dans les cas suivants :<br><br>- Prévention, après un premier ac"
        "cident ischémique myocardique ou cérébral lié à l¿athérosclérose, d'un"
        "e récidive. ; JOURNAL OFFICIEL ; 01/08/93",
        "65143010\t3006566\tplaquette(s) PVC aluminium de 30 comprimé(s)\t"
        "Présentation active\tDéclaration de commercialisation\t19/04/2017\t"
        "3400930065662\toui\t65%\t1,13\t2,15\t1,02\t",
        "65143010\t3006568\tplaquette(s) PVC aluminium de 90 comprimé(s)\t"
        "Présentation active\tDéclaration de commercialisation\t22/05/2017\t"
        "3400930065686\toui\t65%\t2,76\t3,78\t1,02\t",
        "65606743\t3528138\t"
        "plaquette(s) thermoformée(s) PVC-Aluminium de 30  comprimé(s)\t"
        "Présentation active\tDéclaration de commercialisation\t26/12/2000\t"
        "3400935281388\toui\t65%\t2,00\t3,02\t1,02\t",
        "65606743\t5531937\t"
        "plaquette(s) thermoformée(s) PVC-Aluminium de 100  comprimé(s)\t"
        "Présentation active\tDéclaration de commercialisation\t19/10/1965\t"
        "3400955319375\toui\t\t\t\t\t",
        "66567738\t3529422\ttube(s) polypropylène de 8 comprimé(s)\tPrésentation active\t"
        "Déclaration de commercialisation\t02/05/2000\t3400935294227\toui\t65%\t1,07\t"
        "2,09\t1,02\t",
        "66567738\t5632992\t"
        "film(s) thermosoudé(s) polyéthylène aluminium de 100 comprimé(s)\t"
        "Présentation active\tDéclaration de commercialisation\t15/01/2002\t"
        "3400956329922\toui\t\t\t\t\t",
        "68269975\t3588755\t"
        "plaquette(s) thermoformée(s) PVC-Aluminium de 30 comprimé(s)\t"
        "Présentation active\tDéclaration de commercialisation\t02/01/2003\t"
        "3400935887559\toui\t65%\t1,25\t2,27\t1,02\t",
        "68269975\t5789618\t"
        "plaquette(s) thermoformée(s) PVC-Aluminium de 100 comprimé(s)\t"
        "Présentation active\tDéclaration de commercialisation\t15/11/2011\t"
        "3400957896188\toui\t\t\t\t\t",
        "69309629\t4153396\tplaquette(s) thermoformée(s) PVC-Aluminium de 8 gélule(s)\t"
        "Présentation active\tDéclaration de commercialisation\t30/11/2011\t"
        "3400941533969\toui\t65%\t1,07\t2,09\t1,02\t",
        "69340279\t4194544\t"
        "plaquette(s) thermoformée(s) aluminium PVC PVDC de 10 comprimé(s)\t"
        "Présentation active\tDéclaration de commercialisation\t06/07/2012\t"
        "3400941945441\toui\t65%\t9,95\t10,97\t1,02\t"
        "Ce médicament peut être pris en charge ou remboursé par l'Assurance Ma"
        "ladie dans les cas suivants :<br><br>- Pour éviter la formation de cai"
        "llots sanguins et les gros problèmes de circulation sanguine qui en ré"
        "sulteraient, chez les personnes qui viennent de se faire poser une pro"
        "thèse de la hanche ou du genou.<br><br>Cela concerne uniquement les bo"
        "îtes de 10 et 20 comprimés.<br>Les boites de 60 comprimés sont entière"
        "ment remboursées. ; JOURNAL OFFICIEL ; 06/07/12",
        "69340279\t4194550\t"
        "plaquette(s) thermoformée(s) aluminium PVC PVDC de 20 comprimé(s)\t"
        "Présentation active\tDéclaration de commercialisation\t06/07/2012\t"
        "3400941945502\toui\t65%\t19,83\t20,85\t1,02\t"
        "Ce médicament peut être pris en charge ou remboursé par l'Assurance Ma"
        "ladie dans les cas suivants :<br><br>- Pour éviter la formation de cai"
        "llots sanguins et les gros problèmes de circulation sanguine qui en ré"
        "sulteraient, chez les personnes qui viennent de se faire poser une pro"
        "thèse de la hanche ou du genou.<br><br>Cela concerne uniquement les bo"
        "îtes de 10 et 20 comprimés.<br>Les boites de 60 comprimés sont entière"
        "ment remboursées. ; JOURNAL OFFICIEL ; 06/07/12",
        "69340279\t4194567\t"
        "plaquette(s) thermoformée(s) aluminium PVC PVDC de 60 comprimé(s)\t"
        "Présentation active\tDéclaration de commercialisation\t06/07/2012\t"
        "3400941945670\toui\t65%\t58,95\t59,97\t1,02\t",
        "69340279\t4194573\t"
        "60 plaquette(s) thermoformée(s) aluminium PVC PVDC de 1 comprimé(s)\t"
        "Présentation active\tDéclaration de commercialisation\t06/07/2012\t"
        "3400941945731\toui\t\t\t\t\t",
        "60192594\t3647676\tplaquette(s) thermoformée(s) PVC-Aluminium de 30 comprimé(s)\t"
        "Présentation active\tDéclaration de commercialisation\t08/12/2004\t"
        "3400936476769\toui\t65%\t1,85\t2,87\t1,02\t",
        "60192594\t3739438\tplaquette(s) thermoformée(s) PVC-Aluminium de 90 comprimé(s)\t"
        "Présentation active\tDéclaration de commercialisation\t30/10/2017\t"
        "3400937394383\toui\t\t\t\t\t",
    ),
    'CIS_COMPO_bdpm.txt': (
        "60234100\tcomprimé\t02202\tPARACÉTAMOL\t1000 mg\tun comprimé\tSA\t1\t",
        "60885246\tpoudre\t00093\tCHLORURE DE POTASSIUM\t0,0466 g\t"
        "un sachet de 13,8108 g\tSA\t3\t",
        "60885246\tpoudre\t00899\tBICARBONATE DE SODIUM\t0,1785 g\t"
        "un sachet de 13,8108 g\tSA\t2\t",
        "60885246\tpoudre\t00901\tCHLORURE DE SODIUM\t0,3507 g\tun sachet de 13,8108 g\t"
        "SA\t4\t",
        "60885246\tpoudre\t79576\tMACROGOL 3350\t13,1250 g\tun sachet de 13,8108 g\tSA\t"
        "1\t",
        "63368332\tcomprimé\t02202\tPARACÉTAMOL\t500 mg\tun comprimé\tSA\t1\t",
        "64578892\tcomprimé\t17407\tÉSOMÉPRAZOLE\t20 mg\tun comprimé\tFT\t5\t",
        "64578892\tcomprimé\t61112\tÉSOMÉPRAZOLE MAGNÉSIUM TRIHYDRATÉ\t\t\tSA\t5\t",
        "64755969\tpoudre\t00005\tACIDE ACÉTYLSALICYLIQUE\t75 mg\t"
        "un sachet-dose de 153,45 mg\tFT\t1\t",
        "64755969\tpoudre\t03107\tDL-LYSINE (ACÉTYLSALICYLATE DE)\t135 mg\t"
        "un sachet-dose de 153,45 mg\tSA\t1\t",
        "65143010\tcomprimé\t00382\tLÉVOTHYROXINE SODIQUE\t50 microgrammes\tun comprimé\t"
        "SA\t1\t",
        "65143010\tcomprimé\t68783\tLÉVOTHYROXINE\t48,62 microgrammes\tun comprimé\tFT\t"
        "1\t",
        "65606743\tcomprimé\t01958\tFUROSÉMIDE\t40 mg\tun comprimé\tSA\t1\t",
        "66567738\tcomprimé\t02202\tPARACÉTAMOL\t1000 mg\tun comprimé\tSA\t1\t",
        "68269975\tcomprimé\t02533\tOXAZÉPAM\t10 mg\tun comprimé\tSA\t1\t",
        "69309629\tgélule\t02202\tPARACÉTAMOL\t1000 mg\tune gélule\tSA\t1\t",
        "69340279\tcomprimé\t61321\tAPIXABAN\t2,5 mg\tun comprimé\tSA\t1\t",
        "60192594\tcomprimé\t01958\tFUROSÉMIDE\t40 mg\tun comprimé\tSA\t1\t",
    ),
    'CIS_GENER_bdpm.txt': (
        "56\tFUROSEMIDE 40 mg - LASILIX 40 mg, comprimé sécable\t65606743\t0\t1\t",
        "56\tFUROSEMIDE 40 mg - LASILIX 40 mg, comprimé sécable\t60192594\t1\t2\t",
        "793\t"
        "LEVOTHYROXINE SODIQUE 50 microgrammes - LEVOTHYROX 50 microgrammes, co"
        "mprimé sécable.\t65143010\t0\t1\t",
        "968\t"
        "ESOMEPRAZOLE MAGNESIUM TRIHYDRATE équivalant à ESOMEPRAZOLE 20 mg  - I"
        "NEXIUM 20 mg, comprimé gastro-résistant.\t64578892\t0\t1\t",
        "970\tMACROGOL 3350 13,125 g - MOVICOL, poudre pour solution buvable en sachet.\t"
        "60885246\t0\t1\t",
        "1712\tAPIXABAN 2,5 mg - ELIQUIS 2,5 mg, comprimé pelliculé\t69340279\t0\t1\t",
    ),
    'CIS_CPD_bdpm.txt': (
        "68269975\tprescription limitée à 12 semaines",
        "68269975\tliste I",
        "69340279\tliste I",
        "64578892\tliste II",
        "65143010\tliste II",
        "65606743\tliste II",
        "60192594\tliste II",
    ),
}
