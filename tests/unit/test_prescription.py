"""The prescription model: lines, state machine, canonical bytes, Paris time."""

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
import rfc8785

from appliance.domain.people import Role
from appliance.domain.posology import FreeTextPosology
from appliance.domain.prescription import (
    TRANSITIONS,
    ActLine,
    DeviceLine,
    MedicationLine,
    NonSubstitution,
    Prescription,
    State,
    format_local,
)
from appliance.domain.prescription_id import PrescriptionIdGenerator
from appliance.errors import StateError, ValidationError
from tests.factories import physician, prescription

T0 = datetime(2026, 11, 25, 9, 30, tzinfo=UTC)


@pytest.fixture
def pid():
    return PrescriptionIdGenerator(clock_ms=lambda: 1_764_000_000_000).new()


def walk(p, *states):
    for i, s in enumerate(states, 1):
        p = p.transition(s, T0 + timedelta(minutes=i), reason="erreur de saisie")
    return p


LEGAL_PATHS = [
    (State.SIGNED, State.REGISTERED, State.DISPENSED),
    (State.SIGNED, State.REGISTERED, State.PARTIALLY_DISPENSED, State.PARTIALLY_DISPENSED,
     State.DISPENSED),
    (State.SIGNED, State.CANCELLED),
    (State.SIGNED, State.REGISTERED, State.CANCELLED),
]


@pytest.mark.parametrize("path", LEGAL_PATHS)
def test_legal_paths(pid, path):
    p = walk(prescription(pid), *path)
    assert p.state is path[-1]
    assert p.signed_at == T0 + timedelta(minutes=1)


def test_every_illegal_transition_is_refused(pid):
    reachable = {State.DRAFT: prescription(pid)}
    for path in LEGAL_PATHS:
        p = prescription(pid)
        for i, s in enumerate(path, 1):
            p = p.transition(s, T0 + timedelta(minutes=i), reason="x")
            reachable.setdefault(s, p)
    assert set(reachable) == set(State)
    refused = 0
    for state, p in reachable.items():
        for target in State:
            if target in TRANSITIONS[state]:
                continue
            with pytest.raises(StateError, match=f"{state.value} → {target.value}"):
                p.transition(target, T0 + timedelta(hours=1), reason="x")
            refused += 1
    assert refused == 36 - sum(len(v) for v in TRANSITIONS.values())


def test_cancel_needs_a_reason_and_not_after_dispensation(pid):
    signed = walk(prescription(pid), State.SIGNED)
    with pytest.raises(ValidationError, match="cancel_reason"):
        signed.transition(State.CANCELLED, T0)
    partial = walk(prescription(pid), State.SIGNED, State.REGISTERED, State.PARTIALLY_DISPENSED)
    with pytest.raises(StateError):
        partial.transition(State.CANCELLED, T0, reason="trop tard")


def test_signing_requires_lines_and_am(pid):
    with pytest.raises(ValidationError, match="lines"):
        prescription(pid, lines=()).transition(State.SIGNED, T0)
    with pytest.raises(ValidationError, match="prescriber.am"):
        prescription(pid, prescriber=physician(am=None)).transition(State.SIGNED, T0)


def test_nurse_cannot_be_the_prescriber(pid):
    nurse = physician(role=Role.NURSE, profession="Infirmier")
    with pytest.raises(ValidationError, match="prescriber"):
        prescription(pid, prescriber=nurse)


def test_lines_validate_codes_and_fields():
    with pytest.raises(ValidationError, match="CIS or a CIP13"):
        MedicationLine(label="X", posology=FreeTextPosology("1/j"))
    with pytest.raises(ValidationError, match="medication.cip13"):
        MedicationLine(label="X", cip13="3400935955839", posology=FreeTextPosology("1/j"))
    with pytest.raises(ValidationError, match="device.lpp"):
        DeviceLine(label="Fauteuil", lpp="12")
    with pytest.raises(ValidationError, match="device.quantity"):
        DeviceLine(label="Fauteuil", quantity=Decimal(0))
    with pytest.raises(ValidationError, match="act.text"):
        ActLine(text="   ")
    line = MedicationLine(label="LEVOTHYROX 50", cis="67062525", posology=FreeTextPosology("1/j"),
                          non_substitution="MTE")
    assert line.non_substitution is NonSubstitution.MTE
    assert line.non_substitution.label == "non substituable (MTE)"


def test_canonical_bytes_are_rfc8785_and_exclude_the_lifecycle(pid):
    p = prescription(pid)
    raw = p.canonical_bytes()
    assert raw == rfc8785.dumps(json.loads(raw))
    assert json.loads(raw)["id"] == pid
    signed = p.transition(State.SIGNED, T0 + timedelta(minutes=3))
    assert signed.canonical_bytes() == raw
    changed = replace(p, lines=(replace(p.lines[0], renewals=2), *p.lines[1:]))
    assert changed.canonical_bytes() != raw
    moved = replace(p, resident=replace(p.resident, room="999"))
    assert moved.canonical_bytes() == raw  # the room is not part of what is signed


def test_dict_round_trip(pid):
    p = walk(prescription(pid, renewals=3), State.SIGNED, State.REGISTERED)
    again = Prescription.from_dict(json.loads(json.dumps(p.to_dict())))
    assert again == p
    assert again.canonical_bytes() == p.canonical_bytes()


def test_stored_people_are_read_as_stored_and_a_damaged_one_is_refused(pid):
    """Loading many stored bodies builds each prescriber and resident once: what is read
    back is still each body's own, and a value that is not what Ordo stores is refused."""
    first = prescription(pid).to_dict()
    other = json.loads(json.dumps(first))
    other["room"], other["resident"]["first_names"] = "12B", "Marie"
    loaded = [Prescription.from_dict(d) for d in (first, other, first)]
    assert [(p.resident.room, p.resident.first_names) for p in loaded] == [
        (first["room"], first["resident"]["first_names"]), ("12B", "Marie"),
        (first["room"], first["resident"]["first_names"])]
    for damaged in ({"last_name": ["DUVAL"]}, {"id_nat_ps": "899700000014"}):
        bad = json.loads(json.dumps(first))
        bad["prescriber"].update(damaged)
        with pytest.raises(ValidationError):
            Prescription.from_dict(bad)
    bad = json.loads(json.dumps(first))
    bad["resident"]["birth_date"] = {"y": 1940}
    with pytest.raises(ValidationError):
        Prescription.from_dict(bad)


def test_times_are_utc_and_shown_in_paris(pid):
    winter = prescription(pid, created_at=datetime(2026, 1, 10, 23, 30, tzinfo=UTC))
    assert format_local(winter.created_at) == "11/01/2026 à 00:30"
    summer = datetime(2026, 7, 1, 12, 0, tzinfo=UTC)
    assert format_local(summer) == "01/07/2026 à 14:00"
    with pytest.raises(ValidationError, match="timezone-aware"):
        prescription(pid, created_at=datetime(2026, 1, 1))


def test_ald_split(pid):
    assert prescription(pid).is_ald_split
