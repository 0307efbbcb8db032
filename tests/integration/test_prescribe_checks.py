"""The prescribing checks on the headless path, through the CLI with the real pieces (pcscd
and a virtual CPS card, the printer emulator, a SQLite store, a BDPM referential):
``ordo prescribe`` refuses a draft with alerts (exit 5) before the card is touched, signs
it once every ``important`` alert is acknowledged and every ``bloquant`` one overridden
with a reason, and writes the decision to the audit chain (keys only) and the alerts with
the prescription; ``ordo drafts import`` keeps the alerts for the kiosk's review; the
resident's allergies and current treatment feed the checks."""

from __future__ import annotations

import copy
import json

import pytest

from appliance.services import allergies
from appliance.services.checks.review import AUDIT_ACTION
from appliance.store import audit
from tests.integration.test_kiosk import demo_residents, kiosk_bdpm, kiosk_env, set_am
from tests.integration.test_prescribe import DOCTOR, GOOD, ordo, write

pytestmark = pytest.mark.integration
SHARED_FIXTURES = (kiosk_bdpm, kiosk_env)  # from test_kiosk, for pytest to find them

RESIDENT = demo_residents()[0]
DOLIPRANE_TABLET = "3400935955838"      # DOLIPRANE 1000 mg, comprimé (CIS 60234100)
DOLIPRANE_CAPSULE_CIS = "69309629"      # DOLIPRANE 1000 mg, gélule
REASON = "douleur cancéreuse, avis de l'équipe de soins palliatifs"


def _line(dose: str, moments: list[str], *, cip13: str | None = None, cis: str | None = None,
          unit: str = "comprimé") -> dict:
    code = {"cip13": cip13} if cip13 else {"cis": cis}
    return {"type": "medication", **code,
            "posology": {"kind": "structured", "dose": dose, "unit": unit, "moments": moments,
                         "duration": {"value": 5, "unit": "jour"}}}


# 2 g four times a day: 8 g of paracetamol, twice the adult maximum of its RCP (4 g).
OVERDOSE = {"prescriber": {"idNat_PS": DOCTOR}, "resident": {"nir": RESIDENT.ins.value},
            "lines": [_line("2", ["matin", "midi", "soir", "coucher"], cip13=DOLIPRANE_TABLET)]}


def _count(env, table: str) -> int:
    return env.store.query(f"SELECT count(*) AS n FROM {table}")[0]["n"]


def _prescribe(env, data, *options: str, name: str = "draft.json"):
    return ordo(env, "prescribe", write(env, name, data), "--pin-stdin", "--json", *options,
                stdin="1234\n")


def test_an_overdose_is_refused_before_the_card_then_signed_when_overridden(kiosk_env):
    set_am(kiosk_env)
    # No card in the reader: a refusal by the checks must come before the card is asked.
    refused = _prescribe(kiosk_env, OVERDOSE)
    assert refused.exit_code == 5, refused.output
    out = json.loads(refused.stdout)
    assert out["ok"] is False and out["reason"] == "alerts_refused"
    by_code = {a["code"]: a for a in out["alerts"]}
    dose = by_code["dose.max_daily"]
    assert dose["severity"] == "bloquant" and dose["status"] == "needs_override"
    assert dose["key"] == "dose.max_daily@1" and "RCP" in dose["source"]
    assert "Ligne 1" in dose["message"] and "8000" in dose["message"].replace(" ", "")
    assert any("dose.max_daily@1" in o for o in out["obstacles"])
    assert _count(kiosk_env, "prescriptions") == 0

    # Without --json: one French line per obstacle, same status.
    plain = ordo(kiosk_env, "prescribe", write(kiosk_env, "d.json", OVERDOSE), "--pin-stdin",
                 stdin="1234\n")
    assert plain.exit_code == 5 and "à lever avec un motif (dose.max_daily@1)" in plain.stderr
    assert plain.stderr.startswith("Erreur : signature refusée par les contrôles de prescription")
    assert "Traceback" not in plain.output

    # An override without a usable reason is bad input (exit 1), not a refusal.
    empty = _prescribe(kiosk_env, OVERDOSE, "--override", "dose.max_daily=  ")
    assert empty.exit_code == 1
    assert "motif de levée invalide pour override.dose.max_daily" in \
        json.loads(empty.stdout)["message"]
    malformed = _prescribe(kiosk_env, OVERDOSE, "--override", "dose.max_daily")
    assert malformed.exit_code == 2 and "CODE=MOTIF" in malformed.output

    kiosk_env.vcards.insert("physician")
    important = [a["key"] for a in out["alerts"] if a["severity"] == "important"]
    ack = ["--acknowledge", ",".join(important)] if important else []
    signed = _prescribe(kiosk_env, OVERDOSE, "--override", f"dose.max_daily@1={REASON}", *ack)
    assert signed.exit_code == 0, signed.output
    done = json.loads(signed.stdout)
    pid = done["prescription_id"]
    assert done["overridden"] == ["dose.max_daily@1"] and done["unmatched"] == []
    assert {a["key"]: a["status"] for a in done["alerts"]}["dose.max_daily@1"] == "overridden"

    kept = {a.code: a for a in kiosk_env.uow.views.prescription_alerts(pid)}
    assert kept["dose.max_daily"].status == "overridden"
    assert kept["dose.max_daily"].reason == " ".join(REASON.split())
    entry = [e for e in audit.entries(kiosk_env.store) if e.action == AUDIT_ACTION]
    assert len(entry) == 1 and entry[0].subject == pid and entry[0].actor == DOCTOR
    assert entry[0].details["overridden"] == ["dose.max_daily@1"]
    # The audit chain holds keys only: no reason, drug or resident.
    raw = json.dumps(entry[0].details, ensure_ascii=False)
    assert "palliatifs" not in raw and "DOLIPRANE" not in raw and RESIDENT.ins.value not in raw
    assert audit.verify(kiosk_env.store) > 0


def test_current_treatment_and_allergies_feed_the_checks(kiosk_env):
    set_am(kiosk_env)
    kiosk_env.vcards.insert("physician")
    first = _prescribe(kiosk_env, GOOD, name="good.json")       # DOLIPRANE 1000 mg tablets
    assert first.exit_code == 0, first.output
    assert json.loads(first.stdout)["alerts"] == []

    # The same substance in another specialty, beside the signed, running treatment.
    capsule = {"prescriber": {"idNat_PS": DOCTOR}, "resident": {"nir": RESIDENT.ins.value},
               "lines": [_line("1", ["midi"], cis=DOLIPRANE_CAPSULE_CIS, unit="gélule")]}
    refused = _prescribe(kiosk_env, capsule)
    assert refused.exit_code == 5, refused.output
    alert = {a["code"]: a for a in json.loads(refused.stdout)["alerts"]}["duplicate.current"]
    assert alert["severity"] == "important" and alert["status"] == "needs_acknowledgement"
    assert "PARAC" in alert["message"].upper()

    acknowledged = _prescribe(kiosk_env, capsule, "--acknowledge", "duplicate.current",
                              "--acknowledge", "nothing.such")
    assert acknowledged.exit_code == 0, acknowledged.output
    done = json.loads(acknowledged.stdout)
    assert done["acknowledged"] == ["duplicate.current@1"]
    assert done["unmatched"] == ["nothing.such"]
    entry = [e for e in audit.entries(kiosk_env.store) if e.action == AUDIT_ACTION][-1]
    assert entry.subject == done["prescription_id"]
    assert entry.details == {"acknowledged": ["duplicate.current@1"], "overridden": []}

    # An allergy recorded for the resident blocks any drug holding the substance.
    allergies.add_by_name(kiosk_env.uow, kiosk_env.app.drug_facts, ins=RESIDENT.ins.value,
                          text="paracétamol", source="famille", actor="test")
    again = copy.deepcopy(GOOD)
    blocked = _prescribe(kiosk_env, again)
    assert blocked.exit_code == 5
    found = {a["code"]: a for a in json.loads(blocked.stdout)["alerts"]}
    assert found["allergy.substance"]["severity"] == "bloquant"
    assert found["allergy.substance"]["overridable"] is True


def test_drafts_import_keeps_the_alerts_for_the_review(kiosk_env):
    set_am(kiosk_env)
    result = ordo(kiosk_env, "drafts", "import", write(kiosk_env, "drafts.json", [OVERDOSE, GOOD]),
                  "--json")
    assert result.exit_code == 0, result.output
    drafts = json.loads(result.stdout)["drafts"]
    assert [d["alerts"] != [] for d in drafts] == [True, False]
    kept = kiosk_env.uow.views.prescription_alerts(drafts[0]["prescription_id"])
    assert {a.code: a.status for a in kept}["dose.max_daily"] == "open"
    assert all(a.reason is None for a in kept)

    plain = ordo(kiosk_env, "drafts", "import", write(kiosk_env, "one.json", OVERDOSE))
    assert plain.exit_code == 0 and "alerte(s) à revoir" in plain.output
