"""A spread of signed prescriptions for the CDA and MSSanté tests: structured and free-text
posology, every frequency kind, devices, acts, ALD, non-substitution, renewals, accents and
apostrophes in names, one line and many."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

from appliance.domain.posology import Duration, FreeTextPosology, Posology
from appliance.domain.prescription import (
    ActLine,
    DeviceLine,
    MedicationLine,
    NonSubstitution,
    Prescription,
    State,
)
from appliance.domain.prescription_id import PrescriptionIdGenerator
from drivers.printer.layout import Letterhead, OrderDocument
from drivers.printer.pdf import render_pdf
from sync.cda import Organisation
from tests import factories as f

ESTABLISHMENT = Organisation("EHPAD Les Tilleuls d'Aubigné", "750000001",
                             "12 rue de l'Église 75011 Paris")
SIGNED_AT = datetime(2026, 11, 25, 9, 31, tzinfo=UTC)


def new_id(n: int) -> str:
    return PrescriptionIdGenerator(lambda: 1_790_000_000_000 + n, lambda k: bytes([n % 251]) * k
                                   ).new()


def doliprane(**kw) -> MedicationLine:
    fields = {"label": "DOLIPRANE 1000 mg, comprimé", "cis": "60234100",
              "cip13": "3400935955838",
              "posology": Posology(dose=Decimal(1), unit="comprimé", moments=("matin", "soir"),
                                   duration=Duration(7, "jour"))}
    fields.update(kw)
    return MedicationLine(**fields)


def kardegic(**kw) -> MedicationLine:
    fields = {"label": "KARDEGIC 75 mg, poudre pour solution buvable en sachet-dose",
              "cis": "64755969",
              "posology": Posology(dose=Decimal(1), unit="sachet", moments=("midi",))}
    fields.update(kw)
    return MedicationLine(**fields)


def signed(pid: str, lines: tuple, *, renewals: int = 0, resident=None, at: datetime = SIGNED_AT
           ) -> Prescription:
    lines = tuple(replace(line, renewals=renewals) for line in lines)  # renewals are per line
    p = Prescription(id=pid, prescriber=f.physician(), resident=resident or f.resident(),
                     created_at=at - timedelta(minutes=3), lines=lines)
    return p.transition(State.SIGNED, at)


def spread() -> list[tuple[str, Prescription]]:
    """(what it shows, a signed prescription), twelve of them."""
    accents = f.resident(7, birth_name="D'ARTAGNAN-LÉVÊQUE", used_name="N'DIAYE",
                         first_names="Zoé-Hélène Marie-Thérèse", birth_date=date(1931, 2, 28))
    man = f.resident(8, sex="M", birth_name="ŒUVRARD", first_names="Jean-François",
                     ins=f.Ins.from_nir(f.nir("1310269123045")))
    cases = [
        ("one structured line (two moments, one dose)", (doliprane(),), {}),
        ("one free-text line", (kardegic(posology=FreeTextPosology(
            "1 sachet le midi au cours du repas, à diluer dans un verre d'eau")),), {}),
        ("different doses per moment, renewals", (doliprane(posology=Posology(
            dose=Decimal(2), unit="comprimé", moments=("matin", "soir"),
            moment_doses=(Decimal(1), Decimal(2)), duration=Duration(1, "mois"))),),
         {"renewals": 3}),
        ("times per day and as needed with a maximum", (
            doliprane(posology=Posology(dose=Decimal(1), unit="comprimé", times_per_day=3,
                                        as_needed=True, max_per_day=Decimal(3),
                                        route="orale")),
            kardegic(posology=Posology(dose=Decimal("0.5"), unit="sachet", times_per_day=7)),
        ), {}),
        ("every N hours, every N days, N times a week", (
            doliprane(posology=Posology(dose=Decimal(1), unit="comprimé", interval_hours=6,
                                        duration=Duration(5, "jour"))),
            doliprane(label="LEVOTHYROX 50 microgrammes, comprimé sécable", cis="65143010",
                      cip13=None, posology=Posology(dose=Decimal("0.5"), unit="comprimé",
                                                    every_days=2)),
            kardegic(posology=Posology(dose=Decimal("2.5"), unit="mL", times_per_week=3,
                                       route="sublinguale", duration=Duration(2, "semaine"))),
        ), {}),
        ("non-substitution MTE, EFG, CIF with quantities", (
            doliprane(non_substitution=NonSubstitution.MTE, quantity=Decimal(2)),
            kardegic(non_substitution=NonSubstitution.EFG, quantity=Decimal(3)),
            doliprane(cip13=None, non_substitution=NonSubstitution.CIF,
                      instructions="À prendre au cours d'un repas"),
        ), {}),
        ("ALD bizone", (doliprane(ald=True), kardegic(), doliprane(ald=True,
                                                                     cis=None)), {}),
        ("devices only (with and without LPP)", (
            DeviceLine(label="Pansements hydrocolloïdes 10×10 cm", lpp="1234567",
                       quantity=Decimal(10)),
            DeviceLine(label="Déambulateur à roulettes", ald=True),
        ), {"renewals": 1}),
        ("medications, device and acts", (
            doliprane(), DeviceLine(label="Bas de contention classe II", quantity=Decimal(2)),
            ActLine(text="Kinésithérapie : 10 séances"), ActLine(text="NFS, CRP", ald=True),
        ), {}),
        ("accents and apostrophes in the resident's names", (doliprane(),),
         {"resident": accents}),
        ("a man, structured route and single intake", (
            kardegic(posology=Posology(dose=Decimal(1), unit="sachet", route="orale")),),
         {"resident": man}),
        ("many lines", (*(
            doliprane(posology=Posology(dose=Decimal(1), unit="comprimé",
                                        moments=(("matin",), ("soir",), ("coucher",))[n % 3],
                                        duration=Duration(n + 1, "jour")), ald=n % 2 == 0)
            for n in range(10)), ActLine(text="Surveillance de la tension artérielle")),
         {"renewals": 2}),
    ]
    return [(what, signed(new_id(n), lines, **kw)) for n, (what, lines, kw) in enumerate(cases)]


def order_pdf(p: Prescription, org: Organisation = ESTABLISHMENT) -> bytes:
    return render_pdf(OrderDocument(p, f"ORDO-TEST-{p.id}", Letterhead(org.name, org.finess,
                                                                     org.address)),
                      created=p.signed_at)


def with_renewals(p: Prescription, renewals: int) -> Prescription:
    return replace(p, lines=tuple(replace(line, renewals=renewals) for line in p.lines))
