"""Prescribing safety: the checks a draft goes through before it is signed.

``check(draft, resident, current_treatment, facts, today=...)`` returns ``Alert``s (code,
severity, French message naming the line, source); ``decide(alerts, acknowledgements,
overrides)`` says whether signing may proceed and what to audit. The drug facts come through
the ``DrugFacts`` port (``appliance.store.referential.facts.ReferentialFacts`` over the BDPM);
interactions through ``InteractionSource``, for which Ordo ships no data. The clinical tables
are CSV files in ``data/``, each row with its source. ``check_draft`` runs the checks as the
product does, the resident's allergies and current treatment read through the unit of work;
``record_review`` keeps the alerts a prescription is signed with and audits the decision.
"""

from appliance.errors import TableError
from appliance.services.checks.decision import Decision, decide
from appliance.services.checks.engine import check, form_family
from appliance.services.checks.model import (
    Alert,
    CurrentMedication,
    DraftLike,
    DrugFacts,
    Interaction,
    InteractionLevel,
    InteractionSource,
    ResidentProfile,
    Severity,
    sort_alerts,
)
from appliance.services.checks.review import (
    check_draft,
    current_medications,
    keep_draft_alerts,
    record_review,
    stored_alerts,
)
from appliance.services.checks.tables import Tables, load_tables

__all__ = [
    "Alert",
    "CurrentMedication",
    "Decision",
    "DraftLike",
    "DrugFacts",
    "Interaction",
    "InteractionLevel",
    "InteractionSource",
    "ResidentProfile",
    "Severity",
    "TableError",
    "Tables",
    "check",
    "check_draft",
    "current_medications",
    "decide",
    "form_family",
    "keep_draft_alerts",
    "load_tables",
    "record_review",
    "sort_alerts",
    "stored_alerts",
]
