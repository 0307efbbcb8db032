"""``ordo config check``: findings beyond the formats, each naming key, value, expectation."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from appliance.cli import main
from appliance.config import load_settings
from appliance.ops.configcheck import ERROR, WARNING, check_settings
from tests.integration.test_ops_helpers import make_pki, write_key


def _crl(path: Path, ca_cert: Path, next_update: datetime) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    issuer = x509.load_pem_x509_certificate(ca_cert.read_bytes()).subject
    crl = (x509.CertificateRevocationListBuilder().issuer_name(issuer)
           .last_update(next_update - timedelta(days=7)).next_update(next_update)
           .sign(key, hashes.SHA256()))
    path.write_bytes(crl.public_bytes(serialization.Encoding.PEM))


@pytest.fixture
def good_env(tmp_path):
    pki = make_pki(tmp_path / "pki")
    _crl(tmp_path / "pki/cps.crl", pki.ca, datetime.now(UTC) + timedelta(days=7))
    return {
        "ORDO_ESTABLISHMENT_NAME": "EHPAD Les Tilleuls",
        "ORDO_ESTABLISHMENT_FINESS": "750712184",
        "ORDO_ESTABLISHMENT_ADDRESS": "1 rue des Lilas, 75020 Paris",
        "ORDO_PHARMACY_NAME": "Pharmacie du Centre",
        "ORDO_PHARMACY_FINESS": "010000024",
        "ORDO_REGISTRY_URL": "https://registre.example.fr/fhir",
        "ORDO_REGISTRY_CLIENT_CERT": str(pki.client_cert),
        "ORDO_REGISTRY_CLIENT_KEY": str(pki.client_key),
        "ORDO_REGISTRY_CA_FILE": str(pki.ca),
        "ORDO_SECURITY_TRUST_ROOTS": str(pki.ca),
        "ORDO_SECURITY_CRLS": str(tmp_path / "pki/cps.crl"),
        "ORDO_SECURITY_BACKUP_KEY": str(write_key(tmp_path / "backup.key")),
    }


def _findings(tmp_path, env):
    settings = load_settings(data_dir=tmp_path / "data", environ=env)
    return {(f.level, f.error.key): f.error for f in check_settings(settings)}


def test_a_complete_configuration_has_no_finding(tmp_path, good_env):
    assert _findings(tmp_path, good_env) == {}


def test_the_embedded_defaults_are_not_enough(tmp_path):
    found = _findings(tmp_path, {})
    errors = {key for level, key in found if level == ERROR}
    assert errors == {"establishment.finess", "establishment.address", "registry.client_cert",
                      "registry.client_key", "registry.ca_file", "security.trust_roots",
                      "security.backup_key"}
    warnings = {key for level, key in found if level == WARNING}
    assert warnings == {"establishment.name", "pharmacy.name", "security.crls"}
    assert found[(ERROR, "establishment.finess")].value == ""
    assert "FINESS" in found[(ERROR, "establishment.finess")].expected


@pytest.mark.parametrize(("change", "key", "words"), [
    ({"ORDO_ESTABLISHMENT_FINESS": "750712185"}, "establishment.finess", "Luhn"),
    ({"ORDO_PHARMACY_FINESS": "010000025"}, "pharmacy.finess", "Luhn"),
    ({"ORDO_REGISTRY_URL": "http://registre.example.fr/fhir"}, "registry.url", "https"),
    ({"ORDO_REGISTRY_CA_FILE": "/nonexistent/ca.pem"}, "registry.ca_file", "an existing file"),
    ({"ORDO_REGISTRY_CA_FILE": "relative/ca.pem"}, "registry.ca_file", "absolute path"),
    ({"ORDO_SECURITY_TRUST_ROOTS": "/etc/hostname"}, "security.trust_roots[0]", "certificate"),
    ({"ORDO_SECURITY_BACKUP_KEY": "/etc/hostname"}, "security.backup_key", "32 random bytes"),
])
def test_each_problem_names_key_value_and_expectation(tmp_path, good_env, change, key, words):
    found = _findings(tmp_path, {**good_env, **change})
    assert list(found) == [(ERROR, key)], found
    error = found[(ERROR, key)]
    assert error.value == next(iter(change.values()))
    assert words in error.expected


def test_a_key_that_does_not_match_the_certificate(tmp_path, good_env):
    other = make_pki(tmp_path / "other")
    found = _findings(tmp_path, {**good_env, "ORDO_REGISTRY_CLIENT_KEY": str(other.client_key)})
    assert "does not match" in found[(ERROR, "registry.client_key")].expected


def test_secrets_readable_by_everyone_are_refused(tmp_path, good_env):
    Path(good_env["ORDO_SECURITY_BACKUP_KEY"]).chmod(0o644)
    found = _findings(tmp_path, good_env)
    assert "chmod 640" in found[(ERROR, "security.backup_key")].expected


def test_expired_certificates_and_stale_crls(tmp_path, good_env):
    soon = make_pki(tmp_path / "soon", client_days=10)
    _crl(tmp_path / "old.crl", soon.ca, datetime.now(UTC) - timedelta(days=1))
    found = _findings(tmp_path, {**good_env, "ORDO_REGISTRY_CLIENT_CERT": str(soon.client_cert),
                                 "ORDO_REGISTRY_CLIENT_KEY": str(soon.client_key),
                                 "ORDO_SECURITY_CRLS": str(tmp_path / "old.crl")})
    assert "renew it" in found[(WARNING, "registry.client_cert")].expected
    assert "download it again" in found[(WARNING, "security.crls[0]")].expected
    settings = load_settings(data_dir=tmp_path, environ={
        **good_env, "ORDO_REGISTRY_CLIENT_CERT": str(soon.client_cert),
        "ORDO_REGISTRY_CLIENT_KEY": str(soon.client_key)})
    later = check_settings(settings, now=datetime.now(UTC) + timedelta(days=20))
    assert any(f.level == ERROR and "expired" in f.error.expected for f in later)


def test_cli_config_check_exit_status_and_json(tmp_path, good_env):
    runner = CliRunner()
    args = ["--data-dir", str(tmp_path / "data"), "config", "check"]
    ok = runner.invoke(main, args, env=good_env)
    assert ok.exit_code == 0 and "configuration OK" in ok.stdout
    bad = runner.invoke(main, args, env={**good_env, "ORDO_ESTABLISHMENT_FINESS": ""})
    assert bad.exit_code == 1
    assert "ERROR   establishment.finess = ''" in bad.stderr
    assert "configuration NOT OK" in bad.stdout
    as_json = runner.invoke(main, [*args, "--json"], env={**good_env,
                                                          "ORDO_PHARMACY_NAME": ""})
    assert as_json.exit_code == 0
    assert '"key": "pharmacy.name"' in as_json.stdout and '"ok": true' in as_json.stdout


def test_config_show_masks_the_key_paths(tmp_path, good_env):
    result = CliRunner().invoke(main, ["--data-dir", str(tmp_path), "config", "show"],
                                env=good_env)
    assert result.exit_code == 0
    assert good_env["ORDO_SECURITY_BACKUP_KEY"] not in result.stdout
    assert 'backup_key = "********"' in result.stdout
    assert "[pharmacy]" in result.stdout and "Pharmacie du Centre" in result.stdout
