"""Each signer certificate kept once (migration m009), signed bodies compressed: every reader
of a prescription's certificate and body still works on a real SQLite file (the QR the
printer prints, the registry's Provenance, backup and restore, retention), and a store made
before m009 has its certificates moved at start-up."""

from __future__ import annotations

import json
import zlib

import pytest
from cryptography import x509

from appliance.services.printing import order_payload
from appliance.services.signature import verify_payload
from appliance.store import open_store
from appliance.store.migrations import applied
from appliance.store.prescriptions import _ZDICT_V1, BODY_V1, BODY_V2, decode_body, encode_body
from appliance.store.uow import SqliteUnitOfWork

pytestmark = pytest.mark.integration


def _as_before_m009(store) -> None:
    """Turn ``store`` into what the version before m009 left: each row carrying its
    certificate and its body as JSON text, no ``certificates`` table, m009 not applied."""
    bodies = [(json.dumps(json.loads(decode_body(row["body"])), ensure_ascii=False), row["id"])
              for row in store.query("SELECT id, body FROM prescriptions")]
    with store.write() as db:
        db.conn.executemany("UPDATE prescriptions SET body = ? WHERE id = ?", bodies)
        db.execute("ALTER TABLE prescriptions ADD COLUMN signer_cert BLOB")
        db.execute("UPDATE prescriptions SET signer_cert = (SELECT der FROM certificates c"
                   " WHERE c.id = prescriptions.signer_cert_id)")
        db.execute("ALTER TABLE prescriptions DROP COLUMN signer_cert_id")
        db.execute("DROP TABLE certificates")
        db.execute("DROP TABLE audit_anchors")
        db.execute("CREATE INDEX prescriptions_resident ON prescriptions"
                   " (resident_ins, created_at)")
        db.execute("DELETE FROM _migrations WHERE name = 'm009_signer_certificates'")


def test_a_certificate_is_stored_once_and_every_reader_finds_it(orders, store, uow, signers,
                                                                 print_trust):
    made = orders.sign_many(4) + orders.sign_many(2, profile="expired")
    assert uow.certificates.count() == 2
    sizes = store.query("SELECT length(body) AS n, typeof(body) AS t FROM prescriptions")
    assert {row["t"] for row in sizes} == {"blob"} and max(r["n"] for r in sizes) < 600
    for p in made[:4]:
        # the signed QR (the certificate by reference, found in the store)
        prescription, payload = order_payload(uow, p.id, "signed")
        assert prescription == p
        verify_payload(payload, *print_trust, certificates=[_signer(uow, p.id)])
    rows = uow.prescriptions.signed_rows([p.id for p in made])
    certs = {rows[p.id].load().proof.signer_cert for p in made}
    assert certs == {signers["physician"].certificate_der, signers["expired"].certificate_der}


def test_a_store_made_before_m009_moves_its_certificates_at_start_up(orders, store, tmp_path,
                                                                     print_trust,
                                                                     registry_sim,
                                                                     make_engine):
    made = orders.sign_many(5)
    path = store.path
    _as_before_m009(store)
    assert "m009_signer_certificates" not in applied(store)
    store.close()

    again = open_store(path)  # start-up: the migrations
    try:
        assert "m009_signer_certificates" in applied(again)
        columns = {row[1] for row in again.execute("PRAGMA table_info(prescriptions)")}
        assert "signer_cert" not in columns and "signer_cert_id" in columns
        assert again.one("SELECT count(*) FROM certificates") == 1
        assert again.one("SELECT count(*) FROM prescriptions WHERE signer_cert_id IS NULL") == 0
        assert again.one("SELECT count(*) FROM prescriptions WHERE typeof(body) = 'text'") == 5
        indexes = {row[1] for row in again.execute("PRAGMA index_list(prescriptions)")}
        assert "prescriptions_resident" not in indexes
        moved = SqliteUnitOfWork(again, owns=False)
        for p in made:  # the bodies written before stay readable as they are (JSON text)
            prescription, payload = order_payload(moved, p.id, "signed")
            assert prescription == p
            verify_payload(payload, *print_trust, certificates=[_signer(moved, p.id)])
    finally:
        again.close()
    # the registry checks the signature with the certificate the Provenance carries
    uow = SqliteUnitOfWork.open(path)
    try:
        from appliance.services.sync import EngineConfig, SyncEngine
        from sync.client import RegistryClient

        client = RegistryClient(registry_sim.url)
        report = SyncEngine(uow, client, EngineConfig(backoff_base_s=0.01)).push()
        client.close()
        assert (report.acknowledged, report.quarantined) == (5, 0)
        assert registry_sim.db.count() == 5
    finally:
        uow.close()


def test_bodies_round_trip_and_a_damaged_one_is_a_clean_error():
    from appliance.errors import StoreError

    data = {"v": 1, "id": "X", "resident": {"birth_name": "ÉLODIE", "sex": "F"}, "lines": []}
    raw = encode_body(data)
    assert raw[:1] == BODY_V2 and json.loads(decode_body(raw)) == data
    deflate = zlib.compressobj(9, zlib.DEFLATED, -15, 9, zlib.Z_DEFAULT_STRATEGY, _ZDICT_V1)
    text = json.dumps(data, ensure_ascii=False).encode()
    assert decode_body(BODY_V1 + deflate.compress(text) + deflate.flush()) == text.decode()
    assert decode_body('{"a": 1}') == '{"a": 1}'  # a draft's (or an older row's) text
    with pytest.raises(StoreError, match="damaged"):
        decode_body(raw[:-3] + b"\xff\xff\xff")
    with pytest.raises(StoreError, match="format"):
        decode_body(b"\x09abc")


def _signer(uow, prescription_id: str) -> x509.Certificate:
    """The signer's certificate as the store keeps it (once, in ``certificates``)."""
    proof = uow.prescriptions.signed_rows([prescription_id])[prescription_id].load().proof
    return x509.load_der_x509_certificate(proof.signer_cert)
