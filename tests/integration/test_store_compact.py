"""A signed prescription keeps no copy of the bytes the card signed when its body rebuilds
them (migration m011), on a real SQLite file: every prescription still loads with the very
bytes that were signed, its QR verifies, an altered body is still refused, and a store made
before m011 is converted at start-up with its audit chain intact. New files get 8 KiB
pages; an existing file keeps its own."""

from __future__ import annotations

import json
import logging
import sqlite3
import zlib
from contextlib import contextmanager

import pytest

from appliance.domain.prescription import Prescription
from appliance.domain.qr import SignedOrder
from appliance.errors import TamperedPrescription
from appliance.services import printing
from appliance.services.printing import order_payload
from appliance.services.signature import verify_payload
from appliance.store import audit, open_store
from appliance.store.db import PAGE_SIZE
from appliance.store.migrations import applied
from appliance.store.prescriptions import (
    _ZDICT_V1,
    BODY_V1,
    BODY_V2,
    decode_body,
    encode_body,
)
from appliance.store.uow import SqliteUnitOfWork

pytestmark = pytest.mark.integration


def _signer(uow, prescription_id: str):
    from cryptography import x509

    row = uow.prescriptions.signed_rows([prescription_id])[prescription_id]
    return x509.load_der_x509_certificate(row.signer_cert)


def _v1(text: str) -> bytes:
    """A body as the version before m011 compressed it."""
    deflate = zlib.compressobj(9, zlib.DEFLATED, -15, 9, zlib.Z_DEFAULT_STRATEGY, _ZDICT_V1)
    return BODY_V1 + deflate.compress(text.encode()) + deflate.flush()


def _as_before_m011(store, made) -> None:
    """What the version before m011 left: each signed row with the card's bytes, its body
    compressed with the first dictionary, no ``lines_end``."""
    bodies = [(_v1(decode_body(row["body"])), row["id"])
              for row in store.query("SELECT id, body FROM prescriptions")]
    with store.write() as db:
        db.conn.executemany("UPDATE prescriptions SET body = ? WHERE id = ?", bodies)
        db.conn.executemany("UPDATE prescriptions SET signed_payload = ? WHERE id = ?",
                            [(s.payload.signed_bytes, s.prescription.id) for s in made])
        db.execute("UPDATE prescriptions SET lines_end = NULL")
        db.execute("DELETE FROM _migrations WHERE name = 'm011_compact_signed_rows'")


def test_a_signed_prescription_loads_with_the_bytes_the_card_signed(orders, store, uow,
                                                                   print_trust):
    made = orders.sign_many(3)
    stored = store.query("SELECT signed_payload FROM prescriptions")
    assert [row["signed_payload"] for row in stored] == [None, None, None]
    rows = uow.prescriptions.signed_rows([p.id for p in made])
    for signed in orders.made:
        proof = rows[signed.prescription.id].load().proof
        assert proof.signed_part == signed.payload.signed_bytes   # bit for bit
        prescription, payload = order_payload(uow, signed.prescription.id, "signed")
        assert prescription == signed.prescription
        verify_payload(payload, *print_trust,
                       certificates=[_signer(uow, signed.prescription.id)])


def test_an_altered_body_is_refused_without_its_signed_part_stored(orders, store, uow):
    [p] = orders.sign_many()
    body = json.loads(decode_body(store.one("SELECT body FROM prescriptions")))
    body["lines"][0]["posology"]["dose"] = "4"
    store.conn.execute("UPDATE prescriptions SET body = ? WHERE id = ?",
                       [encode_body(body), p.id])
    with pytest.raises(TamperedPrescription, match="empreinte signée"):
        uow.prescriptions.signed_rows([p.id])[p.id].load()
    with pytest.raises(TamperedPrescription):
        printing.order_payload(uow, p.id)


def test_a_store_made_before_m011_is_converted_and_every_prescription_verifies(
        orders, store, tmp_path, print_trust):
    made = orders.sign_many(6)
    physician = {p.id for p in made}
    made += orders.sign_many(2, profile="expired")
    _as_before_m011(store, orders.made)
    odd = made[0].id       # a stored part that is not the rebuilt one is kept as it is
    store.conn.execute("UPDATE prescriptions SET signed_payload = ? WHERE id = ?",
                       [b"1\x1fsomething else", odd])
    before = {row["id"]: bytes(row["signed_payload"])
              for row in store.query("SELECT id, signed_payload FROM prescriptions")}
    texts = {row["id"]: decode_body(row["body"])
             for row in store.query("SELECT id, body FROM prescriptions")}
    assert all(before.values()) and "m011_compact_signed_rows" not in applied(store)
    audited = audit.verify(store)
    path = store.path
    store.close()

    again = open_store(path)  # start-up: the migrations
    try:
        assert "m011_compact_signed_rows" in applied(again)
        after = {row["id"]: row["signed_payload"]
                 for row in again.query("SELECT id, signed_payload FROM prescriptions")}
        assert after == {pid: (before[odd] if pid == odd else None) for pid in before}
        bodies = {row["id"]: row["body"]
                  for row in again.query("SELECT id, body FROM prescriptions")}
        assert {pid: (body[:1], decode_body(body)) for pid, body in bodies.items()} == {
            pid: (BODY_V2, text) for pid, text in texts.items()}    # the same JSON text
        assert again.one("SELECT count(*) FROM prescriptions WHERE lines_end IS NULL") == 0
        assert audit.verify(again) == audited   # nothing appended, the chain intact
        uow = SqliteUnitOfWork(again, owns=False)
        rows = uow.prescriptions.signed_rows(list(before))
        for signed in orders.made:
            pid = signed.prescription.id
            if pid == odd:
                continue
            loaded = rows[pid].load()
            assert loaded.prescription == signed.prescription
            assert loaded.proof.signed_part == before[pid] == signed.payload.signed_bytes
            assert loaded.proof.signed_part == SignedOrder.from_prescription(
                Prescription.from_dict(json.loads(rows[pid].body))).to_bytes()
            if pid in physician:  # the expired card's orders are checked by load() only
                _, payload = order_payload(uow, pid, "signed")
                verify_payload(payload, *print_trust, certificates=[_signer(uow, pid)])
        with pytest.raises(TamperedPrescription):
            rows[odd].load()
    finally:
        again.close()


def test_a_new_file_gets_8_kib_pages_and_an_existing_one_keeps_its_own(tmp_path):
    fresh = open_store(tmp_path / "new" / "ordo.sqlite")
    try:
        assert fresh.one("PRAGMA page_size") == PAGE_SIZE == 8192
    finally:
        fresh.close()
    old_path = tmp_path / "old" / "ordo.sqlite"
    old_path.parent.mkdir()
    conn = sqlite3.connect(old_path)
    conn.execute("PRAGMA page_size = 4096")
    conn.execute("CREATE TABLE t (x)")
    conn.close()
    old = open_store(old_path)
    try:
        assert old.one("PRAGMA page_size") == 4096
        assert "m011_compact_signed_rows" in applied(old)
    finally:
        old.close()


def test_the_treatment_is_the_same_after_m011_and_reads_only_running_prescriptions(
        orders, store):
    from datetime import UTC, datetime, timedelta

    from appliance.domain.treatment import add_months
    from appliance.store.views import EPOCH

    now = datetime.now(UTC).replace(microsecond=0)
    old_at = now - timedelta(days=3 * 365)
    [old] = orders.sign_many(1, at=old_at, created_at=old_at - timedelta(minutes=1))
    [recent] = orders.sign_many(1, at=now, created_at=now - timedelta(minutes=1))
    ins, today = recent.resident.ins.value, now.date()
    # what a store made before m011 holds: no lines_end, the index without it
    with store.write() as db:
        db.execute("UPDATE prescriptions SET lines_end = NULL")
        db.execute("DROP INDEX prescriptions_history")
        db.execute("CREATE INDEX prescriptions_history ON prescriptions"
                   " (resident_ins, created_at, id, state, signed_at, prescriber_id)")
        db.execute("DELETE FROM _migrations WHERE name = 'm011_compact_signed_rows'")
    uow = SqliteUnitOfWork(store, owns=False)
    before = (uow.views.treatment(ins, today), uow.views.current_treatment(ins, today))
    assert {t.prescription_id for t in before[1]} == {recent.id}
    path = store.path
    store.close()

    again = open_store(path)
    try:
        ends = dict(again.execute("SELECT id, lines_end FROM prescriptions").fetchall())
        # the free-text line runs a year (the validity of a prescription), the other 7 days
        assert EPOCH + timedelta(days=ends[recent.id]) == add_months(today, 12) - timedelta(
            days=1)
        assert ends[old.id] < (today - EPOCH).days - 90
        uow = SqliteUnitOfWork(again, owns=False)
        assert (uow.views.treatment(ins, today), uow.views.current_treatment(ins, today)) \
            == before
        # the old prescription's body is not read for the treatment any more (a body that
        # does not load is logged when it is read)
        again.conn.execute("UPDATE prescriptions SET body = X'09' WHERE id = ?", [old.id])
        with _warnings("appliance.store.views") as seen:
            assert uow.views.treatment(ins, today) == before[0]
        assert seen == []
        again.conn.execute("UPDATE prescriptions SET body = X'09' WHERE id = ?", [recent.id])
        with _warnings("appliance.store.views") as seen:
            assert uow.views.treatment(ins, today).current == []
        assert [r.fields["prescription"] for r in seen] == [recent.id]  # (the running one is)
    finally:
        again.close()


@contextmanager
def _warnings(name: str):
    """The records ``name`` logs meanwhile, whatever the logging set-up other tests left."""
    logger, seen = logging.getLogger(name), []
    handler = logging.Handler(logging.WARNING)
    handler.emit = seen.append
    disabled, logger.disabled = logger.disabled, False
    logger.addHandler(handler)
    try:
        yield seen
    finally:
        logger.removeHandler(handler)
        logger.disabled = disabled
