"""The domain in FHIR R4 JSON, and back: what Ordo sends to the registry and reads from it.

A signed prescription travels as one ``transaction`` Bundle (all or nothing: a registry must
never hold half a prescription), with deterministic ``urn:uuid`` full URLs so that the same
prescription always gives the same Bundle:

- ``Patient`` (INS as ``urn:oid:<INS OID>``), conditional create on it (``ifNoneExist``);
- ``Practitioner`` (idNat_PS as ``urn:oid:1.2.250.1.71.4.2.1``, N° AM), conditional create;
- one ``MedicationRequest`` per medication line, one ``DeviceRequest`` per device line and one
  ``ServiceRequest`` per free-text act, all grouped by the prescription ID
  (``groupIdentifier``; ``requisition`` for ServiceRequest, its R4 name), each identified by
  ``<ID>-<n>`` (``n`` = 1-based position of the line) and created with ``ifNoneExist`` on it;
- ``Provenance`` targeting every request, with the card signature (``Signature.data``) and, as
  contained ``Binary`` resources, the canonical bytes that were hashed, the exact signed part
  (absent when the card signed the canonical bytes themselves) and the signer certificate.

The registry answers a ``transaction-response`` Bundle whose ``identifier`` is the receipt
(accusé de réception) and ``timestamp`` its time. Cancellation is a ``Parameters`` resource
posted to ``MedicationRequest/$cancel``. Dispensations come back as a ``searchset`` Bundle of
``MedicationDispense`` linked to the line by ``authorizingPrescription.identifier``.

Malformed input raises ``ValidationError`` naming the FHIR path, never a ``KeyError``.
"""

from __future__ import annotations

import base64
import hashlib
import json
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import parse_qs, urlsplit

from appliance.domain.posology import Posology
from appliance.domain.prescription import (
    ActLine,
    DeviceLine,
    MedicationLine,
    Prescription,
)
from appliance.errors import ValidationError
from appliance.ports.registry import (
    AuditHead,
    Dispensation,
    DispensationPage,
    RegistryReceipt,
    SignatureProof,
)
from sync import codes

_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, codes.PRESCRIPTION_ID_SYSTEM)
_NAMESPACE_BYTES = _NAMESPACE.bytes
MAX_QUANTITY = 1_000_000  # units or boxes handed over for one line


# --- small helpers -----------------------------------------------------------------------------
def instant(moment: datetime) -> str:
    """A FHIR ``instant`` in UTC with milliseconds."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds")


def number(value: Decimal | int) -> int | float:
    """A FHIR decimal as a JSON number (integers stay integers)."""
    value = Decimal(value)
    return int(value) if value == value.to_integral_value() else float(value)


def line_identifier(prescription_id: str, n: int) -> str:
    """The identifier value of the ``n``-th line (1-based) of a prescription."""
    return f"{prescription_id}-{n}"


def split_line_identifier(value: str) -> tuple[str, int]:
    pid, sep, n = value.rpartition("-")
    # ASCII digits only ("²" passes isdigit but not int), and few enough for SQLite's INTEGER
    if not sep or not pid or not (n.isascii() and n.isdigit()) or len(n) > 9 or int(n) < 1:
        raise ValidationError("authorizingPrescription.identifier.value", value, "<ID>-<line>")
    return pid, int(n)


def _full_url(prescription_id: str, kind: str, n: int = 0) -> str:
    """``urn:uuid:`` + ``uuid.uuid5(_NAMESPACE, "<ID>|<kind>|<n>")``: the name-based SHA-1
    UUID of RFC 4122 §4.3 (version 5, variant bits ``10``), formatted without building a
    ``uuid.UUID`` (four times cheaper; a bundle has one per line plus three)."""
    raw = bytearray(hashlib.sha1(_NAMESPACE_BYTES + f"{prescription_id}|{kind}|{n}".encode(),
                                 usedforsecurity=False).digest()[:16])
    raw[6] = raw[6] & 0x0F | 0x50  # version 5
    raw[8] = raw[8] & 0x3F | 0x80  # RFC 4122 variant
    h = raw.hex()
    return f"urn:uuid:{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _identifier(system: str, value: str) -> dict[str, Any]:
    return {"system": system, "value": value}


def operation_outcome(code: str, diagnostics: str, severity: str = "error") -> dict[str, Any]:
    """An ``OperationOutcome`` with one issue (``code`` from FHIR R4 IssueType)."""
    return {"resourceType": "OperationOutcome",
            "issue": [{"severity": severity, "code": code, "diagnostics": diagnostics}]}


def outcome_reason(body: Any) -> str:
    """The diagnostics of an ``OperationOutcome`` (joined), or ``""``."""
    if not isinstance(body, Mapping) or body.get("resourceType") != "OperationOutcome":
        return ""
    issues = body.get("issue")
    if not isinstance(issues, list):
        return ""
    texts = [str(i.get("diagnostics") or i.get("code") or "") for i in issues
             if isinstance(i, Mapping)]
    return "; ".join(t for t in texts if t)


# --- prescription → Bundle ---------------------------------------------------------------------
def _patient(p: Prescription) -> dict[str, Any]:
    r = p.resident
    system = codes.INS_SYSTEMS[r.ins.oid]
    names: list[dict[str, Any]] = [{"use": "official", "family": r.birth_name,
                                    "given": r.first_names.split()}]
    if r.used_name:
        names.append({"use": "usual", "family": r.used_name, "given": r.first_names.split()})
    return {
        "resourceType": "Patient",
        "extension": [{"url": codes.OBJECTION_EXTENSION, "valueBoolean": r.objection}],
        "identifier": [{
            "use": "official",
            "type": {"coding": [{"system": codes.FR_CORE_IDENTIFIER_TYPE,
                                 "code": codes.INS_TYPE_CODES[r.ins.oid]}]},
            "system": system, "value": r.ins.value}],
        "name": names,
        "gender": "female" if r.sex.value == "F" else "male",
        "birthDate": r.birth_date.isoformat(),
    }


def _practitioner(p: Prescription) -> dict[str, Any]:
    d = p.prescriber
    identifiers = [{
        "type": {"coding": [{"system": codes.FR_CORE_IDENTIFIER_TYPE,
                             "code": codes.ID_NAT_PS_TYPE_CODE}]},
        "system": codes.ID_NAT_PS_SYSTEM, "value": d.id_nat_ps}]
    if d.am:
        identifiers.append(_identifier(codes.AM_SYSTEM, d.am))
    resource: dict[str, Any] = {
        "resourceType": "Practitioner",
        "identifier": identifiers,
        "name": [{"family": d.last_name, "given": [d.first_name]}],
        "qualification": [{"code": {"text": d.profession}}],
    }
    if d.qualification:
        resource["qualification"].append({"code": {"text": d.qualification}})
    telecom = [{"system": "phone", "value": d.phone}] if d.phone else []
    telecom += [{"system": "email", "value": d.email}] if d.email else []
    if telecom:
        resource["telecom"] = telecom
    return resource


def _duration(posology: Posology) -> dict[str, Any] | None:
    if posology.duration is None:
        return None
    unit = posology.duration.unit
    return {"value": posology.duration.value, "unit": unit, "system": codes.UCUM,
            "code": codes.DURATION_UCUM[unit]}


def _dosages(line: MedicationLine) -> list[dict[str, Any]]:
    """FHIR R4 Dosage: always the French sentence in ``text``; structure when there is one."""
    pos = line.posology
    text = pos.describe()
    if not isinstance(pos, Posology):
        return [{"sequence": 1, "text": text}]
    repeat: dict[str, Any] = {}
    duration = _duration(pos)
    if duration:
        repeat["boundsDuration"] = duration
    if pos.times_per_day is not None:
        repeat.update(frequency=pos.times_per_day, period=1, periodUnit="d")
    elif pos.interval_hours is not None:
        repeat.update(frequency=1, period=pos.interval_hours, periodUnit="h")
    elif pos.every_days is not None:
        repeat.update(frequency=1, period=pos.every_days, periodUnit="d")
    elif pos.times_per_week is not None:
        repeat.update(frequency=pos.times_per_week, period=1, periodUnit="wk")
    elif not pos.moments and not pos.as_needed:
        repeat.update(count=1)

    def dosage(dose: Decimal, moments: tuple[str, ...]) -> dict[str, Any]:
        out: dict[str, Any] = {"sequence": 1, "text": text}
        rep = dict(repeat)
        if moments:
            rep["when"] = [codes.EVENT_TIMING[m] for m in moments]
        if rep:
            out["timing"] = {"repeat": rep}
        if pos.as_needed:
            out["asNeededBoolean"] = True
        if pos.route:
            out["route"] = {"text": pos.route}
        out["doseAndRate"] = [{"doseQuantity": {"value": number(dose), "unit": pos.unit}}]
        if pos.max_per_day is not None:
            out["maxDosePerPeriod"] = {
                "numerator": {"value": number(pos.max_per_day), "unit": pos.unit},
                "denominator": {"value": 1, "unit": "jour", "system": codes.UCUM, "code": "d"}}
        return out

    if pos.moment_doses:
        return [dosage(d, (m,)) for m, d in zip(pos.moments, pos.moment_doses, strict=True)]
    return [dosage(pos.dose, pos.moments)]


def medication_coding(line: MedicationLine) -> dict[str, Any]:
    coding = []
    if line.cip13:
        coding.append({"system": codes.CIP13_SYSTEM, "code": line.cip13, "display": line.label})
    if line.cis:
        coding.append({"system": codes.CIS_SYSTEM, "code": line.cis, "display": line.label})
    return {"coding": coding, "text": line.label}


def _category(ald: bool) -> list[dict[str, Any]]:
    code = codes.CATEGORY_ALD if ald else codes.CATEGORY_NON_ALD
    return [{"coding": [{"system": codes.CATEGORY_SYSTEM, "code": code}]}]


def _medication_request(p: Prescription, line: MedicationLine, n: int, common: dict[str, Any]
                        ) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "MedicationRequest",
        "identifier": [_identifier(codes.LINE_ID_SYSTEM, line_identifier(p.id, n))],
        "groupIdentifier": _identifier(codes.PRESCRIPTION_ID_SYSTEM, p.id),
        "status": "active", "intent": "order", "category": _category(line.ald),
        "medicationCodeableConcept": medication_coding(line),
        **common,
        "dosageInstruction": _dosages(line),
    }
    dispense: dict[str, Any] = {}
    if line.renewals:
        dispense["numberOfRepeatsAllowed"] = line.renewals
    if line.quantity is not None:
        dispense["quantity"] = {"value": number(line.quantity), "unit": codes.BOX_UNIT}
    elif isinstance(line.posology, Posology) and line.posology.duration is not None:
        dispense["expectedSupplyDuration"] = _duration(line.posology)
    if dispense:
        resource["dispenseRequest"] = dispense
    if line.non_substitution is not None:
        resource["substitution"] = {
            "allowedBoolean": False,
            "reason": {"coding": [{"system": codes.NON_SUBSTITUTION_SYSTEM,
                                   "code": line.non_substitution.value}],
                       "text": line.non_substitution.label}}
    if line.instructions:
        resource["note"] = [{"text": line.instructions}]
    return resource


def _device_request(p: Prescription, line: DeviceLine, n: int, common: dict[str, Any]
                    ) -> dict[str, Any]:
    code: dict[str, Any] = {"text": line.label}
    if line.lpp:
        code["coding"] = [{"system": codes.LPP_SYSTEM, "code": line.lpp, "display": line.label}]
    return {
        "resourceType": "DeviceRequest",
        "identifier": [_identifier(codes.LINE_ID_SYSTEM, line_identifier(p.id, n))],
        "groupIdentifier": _identifier(codes.PRESCRIPTION_ID_SYSTEM, p.id),
        "status": "active", "intent": "order",
        "codeCodeableConcept": code,
        # R4 DeviceRequest has no quantity element; a parameter carries it.
        "parameter": [{"code": {"text": "quantité"},
                       "valueQuantity": {"value": number(line.quantity)}}],
        **common,
        # R4 DeviceRequest has no category element: the ALD flag is an extension.
        "extension": [{"url": codes.ALD_EXTENSION, "valueBoolean": line.ald},
                      *_renewals_extension(line.renewals)],
    }


def _renewals_extension(renewals: int) -> list[dict[str, Any]]:
    """R4 DeviceRequest and ServiceRequest have no ``numberOfRepeatsAllowed``."""
    return [{"url": codes.RENEWALS_EXTENSION, "valueUnsignedInt": renewals}] if renewals else []


def _service_request(p: Prescription, line: ActLine, n: int, common: dict[str, Any]
                     ) -> dict[str, Any]:
    return {
        "resourceType": "ServiceRequest",
        "identifier": [_identifier(codes.LINE_ID_SYSTEM, line_identifier(p.id, n))],
        "requisition": _identifier(codes.PRESCRIPTION_ID_SYSTEM, p.id),
        "status": "active", "intent": "order", "category": _category(line.ald),
        "code": {"text": line.text},
        **common,
        "extension": _renewals_extension(line.renewals),
    }


def _drop_empty(resource: dict[str, Any]) -> dict[str, Any]:
    """Without the members that are None, "" or an empty list or object (``False`` and
    ``0`` stay); tested by identity and type first: a third of the cost of ``not in``."""
    return {k: v for k, v in resource.items()
            if not (v is None or v == "" or ((type(v) is list or type(v) is dict) and not v))}


def _request_url(system: str, value: str) -> str:
    return f"identifier={system}|{value}"


def prescription_bundle(p: Prescription, proof: SignatureProof) -> dict[str, Any]:
    """The ``transaction`` Bundle of a signed prescription (see the module docstring)."""
    patient_url, practitioner_url = _full_url(p.id, "patient"), _full_url(p.id, "practitioner")
    when = instant(p.signed_at or p.created_at)
    common = {"subject": {"reference": patient_url}, "authoredOn": instant(p.created_at),
              "requester": {"reference": practitioner_url}}
    r = p.resident
    entries: list[dict[str, Any]] = [
        {"fullUrl": patient_url, "resource": _patient(p),
         "request": {"method": "POST", "url": "Patient", "ifNoneExist": _request_url(
             codes.INS_SYSTEMS[r.ins.oid], r.ins.value)}},
        {"fullUrl": practitioner_url, "resource": _practitioner(p),
         "request": {"method": "POST", "url": "Practitioner", "ifNoneExist": _request_url(
             codes.ID_NAT_PS_SYSTEM, p.prescriber.id_nat_ps)}},
    ]
    targets = []
    for n, line in enumerate(p.lines, start=1):
        if isinstance(line, MedicationLine):
            resource = _medication_request(p, line, n, common)
        elif isinstance(line, DeviceLine):
            resource = _device_request(p, line, n, common)
        else:
            resource = _service_request(p, line, n, common)
        url = _full_url(p.id, "line", n)
        targets.append({"reference": url})
        kind = resource["resourceType"]
        entries.append({"fullUrl": url, "resource": _drop_empty(resource), "request": {
            "method": "POST", "url": kind,
            "ifNoneExist": _request_url(codes.LINE_ID_SYSTEM, line_identifier(p.id, n))}})
    entries.append({"fullUrl": _full_url(p.id, "provenance"),
                    "resource": _provenance(p, proof, targets, practitioner_url, when),
                    "request": {"method": "POST", "url": "Provenance"}})
    return {
        "resourceType": "Bundle",
        "identifier": _identifier(codes.PRESCRIPTION_ID_SYSTEM, p.id),
        "type": "transaction",
        "timestamp": when,
        "entry": entries,
    }


def fast_canonical_bytes(p: Prescription) -> bytes:
    """``content()`` as sorted, compact, raw UTF-8 JSON (RFC 8785 for such content)."""
    return json.dumps(p.content(), sort_keys=True, separators=(",", ":"),
                      ensure_ascii=False).encode("utf-8")


def signed_canonical_bytes(p: Prescription, signed_part: bytes | None) -> bytes:
    """``p.canonical_bytes()``, computed fast when it can be proven equal.

    For content made of strings, integers, booleans and ASCII keys (a prescription's), RFC
    8785 is ``json.dumps`` with sorted keys, no spaces and raw UTF-8 (same escapes, same
    order). That shortcut is kept only when its SHA-256 is the ``H`` the card signed (the
    last field of the signed part), which also checks the signature's binding before
    sending; otherwise the reference implementation is used.
    """
    if signed_part:
        fast = fast_canonical_bytes(p)
        signed_hash = signed_part.rsplit(b"\x1f", 1)[-1]
        if hashlib.sha256(fast).hexdigest().encode("ascii") == signed_hash:
            return fast
    return p.canonical_bytes()


def _provenance(p: Prescription, proof: SignatureProof, targets: list[dict[str, str]],
                practitioner_url: str, when: str) -> dict[str, Any]:
    contained = [{"resourceType": "Binary", "id": codes.CANONICAL_BINARY_ID,
                  "contentType": codes.CANONICAL_CONTENT_TYPE,
                  "data": _b64(proof.canonical if proof.canonical is not None
                               else signed_canonical_bytes(p, proof.signed_part))},
                 {"resourceType": "Binary", "id": codes.SIGNER_CERT_BINARY_ID,
                  "contentType": codes.CERT_CONTENT_TYPE, "data": _b64(proof.signer_cert)}]
    entity = [{"role": "source", "what": {"reference": "#" + codes.CANONICAL_BINARY_ID}},
              {"role": "source", "what": {"reference": "#" + codes.SIGNER_CERT_BINARY_ID}}]
    target_format = codes.CANONICAL_CONTENT_TYPE
    if proof.signed_part is not None:
        contained.append({"resourceType": "Binary", "id": codes.SIGNED_PART_BINARY_ID,
                          "contentType": codes.SIGNED_PART_CONTENT_TYPE,
                          "data": _b64(proof.signed_part)})
        entity.append({"role": "quotation",
                       "what": {"reference": "#" + codes.SIGNED_PART_BINARY_ID}})
        target_format = codes.SIGNED_PART_CONTENT_TYPE
    return {
        "resourceType": "Provenance",
        "contained": contained,
        "target": targets,
        "recorded": when,
        "agent": [{"type": {"coding": [{"system": codes.PROVENANCE_PARTICIPANT,
                                        "code": "author"}]},
                   "who": {"reference": practitioner_url}}],
        "entity": entity,
        "signature": [{
            "extension": [{"url": codes.SIGNATURE_ALGORITHM_EXTENSION,
                           "valueOid": codes.urn_oid(codes.SHA256_WITH_RSA_OID)}],
            "type": [{"system": codes.SIGNATURE_TYPE_SYSTEM,
                      "code": codes.SIGNATURE_TYPE_AUTHOR, "display": "Author's Signature"}],
            "when": when,
            "who": {"reference": practitioner_url},
            "targetFormat": target_format,
            "sigFormat": codes.SIG_FORMAT,
            "data": _b64(proof.signature),
        }],
    }


def cancel_parameters(prescription_id: str, reason: str) -> dict[str, Any]:
    """The ``Parameters`` of ``POST [base]/MedicationRequest/$cancel``."""
    return {"resourceType": "Parameters", "parameter": [
        {"name": "groupIdentifier",
         "valueIdentifier": _identifier(codes.PRESCRIPTION_ID_SYSTEM, prescription_id)},
        {"name": "reason", "valueString": reason or "annulée par le prescripteur"}]}


# --- reading what the registry sends back ---------------------------------------------------------
def _get(obj: Any, key: str, path: str, kind: type | tuple[type, ...] = str) -> Any:
    if not isinstance(obj, Mapping):
        raise ValidationError(path.rpartition(".")[0] or path, type(obj).__name__, "an object")
    value = obj.get(key)
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        raise ValidationError(path, value, f"a {getattr(kind, '__name__', kind)}")
    return value


def _items(value: Any) -> list[Any]:
    """An optional FHIR array: anything but a list reads as empty."""
    return value if isinstance(value, list) else []


def _obj(value: Any) -> Mapping[str, Any]:
    """An optional FHIR object: anything but an object reads as empty."""
    return value if isinstance(value, Mapping) else {}


def _time(value: Any, path: str) -> datetime:
    try:
        moment = datetime.fromisoformat(value)
    except (TypeError, ValueError):
        raise ValidationError(path, value, "a FHIR instant") from None
    if moment.tzinfo is None:
        raise ValidationError(path, value, "a FHIR instant with a time zone")
    try:
        return moment.astimezone(UTC)
    except OverflowError:  # 0001-01-01T00:00+01:00 is before year 1 in UTC
        raise ValidationError(path, value, "a FHIR instant within years 1 to 9999 (UTC)") from None


def parse_receipt(body: Any, resource_type: str = "Bundle") -> RegistryReceipt:
    """The receipt in a ``transaction-response`` Bundle (or the ``Parameters`` answer of
    ``$cancel``): ``identifier`` in the receipt system, ``timestamp``; replayed when every
    entry says ``200``."""
    kind = _get(body, "resourceType", "resourceType")
    if kind != resource_type:
        raise ValidationError("resourceType", kind, resource_type)
    if kind == "Parameters":
        params = {p.get("name"): p for p in _get(body, "parameter", "parameter", list)
                  if isinstance(p, Mapping) and isinstance(p.get("name"), str)}
        receipt = _get(params.get("receipt"), "valueIdentifier", "parameter.receipt", dict)
        at = _get(params.get("at"), "valueInstant", "parameter.at")
        replayed = bool(params.get("replayed", {}).get("valueBoolean", False))
    else:
        if body.get("type") != "transaction-response":
            raise ValidationError("Bundle.type", body.get("type"), "transaction-response")
        receipt = _get(body, "identifier", "Bundle.identifier", dict)
        at = _get(body, "timestamp", "Bundle.timestamp")
        statuses = [str(_obj(e.get("response")).get("status", "")) for e in
                    _get(body, "entry", "Bundle.entry", list) if isinstance(e, Mapping)]
        replayed = bool(statuses) and all(s.startswith("200") for s in statuses)
    if receipt.get("system") != codes.RECEIPT_SYSTEM:
        raise ValidationError("receipt.system", receipt.get("system"), codes.RECEIPT_SYSTEM)
    value = _get(receipt, "value", "receipt.value")
    if not value.strip() or len(value) > 200:
        raise ValidationError("receipt.value", value, "a receipt identifier")
    return RegistryReceipt(receipt_id=value, received_at=_time(at, "receipt.time"),
                           replayed=replayed)


def medication_dispense(d: Dispensation, *, first_fill: bool,
                        request_reference: str | None = None) -> dict[str, Any]:
    """A ``MedicationDispense`` from a dispensation (used by the registry side)."""
    coding: dict[str, Any] = {"text": d.product_label}
    if d.product_code:
        coding["coding"] = [{"system": d.product_system or codes.CIP13_SYSTEM,
                             "code": d.product_code, "display": d.product_label}]
    authorizing: dict[str, Any] = {"identifier": _identifier(
        codes.LINE_ID_SYSTEM, line_identifier(d.prescription_id, d.line))}
    if request_reference:
        authorizing["reference"] = request_reference
    resource: dict[str, Any] = {
        "resourceType": "MedicationDispense",
        "id": d.registry_id,
        "identifier": [_identifier(codes.DISPENSE_ID_SYSTEM, d.registry_id)],
        "status": "completed",
        "medicationCodeableConcept": coding,
        "authorizingPrescription": [authorizing],
        "type": {"coding": [{"system": codes.V3_ACT_CODE,
                             "code": codes.FILL_CODES[(first_fill, d.complete)]}]},
        "whenHandedOver": instant(d.handed_over_at),
    }
    if d.quantity is not None:
        quantity: dict[str, Any] = {"value": number(d.quantity)}
        if d.unit:
            quantity["unit"] = d.unit
        resource["quantity"] = quantity
    if d.pharmacy:
        resource["performer"] = [{"actor": {"display": d.pharmacy}}]
    substitution: dict[str, Any] = {"wasSubstituted": d.substituted}
    if d.substituted and d.substitution_type:
        substitution["type"] = {"coding": [{"system": codes.V3_SUBSTITUTION,
                                            "code": d.substitution_type}]}
    if d.substituted and d.substitution_reason:
        substitution["reason"] = [{"text": d.substitution_reason}]
    resource["substitution"] = substitution
    return resource


def dispensation_from_fhir(resource: Any) -> Dispensation:
    """A ``Dispensation`` from a ``MedicationDispense`` (strict: every needed element)."""
    if _get(resource, "resourceType", "resourceType") != "MedicationDispense":
        raise ValidationError("resourceType", resource.get("resourceType"), "MedicationDispense")
    registry_id = None
    for ident in _items(resource.get("identifier")):
        if isinstance(ident, Mapping) and ident.get("system") == codes.DISPENSE_ID_SYSTEM:
            registry_id = ident.get("value")
    if not isinstance(registry_id, str) or not registry_id:
        raise ValidationError("MedicationDispense.identifier", resource.get("identifier"),
                              f"an identifier in {codes.DISPENSE_ID_SYSTEM}")
    refs = _get(resource, "authorizingPrescription", "MedicationDispense.authorizingPrescription",
                list)
    line_ids = [r.get("identifier") for r in refs if isinstance(r, Mapping)]
    line_ids = [i for i in line_ids if isinstance(i, Mapping)
                and i.get("system") == codes.LINE_ID_SYSTEM]
    if len(line_ids) != 1:
        raise ValidationError("MedicationDispense.authorizingPrescription", refs,
                              "exactly one line identifier")
    pid, line = split_line_identifier(_get(line_ids[0], "value",
                                           "authorizingPrescription.identifier.value"))
    fill = _items(_get(resource, "type", "MedicationDispense.type", dict).get("coding"))
    fill_codes = {c.get("code") for c in fill if isinstance(c, Mapping)
                  and c.get("system") == codes.V3_ACT_CODE and isinstance(c.get("code"), str)}
    known = set(codes.FILL_CODES.values())
    if len(fill_codes & known) != 1:
        raise ValidationError("MedicationDispense.type", fill, f"one of {sorted(known)}")
    complete = (fill_codes & known).pop().endswith("C")
    med = _get(resource, "medicationCodeableConcept",
               "MedicationDispense.medicationCodeableConcept", dict)
    label = med.get("text") if isinstance(med.get("text"), str) else ""
    code = system = None
    for coding in _items(med.get("coding")):
        if isinstance(coding, Mapping) and isinstance(coding.get("code"), str):
            code, system = coding["code"], coding.get("system")
            system = system if isinstance(system, str) else None  # SQLite stores no list
            label = label or str(coding.get("display") or "")
            break
    quantity = unit = None
    if "quantity" in resource:
        q = _get(resource, "quantity", "MedicationDispense.quantity", dict)
        try:
            quantity = Decimal(str(q.get("value")))
        except InvalidOperation:
            raise ValidationError("MedicationDispense.quantity.value", q.get("value"),
                                  "a number") from None
        # bounded: the store and the kiosk write it out in full, and 1e999999999 (or
        # 1e-999999999) would take a billion digits
        if not quantity.is_finite() or not 0 <= quantity <= MAX_QUANTITY \
                or quantity != round(quantity, 6):
            raise ValidationError("MedicationDispense.quantity.value", q.get("value"),
                                  f"a number from 0 to {MAX_QUANTITY}, at most 6 decimals")
        unit = q.get("unit") if isinstance(q.get("unit"), str) else None
    sub = resource.get("substitution") if isinstance(resource.get("substitution"), Mapping) \
        else {}
    substituted = sub.get("wasSubstituted") is True
    sub_type = None
    for coding in _items(_obj(sub.get("type")).get("coding")):
        if isinstance(coding, Mapping) and coding.get("system") == codes.V3_SUBSTITUTION:
            sub_type = coding.get("code")
    reasons = [r.get("text") for r in _items(sub.get("reason")) if isinstance(r, Mapping)]
    reason = "; ".join(r for r in reasons if isinstance(r, str)) or None
    performer = None
    for p in _items(resource.get("performer")):
        actor = p.get("actor") if isinstance(p, Mapping) else None
        if isinstance(actor, Mapping) and isinstance(actor.get("display"), str):
            performer = actor["display"]
    return Dispensation(
        registry_id=registry_id, prescription_id=pid, line=line, complete=complete,
        handed_over_at=_time(resource.get("whenHandedOver"),
                             "MedicationDispense.whenHandedOver"),
        product_label=label, product_code=code, product_system=system,
        quantity=quantity, unit=unit, substituted=substituted,
        substitution_type=sub_type if isinstance(sub_type, str) else None,
        substitution_reason=reason, pharmacy=performer)


def dispensation_page(body: Any) -> DispensationPage:
    """A ``searchset`` Bundle of dispensations: items, the cursor of the ``next`` link, and
    whether that page may hold more (``next`` present and this page full)."""
    if _get(body, "resourceType", "resourceType") != "Bundle" \
            or body.get("type") != "searchset":
        raise ValidationError("Bundle.type", body.get("type"), "a searchset Bundle")
    entries = body.get("entry") or []
    if not isinstance(entries, list):
        raise ValidationError("Bundle.entry", entries, "a list")
    raw = tuple(_get(e, "resource", "Bundle.entry.resource", dict) for e in entries)
    items = tuple(dispensation_from_fhir(r) for r in raw)
    cursor = None
    for link in _items(body.get("link")):
        if isinstance(link, Mapping) and link.get("relation") == "next":
            cursor = _cursor_of(_get(link, "url", "Bundle.link.url"))
    return DispensationPage(items=items, cursor=cursor, more=cursor is not None and bool(items),
                            raw=raw)


def _cursor_of(url: str) -> str:
    try:
        query = urlsplit(url).query
    except ValueError:  # e.g. "https://[::1/x": an unclosed IPv6 host
        query = ""
    values = parse_qs(query).get("_cursor")
    if not values or not values[0].isdigit() or len(values[0]) > 18:
        raise ValidationError("Bundle.link.url", url, "a next link with a _cursor")
    return values[0]


# -- the audit chain's head (sync/codes.py) --------------------------------------------------
def audit_anchor(finess: str, seq: int, digest: str, at: datetime) -> dict[str, Any]:
    """The AuditEvent that anchors entry ``seq`` of the audit chain (hash ``digest``)."""
    who = _identifier(codes.FINESS_SYSTEM, finess)
    return {"resourceType": codes.AUDIT_ANCHOR_RESOURCE,
            "type": {"system": codes.AUDIT_EVENT_TYPE_SYSTEM,
                     "code": codes.AUDIT_EVENT_TYPE_ANCHOR},
            "recorded": instant(at),
            "agent": [{"requestor": True, "who": {"identifier": who}}],
            "source": {"observer": {"identifier": who}},
            "entity": [{"what": {"identifier": _identifier(codes.AUDIT_HEAD_SYSTEM, str(seq))},
                        "detail": [{"type": codes.AUDIT_HEAD_DETAIL,
                                    "valueString": digest}]}]}


def audit_head(resource: Any) -> AuditHead:
    """The head an anchoring AuditEvent carries, with the registry's id and time."""
    body = _obj(resource)
    try:
        [entity] = [e for e in _items(body.get("entity"))
                    if _obj(_obj(_obj(e).get("what")).get("identifier")).get("system")
                    == codes.AUDIT_HEAD_SYSTEM]
        seq = int(_obj(entity)["what"]["identifier"]["value"])
        [digest] = [d.get("valueString") for d in _items(_obj(entity).get("detail"))
                    if _obj(d).get("type") == codes.AUDIT_HEAD_DETAIL]
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ValidationError("AuditEvent.entity", "?", "the audit chain's head") from exc
    if not isinstance(digest, str) or len(digest) != 64:
        raise ValidationError("AuditEvent.entity.detail", digest, "a SHA-256 in hex")
    return AuditHead(seq, digest, str(body.get("id") or ""),
                     str(_obj(body.get("meta")).get("lastUpdated") or ""))
