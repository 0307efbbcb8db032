"""Residents (patients) and practitioners, validated on construction.

The constructors check what any stored row also satisfies (identifiers, non-empty names,
dates); what only new input must pass (control and bidirectional characters, the room's
length) is checked where it comes in: ``check_resident_texts`` for the residents CSV,
``Practitioner.check_input`` for a card holder or ``ordo practitioners add``.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from enum import StrEnum

from appliance.domain.ids import (
    Ins,
    rpps_from_id_nat_ps,
    validate_am,
    validate_finess,
    validate_id_nat_ps,
)
from appliance.domain.text import check_characters, has_surrogate
from appliance.errors import ValidationError


def fold(text: str) -> str:
    """Lower-case, accent-free form used for searching names."""
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c)).casefold()


MAX_NAME = 100
MAX_ROOM = 30
# A resident's texts, by the CSV column (and the field of a ``ValidationError``) naming them.
RESIDENT_TEXTS = {"nom": "a name", "nom_usage": "a name", "prenoms": "a name",
                  "chambre": "a room"}


def _name(field: str, value: str, required: bool = True) -> str:
    value = " ".join((value or "").split())
    if required and not value:
        raise ValidationError(field, value, "a non-empty name")
    if len(value) > MAX_NAME:
        raise ValidationError(field, value, f"at most {MAX_NAME} characters")
    if has_surrogate(value):  # JSON "\ud800": not encodable
        raise ValidationError(field, value, "a name without lone surrogates")
    return value


_PHONE_SEPARATORS = str.maketrans("", "", " .-\u00a0()/")
_EMAIL_RE = re.compile(r"[^@\s]{1,64}@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
                       r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)+")


def validate_phone(value: str, field: str = "phone") -> str:
    """A French phone number in international form, ``+33 1 23 45 67 89``.

    Accepts the national form (``01 23 45 67 89``), ``+33``/``0033`` with or without the
    ``(0)``, and spaces, dots, dashes or slashes between digits."""
    raw = value if isinstance(value, str) else ""
    compact = raw.translate(_PHONE_SEPARATORS)
    if compact.startswith("+33"):
        digits = compact[3:]
    elif compact.startswith("0033"):
        digits = compact[4:]
    elif compact.startswith("0"):
        digits = compact[1:]
    else:
        digits = ""
    digits = digits.removeprefix("0") if len(digits) == 10 else digits
    if len(digits) != 9 or not digits.isdigit() or digits[0] == "0":
        raise ValidationError(field, value, "a French phone number: 0X XX XX XX XX or "
                                            "+33 X XX XX XX XX")
    return "+33 " + digits[0] + " " + " ".join(digits[i:i + 2] for i in range(1, 9, 2))


def validate_email(value: str, field: str = "email") -> str:
    """An e-mail address (``local@domain.tld``), at most 254 characters."""
    text = value.strip() if isinstance(value, str) else ""
    if len(text) > 254 or not _EMAIL_RE.fullmatch(text):
        raise ValidationError(field, value, "an e-mail address such as nom@domaine.fr")
    return text


def check_resident_texts(values: Mapping[str, str | None]) -> None:
    """The rules a resident's texts must pass where they come in (the residents CSV), on
    the values as given, by column: no control or bidirectional character (a tab is
    refused, not made a space; ``appliance.domain.text``) and a room of at most
    ``MAX_ROOM`` characters. A stored resident is never checked again when loaded."""
    for column, what in RESIDENT_TEXTS.items():
        check_characters(column, values.get(column) or "", what)
    room = " ".join((values.get("chambre") or "").split())
    if len(room) > MAX_ROOM:
        raise ValidationError("chambre", room, f"a room of at most {MAX_ROOM} characters")


class Sex(StrEnum):
    MALE = "M"
    FEMALE = "F"


@dataclass(frozen=True)
class Resident:
    """A resident of the EHPAD, identified by the INS (INS-NIR and its OID)."""

    ins: Ins
    birth_name: str
    first_names: str
    birth_date: date
    sex: Sex
    used_name: str | None = None
    room: str = ""
    objection: bool = False  # objects to the prescriber seeing the dispensations
    active: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "birth_name", _name("nom", self.birth_name).upper())
        object.__setattr__(self, "first_names", _name("prenoms", self.first_names))
        used = _name("nom_usage", self.used_name or "", required=False).upper()
        object.__setattr__(self, "used_name", used or None)
        object.__setattr__(self, "sex", Sex(self.sex))
        object.__setattr__(self, "room", " ".join(self.room.split()))
        if self.birth_date > date.today() or self.birth_date.year < 1890:
            raise ValidationError("date_naissance", self.birth_date.isoformat(),
                                  "a birth date between 1890 and today")

    @property
    def display_name(self) -> str:
        """``DUPONT née MARTIN Jeanne`` style, used name first when there is one."""
        if self.used_name and self.used_name != self.birth_name:
            born = "née" if self.sex is Sex.FEMALE else "né"
            return f"{self.used_name} {born} {self.birth_name} {self.first_names}"
        return f"{self.birth_name} {self.first_names}"

    @property
    def search_key(self) -> str:
        return fold(" ".join(filter(None, [self.used_name, self.birth_name, self.first_names,
                                           self.room])))

    def age(self, on: date) -> int:
        before_birthday = (on.month, on.day) < (self.birth_date.month, self.birth_date.day)
        return on.year - self.birth_date.year - before_birthday


class Role(StrEnum):
    PRESCRIBER = "prescriber"
    NURSE = "nurse"
    STAFF = "staff"  # CPE card holder: can look up and reprint, never sign


ROLE_LABELS_FR: dict[Role, str] = {Role.PRESCRIBER: "médecin", Role.NURSE: "infirmier",
                                   Role.STAFF: "personnel d'établissement"}


@dataclass(frozen=True)
class Practitioner:
    """A health professional identified by the idNat_PS (``8`` + RPPS)."""

    id_nat_ps: str
    last_name: str
    first_name: str
    profession: str
    role: Role
    am: str | None = None  # N° AM, required to prescribe
    finess: str | None = None
    qualification: str | None = None  # e.g. "Médecin généraliste" (the card has "Médecin")
    phone: str | None = None  # +33 form
    email: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "id_nat_ps", validate_id_nat_ps(self.id_nat_ps))
        object.__setattr__(self, "last_name", _name("last_name", self.last_name).upper())
        object.__setattr__(self, "first_name", _name("first_name", self.first_name))
        object.__setattr__(self, "role", Role(self.role))
        if self.am:
            object.__setattr__(self, "am", validate_am(self.am))
        if self.finess:
            object.__setattr__(self, "finess", validate_finess(self.finess))
        qualification = _name("qualification", self.qualification or "", required=False)
        object.__setattr__(self, "qualification", qualification or None)
        object.__setattr__(self, "phone", validate_phone(self.phone) if self.phone else None)
        object.__setattr__(self, "email", validate_email(self.email) if self.email else None)

    def check_input(self) -> None:
        """The names as new input (a card's holder, ``ordo practitioners add``): no control
        or bidirectional character."""
        check_characters("last_name", self.last_name, "a name")
        check_characters("first_name", self.first_name, "a name")

    @property
    def rpps(self) -> str | None:
        return rpps_from_id_nat_ps(self.id_nat_ps) if self.id_nat_ps.startswith("8") else None

    @property
    def display_name(self) -> str:
        return f"{self.first_name} {self.last_name}"

    @property
    def can_prescribe(self) -> bool:
        return self.role is Role.PRESCRIBER
