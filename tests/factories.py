"""Test data builders: valid identifiers computed with their keys, residents, practitioners."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime
from decimal import Decimal

from stdnum import luhn

from appliance.domain.ids import Ins, nir_key
from appliance.domain.people import Practitioner, Resident, Role
from appliance.domain.posology import Duration, FreeTextPosology, Posology
from appliance.domain.prescription import ActLine, DeviceLine, MedicationLine, Prescription


def nir(body13: str) -> str:
    """A NIR with its key, from the first 13 characters (2A/2B allowed)."""
    return body13 + nir_key(body13)


def rpps(body10: str = "1000123456") -> str:
    return body10 + luhn.calc_check_digit(body10)


def resident(n: int = 1, **kw) -> Resident:
    body = f"2{40 + n % 50:02d}0175{100 + n:03d}{n % 1000:03d}"[:13]
    fields = {"ins": Ins.from_nir(nir(body)), "birth_name": "MARTIN", "first_names": "Jeanne",
              "birth_date": date(1940, 1, 15), "sex": "F", "room": f"{100 + n}"}
    fields.update(kw)
    return Resident(**fields)


def physician(**kw) -> Practitioner:
    fields = {"id_nat_ps": "8" + rpps(), "last_name": "DURAND", "first_name": "Paul",
              "profession": "Médecin", "role": Role.PRESCRIBER, "am": "751234567"}
    fields.update(kw)
    return Practitioner(**fields)


def lines() -> tuple:
    return (
        MedicationLine(label="DOLIPRANE 1000 mg, comprimé", cip13="3400935955838",
                       posology=Posology(dose=Decimal(1), unit="comprimé",
                                         moments=("matin", "soir"),
                                         duration=Duration(7, "jour"))),
        MedicationLine(label="AMOXICILLINE 500 mg", cis="60234100",
                       posology=FreeTextPosology("selon schéma"), ald=True),
        DeviceLine(label="Pansements hydrocolloïdes", quantity=Decimal(10)),
        ActLine(text="Soins infirmiers à domicile : pansement tous les 2 jours"),
    )


# CIS_CPD_bdpm.txt rows of OXYCODONE SANDOZ 20 mg, gélule (CIS 60108518), as written there.
OXYCODONE_CONDITIONS = ("prescription limitée à 4 semaines",
                        "prescription en toutes lettres sur ordonnance sécurisée",
                        "stupéfiants")


def secure_line() -> MedicationLine:
    """A narcotic (secure prescription): its order goes to secure paper, never a receipt."""
    return MedicationLine(label="OXYCODONE SANDOZ 20 mg, gélule", cis="60108518",
                          common_name="oxycodone 17,93 mg", quantity=Decimal(2),
                          conditions=OXYCODONE_CONDITIONS,
                          posology=Posology(dose=Decimal(2), unit="gélule",
                                            moments=("matin", "soir"),
                                            duration=Duration(14, "jour")))


def prescription(pid: str, renewals: int = 0, **kw) -> Prescription:
    """A draft; ``renewals`` (a count per line) is given to every line."""
    fields = {"id": pid, "prescriber": physician(), "resident": resident(),
              "created_at": datetime(2026, 11, 25, 9, 30, tzinfo=UTC), "lines": lines()}
    fields.update(kw)
    if renewals:
        fields["lines"] = tuple(replace(line, renewals=renewals) for line in fields["lines"])
    return Prescription(**fields)
