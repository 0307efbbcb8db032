"""Every code-system URI, identifier system and OID that Ordo puts on the wire, in one place.

The real teleservice's specification is not public. Where a French or HL7 source names a
system, it is cited; where none could be found, the system is Ordo's own and lives under
``https://ordo.invalid/`` (RFC 2606 reserves ``.invalid``), so that nobody mistakes it for a
national one. Replacing them is a change to this module only.
"""

from __future__ import annotations

from appliance.domain.ids import INS_NIA_OID, INS_NIR_OID, INS_TEST_OID


def urn_oid(oid: str) -> str:
    """``urn:oid:<oid>`` (RFC 3001), how FHIR writes an OID-based system."""
    return f"urn:oid:{oid}"


# --- FHIR version -------------------------------------------------------------------------
FHIR_VERSION = "4.0.1"  # HL7 FHIR R4; the wire format and every resource below are R4
FHIR_JSON = "application/fhir+json"  # FHIR R4 §2.21.0.6 (http.html#mime-type)
FHIR_JSON_R4 = f"{FHIR_JSON}; fhirVersion=4.0"

# --- People (ANS) ----------------------------------------------------------------------------
# INS OIDs: ANS, "Référentiel Identifiant National de Santé", annexe OID (see appliance.domain.ids).
INS_SYSTEMS = {oid: urn_oid(oid) for oid in (INS_NIR_OID, INS_NIA_OID, INS_TEST_OID)}
# Identifier type codes of FR Core (Interop'Santé, hl7.fhir.fr.core, CodeSystem fr-core-cs-v2-0203).
FR_CORE_IDENTIFIER_TYPE = "https://hl7.fr/ig/fhir/core/CodeSystem/fr-core-cs-v2-0203"
INS_TYPE_CODES = {INS_NIR_OID: "INS-NIR", INS_NIA_OID: "INS-NIA", INS_TEST_OID: "INS-NIR-TEST"}
ID_NAT_PS_TYPE_CODE = "IDNPS"
# idNat_PS of health professionals: ANS OID 1.2.250.1.71.4.2.1 (RPPS / "8" + RPPS).
ID_NAT_PS_OID = "1.2.250.1.71.4.2.1"
ID_NAT_PS_SYSTEM = urn_oid(ID_NAT_PS_OID)
# FINESS: ANS OID 1.2.250.1.71.4.2.2.
FINESS_OID = "1.2.250.1.71.4.2.2"
FINESS_SYSTEM = urn_oid(FINESS_OID)
# N° AM (Assurance Maladie prescriber number): no public system found.
AM_SYSTEM = "https://ordo.invalid/fhir/sid/numero-am"

# --- Prescription identifiers (Ordo) -----------------------------------------------------------
PRESCRIPTION_ID_SYSTEM = "https://ordo.invalid/fhir/sid/prescription-id"
LINE_ID_SYSTEM = "https://ordo.invalid/fhir/sid/prescription-line-id"
# Registry receipts (accusés de réception) and dispensation IDs, issued by the registry.
RECEIPT_SYSTEM = "https://ordo.invalid/fhir/sid/registry-receipt"
DISPENSE_ID_SYSTEM = "https://ordo.invalid/fhir/sid/dispensation-id"

# --- Medications and devices --------------------------------------------------------------------
# ANS draft FHIR ePrescription guide and ANSM linked data: http://data.esante.gouv.fr/ansm/medicament/
ANSM_MEDICAMENT = "http://data.esante.gouv.fr/ansm/medicament/"
CIP13_SYSTEM = ANSM_MEDICAMENT + "CIP13"
UCD_SYSTEM = ANSM_MEDICAMENT + "UCD"
# CIS: ANS OID 1.2.250.1.213.2.3.1 (ansforge IG-document-core, CodeSystem FrCIS).
CIS_SYSTEM = urn_oid("1.2.250.1.213.2.3.1")
# LPP: ANS terminology TRE_R312-LPP (OID 1.2.250.1.215.200.2.1).
LPP_SYSTEM = "https://mos.esante.gouv.fr/NOS/TRE_R312-LPP/FHIR/TRE-R312-LPP"
# Non-substitution mentions (arrêté du 12 novembre 2019: MTE, EFG, CIF): no public system found.
NON_SUBSTITUTION_SYSTEM = "https://ordo.invalid/fhir/CodeSystem/non-substitution"
# ALD ("bizone") lines: no public system found.
CATEGORY_SYSTEM = "https://ordo.invalid/fhir/CodeSystem/line-category"
CATEGORY_ALD = "ald"
CATEGORY_NON_ALD = "hors-ald"
ALD_EXTENSION = "https://ordo.invalid/fhir/StructureDefinition/ald"  # DeviceRequest has no category
# Renewals of a device or act line ("à renouveler N fois"): only MedicationRequest has
# dispenseRequest.numberOfRepeatsAllowed in R4.
RENEWALS_EXTENSION = "https://ordo.invalid/fhir/StructureDefinition/renewals"
BOX_UNIT = "boîte"

# --- HL7 terminology ----------------------------------------------------------------------------
UCUM = "http://unitsofmeasure.org"
# FHIR R4 EventTiming (valueset-event-timing): French moments of the day.
EVENT_TIMING = {"matin": "MORN", "midi": "NOON", "soir": "EVE", "coucher": "HS"}
# UCUM codes of the posology durations.
DURATION_UCUM = {"jour": "d", "semaine": "wk", "mois": "mo"}
# HL7 v3 ActCode, ActPharmacySupplyType: first fill / refill, complete / part fill.
V3_ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
# keys: (first fill?, complete?)
FILL_CODES = {(True, True): "FFC", (True, False): "FFP",
              (False, True): "RFC", (False, False): "RFP"}
# HL7 v3 substanceAdminSubstitution: E equivalent, G generic, TE therapeutic, N none...
V3_SUBSTITUTION = "http://terminology.hl7.org/CodeSystem/v3-substanceAdminSubstitution"
SUBSTITUTION_TYPES = ("E", "EC", "BC", "G", "TE", "TB", "TG", "F", "N")

# --- Provenance and signature --------------------------------------------------------------------
# FHIR R4 Signature.type: ASTM E1762-95 signature types (1.2.840.10065.1.12.1.1: author's).
SIGNATURE_TYPE_SYSTEM = "urn:iso-astm:E1762-95:2013"
SIGNATURE_TYPE_AUTHOR = "1.2.840.10065.1.12.1.1"
PROVENANCE_PARTICIPANT = "http://terminology.hl7.org/CodeSystem/provenance-participant-type"
# RSASSA-PKCS1-v1_5 with SHA-256 (RFC 8017 §8.2; OID sha256WithRSAEncryption, RFC 4055).
SIGNATURE_ALGORITHM_EXTENSION = "https://ordo.invalid/fhir/StructureDefinition/signature-algorithm"
SHA256_WITH_RSA_OID = "1.2.840.113549.1.1.11"
SIG_FORMAT = "application/octet-stream"  # a raw PKCS#1 v1.5 signature value
CANONICAL_CONTENT_TYPE = "application/json"  # RFC 8785 canonical JSON of content()
SIGNED_PART_CONTENT_TYPE = "application/octet-stream"
CERT_CONTENT_TYPE = "application/pkix-cert"  # RFC 2585: one DER certificate
# ids of the contained Binary resources in the Provenance
CANONICAL_BINARY_ID = "canonical"
SIGNED_PART_BINARY_ID = "signed-part"
SIGNER_CERT_BINARY_ID = "signer-cert"

# --- Residents' objection to the prescriber seeing dispensations --------------------------------
OBJECTION_EXTENSION = "https://ordo.invalid/fhir/StructureDefinition/dispensation-objection"

# --- Operations and OperationOutcome -------------------------------------------------------------
# The audit chain's head kept off the box: one FHIR R4 AuditEvent per anchor, POSTed to
# [base]/AuditEvent (the reference registry stores it and answers with its id and
# meta.lastUpdated, the receipt); GET [base]/AuditEvent?source-identifier=FINESS_SYSTEM|finess
# lists the anchors it holds for the establishment, oldest first. The head is an entity
# whose identifier is the sequence number (AUDIT_HEAD_SYSTEM) and whose detail "sha256"
# carries the entry's hash (hex).
AUDIT_ANCHOR_RESOURCE = "AuditEvent"
AUDIT_HEAD_SYSTEM = "https://ordo.invalid/fhir/sid/audit-chain-seq"
AUDIT_EVENT_TYPE_SYSTEM = "https://ordo.invalid/fhir/CodeSystem/audit-event-type"
AUDIT_EVENT_TYPE_ANCHOR = "audit-chain-head"
AUDIT_HEAD_DETAIL = "sha256"
CANCEL_OPERATION = "$cancel"  # POST [base]/MedicationRequest/$cancel, a Parameters resource

# --- CDA R2: the eP-MED-DM document (ANS CI-SIS, volet "ePrescription de médicaments et/ou de
# dispositifs médicaux" 2024.01) ------------------------------------------------------------------
# Every template ID, code and code system below is taken from the ANS's official examples
# ``eP-MED-DM_2024.01_PosoStruct.xml`` / ``_PosoNonStruct.xml`` (ansforge/TestContenuCDA-3-0,
# kept in ``../shared/interop/ci-sis/ExemplesCDA``) unless another source is named.
CDA_NS = "urn:hl7-org:v3"
CDA_PHARM_NS = "urn:ihe:pharm:medication"
XSI_NS = "http://www.w3.org/2001/XMLSchema-instance"
CDA_TYPE_ID = ("2.16.840.1.113883.1.3", "POCD_HD000040")
CDA_DOCUMENT_TEMPLATES = (
    ("2.16.840.1.113883.2.8.2.1", None),  # HL7 France
    ("1.2.250.1.213.1.1.1.1", None),  # CI-SIS
    ("1.3.6.1.4.1.19376.1.9.1.1.1", None),  # IHE Pharm PRE
    ("1.3.6.1.4.1.19376.1.5.3.1.1.1", None),  # IHE PCC
    ("1.2.250.1.213.1.1.1.39", "2024.01"),  # eP-MED-DM 2024.01
)
LOINC = "2.16.840.1.113883.6.1"
LOINC_PRESCRIPTION = ("57833-6", "Prescription de produits de santé")
CDA_TITLE = "Prescription de médicaments et/ou de dispositifs médicaux"
CONFIDENTIALITY = "2.16.840.1.113883.5.25"
ADMINISTRATIVE_GENDER = "2.16.840.1.113883.5.1"
ACT_CODE = "2.16.840.1.113883.5.4"  # HL7 v3 ActCode
# ePU prescription identifier root ("Identifiant de la prescription EPU", ANS example).
EPU_ID_ROOT = "1.2.250.1.215.500.1.1"
# Organisations are identified as idNat_Struct = "1" + FINESS under the FINESS OID (ANS example).
ID_NAT_STRUCT_FINESS_PREFIX = "1"
# Profession codes: ANS TRE_G15-ProfessionSante (OID 1.2.250.1.213.1.1.4.5, value set
# JDV_J01-XdsAuthorSpecialty-CISIS in ``jeuxDeValeurs/``): folded profession -> (code, label).
PROFESSION_SYSTEM = "1.2.250.1.213.1.1.4.5"
PROFESSION_CODES = {
    "medecin": ("G15_10", "Médecin"),
    "pharmacien": ("G15_21", "Pharmacien"),
    "chirurgien-dentiste": ("G15_40", "Chirurgien-Dentiste"),
    "sage-femme": ("G15_50", "Sage-Femme"),
    "infirmier": ("G15_60", "Infirmier"),
    "infirmiere": ("G15_60", "Infirmier"),
}
# Encounter: JDV_EncompassingEncounterCode-CISIS (HL7 ActCode AMB "Ambulatoire"); facility:
# TRE_R02-SecteurActivite (OID 1.2.250.1.71.4.2.4) SA17 "Etablissement pour personnes âgées".
ENCOUNTER_CODE = ("AMB", "Ambulatoire (hors établissement)")
FACILITY_SYSTEM = "1.2.250.1.71.4.2.4"
FACILITY_EHPAD = ("SA17", "Etablissement pour personnes âgées")
# Prescription "bizone" (ALD split): TA_ASIP MED-1096.
TA_ASIP = "1.2.250.1.213.1.1.4.322"
BIZONE_CODE = ("MED-1096", "Prescription bizone")
# Sections.
SECTION_MEDICATIONS = ("1.3.6.1.4.1.19376.1.9.1.2.1", "1.2.250.1.213.1.1.2.171")
SECTION_MEDICATIONS_CODE = ("57828-6", "Prescriptions")
SECTION_DEVICES = ("1.2.250.1.213.1.1.2.222",)
SECTION_DEVICES_CODE = ("46264-8", "Dispositifs médicaux")
SECTION_COMMENT = ("2.16.840.1.113883.10.12.201", "1.3.6.1.4.1.19376.1.4.1.2.16",
                   "1.2.250.1.213.1.1.2.73")  # FR-Commentaire-non-code
SECTION_COMMENT_CODE = ("55112-7", "Commentaire")
SECTION_PDF = ("1.2.250.1.213.1.1.2.243",)  # FR-Document-PDF-copie
PDF_COPY_CODE = ("55108-5", "Copie du document")
ATTACHED_DOCUMENT = "1.2.250.1.213.1.1.3.18"  # FR-Document-attache
ATTACHED_DOCUMENT_CODE = ("55107-7", "Document attaché")
ATTACHED_TYPE = ("1.3.6.1.4.1.19376.1.5.3.1.4.13", "1.2.250.1.213.1.1.3.48",
                 "1.2.250.1.213.1.1.3.48.18")  # FR-Type-document-attache
ATTACHED_TYPE_CODE = ("69764-9", "Type de document")
# Entries: FR-Traitement-prescrit and its administration modes (IHE Pharm PRE / PCC).
PRESCRIBED_TREATMENT = ("2.16.840.1.113883.10.20.1.24", "1.3.6.1.4.1.19376.1.5.3.1.4.7",
                        "1.3.6.1.4.1.19376.1.9.1.3.2", "1.2.250.1.213.1.1.3.83")
STRUCTURED_POSOLOGY = "1.3.6.1.4.1.19376.1.9.1.3.6"
MODE_NORMAL = "1.3.6.1.4.1.19376.1.5.3.1.4.7.1"
MODE_SPLIT = "1.3.6.1.4.1.19376.1.5.3.1.4.9"  # doses fractionnées: one subordinate per moment
SUBORDINATE_TREATMENT = "1.2.250.1.213.1.1.3.83.1"
DRUG_CODE = ("DRUG", "Médicament")
PRODUCT = ("2.16.840.1.113883.10.20.1.53", "1.3.6.1.4.1.19376.1.5.3.1.4.7.2",
           "1.2.250.1.213.1.1.3.43")  # FR-Produit-de-sante
MEDICINE = "1.3.6.1.4.1.19376.1.9.1.3.1"
CIS_OID = "1.2.250.1.213.2.3.1"
CIP_OID = "1.2.250.1.213.2.3.2"
LPP_OID = "1.2.250.1.215.200.2.1"
PATIENT_INSTRUCTIONS = ("2.16.840.1.113883.10.20.1.49", "1.3.6.1.4.1.19376.1.5.3.1.4.3",
                        "1.2.250.1.213.1.1.3.33")
IHE_ACT_CODE = "1.3.6.1.4.1.19376.1.5.3.2"
QUANTITY = ("1.3.6.1.4.1.19376.1.9.1.3.8", "1.2.250.1.213.1.1.3.86")  # FR-Quantite-de-produit
EDQM = "0.4.0.127.0.16.1.1.2.1"
EDQM_BOX = "30009000"  # EDQM packaging "Boîte" (ANS example)
# EDQM routes of administration: only the two the ANS examples give; other routes stay in the
# narrative text.
EDQM_ROUTES = {"orale": ("20053000", "Voie orale"), "cutanée": ("20003000", "Voie cutanée")}
SUBSTITUTION = ("1.3.6.1.4.1.19376.1.9.1.3.9.1", "1.2.250.1.213.1.1.3.87")
SUBSTITUTION_SYSTEM = "2.16.840.1.113883.5.1070"  # HL7 substanceAdminSubstitution
SUBSTITUTION_NONE = ("N", "Aucune substitution permise")
SUBSTITUTION_GENERIC = ("G", "Substitution par un générique permise")
SIMPLE_OBSERVATION = ("1.3.6.1.4.1.19376.1.5.3.1.4.13", "1.2.250.1.213.1.1.3.48")
# Line flags (FR-Simple-observation children): template, TA_ASIP code, label.
FLAG_ALD = ("1.2.250.1.213.1.1.3.48.13", "MED-574", "En rapport avec une ALD")
FLAG_AT_MP = ("1.2.250.1.213.1.1.3.48.14", "GEN-180",
              "En rapport avec un accident du travail ou une maladie professionnelle")
FLAG_NOT_REIMBURSED = ("1.2.250.1.213.1.1.3.48.15", "GEN-181", "Non remboursable")
FLAG_PREVENTION = ("1.2.250.1.213.1.1.3.48.34", "GEN-295", "En rapport avec la prévention")
FLAG_OFF_LABEL = ("1.2.250.1.213.1.1.3.48.12", "GEN-179",
                  "Hors Autorisation de Mise sur le Marché (AMM)")
DEVICE_SUPPLY = ("2.16.840.1.113883.10.20.1.34", "1.2.250.1.213.1.1.3.20")
# HL7 v3 TimingEvent (CDA R2 voc.xsd): the moments of the day as meals and bedtime
# (CM at breakfast, CD at lunch, CV at dinner, HS at bedtime).
TIMING_EVENTS = {"matin": "CM", "midi": "CD", "soir": "CV", "coucher": "HS"}
# UCUM units of the posology: measures as such, countable forms as UCUM annotations
# ({tablet} is the ANS example's); an unknown form is "1" (the narrative gives the word).
UCUM_UNITS = {
    "mL": "mL", "mg": "mg", "g": "g", "\u00b5g": "ug", "UI": "[iU]",
    "comprimé": "{tablet}", "gélule": "{capsule}", "sachet": "{sachet}", "goutte": "[drp]",
    "bouffée": "{puff}", "application": "{application}", "suppositoire": "{suppository}",
    "ampoule": "{ampoule}", "cuillère à café": "{teaspoon}", "cuillère à soupe": "{tablespoon}",
    "dose": "{dose}", "patch": "{patch}", "unité": "{unit}", "ovule": "{pessary}",
    "stylo": "{pen}", "flacon": "{vial}",
}

# --- IHE XDM / XDS metadata of the documents sent by MSSanté -----------------------------------
# ebRIM object types and classification schemes: IHE ITI TF-3 §4.2 (XDS metadata).
XDS_DOCUMENT_ENTRY = "urn:uuid:7edca82f-054d-47f2-a032-9b2a5b5186c1"
XDS_SUBMISSION_SET = "urn:uuid:a54d6aa5-d40d-43f9-88c5-b4633d873bdd"
XDS_CLASS_CODE = "urn:uuid:41a5887f-8865-4c09-adf7-e362475b143a"
XDS_TYPE_CODE = "urn:uuid:f0306f51-975f-434e-a61c-c59651d33983"
XDS_FORMAT_CODE = "urn:uuid:a09d5840-386c-46f2-b5ad-9c3699a4309d"
XDS_CONFIDENTIALITY = "urn:uuid:f4f85eac-e6cb-4883-b524-f2705394840f"
XDS_FACILITY_TYPE = "urn:uuid:f33fb8ac-18af-42cc-ae0e-ed0b0bdb91e1"
XDS_PRACTICE_SETTING = "urn:uuid:cccf5598-8b07-4b77-a05e-ae952c785ead"
XDS_AUTHOR = "urn:uuid:93606bcf-9494-43ec-9b4e-a7748d1a838d"
XDS_CONTENT_TYPE = "urn:uuid:aa543740-bdda-424e-8c96-df4873be8500"
XDS_SUBMISSION_CLASS = "urn:uuid:a7058bb9-b4e4-4307-ba5b-e3f0ab85e12d"
XDS_DOC_UNIQUE_ID = "urn:uuid:2e82c1f6-a085-4c72-9da3-8640a32e42ab"
XDS_DOC_PATIENT_ID = "urn:uuid:58a6f841-87b3-4a3e-92fd-a8ffeff98427"
XDS_SET_UNIQUE_ID = "urn:uuid:96fdda7c-d067-4183-912e-bf5ee74998a8"
XDS_SET_SOURCE_ID = "urn:uuid:554ac39e-e3fe-47fe-b233-965d2a147832"
XDS_SET_PATIENT_ID = "urn:uuid:6b5aea1a-874d-4603-a4bc-96a0a7b38446"
# Class of document: ANS TRE_A03-ClasseDocument (OID 1.2.250.1.213.1.1.4.1) "42" Prescription.
XDS_CLASS_PRESCRIPTION = ("42", "Prescription", "1.2.250.1.213.1.1.4.1")
# Format codes: ANS JDV_J10-XdsFormatCode-CISIS, from TRE_A11-IheFormatCode
# (OID 1.3.6.1.4.1.19376.1.2.3): IHE Pharm PRE for the eP-MED-DM CDA, XDS-SD for the PDF.
XDS_FORMAT_PRE = ("urn:ihe:pharm:pre:2010", "Prescription de médicaments",
                  "1.3.6.1.4.1.19376.1.2.3")
XDS_FORMAT_PDF = ("urn:ihe:iti:xds-sd:pdf:2008", "Document à corps non structuré en Pdf/A-1",
                  "1.3.6.1.4.1.19376.1.2.3")
