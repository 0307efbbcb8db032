"""A signed prescription as a CDA R2 eP-MED-DM document (ANS CI-SIS 2024.01), and back.

``build_cda()`` writes the document for the DMP and for MSSanté:

- the header: the resident (INS with its OID, names, sex, birth date), the author and the
  legal authenticator (the prescriber, idNat_PS, profession from TRE_G15), the custodian
  (the establishment, idNat_Struct = ``1`` + FINESS), the prescription's ePU ID and validity
  in ``documentationOf``, "bizone" when ALD and other lines are mixed;
- FR-Prescription-medicaments: one FR-Traitement-prescrit entry per medication line (CIS
  code with the CIP13 as translation, the common name (DC) as generic equivalent, the
  posology, structured when the line has one, renewals, quantity, substitution permitted or
  not with its reason, ALD);
- FR-Prescription-dispositifs-medicaux: one entry per device line (LPP code when known);
- FR-Commentaire-non-code: the free-text acts (they have no structured eP-MED-DM entry);
- FR-Document-PDF-copie: the order's PDF, as printed.

An eP-MED-DM document needs a medication or a device line: an order of acts only raises
``CdaNotApplicable`` (the pharmacy then gets the PDF alone).

Every code and OID comes from ``sync.codes``. The line flags the order does not carry
(work accident, prevention, not reimbursed, off-label) are written ``false``: the printed
order has no such mention, which reads as "no". ``line_renewals()`` is the one place that
reads how many times a line may be renewed.

``read_cda()`` reads a received eP-MED-DM document (any author) into ``ReceivedDocument``:
parsed with entities, DTDs and the network off; anything else is ``DocumentRefused`` with the
reason.
"""

from __future__ import annotations

import base64
import sqlite3
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from lxml import etree

from appliance.domain.people import fold
from appliance.domain.posology import Posology
from appliance.domain.prescription import (
    ActLine,
    DeviceLine,
    Line,
    MedicationLine,
    Prescription,
    local,
)
from appliance.errors import CdaNotApplicable, DocumentRefused
from appliance.ports.mail import ExternalLine, ReceivedDocument
from sync import codes

NS = codes.CDA_NS
XSI = codes.XSI_NS
PHARM = codes.CDA_PHARM_NS
_NSMAP = {None: NS, "xsi": XSI, "pharm": PHARM}
_DOC_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, codes.PRESCRIPTION_ID_SYSTEM + "/cda")
MAX_VALIDITY_DAYS = 366  # a French prescription covers one year of treatment at most
MIN_VALIDITY_DAYS = 92  # three months to present it for a first dispensation (R5132-22 CSP)
MEDIA_TYPE = "text/xml"


# -- what the builder needs besides the prescription ----------------------------------------------
@dataclass(frozen=True)
class Organisation:
    name: str
    finess: str = ""
    address: str = ""


@dataclass(frozen=True)
class DrugFacts:
    """What the referential knows of a medication line: its CIS and common name (DC)."""

    cis: str | None = None
    common_name: str | None = None


DrugLookup = Callable[[MedicationLine], DrugFacts]


def no_referential(line: MedicationLine) -> DrugFacts:
    return DrugFacts(cis=line.cis)


def line_renewals(p: Prescription, line: Line) -> int:
    """How many times ``line`` may be renewed ("à renouveler N fois" is per line)."""
    return int(line.renewals)


def document_uuid(prescription_id: str, kind: str = "document") -> str:
    """A stable UUID (RFC 4122 name-based) for the document, its set or an entry."""
    return str(uuid.uuid5(_DOC_NAMESPACE, f"{prescription_id}|{kind}")).upper()


def common_name(rows: Iterable[tuple[str, str, str, str, int]]) -> str | None:
    """The DC of a specialty from its composition rows ``(element, substance, dosage, nature,
    link)``: the therapeutic fraction (FT) rather than the active substance (SA) it is
    linked to, each with its dosage, joined by " + " ("AMOXICILLINE 500 mg + ACIDE
    CLAVULANIQUE 62,5 mg")."""
    groups: dict[tuple[str, int], list[tuple[str, str, str]]] = {}
    for element, substance, dosage, nature, link in rows:
        groups.setdefault((element, link), []).append((substance, dosage, nature))
    parts: list[str] = []
    for group in groups.values():
        fractions = [g for g in group if g[2] == "FT"] or group
        for substance, dosage, _ in fractions:
            part = " ".join(filter(None, [substance.strip(), dosage.strip()]))
            if part and part not in parts:
                parts.append(part)
    return " + ".join(parts) or None


def referential_lookup(path: Path) -> DrugLookup:
    """A ``DrugLookup`` over the referential file (CIS of a CIP13, DC from ``composition``);
    without the file, lines keep their own CIS and no DC."""
    if not Path(path).is_file():
        return no_referential
    uri = f"file:{path}?mode=ro"

    def lookup(line: MedicationLine) -> DrugFacts:
        try:
            conn = sqlite3.connect(uri, uri=True)
        except sqlite3.Error:
            return no_referential(line)
        try:
            cis = line.cis
            if cis is None and line.cip13:
                row = conn.execute("SELECT cis FROM presentation WHERE cip13 = ?",
                                   (line.cip13,)).fetchone()
                cis = row[0] if row else None
            if cis is None:
                return DrugFacts()
            rows = conn.execute("SELECT element, substance, dosage, nature, link"
                                " FROM composition WHERE cis = ? ORDER BY rowid",
                                (cis,)).fetchall()
            return DrugFacts(cis=cis, common_name=common_name(rows))
        except sqlite3.Error:
            return DrugFacts(cis=line.cis)
        finally:
            conn.close()

    return lookup


# -- XML helpers ----------------------------------------------------------------------------------
def _q(tag: str) -> str:
    if ":" in tag:
        prefix, local_name = tag.split(":", 1)
        return f"{{{ {'pharm': PHARM, 'xsi': XSI}[prefix] }}}{local_name}"
    return f"{{{NS}}}{tag}"


def _el(parent: etree._Element, tag: str, text: str | None = None, **attrs: Any
        ) -> etree._Element:
    node = etree.SubElement(parent, _q(tag))
    for key, value in attrs.items():
        if value is None:
            continue
        name = f"{{{XSI}}}type" if key == "xsi_type" else key.rstrip("_")
        node.set(name, str(value))
    if text is not None:
        node.text = text
    return node


def _templates(parent: etree._Element, roots: Iterable[str]) -> None:
    for root in roots:
        _el(parent, "templateId", root=root)


def _ts(moment: datetime) -> str:
    """A CDA TS in Paris local time with its offset: ``20261125093000+0100``."""
    return local(moment).strftime("%Y%m%d%H%M%S%z")


def _day(day: date) -> str:
    return day.strftime("%Y%m%d")


def _pq(amount: Decimal) -> str:
    return format(amount.normalize(), "f")


def _code(parent: etree._Element, tag: str, pair: tuple[str, str], system: str,
          system_name: str | None = None) -> etree._Element:
    return _el(parent, tag, code=pair[0], displayName=pair[1], codeSystem=system,
               codeSystemName=system_name)


def _ref(parent: etree._Element, target: str) -> etree._Element:
    text = _el(parent, "text")
    _el(text, "reference", value=f"#{target}")
    return text


def _id(parent: etree._Element, root: str, extension: str | None = None) -> None:
    _el(parent, "id", root=root, extension=extension)


def _org_id(parent: etree._Element, org: Organisation) -> None:
    if org.finess:
        _id(parent, codes.FINESS_OID, codes.ID_NAT_STRUCT_FINESS_PREFIX + org.finess)
    else:
        _el(parent, "id", nullFlavor="UNK")


def _addr(parent: etree._Element, text: str) -> None:
    if text.strip():
        _el(parent, "addr", " ".join(text.split()))
    else:
        _el(parent, "addr", nullFlavor="UNK")


def _profession(parent: etree._Element, profession: str) -> None:
    key = fold(profession).split(" ")[0] if profession.strip() else ""
    found = codes.PROFESSION_CODES.get(key)
    if found is None:
        _el(parent, "code", nullFlavor="UNK")
    else:
        _code(parent, "code", found, codes.PROFESSION_SYSTEM)


def _person(parent: etree._Element, tag: str, p: Prescription) -> None:
    d = p.prescriber
    person = _el(parent, tag)
    name = _el(person, "name")
    _el(name, "given", d.first_name)
    _el(name, "family", d.last_name)
    if fold(d.profession).startswith("medecin"):
        _el(name, "suffix", "DR")


def _organisation(parent: etree._Element, tag: str, org: Organisation) -> etree._Element:
    node = _el(parent, tag)
    _org_id(node, org)
    _el(node, "name", org.name)
    _el(node, "telecom", nullFlavor="UNK")
    _addr(node, org.address)
    return node


def _assigned(parent: etree._Element, tag: str, p: Prescription, org: Organisation
              ) -> etree._Element:
    entity = _el(parent, tag)
    _id(entity, codes.ID_NAT_PS_OID, p.prescriber.id_nat_ps)
    _profession(entity, p.prescriber.profession)
    _addr(entity, org.address)
    _el(entity, "telecom", nullFlavor="UNK")
    _person(entity, "assignedPerson", p)
    _organisation(entity, "representedOrganization", org)
    return entity


def validity(p: Prescription) -> tuple[datetime, datetime]:
    """From the signature to the end of the longest treatment with its renewals (at least
    three months, at most a year)."""
    start = p.signed_at or p.created_at
    days = MIN_VALIDITY_DAYS
    for line in p.lines:
        if isinstance(line, MedicationLine) and isinstance(line.posology, Posology) \
                and line.posology.duration is not None:
            length = _duration_days(line.posology)
            days = max(days, length * (1 + line_renewals(p, line)))
    return start, start + timedelta(days=min(days, MAX_VALIDITY_DAYS))


def _duration_days(pos: Posology) -> int:
    assert pos.duration is not None
    per = {"jour": 1, "semaine": 7, "mois": 30}[pos.duration.unit]
    return pos.duration.value * per


# -- the header -----------------------------------------------------------------------------------
def _header(doc: etree._Element, p: Prescription, org: Organisation) -> None:
    _el(doc, "realmCode", code="FR")
    _el(doc, "typeId", root=codes.CDA_TYPE_ID[0], extension=codes.CDA_TYPE_ID[1])
    for root, extension in codes.CDA_DOCUMENT_TEMPLATES:
        _el(doc, "templateId", root=root, extension=extension)
    _el(doc, "id", root=document_uuid(p.id))
    _code(doc, "code", codes.LOINC_PRESCRIPTION, codes.LOINC, "LOINC")
    _el(doc, "title", codes.CDA_TITLE)
    signed = p.signed_at or p.created_at
    _el(doc, "effectiveTime", value=_ts(signed))
    _el(doc, "confidentialityCode", code="N", displayName="Normal",
        codeSystem=codes.CONFIDENTIALITY)
    _el(doc, "languageCode", code="fr-FR")
    _el(doc, "setId", root=document_uuid(p.id, "set"))
    _el(doc, "versionNumber", value="1")

    r = p.resident
    role = _el(_el(doc, "recordTarget"), "patientRole")
    _id(role, r.ins.oid, r.ins.value)
    _addr(role, org.address)  # the resident lives in the establishment
    _el(role, "telecom", nullFlavor="UNK")
    patient = _el(role, "patient", classCode="PSN")
    name = _el(patient, "name")
    _el(name, "family", r.birth_name, qualifier="BR")
    _el(name, "given", r.first_names)
    _el(name, "given", r.first_names.split()[0], qualifier="BR")
    if r.used_name:
        _el(name, "family", r.used_name, qualifier="CL")
        _el(name, "given", r.first_names.split()[0], qualifier="CL")
    _el(patient, "administrativeGenderCode", code=r.sex.value,
        displayName="Féminin" if r.sex.value == "F" else "Masculin",
        codeSystem=codes.ADMINISTRATIVE_GENDER)
    _el(patient, "birthTime", value=_day(r.birth_date))

    author = _el(doc, "author", typeCode="AUT", contextControlCode="OP")
    _el(author, "time", value=_ts(signed))
    _assigned(author, "assignedAuthor", p, org).set("classCode", "ASSIGNED")

    custodian = _el(_el(doc, "custodian"), "assignedCustodian")
    _organisation(custodian, "representedCustodianOrganization", org)

    legal = _el(doc, "legalAuthenticator")
    _el(legal, "time", value=_ts(signed))
    _el(legal, "signatureCode", code="S")
    _assigned(legal, "assignedEntity", p, org)

    start, end = validity(p)
    event = _el(_el(doc, "documentationOf"), "serviceEvent", classCode="ACT")
    _id(event, codes.EPU_ID_ROOT, p.id)
    _code(event, "code", codes.LOINC_PRESCRIPTION, codes.LOINC, "LOINC")
    period = _el(event, "effectiveTime")
    _el(period, "low", value=_ts(start))
    _el(period, "high", value=_ts(end))
    performer = _el(event, "performer", typeCode="PRF")
    _assigned(performer, "assignedEntity", p, org)
    if p.is_ald_split:
        bizone = _el(_el(doc, "documentationOf"), "serviceEvent", classCode="INFO")
        _code(bizone, "code", codes.BIZONE_CODE, codes.TA_ASIP, "TA_ASIP")

    encounter = _el(_el(doc, "componentOf"), "encompassingEncounter")
    _code(encounter, "code", codes.ENCOUNTER_CODE, codes.ACT_CODE)
    when = _el(encounter, "effectiveTime")
    _el(when, "high", value=_ts(signed))
    facility = _el(_el(encounter, "location"), "healthCareFacility")
    _org_id(facility, org)
    _code(facility, "code", codes.FACILITY_EHPAD, codes.FACILITY_SYSTEM)


# -- narrative helpers ----------------------------------------------------------------------------
def _table(text: etree._Element, headings: Iterable[str]) -> etree._Element:
    table = _el(text, "table", border="0")
    row = _el(_el(table, "thead"), "tr")
    for heading in headings:
        _el(row, "th", heading)
    return _el(table, "tbody")


def _cell(row: etree._Element, value: str, content_id: str | None = None) -> None:
    td = _el(row, "td")
    if content_id is None:
        td.text = value
    else:
        _el(td, "content", value, ID=content_id)


def _yes(value: bool) -> str:
    return "Oui" if value else "Non"


def _flag(parent: etree._Element, flag: tuple[str, str, str], value: bool, ref: str,
          signed: datetime, entry_id: str) -> None:
    obs = _el(_el(parent, "entryRelationship", typeCode="COMP"), "observation",
              classCode="OBS", moodCode="EVN")
    _templates(obs, (*codes.SIMPLE_OBSERVATION, flag[0]))
    _el(obs, "id", root=entry_id)
    _el(obs, "code", code=flag[1], displayName=flag[2], codeSystem=codes.TA_ASIP,
        codeSystemName="TA_ASIP")
    _ref(obs, ref)
    _el(obs, "statusCode", code="completed")
    _el(obs, "effectiveTime", value=_ts(signed))
    _el(obs, "value", xsi_type="BL", value="true" if value else "false")


# -- medications ----------------------------------------------------------------------------------
def _unit(unit: str) -> str:
    return codes.UCUM_UNITS.get(unit, "1")


def _dose(parent: etree._Element, amount: Decimal, unit: str) -> None:
    dose = _el(parent, "doseQuantity")
    _el(dose, "low", value=_pq(amount), unit=_unit(unit))
    _el(dose, "high", value=_pq(amount), unit=_unit(unit))


def _frequency(parent: etree._Element, pos: Posology) -> None:
    """The frequency of a normal-mode entry (a single moment, or a period)."""
    def pivl(value: Decimal | int, unit: str, institution: bool) -> None:
        node = _el(parent, "effectiveTime", xsi_type="PIVL_TS", operator="A",
                   institutionSpecified="true" if institution else None)
        _el(node, "period", value=_pq(Decimal(value)), unit=unit)

    if len(pos.moments) == 1:
        node = _el(parent, "effectiveTime", xsi_type="EIVL_TS", operator="A")
        _el(node, "event", code=codes.TIMING_EVENTS[pos.moments[0]])
    elif pos.times_per_day is not None:
        hours = Decimal(24) / pos.times_per_day
        if hours == hours.to_integral_value():
            pivl(hours, "h", True)
        else:
            pivl((Decimal(1440) / pos.times_per_day).quantize(Decimal("0.001")), "min", True)
    elif pos.interval_hours is not None:
        pivl(pos.interval_hours, "h", False)
    elif pos.every_days is not None:
        pivl(pos.every_days, "d", False)
    elif pos.times_per_week is not None:
        pivl(Decimal(168) / pos.times_per_week, "h", True)


def _period(parent: etree._Element, p: Prescription, pos: Posology | None) -> None:
    start = local(p.signed_at or p.created_at).date()
    node = _el(parent, "effectiveTime", xsi_type="IVL_TS")
    _el(node, "low", value=_day(start))
    if pos is not None and pos.duration is not None:
        _el(node, "high", value=_day(start + timedelta(days=_duration_days(pos))))


def _consumable(parent: etree._Element, line: MedicationLine | None, facts: DrugFacts | None,
                ref: str | None, type_code: str | None = None) -> None:
    product = _el(_el(parent, "consumable", typeCode=type_code), "manufacturedProduct",
                  classCode="MANU")
    _templates(product, codes.PRODUCT)
    material = _el(product, "manufacturedMaterial", classCode="MMAT", determinerCode="KIND")
    _templates(material, (codes.MEDICINE,))
    if line is None or facts is None or ref is None:
        _el(material, "code", nullFlavor="NA")
        _el(material, "name", nullFlavor="NA")
        return
    if facts.cis:
        code = _el(material, "code", code=facts.cis, displayName=line.label,
                   codeSystem=codes.CIS_OID, codeSystemName="CIS")
    else:
        code = _el(material, "code", nullFlavor="OTH")
    _el(_el(code, "originalText"), "reference", value=f"#{ref}")
    if line.cip13:
        _el(code, "translation", code=line.cip13, displayName=line.label,
            codeSystem=codes.CIP_OID, codeSystemName="CIP")
    _el(material, "name", line.label)
    if facts.common_name:
        kind = _el(material, "pharm:asSpecializedKind", classCode="GRIC")
        generic = _el(kind, "pharm:generalizedMedicineClass", classCode="MMAT")
        _el(generic, "pharm:code", nullFlavor="NA")
        _el(generic, "pharm:name", facts.common_name)


def _medication_entry(section: etree._Element, p: Prescription, line: MedicationLine, n: int,
                      facts: DrugFacts) -> None:
    ref = f"med-{n}"
    signed = p.signed_at or p.created_at
    pos = line.posology if isinstance(line.posology, Posology) else None
    split = pos is not None and len(pos.moments) > 1
    sa = _el(_el(section, "entry"), "substanceAdministration", classCode="SBADM",
             moodCode="INT")
    _templates(sa, codes.PRESCRIBED_TREATMENT)
    if pos is not None:
        _templates(sa, (codes.STRUCTURED_POSOLOGY,))
    _templates(sa, (codes.MODE_SPLIT if split else codes.MODE_NORMAL,))
    _el(sa, "id", root=document_uuid(p.id, f"line-{n}"))
    _code(sa, "code", codes.DRUG_CODE, codes.ACT_CODE, "HL7:ActCode")
    _ref(sa, ref)
    _el(sa, "statusCode", code="completed")
    _period(sa, p, pos)
    if pos is not None and not split:
        _frequency(sa, pos)
    _el(sa, "repeatNumber", value=str(line_renewals(p, line)))
    if pos is not None:
        route = codes.EDQM_ROUTES.get(pos.route or "")
        if route is not None:
            node = _code(sa, "routeCode", route, codes.EDQM, "EDQM")
            _el(_el(node, "originalText"), "reference", value=f"#{ref}-poso")
        if not split:
            _dose(sa, pos.dose, pos.unit)
        if pos.max_per_day is not None:
            top = _el(sa, "maxDoseQuantity")
            _el(top, "numerator", value=_pq(pos.max_per_day), unit=_unit(pos.unit))
            _el(top, "denominator", value="1", unit="d")
    _consumable(sa, line, facts, ref)
    if split:
        assert pos is not None
        doses = pos.moment_doses or tuple(pos.dose for _ in pos.moments)
        for k, (moment, dose) in enumerate(zip(pos.moments, doses, strict=True), start=1):
            rel = _el(sa, "entryRelationship", typeCode="COMP")
            _el(rel, "sequenceNumber", value=str(k))
            sub = _el(rel, "substanceAdministration", classCode="SBADM", moodCode="INT")
            _templates(sub, (codes.SUBORDINATE_TREATMENT,))
            _el(sub, "id", root=document_uuid(p.id, f"line-{n}-{moment}"))
            _ref(sub, f"{ref}-poso")
            _el(sub, "statusCode", code="completed")
            event = _el(sub, "effectiveTime", xsi_type="EIVL_TS", operator="A")
            _el(event, "event", code=codes.TIMING_EVENTS[moment])
            _dose(sub, dose, pos.unit)
            _consumable(sub, None, None, None, type_code="CSM")
    if line.instructions:
        act = _el(_el(sa, "entryRelationship", typeCode="SUBJ", inversionInd="true"), "act",
                  classCode="ACT", moodCode="INT")
        _templates(act, codes.PATIENT_INSTRUCTIONS)
        _el(act, "code", code="PINSTRUCT", codeSystem=codes.IHE_ACT_CODE,
            codeSystemName="IHEActCode")
        _ref(act, f"{ref}-instr")
        _el(act, "statusCode", code="completed")
    if line.quantity is not None:
        supply = _el(_el(sa, "entryRelationship", typeCode="COMP"), "supply",
                     classCode="SPLY", moodCode="RQO")
        _templates(supply, codes.QUANTITY)
        _el(supply, "independentInd", value="false")
        _el(supply, "quantity", value=_pq(line.quantity), unit=codes.EDQM_BOX)
    act = _el(_el(sa, "entryRelationship", typeCode="COMP"), "act", classCode="ACT",
              moodCode="DEF")
    _templates(act, codes.SUBSTITUTION)
    if line.non_substitution is None:
        _code(act, "code", codes.SUBSTITUTION_GENERIC, codes.SUBSTITUTION_SYSTEM,
              "HL7_substanceAdminSubstitution")
    else:
        node = _code(act, "code", codes.SUBSTITUTION_NONE, codes.SUBSTITUTION_SYSTEM,
                     "HL7_substanceAdminSubstitution")
        _el(_el(node, "originalText"), "reference", value=f"#{ref}-subst")
    _el(act, "statusCode", code="completed")
    for k, (flag, value, suffix) in enumerate((
            (codes.FLAG_ALD, line.ald, "ald"), (codes.FLAG_AT_MP, False, "atmp"),
            (codes.FLAG_PREVENTION, False, "prev"), (codes.FLAG_NOT_REIMBURSED, False, "nr"),
            (codes.FLAG_OFF_LABEL, False, "amm"))):
        _flag(sa, flag, value, f"{ref}-{suffix}", signed,
              document_uuid(p.id, f"line-{n}-flag-{k}"))
    if pos is not None and pos.as_needed:
        criterion = _el(_el(sa, "precondition"), "criterion")
        _ref(criterion, f"{ref}-poso")


_MED_HEADINGS = ("Médicament", "Dénomination commune", "Posologie", "Quantité", "Substitution",
                 "Nombre de renouvellements", "En rapport avec une ALD", "En rapport AT/MP",
                 "En rapport Prévention", "Non remboursable", "Hors AMM", "Instructions")


def _medications(body: etree._Element, p: Prescription, items: list[tuple[int, MedicationLine]],
                 lookup: DrugLookup) -> None:
    section = _el(_el(body, "component"), "section")
    _templates(section, codes.SECTION_MEDICATIONS)
    _el(section, "id", root=document_uuid(p.id, "section-medications"))
    _code(section, "code", codes.SECTION_MEDICATIONS_CODE, codes.LOINC, "LOINC")
    _el(section, "title", "Prescription de médicaments")
    tbody = _table(_el(section, "text"), _MED_HEADINGS)
    facts_of = {}
    for n, line in items:
        facts = facts_of[n] = lookup(line)
        ref = f"med-{n}"
        row = _el(tbody, "tr")
        _cell(row, line.label, ref)
        _cell(row, facts.common_name or "-")
        _cell(row, line.posology.describe(), f"{ref}-poso")
        _cell(row, _pq(line.quantity) if line.quantity is not None else "-")
        reason = line.non_substitution.label if line.non_substitution else "Autorisée"
        _cell(row, reason[0].upper() + reason[1:], f"{ref}-subst")
        _cell(row, str(line_renewals(p, line)))
        _cell(row, _yes(line.ald), f"{ref}-ald")
        _cell(row, "Non", f"{ref}-atmp")
        _cell(row, "Non", f"{ref}-prev")
        _cell(row, "Non", f"{ref}-nr")
        _cell(row, "Non", f"{ref}-amm")
        _cell(row, line.instructions or "-", f"{ref}-instr" if line.instructions else None)
    for n, line in items:
        _medication_entry(section, p, line, n, facts_of[n])


# -- devices --------------------------------------------------------------------------------------
_DEVICE_HEADINGS = ("Dispositif médical", "Code LPP", "Nombre de conditionnements",
                    "Nombre de renouvellements", "En rapport avec une ALD", "En rapport AT/MP",
                    "En rapport Prévention", "Non remboursable")


def _devices(body: etree._Element, p: Prescription, items: list[tuple[int, DeviceLine]]) -> None:
    section = _el(_el(body, "component"), "section")
    _templates(section, codes.SECTION_DEVICES)
    _el(section, "id", root=document_uuid(p.id, "section-devices"))
    _code(section, "code", codes.SECTION_DEVICES_CODE, codes.LOINC, "LOINC")
    _el(section, "title", "Prescription de dispositifs médicaux")
    tbody = _table(_el(section, "text"), _DEVICE_HEADINGS)
    signed = p.signed_at or p.created_at
    for n, line in items:
        ref = f"dm-{n}"
        row = _el(tbody, "tr")
        _cell(row, line.label, ref)
        _cell(row, line.lpp or "-")
        _cell(row, _pq(line.quantity))
        _cell(row, str(line_renewals(p, line)))
        _cell(row, _yes(line.ald), f"{ref}-ald")
        _cell(row, "Non", f"{ref}-atmp")
        _cell(row, "Non", f"{ref}-prev")
        _cell(row, "Non", f"{ref}-nr")
    for n, line in items:
        ref = f"dm-{n}"
        supply = _el(_el(section, "entry"), "supply", classCode="SPLY", moodCode="INT")
        _templates(supply, codes.DEVICE_SUPPLY)
        _el(supply, "id", root=document_uuid(p.id, f"line-{n}"))
        _ref(supply, ref)
        _el(supply, "repeatNumber", value=str(line_renewals(p, line)))
        _el(supply, "quantity", value=_pq(line.quantity))
        role = _el(_el(supply, "participant", typeCode="DEV"), "participantRole",
                   classCode="MANU")
        device = _el(role, "playingDevice", classCode="DEV", determinerCode="INSTANCE")
        if line.lpp:
            code = _el(device, "code", code=line.lpp, displayName=line.label,
                       codeSystem=codes.LPP_OID, codeSystemName="LPP")
        else:
            code = _el(device, "code", nullFlavor="OTH")
        _el(_el(code, "originalText"), "reference", value=f"#{ref}")
        for k, (flag, value, suffix) in enumerate((
                (codes.FLAG_ALD, line.ald, "ald"), (codes.FLAG_AT_MP, False, "atmp"),
                (codes.FLAG_PREVENTION, False, "prev"),
                (codes.FLAG_NOT_REIMBURSED, False, "nr"))):
            _flag(supply, flag, value, f"{ref}-{suffix}", signed,
                  document_uuid(p.id, f"line-{n}-flag-{k}"))


def _acts(body: etree._Element, p: Prescription, items: list[tuple[int, ActLine]]) -> None:
    section = _el(_el(body, "component"), "section")
    _templates(section, codes.SECTION_COMMENT)
    _el(section, "id", root=document_uuid(p.id, "section-acts"))
    _code(section, "code", codes.SECTION_COMMENT_CODE, codes.LOINC, "LOINC")
    _el(section, "title", "Actes et autres prescriptions")
    text = _el(section, "text")
    items_node = _el(text, "list")
    for _, line in items:
        suffix = " (en rapport avec une ALD)" if line.ald else ""
        _el(items_node, "item", line.text + suffix)


def _pdf_copy(body: etree._Element, p: Prescription, pdf: bytes) -> None:
    section = _el(_el(body, "component"), "section")
    _templates(section, codes.SECTION_PDF)
    _el(section, "id", root=document_uuid(p.id, "section-pdf"))
    _code(section, "code", codes.PDF_COPY_CODE, codes.LOINC, "LOINC")
    _el(section, "title", "Copie du document")
    text = _el(section, "text")
    row = _el(_el(_el(text, "table", border="0"), "tbody"), "tr")
    _el(_el(row, "td"), "renderMultiMedia", referencedObject="pdf-copy")
    _el(_el(text, "paragraph"), "content", "Ordonnance imprimée (PDF)", ID="pdf-type")
    organizer = _el(_el(section, "entry"), "organizer", classCode="CLUSTER", moodCode="EVN")
    _templates(organizer, (codes.ATTACHED_DOCUMENT,))
    _el(organizer, "id", root=document_uuid(p.id, "pdf"))
    _code(organizer, "code", codes.ATTACHED_DOCUMENT_CODE, codes.LOINC, "LOINC")
    _el(organizer, "statusCode", code="completed")
    obs = _el(_el(organizer, "component"), "observation", classCode="OBS", moodCode="EVN")
    _templates(obs, codes.ATTACHED_TYPE)
    _el(obs, "id", root=document_uuid(p.id, "pdf-type"))
    _code(obs, "code", codes.ATTACHED_TYPE_CODE, codes.LOINC, "LOINC")
    _ref(obs, "pdf-type")
    _el(obs, "statusCode", code="completed")
    _el(obs, "effectiveTime", nullFlavor="NA")
    _el(obs, "value", xsi_type="CD", code=codes.PDF_COPY_CODE[0],
        displayName=codes.PDF_COPY_CODE[1], codeSystem=codes.LOINC, codeSystemName="LOINC")
    media = _el(_el(organizer, "component"), "observationMedia", classCode="OBS",
                moodCode="EVN", ID="pdf-copy")
    _el(media, "value", base64.b64encode(pdf).decode("ascii"), mediaType="application/pdf",
        representation="B64")


def build_cda(p: Prescription, *, establishment: Organisation, pdf: bytes,
              lookup: DrugLookup = no_referential) -> bytes:
    """The eP-MED-DM document of a signed prescription, UTF-8 XML bytes."""
    meds = [(n, x) for n, x in enumerate(p.lines, start=1) if isinstance(x, MedicationLine)]
    devices = [(n, x) for n, x in enumerate(p.lines, start=1) if isinstance(x, DeviceLine)]
    acts = [(n, x) for n, x in enumerate(p.lines, start=1) if isinstance(x, ActLine)]
    if not meds and not devices:
        raise CdaNotApplicable(f"prescription {p.id}: no medication or device line, no "
                            "eP-MED-DM document")
    doc = etree.Element(_q("ClinicalDocument"), nsmap=_NSMAP)
    _header(doc, p, establishment)
    body = _el(_el(doc, "component"), "structuredBody")
    if meds:
        _medications(body, p, meds, lookup)
    if devices:
        _devices(body, p, devices)
    if acts:
        _acts(body, p, acts)
    _pdf_copy(body, p, pdf)
    return etree.tostring(doc, xml_declaration=True, encoding="UTF-8", pretty_print=True)


# -- reading a received document ------------------------------------------------------------------
MAX_CDA_BYTES = 20 * 1024 * 1024


def _parser() -> etree.XMLParser:
    return etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False,
                           dtd_validation=False, huge_tree=False, remove_comments=True)


def parse_xml(data: bytes) -> etree._Element:
    """Parse outside XML: refuses a DTD (hence every entity), never fetches anything."""
    if len(data) > MAX_CDA_BYTES:
        raise DocumentRefused(f"document CDA trop volumineux ({len(data)} octets)")
    try:
        tree = etree.fromstring(data, _parser())
    except etree.XMLSyntaxError as exc:
        raise DocumentRefused(f"XML illisible : {exc}") from None
    info = tree.getroottree().docinfo
    if info.doctype or info.internalDTD is not None or info.externalDTD is not None:
        raise DocumentRefused("XML refusé : déclaration DTD ou entités")
    for node in tree.iter():
        if isinstance(node, etree._Entity):
            raise DocumentRefused("XML refusé : entité XML")
    return tree


def _text(node: etree._Element | None) -> str:
    return " ".join("".join(node.itertext()).split()) if node is not None else ""


def _parse_ts(value: str | None) -> datetime | None:
    if not value:
        return None
    for fmt in ("%Y%m%d%H%M%S%z", "%Y%m%d%H%M%z", "%Y%m%d%H%M%S", "%Y%m%d"):
        try:
            return datetime.strptime(value, fmt)
        except ValueError:
            continue
    return None


def _narrative(doc: etree._Element) -> dict[str, str]:
    return {node.get("ID"): _text(node) for node in doc.iter(f"{{{NS}}}*") if node.get("ID")}


def read_cda(data: bytes) -> ReceivedDocument:
    """Read a received eP-MED-DM (or any CI-SIS) prescription document."""
    doc = parse_xml(data)
    if doc.tag != _q("ClinicalDocument"):
        raise DocumentRefused("ce n'est pas un document CDA (ClinicalDocument attendu)")
    ns = {"c": NS}

    def first(path: str, at: etree._Element = doc) -> etree._Element | None:
        found = at.find(path, ns)
        return found

    ident = first("c:id")
    document_id = ""
    if ident is not None:
        document_id = "^".join(filter(None, [ident.get("root"), ident.get("extension")]))
    if not document_id:
        raise DocumentRefused("document CDA sans identifiant (id)")
    role = first("c:recordTarget/c:patientRole")
    if role is None:
        raise DocumentRefused("document CDA sans patient (recordTarget)")
    from appliance.domain.ids import INS_OIDS

    ins = ins_oid = None
    for node in role.findall("c:id", ns):
        if node.get("root") in INS_OIDS and node.get("extension"):
            ins, ins_oid = node.get("extension"), node.get("root")
            break
    name = role.find("c:patient/c:name", ns)
    family = given = ""
    if name is not None:
        fams = name.findall("c:family", ns)
        born = [f for f in fams if f.get("qualifier") == "BR"] or fams
        family = _text(born[0]) if born else ""
        givens = [g for g in name.findall("c:given", ns) if g.get("qualifier") is None]
        givens = givens or name.findall("c:given", ns)
        given = _text(givens[0]) if givens else ""
    birth = first("c:patient/c:birthTime", role)
    birth_ts = _parse_ts(birth.get("value") if birth is not None else None)
    author = first("c:author/c:assignedAuthor")
    author_name, author_id = "", None
    if author is not None:
        person = author.find("c:assignedPerson/c:name", ns)
        author_name = " ".join(filter(None, [_text(person.find("c:prefix", ns)),
                                            _text(person.find("c:given", ns)),
                                            _text(person.find("c:family", ns))])) \
            if person is not None else ""
        org = author.find("c:representedOrganization/c:name", ns)
        if not author_name and org is not None:
            author_name = _text(org)
        aid = author.find("c:id", ns)
        author_id = aid.get("extension") if aid is not None else None
    when = first("c:effectiveTime")
    narrative = _narrative(doc)
    lines: list[ExternalLine] = []
    for sa in doc.iterfind(".//c:section/c:entry/c:substanceAdministration", ns):
        material = sa.find("c:consumable/c:manufacturedProduct/c:manufacturedMaterial", ns)
        label = _text(material.find("c:name", ns)) if material is not None else ""
        code_node = material.find("c:code", ns) if material is not None else None
        code = code_node.get("code") if code_node is not None else None
        ref = sa.find("c:text/c:reference", ns)
        if not label and ref is not None:
            label = narrative.get((ref.get("value") or "").lstrip("#"), "")
        poso = ""
        if ref is not None:
            target = (ref.get("value") or "").lstrip("#")
            poso = narrative.get(f"{target}-posologie") or narrative.get(f"{target}-poso", "")
        lines.append(ExternalLine(label or "(médicament sans nom)", code, poso))
    for supply in doc.iterfind(".//c:section/c:entry/c:supply", ns):
        device = supply.find("c:participant/c:participantRole/c:playingDevice/c:code", ns)
        label = device.get("displayName") if device is not None else None
        ref = supply.find("c:text/c:reference", ns)
        if not label and ref is not None:
            label = narrative.get((ref.get("value") or "").lstrip("#"))
        lines.append(ExternalLine(label or "(dispositif sans nom)",
                                  device.get("code") if device is not None else None))
    pdf = None
    for media in doc.iterfind(".//c:observationMedia/c:value", ns):
        if media.get("mediaType") == "application/pdf":
            try:
                pdf = base64.b64decode("".join((media.text or "").split()), validate=True)
            except ValueError:
                raise DocumentRefused("copie PDF du document illisible (base64)") from None
            break
    return ReceivedDocument(
        document_id=document_id, ins=ins, ins_oid=ins_oid, birth_name=family,
        first_names=given, birth_date=birth_ts.date() if birth_ts else None,
        author=author_name, author_id=author_id,
        issued_at=_parse_ts(when.get("value") if when is not None else None),
        lines=tuple(lines), pdf=pdf)
