"""Versioned forward migrations. Each is a registered function, applied once, in order,
inside one ``BEGIN IMMEDIATE`` transaction together with its row in ``_migrations``.

Never edit a published migration: add a new one at the end.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from appliance.store.db import Store

if TYPE_CHECKING:
    import sqlite_utils

log = logging.getLogger(__name__)

Migration = Callable[["sqlite_utils.Database"], None]
MIGRATIONS: list[tuple[str, Migration]] = []


def migration(func: Migration) -> Migration:
    MIGRATIONS.append((func.__name__, func))
    return func


@migration
def m001_initial(db: sqlite_utils.Database) -> None:
    for statement in _INITIAL.split(";\n"):
        if statement.strip():
            db.execute(statement)


_INITIAL = """
CREATE TABLE meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE residents (
    ins TEXT PRIMARY KEY,
    ins_oid TEXT NOT NULL,
    birth_name TEXT NOT NULL,
    used_name TEXT,
    first_names TEXT NOT NULL,
    birth_date TEXT NOT NULL,
    sex TEXT NOT NULL CHECK (sex IN ('M', 'F')),
    room TEXT NOT NULL DEFAULT '',
    objection INTEGER NOT NULL DEFAULT 0 CHECK (objection IN (0, 1)),
    active INTEGER NOT NULL DEFAULT 1 CHECK (active IN (0, 1)),
    search_key TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE INDEX residents_room ON residents (room);
CREATE TABLE practitioners (
    id_nat_ps TEXT PRIMARY KEY,
    last_name TEXT NOT NULL,
    first_name TEXT NOT NULL,
    profession TEXT NOT NULL,
    role TEXT NOT NULL CHECK (role IN ('prescriber', 'nurse', 'staff')),
    am TEXT,
    finess TEXT,
    updated_at TEXT NOT NULL
);
CREATE TABLE prescriptions (
    id TEXT PRIMARY KEY,
    state TEXT NOT NULL,
    resident_ins TEXT NOT NULL REFERENCES residents (ins),
    prescriber_id TEXT NOT NULL,
    created_at TEXT NOT NULL,
    signed_at TEXT,
    updated_at TEXT NOT NULL,
    body TEXT NOT NULL,
    signature BLOB,
    signer_cert BLOB,
    registry_receipt TEXT,
    cancel_reason TEXT
);
CREATE INDEX prescriptions_resident ON prescriptions (resident_ins, created_at);
CREATE INDEX prescriptions_state ON prescriptions (state);
CREATE TABLE outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    prescription_id TEXT NOT NULL REFERENCES prescriptions (id),
    kind TEXT NOT NULL CHECK (kind IN ('create', 'cancel')),
    created_at TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'pending'
        CHECK (status IN ('pending', 'acknowledged', 'quarantined')),
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at TEXT,
    last_error TEXT,
    receipt TEXT,
    acknowledged_at TEXT,
    UNIQUE (prescription_id, kind)
);
CREATE INDEX outbox_pending ON outbox (status, seq);
CREATE TABLE print_jobs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    prescription_id TEXT NOT NULL REFERENCES prescriptions (id),
    kind TEXT NOT NULL CHECK (kind IN ('original', 'duplicate')),
    requested_by TEXT NOT NULL,
    created_at TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'queued' CHECK (status IN ('queued', 'done', 'failed')),
    attempts INTEGER NOT NULL DEFAULT 0,
    last_error TEXT,
    done_at TEXT
);
CREATE INDEX print_jobs_queued ON print_jobs (status, id);
CREATE TABLE audit (
    seq INTEGER PRIMARY KEY,
    at TEXT NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    subject TEXT NOT NULL DEFAULT '',
    details TEXT NOT NULL DEFAULT '{}',
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL
);
CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit
BEGIN SELECT RAISE(ABORT, 'the audit chain is append-only'); END;
CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit
BEGIN SELECT RAISE(ABORT, 'the audit chain is append-only'); END
"""


def applied(store: Store) -> list[str]:
    if "_migrations" not in store.db.table_names():
        return []
    return [row["name"] for row in store.query("SELECT name FROM _migrations ORDER BY id")]


def migrate(store: Store) -> list[str]:
    """Apply the pending migrations; returns their names. A database that cannot be
    migrated (read-only, corrupt, not a database) raises ``StoreError``."""
    try:
        return _migrate(store)
    except sqlite3.Error as exc:
        raise store.failed(exc, "mise à jour du schéma") from exc


def _migrate(store: Store) -> list[str]:
    with store.write() as db:
        db.execute(
            "CREATE TABLE IF NOT EXISTS _migrations ("
            " id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, applied_at TEXT NOT NULL)"
        )
    done = set(applied(store))
    new = []
    for name, func in MIGRATIONS:
        if name in done:
            continue
        with store.write() as db:
            # Another process may have applied it between our read and our lock.
            if db.execute("SELECT 1 FROM _migrations WHERE name = ?", [name]).fetchone():
                continue
            func(db)
            db.execute("INSERT INTO _migrations (name, applied_at) VALUES (?, ?)",
                       [name, datetime.now(UTC).isoformat(timespec="seconds")])
        log.info("migration applied", extra={"fields": {"migration": name}})
        new.append(name)
    return new


@migration
def m002_sync_registry(db: sqlite_utils.Database) -> None:
    """Registry sync: the exact bytes the card signed, and dispensations pulled back.

    ``signed_payload`` is NULL when the card signed ``canonical_bytes()`` itself.
    Dispensations keep the registry's ``MedicationDispense`` JSON as received; no foreign key
    so that a dispensation for an unknown prescription (e.g. after restoring an old backup)
    is kept rather than lost.
    """
    columns = {row[1] for row in db.execute("PRAGMA table_info(prescriptions)")}
    if "signed_payload" not in columns:
        db.execute("ALTER TABLE prescriptions ADD COLUMN signed_payload BLOB")
    db.execute(
        "CREATE TABLE dispensations ("
        " registry_id TEXT PRIMARY KEY,"
        " prescription_id TEXT NOT NULL,"
        " line_no INTEGER NOT NULL,"
        " complete INTEGER NOT NULL CHECK (complete IN (0, 1)),"
        " product_label TEXT NOT NULL DEFAULT '',"
        " product_system TEXT,"
        " product_code TEXT,"
        " quantity TEXT,"
        " unit TEXT,"
        " substituted INTEGER NOT NULL DEFAULT 0 CHECK (substituted IN (0, 1)),"
        " substitution_type TEXT,"
        " substitution_reason TEXT,"
        " pharmacy TEXT,"
        " handed_over_at TEXT NOT NULL,"
        " received_at TEXT NOT NULL,"
        " resource TEXT NOT NULL)"
    )
    db.execute("CREATE INDEX dispensations_prescription"
               " ON dispensations (prescription_id, line_no)")
    db.execute("CREATE INDEX outbox_next_attempt ON outbox (status, next_attempt_at)")


@migration
def m003_print_queue(db: sqlite_utils.Database) -> None:
    """Print queue: a lease so that two workers (the kiosk and ``ordo print
    pending``) never send the same job at once; it expires if a worker dies mid-job."""
    columns = {row[1] for row in db.execute("PRAGMA table_info(print_jobs)")}
    for name in ("claimed_by", "claimed_until"):
        if name not in columns:
            db.execute(f"ALTER TABLE print_jobs ADD COLUMN {name} TEXT")


@migration
def m004_print_jobs_by_prescription(db: sqlite_utils.Database) -> None:
    """A prescription's print jobs by index. The resident's file lists the print
    jobs of each of the resident's prescriptions, and reprints and ``ordo print jobs`` look
    them up by prescription too; without this index each lookup scanned the whole table: at
    1,000,000 jobs about 0.1 s each, so a file of 500 prescriptions took about a minute to
    open (``bench/store_million.py``). ``id`` second: the jobs come back in order."""
    db.execute("CREATE INDEX IF NOT EXISTS print_jobs_prescription"
               " ON print_jobs (prescription_id, id)")


@migration
def m005_prescription_history(db: sqlite_utils.Database) -> None:
    """A resident's history from the index alone: the resident's file lists ID,
    state, dates and prescriber of every prescription and reads the body of the one that is
    opened; at 1,000,000 prescriptions this took the listing of 500 from p95 440 ms to about
    12 ms (``bench/store_million.py``)."""
    db.execute("CREATE INDEX IF NOT EXISTS prescriptions_history ON prescriptions"
               " (resident_ins, created_at, id, state, signed_at, prescriber_id)")


@migration
def m006_practitioner_contact(db: sqlite_utils.Database) -> None:
    """What a prescriber's orders print that the CPS card does not carry (Code de la santé
    publique R5132-3): the qualification ("Médecin généraliste"), a phone number (+33
    form) and an e-mail address; NULL falls back to the ``[prescriber]`` settings."""
    columns = {row[1] for row in db.execute("PRAGMA table_info(practitioners)")}
    for name in ("qualification", "phone", "email"):
        if name not in columns:
            db.execute(f"ALTER TABLE practitioners ADD COLUMN {name} TEXT")


@migration
def m007_mssante(db: sqlite_utils.Database) -> None:
    """MSSanté: the mail outbox (one message per signed order to the partner pharmacy,
    ``appliance.store.mail_outbox``) and the prescriptions received from other prescribers
    (``appliance.store.external_prescriptions``). ``message_id`` is set at the first attempt
    and kept, so that every resend of an order is the same message. A received document is
    kept once by its Message-ID and once by its CDA document ID; ``resident_ins`` is NULL
    while no resident matches it."""
    db.execute(
        "CREATE TABLE mail_outbox ("
        " seq INTEGER PRIMARY KEY AUTOINCREMENT,"
        " prescription_id TEXT NOT NULL REFERENCES prescriptions (id),"
        " recipient TEXT NOT NULL,"
        " message_id TEXT UNIQUE,"
        " created_at TEXT NOT NULL,"
        " status TEXT NOT NULL DEFAULT 'pending'"
        "  CHECK (status IN ('pending', 'sent', 'quarantined')),"
        " attempts INTEGER NOT NULL DEFAULT 0,"
        " next_attempt_at TEXT,"
        " last_error TEXT,"
        " sent_at TEXT,"
        " UNIQUE (prescription_id, recipient))")
    db.execute("CREATE INDEX mail_outbox_pending ON mail_outbox (status, next_attempt_at, seq)")
    db.execute(
        "CREATE TABLE external_prescriptions ("
        " id INTEGER PRIMARY KEY AUTOINCREMENT,"
        " message_id TEXT NOT NULL UNIQUE,"
        " document_id TEXT UNIQUE,"
        " resident_ins TEXT REFERENCES residents (ins),"
        " matched_by TEXT NOT NULL CHECK (matched_by IN ('ins', 'identity', 'hand', 'none')),"
        " sender TEXT NOT NULL,"
        " author TEXT NOT NULL DEFAULT '',"
        " author_id TEXT,"
        " issued_at TEXT,"
        " received_at TEXT NOT NULL,"
        " patient TEXT NOT NULL DEFAULT '{}',"
        " lines TEXT NOT NULL DEFAULT '[]',"
        " cda BLOB,"
        " pdf BLOB)")
    db.execute("CREATE INDEX external_prescriptions_resident"
               " ON external_prescriptions (resident_ins, received_at)")


@migration
def m008_allergies(db: sqlite_utils.Database) -> None:
    """Allergies and intolerances of residents, and the prescribing checks' alerts.

    ``allergies``: one row per resident and substance (BDPM substance code and the name it
    was recorded under), with the day it was recorded, its source (who said so: the family,
    the medical file, the residents' import) and who recorded it. The prescribing checks
    refuse a drug that contains the substance or another salt of it.

    ``prescription_alerts``: the alerts of the checks on a prescription, in order: those of
    a draft imported from the EHPAD's software (for the physician's review), then those it
    was signed with, each with what the physician did (``acknowledged``, ``overridden`` and
    the typed reason). No foreign key: the retention policy removes them with their
    prescription (``prescription_id``), and a draft's are removed with it."""
    db.execute(
        "CREATE TABLE allergies ("
        " id INTEGER PRIMARY KEY,"
        " resident_ins TEXT NOT NULL REFERENCES residents (ins),"
        " substance_code TEXT NOT NULL,"
        " substance TEXT NOT NULL,"
        " recorded_on TEXT NOT NULL,"
        " source TEXT NOT NULL,"
        " recorded_by TEXT NOT NULL,"
        " created_at TEXT NOT NULL,"
        " UNIQUE (resident_ins, substance_code))")
    db.execute(
        "CREATE TABLE prescription_alerts ("
        " prescription_id TEXT NOT NULL,"
        " position INTEGER NOT NULL,"
        " code TEXT NOT NULL,"
        " severity TEXT NOT NULL CHECK (severity IN ('bloquant', 'important', 'info')),"
        " message TEXT NOT NULL,"
        " source TEXT NOT NULL,"
        " line INTEGER,"
        " overridable INTEGER NOT NULL CHECK (overridable IN (0, 1)),"
        " status TEXT NOT NULL"
        "  CHECK (status IN ('open', 'acknowledged', 'overridden', 'shown')),"
        " reason TEXT,"
        " checked_at TEXT NOT NULL,"
        " PRIMARY KEY (prescription_id, position))")


@migration
def m009_signer_certificates(db: sqlite_utils.Database) -> None:
    """Each signer certificate once (``certificates``, keyed by its SHA-256): every row of
    ``prescriptions`` carried its signer's ~1 KB certificate, the same for all of a
    physician's prescriptions (a fifth of the file at 1,000,000 prescriptions,
    ``bench/store_million.py``). The copies move to ``certificates``, the prescriptions
    refer to them by ``signer_cert_id`` and the old column is dropped; the index
    ``prescriptions_resident`` goes too (m005's covering index starts with the same two
    columns). Signed bodies written from now on are compressed
    (``appliance.store.prescriptions.encode_body``); older ones are read as they are. Also
    the external
    anchors of the audit chain (``audit_anchors``): the head of the chain as the registry
    received it, with the registry's receipt (``appliance.store.audit_anchors``)."""
    db.execute("CREATE TABLE IF NOT EXISTS certificates ("
               " id INTEGER PRIMARY KEY,"
               " sha256 BLOB NOT NULL UNIQUE,"
               " der BLOB NOT NULL)")
    columns = {row[1] for row in db.execute("PRAGMA table_info(prescriptions)")}
    if "signer_cert_id" not in columns:
        db.execute("ALTER TABLE prescriptions ADD COLUMN signer_cert_id INTEGER"
                   " REFERENCES certificates (id)")
    if "signer_cert" in columns:
        from appliance.store.prescriptions import move_certificates

        move_certificates(Store(db.conn))
        db.execute("ALTER TABLE prescriptions DROP COLUMN signer_cert")
    # (resident_ins, created_at) is the prefix of m005's covering index: a second copy
    db.execute("DROP INDEX IF EXISTS prescriptions_resident")
    db.execute("CREATE TABLE IF NOT EXISTS audit_anchors ("
               " id INTEGER PRIMARY KEY,"
               " chain TEXT NOT NULL,"
               " seq INTEGER NOT NULL,"
               " hash TEXT NOT NULL,"
               " entry_at TEXT NOT NULL,"
               " finess TEXT NOT NULL,"
               " sent_at TEXT NOT NULL,"
               " registry_id TEXT NOT NULL,"
               " receipt TEXT NOT NULL)")
    db.execute("CREATE INDEX IF NOT EXISTS audit_anchors_seq ON audit_anchors (chain, seq)")


@migration
def m010_stopped_lines(db: sqlite_utils.Database) -> None:
    """Signed lines taken out of a resident's treatment before their end: stopped by a
    physician with a reason, or replaced by a signed renewal (``replaced_by``, the
    renewal's ID). One row per line (``line``: 0-based index in its prescription); the
    retention policy removes the rows with their prescription (``prescription_id``)."""
    db.execute(
        "CREATE TABLE stopped_lines ("
        " prescription_id TEXT NOT NULL REFERENCES prescriptions (id),"
        " line INTEGER NOT NULL CHECK (line >= 0),"
        " reason TEXT NOT NULL,"
        " stopped_at TEXT NOT NULL,"
        " stopped_by TEXT NOT NULL,"
        " replaced_by TEXT,"
        " PRIMARY KEY (prescription_id, line))")


@migration
def m011_compact_signed_rows(db: sqlite_utils.Database) -> None:
    """Signed prescriptions, smaller and quicker to read for a resident's treatment.

    ``signed_payload`` (the bytes the card signed) becomes NULL where it is byte for byte
    the QR signed part rebuilt from the body (``appliance.store.prescriptions.
    stored_payload``; ``SignedRow.load`` rebuilds it and checks the signature over it as
    before): about 150 bytes of the 2,800 a prescription took at 1,000,000
    (``bench/store_million.py``). ``lines_end`` (days since 1970-01-01) is the last day a
    medication line of the prescription runs, renewals included
    (``appliance.store.views.lines_end``); m005's covering index ``prescriptions_history``
    is made again with it, so that a resident's current treatment reads the bodies of the
    prescriptions still running (a few dozen) rather than all of the resident's (500).
    Bodies compressed with the first dictionary (``BODY_V1``) are compressed again with the
    second (``BODY_V2``): the same JSON text, about 25 bytes less."""
    from appliance.store.prescriptions import compact_signed_rows

    columns = {row[1] for row in db.execute("PRAGMA table_info(prescriptions)")}
    if "lines_end" not in columns:
        db.execute("ALTER TABLE prescriptions ADD COLUMN lines_end INTEGER")
    cleared = compact_signed_rows(Store(db.conn))
    db.execute("DROP INDEX IF EXISTS prescriptions_history")
    db.execute("CREATE INDEX prescriptions_history ON prescriptions"
               " (resident_ins, created_at, id, state, signed_at, prescriber_id, lines_end)")
    log.info("signed rows compacted", extra={"fields": {"signed_parts_cleared": cleared}})
