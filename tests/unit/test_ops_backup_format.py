"""The encrypted backup container: round trip, and every kind of tampering refused."""

from __future__ import annotations

import io
import os
import struct
from pathlib import Path

import pytest

from appliance.errors import StoreError
from appliance.ops import backup as b
from appliance.ops.retention import years_ago


@pytest.fixture
def small_chunks(monkeypatch):
    monkeypatch.setattr(b, "CHUNK_SIZE", 64)


def _key(text: str | None = None) -> b.BackupKey:
    raw = b.parse_key(text or b.generate_key_text())
    return b.BackupKey(raw, b.key_id(raw))


def _seal(tmp_path: Path, payload: bytes, key: b.BackupKey) -> bytes:
    plain = tmp_path / "plain"
    plain.write_bytes(payload)
    out = io.BytesIO()
    b.encrypt_file(plain, out, key, {"created_at": "2026-11-25T02:30:00+00:00",
                                     "sha256": __import__("hashlib").sha256(payload)
                                     .hexdigest(), "source": {"audit_seq": 3}})
    return out.getvalue()


def _open(sealed: bytes, key: b.BackupKey) -> bytes:
    out = io.BytesIO()
    b.decrypt_file(io.BytesIO(sealed), out, key)
    return out.getvalue()


def _records(sealed: bytes) -> tuple[bytes, list[bytes]]:
    length = struct.unpack(">I", sealed[8:12])[0]
    head, rest = sealed[:12 + length], sealed[12 + length:]
    records = []
    while rest:
        n = struct.unpack(">I", rest[:4])[0]
        records.append(rest[:4 + n])
        rest = rest[4 + n:]
    return head, records


@pytest.mark.parametrize("size", [0, 1, 63, 64, 65, 64 * 5])
def test_round_trip_any_size(tmp_path, small_chunks, size):
    key = _key()
    payload = bytes(range(256)) * 2
    payload = (payload * 4)[:size]
    sealed = _seal(tmp_path, payload, key)
    assert _open(sealed, key) == payload
    header, _ = b.read_header(io.BytesIO(sealed))
    assert header["key_id"] == key.key_id and header["source"] == {"audit_seq": 3}
    assert size < 32 or payload[:32] not in sealed


def test_reordered_dropped_or_truncated_chunks_are_refused(tmp_path, small_chunks):
    key = _key()
    payload = os.urandom(64 * 3 + 4)  # incompressible: at least four chunks
    sealed = _seal(tmp_path, payload, key)
    head, records = _records(sealed)
    assert len(records) >= 4 and _open(sealed, key) == payload
    swapped = head + records[1] + records[0] + b"".join(records[2:])
    with pytest.raises(StoreError, match="chunk 0 fails authentication"):
        _open(swapped, key)
    with pytest.raises(StoreError, match="last chunk is missing"):
        _open(head + b"".join(records[:-1]), key)
    with pytest.raises(StoreError, match="fails authentication"):
        _open(head + records[0] + records[1] + b"".join(records[3:]), key)
    with pytest.raises(StoreError, match="after its last chunk"):
        _open(sealed + records[-1], key)
    with pytest.raises(StoreError, match="truncated"):
        _open(sealed[:-3], key)


def test_compressible_data_is_compressed_before_encryption(tmp_path):
    key = _key()
    payload = b'{"resident": "...", "lines": []}' * 4000
    sealed = _seal(tmp_path, payload, key)
    assert len(sealed) < len(payload) / 10
    assert b"lines" not in sealed and _open(sealed, key) == payload


def test_a_modified_header_breaks_every_chunk(tmp_path):
    key = _key()
    sealed = bytearray(_seal(tmp_path, b"data", key))
    at = sealed.index(b'"audit_seq": 3')
    sealed[at + len('"audit_seq": ')] = ord("9")
    with pytest.raises(StoreError, match="fails authentication"):
        _open(bytes(sealed), key)


def test_wrong_key_is_named_before_decrypting(tmp_path):
    sealed = _seal(tmp_path, b"data", _key())
    other = _key()
    with pytest.raises(StoreError, match=f"security.backup_key is key {other.key_id}"):
        _open(sealed, other)


def test_not_a_backup_and_unknown_versions():
    with pytest.raises(StoreError, match="bad magic"):
        b.read_header(io.BytesIO(b"SQLite format 3\x00"))
    with pytest.raises(StoreError, match="not supported"):
        b.read_header(io.BytesIO(b"ORDOBAK2" + b"\x00" * 8))


def test_key_files_standard_and_url_safe_base64():
    raw = bytes(range(32))
    import base64

    assert b.parse_key(base64.b64encode(raw).decode() + "\n") == raw
    assert b.parse_key(base64.urlsafe_b64encode(raw).decode()) == raw  # a Fernet key
    with pytest.raises(ValueError, match="16 bytes"):
        b.parse_key(base64.b64encode(raw[:16]).decode())
    with pytest.raises(ValueError, match="base64"):
        b.parse_key("not base64!")
    assert b.key_id(raw) == b.key_id(bytes(range(32))) != b.key_id(bytes(32))


def test_store_state_tells_newer_data():
    old = b.StoreState(audit_seq=10, audit_head="a", outbox_seq=4,
                       newest_prescription_at="2026-11-25T09:00:00.000+00:00")
    assert b._newer_reasons(old, old) == []
    newer = b.StoreState(audit_seq=11, audit_head="b", outbox_seq=5,
                         newest_prescription_at="2026-11-25T10:00:00.000+00:00")
    assert len(b._newer_reasons(newer, old)) == 3
    assert b._newer_reasons(old, newer) == []
    forked = b.StoreState(audit_seq=10, audit_head="z", outbox_seq=4,
                          newest_prescription_at=old.newest_prescription_at)
    assert "another history" in b._newer_reasons(forked, old)[0]


def test_years_ago_handles_29_february():
    from datetime import datetime

    assert years_ago(datetime(2028, 2, 29), 10) == datetime(2018, 2, 28)
    assert years_ago(datetime(2026, 11, 25), 10) == datetime(2016, 11, 25)
