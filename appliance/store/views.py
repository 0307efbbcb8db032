"""Read models: what the screens and the commands show, each in a few queries whatever the
number of rows (no query per prescription). Nothing here writes.

``history`` reads the covering index of migration m005 alone; ``bench.store_million``
times ``HISTORY_SQL`` bare as its anchor. ``resident_file`` adds, for the same resident, the
records the registry has not acknowledged yet and the dispensations: three queries for the
whole file, none per prescription; ``trail`` the registry's answer and the print jobs of the
one prescription opened.
``mail_status``, ``external_prescriptions`` and ``unmatched_count`` are what ``ordo sync
status``, ``ordo mss received`` and the kiosk show of MSSanté.
``current_treatment`` reads the resident's signed, not cancelled prescriptions in one query
and keeps the medication lines still running (``appliance.domain.treatment``) that no
physician stopped (``stopped_lines``, one more query); ``treatment`` sorts the same lines
into running, stopped and ended for the resident's file;
``prescription_alerts`` the checks' alerts kept with a prescription.
"""

from __future__ import annotations

import json
import logging
import sqlite3
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import date, datetime, timedelta
from typing import Any

from appliance.domain.posology import FreeTextPosology, Posology, posology_from_dict
from appliance.domain.prescription import State
from appliance.domain.treatment import line_span
from appliance.errors import StoreError, ValidationError
from appliance.ports.clock import iso
from appliance.ports.registry import Dispensation
from appliance.ports.uow import (
    DispensationAlert,
    DraftRow,
    ExternalPrescription,
    FileEntry,
    HistoryRow,
    MailStatus,
    QuarantinedMail,
    QuarantinedRecord,
    StoppedLine,
    StoredAlert,
    SyncKeys,
    SyncStatus,
    Trail,
    Treatment,
    TreatmentLine,
)
from appliance.store import external_prescriptions, meta
from appliance.store.db import Store
from appliance.store.dispensations import dispensation
from appliance.store.prescriptions import decode_body
from appliance.store.stopped_lines import stopped_line

# The covering index alone (migration m005), newest first.
HISTORY_SQL = ("SELECT id, state, created_at, signed_at, prescriber_id FROM prescriptions"
               " INDEXED BY prescriptions_history WHERE resident_ins = ?"
               " ORDER BY created_at DESC")
# The rest of a resident's file for all of the resident's prescriptions at once: the
# records the registry has not acknowledged yet (pending, quarantined: found by their status
# in the outbox's index of it, a few rows of the whole appliance, rather than by a lookup
# per prescription; SQLite's statistics, where almost every row is acknowledged, would
# have it scan the table instead) and the dispensations. A prescription's print jobs and
# its acknowledged record are read when it is opened (``TRAIL_*``): one lookup each,
# against 500 of each for a file.
FILE_REGISTRY_SQL = (
    "SELECT prescription_id, status, last_error FROM outbox INDEXED BY outbox_pending"
    " WHERE status IN ('pending', 'quarantined') AND kind = 'create'"
    " AND prescription_id IN (SELECT id FROM prescriptions WHERE resident_ins = ?)")
TRAIL_REGISTRY_SQL = ("SELECT status, last_error FROM outbox WHERE prescription_id = ?"
                      " AND kind = 'create'")
TRAIL_PRINTS_SQL = ("SELECT kind, status, last_error FROM print_jobs"
                    " WHERE prescription_id = ? ORDER BY id")
FILE_DISPENSATIONS_SQL = (
    "SELECT * FROM dispensations"
    " WHERE prescription_id IN (SELECT id FROM prescriptions WHERE resident_ins = ?)"
    " ORDER BY handed_over_at, registry_id")


# A resident's prescriptions that may still be running: signed, not cancelled, with a
# medication line that runs on or after a day (``lines_end``, migration m011; NULL: not
# known, read). The covering index holds every column tested, so only the bodies of these
# rows are read, not the resident's 500. Sorted by the caller (SQLite would copy the
# bodies into a temporary B-tree to sort them).
TREATMENT_SQL = (
    "SELECT id, state, signed_at, body FROM prescriptions INDEXED BY prescriptions_history"
    " WHERE resident_ins = ?"
    " AND state IN ('signed', 'registered', 'partially_dispensed', 'dispensed')"
    " AND signed_at IS NOT NULL AND (lines_end IS NULL OR lines_end >= ?)")
EPOCH = date(1970, 1, 1)  # ``lines_end`` counts days from it
# The stopped lines of some prescriptions (a JSON array of their IDs): those of the
# treatment's prescriptions only, a few dozen lookups rather than one per prescription of
# the resident.
STOPPED_SQL = ("SELECT prescription_id, line, reason, stopped_at, stopped_by, replaced_by"
               " FROM stopped_lines WHERE prescription_id IN"
               " (SELECT value FROM json_each(?))")
ALERTS_SQL = ("SELECT code, severity, message, source, line, overridable, status, reason,"
              " checked_at FROM prescription_alerts WHERE prescription_id = ?"
              " ORDER BY position")

log = logging.getLogger(__name__)
_STATES = {s.value: s for s in State}


class StoreViews:
    def __init__(self, store: Store) -> None:
        self._store = store

    @contextmanager
    def _snapshot(self) -> Iterator[None]:
        """Several reads from one snapshot (a read transaction), unless the caller's
        transaction already gives one."""
        conn = self._store.conn
        if conn.in_transaction:
            yield
            return
        self._store.execute("BEGIN")
        try:
            yield
        finally:
            if conn.in_transaction:
                conn.execute("COMMIT")

    def history(self, ins: str) -> list[HistoryRow]:
        """A resident's prescriptions, newest first, without parsing their bodies.

        Plain tuples from SQLite (no ``sqlite3.Row``), states by dictionary rather than
        through ``State(...)`` (an enum call is about 1.5 µs), the two ISO timestamps parsed
        at once since the list shows a date on every row.
        """
        cursor = self._store.conn.cursor()
        cursor.row_factory = None
        parse = datetime.fromisoformat
        try:
            rows = cursor.execute(HISTORY_SQL, (ins,)).fetchall()
        except sqlite3.Error as exc:
            raise self._store.failed(exc) from exc
        try:
            return [HistoryRow(pid, _STATES[state], parse(created),
                               parse(signed) if signed else None, prescriber)
                    for pid, state, created, signed, prescriber in rows]
        except KeyError as exc:
            raise StoreError(f"a prescription of this resident has an unknown state {exc}") \
                from exc

    def resident_file(self, ins: str) -> list[FileEntry]:
        with self._snapshot():
            entries = {row.id: FileEntry(row) for row in self.history(ins)}
            if not entries:
                return []
            for pid, status, error in self._store.execute(FILE_REGISTRY_SQL, [ins]):
                entry = entries.get(pid)
                if entry is not None:
                    entry.registry, entry.registry_error = status, error
            handed: dict[str, list[Dispensation]] = {}
            for row in self._store.execute(FILE_DISPENSATIONS_SQL, [ins]):
                entry = entries.get(row["prescription_id"])
                if entry is not None and entry.row.state is not State.DRAFT:
                    handed.setdefault(entry.row.id, []).append(dispensation(row))
            for pid, found in handed.items():
                entries[pid].dispensations = found
        return list(entries.values())

    def trail(self, prescription_id: str) -> Trail:
        """What the file shows of one prescription once it is opened besides its body: the
        registry's answer to its creation and its print jobs, in order."""
        with self._snapshot():
            found = self._store.execute(TRAIL_REGISTRY_SQL, [prescription_id]).fetchone()
            prints = [(kind, status, error) for kind, status, error in self._store.execute(
                TRAIL_PRINTS_SQL, [prescription_id])]
        return Trail(found[0] if found else None, found[1] if found else None, prints)

    def sync_status(self, now: datetime) -> SyncStatus:
        with self._snapshot():
            counts = self._store.query(
                "SELECT"
                " sum(status = 'pending') AS pending,"
                " sum(status = 'pending' AND kind = 'create') AS creates,"
                " sum(status = 'pending' AND kind = 'cancel') AS cancels,"
                " sum(status = 'acknowledged') AS acknowledged,"
                " sum(status = 'quarantined') AS quarantined,"
                " min(CASE WHEN status = 'pending' THEN created_at END) AS oldest,"
                " min(CASE WHEN status = 'pending' THEN coalesce(next_attempt_at, '') END)"
                " AS next FROM outbox")[0]
            quarantined = [QuarantinedRecord(
                seq=r["seq"], prescription_id=r["prescription_id"], kind=r["kind"],
                attempts=r["attempts"], created_at=r["created_at"], reason=r["reason"])
                for r in self._store.query(
                    "SELECT seq, prescription_id, kind, attempts, created_at,"
                    " last_error AS reason FROM outbox WHERE status = 'quarantined'"
                    " ORDER BY seq")]
            values = meta.with_prefix(self._store, SyncKeys.PREFIX)
            dispensed = self._store.one("SELECT count(*) FROM dispensations")
        oldest = counts["oldest"]
        age = (now - datetime.fromisoformat(oldest)).total_seconds() if oldest else None
        return SyncStatus(
            queue_depth=counts["pending"] or 0, pending_creates=counts["creates"] or 0,
            pending_cancels=counts["cancels"] or 0, oldest_pending_at=oldest,
            oldest_pending_age_s=None if age is None else round(max(age, 0.0), 3),
            next_attempt_at=counts["next"] or (iso(now) if counts["pending"] else None),
            acknowledged=counts["acknowledged"] or 0, quarantined=counts["quarantined"] or 0,
            last_success_at=values.get(SyncKeys.LAST_SUCCESS),
            last_error=values.get(SyncKeys.LAST_ERROR),
            last_error_at=values.get(SyncKeys.LAST_ERROR_AT),
            last_push_at=values.get(SyncKeys.LAST_PUSH),
            last_pull_at=values.get(SyncKeys.LAST_PULL),
            dispense_cursor=values.get(SyncKeys.CURSOR),
            dispensations=int(dispensed), quarantined_records=quarantined,
            link=values.get(SyncKeys.LINK), link_detail=values.get(SyncKeys.LINK_DETAIL),
            link_key=values.get(SyncKeys.LINK_KEY) or None,
            link_since=values.get(SyncKeys.LINK_SINCE))

    def drafts(self, id_nat_ps: str | None = None) -> list[DraftRow]:
        sql = ("SELECT id, prescriber_id, created_at, updated_at FROM prescriptions"
               " WHERE state = 'draft'")
        params: list[str] = []
        if id_nat_ps:
            sql, params = sql + " AND prescriber_id = ?", [id_nat_ps]
        return [DraftRow(*row) for row in self._store.execute(
            sql + " ORDER BY updated_at DESC", params)]

    def dispensation_alerts(self, limit: int = 20) -> list[DispensationAlert]:
        rows = self._store.execute(
            "SELECT d.prescription_id, d.line_no, d.product_label, d.substituted,"
            " d.substitution_type, d.substitution_reason, d.complete, d.handed_over_at,"
            " r.room, r.birth_name, r.used_name, r.first_names, d.product_code"
            " FROM dispensations d LEFT JOIN prescriptions p ON p.id = d.prescription_id"
            " LEFT JOIN residents r ON r.ins = p.resident_ins"
            " WHERE d.substituted = 1 OR d.complete = 0"
            " ORDER BY d.received_at DESC, d.registry_id LIMIT ?", [limit])
        return [DispensationAlert(pid, line, label, bool(sub), sub_type, reason,
                                  bool(complete), at, room, birth, used, first, code)
                for pid, line, label, sub, sub_type, reason, complete, at, room, birth, used,
                first, code in rows]

    def current_treatment(self, ins: str, today: date) -> list[TreatmentLine]:
        """The medication lines of the resident's signed, not cancelled prescriptions still
        running on ``today`` (``appliance.domain.treatment.line_span``) and not stopped,
        most recently signed first, in line order. A stored body that no longer loads is
        skipped and logged (with its prescription ID only): the checks then miss its lines,
        the resident's file still lists it."""
        with self._snapshot():
            lines = self._signed_lines(ins, today)
            stopped = self._stopped(lines)
        return [t for t in lines if t.signed_on <= today <= t.end
                and (t.prescription_id, t.line) not in stopped]

    def treatment(self, ins: str, today: date, ended_days: int = 90) -> Treatment:
        since = today - timedelta(days=ended_days)
        with self._snapshot():
            lines = self._signed_lines(ins, since)
            stopped = self._stopped(lines)
        current, taken_out, ended = [], [], []
        for t in lines:
            if t.signed_on > today or t.end < since:
                continue
            record = stopped.get((t.prescription_id, t.line))
            if record is not None:
                taken_out.append((t, record))
            elif t.end >= today:
                current.append(t)
            else:
                ended.append(t)
        taken_out.sort(key=lambda pair: pair[1].stopped_at, reverse=True)
        ended.sort(key=lambda t: t.end, reverse=True)
        return Treatment(current, taken_out, ended)

    def _stopped(self, lines: list[TreatmentLine]) -> dict[tuple[str, int], StoppedLine]:
        """The stopped lines of the prescriptions of ``lines``."""
        if not lines:
            return {}
        ids = json.dumps(list(dict.fromkeys(t.prescription_id for t in lines)))
        rows = self._store.execute(STOPPED_SQL, [ids]).fetchall()
        return {(r[0], int(r[1])): stopped_line(tuple(r)) for r in rows}

    def _signed_lines(self, ins: str, since: date) -> list[TreatmentLine]:
        """The medication lines of the resident's signed, not cancelled prescriptions that
        have one running on ``since`` or later (and of those whose end is not known)."""
        found: list[TreatmentLine] = []
        posologies: dict[str, tuple[Posology | FreeTextPosology, str]] = {}
        rows = self._store.execute(TREATMENT_SQL, [ins, (since - EPOCH).days]).fetchall()
        rows.sort(key=lambda row: row[0])                  # most recently signed first,
        rows.sort(key=lambda row: row[2], reverse=True)    # then by ID (a stable sort)
        for pid, state, signed_at, body in rows:
            try:
                found += treatment_lines(pid, _STATES[state], signed_at,
                                         json.loads(decode_body(body)), posologies)
            except (ValueError, KeyError, TypeError, ValidationError, StoreError) as exc:
                log.warning("current treatment: a prescription does not load", extra={
                    "fields": {"prescription": pid, "error": type(exc).__name__}})
        return found

    def prescription_alerts(self, prescription_id: str) -> list[StoredAlert]:
        return [StoredAlert(prescription_id, code, severity, message, source, line,
                            bool(overridable), status, checked_at, reason)
                for code, severity, message, source, line, overridable, status, reason,
                checked_at in self._store.execute(ALERTS_SQL, [prescription_id])]

    def latest_registered(self) -> str | None:
        found: str | None = self._store.one("SELECT id FROM prescriptions"
                                            " WHERE state = 'registered'"
                                            " ORDER BY signed_at DESC LIMIT 1")
        return found

    def mail_status(self) -> MailStatus:
        with self._snapshot():
            counts = dict(self._store.execute(
                "SELECT status, count(*) FROM mail_outbox GROUP BY status").fetchall())
            last = self._store.one(
                "SELECT last_error FROM mail_outbox WHERE status = 'pending'"
                " AND last_error IS NOT NULL ORDER BY seq DESC LIMIT 1")
            quarantined = [QuarantinedMail(
                seq=r["seq"], prescription_id=r["prescription_id"], recipient=r["recipient"],
                attempts=r["attempts"], reason=r["reason"])
                for r in self._store.query(
                    "SELECT seq, prescription_id, recipient, attempts, last_error AS reason"
                    " FROM mail_outbox WHERE status = 'quarantined' ORDER BY seq")]
        return MailStatus(pending=counts.get("pending", 0), sent=counts.get("sent", 0),
                          quarantined=counts.get("quarantined", 0), last_error=last,
                          quarantined_records=quarantined)

    def external_prescriptions(self, ins: str | None = None, *, unmatched: bool = False,
                               limit: int = 200) -> list[ExternalPrescription]:
        select = external_prescriptions.SELECT_SQL
        if ins is not None:
            rows = self._store.execute(select + " WHERE resident_ins = ?"
                                       " ORDER BY received_at DESC, id DESC LIMIT ?",
                                       [ins, limit])
        elif unmatched:
            rows = self._store.execute(select + " WHERE resident_ins IS NULL"
                                       " ORDER BY received_at, id LIMIT ?", [limit])
        else:
            rows = self._store.execute(select + " ORDER BY received_at DESC, id DESC LIMIT ?",
                                       [limit])
        return [external_prescriptions.external(row) for row in rows]

    def unmatched_count(self) -> int:
        return int(self._store.one(
            "SELECT count(*) FROM external_prescriptions WHERE resident_ins IS NULL"))


def lines_end(signed_at: str, body: Mapping[str, Any]) -> int:
    """The last day a medication line of a signed prescription runs (as in
    ``treatment_lines``: ``line_span``, renewals included), as days since 1970-01-01: the
    ``lines_end`` column. A prescription without one ran none: the day before its
    signature."""
    signed_on = datetime.fromisoformat(signed_at).date()
    last = signed_on - timedelta(days=1)
    for line in body["lines"]:
        if line.get("kind") == "medication":
            span = line_span(posology_from_dict(line["posology"]), signed_on,
                             _renewals(line, body))
            last = max(last, span.end)
    return (last - EPOCH).days


def _renewals(line: Mapping[str, Any], body: Mapping[str, Any]) -> int:
    """A line's renewals: its own when it carries them, else its prescription's (a body of
    the first content format has one count for all)."""
    return int(line.get("renewals", body.get("renewals")) or 0)


def treatment_lines(pid: str, state: State, signed_at: str,
                    body: Mapping[str, Any],  # json.loads: Any
                    posologies: dict[str, tuple[Posology | FreeTextPosology, str]] | None
                    = None) -> list[TreatmentLine]:
    """The medication lines of one stored prescription, each with its last day. A line's
    renewals are its own when it carries them, else its prescription's.

    ``posologies``: the posologies already read and their wording, by their JSON value,
    shared by the calls of one read: a resident's treatment repeats the same posologies
    from one renewal to the next, and checking and wording one is most of the cost of a
    line (a posology is immutable: the lines share it)."""
    signed_on = datetime.fromisoformat(signed_at).date()
    prescriber = body["prescriber"]
    out = []
    for index, line in enumerate(body["lines"]):
        if line.get("kind") != "medication":
            continue
        renewals = _renewals(line, body)
        # ``repr`` of the decoded JSON is as exact a key as its text, and five times cheaper
        key = repr(line["posology"]) if posologies is not None else ""
        read = posologies.get(key) if posologies is not None else None
        if read is None:
            posology = posology_from_dict(line["posology"])
            read = (posology, posology.describe())
            if posologies is not None:
                posologies[key] = read
        posology, text = read
        span = line_span(posology, signed_on, renewals)
        out.append(TreatmentLine(
            prescription_id=pid, line=index, label=line["label"], cis=line.get("cis"),
            cip13=line.get("cip13"), posology=posology, posology_text=text,
            signed_on=signed_on, end=span.end, open_ended=span.open_ended,
            renewals=renewals, prescriber_id=prescriber["id_nat_ps"],
            prescriber_name=f"{prescriber['first_name']} {prescriber['last_name']}",
            state=state))
    return out
