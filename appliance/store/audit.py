"""The audit chain: append-only, each entry sealed with the SHA-256 of the previous one.

``hash = SHA-256(prev_hash || RFC 8785 JSON of {seq, at, actor, action, subject, details})``.
The head (count and last hash) is kept in ``meta`` in the same transaction, so a deleted
last entry is caught too. Triggers refuse UPDATE and DELETE; ``verify`` catches whoever
goes around them (one changed, deleted or reordered row is always detected).

The guards themselves are checked, not trusted:

- ``guard_problems`` compares the triggers on the audit table with ``TRIGGERS`` (their SQL,
  spaces aside): one missing, altered or added is reported by ``ordo audit verify`` and
  ``ordo doctor``. Nothing recreates them silently (not the migrations, not opening the
  store): they come back only through ``restore_guards`` (``ordo audit restore-guards``),
  which records an ``audit.guards_restored`` entry naming what it created and removed.
- ``anchor`` says where the chain starts after the retention policy cut its oldest entries
  (``audit.anchor_seq`` / ``audit.anchor_prev`` in ``meta``), and which ``retention.applied``
  entry, of which date, recorded that cut; a cut no entry records is a broken chain.
  Whoever can write the file can also forge that entry (the hashes have no secret): the
  answer is the chain head kept off the box, not anything stored on it.

Who, what, when: never a PIN, a patient's name, NIR or birth date in ``details`` — callers
pass opaque identifiers (prescription ID, idNat_PS, job id).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import rfc8785

from appliance.errors import AuditChainBroken, StoreError
from appliance.store.db import Store

if TYPE_CHECKING:
    import sqlite3

    import sqlite_utils

GENESIS = "0" * 64
_HEAD_COUNT, _HEAD_HASH = "audit.count", "audit.head"
# Set by the retention policy (appliance.services.ops.retention) in the transaction that
# deletes the oldest entries: the first kept entry and the hash it follows.
ANCHOR_SEQ, ANCHOR_PREV = "audit.anchor_seq", "audit.anchor_prev"
RETENTION_ACTION = "retention.applied"
GUARDS_RESTORED = "audit.guards_restored"
# The append-only guards, as migration m001 created them (compared spaces aside).
_APPEND_ONLY = "BEGIN SELECT RAISE(ABORT, 'the audit chain is append-only'); END"
TRIGGERS = {
    "audit_no_update": f"CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit\n{_APPEND_ONLY}",
    "audit_no_delete": f"CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit\n{_APPEND_ONLY}",
}
_GUARDED = {"audit_no_update": "changed", "audit_no_delete": "deleted"}
FORBIDDEN_DETAIL_KEYS = frozenset({"pin", "nir", "ins", "name", "birth_date", "first_names",
                                   "birth_name", "used_name", "date_naissance", "nom", "prenoms"})


@dataclass(frozen=True)
class Anchor:
    """Where the chain starts after a retention cut, and who says so.

    ``recorded_by``/``recorded_at``/``cutoff``: the newest ``retention.applied`` entry, if
    it records this very anchor (``None`` otherwise: nothing on the box explains the cut).
    """

    seq: int
    prev_hash: str
    recorded_by: int | None = None
    recorded_at: str | None = None
    cutoff: str | None = None

    @property
    def recorded(self) -> bool:
        return self.recorded_by is not None


@dataclass(frozen=True)
class Entry:
    seq: int
    at: str
    actor: str
    action: str
    subject: str
    details: dict[str, Any]
    prev_hash: str
    hash: str


def _digest(prev_hash: str, seq: int, at: str, actor: str, action: str, subject: str,
            details: Mapping[str, Any]) -> str:
    body = rfc8785.dumps({"seq": seq, "at": at, "actor": actor, "action": action,
                          "subject": subject, "details": dict(details)})
    return hashlib.sha256(prev_hash.encode("ascii") + body).hexdigest()


def _meta(db: sqlite_utils.Database, key: str, default: str) -> str:
    row = db.execute("SELECT value FROM meta WHERE key = ?", [key]).fetchone()
    return row[0] if row else default


def append(db: sqlite_utils.Database | Store, *, actor: str, action: str, subject: str = "",
           details: Mapping[str, Any] | None = None, at: datetime | None = None) -> int:
    """Append one entry and return its sequence number.

    Inside ``store.write()`` it joins that transaction; given a ``Store`` it opens its own.
    """
    if isinstance(db, Store):
        with db.write() as inner:
            return append(inner, actor=actor, action=action, subject=subject,
                          details=details, at=at)
    details = dict(details or {})
    leaked = FORBIDDEN_DETAIL_KEYS.intersection(k.lower() for k in details)
    if leaked:
        raise StoreError(f"audit details must not carry {sorted(leaked)}")
    if not db.conn.in_transaction:
        raise StoreError("audit.append needs a write transaction (store.write())")
    when = (at or datetime.now(UTC)).astimezone(UTC).isoformat(timespec="microseconds")
    seq = int(_meta(db, _HEAD_COUNT, "0")) + 1
    prev = _meta(db, _HEAD_HASH, GENESIS)
    digest = _digest(prev, seq, when, actor, action, subject, details)
    db.execute(
        "INSERT INTO audit (seq, at, actor, action, subject, details, prev_hash, hash)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        [seq, when, actor, action, subject,
         json.dumps(details, ensure_ascii=False, sort_keys=True), prev, digest],
    )
    db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?), (?, ?)",
               [_HEAD_COUNT, str(seq), _HEAD_HASH, digest])
    return seq


def entries(store: Store, since: int = 0) -> list[Entry]:
    rows = store.query("SELECT * FROM audit WHERE seq > ? ORDER BY seq", (since,))
    return [Entry(**{**row, "details": json.loads(row["details"])}) for row in rows]


def verify(store: Store) -> int:
    """Walk the chain; return the number of entries, or raise ``AuditChainBroken``
    naming the first entry that does not verify.

    After a retention run the chain starts at the anchor kept in ``meta`` (first kept
    entry, and the hash it follows) instead of entry 1 and the genesis hash.
    """
    expected_seq = int(_meta(store.db, ANCHOR_SEQ, "1"))
    expected_prev = _meta(store.db, ANCHOR_PREV, GENESIS)
    for row in store.conn.execute("SELECT * FROM audit ORDER BY rowid"):
        seq = row["seq"]
        if seq != expected_seq:
            raise AuditChainBroken(expected_seq, f"missing or out of order (found {seq} next)")
        if row["prev_hash"] != expected_prev:
            raise AuditChainBroken(seq, "does not follow the previous entry")
        try:
            details = json.loads(row["details"])
        except ValueError:
            raise AuditChainBroken(seq, "details are not valid JSON") from None
        digest = _digest(row["prev_hash"], seq, row["at"], row["actor"], row["action"],
                         row["subject"], details)
        if digest != row["hash"]:
            raise AuditChainBroken(seq, "content does not match its hash (modified)")
        expected_prev, expected_seq = row["hash"], seq + 1
    count = expected_seq - 1
    head_count = int(_meta(store.db, _HEAD_COUNT, "0"))
    if head_count != count:
        raise AuditChainBroken(count + 1, f"{head_count - count} entries missing at the end")
    if _meta(store.db, _HEAD_HASH, GENESIS) != expected_prev:
        raise AuditChainBroken(count, "the last entry does not match the recorded head")
    return count


# -- the guards ---------------------------------------------------------------------------
def _normal(sql: str | None) -> str:
    return " ".join((sql or "").split())


def _audit_triggers(conn: sqlite3.Connection) -> dict[str, str]:
    rows = conn.execute("SELECT name, sql FROM sqlite_master WHERE type = 'trigger'"
                        " AND lower(tbl_name) = 'audit' ORDER BY name")
    return {row[0]: row[1] for row in rows}


def guard_problems(conn: sqlite3.Connection) -> list[str]:
    """What is wrong with the append-only triggers: ``[]`` when they are as created."""
    found = _audit_triggers(conn)
    problems = []
    for name, sql in TRIGGERS.items():
        if name not in found:
            problems.append(f"trigger {name} is missing: entries can be {_GUARDED[name]}")
        elif _normal(found[name]) != _normal(sql):
            problems.append(f"trigger {name} was altered: entries can be {_GUARDED[name]}")
    problems += [f"unexpected trigger {name} on the audit table"
                 for name in found if name not in TRIGGERS]
    return problems


def restore_guards(store: Store, *, actor: str) -> dict[str, list[str]]:
    """Put the append-only triggers back as created (``created``: the missing and the
    altered ones), drop any other trigger on the audit table (``removed``), and record it
    in the chain; ``{}`` (and no entry) if they were intact."""
    with store.write() as db:
        found = _audit_triggers(store.conn)
        altered = [name for name in TRIGGERS
                   if name in found and _normal(found[name]) != _normal(TRIGGERS[name])]
        removed = [name for name in found if name not in TRIGGERS]
        created = [name for name in TRIGGERS if name not in found or name in altered]
        if not created and not removed:
            return {}
        for name in altered + removed:
            # Names come from sqlite_master, quoted as identifiers.
            db.execute(f'DROP TRIGGER "{name.replace(chr(34), chr(34) * 2)}"')
        for name in created:
            db.execute(TRIGGERS[name])
        append(db, actor=actor, action=GUARDS_RESTORED,
               details={"created": created, "removed": removed})
    return {"created": created, "removed": removed}


def anchor(store: Store) -> Anchor | None:
    """The retention anchor, with the entry that recorded it; ``None`` if the chain
    still starts at entry 1."""
    seq = _meta(store.db, ANCHOR_SEQ, "")
    if not seq:
        return None
    prev = _meta(store.db, ANCHOR_PREV, GENESIS)
    found = Anchor(int(seq), prev)
    row = store.conn.execute("SELECT seq, at, details FROM audit WHERE action = ?"
                             " ORDER BY seq DESC LIMIT 1", (RETENTION_ACTION,)).fetchone()
    if row is None:
        return found
    try:
        details = json.loads(row[2])
    except ValueError:
        return found
    if str(details.get("anchor_seq")) != seq or details.get("anchor_prev") != prev:
        return found
    return Anchor(int(seq), prev, recorded_by=row[0], recorded_at=row[1],
                  cutoff=details.get("audit_before"))
