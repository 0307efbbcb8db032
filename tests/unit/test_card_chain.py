"""Certificate validation: dates, chain to the configured roots, key usage, CRLs."""

from datetime import timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes

from appliance.services.auth import AuthRefused, validate_certificate
from appliance.services.trust import TrustStore
from drivers.card.pki import build_pki


@pytest.fixture(scope="module")
def pki():
    return build_pki()


@pytest.fixture(scope="module")
def now(pki):
    return pki.root.cert.not_valid_before_utc + timedelta(days=5 * 365)


def _trust(pki, crls=True, intermediates=True):
    certs = [pki.root.cert] + ([pki.professionals.cert] if intermediates else [])
    return TrustStore.from_certificates(
        certs, [pki.crl_professionals, pki.crl_root] if crls else [])


def _reason(cert, trust, at, usage="authentication"):
    with pytest.raises(AuthRefused) as exc:
        validate_certificate(cert, trust, at, usage)
    return exc.value.reason


def test_trust_store_splits_roots_and_intermediates(pki):
    trust = _trust(pki)
    assert trust.roots == (pki.root.cert,)
    assert trust.intermediates == (pki.professionals.cert,)


def test_valid_card_chains_to_the_root(pki, now):
    card = pki.cards["physician"]
    path = validate_certificate(card.auth.cert, _trust(pki), now)
    assert path == [card.auth.cert, pki.professionals.cert, pki.root.cert]
    assert validate_certificate(card.sign.cert, _trust(pki), now, "signature")[-1] \
        == pki.root.cert


def test_expired_card(pki, now):
    assert _reason(pki.cards["expired"].auth.cert, _trust(pki), now) == "expired"


def test_not_yet_valid(pki):
    cert = pki.cards["physician"].auth.cert
    assert _reason(cert, _trust(pki), cert.not_valid_before_utc - timedelta(seconds=1)) \
        == "not_yet_valid"


def test_look_alike_chain_is_untrusted(pki, now):
    cert = pki.cards["untrusted"].auth.cert
    # same issuer name as the trusted intermediate: only the signature tells them apart
    assert cert.issuer == pki.professionals.cert.subject
    assert _reason(cert, _trust(pki), now) == "untrusted"


def test_missing_intermediate_is_untrusted(pki, now):
    assert _reason(pki.cards["physician"].auth.cert, _trust(pki, intermediates=False), now) \
        == "untrusted"


def test_no_trust_roots_configured(pki, now):
    with pytest.raises(AuthRefused) as exc:
        validate_certificate(pki.cards["physician"].auth.cert, TrustStore(), now)
    assert exc.value.reason == "no_trust_roots"
    assert "security.trust_roots" in str(exc.value)


def test_revoked_only_when_crls_are_configured(pki, now):
    cert = pki.cards["revoked"].auth.cert
    assert _reason(cert, _trust(pki), now) == "revoked"
    assert _reason(pki.cards["revoked"].sign.cert, _trust(pki), now, "signature") == "revoked"
    assert validate_certificate(cert, _trust(pki, crls=False), now)


def test_crl_from_an_impostor_is_ignored(pki, now):
    victim = pki.cards["physician"].auth.cert
    forged = (x509.CertificateRevocationListBuilder()
              .issuer_name(pki.professionals.cert.subject)
              .last_update(now - timedelta(hours=1)).next_update(now + timedelta(days=1))
              .add_revoked_certificate(x509.RevokedCertificateBuilder()
                                       .serial_number(victim.serial_number)
                                       .revocation_date(now - timedelta(hours=1)).build())
              .sign(pki.untrusted_professionals.key, hashes.SHA256()))
    trust = TrustStore.from_certificates([pki.root.cert, pki.professionals.cert], [forged])
    assert validate_certificate(victim, trust, now)


def test_key_usage_must_match_the_use(pki, now):
    card = pki.cards["physician"]
    assert _reason(card.sign.cert, _trust(pki), now, "authentication") == "key_usage"
    assert _reason(card.auth.cert, _trust(pki), now, "signature") == "key_usage"


def test_establishment_certificates(pki, now):
    san = pki.server.cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "localhost" in san.get_values_for_type(x509.DNSName)
    assert [str(ip) for ip in san.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    pki.server.cert.verify_directly_issued_by(pki.organisations.cert)
    pki.client.cert.verify_directly_issued_by(pki.organisations.cert)
    eku = pki.client.cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH in eku
