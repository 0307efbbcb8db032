"""Owner of the ``audit`` table: the audit chain, append-only, each entry sealed with the
SHA-256 of the previous one.

``hash = SHA-256(prev_hash || RFC 8785 JSON of {seq, at, actor, action, subject, details})``.
The head (count and last hash) is kept in ``meta`` in the same transaction, so a deleted
last entry is caught too. Triggers refuse UPDATE and DELETE; ``verify`` catches whoever
goes around them (one changed, deleted or reordered row is always detected). The retention
policy removes the oldest entries through ``prune``, which keeps an anchor.

The guards themselves are checked, not trusted:

- ``guard_problems`` compares the triggers on the audit table with ``TRIGGERS`` (their SQL,
  spaces aside): one missing, altered or added is reported by ``ordo audit verify`` and
  ``ordo doctor``. Nothing recreates them silently (not the migrations, not opening the
  store): they come back only through ``restore_guards`` (``ordo audit restore-guards``),
  which records an ``audit.guards_restored`` entry naming what it created and removed.
- ``anchor_status`` says where the chain starts after the retention policy cut its oldest
  entries (``audit.anchor_seq`` / ``audit.anchor_prev`` in ``meta``), and which
  ``retention.applied`` entry, of which date, recorded that cut; a cut no entry records is
  a broken chain.
  Whoever can write the file can also forge that entry (the hashes have no secret): the
  answer is the chain head kept off the box, not anything stored on it.

Who, what, when: never a PIN, a patient's name, NIR or birth date in ``details`` — callers
pass opaque identifiers (prescription ID, idNat_PS, job id).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime

import rfc8785

from appliance.domain import Json
from appliance.errors import AuditChainBroken, StoreError
from appliance.ports.uow import AuditAnchor, AuditEntry
from appliance.store import meta
from appliance.store.db import Store

Entry = AuditEntry
GENESIS = "0" * 64
HEAD_COUNT, HEAD_HASH = "audit.count", "audit.head"
# Set by the retention policy (``prune``) in the transaction that deletes the oldest
# entries: the first kept entry and the hash it follows.
ANCHOR_SEQ, ANCHOR_PREV = "audit.anchor_seq", "audit.anchor_prev"
NO_DELETE_TRIGGER = "audit_no_delete"
RETENTION_ACTION = "retention.applied"
GUARDS_RESTORED = "audit.guards_restored"
# The append-only guards, as migration m001 created them (compared spaces aside).
_APPEND_ONLY = "BEGIN SELECT RAISE(ABORT, 'the audit chain is append-only'); END"
TRIGGERS = {
    "audit_no_update": f"CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit\n{_APPEND_ONLY}",
    NO_DELETE_TRIGGER: f"CREATE TRIGGER {NO_DELETE_TRIGGER} BEFORE DELETE ON audit\n"
                       f"{_APPEND_ONLY}",
}
_GUARDED = {"audit_no_update": "changed", NO_DELETE_TRIGGER: "deleted"}
FORBIDDEN_DETAIL_KEYS = frozenset({"pin", "nir", "ins", "name", "birth_date", "first_names",
                                   "birth_name", "used_name", "date_naissance", "nom", "prenoms"})


def _digest(prev_hash: str, seq: int, at: str, actor: str, action: str, subject: str,
            details: Mapping[str, Json]) -> str:
    body = canonical_json({"seq": seq, "at": at, "actor": actor, "action": action,
                           "subject": subject, "details": dict(details)})
    return hashlib.sha256(prev_hash.encode("ascii") + body).hexdigest()


_SAFE_INT = 2 ** 53 - 1  # RFC 8785 numbers are IEEE 754 doubles: larger integers go through it


def _plain(value: object) -> bool:
    """True when ``value`` holds only what sorted compact JSON writes exactly as RFC 8785
    does: ASCII keys, strings without lone surrogates, booleans, None, integers of at most
    53 bits, lists and dicts of these (no floats: their shortest form differs). Exact types
    (a subclass may write itself otherwise), tested inline so that the checker narrows."""
    if type(value) is str:
        return value.isascii() or not any("\ud800" <= c <= "\udfff" for c in value)
    if type(value) is bool or value is None:
        return True
    if type(value) is int:
        return -_SAFE_INT <= value <= _SAFE_INT
    if type(value) is dict:
        return all(type(k) is str and k.isascii() and _plain(v) for k, v in value.items())
    if type(value) is list or type(value) is tuple:
        return all(_plain(v) for v in value)
    return False


def canonical_json(value: Json) -> bytes:
    """RFC 8785 (JSON Canonicalization Scheme) bytes of ``value``. For the content of an
    audit entry (ASCII keys, strings, small integers, booleans) JCS is ``json.dumps`` with
    sorted keys, no spaces and raw UTF-8: the same escapes and the same order, about five
    times cheaper than the reference implementation, which takes everything else."""
    if _plain(value):
        return json.dumps(value, sort_keys=True, separators=(",", ":"),
                          ensure_ascii=False).encode("utf-8")
    return rfc8785.dumps(value)


def append(store: Store, *, actor: str, action: str, subject: str = "",
           details: Mapping[str, Json] | None = None, at: datetime | None = None) -> int:
    """Append one entry and return its sequence number: in the caller's write transaction,
    or in one of its own when none is open (maintenance jobs and tests)."""
    return append_many(store, [(actor, action, subject, details)], at=at)[0]


NewEntry = tuple[str, str, str, "Mapping[str, Json] | None"]  # actor, action, subject, details
_INSERT = "INSERT INTO audit (seq, at, actor, action, subject, details, prev_hash, hash) VALUES "
_ROW, _WIDTH = "(?, ?, ?, ?, ?, ?, ?, ?)", 8
_INSERT_CHUNK = 500  # entries per statement (8 parameters each)


def append_many(store: Store, items: Sequence[NewEntry],
                at: datetime | None = None) -> list[int]:
    """Append entries in order, all at time ``at``, and return their sequence numbers: the
    head is read once, the rows inserted by one statement (per 500 entries) and the head
    written once (a batch of the sync drain costs three statements, whatever its size).
    Each entry is chained to the one before it exactly as ``append`` would chain it."""
    if not store.in_transaction:
        with store.write():
            return append_many(store, items, at=at)
    if not items:
        return []
    when = (at or datetime.now(UTC)).astimezone(UTC).isoformat(timespec="microseconds")
    head = dict(store.execute("SELECT key, value FROM meta WHERE key IN (?, ?)",
                              (HEAD_COUNT, HEAD_HASH)).fetchall())
    seq = int(head.get(HEAD_COUNT) or 0)
    prev = head.get(HEAD_HASH) or GENESIS
    rows: list[str | int] = []
    seqs = []
    for actor, action, subject, details in items:
        details = dict(details or {})
        leaked = FORBIDDEN_DETAIL_KEYS.intersection(k.lower() for k in details)
        if leaked:
            raise StoreError(f"audit details must not carry {sorted(leaked)}")
        seq += 1
        digest = _digest(prev, seq, when, actor, action, subject, details)
        rows += (seq, when, actor, action, subject,
                 json.dumps(details, ensure_ascii=False, sort_keys=True), prev, digest)
        seqs.append(seq)
        prev = digest
    step = _INSERT_CHUNK * _WIDTH
    for start in range(0, len(rows), step):
        chunk = rows[start:start + step]
        store.execute(_INSERT + ",".join([_ROW] * (len(chunk) // _WIDTH)), chunk)
    meta.put(store, (HEAD_COUNT, str(seq)), (HEAD_HASH, prev))
    return seqs


def entries(store: Store, since: int = 0) -> list[AuditEntry]:
    rows = store.query("SELECT * FROM audit WHERE seq > ? ORDER BY seq", (since,))
    return [AuditEntry(**{**row, "details": json.loads(row["details"])}) for row in rows]


def verify(store: Store) -> int:
    """Walk the chain; return the number of entries, or raise ``AuditChainBroken``
    naming the first entry that does not verify.

    After a retention run the chain starts at the anchor kept in ``meta`` (first kept
    entry, and the hash it follows) instead of entry 1 and the genesis hash.
    """
    expected_seq = int(meta.get(store, ANCHOR_SEQ, "1") or 1)
    expected_prev = meta.get(store, ANCHOR_PREV, GENESIS) or GENESIS
    for row in store.execute("SELECT * FROM audit ORDER BY rowid"):
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
    head_count = int(meta.get(store, HEAD_COUNT, "0") or 0)
    if head_count != count:
        raise AuditChainBroken(count + 1, f"{head_count - count} entries missing at the end")
    if meta.get(store, HEAD_HASH, GENESIS) != expected_prev:
        raise AuditChainBroken(count, "the last entry does not match the recorded head")
    return count


def prunable(store: Store, before: str) -> tuple[int, int, str]:
    """What ``prune(before)`` would remove: (entries, first kept entry, the hash it
    follows); (0, ..) when nothing goes (the anchor already covers it)."""
    head_seq = int(meta.get(store, HEAD_COUNT, "0") or 0)
    start = int(meta.get(store, ANCHOR_SEQ, "1") or 1)
    first_young = store.one("SELECT min(seq) FROM audit WHERE julianday(at) >= julianday(?)",
                            [before])
    first_kept = head_seq + 1 if first_young is None else int(first_young)
    count = store.one("SELECT count(*) FROM audit WHERE seq < ?", [first_kept])
    if not count or first_kept <= start:
        return 0, start, ""
    if first_young is None:
        prev = meta.get(store, HEAD_HASH, GENESIS) or GENESIS
    else:
        prev = store.one("SELECT prev_hash FROM audit WHERE seq = ?", [first_kept])
    return int(count), first_kept, str(prev)


def prune(store: Store, first_kept: int, prev: str) -> None:
    """Delete the entries before ``first_kept`` (in the caller's write transaction) and
    anchor the chain there: ``verify`` then starts at ``first_kept`` after ``prev``.

    The append-only trigger is dropped and recreated from its own stored SQL: a missing or
    altered one stays as it was, for ``guard_problems`` to report."""
    store.require_write("audit.prune")
    trigger = store.one("SELECT sql FROM sqlite_master WHERE type = 'trigger' AND name = ?",
                        [NO_DELETE_TRIGGER])
    if trigger is not None:
        store.execute(f"DROP TRIGGER {NO_DELETE_TRIGGER}")
    store.execute("DELETE FROM audit WHERE seq < ?", [first_kept])
    if trigger is not None:
        store.execute(trigger)
    meta.put(store, (ANCHOR_SEQ, str(first_kept)), (ANCHOR_PREV, prev))


def anchor(store: Store) -> tuple[int | None, str | None]:
    """The raw anchor in ``meta``: (first kept entry, the hash it follows), or Nones."""
    seq = meta.get(store, ANCHOR_SEQ)
    return (int(seq) if seq else None), meta.get(store, ANCHOR_PREV)


# -- the guards ---------------------------------------------------------------------------
def _normal(sql: str | None) -> str:
    return " ".join((sql or "").split())


def _audit_triggers(store: Store) -> dict[str, str]:
    rows = store.execute("SELECT name, sql FROM sqlite_master WHERE type = 'trigger'"
                         " AND lower(tbl_name) = 'audit' ORDER BY name")
    return {row[0]: row[1] for row in rows}


def guard_problems(store: Store) -> list[str]:
    """What is wrong with the append-only triggers: ``[]`` when they are as created."""
    found = _audit_triggers(store)
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
    in the chain, in the caller's write transaction; ``{}`` (and no entry) if they were
    intact."""
    store.require_write("audit.restore_guards")
    found = _audit_triggers(store)
    altered = [name for name in TRIGGERS
               if name in found and _normal(found[name]) != _normal(TRIGGERS[name])]
    removed = [name for name in found if name not in TRIGGERS]
    created = [name for name in TRIGGERS if name not in found or name in altered]
    if not created and not removed:
        return {}
    for name in altered + removed:
        # Names come from sqlite_master, quoted as identifiers.
        store.execute(f'DROP TRIGGER "{name.replace(chr(34), chr(34) * 2)}"')
    for name in created:
        store.execute(TRIGGERS[name])
    append(store, actor=actor, action=GUARDS_RESTORED,
           details={"created": created, "removed": removed})
    return {"created": created, "removed": removed}


def anchor_status(store: Store) -> AuditAnchor | None:
    """The retention anchor, with the entry that recorded it; ``None`` if the chain
    still starts at entry 1."""
    seq = meta.get(store, ANCHOR_SEQ)
    if not seq:
        return None
    prev = meta.get(store, ANCHOR_PREV, GENESIS) or GENESIS
    found = AuditAnchor(int(seq), prev)
    row = store.execute("SELECT seq, at, details FROM audit WHERE action = ?"
                        " ORDER BY seq DESC LIMIT 1", (RETENTION_ACTION,)).fetchone()
    if row is None:
        return found
    try:
        details = json.loads(row[2])
    except ValueError:
        return found
    if str(details.get("anchor_seq")) != seq or details.get("anchor_prev") != prev:
        return found
    return AuditAnchor(int(seq), prev, recorded_by=row[0], recorded_at=row[1],
                       cutoff=details.get("audit_before"))


class AuditTable:
    """The ``AuditLog`` repository of a unit of work."""

    def __init__(self, store: Store) -> None:
        self._store = store

    def append(self, *, actor: str, action: str, subject: str = "",
               details: Mapping[str, Json] | None = None, at: datetime | None = None) -> int:
        self._store.require_write("audit.append")
        return append(self._store, actor=actor, action=action, subject=subject,
                      details=details, at=at)

    def append_many(self, items: Sequence[NewEntry], at: datetime | None = None) -> list[int]:
        self._store.require_write("audit.append")
        return append_many(self._store, items, at=at)

    def entries(self, since: int = 0) -> list[AuditEntry]:
        return entries(self._store, since)

    def verify(self) -> int:
        return verify(self._store)

    def guard_problems(self) -> list[str]:
        return guard_problems(self._store)

    def restore_guards(self, *, actor: str) -> dict[str, list[str]]:
        return restore_guards(self._store, actor=actor)

    def anchor(self) -> AuditAnchor | None:
        return anchor_status(self._store)

    def head(self) -> tuple[int, str]:
        return (int(meta.get(self._store, HEAD_COUNT, "0") or 0),
                meta.get(self._store, HEAD_HASH, GENESIS) or GENESIS)

    def hash_at(self, seq: int) -> str | None:
        rows = self._store.query("SELECT hash FROM audit WHERE seq = ?", (seq,))
        return rows[0]["hash"] if rows else None
