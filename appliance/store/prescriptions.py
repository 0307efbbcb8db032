"""Owner of the ``prescriptions`` table: drafts, signed prescriptions, their states.

A signed prescription is stored with the exact bytes the card signed (``signed_payload``,
when they are not ``canonical_bytes()``), in the transaction that also writes its outbox
row, its first print job and its audit entry (``appliance.services.signature.record_signature``).
``purge`` is the retention policy's: it removes old prescriptions with every row of the
other tables that refers to them, as a foreign key with ``ON DELETE CASCADE`` would.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import zlib
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime

from appliance.domain import Json
from appliance.domain.prescription import Prescription, State
from appliance.errors import StoreError, ValidationError
from appliance.integrity import rebuilt_signed_part
from appliance.ports.clock import iso, utc_now
from appliance.ports.uow import SignedRow
from appliance.store import certificates
from appliance.store.db import SqlValue, Store, upsert_sql

_IN_CHUNK = 500  # bound parameters per query (SQLite allows 32,766 since 3.32)
# The signer's certificate is kept once in ``certificates`` (migration m009).
_SIGNED_SQL = ("SELECT p.id, p.body, p.signature, c.der, p.signed_payload FROM prescriptions p"
               " LEFT JOIN certificates c ON c.id = p.signer_cert_id WHERE p.id IN ({})")
_COLUMNS = ("id", "state", "resident_ins", "prescriber_id", "created_at", "signed_at",
            "updated_at", "body", "cancel_reason", "signature", "signer_cert_id",
            "signed_payload", "lines_end")
_UPSERT = upsert_sql("prescriptions", _COLUMNS, "id")


# -- the stored body -------------------------------------------------------------------------
# A draft's body is ``to_dict()`` as JSON text, written again at every keystroke. A signed
# prescription's body is written once and changes only with its state: it is kept
# compressed (``BODY_V1`` then raw DEFLATE, RFC 1951, with the preset dictionary below),
# about 300 bytes instead of 1,060 (a row then shares its page with three others). The
# dictionary is part of the format: never change it, add a version.
BODY_V1 = b"\x01"
_ZDICT_V1 = (
    '{"v":1,"id":"","created_at":"","prescriber":{"id_nat_ps":"","last_name":"",'
    '"first_name":"","profession":"Médecin","am":"","finess":""},"resident":{"ins":"",'
    '"ins_oid":"1.2.250.1.213.1.4.8","birth_name":"","used_name":"","first_names":"",'
    '"birth_date":"","sex":"F","objection":false},"renewals":0,"lines":[{"kind":"medication",'
    '"label":"","cis":"","cip13":"34009","posology":{"kind":"structured","dose":"1",'
    '"unit":"comprimé","moments":["matin","midi","soir","coucher"],"duration":{"value":,'
    '"unit":"jour"},"as_needed":false},"ald":false,"non_substitution":},{"kind":"device",'
    '"label":"","lpp":"","quantity":""},{"kind":"act","text":""}],"room":"",'
    '"prescriber_role":"prescriber","state":"registered","signed_at":"","updated_at":"",'
    '"cancel_reason":null}').encode()


# ``BODY_V2`` (migration m011): the same with a dictionary that also holds the 24 most
# frequent pharmaceutical forms of the marketed drugs in the BDPM (``CIS_bdpm.txt``, third
# column, counted in the 2022 extract; least frequent first, since DEFLATE reaches the end of
# a dictionary more cheaply) and the lifecycle times' shape: about 25 bytes less a body.
BODY_V2 = b"\x02"
_FORMS_V2 = (
    "comprimé gastro-résistant(e), capsule molle, poudre pour suspension buvable, dispositif, "
    "gel, gélule gastro-résistant(e), poudre pour solution injectable, comprimé enrobé, "
    "comprimé orodispersible, gélule à libération prolongée, crème, collyre en solution, "
    "comprimé à libération prolongée, poudre et solvant pour solution injectable, "
    "solution à diluer pour perfusion, solution pour perfusion, solution buvable, "
    "comprimé pelliculé sécable, comprimé sécable, gélule, "
    "comprimé et solution(s) et granules et poudre et pommade, solution injectable, "
    "comprimé, comprimé pelliculé, mg, microgrammes")
_ZDICT_V2 = _FORMS_V2.encode() + _ZDICT_V1 + (
    b',"created_at":"2026-01-01T00:00:00.000+00:00","signed_at":"2026-01-01T00:00:00.000'
    b'+00:00","updated_at":"2026-')
_ZDICTS = {BODY_V1: _ZDICT_V1, BODY_V2: _ZDICT_V2}


def encode_body(data: Mapping[str, Json]) -> bytes:
    """A signed prescription's ``to_dict()`` as stored (see above), in the current form."""
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    return BODY_V2 + _deflate_v2(text)


def decode_body(raw: str | bytes) -> str:
    """The JSON text of a stored body, whichever form it has."""
    if isinstance(raw, str):
        return raw
    raw = bytes(raw)
    zdict = _ZDICTS.get(raw[:1])
    if zdict is None:
        raise StoreError(f"unknown prescription body format {raw[:1]!r}")
    try:
        inflate = zlib.decompressobj(-15, zdict)
        return (inflate.decompress(raw[1:]) + inflate.flush()).decode("utf-8")
    except (zlib.error, UnicodeDecodeError) as exc:
        raise StoreError(f"a stored prescription body is damaged ({exc})") from exc


def _body(p: Prescription) -> str | bytes:
    data = p.to_dict()
    if p.state is State.DRAFT:
        return json.dumps(data, ensure_ascii=False)
    return encode_body(data)


def _row(p: Prescription, *, signature: bytes | None = None, signer_cert_id: int | None = None,
         signed_payload: bytes | None = None) -> list[SqlValue]:
    body = _body(p)
    if signed_payload is not None:  # compared with what is rebuilt from the stored body
        # (kept as the card signed it when that fails: a signed prescription is never lost)
        with contextlib.suppress(ValueError, KeyError, TypeError, ValidationError, StoreError):
            signed_payload = stored_payload(_load(body), signed_payload)
    signed_at = None if p.signed_at is None else _iso_ms(p.signed_at)
    return [p.id, p.state.value, p.resident.ins.value, p.prescriber.id_nat_ps,
            _iso_ms(p.created_at), signed_at, iso(utc_now()), body, p.cancel_reason,
            signature, signer_cert_id, signed_payload,
            None if signed_at is None else _lines_end(signed_at, p.to_dict())]


def _lines_end(signed_at: str, data: Mapping[str, Json]) -> int | None:
    """The ``lines_end`` column (``appliance.store.views.lines_end``); None (its bodies are
    then always read for the resident's treatment) when a line does not load."""
    from appliance.store.views import lines_end  # views reads bodies with decode_body

    try:
        return lines_end(signed_at, data)
    except (ValueError, KeyError, TypeError, ValidationError):
        return None


_STATES = {s.value: s for s in State}  # a dictionary is cheaper than the enum's call


def _load(body: str | bytes) -> Prescription:
    return Prescription.from_dict(json.loads(decode_body(body)))


class PrescriptionsTable:
    def __init__(self, store: Store) -> None:
        self._store = store

    # -- reads ------------------------------------------------------------------------------
    def get(self, prescription_id: str) -> Prescription | None:
        body = self._store.one("SELECT body FROM prescriptions WHERE id = ?", [prescription_id])
        return None if body is None else _load(body)

    def state_of(self, prescription_id: str) -> State | None:
        value = self._store.one("SELECT state FROM prescriptions WHERE id = ?",
                                [prescription_id])
        return None if value is None else _STATES.get(value) or State(value)

    def drafts_of(self, id_nat_ps: str) -> list[Prescription]:
        return [_load(row[0]) for row in self._store.execute(
            "SELECT body FROM prescriptions WHERE state = 'draft' AND prescriber_id = ?"
            " ORDER BY updated_at DESC", [id_nat_ps])]

    def of_resident(self, ins: str) -> list[Prescription]:
        return [_load(row[0]) for row in self._store.execute(
            "SELECT body FROM prescriptions WHERE resident_ins = ? ORDER BY created_at DESC",
            [ins])]

    def signed_rows(self, prescription_ids: Iterable[str]) -> dict[str, SignedRow]:
        ids = list(dict.fromkeys(prescription_ids))
        rows: dict[str, SignedRow] = {}
        cursor = self._store.conn.cursor()
        cursor.row_factory = None  # plain tuples: a batch is read at every step of a drain
        for start in range(0, len(ids), _IN_CHUNK):
            chunk = ids[start:start + _IN_CHUNK]
            sql = _SIGNED_SQL.format(",".join("?" * len(chunk)))  # placeholders only
            try:
                found = cursor.execute(sql, chunk).fetchall()
            except sqlite3.Error as exc:
                raise self._store.failed(exc) from exc
            for pid, body, signature, cert, payload in found:
                rows[pid] = SignedRow(pid, decode_body(body), _bytes(signature),
                                      _bytes(cert), _bytes(payload))
        return rows

    def cancel_reason(self, prescription_id: str) -> str:
        return self._store.one("SELECT cancel_reason FROM prescriptions WHERE id = ?",
                               [prescription_id]) or ""

    # -- writes -----------------------------------------------------------------------------
    def _refuse_unless_draft(self, p: Prescription) -> None:
        existing = self._store.one("SELECT state FROM prescriptions WHERE id = ?", [p.id])
        if existing is not None and existing != State.DRAFT.value:
            raise StoreError(f"prescription {p.id} is already {existing}")

    def save_draft(self, draft: Prescription) -> None:
        self._store.require_write("prescriptions")
        if draft.state is not State.DRAFT:
            raise StoreError(f"prescription {draft.id} is {draft.state.value}, not a draft")
        self._refuse_unless_draft(draft)
        self._store.execute(_UPSERT, _row(draft))

    def delete_draft(self, prescription_id: str) -> bool:
        self._store.require_write("prescriptions")
        return self._store.execute("DELETE FROM prescriptions WHERE id = ? AND state = 'draft'",
                                   [prescription_id]).rowcount > 0

    def add_signed(self, prescription: Prescription, *, signature: bytes, signer_cert: bytes,
                   signed_payload: bytes | None) -> None:
        self._store.require_write("prescriptions")
        if prescription.state is not State.SIGNED:
            raise StoreError(f"prescription {prescription.id} is "
                             f"{prescription.state.value}, not signed")
        self._refuse_unless_draft(prescription)
        self._store.execute(_UPSERT, _row(prescription, signature=signature,
                                          signer_cert_id=certificates.intern(self._store,
                                                                             signer_cert),
                                          signed_payload=signed_payload))

    def save_state(self, prescription: Prescription) -> State:
        self._store.require_write("prescriptions")
        before = self.state_of(prescription.id)
        if before is None:
            raise StoreError(f"unknown prescription {prescription.id}")
        self._store.execute(
            "UPDATE prescriptions SET state = ?, body = ?, updated_at = ?, cancel_reason = ?"
            " WHERE id = ?", [prescription.state.value, _body(prescription),
                              iso(utc_now()), prescription.cancel_reason, prescription.id])
        return before

    def record_receipts(self, receipts: Mapping[str, str], at: datetime, *,
                        promote: tuple[State, State]) -> set[str]:
        """Store the registry's receipt of each prescription (ID → receipt) and move those
        still in state ``promote[0]`` to ``promote[1]`` (a transition the caller checked
        with the domain) at ``at``: one read and at most two writes (per 500 rows), whatever
        the number; returns the IDs moved."""
        self._store.require_write("prescriptions")
        if not receipts:
            return set()
        before, after = promote
        ids = list(receipts)
        moved: set[str] = set()
        stamp, column = _iso_ms(at), iso(utc_now())
        changed: list[SqlValue] = []
        for start in range(0, len(ids), _IN_CHUNK):
            chunk = ids[start:start + _IN_CHUNK]
            for pid, raw in self._store.execute(
                    "SELECT id, body FROM prescriptions WHERE state = ? AND id IN"  # noqa: S608
                    f" ({','.join('?' * len(chunk))})", [before.value, *chunk]):
                data = json.loads(decode_body(raw))
                data["state"], data["updated_at"] = after.value, stamp
                changed += (pid, receipts[pid], encode_body(data))
                moved.add(pid)
        kept: list[SqlValue] = []
        for pid in ids:
            if pid not in moved:
                kept += (pid, receipts[pid])
        # one statement per 500 rows each (placeholders only), the move guarded by the state
        for start in range(0, len(kept), 2 * _IN_CHUNK):
            pairs = kept[start:start + 2 * _IN_CHUNK]
            self._store.execute(
                "UPDATE prescriptions SET registry_receipt = v.column2"  # noqa: S608
                f" FROM (VALUES {','.join(['(?, ?)'] * (len(pairs) // 2))}) AS v"
                " WHERE prescriptions.id = v.column1", pairs)
        for start in range(0, len(changed), 3 * _IN_CHUNK):
            triples = changed[start:start + 3 * _IN_CHUNK]
            self._store.execute(
                "UPDATE prescriptions SET registry_receipt = v.column2, state = ?,"  # noqa: S608
                " updated_at = ?, body = v.column3"
                f" FROM (VALUES {','.join(['(?, ?, ?)'] * (len(triples) // 3))}) AS v"
                " WHERE prescriptions.id = v.column1 AND prescriptions.state = ?",
                [after.value, column, *triples, before.value])
        return moved

    def set_registry_receipt(self, prescription_id: str, receipt_id: str) -> None:
        self._store.require_write("prescriptions")
        self._store.execute("UPDATE prescriptions SET registry_receipt = ? WHERE id = ?",
                            [receipt_id, prescription_id])


def stored_payload(prescription: Prescription, signed_part: bytes | None) -> bytes | None:
    """What a signed row keeps of the bytes the card signed: nothing (NULL) when they are
    the signed part rebuilt from the body (``appliance.integrity.rebuilt_signed_part``, as
    ``SignedRow.load`` rebuilds it), which is the usual case; 150 bytes a prescription."""
    if signed_part is not None and rebuilt_signed_part(prescription) == signed_part:
        return None
    return signed_part


def compact_signed_rows(store: Store) -> int:
    """Migration m011, over the signed rows 2,000 at a time: ``signed_payload`` set to NULL
    where it is byte for byte the signed part rebuilt from the row's body
    (``stored_payload``), ``lines_end`` filled in, a ``BODY_V1`` body compressed again as
    ``BODY_V2`` (the same JSON text); returns the number of payloads cleared. A row whose
    body does not load is left as it is (and its ``lines_end`` NULL)."""
    store.require_write("prescriptions")
    last = changed = 0
    while True:
        rows = store.execute("SELECT rowid, body, signed_at, signed_payload"
                             " FROM prescriptions WHERE rowid > ? AND signed_at IS NOT NULL"
                             " AND state != 'draft' ORDER BY rowid LIMIT 2000",
                             [last]).fetchall()
        if not rows:
            return changed
        updates = []
        for rowid, body, signed_at, payload in rows:
            try:
                text = decode_body(body)
                data = json.loads(text)
                kept = None if payload is None else stored_payload(
                    Prescription.from_dict(data), bytes(payload))
            except (ValueError, KeyError, TypeError, ValidationError, StoreError):
                continue
            changed += payload is not None and kept is None
            if isinstance(body, bytes) and body[:1] == BODY_V1:  # the same text, smaller
                body = BODY_V2 + _deflate_v2(text.encode("utf-8"))
            updates.append((body, kept, _lines_end(signed_at, data), rowid))
        store.conn.executemany("UPDATE prescriptions SET body = ?, signed_payload = ?,"
                               " lines_end = ? WHERE rowid = ?", updates)
        last = rows[-1][0]


def _deflate_v2(text: bytes) -> bytes:
    # zlib's default memLevel (8), not 9: for a body of a few kilobytes the output is the
    # same bytes, and 9 allocates and clears about 300 KB more state per call (measured:
    # 110 µs against 20 µs a body; every acknowledgement writes its body again).
    deflate = zlib.compressobj(9, zlib.DEFLATED, -15, 8, zlib.Z_DEFAULT_STRATEGY, _ZDICT_V2)
    return deflate.compress(text) + deflate.flush()


def move_certificates(store: Store) -> int:
    """Migration m009: refer each prescription's signer certificate (the old
    ``signer_cert`` column) by its id in ``certificates``, 5,000 rows at a time; returns
    the number of rows moved. The caller drops the old column."""
    store.require_write("prescriptions")
    ids: dict[bytes, int] = {}
    last = moved = 0
    while True:
        rows = store.execute("SELECT rowid, signer_cert FROM prescriptions WHERE rowid > ?"
                             " AND signer_cert IS NOT NULL ORDER BY rowid LIMIT 5000",
                             [last]).fetchall()
        if not rows:
            return moved
        updates = []
        for rowid, der in rows:
            der = bytes(der)
            cert_id = ids.get(der)
            if cert_id is None:
                cert_id = ids[der] = certificates.intern(store, der)
            updates.append((cert_id, rowid))
        store.conn.executemany("UPDATE prescriptions SET signer_cert_id = ? WHERE rowid = ?",
                               updates)
        moved += len(updates)
        last = rows[-1][0]


def _iso_ms(moment: datetime) -> str:
    """A lifecycle time as ``Prescription.to_dict()`` writes it in the body."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds")


def _bytes(value: bytes | None) -> bytes | None:
    return None if value is None else bytes(value)


# -- retention ---------------------------------------------------------------------------------
_SELECT_PRUNABLE = (
    "INSERT INTO temp._ordo_retention (id) SELECT p.id FROM prescriptions p"
    " WHERE p.state IN ({states})"
    " AND julianday(p.created_at) < julianday(?) AND julianday(p.updated_at) < julianday(?)"
    " AND NOT EXISTS (SELECT 1 FROM outbox o WHERE o.prescription_id = p.id"
    "                 AND o.status = 'pending')"
    " AND NOT EXISTS (SELECT 1 FROM print_jobs j WHERE j.prescription_id = p.id"
    "                 AND j.status = 'queued')"
)


def _referring(store: Store) -> list[tuple[str, str]]:
    """(table, column) pairs that refer to a prescription: a foreign key to
    ``prescriptions``, or a ``prescription_id`` column."""
    found = []
    tables = [row[0] for row in store.execute(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
        " AND name NOT IN ('prescriptions', 'audit') ORDER BY name")]
    for table in tables:
        columns = {row[1] for row in store.execute(f'PRAGMA table_info("{table}")')}
        refs = {row[3] for row in store.execute(f'PRAGMA foreign_key_list("{table}")')
                if row[2] == "prescriptions"}
        if "prescription_id" in columns:
            refs.add("prescription_id")
        found += [(table, column) for column in sorted(refs)]
    return found


def purge(store: Store, states: Iterable[State], before: str, *, dry_run: bool = False
          ) -> tuple[int, dict[str, int]]:
    """Delete (or with ``dry_run`` only count) the prescriptions in ``states`` created and
    last updated before ``before`` with nothing pending (outbox) or queued (printer), and
    the rows of the other tables that refer to them, in the caller's write transaction.
    Returns (prescriptions, rows per other table)."""
    store.require_write("prescriptions.purge")
    wanted = [s.value for s in states]
    store.execute("DROP TABLE IF EXISTS temp._ordo_retention")
    store.execute("CREATE TABLE temp._ordo_retention (id TEXT PRIMARY KEY)")
    try:
        store.execute(_SELECT_PRUNABLE.format(states=", ".join("?" * len(wanted))),
                      [*wanted, before, before])
        count = int(store.one("SELECT count(*) FROM temp._ordo_retention"))
        related: dict[str, int] = {}
        if not count:
            return 0, related
        for table, column in _referring(store):
            # Table and column names come from sqlite_master, never from input.
            where = f'"{column}" IN (SELECT id FROM temp._ordo_retention)'  # noqa: S608
            if dry_run:
                n = store.one(f'SELECT count(*) FROM "{table}" WHERE {where}')  # noqa: S608
            else:
                n = store.execute(f'DELETE FROM "{table}" WHERE {where}').rowcount  # noqa: S608
            related[table] = related.get(table, 0) + int(n)
        if dry_run:
            freed = certificates.count_freed(store, "temp._ordo_retention")
        else:
            store.execute("DELETE FROM prescriptions"
                          " WHERE id IN (SELECT id FROM temp._ordo_retention)")
            freed = certificates.purge_unused(store)
        if freed:
            related["certificates"] = freed
        return count, related
    finally:
        store.execute("DROP TABLE IF EXISTS temp._ordo_retention")
