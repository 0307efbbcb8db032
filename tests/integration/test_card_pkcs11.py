"""The CPS card through PKCS#11 on a real token: SoftHSM2 holding the test PKI's cards.

Login, the PIN flags, every refusal of the PC/SC path with the same French message, the
EC key, the watcher and a token taken away mid-session, all through ``drivers.card.pkcs11``
and the login recipe (``appliance.services.auth.login``); the CLI, the headless
prescription, the reprint and the kiosk through ``[card] backend = "pkcs11"``, i.e. the
adapters that the composition root (``appliance.bootstrap.card_backend``) builds.
"""

from __future__ import annotations

import json
import threading
import time

import pytest
from click.testing import CliRunner
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding

from appliance.cli import main
from appliance.domain.people import Practitioner, Role
from appliance.errors import CardRemoved, PkiError, ValidationError
from appliance.ports.card import CardEventKind, sha256_digest_info
from appliance.services.auth import REASONS, AuthRefused, SessionGuard, login, open_card
from appliance.store import audit
from drivers.card import softhsm as soft
from drivers.card.pkcs11 import Pkcs11Reader, Pkcs11Watcher
from drivers.card.pki import PROFILES, PkiPaths
from tests.integration.test_kiosk import kiosk_bdpm

pytestmark = pytest.mark.integration
SHARED_FIXTURES = (kiosk_bdpm,)  # from test_kiosk, for pytest to find it

LOCK_DEADLINE_S = 1.0


def _open(p11_module, label: str):
    """The token labelled ``label``, in the first slot that holds it."""
    return open_card(Pkcs11Reader(p11_module, label))


def _login(p11_module, label: str, trust, audit_log, pin: str = "1234"):
    """The login recipe of ``App.login`` on the token labelled ``label``."""
    return login(Pkcs11Reader(p11_module, label), pin, trust, audit=audit_log,
                 idle_timeout_s=300.0)


def _actions(store):
    return [(e.action, e.details.get("reason"), e.details.get("tries_left"))
            for e in audit.entries(store)]


def test_right_pin_opens_a_prescriber_session_that_signs(p11_module, card_trust, card_audit,
                                                         store, card_pki):
    session = _login(p11_module, "physician", card_trust, card_audit)
    try:
        who = session.practitioner
        assert session.role is Role.PRESCRIBER and session.can_sign
        assert (who.given_name, who.family_name, who.id_nat_ps) == (
            "Claire", "DUVAL", PROFILES["physician"].id_nat_ps)
        assert session.reader.startswith("SoftHSM slot ID")
        data = b'{"id":"ORD-TEST","lines":[]}'
        signature = session.sign(data)
        assert session.certificate_der == (card_pki.card_dir("physician") /
                                           "sign.der").read_bytes()
        x509.load_der_x509_certificate(session.certificate_der).public_key().verify(
            signature, data, padding.PKCS1v15(), hashes.SHA256())
        assert session.card.pin_status().verified
    finally:
        session.logout()
    assert [e.action for e in audit.entries(store)] == ["auth.login",
                                                            "auth.session_locked"]
    card = _open(p11_module, "physician")
    try:     # the login did not outlive the session: the keys are out of reach again
        assert not card.pin_status().verified
        with pytest.raises(Exception, match="PIN must be verified"):
            card.sign(sha256_digest_info(b"x"))
        certs = card.read_certificates()
        assert certs.authentication == (card_pki.card_dir("physician") /
                                        "auth.der").read_bytes()
    finally:
        card.close()


def test_wrong_pin_reports_the_tries_the_token_tells(p11_module, softhsm, card_trust,
                                                     card_audit, store):
    label = "pin-tries"
    with pytest.raises(AuthRefused) as exc:        # SoftHSM2 says only "count low"
        _login(p11_module, label, card_trust, card_audit, pin="0000")
    assert (exc.value.reason, exc.value.tries_left) == ("wrong_pin", None)
    assert str(exc.value) == "Code PIN incorrect."
    card = _open(p11_module, label)
    try:
        assert soft.CKF_USER_PIN_COUNT_LOW & card.token_flags()
        assert card.pin_status().tries_left is None
    finally:
        card.close()

    soft.set_token_flags(softhsm, label, soft.CKF_USER_PIN_FINAL_TRY)   # as a card reports it
    card = _open(p11_module, label)
    try:
        assert card.pin_status().tries_left == 1
    finally:
        card.close()
    with pytest.raises(AuthRefused) as exc:
        _login(p11_module, label, card_trust, card_audit, pin="9999")
    assert (exc.value.reason, exc.value.tries_left) == ("wrong_pin", 1)
    assert str(exc.value) == "Code PIN incorrect : 1 essai(s) restant(s)."

    soft.set_token_flags(softhsm, label, soft.CKF_USER_PIN_LOCKED)
    with pytest.raises(AuthRefused) as exc:     # the right PIN is never sent to it
        _login(p11_module, label, card_trust, card_audit, pin="1234")
    assert exc.value.reason == "blocked" and str(exc.value) == REASONS["blocked"]
    assert _actions(store) == [("auth.wrong_pin", None, None), ("auth.wrong_pin", None, 1),
                                    ("auth.card_blocked", "blocked", None)]
    assert "0000" not in str([e.details for e in audit.entries(store)])

    soft.set_token_flags(softhsm, label, clear_flags=soft.CKF_USER_PIN_LOCKED
                         | soft.CKF_USER_PIN_FINAL_TRY)
    session = _login(p11_module, label, card_trust, card_audit)   # the right PIN clears it
    try:
        assert not soft.CKF_USER_PIN_COUNT_LOW & session.card.token_flags()
    finally:
        session.logout()


def test_locked_token_is_refused_without_a_login(p11_module, softhsm, card_trust, card_audit,
                                                 store):
    with pytest.raises(AuthRefused) as exc:
        _login(p11_module, "blocked", card_trust, card_audit)
    assert exc.value.reason == "blocked"
    card = _open(p11_module, "blocked")
    try:
        flags = card.token_flags()
        assert card.pin_status().blocked
        assert flags & soft.CKF_USER_PIN_LOCKED and not flags & soft.CKF_USER_PIN_COUNT_LOW
    finally:
        card.close()
    assert _actions(store) == [("auth.card_blocked", "blocked", None)]


def _pcsc_refusal(vcards, profile, trust, audit_log):
    from drivers.card.pcsc import PcscReader

    vcards.insert(profile)
    try:
        session = login(PcscReader(), "1234", trust, audit=audit_log, idle_timeout_s=300.0,
                        slot=0)
    except AuthRefused as exc:
        return exc
    try:
        session.sign(b"prescription")
    except AuthRefused as exc:
        return exc
    finally:
        session.logout()
    raise AssertionError(f"{profile}: no refusal on the PC/SC path")


@pytest.mark.parametrize(("profile", "reason"), [
    ("untrusted", "untrusted"), ("expired", "expired"), ("revoked", "revoked"),
    ("blocked", "blocked"), ("nurse", "forbidden")])
def test_every_refusal_has_the_same_french_message_as_on_pcsc(
        p11_module, vcards, card_trust, card_audit, store, profile, reason):
    try:
        session = _login(p11_module, profile, card_trust, card_audit)
    except AuthRefused as exc:
        pkcs11_refusal = exc
    else:
        try:
            with pytest.raises(AuthRefused) as signing:    # a nurse cannot sign
                session.sign(b"prescription")
            pkcs11_refusal = signing.value
        finally:
            session.logout()
    pcsc_refusal = _pcsc_refusal(vcards, profile, card_trust, card_audit)
    assert pkcs11_refusal.reason == pcsc_refusal.reason == reason
    assert str(pkcs11_refusal) == str(pcsc_refusal)
    assert str(pkcs11_refusal).startswith(REASONS[reason].split("{")[0])
    entries = [(e.action, e.details.get("reason")) for e in audit.entries(store)]
    half = len(entries) // 2        # the same audit entries on both paths
    assert entries[:half] == entries[half:]


def test_an_ec_key_signs_with_ecdsa(p11_module, softhsm):
    cert = x509.load_der_x509_certificate((softhsm.directory / "ec" / "sign.der").read_bytes())
    card = _open(p11_module, "ec")
    try:
        card.verify_pin("1234")
        data = b"ordonnance"
        signature = card.sign(sha256_digest_info(data))
        public = cert.public_key()
        assert isinstance(public, ec.EllipticCurvePublicKey)
        public.verify(signature, data, ec.ECDSA(hashes.SHA256()))
        with pytest.raises(Exception, match="SHA-256 DigestInfo"):
            card.sign(b"\x00" * 51)
    finally:
        card.close()


class Events:
    def __init__(self):
        self.items, self.changed = [], threading.Condition()

    def __call__(self, event):
        with self.changed:
            self.items.append(event)
            self.changed.notify_all()

    def wait_for(self, kind, reader=None, timeout_s=5.0):
        deadline = time.monotonic() + timeout_s
        with self.changed:
            while True:
                for event in self.items:
                    if event.kind is kind and reader in (None, event.reader):
                        return event
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"no {kind} in {[e.kind for e in self.items]}")
                self.changed.wait(left)


def test_token_taken_away_locks_the_session_within_one_second(
        p11_module, softhsm, card_trust, card_audit, store):
    events = Events()
    watcher = Pkcs11Watcher(p11_module, "pull-watch")
    watcher.subscribe(events)
    watcher.start()
    try:
        inserted = events.wait_for(CardEventKind.INSERTED)
        assert inserted.initial and watcher.service_up
        assert list(watcher.cards()) == [inserted.reader]
        # SoftHSM2 answers C_WaitForSlotEvent(CKF_DONT_BLOCK) with CKR_NO_EVENT even when
        # a token goes away: the slot poll is what sees it.
        session = _login(p11_module, "pull-watch", card_trust, card_audit)
        assert session.reader == inserted.reader
        locked = threading.Event()
        session.on_lock(lambda s: locked.set())
        watcher.subscribe(SessionGuard(session))
        removed_at = time.monotonic()
        soft.remove_token(softhsm, "pull-watch")
        assert locked.wait(5)
        latency = session.locked_at - removed_at
        print(f"\ntoken taken away -> session locked: {latency * 1000:.0f} ms")
        assert session.lock_reason == "card_removed" and latency <= LOCK_DEADLINE_S
        assert session.wait_locked(5)
        events.wait_for(CardEventKind.REMOVED, inserted.reader)
        assert watcher.cards() == {}
        with pytest.raises(AuthRefused) as exc:
            session.sign(b"x")
        assert exc.value.reason == "locked"
    finally:
        watcher.stop()
    assert not watcher.running
    last = audit.entries(store)[-1]
    assert (last.action, last.details) == ("auth.session_locked", {"reason": "card_removed"})


def test_a_handle_that_turns_invalid_locks_the_session(p11_module, softhsm, card_trust,
                                                       card_audit):
    session = _login(p11_module, "pull-sign", card_trust, card_audit)
    session.sign(b"before")
    soft.remove_token(softhsm, "pull-sign")          # no watcher: the signature finds out
    with pytest.raises(AuthRefused) as exc:
        session.sign(b"after")
    assert exc.value.reason == "locked"
    assert session.locked and session.lock_reason == "card_removed"
    with pytest.raises(CardRemoved):
        session.card.pin_status()


# -- the commands and the kiosk, with [card] backend = "pkcs11" ---------------------------------
def _settings_toml(data_dir, card_pki, printer_uri: str, registry_url: str, label: str):
    from appliance.config import write_config

    return write_config(data_dir / "ordo.toml", {
        "establishment": {"name": "EHPAD Test", "finess": "750000001"},
        "printer": {"uri": printer_uri},
        "registry": {"url": registry_url},
        "security": {"trust_roots": [str(p) for p in card_pki.trust_roots],
                     "crls": [str(p) for p in card_pki.crls]},
        "card": {"backend": "pkcs11", "pkcs11_module": soft.softhsm_module(),
                 "token_label": label},
    })


def _ordo(toml, data_dir, *args, stdin=None, env=None):
    return CliRunner().invoke(main, ["--config", str(toml), "--data-dir", str(data_dir), *args],
                              input=stdin, env=env, catch_exceptions=False)


def _root(toml, data_dir):
    """The composition root of these settings, with the demo residents and the physician
    (N° AM on record) in its database."""
    from appliance.bootstrap import bootstrap
    from appliance.config import load_settings
    from appliance.services import prescribing
    from appliance.tui.demo_data import demo_residents
    from tests.integration.test_kiosk import AM

    app = bootstrap(load_settings(config_file=toml, data_dir=data_dir, environ={}))
    with app.uow:
        app.uow.residents.upsert(demo_residents())
        app.uow.commit()
    p = PROFILES["physician"]
    prescribing.add_practitioner(app.uow, Practitioner(
        id_nat_ps=p.id_nat_ps, last_name=p.family_name, first_name=p.given_name,
        profession=p.profession, role=Role.PRESCRIBER, am=AM), actor="test")
    return app


def _audit_entries(data_dir) -> list:
    """The audit chain of ``data_dir``'s database (verified)."""
    from appliance.store import open_store

    db = open_store(data_dir / "ordo.sqlite")
    try:
        assert audit.verify(db) == len(audit.entries(db))
        return audit.entries(db)
    finally:
        db.close()


def _audit_actions(data_dir) -> list[str]:
    return [e.action for e in _audit_entries(data_dir)]


def test_pki_init_softhsm_makes_a_token_per_card_and_refuses_to_overwrite(tmp_path):
    import os
    import shutil
    import subprocess

    if shutil.which("softhsm2-util") is None or soft.softhsm_module() is None:
        pytest.skip("SoftHSM2 is not installed (apt-get install softhsm2)")
    target = tmp_path / "pki"
    made = CliRunner().invoke(main, ["--data-dir", str(tmp_path), "pki", "init", str(target),
                                     "--softhsm"])
    assert made.exit_code == 0, made.output
    conf = target / "softhsm" / "softhsm2.conf"
    assert f"export SOFTHSM2_CONF={conf}" in made.stdout
    assert "export ORDO_CARD_BACKEND=pkcs11" in made.stdout
    slots = subprocess.run(["softhsm2-util", "--show-slots"], capture_output=True, text=True,
                           check=True, env={**os.environ, "SOFTHSM2_CONF": str(conf)}).stdout
    labels = {line.split(":", 1)[1].strip() for line in slots.splitlines()
              if line.strip().startswith("Label:")}
    assert set(PROFILES) <= labels

    again = CliRunner().invoke(main, ["--data-dir", str(tmp_path), "pki", "init", str(target)])
    assert again.exit_code == 4, again.output      # the PKI's own error, not a card's (3)
    assert again.stderr.splitlines()[-1] == (
        f"Erreur : une PKI de test existe déjà dans {target} (--force pour la remplacer)")
    with pytest.raises(PkiError, match="des jetons SoftHSM2 existent déjà"):
        soft.provision(PkiPaths(target), target / "softhsm")
    with pytest.raises(ValidationError, match="profil de carte inconnu : surgeon"):
        soft.provision(PkiPaths(target), tmp_path / "other", tokens={"x": "surgeon"})
    # --softhsm on an existing PKI keeps it and makes its tokens again
    root = (target / "ca" / "root.pem").read_bytes()
    remade = CliRunner().invoke(main, ["--data-dir", str(tmp_path), "pki", "init", str(target),
                                       "--softhsm"])
    assert remade.exit_code == 0, remade.output
    assert (target / "ca" / "root.pem").read_bytes() == root
    assert "PKI de test créée" not in remade.stdout and "Jetons SoftHSM2 créés" in remade.stdout


def test_card_info_and_login_commands_through_pkcs11(p11_module, card_data_dir, card_pki):
    toml = _settings_toml(card_data_dir, card_pki, "tcp://127.0.0.1:9", "http://127.0.0.1:9/f",
                          "cli")
    info = json.loads(_ordo(toml, card_data_dir, "card", "info", "--json").stdout)
    assert (info["role"], info["certificate"], info["id_nat_ps"]) == (
        "prescriber", "valid", PROFILES["physician"].id_nat_ps)
    assert info["pin_tries_left"] is None and not info["pin_blocked"]
    text = _ordo(toml, card_data_dir, "card", "info")
    assert "Essais PIN  : non indiqués par la carte" in text.output
    wrong = _ordo(toml, card_data_dir, "card", "login", "--pin-stdin", "--json", stdin="0000\n")
    assert wrong.exit_code == 3
    assert json.loads(wrong.stdout) == {"ok": False, "reason": "wrong_pin",
                                        "message": "Code PIN incorrect.", "tries_left": None}
    good = _ordo(toml, card_data_dir, "card", "login", "--pin-stdin", stdin="1234\n")
    assert good.exit_code == 0 and "rôle prescriber, peut signer" in good.output
    refused = _ordo(toml, card_data_dir, "card", "login", "--pin-stdin", stdin="1234\n",
                    env={"ORDO_CARD_TOKEN_LABEL": "revoked"})
    assert refused.exit_code == 3
    assert refused.stderr.splitlines()[-1] == f"Erreur : {REASONS['revoked']}"
    absent = _ordo(toml, card_data_dir, "card", "login", "--pin-stdin", stdin="1234\n",
                   env={"ORDO_CARD_TOKEN_LABEL": "no-such-card"})
    assert absent.exit_code == 3
    assert absent.stderr.splitlines()[-1] == (
        "Erreur : aucune carte dans les lecteurs : insérez la carte CPS")
    assert _audit_actions(card_data_dir) == [
        "auth.wrong_pin", "auth.login", "auth.session_locked", "auth.refused"]


def test_a_module_that_is_missing_or_does_not_load_is_one_french_line(card_data_dir, card_pki,
                                                                      tmp_path):
    toml = _settings_toml(card_data_dir, card_pki, "tcp://127.0.0.1:9", "http://127.0.0.1:9/f",
                          "physician")
    broken = tmp_path / "broken-pkcs11.so"
    broken.write_bytes(b"not an ELF file")
    for module, line in ((tmp_path / "missing.so", "module PKCS#11 introuvable : "),
                         (broken, "module PKCS#11 inutilisable : ")):
        for command in (["card", "info"], ["card", "login", "--pin-stdin"]):
            result = _ordo(toml, card_data_dir, *command, stdin="1234\n",
                           env={"ORDO_CARD_PKCS11_MODULE": str(module)})
            assert result.exit_code == 3, result.output
            assert result.stderr.splitlines()[-1].startswith(f"Erreur : {line}{module}")


def test_config_check_and_doctor_describe_the_module(p11_module, card_data_dir, card_pki,
                                                     tmp_path):
    toml = _settings_toml(card_data_dir, card_pki, "tcp://127.0.0.1:9", "http://127.0.0.1:9/f",
                          "physician")
    doctor = json.loads(_ordo(toml, card_data_dir, "doctor", "--json").stdout)
    checks = {c["name"]: c for c in doctor["checks"]}
    assert checks["pkcs11"]["status"] == "ok" and "SoftHSM" in checks["pkcs11"]["detail"]
    assert "library version 2." in checks["pkcs11"]["detail"]
    assert checks["card"]["status"] == "ok" and "'physician'" in checks["card"]["detail"]
    assert "CKF_TOKEN_INITIALIZED" in checks["card"]["detail"]
    assert "pcscd" not in checks
    blocked = json.loads(_ordo(toml, card_data_dir, "doctor", "--json",
                               env={"ORDO_CARD_TOKEN_LABEL": "blocked"}).stdout)
    card = {c["name"]: c for c in blocked["checks"]}["card"]
    assert card["status"] == "fail" and "CKF_USER_PIN_LOCKED" in card["detail"]

    broken = tmp_path / "broken-pkcs11.so"
    broken.write_bytes(b"not an ELF file")
    for module, expected in ((str(tmp_path / "missing.so"), "an existing PKCS#11 module"),
                             (str(broken), "a PKCS#11 module that loads")):
        result = _ordo(toml, card_data_dir, "config", "check", "--json",
                       env={"ORDO_CARD_PKCS11_MODULE": module})
        assert result.exit_code == 1
        findings = [f for f in json.loads(result.stdout)["findings"]
                    if f["key"] == "card.pkcs11_module"]
        assert findings and findings[0]["value"] == module
        assert expected in findings[0]["expected"]
    bad = _ordo(toml, card_data_dir, "config", "check", env={"ORDO_CARD_BACKEND": "smartcard"})
    assert bad.exit_code == 4
    assert bad.stderr.splitlines()[-1] == (
        "Erreur : réglage invalide card.backend = 'smartcard' : attendu pcsc ou pkcs11")


def test_prescribe_print_verify_sync_and_reprint_through_pkcs11(
        p11_module, card_data_dir, card_pki, emulators, kiosk_bdpm, registry_sim):
    from appliance.services.referential import import_bdpm
    from tests.integration.test_prescribe import GOOD

    emulator = emulators()
    toml = _settings_toml(card_data_dir, card_pki, emulator.uri, registry_sim.url, "physician")
    import_bdpm(card_data_dir, kiosk_bdpm, referential_date="2022-06-03")
    _root(toml, card_data_dir).close()
    draft = card_data_dir / "draft.json"
    draft.write_text(json.dumps(GOOD, ensure_ascii=False), "utf-8")

    result = _ordo(toml, card_data_dir, "prescribe", str(draft), "--pin-stdin", "--json",
                   "--print-now", stdin="1234\n")
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["ok"] and out["state"] == "signed" and out["printed"]

    printed = emulator.wait_for_jobs(1)[0]
    payload = printed.qr_texts[0]
    verified = _ordo(toml, card_data_dir, "qr", "verify", payload, "--json")
    assert verified.exit_code == 0, verified.output
    check = json.loads(verified.stdout)
    assert check["result"] == "VALID"
    assert check["fields"]["prescription_id"] == out["prescription_id"]

    synced = _ordo(toml, card_data_dir, "sync", "once", "--json")
    assert synced.exit_code == 0, synced.output
    assert json.loads(synced.stdout)["push"]["acknowledged"] == 1
    assert registry_sim.db.count() == 1

    reprinted = _ordo(toml, card_data_dir, "reprint", out["prescription_id"], "--pin-stdin",
                      "--json", stdin="1234\n", env={"ORDO_CARD_TOKEN_LABEL": "nurse"})
    assert reprinted.exit_code == 0, reprinted.output      # a nurse's card may reprint
    assert json.loads(reprinted.stdout)["status"] == "queued"
    wrong = _ordo(toml, card_data_dir, "reprint", out["prescription_id"], "--pin-stdin",
                  stdin="0000\n", env={"ORDO_CARD_TOKEN_LABEL": "nurse"})
    assert wrong.exit_code == 3
    assert wrong.stderr.splitlines()[-1] == "Erreur : Code PIN incorrect."

    anyone = card_data_dir / "draft-no-prescriber.json"
    anyone.write_text(json.dumps({k: v for k, v in GOOD.items() if k != "prescriber"}), "utf-8")
    refused = _ordo(toml, card_data_dir, "prescribe", str(anyone), "--pin-stdin", "--json",
                    stdin="1234\n", env={"ORDO_CARD_TOKEN_LABEL": "nurse"})
    assert refused.exit_code == 3, refused.output        # a nurse's card cannot sign
    assert json.loads(refused.stdout)["reason"] == "forbidden"

    actions = _audit_actions(card_data_dir)
    assert actions.index("auth.login") < actions.index("prescription.signed")
    assert "print.printed" in actions and "auth.wrong_pin" in actions


def test_the_kiosk_logs_in_and_locks_with_the_pkcs11_backend(p11_module, softhsm, card_data_dir,
                                                             card_pki, emulators, kiosk_bdpm):
    from appliance.commands.kiosk import build_context
    from appliance.services.referential import import_bdpm
    from appliance.tui.app import make_app
    from tests.integration.test_kiosk import log_in, run, screen_name, text_of, until

    toml = _settings_toml(card_data_dir, card_pki, emulators().uri, "http://127.0.0.1:9/f",
                          "pull-kiosk")
    import_bdpm(card_data_dir, kiosk_bdpm, referential_date="2022-06-03")
    app_root = _root(toml, card_data_dir)
    ctx, parts = build_context(app_root, console=False)
    app = make_app(ctx)

    async def scenario():
        async with app.run_test(size=(80, 24)) as pilot:
            await until(pilot, lambda: screen_name(app) == "PinScreen", what="the PIN screen")
            assert isinstance(ctx.watcher, Pkcs11Watcher)
            assert ctx.watcher.module is app_root.card_reader.module
            await pilot.press(*"0000", "enter")
            await until(pilot, lambda: "Code PIN incorrect." in text_of(app, "#message"))
            await log_in(pilot, app)
            assert "Claire DUVAL (médecin)" in text_of(app, "#title")
            removed_at = time.monotonic()
            soft.remove_token(softhsm, "pull-kiosk")
            await until(pilot, lambda: screen_name(app) == "LockScreen", timeout=5,
                        what="the lock screen")
            print(f"\nkiosk: token taken away -> lock screen in "
                  f"{(time.monotonic() - removed_at) * 1000:.0f} ms")
            await until(pilot, lambda: "Carte absente" in app.status_line,
                        what="the card event shown in the status line")

    try:
        run(scenario())
    finally:
        parts.close()
        app_root.close()
    entries = _audit_entries(card_data_dir)
    actions = [e.action for e in entries]
    assert actions[-1] == "auth.session_locked" and "auth.login" in actions
    assert entries[-1].details == {"reason": "card_removed"}
    assert "auth.wrong_pin" in actions
