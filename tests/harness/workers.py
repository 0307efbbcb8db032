"""Entry points of the harnesses' child processes, and the fork server that starts them.

Each entry point opens its own unit of work (one SQLite connection per process, as the
kiosk and the sync service do), runs the real use cases and never catches SIGKILL: the
parent kills it wherever it is.

- ``prescriber``: the headless ``prescribing.prescribe`` with a software signer over the
  test PKI's physician key; an ID is written to the ``shown`` file only after ``prescribe``
  returned (what the physician would have seen as signed);
- ``printer``: ``PrintQueue.run_once`` in a loop on the ESC/POS adapter (a TCP printer);
- ``syncer``: ``SyncEngine.push`` whenever the outbox has something due, under the sync
  service's own single-instance lock;
- ``producer``: signs and records prescriptions in chunks (the registry chaos run).

``drain=True`` makes ``printer`` and ``syncer`` return once their queue is empty instead of
waiting for more work. ``clock_shift_s`` moves the print queue's clock forward, as when a
worker restarts after the leases of the dead one expired.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from appliance.domain.people import Role
from appliance.domain.prescription_id import PrescriptionIdGenerator
from appliance.services import prescribing
from appliance.services.auth import CardHolder, parse_practitioner
from appliance.services.drafts import Draft
from appliance.services.printing import PrintQueue
from appliance.services.signature import SoftwareSigner, record_signature, sign_prescription
from appliance.services.sync import EngineConfig, PushReport, SyncEngine
from appliance.store.uow import SqliteUnitOfWork
from drivers.card.pki import PkiPaths
from drivers.printer.escpos import EscPosOrderPrinter
from drivers.printer.layout import Letterhead
from sync.client import RegistryClient
from sync.service import single_instance
from tests import factories

IDLE_S = 0.01
LETTERHEAD = Letterhead("EHPAD Les Tilleuls", "750000001", "12 rue des Lilas, 75012 Paris")


@dataclass(frozen=True)
class Setup:
    """Where the children find everything (plain values: it is pickled to each child)."""

    store: str
    pki: str
    resident_ins: str
    printer_uri: str = ""
    registry_url: str = ""
    media: str = "80mm"
    engine: dict[str, Any] = field(default_factory=dict)


class SoftwareSession:
    """The ``prescribing.Operator`` of a physician whose card is a software key: the crash
    harness needs signatures in a millisecond and no pcscd (the card path has its own
    fault tests)."""

    role = Role.PRESCRIBER
    locked = False
    can_sign = True

    def __init__(self, signer: SoftwareSigner, holder: CardHolder) -> None:
        self.signer = signer
        self.practitioner = holder

    @property
    def certificate_der(self) -> bytes:
        return self.signer.certificate_der

    def touch(self) -> None:
        """Never idle, never locked."""

    def sign(self, data: bytes) -> bytes:
        return self.signer.sign(data)


def physician_signer(pki_dir: str | Path, profile: str = "physician") -> SoftwareSigner:
    """A ``SoftwareSigner`` over the signature key of a test PKI card. The key's RSA
    consistency checks are skipped (our own test key; they cost ~80 ms per process, more
    than a whole trial's prescriptions); every signature is still verified with the
    certificate by ``sign_prescription``."""
    card = PkiPaths(Path(pki_dir)).card_dir(profile)
    key = load_pem_private_key((card / "sign.key").read_bytes(), None,
                               unsafe_skip_rsa_key_validation=True)
    assert isinstance(key, rsa.RSAPrivateKey)
    return SoftwareSigner(key,
                          x509.load_der_x509_certificate((card / "sign.der").read_bytes()))


def physician_session(pki_dir: str | Path) -> SoftwareSession:
    signer = physician_signer(pki_dir)
    holder = parse_practitioner(x509.load_der_x509_certificate(signer.certificate_der))
    return SoftwareSession(signer, holder)


def draft_lines() -> list:
    return list(factories.lines())


# -- children --------------------------------------------------------------------------------
def prescriber(setup: Setup, shown_path: str, count: int, pause_s: float = 0.0) -> None:
    """Sign ``count`` prescriptions; report each ID once ``prescribe`` returned it."""
    uow = SqliteUnitOfWork.open(setup.store)
    session = physician_session(setup.pki)
    resident = uow.residents.get(setup.resident_ins)
    assert resident is not None
    ids = prescribing.IdAllocator()
    shown = os.open(shown_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    for _ in range(count):
        result = prescribing.prescribe(uow, session, Draft(resident, draft_lines()), ids=ids)
        os.write(shown, f"{result.prescription.id}\n".encode("ascii"))
        if pause_s:
            time.sleep(pause_s)
    os.close(shown)
    uow.close()


def _queued(uow: Any) -> int:
    return int(uow.print_jobs.counts().get("queued", 0))


def printer(setup: Setup, *, drain: bool = False, clock_shift_s: float = 0.0,
            worker_id: str | None = None) -> None:
    """Print queued jobs as they come (``drain``: until none is left)."""
    uow = SqliteUnitOfWork.open(setup.store)
    device = EscPosOrderPrinter(setup.printer_uri, establishment=LETTERHEAD, media=setup.media,
                                timeout=5.0, status_timeout=2.0)
    shift = timedelta(seconds=clock_shift_s)
    queue = PrintQueue(uow, device, clock=lambda: datetime.now(UTC) + shift,
                       worker_id=worker_id)
    while True:
        report = queue.run_once()
        if drain and not _queued(uow):
            break
        if not report.printed:
            time.sleep(IDLE_S)
    uow.close()


def _add(total: dict[str, Any], report: PushReport) -> None:
    for key, value in asdict(report).items():
        if isinstance(value, bool) or not isinstance(value, int | float):
            continue
        if key != "remaining":
            total[key] = round(total.get(key, 0) + value, 3)


def syncer(setup: Setup, *, drain: bool = False, report_path: str | None = None) -> None:
    """Push whatever is due, under the sync service's lock (``drain``: until the outbox is
    empty; the summed push reports go to ``report_path`` as JSON)."""
    uow = SqliteUnitOfWork.open(setup.store)
    client = RegistryClient(setup.registry_url, timeout_s=5.0)
    engine = SyncEngine(uow, client, EngineConfig(**setup.engine))
    total: dict[str, Any] = {}
    started = time.monotonic()
    with single_instance(Path(setup.store).parent):
        while True:
            if uow.outbox.next_due_at() is None:
                if drain:
                    break
                time.sleep(IDLE_S)
                continue
            _add(total, engine.push())
    total["wall_seconds"] = round(time.monotonic() - started, 3)
    client.close()
    uow.close()
    if report_path:
        Path(report_path).write_text(json.dumps(total), "utf-8")


def producer(setup: Setup, count: int, chunk: int = 100, lines: int = 4) -> None:
    """Sign ``count`` prescriptions of ``lines`` lines (at most 4: medication, ALD
    medication, device, act) with the physician's key and record them as the sign use case
    does (``record_signature``), ``chunk`` per transaction."""
    uow = SqliteUnitOfWork.open(setup.store)
    signer = physician_signer(setup.pki)
    doctor = uow.practitioners.get(physician_session(setup.pki).practitioner.id_nat_ps)
    resident = uow.residents.get(setup.resident_ins)
    assert doctor is not None and resident is not None
    ids = PrescriptionIdGenerator(lambda: time.time_ns() // 1_000_000)
    made = 0
    while made < count:
        size = min(chunk, count - made)
        signed = [sign_prescription(factories.prescription(ids.new(), prescriber=doctor,
                                                           resident=resident,
                                                           created_at=datetime.now(UTC),
                                                           lines=draft_lines()[:lines]),
                                    signer, datetime.now(UTC).replace(microsecond=0))
                  for _ in range(size)]
        with uow:
            for one in signed:
                record_signature(uow, one, actor=doctor.id_nat_ps)
            uow.commit()
        made += size
    uow.close()


# -- the fork server -------------------------------------------------------------------------
# Each child runs the parent's main script again before its target (``spawn.prepare``), and
# Python 3.11's fork server cannot preload ``__main__`` (it asks for a ``main_path`` key that
# ``get_preparation_data`` never sets): preloading what those scripts import (pytest's,
# ``python -m bench.chaos``) keeps that re-run to a millisecond instead of ~200 ms.
PRELOAD = (__name__, "tests.harness.crash", "tests.harness.chaos", "drivers.printer.emulator",
           "sync.registry_sim", "pytest", "bench.chaos")


def fork_context() -> multiprocessing.context.BaseContext:
    """A ``forkserver`` context whose server imported the application once: children start
    in milliseconds. The server has no threads, so forking it is safe even when the caller
    runs emulators and registries in threads."""
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(list(PRELOAD))
    return ctx


def prepare_store(setup: Setup, pki_dir: str | Path, resident: Any, am: str = "751234567"
                  ) -> None:
    """Create the store with the resident and the physician (with a N° AM) on record."""
    uow = SqliteUnitOfWork.open(setup.store, migrate=True)
    holder = physician_session(pki_dir).practitioner
    with uow:
        uow.residents.upsert([resident])
        uow.practitioners.upsert(holder.as_practitioner(Role.PRESCRIBER, am=am))
        uow.commit()
    uow.close()
