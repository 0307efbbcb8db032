"""Invariants read back after a fault: each check returns a list of problems (empty: holds).

- ``snapshot``: one read transaction around a set of checks (writers go on meanwhile);
- ``integrity``: ``PRAGMA integrity_check`` says ``ok``;
- ``audit_chain``: ``appliance.store.audit.verify`` walks the whole chain;
- ``all_or_nothing``: a prescription is either a draft with nothing else (no signature, no
  outbox row, no print job, no ``prescription.signed`` entry), or signed with exactly one of
  each: never half-signed;
- ``signed_and_valid``: the IDs shown as signed are stored signed, the signed bytes match the
  stored prescription (``SignedOrder.matches``) and the QR payload rebuilt from the store
  verifies offline against the trust roots (``verify_payload``);
- ``split_pairs``: a mixed draft became two signed orders (a ``prescription.split`` entry
  naming both) or stayed a draft: never one order without the other;
- ``PrintedCopies``: which prescription each job captured by the printer emulator carried,
  and whether the printer acknowledged it (answered the status request that follows the
  job's last byte); ``done_jobs_printed``: every job marked done was acknowledged, or for
  a secure order, its whole PDF was written (and it never reached the receipt printer).
"""

from __future__ import annotations

import contextlib
import json
import re
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from cryptography import x509

from appliance.domain.prescription import Prescription
from appliance.domain.qr import SignedOrder
from appliance.errors import AuditChainBroken, OrdoError
from appliance.services.printing import order_payload
from appliance.services.signature import verify_payload
from appliance.store import audit
from appliance.store.db import Store
from appliance.store.prescriptions import decode_body
from appliance.store.uow import SqliteUnitOfWork

# Epson ESC/POS "DLE EOT 4" (real-time paper status): the adapter sends it after the job's
# last byte and takes its answer as the printer's acknowledgement (drivers/printer/escpos.py).
ACK_QUERY = b"\x10\x04\x04"
STATUS_QUERIES_PER_JOB = 3  # DLE EOT 4 and DLE EOT 1 before the job, DLE EOT 4 after it
PRINTED_ID = re.compile(r"^[0-9A-Z]{4}(?: [0-9A-Z]{4}){5}$")
SIGNED_STATES = ("signed", "registered", "dispensed", "partially_dispensed", "cancelled")


@contextlib.contextmanager
def snapshot(store: Store) -> Iterator[None]:
    """Run the checks inside one read transaction: in WAL mode they all see the same
    committed state while other processes keep writing."""
    store.conn.execute("BEGIN")
    store.conn.execute("SELECT count(*) FROM meta").fetchone()  # the snapshot starts here
    try:
        yield
    finally:
        store.conn.execute("ROLLBACK")


def integrity(store: Store) -> list[str]:
    rows = store.query("PRAGMA integrity_check")
    result = [row["integrity_check"] for row in rows]
    return [] if result == ["ok"] else [f"integrity_check: {result[:5]}"]


def audit_chain(store: Store) -> list[str]:
    try:
        audit.verify(store)
    except AuditChainBroken as exc:
        return [f"audit chain broken: {exc}"]
    return []


def _counts(store: Store, sql: str) -> Counter:
    return Counter({row["id"]: row["n"] for row in store.query(sql)})


def all_or_nothing(store: Store) -> list[str]:
    """Every prescription fully signed (one outbox create, one original print job, one
    ``prescription.signed`` audit entry, a signature) or a bare draft."""
    creates = _counts(store, "SELECT prescription_id AS id, count(*) AS n FROM outbox"
                             " WHERE kind = 'create' GROUP BY prescription_id")
    jobs = _counts(store, "SELECT prescription_id AS id, count(*) AS n FROM print_jobs"
                          " WHERE kind = 'original' GROUP BY prescription_id")
    entries = _counts(store, "SELECT subject AS id, count(*) AS n FROM audit"
                             " WHERE action = 'prescription.signed' GROUP BY subject")
    problems = []
    rows = store.query("SELECT id, state, signature IS NOT NULL AS sig,"
                       " signed_payload IS NOT NULL AS payload FROM prescriptions")
    # the signed bytes: stored, or (what the store does when they are the ones the body
    # rebuilds) rebuilt by the signed row's load, which checks the signature over them
    signed = SqliteUnitOfWork(store, owns=False).prescriptions.signed_rows(
        [row["id"] for row in rows if row["state"] != "draft"])
    known = set()
    for row in rows:
        pid = row["id"]
        known.add(pid)
        payload = row["payload"]
        if not payload and pid in signed:
            try:
                payload = int(signed[pid].load() is not None)
            except (OrdoError, ValueError):
                payload = 0
        found = (row["sig"], payload, creates[pid], jobs[pid], entries[pid])
        if row["state"] == "draft":
            if found != (0, 0, 0, 0, 0):
                problems.append(f"{pid}: a draft with (signature, signed bytes, outbox, "
                                f"print job, audit) = {found}")
        elif row["state"] in SIGNED_STATES:
            if found != (1, 1, 1, 1, 1):
                problems.append(f"{pid}: {row['state']} with (signature, signed bytes, outbox, "
                                f"print job, audit) = {found}")
        else:
            problems.append(f"{pid}: unknown state {row['state']!r}")
    for orphan in (set(creates) | set(jobs) | set(entries)) - known:
        problems.append(f"{orphan}: outbox, print job or audit entry without a prescription")
    return problems


def signed_and_valid(store: Store, ids: Iterable[str], roots: Sequence[Any],
                     crls: Sequence[Any] = ()) -> list[str]:
    problems = []
    for pid in ids:
        rows = store.query("SELECT state, body, signed_payload FROM prescriptions WHERE id = ?",
                           (pid,))
        if not rows:
            problems.append(f"{pid}: shown as signed, not in the store")
            continue
        row = rows[0]
        if row["state"] not in SIGNED_STATES:
            problems.append(f"{pid}: shown as signed, stored as {row['state']}")
            continue
        try:
            stored = Prescription.from_dict(json.loads(decode_body(row["body"])))
            uow = SqliteUnitOfWork(store, owns=False)
            signed_row = uow.prescriptions.signed_rows([pid])[pid]
            loaded = signed_row.load()   # the signed bytes, stored or rebuilt, checked
            if loaded is None:
                problems.append(f"{pid}: shown as signed, stored without a signature")
                continue
            if not SignedOrder.from_bytes(loaded.proof.signed_part).matches(stored):
                problems.append(f"{pid}: the signed bytes do not match the stored prescription")
            signer = x509.load_der_x509_certificate(bytes(signed_row.signer_cert or b""))
            verified = verify_payload(order_payload(uow, pid, "signed")[1], roots, crls,
                                      certificates=[signer])
        except (OrdoError, ValueError) as exc:
            problems.append(f"{pid}: does not verify: {exc}")
            continue
        if verified.fields.prescription_id != pid:
            problems.append(f"{pid}: the payload carries {verified.fields.prescription_id}")
    return problems


class PrintedCopies:
    """What the printer emulator received, per prescription ID (read from the ID printed in
    clear under the QR code). ``copies``: jobs the printer acknowledged; ``cut_off``: jobs
    cut short before the acknowledgement (the worker died or the link dropped)."""

    def __init__(self, emulator: Any) -> None:
        self.emulator = emulator
        self.seen = 0
        self.copies: Counter = Counter()
        self.cut_off: Counter = Counter()
        self.jobs: dict[str, list[Any]] = {}
        self.unreadable = 0

    @staticmethod
    def acknowledged(job: Any) -> bool:
        return bytes(job.raw).endswith(ACK_QUERY) \
            and job.status_queries >= STATUS_QUERIES_PER_JOB

    def update(self) -> None:
        jobs = list(self.emulator.jobs)
        for job in jobs[self.seen:]:
            ids = {line.strip().replace(" ", "") for line in job.text
                   if PRINTED_ID.match(line.strip())}
            if len(ids) != 1:
                self.unreadable += 1
                continue
            (pid,) = ids
            if self.acknowledged(job):
                self.copies[pid] += 1
                self.jobs.setdefault(pid, []).append(job)
            else:
                self.cut_off[pid] += 1
        self.seen = len(jobs)

    def wait_for(self, ids: Iterable[str], timeout_s: float = 15.0) -> list[str]:
        """Wait until each ID has an acknowledged copy; return those still missing."""
        wanted = set(ids)
        deadline = time.monotonic() + timeout_s
        while True:
            self.update()
            missing = sorted(pid for pid in wanted if not self.copies[pid])
            if not missing or time.monotonic() > deadline:
                return missing
            time.sleep(0.01)

    def duplicates(self) -> int:
        return sum(n - 1 for n in self.copies.values() if n > 1)


def secure_ids(store: Store) -> set[str]:
    """The stored prescriptions that go to secure paper (``Prescription.secure``)."""
    return {row["id"] for row in store.query("SELECT id, body FROM prescriptions")
            if Prescription.from_dict(json.loads(decode_body(row["body"]))).secure}


def secure_pdf_problem(secure_dir: Path, pid: str) -> str | None:
    """What is wrong with a secure order's PDF (written whole, then renamed), if anything."""
    path = secure_dir / f"{pid}.pdf"
    if not path.exists():
        return f"{pid}: secure order, no PDF in {secure_dir}"
    data = path.read_bytes()
    if not data.startswith(b"%PDF-") or b"%%EOF" not in data[-64:]:
        return f"{pid}: secure order, its PDF is cut short ({len(data)} bytes)"
    return None


def done_jobs_printed(store: Store, copies: PrintedCopies, timeout_s: float = 15.0,
                      secure_dir: Path | None = None) -> list[str]:
    """Every print job marked ``done`` reached the printer, acknowledged: ``done`` is never
    written before the printer took the last byte; a secure order's job is done only once
    its whole PDF is in ``secure_dir`` (it never reaches the receipt printer)."""
    done = {row["prescription_id"] for row in store.query(
        "SELECT DISTINCT prescription_id FROM print_jobs WHERE status = 'done'")}
    secure = secure_ids(store) if secure_dir is not None else set()
    problems = [f"{pid}: print job done, but the printer never acknowledged a copy"
                for pid in copies.wait_for(done - secure, timeout_s)]
    if secure_dir is not None:
        problems += [problem for pid in sorted(done & secure)
                     if (problem := secure_pdf_problem(secure_dir, pid))]
        problems += [f"{pid}: a secure order printed on the receipt"
                     for pid in sorted(secure) if copies.copies[pid] or copies.cut_off[pid]]
    return problems


def split_pairs(store: Store) -> list[str]:
    """A mixed draft is signed as two orders together or not at all: each
    ``prescription.split`` audit entry names a signed order and a signed secure order; each
    signed secure order was split from exactly one signed order."""
    states = {row["id"]: row["state"] for row in store.query(
        "SELECT id, state FROM prescriptions")}
    splits = [(row["subject"], json.loads(row["details"]).get("secure"))
              for row in store.query("SELECT subject, details FROM audit"
                                     " WHERE action = 'prescription.split'")]
    problems = [f"{first} split into {second}: {first} {states.get(first)}, {second} "
                f"{states.get(second)}" for first, second in splits
                if states.get(first) not in SIGNED_STATES
                or states.get(second) not in SIGNED_STATES]
    named = Counter(second for _, second in splits)
    signed_secure = {pid for pid in secure_ids(store) if states[pid] in SIGNED_STATES}
    problems += [f"{pid}: signed secure order named by {named[pid]} split entries"
                 for pid in sorted(signed_secure) if named[pid] != 1]
    return problems
