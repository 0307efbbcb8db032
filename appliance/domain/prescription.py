"""A prescription (ordonnance), its lines and its state machine.

States::

    draft ──sign──▶ signed ──ack──▶ registered ──▶ partially_dispensed ──▶ dispensed
                      │                 │               │        ▲
                      └──────┬──────────┘               └────────┘ (more partial dispensations)
                             ▼
                         cancelled        (only before any dispensation)

Timestamps are timezone-aware and kept in UTC; ``local()`` gives Europe/Paris for display.
``canonical_bytes()`` is what the physician's card signs: RFC 8785 JSON of the content
(identity of prescriber and resident, lines with their renewals, ID, creation time), never
the state.

Renewals are per line (``renewals`` on each line, "à renouveler N fois"). Content format 2
carries them on the lines. Prescriptions signed in format 1 carried one count for the whole
prescription (top-level ``renewals``); they load with that count on every line and keep
``canonical_version`` 1, so that their canonical bytes, hence their signed hash, stay
exactly as signed. Drafts always load in the current format.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from functools import lru_cache
from typing import Any, TypedDict, TypeVar
from zoneinfo import ZoneInfo

import rfc8785

from appliance.domain import JsonObject
from appliance.domain.ids import (
    validate_cip13,
    validate_cis,
    validate_ins,
    validate_lpp,
)
from appliance.domain.people import Practitioner, Resident, Role, Sex
from appliance.domain.posology import FreeTextPosology, Posology, posology_from_dict
from appliance.domain.prescription_id import validate_prescription_id
from appliance.domain.secure import SecureRules, relevant_conditions
from appliance.domain.text import forbidden_character, has_surrogate
from appliance.errors import StateError, ValidationError

PARIS = ZoneInfo("Europe/Paris")
CANONICAL_VERSION = 2
MAX_RENEWALS = 12
MAX_WEIGHT_KG = Decimal(500)
# Lines of one prescription. The registry refuses a larger one (the reference registry
# enforces the same number), so a prescription is refused here before it is signed, never
# after. 50 covers the longest EHPAD treatments; at the longest texts each line allows,
# such a prescription's FHIR Bundle stays far under the registry's 4 MiB request limit.
MAX_LINES = 50


def local(moment: datetime) -> datetime:
    """A UTC timestamp as wall-clock time in Europe/Paris."""
    return moment.astimezone(PARIS)


def format_local(moment: datetime) -> str:
    """``25/11/2026 à 14:05`` in Europe/Paris."""
    return local(moment).strftime("%d/%m/%Y à %H:%M")


def _utc(field_name: str, moment: datetime) -> datetime:
    if moment.tzinfo is None:
        raise ValidationError(field_name, moment.isoformat(), "a timezone-aware timestamp")
    return moment.astimezone(UTC)


def _iso(moment: datetime | None) -> str | None:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds") if moment else None


def _text(field_name: str, value: str, limit: int, required: bool = True) -> str:
    if not isinstance(value, str | None):  # e.g. 5 or {} from a JSON document
        raise ValidationError(field_name, value, "a text")
    value = (value or "").strip()
    if has_surrogate(value):  # JSON "\ud800": not encodable
        raise ValidationError(field_name, value, "text without lone surrogates")
    if required and not value:
        raise ValidationError(field_name, value, "a non-empty text")
    if len(value) > limit:
        raise ValidationError(field_name, value[:40] + "…", f"at most {limit} characters")
    return value


def check_text(field_name: str, value: str | None, *, line_feed: bool = False) -> None:
    """A text as new input: no control or bidirectional character (``line_feed``: a free
    text, which may hold line feeds); ``ValidationError`` naming the field and the
    character, the value cut to 40 characters."""
    found = forbidden_character(value or "", line_feed=line_feed)
    if found is not None:
        text = value or ""
        shown = text if len(text) <= 40 else text[:40] + "…"
        raise ValidationError(field_name, shown, "a text without control or bidirectional "
                                                 f"characters ({found})")


class State(StrEnum):
    DRAFT = "draft"
    SIGNED = "signed"
    REGISTERED = "registered"
    PARTIALLY_DISPENSED = "partially_dispensed"
    DISPENSED = "dispensed"
    CANCELLED = "cancelled"


TRANSITIONS: Mapping[State, frozenset[State]] = {
    State.DRAFT: frozenset({State.SIGNED}),
    State.SIGNED: frozenset({State.REGISTERED, State.CANCELLED}),
    State.REGISTERED: frozenset({State.PARTIALLY_DISPENSED, State.DISPENSED, State.CANCELLED}),
    State.PARTIALLY_DISPENSED: frozenset({State.PARTIALLY_DISPENSED, State.DISPENSED}),
    State.DISPENSED: frozenset(),
    State.CANCELLED: frozenset(),
}

STATE_LABELS_FR: Mapping[State, str] = {
    State.DRAFT: "brouillon",
    State.SIGNED: "signée",
    State.REGISTERED: "enregistrée",
    State.PARTIALLY_DISPENSED: "partiellement délivrée",
    State.DISPENSED: "délivrée",
    State.CANCELLED: "annulée",
}


class NonSubstitution(StrEnum):
    """Non-substitution mentions (arrêté du 12 novembre 2019)."""

    MTE = "MTE"  # marge thérapeutique étroite
    EFG = "EFG"  # enfant < 6 ans, pas de générique adapté
    CIF = "CIF"  # contre-indication formelle

    @property
    def label(self) -> str:
        return f"non substituable ({self.value})"


@dataclass(frozen=True)
class MedicationLine:
    """A codified medication: CIS and/or CIP13, with its label as shown to the physician."""

    label: str
    posology: Posology | FreeTextPosology
    cis: str | None = None
    cip13: str | None = None
    quantity: Decimal | None = None  # number of boxes (or units), when not given by duration
    non_substitution: NonSubstitution | None = None
    ald: bool = False
    instructions: str = ""
    renewals: int = 0
    common_name: str | None = None  # DC: substances and strengths (BDPM composition)
    by_brand: bool = True  # prescribed by its brand name (printed beside the DC)
    conditions: tuple[str, ...] = ()  # BDPM conditions that shape the order (``secure``)
    kind: str = field(default="medication", init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "label", _text("medication.label", self.label, 200))
        _renewals("medication.renewals", self.renewals)
        if self.common_name is not None:
            object.__setattr__(self, "common_name",
                               _text("medication.common_name", self.common_name, 200) or None)
        if not isinstance(self.by_brand, bool):
            raise ValidationError("medication.by_brand", self.by_brand, "true or false")
        if isinstance(self.conditions, str) or not all(
                isinstance(c, str) for c in self.conditions):
            raise ValidationError("medication.conditions", self.conditions, "a list of texts")
        object.__setattr__(self, "conditions", relevant_conditions(self.conditions))
        if not self.cis and not self.cip13:
            raise ValidationError("medication.code", None, "a CIS or a CIP13 (codified drugs only)")
        if self.cis:
            object.__setattr__(self, "cis", validate_cis(self.cis, field="medication.cis"))
        if self.cip13:
            object.__setattr__(self, "cip13",
                               validate_cip13(self.cip13, field="medication.cip13"))
        if self.quantity is not None:
            object.__setattr__(self, "quantity", _quantity("medication.quantity", self.quantity))
        if self.non_substitution is not None:
            object.__setattr__(self, "non_substitution", NonSubstitution(self.non_substitution))
        object.__setattr__(self, "instructions",
                           _text("medication.instructions", self.instructions, 500, False))

    @property
    def rules(self) -> SecureRules:
        """What the BDPM conditions require of this line (secure paper, limits)."""
        return SecureRules.from_conditions(self.conditions)

    @property
    def secure(self) -> bool:
        return self.rules.secure

    def check_limits(self) -> None:
        """A secure line needs a structured posology with a duration (written in words);
        a limited one, a duration within its legal maximum."""
        rules, pos = self.rules, self.posology
        duration = pos.duration if isinstance(pos, Posology) else None
        if rules.secure and duration is None:
            raise ValidationError("medication.posology", self.label, (
                "a structured posology with a duration: a secure prescription writes the "
                "dose, the intakes and the duration in full words"))
        if rules.max_days is not None and duration is not None \
                and duration.days > rules.max_days:
            raise ValidationError("medication.posology.duration", duration.describe(), (
                f"at most {rules.max_days} days for {self.label} (BDPM: prescription "
                "limitée)"))

    def check_input(self) -> None:
        """The line as new input (``check_text``): label, instructions, free posology."""
        check_text("medication.label", self.label)
        check_text("medication.instructions", self.instructions, line_feed=True)
        if isinstance(self.posology, FreeTextPosology):
            self.posology.check_input()

    def to_dict(self, version: int = CANONICAL_VERSION) -> JsonObject:
        data = _drop_none({
            "kind": self.kind, "label": self.label, "cis": self.cis, "cip13": self.cip13,
            "posology": self.posology.to_dict(),
            "quantity": str(self.quantity) if self.quantity is not None else None,
            "non_substitution": self.non_substitution.value if self.non_substitution else None,
            "ald": self.ald, "instructions": self.instructions or None,
        })
        if version >= 2:
            data.update(_drop_none({
                "renewals": self.renewals or None, "common_name": self.common_name,
                "by_brand": None if self.by_brand else False,
                "conditions": list(self.conditions) or None}))
        return data


@dataclass(frozen=True)
class DeviceLine:
    """A medical device, with its LPP code when known."""

    label: str
    lpp: str | None = None
    quantity: Decimal = Decimal(1)
    ald: bool = False
    renewals: int = 0
    kind: str = field(default="device", init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "label", _text("device.label", self.label, 200))
        if self.lpp:
            object.__setattr__(self, "lpp", validate_lpp(self.lpp, field="device.lpp"))
        object.__setattr__(self, "quantity", _quantity("device.quantity", self.quantity))
        _renewals("device.renewals", self.renewals)

    secure = False

    def check_input(self) -> None:
        """The line as new input (``check_text``)."""
        check_text("device.label", self.label)

    def to_dict(self, version: int = CANONICAL_VERSION) -> JsonObject:
        data = _drop_none({"kind": self.kind, "label": self.label, "lpp": self.lpp,
                           "quantity": str(self.quantity), "ald": self.ald})
        if version >= 2 and self.renewals:
            data["renewals"] = self.renewals
        return data


@dataclass(frozen=True)
class ActLine:
    """Any other act, as free text (e.g. "Kinésithérapie : 10 séances")."""

    text: str
    ald: bool = False
    renewals: int = 0
    kind: str = field(default="act", init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "text", _text("act.text", self.text, 1000))
        _renewals("act.renewals", self.renewals)

    secure = False

    def check_input(self) -> None:
        """The line as new input (``check_text``; a line feed is allowed)."""
        check_text("act.text", self.text, line_feed=True)

    def to_dict(self, version: int = CANONICAL_VERSION) -> JsonObject:
        data: JsonObject = {"kind": self.kind, "text": self.text, "ald": self.ald}
        if version >= 2 and self.renewals:
            data["renewals"] = self.renewals
        return data


Line = MedicationLine | DeviceLine | ActLine


def _renewals(field_name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) \
            or not 0 <= value <= MAX_RENEWALS:
        raise ValidationError(field_name, value, f"a whole number from 0 to {MAX_RENEWALS}")


def _quantity(field_name: str, value: object) -> Decimal:
    try:
        amount = Decimal(str(value))
    except InvalidOperation:
        raise ValidationError(field_name, value, "a number") from None
    if not amount.is_finite() or amount <= 0 or amount > 1000:
        raise ValidationError(field_name, value, "a number greater than 0 and at most 1000")
    return amount


def _drop_none(data: JsonObject) -> JsonObject:
    return {k: v for k, v in data.items() if v is not None}


class _Changes(TypedDict, total=False):
    """What a transition changes."""

    state: State
    updated_at: datetime
    signed_at: datetime
    cancel_reason: str


@dataclass(frozen=True)
class Prescription:
    id: str
    prescriber: Practitioner
    resident: Resident
    created_at: datetime
    lines: tuple[Line, ...] = ()
    state: State = State.DRAFT
    signed_at: datetime | None = None
    updated_at: datetime | None = None
    cancel_reason: str | None = None
    weight_kg: Decimal | None = None  # the resident's weight, when the prescriber gives it
    canonical_version: int = CANONICAL_VERSION

    def __post_init__(self) -> None:
        object.__setattr__(self, "id", validate_prescription_id(self.id))
        object.__setattr__(self, "created_at", _utc("created_at", self.created_at))
        object.__setattr__(self, "lines", tuple(self.lines))
        object.__setattr__(self, "state", State(self.state))
        if self.weight_kg is not None:
            weight = _quantity("weight_kg", self.weight_kg)
            if weight > MAX_WEIGHT_KG:
                raise ValidationError("weight_kg", self.weight_kg,
                                      f"a weight in kg up to {MAX_WEIGHT_KG}")
            object.__setattr__(self, "weight_kg", weight)
        if self.canonical_version not in (1, CANONICAL_VERSION):
            raise ValidationError("v", self.canonical_version,
                                  f"a content format 1 or {CANONICAL_VERSION}")
        if self.canonical_version == 1 and (len({line.renewals for line in self.lines}) > 1
                                            or self.weight_kg is not None
                                            or any(line.to_dict(2) != line.to_dict(1)
                                                   | _renewals_of(line) for line in self.lines)):
            raise ValidationError("v", 1, "format 1 content: one renewal count for every "
                                          "line and nothing that format 2 added")
        if self.prescriber.role is not Role.PRESCRIBER:
            raise ValidationError("prescriber", self.prescriber.id_nat_ps,
                                  "a practitioner allowed to prescribe")

    # -- state machine ---------------------------------------------------------------
    def can_become(self, new: State) -> bool:
        return new in TRANSITIONS[self.state]

    def transition(self, new: State, at: datetime, reason: str | None = None) -> Prescription:
        """The same prescription in state ``new``; refuses every illegal transition."""
        new = State(new)
        if new not in TRANSITIONS[self.state]:
            raise StateError(f"prescription {self.id}: {self.state.value} → {new.value} is not "
                             "allowed")
        at = _utc("at", at)
        changes: _Changes = {"state": new, "updated_at": at}
        if new is State.SIGNED:
            self.check_signable()
            changes["signed_at"] = at
        if new is State.CANCELLED:  # the reason is new input, checked here
            changes["cancel_reason"] = _text("cancel_reason", reason or "", 500)
            check_text("cancel_reason", changes["cancel_reason"], line_feed=True)
        return replace(self, **changes)

    def check_signable(self) -> None:
        if not self.lines:
            raise ValidationError("lines", [], "at least one line")
        if len(self.lines) > MAX_LINES:
            raise ValidationError("lines", f"{len(self.lines)} lines",
                                  f"at most {MAX_LINES} lines per prescription")
        if not self.prescriber.am:
            raise ValidationError("prescriber.am", None, "the prescriber's N° AM")
        for line in self.lines:
            if isinstance(line, MedicationLine):
                line.check_limits()

    @property
    def secure(self) -> bool:
        """Printed on secure paper (a PDF), never on a thermal receipt: every line is."""
        return bool(self.lines) and all(line.secure for line in self.lines)

    @property
    def mixes_secure(self) -> bool:
        """Secure lines beside others: signing splits it into two orders."""
        flags = {line.secure for line in self.lines}
        return flags == {True, False}

    @property
    def is_ald_split(self) -> bool:
        return any(line.ald for line in self.lines) and not all(line.ald for line in self.lines)

    # -- serialisation ---------------------------------------------------------------
    def content(self) -> JsonObject:
        """What the card signs: everything but the lifecycle (state, times after creation)."""
        p, r = self.prescriber, self.resident
        content: JsonObject = {
            "v": CANONICAL_VERSION,
            "id": self.id,
            "created_at": _iso(self.created_at),
            "prescriber": _drop_none({
                "id_nat_ps": p.id_nat_ps, "last_name": p.last_name, "first_name": p.first_name,
                "profession": p.profession, "am": p.am, "finess": p.finess,
                "qualification": p.qualification, "phone": p.phone, "email": p.email,
            }),
            "resident": _drop_none({
                "ins": r.ins.value, "ins_oid": r.ins.oid, "birth_name": r.birth_name,
                "used_name": r.used_name, "first_names": r.first_names,
                "birth_date": r.birth_date.isoformat(), "sex": r.sex.value,
                "objection": r.objection,
            }),
            "lines": [line.to_dict(self.canonical_version) for line in self.lines],
        }
        if self.canonical_version == 1:
            content["v"] = 1
            content["renewals"] = self.lines[0].renewals if self.lines else 0
        if self.weight_kg is not None:
            content["weight_kg"] = format(self.weight_kg, "f")
        return content

    def canonical_bytes(self) -> bytes:
        """RFC 8785 (JSON Canonicalization Scheme) bytes of ``content()``."""
        return rfc8785.dumps(self.content())

    def to_dict(self) -> JsonObject:
        """Content plus lifecycle and the resident's room, for the local store."""
        return {
            **self.content(),
            "room": self.resident.room,
            "prescriber_role": self.prescriber.role.value,
            "state": self.state.value,
            "signed_at": _iso(self.signed_at),
            "updated_at": _iso(self.updated_at),
            "cancel_reason": self.cancel_reason,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Prescription:
        """Load ``to_dict()`` output; a missing or malformed part is a ``ValidationError``."""
        try:
            return cls._from_dict(data)
        except KeyError as exc:
            raise ValidationError(f"prescription.{exc.args[0]}", None, "a value") from None
        except (TypeError, ValueError, AttributeError, ArithmeticError) as exc:
            raise ValidationError("prescription", type(exc).__name__,
                                  f"a prescription as Ordo stores it ({exc})") from None

    @classmethod
    def _from_dict(cls, data: Mapping[str, Any]) -> Prescription:
        p, r = data["prescriber"], data["resident"]
        # parts of content() that no constructor checks: canonical_bytes() needs them sound
        for name, value, kind in (("prescriber.profession", p["profession"], str),
                                  ("resident.objection", r.get("objection", False), bool)):
            if not isinstance(value, kind):
                raise ValidationError(name, value, f"a {kind.__name__}")
        state = State(data.get("state", "draft"))
        version = data.get("v", 1)
        lines = tuple(line_from_dict(line) for line in data["lines"])
        if version == 1:  # one count for the whole prescription: it goes on every line
            count = data.get("renewals", 0)
            _renewals("renewals", count)
            lines = tuple(replace(line, renewals=count) for line in lines)
            if state is State.DRAFT:
                version = CANONICAL_VERSION
        weight = data.get("weight_kg")
        return cls(
            id=data["id"],
            prescriber=_stored_party(_prescriber, (
                p["id_nat_ps"], p["last_name"], p["first_name"], p["profession"],
                data.get("prescriber_role", "prescriber"), p.get("am"), p.get("finess"),
                p.get("qualification"), p.get("phone"), p.get("email"))),
            resident=_stored_party(_resident, (
                r["ins"], r["ins_oid"], r["birth_name"], r.get("used_name"), r["first_names"],
                r["birth_date"], r["sex"], r.get("objection", False), data.get("room", ""))),
            created_at=datetime.fromisoformat(data["created_at"]),
            lines=lines,
            state=state,
            signed_at=_parse_time(data.get("signed_at")),
            updated_at=_parse_time(data.get("updated_at")),
            cancel_reason=data.get("cancel_reason"),
            weight_kg=Decimal(weight) if weight is not None else None,
            canonical_version=version,
        )


_Party = TypeVar("_Party", Practitioner, Resident)


# A stored body's prescriber and resident, built (and their identifiers checked) once for
# the same stored fields: the same few prescribers sign every order and a resident has many,
# so loading a batch of prescriptions (a drain, a resident's file) builds each person once.
# Both are frozen: sharing one between prescriptions changes nothing.
def _stored_party(build: Callable[[tuple[Any, ...]], _Party], fields: tuple[Any, ...]) -> _Party:
    try:
        return build(fields)
    except TypeError:  # a value that cannot be a key (a damaged body): built to say what
        built: _Party = build.__wrapped__(fields)  # type: ignore[attr-defined]
        return built


@lru_cache(maxsize=256)
def _prescriber(fields: tuple[Any, ...]) -> Practitioner:
    id_nat_ps, last, first, profession, role, am, finess, qualification, phone, email = fields
    return Practitioner(id_nat_ps=id_nat_ps, last_name=last, first_name=first,
                        profession=profession, role=Role(role), am=am, finess=finess,
                        qualification=qualification, phone=phone, email=email)


@lru_cache(maxsize=1024)
def _resident(fields: tuple[Any, ...]) -> Resident:
    ins, oid, birth_name, used_name, first_names, birth_date, sex, objection, room = fields
    return Resident(ins=validate_ins(ins, oid, field="resident.ins"), birth_name=birth_name,
                    used_name=used_name, first_names=first_names,
                    birth_date=date.fromisoformat(birth_date), sex=Sex(sex),
                    objection=objection, room=room)


def _renewals_of(line: Line) -> dict[str, int]:
    return {"renewals": line.renewals} if line.renewals else {}


def _parse_time(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def line_from_dict(data: Mapping[str, Any]) -> Line:
    """Load ``to_dict()`` output of a line; a malformed one is a ``ValidationError``."""
    try:
        return _line_from_dict(data)
    except KeyError as exc:
        raise ValidationError(f"line.{exc.args[0]}", None, "a value") from None
    except (TypeError, ValueError, AttributeError, ArithmeticError) as exc:
        raise ValidationError("line", type(exc).__name__,
                              f"a line as Ordo stores it ({exc})") from None


def _line_from_dict(data: Mapping[str, Any]) -> Line:
    kind = data.get("kind")
    if kind == "medication":
        ns = data.get("non_substitution")
        return MedicationLine(
            label=data["label"], cis=data.get("cis"), cip13=data.get("cip13"),
            posology=posology_from_dict(data["posology"]),
            quantity=Decimal(data["quantity"]) if data.get("quantity") else None,
            non_substitution=NonSubstitution(ns) if ns else None,
            ald=bool(data.get("ald", False)), instructions=data.get("instructions", ""),
            renewals=data.get("renewals", 0), common_name=data.get("common_name"),
            by_brand=data.get("by_brand", True), conditions=tuple(data.get("conditions", ())))
    if kind == "device":
        return DeviceLine(label=data["label"], lpp=data.get("lpp"),
                          quantity=Decimal(data.get("quantity", "1")),
                          ald=bool(data.get("ald", False)), renewals=data.get("renewals", 0))
    if kind == "act":
        return ActLine(text=data["text"], ald=bool(data.get("ald", False)),
                       renewals=data.get("renewals", 0))
    raise ValidationError("line.kind", kind, "medication, device or act")
