"""Fuzzing what the registry sends back: receipts, dispensations, pages, OperationOutcome,
``Retry-After``, and the client's answer handling (``sync.fhir``, ``sync.backoff``,
``sync.client``), in process.

The FHIR readers return a result the sync engine can store, or raise ``ValidationError``
naming a FHIR path; the client turns every answer into a result or a ``RegistryError``.
The same client against a real HTTP server on loopback is
``tests/integration/test_fuzz_registry_http.py``.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import httpx
from hypothesis import example, given, settings
from hypothesis import strategies as st

from appliance.domain.backoff import MAX_RETRY_AFTER_S, parse_retry_after
from appliance.errors import RegistryError, ValidationError
from appliance.ports.registry import Dispensation, DispensationPage, RegistryReceipt
from appliance.services.sync import describe_fr
from sync import codes, fhir
from sync.client import RegistryClient
from tests.unit.test_fuzz_strategies import FUZZ, json_values, mutated, odd_text, outcome

NOW = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)
PID = "0PH9H2Y8M0MEJ2ZQ3N4D8X1S"  # any text: the feed's IDs are not checked here

RECEIPT = {
    "resourceType": "Bundle", "type": "transaction-response",
    "identifier": {"system": codes.RECEIPT_SYSTEM, "value": "AR-2026-000001"},
    "timestamp": "2026-11-25T09:31:12.345+00:00",
    "entry": [{"response": {"status": "201 Created"}}, {"response": {"status": "200 OK"}}],
}
CANCEL_RECEIPT = {
    "resourceType": "Parameters", "parameter": [
        {"name": "receipt", "valueIdentifier": {"system": codes.RECEIPT_SYSTEM,
                                                "value": "AR-2026-000002"}},
        {"name": "at", "valueInstant": "2026-11-25T09:35:00.000+01:00"},
        {"name": "replayed", "valueBoolean": False}],
}
DISPENSE = fhir.medication_dispense(Dispensation(
    registry_id="D-1", prescription_id=PID, line=2, complete=False,
    handed_over_at=datetime(2026, 11, 26, 15, 0, tzinfo=UTC),
    product_label="PARACETAMOL BIOGARAN 1 g", product_code="3400930000000",
    quantity=Decimal("1.5"), unit="boîte", substituted=True, substitution_type="G",
    substitution_reason="générique disponible", pharmacy="Pharmacie du Parc"),
    first_fill=True, request_reference="MedicationRequest/7")
PAGE = {
    "resourceType": "Bundle", "type": "searchset",
    "entry": [{"resource": DISPENSE}, {"resource": {**DISPENSE, "id": "D-2"}}],
    "link": [{"relation": "self", "url": "https://registre.invalid/MedicationDispense"},
             {"relation": "next",
              "url": "https://registre.invalid/MedicationDispense?_count=100&_cursor=42"}],
}


_UOW: list[Any] = []


def _scratch_uow() -> Any:
    """One real SQLite unit of work for the whole module (each example rolls back)."""
    if not _UOW:
        import tempfile
        from pathlib import Path

        from appliance.store.uow import SqliteUnitOfWork

        _UOW.append(SqliteUnitOfWork.open(Path(tempfile.mkdtemp()) / "ordo.sqlite",
                                          migrate=True))
    return _UOW[0]


def _check_storable(d: Dispensation, resource: Any) -> None:
    """The dispensations table takes it and gives it back (SQLite INTEGER, quantity written
    out in full), and the kiosk can describe it."""
    assert isinstance(d, Dispensation)
    assert isinstance(d.registry_id, str) and d.registry_id
    assert isinstance(d.line, int) and 1 <= d.line < 2**63
    assert d.handed_over_at.tzinfo is not None
    for value in (d.product_code, d.product_system, d.unit, d.substitution_type,
                  d.substitution_reason, d.pharmacy):
        assert value is None or isinstance(value, str)
    if d.quantity is not None:
        assert d.quantity.is_finite() and d.quantity >= 0
        digits, exponent = d.quantity.as_tuple()[1:]
        assert isinstance(exponent, int)
        assert d.quantity.adjusted() < 12 and -exponent <= len(digits) + 12
        assert len(format(d.quantity, "f")) <= 64
    uow = _scratch_uow()
    with uow:  # left without commit: rolled back
        assert uow.dispensations.add(d, resource if isinstance(resource, dict) else {}, NOW)
        [stored] = uow.dispensations.of(d.prescription_id)
        assert (stored.line, stored.quantity) == (d.line, d.quantity)
    assert describe_fr(d)


def _path_named(exc: ValidationError) -> None:
    assert exc.field.strip() and exc.expected.strip()


# -- receipts ----------------------------------------------------------------------------------
@settings(FUZZ, max_examples=200)
@given(st.sampled_from([RECEIPT, CANCEL_RECEIPT]).flatmap(mutated) | json_values())
@example({**RECEIPT, "timestamp": "0001-01-01T00:00:00+01:00"})
@example({**RECEIPT, "entry": [{"response": "201 Created"}]})
@example({**CANCEL_RECEIPT, "parameter": [{"name": ["receipt"]}]})
def test_receipts_parse_or_name_the_path(body):
    kind = body.get("resourceType") if isinstance(body, dict) else None
    result = outcome(fhir.parse_receipt, body,
                     resource_type="Parameters" if kind == "Parameters" else "Bundle")
    if isinstance(result, ValidationError):
        _path_named(result)
        return
    assert isinstance(result, RegistryReceipt)
    assert result.receipt_id.strip() and result.received_at.tzinfo is not None


# -- dispensations -----------------------------------------------------------------------------
@settings(FUZZ, max_examples=300)
@given(mutated(DISPENSE, 3) | json_values())
@example({**DISPENSE, "authorizingPrescription": [{"identifier": {
    "system": codes.LINE_ID_SYSTEM, "value": PID + "-\u00b2"}}]})
@example({**DISPENSE, "authorizingPrescription": [{"identifier": {
    "system": codes.LINE_ID_SYSTEM, "value": PID + "-" + "9" * 30}}]})
@example({**DISPENSE, "identifier": 7})
@example({**DISPENSE, "type": {"coding": [{"system": codes.V3_ACT_CODE, "code": []}]}})
@example({**DISPENSE, "type": {"coding": 1}})
@example({**DISPENSE, "medicationCodeableConcept": {"coding": 1}})
@example({**DISPENSE, "substitution": {"type": "G"}})
@example({**DISPENSE, "substitution": {"reason": 3}})
@example({**DISPENSE, "performer": 5})
@example({**DISPENSE, "medicationCodeableConcept": {"coding": [
    {"system": [codes.CIP13_SYSTEM], "code": "3400930000000"}]}})  # found by this test
@example({**DISPENSE, "quantity": {"value": "1e999999999"}})
@example({**DISPENSE, "quantity": {"value": 1e-300}})
@example({**DISPENSE, "whenHandedOver": "9999-12-31T23:59:59-01:00"})
def test_dispensations_parse_into_storable_records_or_name_the_path(resource):
    result = outcome(fhir.dispensation_from_fhir, resource)
    if isinstance(result, ValidationError):
        _path_named(result)
        return
    _check_storable(result, resource)


@settings(FUZZ, max_examples=150)
@given(mutated(PAGE, 3) | json_values())
@example({**PAGE, "link": 3})
@example({**PAGE, "link": [{"relation": "next", "url": "https://[::1/x?_cursor=1"}]})
@example({**PAGE, "entry": {"resource": DISPENSE}})
def test_dispensation_pages_parse_or_name_the_path(body):
    result = outcome(fhir.dispensation_page, body)
    if isinstance(result, ValidationError):
        _path_named(result)
        return
    assert isinstance(result, DispensationPage)
    assert result.cursor is None or (result.cursor.isdigit() and len(result.cursor) <= 18)
    for item, raw in zip(result.items, result.raw, strict=True):
        _check_storable(item, raw)


# -- errors and retry timing -------------------------------------------------------------------
@settings(FUZZ, max_examples=120)
@given(mutated(fhir.operation_outcome("invalid", "ID inconnu")) | json_values())
def test_outcome_reason_always_gives_text(body):
    assert isinstance(fhir.outcome_reason(body), str)


@settings(FUZZ, max_examples=200)
@given(odd_text(40) | st.integers(-10**20, 10**20).map(str)
       | st.sampled_from(["Wed, 21 Oct 2015 07:28:00 GMT", "Fri, 31 Dec 9999 23:59:59 +2359",
                          "Mon, 01 Jan 0001 00:00:00 -2359", "Thu, 01 Jan 1970 00:00:00 GMT",
                          "120", "  7 ", "-1", "1.5", "Sun, 06 Nov 1994 08:49:37"]))
@example("\u00b2")
@example("9" * 5000)
def test_retry_after_is_absent_or_bounded(value):
    seconds = parse_retry_after(value, NOW)
    assert seconds is None or 0.0 <= seconds <= MAX_RETRY_AFTER_S


# -- the client's handling of answers ------------------------------------------------------------
HEADER_NAMES = [b"Retry-After", b"Content-Type", b"Content-Encoding", b"X-Any"]
header_values = odd_text(30).map(lambda t: t.encode("utf-8", "surrogatepass")) \
    | st.binary(max_size=30) | st.sampled_from([b"gzip", b"deflate", b"br", b"zstd",
                                                 b"identity", b"gzip, deflate", b"120"])
statuses = st.integers(100, 599) | st.sampled_from([0, 99, 600, 999, 200, 201, 409, 429, 503])
bodies = st.one_of(
    st.binary(max_size=200),
    st.sampled_from([RECEIPT, CANCEL_RECEIPT, PAGE, DISPENSE]).flatmap(mutated).map(
        lambda doc: json.dumps(doc).encode()),
    json_values().map(lambda doc: json.dumps(doc).encode()),
    st.sampled_from([b"[" * 100_000, b'{"a":' * 50_000, b"\xef\xbb\xbf{}", b"9" * 5000,
                     b'{"resourceType": "OperationOutcome", "issue": [{"diagnostics": []}]}']),
)


@settings(FUZZ, max_examples=250)
@given(status=statuses, body=bodies,
       headers=st.lists(st.tuples(st.sampled_from(HEADER_NAMES), header_values), max_size=3),
       call=st.sampled_from(["register", "cancel", "dispensations", "capabilities"]))
@example(status=200, body=b"[" * 100_000, headers=[], call="register")
@example(status=503, body=b"", headers=[(b"Retry-After", "\u00b2".encode())], call="cancel")
@example(status=200, body=b"{}", headers=[(b"Content-Encoding", b"gzip")], call="dispensations")
def test_the_client_turns_every_answer_into_a_result_or_a_registry_error(status, body, headers,
                                                                          call):
    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, headers=headers, content=body)

    client = RegistryClient("http://127.0.0.1:9", transport=httpx.MockTransport(answer))
    calls = {"register": lambda: client.register_bundle(b"{}"),
             "cancel": lambda: client.cancel(PID, "erreur de saisie"),
             "dispensations": lambda: client.dispensations("42", 100),
             "capabilities": client.capabilities}
    try:
        result = outcome(calls[call])
    finally:
        client.close()
    if isinstance(result, Exception):
        assert isinstance(result, RegistryError), type(result)
    elif call in {"register", "cancel"}:
        assert isinstance(result, RegistryReceipt)
    elif call == "dispensations":
        assert isinstance(result, DispensationPage)
    else:
        assert result["resourceType"] == "CapabilityStatement"
