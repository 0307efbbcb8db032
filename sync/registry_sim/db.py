"""The reference registry's own SQLite database: prescriptions, lines, dispensations.

Idempotency is keyed on the prescription ID: the first create stores the content hash and
the transaction-response with its receipt; a later create with the same hash gets that
same response back (entries ``200 OK``), with another hash a ``Conflict``. WAL mode, so that
``ordo registry-sim dispense`` and ``list`` can work on the file while the server runs.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from appliance.ports.registry import Dispensation
from sync import codes
from sync.registry_sim.submission import Submission

SCHEMA = """
CREATE TABLE IF NOT EXISTS prescriptions (
    id TEXT PRIMARY KEY,
    content_sha256 TEXT NOT NULL,
    canonical BLOB NOT NULL,
    bundle TEXT NOT NULL,
    response TEXT NOT NULL,
    receipt_id TEXT NOT NULL UNIQUE,
    received_at TEXT NOT NULL,
    submitter TEXT NOT NULL,
    resident_ins TEXT NOT NULL,
    prescriber TEXT NOT NULL,
    objection INTEGER NOT NULL DEFAULT 0,
    status TEXT NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'cancelled')),
    cancelled_at TEXT,
    cancel_reason TEXT,
    cancel_receipt TEXT
);
CREATE TABLE IF NOT EXISTS lines (
    prescription_id TEXT NOT NULL REFERENCES prescriptions (id),
    line_no INTEGER NOT NULL,
    kind TEXT NOT NULL,
    resource_type TEXT NOT NULL,
    resource_id TEXT NOT NULL,
    code_system TEXT,
    code TEXT,
    label TEXT NOT NULL,
    quantity TEXT,
    unit TEXT,
    PRIMARY KEY (prescription_id, line_no)
);
CREATE TABLE IF NOT EXISTS people (
    system TEXT NOT NULL,
    value TEXT NOT NULL,
    resource_type TEXT NOT NULL,
    resource_id TEXT NOT NULL,
    PRIMARY KEY (system, value)
);
CREATE TABLE IF NOT EXISTS dispensations (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    prescription_id TEXT NOT NULL REFERENCES prescriptions (id),
    line_no INTEGER NOT NULL,
    complete INTEGER NOT NULL,
    first_fill INTEGER NOT NULL,
    product_system TEXT,
    product_code TEXT,
    product_label TEXT NOT NULL,
    quantity TEXT,
    unit TEXT,
    substituted INTEGER NOT NULL DEFAULT 0,
    substitution_type TEXT,
    substitution_reason TEXT,
    pharmacy TEXT,
    objection INTEGER NOT NULL DEFAULT 0,
    handed_over_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS dispensations_prescription ON dispensations (prescription_id);
CREATE TABLE IF NOT EXISTS audit_anchors (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    finess TEXT NOT NULL,
    chain_seq INTEGER NOT NULL,
    chain_hash TEXT NOT NULL,
    resource TEXT NOT NULL,
    received_at TEXT NOT NULL,
    submitter TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_anchors_finess ON audit_anchors (finess, seq);
"""


class NotFound(Exception):
    pass


class Conflict(Exception):
    pass


class Forbidden(Exception):
    pass


class BadRequest(Exception):
    pass


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds")


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:20].upper()}"


@dataclass(frozen=True)
class Substitute:
    """What the pharmacy handed over instead of the prescribed product."""

    code: str
    label: str
    system: str = codes.CIP13_SYSTEM
    type: str = "G"
    reason: str | None = None


class RegistryDB:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._conn: sqlite3.Connection | None = None
        self._lock = threading.RLock()

    def open(self) -> RegistryDB:
        if self._conn is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(str(self.path), isolation_level=None, timeout=10,
                                   check_same_thread=False)
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = NORMAL")
            conn.execute("PRAGMA busy_timeout = 10000")
            conn.executescript(SCHEMA)
            self._conn = conn
        return self

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    @property
    def conn(self) -> sqlite3.Connection:
        if self._conn is None:
            self.open()
        assert self._conn is not None
        return self._conn

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            conn = self.conn
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    # -- prescriber side ----------------------------------------------------------------------
    def _person(self, conn: sqlite3.Connection, kind: str, key: tuple[str, str]
                ) -> tuple[str, bool]:
        row = conn.execute("SELECT resource_id FROM people WHERE system = ? AND value = ?",
                           key).fetchone()
        if row:
            return row[0], False
        rid = uuid.uuid4().hex
        conn.execute("INSERT INTO people VALUES (?, ?, ?, ?)", (*key, kind, rid))
        return rid, True

    def register(self, sub: Submission, bundle_text: str, submitter: str,
                 now: datetime) -> tuple[dict[str, Any], bool]:
        """Store a new prescription, or replay the first answer. Raises ``Conflict``."""
        with self._tx() as conn:
            row = conn.execute("SELECT content_sha256, response FROM prescriptions WHERE id = ?",
                               (sub.prescription_id,)).fetchone()
            if row is not None:
                if row[0] != sub.content_sha256:
                    raise Conflict(f"prescription {sub.prescription_id} is already registered "
                                   "with other content")
                return replayed(json.loads(row[1])), True
            at = _iso(now)
            patient_id, new_patient = self._person(conn, "Patient", sub.patient)
            practitioner_id, new_practitioner = self._person(conn, "Practitioner",
                                                             sub.practitioner)
            answers = []
            for kind, n in sub.entries:
                if kind == "Patient":
                    rid, created = patient_id, new_patient
                elif kind == "Practitioner":
                    rid, created = practitioner_id, new_practitioner
                else:
                    rid, created = uuid.uuid4().hex, True
                if n:
                    line = sub.lines[n - 1]
                    conn.execute("INSERT INTO lines VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", (
                        sub.prescription_id, n, line.kind, kind, rid, line.code_system,
                        line.code, line.label, line.quantity, line.unit))
                answers.append({"response": {
                    "status": "201 Created" if created else "200 OK",
                    "location": f"{kind}/{rid}/_history/1", "lastModified": at}})
            receipt = new_id("AR")
            response = {"resourceType": "Bundle", "type": "transaction-response",
                        "identifier": {"system": codes.RECEIPT_SYSTEM, "value": receipt},
                        "timestamp": at, "entry": answers}
            resident = sub.content.get("resident") or {}
            conn.execute(
                "INSERT INTO prescriptions (id, content_sha256, canonical, bundle, response,"
                " receipt_id, received_at, submitter, resident_ins, prescriber, objection)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (sub.prescription_id, sub.content_sha256, sub.canonical, bundle_text,
                 json.dumps(response), receipt, at, submitter, str(resident.get("ins")),
                 sub.practitioner[1], int(sub.objection)))
            return response, False

    def cancel(self, prescription_id: str, reason: str, submitter: str,
               now: datetime) -> tuple[dict[str, Any], bool]:
        with self._tx() as conn:
            row = conn.execute("SELECT status, submitter, cancel_receipt, cancelled_at"
                               " FROM prescriptions WHERE id = ?",
                               (prescription_id,)).fetchone()
            if row is None:
                raise NotFound(f"unknown prescription {prescription_id}")
            if row["submitter"] != submitter:
                raise Forbidden(f"prescription {prescription_id} belongs to another submitter")
            if row["status"] == "cancelled":
                return _cancel_answer(row["cancel_receipt"], row["cancelled_at"], True), True
            dispensed = conn.execute("SELECT count(*) FROM dispensations"
                                     " WHERE prescription_id = ?", (prescription_id,)).fetchone()
            if dispensed[0]:
                raise Conflict(f"prescription {prescription_id} was already dispensed: "
                               "it can no longer be cancelled")
            receipt, at = new_id("AN"), _iso(now)
            conn.execute("UPDATE prescriptions SET status = 'cancelled', cancelled_at = ?,"
                         " cancel_reason = ?, cancel_receipt = ? WHERE id = ?",
                         (at, reason[:500], receipt, prescription_id))
            return _cancel_answer(receipt, at, False), False

    def feed(self, submitter: str, cursor: int, count: int) -> list[tuple[int, dict[str, Any]]]:
        """Dispensations after ``cursor`` for this submitter, objections left out."""
        with self._lock:
            rows = self.conn.execute(
                "SELECT d.*, l.resource_type, l.resource_id FROM dispensations d"
                " JOIN prescriptions p ON p.id = d.prescription_id"
                " JOIN lines l ON l.prescription_id = d.prescription_id AND l.line_no = d.line_no"
                " WHERE d.seq > ? AND p.submitter = ? AND p.objection = 0 AND d.objection = 0"
                " ORDER BY d.seq LIMIT ?", (cursor, submitter, count)).fetchall()
        return [(row["seq"], dict(row)) for row in rows]

    # -- pharmacy side ------------------------------------------------------------------------
    def dispense(self, prescription_id: str, *, line: int | None = None, complete: bool = True,
                 quantity: str | None = None, unit: str | None = None,
                 substitute: Substitute | None = None, objection: bool = False,
                 pharmacy: str | None = None, now: datetime | None = None
                 ) -> list[Dispensation]:
        """Record what a pharmacy handed over: every medication line still open (or one),
        fully or partly, maybe another product, maybe another quantity."""
        if quantity is not None:
            try:
                amount = Decimal(str(quantity))
            except InvalidOperation:
                raise BadRequest(f"quantity {quantity!r} is not a number") from None
            if not amount.is_finite() or amount <= 0:
                raise BadRequest(f"quantity {quantity!r} must be greater than 0")
        now = now or datetime.now(UTC)
        with self._tx() as conn:
            p = conn.execute("SELECT status FROM prescriptions WHERE id = ?",
                             (prescription_id,)).fetchone()
            if p is None:
                raise NotFound(f"unknown prescription {prescription_id}")
            if p["status"] == "cancelled":
                raise Conflict(f"prescription {prescription_id} is cancelled")
            lines = {r["line_no"]: r for r in conn.execute(
                "SELECT * FROM lines WHERE prescription_id = ? AND kind = 'medication'"
                " ORDER BY line_no", (prescription_id,))}
            done = {r[0] for r in conn.execute(
                "SELECT DISTINCT line_no FROM dispensations WHERE prescription_id = ?"
                " AND complete = 1", (prescription_id,))}
            if line is not None:
                if line not in lines:
                    raise BadRequest(f"line {line} is not a medication line of "
                                     f"{prescription_id}")
                if line in done:
                    raise Conflict(f"line {line} of {prescription_id} is already dispensed")
                targets = [line]
            else:
                targets = [n for n in lines if n not in done]
                if not targets:
                    raise Conflict(f"prescription {prescription_id} is already dispensed")
            if objection:
                conn.execute("UPDATE prescriptions SET objection = 1 WHERE id = ?",
                             (prescription_id,))
            out = []
            for n in targets:
                row = lines[n]
                first = conn.execute("SELECT count(*) FROM dispensations WHERE prescription_id"
                                     " = ? AND line_no = ?", (prescription_id, n)).fetchone()[0]
                if substitute is not None:
                    system, code, label = substitute.system, substitute.code, substitute.label
                else:
                    system, code, label = row["code_system"], row["code"], row["label"]
                qty = quantity if quantity is not None else row["quantity"]
                d = Dispensation(
                    registry_id=new_id("MD"), prescription_id=prescription_id, line=n,
                    complete=complete, handed_over_at=now, product_label=label,
                    product_code=code, product_system=system,
                    quantity=None if qty is None else Decimal(str(qty)),
                    unit=unit or (row["unit"] if qty is not None else None),
                    substituted=substitute is not None,
                    substitution_type=substitute.type if substitute else None,
                    substitution_reason=substitute.reason if substitute else None,
                    pharmacy=pharmacy)
                conn.execute(
                    "INSERT INTO dispensations (id, prescription_id, line_no, complete,"
                    " first_fill, product_system, product_code, product_label, quantity, unit,"
                    " substituted, substitution_type, substitution_reason, pharmacy, objection,"
                    " handed_over_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (d.registry_id, prescription_id, n, int(complete), int(first == 0), system,
                     code, label, None if d.quantity is None else format(d.quantity, "f"),
                     d.unit, int(d.substituted), d.substitution_type, d.substitution_reason,
                     pharmacy, int(objection), _iso(now)))
                out.append(d)
            return out

    # -- inspection -----------------------------------------------------------------------------
    # -- audit anchors (append-only: the registry never changes or deletes one) ----------
    def add_anchor(self, finess: str, chain_seq: int, chain_hash: str,
                   resource: dict[str, Any], submitter: str, now: datetime) -> dict[str, Any]:
        stored = {**resource, "id": new_id("AE"),
                  "meta": {"lastUpdated": _iso(now)}}
        with self._tx() as conn:
            conn.execute("INSERT INTO audit_anchors (id, finess, chain_seq, chain_hash, "
                         "resource, received_at, submitter) VALUES (?, ?, ?, ?, ?, ?, ?)",
                         (stored["id"], finess, chain_seq, chain_hash, json.dumps(stored),
                          _iso(now), submitter))
        return stored

    def anchors(self, finess: str, submitter: str) -> list[dict[str, Any]]:
        with self._lock:
            rows = self.conn.execute("SELECT resource FROM audit_anchors WHERE finess = ? "
                                     "AND submitter = ? ORDER BY seq",
                                     (finess, submitter)).fetchall()
        return [json.loads(row[0]) for row in rows]

    def list_prescriptions(self) -> list[dict[str, Any]]:
        with self._lock:
            rows = self.conn.execute(
                "SELECT p.id, p.status, p.receipt_id, p.received_at, p.submitter, p.objection,"
                " p.cancelled_at, p.content_sha256,"
                " (SELECT count(*) FROM lines l WHERE l.prescription_id = p.id) AS lines,"
                " (SELECT count(*) FROM dispensations d WHERE d.prescription_id = p.id)"
                "   AS dispensations"
                " FROM prescriptions p ORDER BY p.received_at, p.id").fetchall()
        return [{**dict(r), "objection": bool(r["objection"])} for r in rows]

    def count(self) -> int:
        with self._lock:
            return self.conn.execute("SELECT count(*) FROM prescriptions").fetchone()[0]


def replayed(response: dict[str, Any]) -> dict[str, Any]:
    """The original transaction-response, every entry now ``200 OK`` (nothing created)."""
    out = dict(response)
    out["entry"] = [{"response": {**e["response"], "status": "200 OK"}}
                    for e in response.get("entry", [])]
    return out


def _cancel_answer(receipt: str, at: str, again: bool) -> dict[str, Any]:
    return {"resourceType": "Parameters", "parameter": [
        {"name": "receipt", "valueIdentifier": {"system": codes.RECEIPT_SYSTEM,
                                                "value": receipt}},
        {"name": "at", "valueInstant": at},
        {"name": "replayed", "valueBoolean": again}]}


def row_dispensation(row: dict[str, Any]) -> tuple[Dispensation, bool, str]:
    """A feed row as (dispensation, first fill?, reference of the request)."""
    d = Dispensation(
        registry_id=row["id"], prescription_id=row["prescription_id"], line=row["line_no"],
        complete=bool(row["complete"]),
        handed_over_at=datetime.fromisoformat(row["handed_over_at"]),
        product_label=row["product_label"], product_code=row["product_code"],
        product_system=row["product_system"],
        quantity=None if row["quantity"] is None else Decimal(row["quantity"]),
        unit=row["unit"], substituted=bool(row["substituted"]),
        substitution_type=row["substitution_type"],
        substitution_reason=row["substitution_reason"], pharmacy=row["pharmacy"])
    return d, bool(row["first_fill"]), f"{row['resource_type']}/{row['resource_id']}"
