"""May the physician sign? Alerts against acknowledgements and overrides.

- ``info``: shown, nothing to do;
- ``important``: each needs an acknowledgement (one key in the kiosk, ``--acknowledge`` on
  the command line);
- ``bloquant``: each needs an override with a typed reason; an alert that cannot be
  overridden (a hospital-only drug) always refuses the signature.

An acknowledgement or an override names an alert by its code (``dose.max_daily``: every
alert with that code) or by its key (``dose.max_daily@2``: the alert of line 2). An
override also acknowledges. What goes to the audit chain is ``Decision.audit_details()``:
the alert keys acknowledged and overridden, never a reason (typed text may hold health
data) nor a drug or a resident.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from appliance.domain import JsonObject
from appliance.errors import AlertsRefused, ValidationError
from appliance.services.checks.model import Alert, Severity

MAX_REASON = 500
MIN_REASON = 3


@dataclass(frozen=True)
class Decision:
    """The outcome: ``may_sign`` and why not, and what to record."""

    may_sign: bool
    refused: tuple[Alert, ...] = ()                 # bloquant and not overridable
    needs_override: tuple[Alert, ...] = ()          # bloquant without an override
    needs_acknowledgement: tuple[Alert, ...] = ()   # important without an acknowledgement
    acknowledged: tuple[str, ...] = ()              # keys of the alerts acknowledged
    overridden: tuple[str, ...] = ()                # keys of the alerts overridden
    reasons: dict[str, str] = field(default_factory=dict)  # key -> reason, for the record
    unknown: tuple[str, ...] = ()                   # given names that match no alert
    alerts: tuple[Alert, ...] = ()                  # every alert decided on, in order

    def status_of(self, alert: Alert) -> str:
        """What became of ``alert``: ``shown`` (info), ``acknowledged``, ``overridden``, or
        what it still needs: ``refused`` (cannot be overridden), ``needs_override``,
        ``needs_acknowledgement``."""
        if alert.severity is Severity.INFO:
            return "shown"
        if alert.key in self.overridden:
            return "overridden"
        if alert.key in self.acknowledged:
            return "acknowledged"
        if alert in self.refused:
            return "refused"
        return "needs_override" if alert.severity is Severity.BLOQUANT \
            else "needs_acknowledgement"

    def alert_dicts(self) -> list[JsonObject]:
        """Every alert as plain values, with its status (``status_of``)."""
        return [{**a.to_dict(), "status": self.status_of(a)} for a in self.alerts]

    def audit_details(self) -> JsonObject:
        """For the audit chain: alert keys only."""
        return {"acknowledged": list(self.acknowledged), "overridden": list(self.overridden)}

    def refusal(self) -> AlertsRefused:
        """The error that stops the signature (``may_sign`` is false), with the alerts."""
        return AlertsRefused(self.problems(), self.alert_dicts())

    def problems(self) -> list[str]:
        """What stands in the way, in French, one line per alert."""
        out = [f"refusé ({a.key}) : {a.message}" for a in self.refused]
        out += [f"à lever avec un motif ({a.key}) : {a.message}" for a in self.needs_override]
        out += [f"à acquitter ({a.key}) : {a.message}" for a in self.needs_acknowledgement]
        return out


def _names(alert: Alert) -> tuple[str, str]:
    return alert.code, alert.key


def _reason(name: str, reason: object) -> str:
    text = " ".join(reason.split()) if isinstance(reason, str) else ""
    if len(text) < MIN_REASON or len(text) > MAX_REASON:
        raise ValidationError(f"override.{name}", reason,
                              f"a reason of {MIN_REASON} to {MAX_REASON} characters",
                              message=f"motif de levée invalide pour override.{name} : "
                                      f"{MIN_REASON} à {MAX_REASON} caractères attendus")
    return text


def decide(alerts: Iterable[Alert], acknowledgements: Iterable[str] = (),
           overrides: Mapping[str, str] | None = None) -> Decision:
    """Whether signing may proceed given these acknowledgements and overrides.

    ``ValidationError`` when an override's reason is empty, too short or too long (it names
    the override).
    """
    alerts = list(alerts)
    acks = {a.strip() for a in acknowledgements if a and a.strip()}
    reasons_by_name = {name.strip(): _reason(name.strip(), reason)
                       for name, reason in (overrides or {}).items()}
    known = {n for a in alerts for n in _names(a)}
    refused, needs_override, needs_ack = [], [], []
    acknowledged, overridden, reasons = [], [], {}
    for alert in alerts:
        names = _names(alert)
        override = next((reasons_by_name[n] for n in reversed(names) if n in reasons_by_name),
                        None)
        if alert.severity is Severity.BLOQUANT:
            if not alert.overridable:
                refused.append(alert)
            elif override is None:
                needs_override.append(alert)
            else:
                overridden.append(alert.key)
                reasons[alert.key] = override
        elif alert.severity is Severity.IMPORTANT:
            if override is not None or any(n in acks for n in names):
                acknowledged.append(alert.key)
                if override is not None:
                    reasons[alert.key] = override
            else:
                needs_ack.append(alert)
    unknown = sorted((acks | set(reasons_by_name)) - known)
    return Decision(
        may_sign=not (refused or needs_override or needs_ack),
        refused=tuple(refused), needs_override=tuple(needs_override),
        needs_acknowledgement=tuple(needs_ack), acknowledged=tuple(acknowledged),
        overridden=tuple(overridden), reasons=reasons, unknown=tuple(unknown),
        alerts=tuple(alerts))
