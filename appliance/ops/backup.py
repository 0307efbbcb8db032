"""Encrypted backups of the store, and restores that refuse to go back in time.

Backup. SQLite's online backup API (``sqlite3.Connection.backup``, all pages in one
step) copies a consistent snapshot of ``ordo.sqlite`` while the kiosk and the sync
service keep writing: in WAL mode the copy is one read transaction, writers are not
blocked, and a stepwise copy would restart at every foreign write. The snapshot goes to a
private temporary directory inside the data directory (same protection as the database),
is checked (``PRAGMA integrity_check``, audit chain), then encrypted into ``DEST``.

File format (``.ordobak``, version 1)::

    b"ORDOBAK1"                  magic and format version
    u32 big-endian               length of the header
    header                       UTF-8 JSON, sorted keys: format, created_at, key_id,
                                 cipher, kdf, compression, salt, chunk_size,
                                 plaintext_bytes, sha256, audit_verified, ordo_version,
                                 source (see ``StoreState``)
    { u32 length, ciphertext }*  the zlib-compressed database file, cut in chunks of at
                                 most ``chunk_size`` bytes, each sealed on its own

Encryption: AES-256-GCM (``cryptography``) with a per-file key
``HKDF-SHA256(key, salt=header.salt, info="ordo backup v1")``. Chunk ``i`` uses the
nonce ``i`` (11 bytes, big-endian) followed by ``01`` for the last chunk and ``00``
otherwise, and authenticates ``SHA-256(magic || header)`` as associated data: a modified
header, a reordered, dropped or truncated chunk, or a wrong key all fail authentication
(the STREAM construction of Hoang, Reyhanitabar, Rogaway and Vizár, 2015). The header
stays readable without the key, so ``restore`` names the key a backup needs.

Key file (``security.backup_key``): 32 random bytes in base64 on one line (a Fernet key
is accepted). ``key_id`` is the first 16 hex digits of ``SHA-256("ordo-backup-key-id\\0"
|| key)``. Without the key a backup cannot be read: keep a copy of the key off the box.

Restore decrypts into the data directory, checks the copy (integrity, audit chain, the
header's figures), refuses to replace data newer than the backup unless forced (then the
current data is first backed up to ``<data_dir>/backups/pre-restore-*.ordobak``; a damaged
database is renamed ``ordo.sqlite.damaged-<time>`` instead), copies
it over the live database with the backup API (other processes keep valid connections),
applies pending migrations, raises the prescription-ID floor ``ids.last_ms`` to at least
the highest value of both sides, and audits the restore.
"""

from __future__ import annotations

import base64
import binascii
import errno
import hashlib
import json
import logging
import os
import secrets
import shutil
import sqlite3
import struct
import tempfile
import time
import zlib
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from appliance import __version__
from appliance.config import Settings
from appliance.domain.prescription_id import id_timestamp_ms
from appliance.errors import AuditChainBroken, ConfigError, InvalidIdentifier, StoreError
from appliance.ops.files import adopt_owner
from appliance.store import audit, meta
from appliance.store.db import DIR_MODE, FILE_MODE, Store, connect, open_store
from appliance.store.meta import ID_FLOOR_KEY
from appliance.store.migrations import migrate

log = logging.getLogger(__name__)

MAGIC = b"ORDOBAK1"
FORMAT_VERSION = 1
KEY_BYTES = 32
SALT_BYTES = 16
CHUNK_SIZE = 1 << 20
_MAX_CHUNK = 16 << 20
TAG_BYTES = 16
ZLIB_LEVEL = 6
HKDF_INFO = b"ordo backup v1"
SUFFIX = ".ordobak"
BACKUP_SUBDIR = "backups"
NAME_PREFIX = "ordo-"
PRE_RESTORE_PREFIX = "pre-restore-"
# Backups stamped with the same second in one directory: the first keeps the plain name,
# the next ones get ``_02`` ... ``_99`` (names still sort in the order they were made).
MAX_SAME_SECOND = 99
LAST_MS_KEY = ID_FLOOR_KEY  # meta key: floor of the prescription-ID generator's last_ms
_MAX_HEADER = 1 << 20
_NONCE_COUNTER_BYTES = 11


# -- key ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class BackupKey:
    key: bytes = field(repr=False)
    key_id: str


def key_id(key: bytes) -> str:
    return hashlib.sha256(b"ordo-backup-key-id\0" + key).hexdigest()[:16]


def generate_key_text() -> str:
    """A new key file's content: 32 random bytes in base64 and a newline."""
    return base64.b64encode(secrets.token_bytes(KEY_BYTES)).decode("ascii") + "\n"


def parse_key(text: str) -> bytes:
    """The 32 key bytes of a key file's text (standard or URL-safe base64)."""
    compact = "".join(text.split()).replace("-", "+").replace("_", "/")
    try:
        raw = base64.b64decode(compact, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("not base64") from None
    if len(raw) != KEY_BYTES:
        raise ValueError(f"{len(raw)} bytes instead of {KEY_BYTES}")
    return raw


KEY_EXPECTED = ("a key file holding 32 random bytes in base64 on one line "
                "(`ordo install` creates /etc/ordo/backup.key)")


def load_key(path_text: str) -> BackupKey:
    """Read ``security.backup_key``; raise ``ConfigError`` naming the key when unusable."""
    if not path_text:
        raise ConfigError("security.backup_key", path_text, KEY_EXPECTED)
    try:
        raw = parse_key(Path(path_text).read_text("ascii"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise ConfigError("security.backup_key", path_text, f"{KEY_EXPECTED}; {exc}") from None
    return BackupKey(raw, key_id(raw))


# -- what a store holds ------------------------------------------------------------------
@dataclass(frozen=True)
class StoreState:
    """The figures that tell which of two stores is newer (all 0/None when empty)."""

    audit_seq: int = 0
    audit_head: str = ""
    outbox_seq: int = 0
    print_job_id: int = 0
    prescriptions: int = 0
    newest_prescription_at: str | None = None
    newest_prescription_id: str | None = None
    ids_last_ms: int = 0
    migrations: tuple[str, ...] = ()

    @property
    def empty(self) -> bool:
        return self.audit_seq == 0 and self.prescriptions == 0 and self.outbox_seq == 0

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "migrations": list(self.migrations)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> StoreState:
        known = {k: data[k] for k in cls.__dataclass_fields__ if k in data}
        known["migrations"] = tuple(known.get("migrations", ()))
        return cls(**known)


def _tables(conn: sqlite3.Connection) -> set[str]:
    return {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}


def _scalar(conn: sqlite3.Connection, sql: str, default: Any = None) -> Any:
    row = conn.execute(sql).fetchone()
    return default if row is None or row[0] is None else row[0]


def _id_ms(prescription_id: str | None) -> int:
    if not prescription_id:
        return 0
    try:
        return id_timestamp_ms(prescription_id)
    except InvalidIdentifier:
        return 0


def store_state(conn: sqlite3.Connection) -> StoreState:
    """Read the figures of a store (any schema version, possibly empty)."""
    tables = _tables(conn)
    values: dict[str, str] = {}
    if "meta" in tables:
        values = {row[0]: row[1] for row in conn.execute("SELECT key, value FROM meta")}
    newest_at = newest_id = None
    count = 0
    if "prescriptions" in tables:
        count = _scalar(conn, "SELECT count(*) FROM prescriptions", 0)
        newest_at = _scalar(conn, "SELECT max(updated_at) FROM prescriptions")
        newest_id = _scalar(conn, "SELECT max(id) FROM prescriptions")
    migrations: tuple[str, ...] = ()
    if "_migrations" in tables:
        migrations = tuple(r[0] for r in conn.execute("SELECT name FROM _migrations ORDER BY id"))
    try:
        floor = int(values.get(LAST_MS_KEY, "0"))
    except ValueError:
        floor = 0
    return StoreState(
        audit_seq=int(values.get("audit.count", "0")),
        audit_head=values.get("audit.head", ""),
        outbox_seq=int(_scalar(conn, "SELECT max(seq) FROM outbox", 0))
        if "outbox" in tables else 0,
        print_job_id=int(_scalar(conn, "SELECT max(id) FROM print_jobs", 0))
        if "print_jobs" in tables else 0,
        prescriptions=int(count),
        newest_prescription_at=newest_at,
        newest_prescription_id=newest_id,
        ids_last_ms=max(floor, _id_ms(newest_id)),
        migrations=migrations,
    )


def _integrity(conn: sqlite3.Connection) -> list[str]:
    """``PRAGMA integrity_check`` problems (empty when the file is sound)."""
    rows = [row[0] for row in conn.execute("PRAGMA integrity_check")]
    return [] if rows == ["ok"] else rows


# -- the encrypted container -------------------------------------------------------------
def _file_key(key: bytes, salt: bytes) -> AESGCM:
    derived = HKDF(algorithm=hashes.SHA256(), length=KEY_BYTES, salt=salt,
                   info=HKDF_INFO).derive(key)
    return AESGCM(derived)


def _nonce(index: int, last: bool) -> bytes:
    return index.to_bytes(_NONCE_COUNTER_BYTES, "big") + (b"\x01" if last else b"\x00")


def _compressed_chunks(source: BinaryIO, size: int) -> Iterator[tuple[bytes, bool]]:
    """zlib-compress ``source`` and cut the stream into ``(chunk, is_last)`` of at most
    ``size`` bytes; the last chunk is never followed by another (it may be short)."""
    compressor = zlib.compressobj(ZLIB_LEVEL)
    pending = bytearray()
    for block in iter(lambda: source.read(size), b""):
        pending += compressor.compress(block)
        while len(pending) > size:
            yield bytes(pending[:size]), False
            del pending[:size]
    pending += compressor.flush()
    while len(pending) > size:
        yield bytes(pending[:size]), False
        del pending[:size]
    yield bytes(pending), True


def encrypt_file(plain: Path, out: BinaryIO, key: BackupKey, header: dict[str, Any]) -> None:
    salt = secrets.token_bytes(SALT_BYTES)
    header = {**header, "format": FORMAT_VERSION, "key_id": key.key_id,
              "cipher": "AES-256-GCM", "kdf": "HKDF-SHA256", "compression": "zlib",
              "salt": base64.b64encode(salt).decode("ascii"), "chunk_size": CHUNK_SIZE}
    header_bytes = json.dumps(header, sort_keys=True, ensure_ascii=False).encode("utf-8")
    aad = hashlib.sha256(MAGIC + header_bytes).digest()
    aead = _file_key(key.key, salt)
    out.write(MAGIC + struct.pack(">I", len(header_bytes)) + header_bytes)
    with plain.open("rb") as source:
        for index, (chunk, last) in enumerate(_compressed_chunks(source, CHUNK_SIZE)):
            sealed = aead.encrypt(_nonce(index, last), chunk, aad)
            out.write(struct.pack(">I", len(sealed)) + sealed)


def read_header(source: BinaryIO) -> tuple[dict[str, Any], bytes]:
    """The JSON header of a backup file (no key needed), and its raw bytes."""
    magic = source.read(len(MAGIC))
    if magic[:7] != MAGIC[:7]:
        raise StoreError("not an Ordo backup file (bad magic)")
    if magic != MAGIC:
        raise StoreError(f"backup format {magic[7:]!r} is not supported (expected 1)")
    raw_len = source.read(4)
    if len(raw_len) != 4 or not 0 < (length := struct.unpack(">I", raw_len)[0]) <= _MAX_HEADER:
        raise StoreError("backup header is truncated or corrupted")
    header_bytes = source.read(length)
    try:
        header = json.loads(header_bytes.decode("utf-8"))
    except ValueError:
        raise StoreError("backup header is corrupted") from None
    if not isinstance(header, dict) or header.get("format") != FORMAT_VERSION:
        raise StoreError("backup header is corrupted or of an unknown format")
    return header, header_bytes


def decrypt_file(source: BinaryIO, out: BinaryIO, key: BackupKey) -> dict[str, Any]:
    """Decrypt a backup into ``out``; return its header. ``StoreError`` if anything fails
    authentication (wrong key, modified, truncated or reordered data)."""
    header, header_bytes = read_header(source)
    if header.get("key_id") != key.key_id:
        raise StoreError(
            f"this backup was encrypted with key {header.get('key_id')}; security.backup_key "
            f"is key {key.key_id}: configure the key file used when the backup was made")
    try:
        salt = base64.b64decode(header["salt"], validate=True)
    except (KeyError, TypeError, binascii.Error):
        raise StoreError("backup header is corrupted (salt)") from None
    if header.get("compression") != "zlib":
        raise StoreError(f"backup compression {header.get('compression')!r} is not supported")
    limit = min(int(header.get("chunk_size") or CHUNK_SIZE), _MAX_CHUNK) + TAG_BYTES
    aad = hashlib.sha256(MAGIC + header_bytes).digest()
    aead = _file_key(key.key, salt)
    decompressor = zlib.decompressobj()
    digest = hashlib.sha256()
    index, finished, written = 0, False, 0
    while True:
        raw_len = source.read(4)
        if not raw_len:
            break
        if finished:
            raise StoreError("backup has data after its last chunk")
        if len(raw_len) != 4:
            raise StoreError(f"backup is truncated in chunk {index}")
        length = struct.unpack(">I", raw_len)[0]
        sealed = source.read(length)
        if len(sealed) != length or length > limit:
            raise StoreError(f"backup is truncated or corrupted in chunk {index}")
        for last in (False, True):
            try:
                chunk = aead.decrypt(_nonce(index, last), sealed, aad)
            except InvalidTag:
                continue
            finished = last
            break
        else:
            raise StoreError(f"backup chunk {index} fails authentication: the file was "
                             "modified or damaged")
        try:
            plain = decompressor.decompress(chunk) + (decompressor.flush() if last else b"")
        except zlib.error as exc:
            raise StoreError(f"backup chunk {index} does not decompress ({exc})") from exc
        digest.update(plain)
        out.write(plain)
        written += len(plain)
        index += 1
    if not finished:
        raise StoreError("backup is truncated: its last chunk is missing")
    if not decompressor.eof or written != header.get("plaintext_bytes", written):
        raise StoreError("backup content is incomplete")
    if header.get("sha256") and digest.hexdigest() != header["sha256"]:
        raise StoreError("backup content does not match the checksum in its header")
    return header


# -- backup ------------------------------------------------------------------------------
@dataclass(frozen=True)
class BackupResult:
    path: Path
    size: int
    seconds: float
    header: dict[str, Any]
    removed: tuple[Path, ...] = ()

    @property
    def state(self) -> StoreState:
        return StoreState.from_dict(self.header["source"])


def _utc_stamp(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _private_tempdir(data_dir: Path) -> Path:
    data_dir.mkdir(parents=True, exist_ok=True, mode=DIR_MODE)
    return Path(tempfile.mkdtemp(prefix=".ops-", dir=data_dir))


def snapshot(db_path: Path, target: Path) -> None:
    """Copy a consistent snapshot of the live database into ``target`` (a new file)."""
    if not db_path.is_file():
        raise StoreError(f"no database at {db_path}: nothing to back up")
    try:
        source = connect(db_path)
        try:
            copy = sqlite3.connect(str(target), isolation_level=None)
            try:
                source.backup(copy, pages=-1)
                # A self-contained file: no WAL side file to carry along.
                copy.execute("PRAGMA journal_mode = DELETE")
            finally:
                copy.close()
        finally:
            source.close()
    except sqlite3.Error as exc:
        raise StoreError(f"cannot copy the database {db_path}: {exc}") from exc
    os.chmod(target, FILE_MODE)


def _target_path(dest: Path, now: datetime, prefix: str = NAME_PREFIX) -> tuple[Path, bool]:
    """(file to write, whether ``dest`` names a directory): a name ending in ``.ordobak``
    is the file itself, anything else a directory (created if needed)."""
    if dest.suffix == SUFFIX and not dest.is_dir():
        return dest, False
    return dest / f"{prefix}{_utc_stamp(now)}{SUFFIX}", True


def _candidates(target: Path, in_directory: bool) -> Iterator[Path]:
    """The names a backup may take: a file named by the user is that name only."""
    yield target
    if in_directory:
        stem = target.name[:-len(SUFFIX)]
        for n in range(2, MAX_SAME_SECOND + 1):
            yield target.with_name(f"{stem}_{n:02d}{SUFFIX}")


def _publish(partial: Path, target: Path) -> None:
    """Give the finished ``partial`` the name ``target``, never replacing a file: a hard
    link fails if the name exists (``FileExistsError``). A file system without hard links
    (FAT or exFAT on a USB disk) gets the name reserved with ``O_EXCL`` first, then the
    finished file renamed over that empty reservation."""
    try:
        os.link(partial, target)
    except FileExistsError:
        raise
    except OSError as exc:
        if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK):
            raise
        os.close(os.open(target, os.O_CREAT | os.O_EXCL | os.O_WRONLY, FILE_MODE))
        os.replace(partial, target)
        return
    partial.unlink()


def _rotate(directory: Path, keep: int) -> tuple[Path, ...]:
    """Delete the oldest ``ordo-*.ordobak`` files beyond the newest ``keep``."""
    found = sorted(p for p in directory.glob(f"{NAME_PREFIX}*{SUFFIX}") if p.is_file())
    old = found[:-keep] if keep > 0 else []
    for path in old:
        path.unlink(missing_ok=True)
    return tuple(old)


def backup(settings: Settings, dest: Path, *, keep: int | None = None,
           now: datetime | None = None, prefix: str = NAME_PREFIX) -> BackupResult:
    """Write an encrypted backup of the store to ``dest``: a file if its name ends in
    ``.ordobak``, else a directory where ``ordo-<UTC time>.ordobak`` is created (``keep``
    then deletes the oldest ones beyond that number). An existing file is never
    replaced: a named file that exists is refused, and in a directory a second backup
    of the same second is named ``ordo-<UTC time>_02.ordobak``."""
    started = time.monotonic()
    key = load_key(settings.security.backup_key)
    now = now or datetime.now(UTC)
    target, in_directory = _target_path(dest, now, prefix)
    if in_directory:
        target.parent.mkdir(parents=True, exist_ok=True, mode=DIR_MODE)
    elif not target.parent.is_dir():
        raise StoreError(f"backup destination {target.parent} is not a directory")
    work = _private_tempdir(settings.data_dir)
    partial = target.with_name(f".{target.name}.{secrets.token_hex(4)}.partial")
    try:
        plain = work / "snapshot.sqlite"
        snapshot(settings.db_path, plain)
        conn = sqlite3.connect(str(plain), isolation_level=None)
        conn.row_factory = sqlite3.Row
        try:
            problems = _integrity(conn)
            if problems:
                raise StoreError("the database fails its integrity check, backup not written: "
                                 + "; ".join(problems[:3]))
            state = store_state(conn)
            try:
                audit.verify(Store(conn, plain))
                audit_ok = True
            except AuditChainBroken as exc:
                audit_ok = False
                log.warning("backing up a store whose audit chain does not verify",
                            extra={"fields": {"entry": exc.seq, "reason": exc.reason}})
        finally:
            conn.close()
        digest = hashlib.sha256()
        with plain.open("rb") as source:
            for block in iter(lambda: source.read(CHUNK_SIZE), b""):
                digest.update(block)
        header = {"created_at": now.astimezone(UTC).isoformat(timespec="seconds"),
                  "plaintext_bytes": plain.stat().st_size, "sha256": digest.hexdigest(),
                  "audit_verified": audit_ok, "ordo_version": __version__,
                  "source": state.to_dict()}
        fd = os.open(partial, os.O_CREAT | os.O_EXCL | os.O_WRONLY, FILE_MODE)
        with os.fdopen(fd, "wb") as out:
            encrypt_file(plain, out, key, header)
            out.flush()
            os.fsync(out.fileno())
        for candidate in _candidates(target, in_directory):
            try:
                _publish(partial, candidate)
            except FileExistsError:
                continue
            target = candidate
            break
        else:
            raise StoreError(f"{target} already exists: a backup never replaces a file"
                             + (f" ({MAX_SAME_SECOND} backups in that second)"
                                if in_directory else "; choose another name"))
        _fsync_dir(target.parent)
    except OSError as exc:
        raise StoreError(f"cannot write the backup {target}: {exc}") from exc
    finally:
        partial.unlink(missing_ok=True)
        shutil.rmtree(work, ignore_errors=True)
    removed = _rotate(target.parent, keep) if in_directory and keep else ()
    with target.open("rb") as written:
        header, _ = read_header(written)
    result = BackupResult(target, target.stat().st_size, time.monotonic() - started, header,
                          removed)
    log.info("backup written", extra={"fields": {
        "path": str(target), "bytes": result.size, "seconds": round(result.seconds, 3),
        "prescriptions": state.prescriptions, "audit_seq": state.audit_seq,
        "key_id": key.key_id, "rotated": len(removed)}})
    return result


# -- restore -----------------------------------------------------------------------------
@dataclass(frozen=True)
class RestoreResult:
    source: Path
    header: dict[str, Any]
    before: StoreState
    after: StoreState
    forced: bool
    safety_backup: Path | None
    audit_seq: int


def _newer_reasons(current: StoreState, backup_state: StoreState) -> list[str]:
    """Why the current data is newer than (or diverges from) the backup."""
    reasons = []
    if current.audit_seq > backup_state.audit_seq:
        reasons.append(f"the current audit chain reaches entry {current.audit_seq}, "
                       f"the backup only {backup_state.audit_seq}")
    elif (current.audit_seq == backup_state.audit_seq and current.audit_seq
          and current.audit_head != backup_state.audit_head):
        reasons.append(f"the current audit chain and the backup's differ at entry "
                       f"{current.audit_seq} (another history)")
    if current.newest_prescription_at and (
            not backup_state.newest_prescription_at
            or datetime.fromisoformat(current.newest_prescription_at)
            > datetime.fromisoformat(backup_state.newest_prescription_at)):
        reasons.append(f"a prescription changed at {current.newest_prescription_at}, after "
                       f"the backup's newest ({backup_state.newest_prescription_at or 'none'})")
    if current.outbox_seq > backup_state.outbox_seq:
        reasons.append(f"the registry queue reaches {current.outbox_seq}, the backup only "
                       f"{backup_state.outbox_seq}")
    return reasons


def _current_state(db_path: Path) -> StoreState:
    """The live store's figures; ``StoreError`` if it is damaged."""
    if not db_path.is_file():
        return StoreState()
    try:
        conn = connect(db_path)
        try:
            problems = [row[0] for row in conn.execute("PRAGMA quick_check")]
            if problems != ["ok"]:
                raise StoreError("; ".join(problems[:3]))
            return store_state(conn)
        finally:
            conn.close()
    except sqlite3.DatabaseError as exc:
        raise StoreError(str(exc)) from exc


def _set_aside(db_path: Path, now: datetime) -> Path:
    """Rename a damaged database (and its side files) out of the way, for investigation."""
    aside = db_path.with_name(f"{db_path.name}.damaged-{_utc_stamp(now)}")
    for suffix in ("", "-wal", "-shm"):
        side = db_path.with_name(db_path.name + suffix)
        if side.exists():
            os.replace(side, aside.with_name(aside.name + suffix))
    return aside


def restore(settings: Settings, source: Path, *, force: bool = False,
            actor: str = "system:restore", now: datetime | None = None) -> RestoreResult:
    """Replace the store with a verified backup (see the module docstring)."""
    key = load_key(settings.security.backup_key)
    now = now or datetime.now(UTC)
    work = _private_tempdir(settings.data_dir)
    try:
        plain = work / "restore.sqlite"
        try:
            with source.open("rb") as encrypted, plain.open("wb") as out:
                header = decrypt_file(encrypted, out, key)
        except OSError as exc:
            raise StoreError(f"cannot read the backup {source}: {exc}") from exc
        os.chmod(plain, FILE_MODE)
        backup_state = _check_copy(plain, header)

        safety = None
        try:
            before = _current_state(settings.db_path)
        except StoreError as exc:
            if not force:
                raise StoreError(f"the current database is damaged ({exc}): use --force to "
                                 "replace it (it is kept aside, renamed)") from exc
            safety, before = _set_aside(settings.db_path, now), StoreState()
            reasons = [f"the current database was damaged ({exc})"]
        else:
            reasons = [] if before.empty else _newer_reasons(before, backup_state)
            if reasons and not force:
                raise StoreError("refusing to restore over newer data: " + "; ".join(reasons)
                                 + ". Use --force to restore anyway (the current data is "
                                   "backed up first).")
            if reasons:
                safety = backup(settings, settings.data_dir / BACKUP_SUBDIR, now=now,
                                prefix=PRE_RESTORE_PREFIX).path
        floor = max(before.ids_last_ms, backup_state.ids_last_ms)
        _copy_into_live(plain, settings.db_path)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    store = open_store(settings.db_path, migrate=False)
    try:
        migrate(store)
        with store.write():
            meta.put(store, (LAST_MS_KEY, str(max(floor, store_state(store.conn).ids_last_ms))))
            seq = audit.append(store, actor=actor, action="store.restored", details={
                "backup_created_at": header.get("created_at"),
                "backup_key_id": header.get("key_id"),
                "backup_audit_seq": backup_state.audit_seq,
                "replaced_audit_seq": before.audit_seq,
                "forced": bool(reasons),
            })
        audit.verify(store)
        after = store_state(store.conn)
    finally:
        store.close()
    adopt_owner(settings.db_path)
    log.info("backup restored", extra={"fields": {
        "source": str(source), "backup_created_at": header.get("created_at"),
        "prescriptions": after.prescriptions, "audit_seq": after.audit_seq,
        "forced": bool(reasons)}})
    return RestoreResult(source, header, before, after, bool(reasons), safety, seq)


def _check_copy(plain: Path, header: dict[str, Any]) -> StoreState:
    """Integrity, audit chain and the header's figures of a decrypted backup."""
    conn = sqlite3.connect(str(plain), isolation_level=None)
    conn.row_factory = sqlite3.Row
    try:
        problems = _integrity(conn)
        if problems:
            raise StoreError("the backup fails its integrity check: " + "; ".join(problems[:3]))
        try:
            audit.verify(Store(conn, plain))
        except AuditChainBroken as exc:
            raise StoreError(f"the backup's audit chain does not verify: {exc}") from exc
        state = store_state(conn)
    except sqlite3.DatabaseError as exc:
        raise StoreError(f"the backup is not a usable database: {exc}") from exc
    finally:
        conn.close()
    recorded = StoreState.from_dict(header.get("source", {}))
    if (state.audit_seq, state.audit_head, state.prescriptions) != (
            recorded.audit_seq, recorded.audit_head, recorded.prescriptions):
        raise StoreError("the backup's content does not match its header")
    return state


def _copy_into_live(plain: Path, db_path: Path) -> None:
    """Overwrite the live database with ``plain`` through the backup API: processes that
    hold connections see the new content instead of writing to an unlinked file."""
    live = open_store(db_path, migrate=False)
    try:
        copy = sqlite3.connect(str(plain), isolation_level=None)
        try:
            copy.backup(live.conn, pages=-1)
        finally:
            copy.close()
        live.conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
    except sqlite3.Error as exc:
        raise StoreError(f"cannot write the restored data into {db_path}: {exc}") from exc
    finally:
        live.close()
    adopt_owner(db_path)


def latest_backup(directory: Path) -> Path | None:
    """The newest ``ordo-*.ordobak`` in ``directory``, if any."""
    if not directory.is_dir():
        return None
    found = sorted(p for p in directory.glob(f"{NAME_PREFIX}*{SUFFIX}") if p.is_file())
    return found[-1] if found else None
