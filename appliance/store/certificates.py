"""Owner of the ``certificates`` table: each signer certificate once, keyed by its SHA-256.

A physician signs every prescription with the same card certificate (about 1 KB of DER):
the prescriptions refer to it by ``signer_cert_id`` instead of carrying a copy each
(migration m009 moved the copies of older rows here). Rows are immutable; the retention
policy removes the certificates no prescription refers to any more.
"""

from __future__ import annotations

import hashlib

from appliance.store.db import Store


def fingerprint(der: bytes) -> bytes:
    return hashlib.sha256(der).digest()


def intern(store: Store, der: bytes) -> int:
    """The id of ``der`` in the table, added if new (in the caller's write transaction)."""
    store.require_write("certificates")
    digest = fingerprint(der)
    known = store.one("SELECT id FROM certificates WHERE sha256 = ?", [digest])
    if known is not None:
        return int(known)
    return int(store.execute("INSERT INTO certificates (sha256, der) VALUES (?, ?)",
                             [digest, der]).lastrowid or 0)


def purge_unused(store: Store) -> int:
    """Delete the certificates no prescription refers to (retention); returns how many."""
    store.require_write("certificates")
    return store.execute(
        "DELETE FROM certificates WHERE id NOT IN (SELECT signer_cert_id FROM prescriptions"
        " WHERE signer_cert_id IS NOT NULL)").rowcount


def count_freed(store: Store, leaving: str) -> int:
    """How many certificates no prescription would refer to once the prescriptions whose
    IDs are in the table ``leaving`` (a constant name, never input) are gone."""
    return int(store.one(
        "SELECT count(*) FROM certificates WHERE id NOT IN (SELECT signer_cert_id"  # noqa: S608
        f" FROM prescriptions WHERE signer_cert_id IS NOT NULL AND id NOT IN"
        f" (SELECT id FROM {leaving}))"))


class CertificatesTable:
    """The ``Certificates`` repository of a unit of work."""

    def __init__(self, store: Store) -> None:
        self._store = store

    def intern(self, der: bytes) -> int:
        return intern(self._store, der)

    def get(self, cert_id: int) -> bytes | None:
        value = self._store.one("SELECT der FROM certificates WHERE id = ?", [cert_id])
        return None if value is None else bytes(value)

    def count(self) -> int:
        return int(self._store.one("SELECT count(*) FROM certificates"))
