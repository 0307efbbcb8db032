"""The audit chain's head is anchored at the registry (the real reference registry on
loopback) with each push, its receipt kept in the store; ``ordo audit verify
--against-registry`` catches a chain rewritten end to end by someone who can write the
database file (triggers dropped, rows deleted or changed, every hash recomputed, the head in
``meta`` updated, the triggers put back), which the local check alone cannot see."""

from __future__ import annotations

import json
import sqlite3

import pytest
from click.testing import CliRunner

from appliance.cli import main
from appliance.ports.uow import SyncKeys
from appliance.services.sync import EngineConfig, SyncEngine
from appliance.store import audit
from sync.client import RegistryClient

pytestmark = pytest.mark.integration

FINESS = "750000001"


def _engine(orders, url: str) -> SyncEngine:
    return SyncEngine(orders.uow, RegistryClient(url),
                      EngineConfig(backoff_base_s=0.01, finess=FINESS))


def _cli(store, tmp_path, url: str, *args: str):
    config = tmp_path / "ordo.toml"
    config.write_text(f'[establishment]\nname = "EHPAD Les Tilleuls"\nfiness = "{FINESS}"\n')
    env = {"ORDO_DATA_DIR": str(store.path.parent), "ORDO_CONFIG": str(config),
           "ORDO_REGISTRY_URL": url}
    return CliRunner().invoke(main, list(args), env=env)


def _rewrite(path, keep) -> None:
    """What an intruder with the file does: every entry ``keep(entry)`` refuses goes, the
    rest is renumbered and re-hashed from the genesis, the head follows, the guards too."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.row_factory = sqlite3.Row
    try:
        conn.execute("BEGIN IMMEDIATE")
        for name in audit.TRIGGERS:
            conn.execute(f"DROP TRIGGER IF EXISTS {name}")
        rows = [dict(r) for r in conn.execute("SELECT * FROM audit ORDER BY seq")]
        conn.execute("DELETE FROM audit")
        prev, seq = audit.GENESIS, 0
        for row in rows:
            if not keep(row):
                continue
            seq += 1
            details = json.loads(row["details"])
            digest = audit._digest(prev, seq, row["at"], row["actor"], row["action"],
                                   row["subject"], details)
            conn.execute("INSERT INTO audit (seq, at, actor, action, subject, details, "
                         "prev_hash, hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                         (seq, row["at"], row["actor"], row["action"], row["subject"],
                          row["details"], prev, digest))
            prev = digest
        conn.execute("UPDATE meta SET value = ? WHERE key = ?", (str(seq), audit.HEAD_COUNT))
        conn.execute("UPDATE meta SET value = ? WHERE key = ?", (prev, audit.HEAD_HASH))
        for sql in audit.TRIGGERS.values():
            conn.execute(sql)
        conn.execute("COMMIT")
    finally:
        conn.close()


def test_each_push_anchors_the_head_and_keeps_the_receipt(orders, registry_sim):
    orders.sign_many(3)
    engine = _engine(orders, registry_sim.url)
    first = engine.push()
    seq, digest = orders.uow.audit.head()
    assert first.acknowledged == 3 and first.anchored == seq > 0
    [held] = registry_sim.db.anchors(FINESS, "")
    assert held["resourceType"] == "AuditEvent" and held["id"]
    meta = orders.uow.meta
    assert meta.get(SyncKeys.ANCHOR_SEQ) == str(seq) and meta.get(SyncKeys.ANCHOR_HASH) == digest
    assert meta.get(SyncKeys.ANCHOR_RECEIPT) == held["id"]
    assert engine.push().anchored is None  # the head did not move: nothing sent again
    assert len(registry_sim.db.anchors(FINESS, "")) == 1
    orders.sign_many(1)
    assert engine.push().anchored == orders.uow.audit.head()[0] > seq
    assert len(registry_sim.db.anchors(FINESS, "")) == 2


def test_sync_status_shows_the_last_anchor(orders, registry_sim, store, tmp_path):
    orders.sign_many(1)
    never = _cli(store, tmp_path, registry_sim.url, "sync", "status")
    assert "Chaîne d'audit ancrée au registre : jamais" in never.output
    anchored = _engine(orders, registry_sim.url).push().anchored
    [held] = registry_sim.db.anchors(FINESS, "")
    text = _cli(store, tmp_path, registry_sim.url, "sync", "status").output
    assert f"ancrée au registre : entrée {anchored}" in text and held["id"] in text


@pytest.mark.parametrize(("tamper", "words"), [
    # the signature of the first prescription erased from the history
    (lambda row: row["seq"] != 1, "réécrite"),
    # everything after the first entry gone
    (lambda row: row["seq"] == 1, "n'existe plus"),
])
def test_a_chain_rewritten_end_to_end_is_caught_against_the_registry(
        orders, registry_sim, store, tmp_path, tamper, words):
    orders.sign_many(2)
    assert _engine(orders, registry_sim.url).push().anchored
    clean = _cli(store, tmp_path, registry_sim.url, "audit", "verify", "--against-registry")
    assert clean.exit_code == 0, clean.output
    assert "1 ancrage(s) conforme(s)" in clean.output
    _rewrite(store.path, tamper)
    local = _cli(store, tmp_path, registry_sim.url, "audit", "verify")
    assert local.exit_code == 0 and "OK" in local.output  # what the file alone says
    caught = _cli(store, tmp_path, registry_sim.url, "audit", "verify", "--against-registry")
    assert caught.exit_code == 1, caught.output
    assert "ANCRAGE ROMPU" in caught.output and words in caught.output


def test_verifying_against_an_unreachable_registry_is_an_error_not_a_pass(orders, store,
                                                                          tmp_path):
    orders.sign_many(1)
    result = _cli(store, tmp_path, "http://127.0.0.1:9/fhir", "audit", "verify",
                  "--against-registry")
    assert result.exit_code == 4 and "Erreur : " in result.output


def test_the_service_anchors_a_moved_head_even_with_nothing_to_send(orders, registry_sim):
    from sync.service import SyncService

    engine = _engine(orders, registry_sim.url)
    service = SyncService(engine, orders.uow, notify=lambda state: True)
    with orders.uow as uow:  # a reprint, a login: the head moves, the queue stays empty
        uow.audit.append(actor="10001234567", action="print.reprinted", subject="P-1")
        uow.commit()
    tick = service.cycle()
    assert tick.push is None and tick.anchored == orders.uow.audit.head()[0]
    assert service.cycle().anchored is None  # unchanged: nothing sent
    assert len(registry_sim.db.anchors(FINESS, "")) == 1
