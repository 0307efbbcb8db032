"""The eP-MED-DM CDA document: built for a spread of orders and checked by the ANS's own
validation (CDA XSD + eP-MED-DM and generic CI-SIS schematrons), then read back."""

from __future__ import annotations

import base64
import re

import pytest
from lxml import etree

from appliance.domain.posology import Posology
from appliance.domain.prescription import ActLine, MedicationLine
from appliance.errors import CdaNotApplicable, DocumentRefused
from appliance.services.referential import import_bdpm
from appliance.store.referential import referential_path
from appliance.tui.demo_data import write_fallback_bdpm
from sync import cda, codes
from tests import cisis
from tests.cda_orders import ESTABLISHMENT, doliprane, new_id, order_pdf, signed, spread

pytestmark = pytest.mark.integration
NS = {"c": codes.CDA_NS, "pharm": codes.CDA_PHARM_NS}


@pytest.fixture(scope="module")
def lookup(tmp_path_factory):
    """The referential built from real BDPM rows (the demo's extract)."""
    data = tmp_path_factory.mktemp("ref")
    import_bdpm(data, write_fallback_bdpm(data / "bdpm"), referential_date="2022-06-01")
    return cda.referential_lookup(referential_path(data))


@pytest.fixture(scope="module")
def documents(lookup, tmp_path_factory):
    out = tmp_path_factory.mktemp("cda")
    built = []
    for n, (what, p) in enumerate(spread()):
        pdf = order_pdf(p)
        path = out / f"order-{n:02d}.xml"
        path.write_bytes(cda.build_cda(p, establishment=ESTABLISHMENT, pdf=pdf, lookup=lookup))
        built.append((what, p, pdf, path))
    return built


@pytest.mark.skipif(not cisis.available(), reason=cisis.SKIP_REASON)
def test_every_document_passes_the_ans_validation(documents, tmp_path):
    broken = tmp_path / "broken.xml"
    text = documents[0][3].read_text("utf-8")
    broken.write_text(text.replace(f'<templateId root="{codes.SECTION_PDF[0]}"/>', ""), "utf-8")
    with cisis.Validator() as validator:
        failures = {what: validator.errors(path) for what, _, _, path in documents}
        # the same validation does catch a document without its PDF copy
        assert any("FR-Document-PDF-copie" in e for e in validator.errors(broken))
    assert failures == {what: [] for what, _, _, _ in documents}
    assert len(documents) == 12


def test_entries_carry_codes_posology_renewals_substitution_and_ald(documents):
    for what, p, pdf, path in documents:
        doc = etree.parse(str(path)).getroot()
        meds = [x for x in p.lines if isinstance(x, MedicationLine)]
        entries = doc.findall(".//c:section/c:entry/c:substanceAdministration", NS)
        assert len(entries) == len(meds), what
        for line, sa in zip(meds, entries, strict=True):
            assert sa.find("c:repeatNumber", NS).get("value") == str(cda.line_renewals(p, line))
            code = sa.find(".//c:manufacturedMaterial/c:code", NS)
            assert code.get("code") == line.cis or (line.cis is None and code.get("code"))
            if line.cip13:
                assert code.find("c:translation", NS).get("code") == line.cip13
            subst = sa.xpath(f".//c:act[c:templateId/@root='{codes.SUBSTITUTION[1]}']/c:code",
                             namespaces=NS)[0]
            assert subst.get("code") == ("N" if line.non_substitution else "G")
            ald = sa.xpath(f".//c:observation[c:templateId/@root='{codes.FLAG_ALD[0]}']"
                           "/c:value", namespaces=NS)[0]
            assert ald.get("value") == ("true" if line.ald else "false")
            structured = isinstance(line.posology, Posology)
            roots = [t.get("root") for t in sa.findall("c:templateId", NS)]
            assert (codes.STRUCTURED_POSOLOGY in roots) is structured
        # the narrative says what the printed order says
        narrative = " ".join(doc.find(".//c:structuredBody", NS).itertext())
        for line in p.lines:
            if isinstance(line, MedicationLine):
                assert line.posology.describe() in narrative
                if line.non_substitution:
                    assert line.non_substitution.value in narrative
            if isinstance(line, ActLine):
                assert line.text in narrative
        media = doc.find(".//c:observationMedia/c:value", NS)
        assert base64.b64decode(media.text) == pdf
        assert doc.find("c:recordTarget/c:patientRole/c:id", NS).attrib == {
            "root": p.resident.ins.oid, "extension": p.resident.ins.value}
        assert doc.find("c:author/c:assignedAuthor/c:id", NS).get("extension") == \
            p.prescriber.id_nat_ps
        assert doc.find("c:custodian//c:id", NS).get("extension") == "1750000001"
        bizone = doc.find(f"c:documentationOf/c:serviceEvent/c:code[@code="
                          f"'{codes.BIZONE_CODE[0]}']", NS)
        assert (bizone is not None) is p.is_ald_split, what


def test_moments_become_timing_events_and_doses(documents):
    _, _, _, path = documents[2]  # different doses morning and evening
    doc = etree.parse(str(path)).getroot()
    subs = doc.findall(".//c:entryRelationship/c:substanceAdministration", NS)
    events = [s.find("c:effectiveTime/c:event", NS).get("code") for s in subs]
    doses = [s.find("c:doseQuantity/c:low", NS).get("value") for s in subs]
    assert events == ["CM", "CV"] and doses == ["1", "2"]


def test_common_name_comes_from_the_composition_table(documents):
    _, _, _, path = documents[0]
    doc = etree.parse(str(path)).getroot()
    names = [n.text for n in doc.iterfind(".//pharm:generalizedMedicineClass/pharm:name", NS)]
    assert names == ["PARACÉTAMOL 1000 mg"]


def test_common_name_prefers_the_therapeutic_fraction():
    rows = [("comprimé", "AMOXICILLINE TRIHYDRATÉE", "574 mg", "SA", 1),
            ("comprimé", "AMOXICILLINE", "500 mg", "FT", 1),
            ("comprimé", "ACIDE CLAVULANIQUE", "62,5 mg", "FT", 2),
            ("comprimé", "CLAVULANATE DE POTASSIUM", "74,5 mg", "SA", 2)]
    assert cda.common_name(rows) == "AMOXICILLINE 500 mg + ACIDE CLAVULANIQUE 62,5 mg"
    assert cda.common_name([]) is None


def test_same_order_same_document_and_acts_alone_are_not_ep_med_dm():
    p = signed(new_id(99), (doliprane(),))
    pdf = order_pdf(p)
    assert cda.build_cda(p, establishment=ESTABLISHMENT, pdf=pdf) == \
        cda.build_cda(p, establishment=ESTABLISHMENT, pdf=pdf)
    acts = signed(new_id(98), (ActLine(text="Kinésithérapie"),))
    with pytest.raises(CdaNotApplicable):
        cda.build_cda(acts, establishment=ESTABLISHMENT, pdf=pdf)


def test_read_back_what_ordo_wrote(documents):
    _, p, pdf, path = documents[9]
    doc = cda.read_cda(path.read_bytes())
    assert (doc.ins, doc.ins_oid) == (p.resident.ins.value, p.resident.ins.oid)
    assert doc.birth_name == p.resident.birth_name and doc.birth_date == p.resident.birth_date
    assert doc.pdf == pdf and doc.author_id == p.prescriber.id_nat_ps
    assert [line.label for line in doc.lines] == [x.label for x in p.lines]


@pytest.mark.skipif(not cisis.available(), reason=cisis.SKIP_REASON)
def test_read_the_ans_example():
    data = (cisis.CISIS / "ExemplesCDA" / "eP-MED-DM_2024.01_PosoStruct.xml").read_bytes()
    doc = cda.read_cda(data)
    assert doc.ins == "279035121518989" and doc.birth_name == "PAT-TROIS"
    assert "PIOU" in doc.author and doc.pdf and doc.pdf.startswith(b"%PDF")
    assert doc.lines[0].label == "PARACETAMOL MYLAN 500 mg, comprimé"


@pytest.mark.parametrize("hostile, reason", [
    (b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaa">]><ClinicalDocument '
     b'xmlns="urn:hl7-org:v3">&a;</ClinicalDocument>', "DTD"),
    (b'<?xml version="1.0"?><!DOCTYPE x SYSTEM "file:///etc/passwd"><x/>', "DTD"),
    (b"<ClinicalDocument", "XML illisible"),
    (b'<html xmlns="urn:hl7-org:v3"/>', "ClinicalDocument"),
])
def test_hostile_xml_is_refused_with_a_reason(hostile, reason):
    with pytest.raises(DocumentRefused, match=re.escape(reason)):
        cda.read_cda(hostile)
