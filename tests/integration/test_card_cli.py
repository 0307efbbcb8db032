"""``ordo pki init`` and ``ordo card insert|status|info|login|remove`` with the real pcscd."""

import json
import stat

import pytest
from click.testing import CliRunner

from appliance.cli import main
from appliance.store import audit, open_store
from drivers.card import virtual
from drivers.card.pki import PkiPaths

pytestmark = pytest.mark.integration


def ordo(data_dir, *args, env=None, stdin=None):
    return CliRunner().invoke(main, ["--data-dir", str(data_dir), *args], env=env,
                              input=stdin, catch_exceptions=False)


def test_pki_init_writes_a_test_pki_and_the_settings_to_use(tmp_path):
    target = tmp_path / "pki"
    result = ordo(tmp_path, "pki", "init", str(target))
    assert result.exit_code == 0, result.output
    assert "ORDO_SECURITY_TRUST_ROOTS=" in result.output
    assert "ORDO_SECURITY_CRLS=" in result.output
    for name in ("ca/root.pem", "ca/professionnels.pem", "crl/professionnels.crl",
                 "establishment/server.pem", "establishment/client.pem",
                 "cards/physician/auth.der", "cards/cpe/auth.der"):
        assert (target / name).is_file(), name
    assert not (target / "cards/cpe/sign.der").exists()
    assert stat.S_IMODE((target / "cards/physician/auth.key").stat().st_mode) == 0o600
    again = ordo(tmp_path, "pki", "init", str(target))
    assert again.exit_code == 4          # not a card problem: the PKI's own error
    assert again.stderr.splitlines()[-1] == (
        f"Erreur : une PKI de test existe déjà dans {target} (--force pour la remplacer)")
    assert (target / "ca/root.pem").is_file()           # left as it was
    shown = CliRunner().invoke(main, ["--data-dir", str(tmp_path), "--config",
                                      str(target / "trust.toml"), "config", "show", "--json"])
    security = json.loads(shown.stdout)["security"]
    assert security["trust_roots"] == [str(target / "ca" / "cps-trust.pem")]
    assert len(security["crls"]) == 2


def test_card_commands_end_to_end(pcscd, tmp_path):
    data = tmp_path / "data"
    try:
        result = ordo(data, "card", "insert", "--profile", "physician")
        assert result.exit_code == 0, result.output
        assert "PKI de test créée" in result.output          # none existed in the data dir
        assert "insérée" in result.output
        env = PkiPaths(data / "pki").environment()

        status = json.loads(ordo(data, "card", "status", "--json").stdout)["readers"]
        assert status[0]["card"] and status[0]["virtual_profile"] == "physician"
        assert status[0]["atr"].startswith("3B AC 00 40")
        assert not status[1]["card"]

        info = json.loads(ordo(data, "card", "info", "--json", env=env).stdout)
        assert (info["pin_tries_left"], info["role"], info["certificate"]) == (
            3, "prescriber", "valid")
        assert info["rpps"] == info["id_nat_ps"][1:] and info["profession"] == "Médecin"

        wrong = ordo(data, "card", "login", "--pin-stdin", "--json", env=env, stdin="0000\n")
        assert wrong.exit_code == 3
        assert json.loads(wrong.stdout) | {"message": ""} == {
            "ok": False, "reason": "wrong_pin", "tries_left": 2, "message": ""}
        good = ordo(data, "card", "login", "--pin-stdin", env=env, stdin="1234\n")
        assert good.exit_code == 0 and "rôle prescriber, peut signer" in good.output
        assert json.loads(ordo(data, "card", "info", "--json", env=env).stdout)[
            "pin_tries_left"] == 3

        store = open_store(data / "ordo.sqlite")
        try:
            assert [e.action for e in audit.entries(store)] == [
                "auth.wrong_pin", "auth.login", "auth.session_locked"]
        finally:
            store.close()

        busy = ordo(data, "card", "insert", "--profile", "nurse")
        assert busy.exit_code == 3 and "already holds" in busy.output

        removed = ordo(data, "card", "remove")
        assert removed.exit_code == 0 and "retirée" in removed.output
        assert not json.loads(ordo(data, "card", "status", "--json").stdout)[
            "readers"][0]["card"]
        assert "Aucune carte virtuelle" in ordo(data, "card", "remove").output
    finally:
        virtual.remove(data, 0)


def test_login_refusals_exit_non_zero_with_the_reason(vcards, card_data_dir, card_pki):
    vcards.insert("revoked")
    env = card_pki.environment()
    refused = ordo(card_data_dir, "card", "login", "--pin-stdin", env=env, stdin="1234\n")
    assert refused.exit_code == 3 and "Erreur : " in refused.output
    assert "révoqué" in refused.output
    untrusting = ordo(card_data_dir, "card", "login", "--pin-stdin", stdin="1234\n",
                      env={"ORDO_SECURITY_TRUST_ROOTS": ""})
    assert untrusting.exit_code == 3
    assert "Aucune autorité de confiance configurée" in untrusting.output
    info = ordo(card_data_dir, "card", "info", env=env)
    assert info.exit_code == 0 and "révoqué" in info.output and "Essais PIN  : 3" in info.output
