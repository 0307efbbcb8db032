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
