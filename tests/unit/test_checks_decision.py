"""Signing after the checks: acknowledgements, overrides with a reason, refusals."""

from __future__ import annotations

import pytest

from appliance.errors import ValidationError
from appliance.services.checks import Alert, Severity, decide

HOSPITAL = Alert("condition.hospital_only", Severity.BLOQUANT, "Ligne 1 (XANAX 1 mg) : ...",
                 "BDPM", 0, overridable=False)
DOSE = Alert("dose.max_daily", Severity.BLOQUANT, "Ligne 2 (DOLIPRANE) : ...", "RCP", 1)
DOSE_3 = Alert("dose.max_daily", Severity.BLOQUANT, "Ligne 3 (DAFALGAN) : ...", "RCP", 2)
PIM = Alert("pim.laroche", Severity.IMPORTANT, "Ligne 2 (ATARAX) : ...", "Laroche", 1)
DUP = Alert("duplicate.substance", Severity.IMPORTANT, "Ligne 3 : ...", "BDPM", 2)
INFO = Alert("condition.secure_prescription", Severity.INFO, "Ligne 1 : ...", "BDPM", 0)


def test_no_alert_or_info_only_signs() -> None:
    assert decide([]).may_sign
    decision = decide([INFO])
    assert decision.may_sign and decision.audit_details() == {"acknowledged": [],
                                                              "overridden": []}


def test_important_alerts_need_an_acknowledgement_each() -> None:
    waiting = decide([PIM, DUP, INFO])
    assert not waiting.may_sign
    assert [a.key for a in waiting.needs_acknowledgement] == ["pim.laroche@2",
                                                             "duplicate.substance@3"]
    assert not decide([PIM, DUP], ["pim.laroche"]).may_sign
    done = decide([PIM, DUP], ["pim.laroche", "duplicate.substance@3"])
    assert done.may_sign and done.acknowledged == ("pim.laroche@2", "duplicate.substance@3")


def test_blocking_alerts_need_an_override_with_a_reason_not_an_acknowledgement() -> None:
    assert not decide([DOSE], ["dose.max_daily"]).may_sign
    by_key = decide([DOSE, DOSE_3], overrides={"dose.max_daily@2": "protocole douleur validé"})
    assert not by_key.may_sign and [a.key for a in by_key.needs_override] == ["dose.max_daily@3"]
    by_code = decide([DOSE, DOSE_3], overrides={"dose.max_daily": "erreur de saisie corrigée"})
    assert by_code.may_sign and by_code.overridden == ("dose.max_daily@2", "dose.max_daily@3")
    assert by_code.reasons == {"dose.max_daily@2": "erreur de saisie corrigée",
                               "dose.max_daily@3": "erreur de saisie corrigée"}


def test_an_override_also_acknowledges() -> None:
    decision = decide([PIM], overrides={"pim.laroche@2": "traitement ancien bien toléré"})
    assert decision.may_sign and decision.acknowledged == ("pim.laroche@2",)


def test_the_hospital_only_refusal_cannot_be_overridden() -> None:
    decision = decide([HOSPITAL, PIM], ["pim.laroche"],
                      {"condition.hospital_only": "je suis hospitalier"})
    assert not decision.may_sign and decision.refused == (HOSPITAL,)
    assert decision.problems() == [f"refusé (condition.hospital_only@1) : {HOSPITAL.message}"]


@pytest.mark.parametrize("reason", ["", "  ", "ok", "x" * 501, None, 42])
def test_an_override_needs_a_real_reason(reason) -> None:
    with pytest.raises(ValidationError, match=r"override\.dose\.max_daily@2"):
        decide([DOSE], overrides={"dose.max_daily@2": reason})


def test_the_audit_gets_alert_keys_only_and_unknown_names_are_reported() -> None:
    decision = decide([DOSE, PIM], ["pim.laroche", "pim.larche"],
                      {"dose.max_daily@2": "dose validée en réunion de concertation"})
    assert decision.may_sign
    assert decision.audit_details() == {"acknowledged": ["pim.laroche@2"],
                                        "overridden": ["dose.max_daily@2"]}
    assert "concertation" not in repr(decision.audit_details())
    assert decision.unknown == ("pim.larche",)
