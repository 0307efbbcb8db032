"""The headless path for the EHPAD's software (DUI): ``ordo prescribe`` with the real card,
``ordo drafts import``, ``ordo practitioners``; and the prescribing service's own rules
(IDs across restarts, whose draft, cancellation after dispensation)."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from click.testing import CliRunner

from appliance.cli import main
from appliance.domain.prescription import MedicationLine, NonSubstitution, State
from appliance.domain.prescription_id import id_timestamp_ms
from appliance.services import prescribing
from appliance.store import audit
from tests.integration.test_kiosk import (
    AM,
    demo_residents,
    kiosk_bdpm,
    kiosk_env,
    set_am,
    sign_with_card,
)

pytestmark = pytest.mark.integration
SHARED_FIXTURES = (kiosk_bdpm, kiosk_env)  # from test_kiosk, for pytest to find them

DOCTOR = "899700000013"
RESIDENT_NIR = demo_residents()[0].ins.value

GOOD = {
    "prescriber": {"idNat_PS": DOCTOR},
    "resident": {"nir": RESIDENT_NIR},
    "renewals": 2,
    "lines": [
        {"type": "medication", "cip13": "3400935955838",
         "posology": {"kind": "structured", "dose": "1", "unit": "comprimé",
                      "moments": ["matin", "soir"], "duration": {"value": 7, "unit": "jour"}},
         "non_substitution": "MTE"},
        {"type": "medication", "cis": "64755969", "ald": True,
         "posology": {"kind": "text", "text": "1 sachet le midi"}, "quantity": "3"},
        {"type": "device", "label": "Pansements hydrocolloïdes 10x10", "quantity": "10"},
        {"type": "act", "text": "Kinésithérapie : 10 séances"},
    ],
}


def ordo(env, *args, stdin: str | None = None):
    toml = env.data_dir / "ordo.toml"
    return CliRunner().invoke(main, ["--config", str(toml), "--data-dir", str(env.data_dir),
                                     *args], input=stdin, catch_exceptions=False)


def write(env, name: str, data) -> str:
    path = env.data_dir / name
    path.write_text(json.dumps(data, ensure_ascii=False), "utf-8")
    return str(path)


def test_prescribe_a_good_draft_signs_stores_and_queues(kiosk_env):
    set_am(kiosk_env)
    kiosk_env.vcards.insert("physician")
    result = ordo(kiosk_env, "prescribe", write(kiosk_env, "good.json", GOOD), "--pin-stdin",
                  "--json", "--print-now", stdin="1234\n")
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["ok"] and out["state"] == "signed" and out["lines"] == 4 and out["printed"]
    pid = out["prescription_id"]
    assert out["formatted_id"].replace(" ", "") == pid
    p = kiosk_env.uow.prescriptions.get(pid)
    assert p.state is State.SIGNED and p.renewals == 2 and p.prescriber.am == AM
    first = p.lines[0]
    assert isinstance(first, MedicationLine) and first.cis == "60234100"
    assert first.label == "DOLIPRANE 1000 mg, comprimé"
    assert first.non_substitution is NonSubstitution.MTE and p.lines[1].ald
    assert kiosk_env.store.query("SELECT kind, status FROM outbox") == [
        {"kind": "create", "status": "pending"}]
    assert [j["status"] for j in kiosk_env.jobs()] == ["done"]
    printed = kiosk_env.emulator.wait_for_jobs(1)[0]
    assert any("Non substituable (MTE)" in line for line in printed.text)
    assert any("renouveler 2 fois" in line for line in printed.text)
    actions = [e.action for e in audit.entries(kiosk_env.store)]
    assert actions.index("auth.login") < actions.index("prescription.signed")
    assert actions[-2:] == ["auth.session_locked", "print.printed"]


def test_prescribe_a_bad_draft_lists_every_error_and_never_touches_the_card(kiosk_env):
    set_am(kiosk_env)
    bad = {
        "prescriber": {"idNat_PS": DOCTOR},
        "resident": {"nom": "INCONNU", "prenoms": "Personne", "date_naissance": "1930-01-01"},
        "colour": "blue",
        "lines": [
            {"type": "medication", "cip13": "3400930000000",
             "posology": {"kind": "structured", "dose": "1", "unit": "comprimé",
                          "times_per_day": 30}},
            {"type": "medication", "cis": "64755969", "posology": {"kind": "text", "text": ""},
             "non_substitution": "XYZ"},
            {"type": "surgery"},
        ],
    }
    result = ordo(kiosk_env, "prescribe", write(kiosk_env, "bad.json", bad), "--pin-stdin",
                  "--json", stdin="1234\n")
    assert result.exit_code == 1
    out = json.loads(result.stdout)
    paths = {e["path"] for e in out["errors"]}
    assert {"$.colour", "$.resident", "$.lines[0].cip13", "$.lines[0].posology.times_per_day",
            "$.lines[1].posology.text", "$.lines[1].non_substitution",
            "$.lines[2].type"} <= paths
    assert not [e for e in audit.entries(kiosk_env.store) if e.action.startswith("auth.")]
    assert kiosk_env.store.query("SELECT count(*) AS n FROM prescriptions")[0]["n"] == 0

    result = ordo(kiosk_env, "prescribe", write(kiosk_env, "broken.json", {}), "--pin-stdin",
                  stdin="1234\n")
    assert result.exit_code == 1 and "$.lines" in result.stderr
    (kiosk_env.data_dir / "notjson.json").write_text("{ oops", "utf-8")
    result = ordo(kiosk_env, "prescribe", str(kiosk_env.data_dir / "notjson.json"),
                  "--pin-stdin", "--json", stdin="1234\n")
    assert result.exit_code == 1 and "invalid JSON" in result.stdout


def test_prescribe_refuses_a_wrong_pin_a_nurse_and_another_prescriber(kiosk_env):
    set_am(kiosk_env)
    kiosk_env.vcards.insert("physician")
    draft = write(kiosk_env, "good.json", GOOD)
    result = ordo(kiosk_env, "prescribe", draft, "--pin-stdin", "--json", stdin="4321\n")
    assert result.exit_code == 3
    out = json.loads(result.stdout)
    assert out["reason"] == "wrong_pin" and out["tries_left"] == 2

    other = {**GOOD, "prescriber": {"idNat_PS": "8" + "99700000021"}}
    result = ordo(kiosk_env, "prescribe", write(kiosk_env, "other.json", other), "--pin-stdin",
                  "--json", stdin="1234\n")
    assert result.exit_code == 1
    assert json.loads(result.stdout)["errors"][0]["path"] == "$.prescriber.idNat_PS"

    kiosk_env.vcards.remove()
    kiosk_env.vcards.insert("nurse")
    anonymous = write(kiosk_env, "anonymous.json",
                      {k: v for k, v in GOOD.items() if k != "prescriber"})
    result = ordo(kiosk_env, "prescribe", anonymous, "--pin-stdin", "--json", stdin="1234\n")
    assert result.exit_code == 3 and json.loads(result.stdout)["reason"] == "forbidden"
    assert kiosk_env.store.query("SELECT count(*) AS n FROM prescriptions")[0]["n"] == 0


def test_drafts_import_all_or_nothing_then_practitioners(kiosk_env):
    second = {**GOOD, "resident": {"nom": "Martin", "prenoms": "jean",
                                   "date_naissance": "1931-02-17"}}
    result = ordo(kiosk_env, "drafts", "import", write(kiosk_env, "d.json", [GOOD, second]),
                  "--json")
    assert result.exit_code == 1                                # the prescriber is unknown
    assert json.loads(result.stdout)["errors"][0]["path"] == "$[0].prescriber.idNat_PS"

    result = ordo(kiosk_env, "practitioners", "add", DOCTOR, "--nom", "Duval", "--prenom",
                  "Claire")
    assert result.exit_code == 0, result.output
    result = ordo(kiosk_env, "practitioners", "set-am", DOCTOR, "12345")
    assert result.exit_code != 0 and "9 digits" in result.output
    result = ordo(kiosk_env, "practitioners", "set-am", DOCTOR, AM)
    assert result.exit_code == 0 and AM in result.output

    broken = {**second, "lines": [{"type": "act", "text": "ECG", "ald": "yes"}]}
    result = ordo(kiosk_env, "drafts", "import",
                  write(kiosk_env, "d2.json", {"drafts": [GOOD, broken]}), "--json")
    assert result.exit_code == 1
    assert [e["path"] for e in json.loads(result.stdout)["errors"]] == ["$.drafts[1].lines[0].ald"]
    assert kiosk_env.store.query("SELECT count(*) AS n FROM prescriptions")[0]["n"] == 0

    result = ordo(kiosk_env, "drafts", "import", write(kiosk_env, "d3.json", [GOOD, second]),
                  "--json")
    assert result.exit_code == 0, result.output
    made = json.loads(result.stdout)["drafts"]
    assert [d["lines"] for d in made] == [4, 4]
    drafts = prescribing.drafts_of(kiosk_env.uow, DOCTOR)
    assert {d.resident.birth_name for d in drafts} == {"LEFEBVRE", "MARTIN"}
    assert all(d.state is State.DRAFT for d in drafts)
    listing = json.loads(ordo(kiosk_env, "practitioners", "list", "--json").stdout)
    assert listing == [{"id_nat_ps": DOCTOR, "last_name": "DUVAL", "first_name": "Claire",
                        "profession": "Médecin", "role": "prescriber", "am": AM}]


def test_ids_stay_monotonic_across_restarts_with_the_clock_set_back(kiosk_env):
    uow = kiosk_env.uow
    late = prescribing.IdAllocator(clock_ms=lambda: 1_900_000_000_000)
    with uow:
        first = late.new(uow)
        uow.commit()
    restarted = prescribing.IdAllocator(clock_ms=lambda: 1_700_000_000_000)  # clock set back
    with uow:
        second = restarted.new(uow)
        uow.commit()
    assert id_timestamp_ms(second) == id_timestamp_ms(first) + 1
    assert second > first


class OtherPhysician:
    """Another physician's open session, as the service sees it (no second valid test card)."""

    class practitioner:
        id_nat_ps = "8" + "10001234567"

    role = prescribing.Role.PRESCRIBER
    locked = False
    can_sign = True

    def touch(self) -> None:
        pass


def test_cancel_is_refused_after_a_dispensation_and_to_another_physician(kiosk_env,
                                                                        card_trust):
    from appliance.errors import StateError

    set_am(kiosk_env)
    kiosk_env.vcards.insert("physician")
    signed = sign_with_card(kiosk_env, card_trust)
    with pytest.raises(prescribing.Forbidden, match="Seul le prescripteur"):
        prescribing.cancel(kiosk_env.uow, OtherPhysician(), signed.id, "erreur")
    with kiosk_env.store.write() as db:
        db.execute(
            "INSERT INTO dispensations (registry_id, prescription_id, line_no, complete,"
            " product_label, handed_over_at, received_at, resource) VALUES"
            " ('MD9', ?, 1, 0, 'x', ?, ?, '{}')",
            [signed.id, datetime.now(UTC).isoformat(), datetime.now(UTC).isoformat()])
    session = kiosk_env.app.login("1234", slot=0)
    try:
        with pytest.raises(StateError, match="délivrée"):
            prescribing.cancel(kiosk_env.uow, session, signed.id, "erreur")
        with pytest.raises(StateError):                  # a signed order is not a draft
            prescribing.discard_draft(kiosk_env.uow, session, signed.id)
    finally:
        session.logout()
    assert kiosk_env.uow.prescriptions.get(signed.id).state is State.SIGNED
    assert kiosk_env.store.query("SELECT kind FROM outbox") == [{"kind": "create"}]


def test_reprint_authenticates_the_card_holder_and_audits_them(kiosk_env):
    set_am(kiosk_env)
    kiosk_env.vcards.insert("physician")
    signed = json.loads(ordo(kiosk_env, "prescribe", write(kiosk_env, "good.json", GOOD),
                             "--pin-stdin", "--json", stdin="1234\n").stdout)
    pid = signed["prescription_id"]
    kiosk_env.vcards.remove()
    kiosk_env.vcards.insert("nurse")
    wrong = ordo(kiosk_env, "reprint", pid, "--pin-stdin", stdin="0000\n")
    assert wrong.exit_code == 3 and "2 essai(s) restant(s)" in wrong.output
    result = ordo(kiosk_env, "reprint", pid, "--pin-stdin", "--json", stdin="1234\n")
    assert result.exit_code == 0, result.output
    job = json.loads(result.stdout)
    from drivers.card.pki import PROFILES

    nurse = PROFILES["nurse"].id_nat_ps
    assert (job["kind"], job["status"], job["requested_by"]) == ("duplicate", "queued", nurse)
    entries = [(e.action, e.actor) for e in audit.entries(kiosk_env.store)]
    assert ("print.reprint_requested", nurse) in entries
    assert ("auth.login", nurse) in entries
    kiosk_env.vcards.remove()
    result = ordo(kiosk_env, "reprint", pid, "--pin-stdin", stdin="1234\n")
    assert result.exit_code == 3 and "carte" in result.output
