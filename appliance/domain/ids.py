"""French health identifiers: format and check-key validation (pure, no I/O).

Every ``validate_*`` function takes the raw text, removes whitespace (spaces, tabs,
non-breaking spaces), upper-cases it where letters are allowed, and returns the
normalised value. On failure it raises ``InvalidIdentifier(field, value, reason)``:
``field`` defaults to the identifier's name and can be given by the caller
(``validate_nir(v, field="residents.csv:12:nir")``), ``value`` is the text as received,
and ``reason`` says in plain English what is wrong (length, a non-digit and where it
is, a bad prefix, a bad key together with the expected key).

Check-key algorithms come from python-stdnum: ``stdnum.fr.nir`` (NIR key, Corsica
``2A``/``2B``), ``stdnum.luhn`` (RPPS, FINESS) and ``stdnum.ean`` (CIP13).

Identifiers and their sources:

- NIR (INSEE, décret n° 82-103; https://xml.insee.fr/schema/nir.html): 13 characters +
  2-digit key = 97 − (n mod 97), ``2A`` → 19 and ``2B`` → 18 before computing.
- INS (Identifiant National de Santé, ANS "Référentiel INS"): the NIR or NIA, qualified
  by the OID of its kind (INS-NIR, INS-NIA, or the test OID).
- RPPS (ANS): 11 digits, the last one a Luhn key; idNat_PS = ``8`` + RPPS
  (``0`` + ADELI for professionals still known by an ADELI number).
- N° AM (Assurance Maladie prescriber number), CIS (ANSM specialty, BDPM), CIP7, LPP:
  fixed numbers of digits; no public check-key rule is applied.
- FINESS (ANS/DREES répertoire FINESS): 9 characters; see ``validate_finess``.
- CIP13 (presentation code, Club Inter Pharmaceutique): 13 digits, prefix ``34009``,
  EAN-13 check digit.
"""

from __future__ import annotations

from dataclasses import dataclass

from stdnum import ean, luhn
from stdnum.fr import nir as stdnum_nir

from appliance.errors import InvalidIdentifier

__all__ = [
    "INS_NIA_OID",
    "INS_NIR_OID",
    "INS_OIDS",
    "INS_TEST_OID",
    "Ins",
    "id_nat_ps",
    "nir_key",
    "rpps_from_id_nat_ps",
    "validate_am",
    "validate_cip7",
    "validate_cip13",
    "validate_cis",
    "validate_finess",
    "validate_id_nat_ps",
    "validate_ins",
    "validate_lpp",
    "validate_nir",
    "validate_rpps",
]

# OIDs of the INS kinds (ANS, "Référentiel Identifiant National de Santé", annexe OID).
INS_NIR_OID = "1.2.250.1.213.1.4.8"
INS_NIA_OID = "1.2.250.1.213.1.4.9"
INS_TEST_OID = "1.2.250.1.213.1.4.10"
INS_OIDS = (INS_NIR_OID, INS_NIA_OID, INS_TEST_OID)

# First digit of a NIR: 1 male, 2 female; 3 and 4 foreign-born persons being registered,
# 7 and 8 provisional numbers (NIA). stdnum.fr.nir does not check this digit; we do.
NIR_SEX_DIGITS = frozenset("123478")
CORSICA = ("2A", "2B")
CIP13_PREFIX = "34009"
ID_NAT_PS_RPPS_PREFIX = "8"
ID_NAT_PS_ADELI_PREFIX = "0"


def _compact(value: object, field: str) -> str:
    if not isinstance(value, str):
        raise InvalidIdentifier(field, value, f"expected text, got {type(value).__name__}")
    return "".join(value.split())


def _check_length(text: str, value: object, field: str, length: int, what: str) -> None:
    if len(text) != length:
        raise InvalidIdentifier(
            field, value, f"expected {length} characters ({what}), got {len(text)}"
        )


def _check_digits(
    text: str, value: object, field: str, start: int = 0, stop: int | None = None
) -> None:
    """Positions in the reason are 1-based and count characters of the compacted text."""
    stop = len(text) if stop is None else stop
    part = text[start:stop]
    if not part or (part.isascii() and part.isdigit()):  # ASCII digits: nothing to name
        return
    for pos in range(start, stop):
        if not "0" <= text[pos] <= "9":
            raise InvalidIdentifier(
                field, value, f"non-digit character {text[pos]!r} at position {pos + 1}"
            )


def _fixed_digits(value: object, field: str, length: int, what: str) -> str:
    text = _compact(value, field)
    _check_length(text, value, field, length, what)
    _check_digits(text, value, field)
    return text


# --- NIR and INS -----------------------------------------------------------------


def _check_nir_body(text: str, value: object, field: str) -> None:
    """Check the 13 leading characters of a NIR (sex, digits, Corsican department)."""
    _check_digits(text, value, field, 0, 5)
    department = text[5:7]
    if department not in CORSICA:
        for pos in (5, 6):
            if not "0" <= text[pos] <= "9":
                raise InvalidIdentifier(
                    field, value,
                    f"department {department!r} at positions 6-7: expected two digits, 2A or 2B",
                )
    _check_digits(text, value, field, 7, 13)
    if text[0] not in NIR_SEX_DIGITS:
        raise InvalidIdentifier(
            field, value,
            f"first digit (sex) is {text[0]!r}: expected 1 or 2 "
            "(3, 4, 7 or 8 for a number being registered or provisional)",
        )


def nir_key(first13: str) -> str:
    """The 2-digit key of a NIR from its first 13 characters (``2A``/``2B`` allowed)."""
    text = _compact(first13, "nir").upper()
    _check_length(text, first13, "nir", 13, "a NIR without its key")
    _check_nir_body(text, first13, "nir")
    return stdnum_nir.calc_check_digits(text)


def validate_nir(value: str, field: str = "nir") -> str:
    """Validate a 15-character NIR (13 characters + 2-digit key); return it compacted.

    Corsica: ``2A`` is replaced by 19 and ``2B`` by 18 to compute the key
    (``stdnum.fr.nir.calc_check_digits``); the returned NIR keeps the letters. Persons
    born in Corsica before 1976 have department ``20``, which is accepted as digits.
    The first digit must be 1 or 2, or 3, 4, 7, 8 (numbers being registered and
    provisional numbers); stdnum itself accepts any digit there.
    """
    text = _compact(value, field).upper()
    _check_length(text, value, field, 15, "13 characters and a 2-digit key")
    _check_nir_body(text, value, field)
    _check_digits(text, value, field, 13, 15)
    expected = stdnum_nir.calc_check_digits(text)
    if text[13:] != expected:
        raise InvalidIdentifier(field, value, f"bad key {text[13:]}: expected {expected}")
    return text


@dataclass(frozen=True)
class Ins:
    """An INS: the NIR or NIA of a person, qualified by the OID of its kind."""

    value: str
    oid: str

    @classmethod
    def from_nir(cls, nir: str, oid: str = INS_NIR_OID) -> Ins:
        """Validate ``nir`` and ``oid`` and build the INS."""
        return validate_ins(nir, oid)


def validate_ins(value: str, oid: str, field: str = "ins") -> Ins:
    """Validate an INS value (NIR/NIA format and key) and its OID.

    A wrong OID raises ``InvalidIdentifier`` with field ``<field>.oid`` and the OID as value.
    """
    if oid not in INS_OIDS:
        raise InvalidIdentifier(
            f"{field}.oid", oid,
            f"unknown INS OID: expected {INS_NIR_OID} (INS-NIR), {INS_NIA_OID} (INS-NIA) "
            f"or {INS_TEST_OID} (test)",
        )
    return Ins(validate_nir(value, field=field), oid)


# --- Health professionals --------------------------------------------------------


def validate_rpps(value: str, field: str = "rpps") -> str:
    """Validate an 11-digit RPPS number whose last digit is a Luhn key."""
    text = _fixed_digits(value, field, 11, "10 digits and a Luhn key")
    expected = luhn.calc_check_digit(text[:10])
    if text[10] != expected:
        raise InvalidIdentifier(field, value, f"bad Luhn key {text[10]}: expected {expected}")
    return text


def id_nat_ps(rpps: str) -> str:
    """The national PS identifier (idNat_PS) of an RPPS number: ``8`` + RPPS."""
    return ID_NAT_PS_RPPS_PREFIX + validate_rpps(rpps)


def validate_id_nat_ps(value: str, field: str = "id_nat_ps") -> str:
    """Validate an idNat_PS of a health professional.

    Accepted: ``8`` + a valid RPPS (12 characters), or ``0`` + a 9-digit ADELI number
    (10 characters; ADELI is checked for format only). Other idNat_PS kinds (e.g. the
    ``3`` + FINESS + ``/`` + local identifier of establishment staff on CPE cards) are
    refused here.
    """
    text = _compact(value, field)
    if text[:1] == ID_NAT_PS_RPPS_PREFIX and len(text) == 12:
        try:
            validate_rpps(text[1:], field)
        except InvalidIdentifier as exc:
            raise InvalidIdentifier(field, value, f"RPPS part: {exc.expected}") from exc
        return text
    if text[:1] == ID_NAT_PS_ADELI_PREFIX and len(text) == 10:
        try:
            _fixed_digits(text[1:], field, 9, "an ADELI number")
        except InvalidIdentifier as exc:
            raise InvalidIdentifier(field, value, f"ADELI part: {exc.expected}") from exc
        return text
    raise InvalidIdentifier(
        field, value,
        "expected '8' followed by an 11-digit RPPS (12 characters) "
        f"or '0' followed by a 9-digit ADELI number (10 characters), got {len(text)} characters"
        + (f" starting with {text[0]!r}" if text else ""),
    )


def rpps_from_id_nat_ps(value: str) -> str:
    """The RPPS number inside an idNat_PS ``8`` + RPPS (an ADELI idNat_PS has none)."""
    text = validate_id_nat_ps(value)
    if text[0] != ID_NAT_PS_RPPS_PREFIX:
        raise InvalidIdentifier(
            "id_nat_ps", value, "an ADELI idNat_PS ('0' + ADELI) carries no RPPS number"
        )
    return text[1:]


def validate_am(value: str, field: str = "am") -> str:
    """Validate an Assurance Maladie prescriber number (N° AM): 9 digits, format only."""
    return _fixed_digits(value, field, 9, "9 digits")


# --- Establishments ----------------------------------------------------------------


def validate_finess(value: str, field: str = "finess") -> str:
    """Validate a FINESS number: department (2 digits, ``2A`` or ``2B``) then 7 digits.

    The 9th character is a Luhn key over the 8 others. This is not stated in a public
    specification we could find; it is checked because every real FINESS number we
    could read in public FINESS extracts (37 numbers, ET and EJ, metropolitan and
    overseas, e.g. 010000024, 750712184, 970300026, 980600027) passes ``stdnum.luhn``:
    10⁻³⁷ by chance. The letter-to-digit rule for Corsican numbers (``2A…``, ``2B…``)
    could not be checked against a real number, so those are checked for format only.
    """
    text = _compact(value, field).upper()
    _check_length(text, value, field, 9, "a 2-character department and 7 digits")
    if text[:2] not in CORSICA:
        for pos in (0, 1):
            if not "0" <= text[pos] <= "9":
                raise InvalidIdentifier(
                    field, value,
                    f"department {text[:2]!r} at positions 1-2: expected two digits, 2A or 2B",
                )
    _check_digits(text, value, field, 2, 9)
    if text[:2] not in CORSICA:
        expected = luhn.calc_check_digit(text[:8])
        if text[8] != expected:
            raise InvalidIdentifier(
                field, value, f"bad Luhn key {text[8]}: expected {expected}"
            )
    return text


# --- Medications and devices ---------------------------------------------------------


def validate_cis(value: str, field: str = "cis") -> str:
    """Validate a CIS (Code Identifiant de Spécialité, BDPM): 8 digits, format only."""
    return _fixed_digits(value, field, 8, "8 digits")


def validate_cip13(value: str, field: str = "cip13") -> str:
    """Validate a CIP13 presentation code: 13 digits, prefix 34009, EAN-13 check digit."""
    text = _fixed_digits(value, field, 13, "13 digits")
    if not text.startswith(CIP13_PREFIX):
        raise InvalidIdentifier(
            field, value, f"prefix {text[:5]}: a CIP13 starts with {CIP13_PREFIX}"
        )
    expected = ean.calc_check_digit(text[:12])
    if text[12] != expected:
        raise InvalidIdentifier(
            field, value, f"bad EAN-13 check digit {text[12]}: expected {expected}"
        )
    return text


def validate_cip7(value: str, field: str = "cip7") -> str:
    """Validate a CIP7 (legacy 7-digit presentation code), format only."""
    return _fixed_digits(value, field, 7, "7 digits")


def validate_lpp(value: str, field: str = "lpp") -> str:
    """Validate an LPP code (Liste des Produits et Prestations): 7 digits, format only."""
    return _fixed_digits(value, field, 7, "7 digits")
