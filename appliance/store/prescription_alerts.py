"""Owner of the ``prescription_alerts`` table (migration m008): the prescribing checks'
alerts kept with a prescription, in order, with what the physician did with each (read back
by ``appliance.store.views.StoreViews.prescription_alerts``)."""

from __future__ import annotations

from collections.abc import Iterable

from appliance.errors import ValidationError
from appliance.ports.uow import ALERT_STATUSES, StoredAlert
from appliance.store.db import Store

_INSERT = ("INSERT INTO prescription_alerts (prescription_id, position, code, severity, message,"
           " source, line, overridable, status, reason, checked_at)"
           " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")


class PrescriptionAlertsTable:
    def __init__(self, store: Store) -> None:
        self._store = store

    def replace(self, prescription_id: str, alerts: Iterable[StoredAlert]) -> None:
        self._store.require_write("prescription_alerts")
        self.delete(prescription_id)
        for position, a in enumerate(alerts):
            if a.status not in ALERT_STATUSES:
                raise ValidationError("alert.status", a.status, " / ".join(ALERT_STATUSES))
            if a.prescription_id != prescription_id:
                raise ValidationError("alert.prescription_id", a.prescription_id,
                                      prescription_id)
            self._store.execute(_INSERT, [prescription_id, position, a.code, a.severity,
                                          a.message, a.source, a.line, int(a.overridable),
                                          a.status, a.reason, a.checked_at])

    def delete(self, prescription_id: str) -> int:
        self._store.require_write("prescription_alerts")
        return self._store.execute("DELETE FROM prescription_alerts WHERE prescription_id = ?",
                                   [prescription_id]).rowcount
