"""What the reference registry reads out of a prescription ``transaction`` Bundle.

The signed canonical bytes (a contained ``Binary`` of the Provenance) are the truth: every
request resource must match one line of that content (same position, kind and code), the
Patient its INS and the Practitioner its idNat_PS. Structural problems answer 400; a Bundle
that contradicts its own signed content answers 422, and so does one of more than
``MAX_LINES`` lines: the registry's limit, the very number the appliance refuses to sign
beyond (``appliance.domain.prescription.MAX_LINES``).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from appliance.domain.prescription import MAX_LINES
from sync import codes

REQUEST_KINDS = {"MedicationRequest": "medication", "DeviceRequest": "device",
                 "ServiceRequest": "act"}


class Invalid(Exception):
    def __init__(self, status: int, reason: str) -> None:
        self.status, self.reason = status, reason
        super().__init__(reason)


@dataclass(frozen=True)
class Line:
    number: int
    kind: str
    label: str
    code_system: str | None = None
    code: str | None = None
    quantity: str | None = None
    unit: str | None = None


@dataclass
class Submission:
    prescription_id: str
    canonical: bytes
    content: dict[str, Any]
    content_sha256: str
    signature: bytes
    signed_part: bytes | None
    cert_der: bytes
    patient: tuple[str, str]
    practitioner: tuple[str, str]
    objection: bool
    lines: list[Line]
    # per Bundle entry, in order: (resourceType, line number or 0)
    entries: list[tuple[str, int]] = field(default_factory=list)


def _obj(value: Any, where: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise Invalid(400, f"{where}: expected an object")
    return value


def _list(value: Any, where: str) -> list[Any]:
    if not isinstance(value, list):
        raise Invalid(400, f"{where}: expected a list")
    return value


def _b64(value: Any, where: str) -> bytes:
    if not isinstance(value, str):
        raise Invalid(400, f"{where}: expected base64 text")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise Invalid(400, f"{where}: invalid base64") from None


def _identifier_value(resource: Mapping[str, Any], system: str) -> str | None:
    for ident in resource.get("identifier") or []:
        if isinstance(ident, Mapping) and ident.get("system") == system:
            value = ident.get("value")
            return value if isinstance(value, str) else None
    return None


def content_lines(content: Mapping[str, Any]) -> list[Line]:
    raw_lines = _list(content.get("lines"), "canonical.lines")
    if len(raw_lines) > MAX_LINES:
        raise Invalid(422, f"{len(raw_lines)} lines: a prescription has at most {MAX_LINES}")
    lines = []
    for n, raw in enumerate(raw_lines, start=1):
        line = _obj(raw, f"canonical.lines[{n}]")
        kind = line.get("kind")
        if kind == "medication":
            system, code = ((codes.CIP13_SYSTEM, line["cip13"]) if line.get("cip13")
                            else (codes.CIS_SYSTEM, line.get("cis")))
            lines.append(Line(n, kind, str(line.get("label", "")), system, code,
                              line.get("quantity"), codes.BOX_UNIT))
        elif kind == "device":
            lines.append(Line(n, kind, str(line.get("label", "")),
                              codes.LPP_SYSTEM if line.get("lpp") else None, line.get("lpp"),
                              line.get("quantity")))
        elif kind == "act":
            lines.append(Line(n, kind, str(line.get("text", ""))))
        else:
            raise Invalid(422, f"canonical line {n}: unknown kind {kind!r}")
    if not lines:
        raise Invalid(422, "the prescription has no line")
    return lines


def _codes_of(resource: Mapping[str, Any], element: str) -> set[tuple[str, str]]:
    concept = resource.get(element)
    if not isinstance(concept, Mapping):
        return set()
    return {(c.get("system"), c.get("code")) for c in concept.get("coding") or []
            if isinstance(c, Mapping)}


def _check_request(resource: Mapping[str, Any], pid: str, lines: list[Line],
                   seen: set[int]) -> int:
    kind = REQUEST_KINDS[resource["resourceType"]]
    value = _identifier_value(resource, codes.LINE_ID_SYSTEM)
    prefix = pid + "-"
    if not value or not value.startswith(prefix) or not value[len(prefix):].isdigit():
        raise Invalid(422, f"{resource['resourceType']}: line identifier {value!r} is not "
                      f"{pid}-<line>")
    n = int(value[len(prefix):])
    if not 1 <= n <= len(lines) or n in seen:
        raise Invalid(422, f"line {n}: absent from the signed content or sent twice")
    seen.add(n)
    line = lines[n - 1]
    if line.kind != kind:
        raise Invalid(422, f"line {n}: {resource['resourceType']} for a {line.kind} line")
    group_element = "requisition" if kind == "act" else "groupIdentifier"
    group = resource.get(group_element)
    if not isinstance(group, Mapping) or group.get("system") != codes.PRESCRIPTION_ID_SYSTEM \
            or group.get("value") != pid:
        raise Invalid(422, f"line {n}: {group_element} is not the prescription ID {pid}")
    if kind == "medication" and (line.code_system, line.code) not in _codes_of(
            resource, "medicationCodeableConcept"):
        raise Invalid(422, f"line {n}: the medication code differs from the signed content")
    if kind == "device" and line.code and (line.code_system, line.code) not in _codes_of(
            resource, "codeCodeableConcept"):
        raise Invalid(422, f"line {n}: the device code differs from the signed content")
    if kind == "act" and (resource.get("code") or {}).get("text") != line.label:
        raise Invalid(422, f"line {n}: the act differs from the signed content")
    return n


def parse_submission(body: Any) -> Submission:
    bundle = _obj(body, "body")
    if bundle.get("resourceType") != "Bundle" or bundle.get("type") != "transaction":
        raise Invalid(400, "expected a transaction Bundle")
    entries = _list(bundle.get("entry"), "Bundle.entry")
    resources = [_obj(_obj(e, "Bundle.entry").get("resource"), "Bundle.entry.resource")
                 for e in entries]
    provenances = [r for r in resources if r.get("resourceType") == "Provenance"]
    if len(provenances) != 1:
        raise Invalid(400, "expected exactly one Provenance")
    provenance = provenances[0]
    binaries = {b.get("id"): b for b in provenance.get("contained") or []
                if isinstance(b, Mapping) and b.get("resourceType") == "Binary"}
    if codes.CANONICAL_BINARY_ID not in binaries or codes.SIGNER_CERT_BINARY_ID not in binaries:
        raise Invalid(400, "the Provenance lacks the canonical bytes or the signer certificate")
    canonical = _b64(binaries[codes.CANONICAL_BINARY_ID].get("data"), "Binary canonical")
    cert_der = _b64(binaries[codes.SIGNER_CERT_BINARY_ID].get("data"), "Binary signer-cert")
    signed_part = None
    if codes.SIGNED_PART_BINARY_ID in binaries:
        signed_part = _b64(binaries[codes.SIGNED_PART_BINARY_ID].get("data"), "Binary signed-part")
    signatures = _list(provenance.get("signature"), "Provenance.signature")
    if len(signatures) != 1:
        raise Invalid(400, "expected exactly one Provenance.signature")
    signature = _b64(_obj(signatures[0], "Provenance.signature").get("data"), "Signature.data")
    try:
        content = json.loads(canonical)
    except ValueError:
        raise Invalid(400, "the canonical bytes are not JSON") from None
    content = dict(_obj(content, "canonical"))
    pid = content.get("id")
    if not isinstance(pid, str) or not pid:
        raise Invalid(422, "the canonical content has no prescription ID")
    ident = bundle.get("identifier")
    if not isinstance(ident, Mapping) or ident.get("value") != pid \
            or ident.get("system") != codes.PRESCRIPTION_ID_SYSTEM:
        raise Invalid(422, f"Bundle.identifier is not the prescription ID {pid}")
    lines = content_lines(content)
    resident = _obj(content.get("resident"), "canonical.resident")
    prescriber = _obj(content.get("prescriber"), "canonical.prescriber")
    ins_system = codes.urn_oid(str(resident.get("ins_oid")))
    patient = (ins_system, str(resident.get("ins")))
    practitioner = (codes.ID_NAT_PS_SYSTEM, str(prescriber.get("id_nat_ps")))
    seen: set[int] = set()
    order: list[tuple[str, int]] = []
    for resource in resources:
        kind = resource.get("resourceType")
        if kind in REQUEST_KINDS:
            order.append((kind, _check_request(resource, pid, lines, seen)))
        elif kind == "Patient":
            if _identifier_value(resource, ins_system) != patient[1]:
                raise Invalid(422, "the Patient's INS differs from the signed content")
            order.append((kind, 0))
        elif kind == "Practitioner":
            if _identifier_value(resource, codes.ID_NAT_PS_SYSTEM) != practitioner[1]:
                raise Invalid(422, "the Practitioner's idNat_PS differs from the signed content")
            order.append((kind, 0))
        elif kind == "Provenance":
            order.append((kind, 0))
        else:
            raise Invalid(400, f"unexpected resource {kind!r} in a prescription Bundle")
    if len(seen) != len(lines):
        missing = sorted(set(range(1, len(lines) + 1)) - seen)
        raise Invalid(422, f"lines {missing} of the signed content are missing")
    if sum(1 for k, _ in order if k == "Patient") != 1 \
            or sum(1 for k, _ in order if k == "Practitioner") != 1:
        raise Invalid(400, "expected exactly one Patient and one Practitioner")
    return Submission(
        prescription_id=pid, canonical=canonical, content=content,
        content_sha256=hashlib.sha256(canonical).hexdigest(), signature=signature,
        signed_part=signed_part, cert_der=cert_der, patient=patient, practitioner=practitioner,
        objection=resident.get("objection") is True, lines=lines, entries=order)
