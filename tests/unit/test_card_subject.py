"""Card certificate subject → practitioner identity and role."""

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from appliance.services.auth import AuthRefused, Role, parse_practitioner, role_for
from drivers.card.pki import PROFILES, TEST_FINESS, holder_name, rpps_with_key


@pytest.fixture(scope="module")
def key():
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _cert(key, name):
    now = datetime.now(UTC)
    return (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(7)
            .not_valid_before(now).not_valid_after(now + timedelta(days=1))
            .sign(key, hashes.SHA256()))


def test_physician_identity_from_the_subject(key):
    who = parse_practitioner(_cert(key, holder_name(PROFILES["physician"])))
    assert who.id_nat_ps == "8" + rpps_with_key("9970000001")
    assert who.rpps == rpps_with_key("9970000001") and len(who.rpps) == 11
    assert (who.family_name, who.given_name) == ("DUVAL", "Claire")
    assert who.profession == "Médecin" and who.card_type == "CPS"
    assert who.display_name == "Claire DUVAL"
    assert role_for(who) is Role.PRESCRIBER


@pytest.mark.parametrize(("profession", "role"), [
    ("Médecin", Role.PRESCRIBER), ("MEDECIN", Role.PRESCRIBER), ("Infirmier", Role.NURSE),
    ("Infirmière", Role.NURSE), (" infirmiere ", Role.NURSE), ("Pharmacien", None),
    ("", None), ("Sage-femme", None),
])
def test_profession_maps_to_a_role(key, profession, role):
    profile = replace(PROFILES["nurse"], profession=profession or "x")
    name = holder_name(profile) if profession else x509.Name(
        [a for a in holder_name(profile) if a.oid != NameOID.TITLE])
    assert role_for(parse_practitioner(_cert(key, name))) is role


def test_cpe_card_is_staff_without_rpps(key):
    who = parse_practitioner(_cert(key, holder_name(PROFILES["cpe"])))
    assert who.card_type == "CPE" and who.rpps is None
    assert who.id_nat_ps == f"3{TEST_FINESS}/CPE0001"
    assert role_for(who) is Role.STAFF


def test_adeli_identifier_is_accepted(key):
    who = parse_practitioner(_cert(key, holder_name(replace(PROFILES["nurse"],
                                                            id_nat_ps="0123456789"))))
    assert who.rpps is None and who.card_type == "CPS"


@pytest.mark.parametrize("id_nat", [
    "8" + rpps_with_key("9970000001")[:-1] + "0",     # bad Luhn key (the right one is not 0)
    "899700000",                                      # too short
    "9" + rpps_with_key("9970000001"),                # unknown type
    f"3{TEST_FINESS}",                                # CPE without the local identifier
    "",
])
def test_invalid_identifier_is_not_a_cps_card(key, id_nat):
    assert rpps_with_key("9970000001")[-1] != "0"
    attributes = [a for a in holder_name(PROFILES["physician"]) if a.oid != NameOID.SERIAL_NUMBER]
    if id_nat:
        attributes.append(x509.NameAttribute(NameOID.SERIAL_NUMBER, id_nat))
    with pytest.raises(AuthRefused) as exc:
        parse_practitioner(_cert(key, x509.Name(attributes)))
    assert exc.value.reason == "not_cps"
    assert "pas une carte CPS" in str(exc.value)
