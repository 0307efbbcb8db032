"""The composition root: the one place that builds adapters from the settings.

``bootstrap(settings)`` returns an ``App`` for one process. Nothing is opened or imported
until first used, and each adapter is built once (thread-safe): the units of work over the
SQLite file (migrated once per process), the card reader and watcher of the configured
backend (``card_backend``), the trust store, the order printer, the secure-paper printer
(PDF, ``[print]``) and the print queue and worker that use both, the registry client, the
sync use case, the drug referential, the drug facts of the prescribing checks and their
interaction source (none shipped), the clock, and MSSanté (the pharmacy's address for the
signing use case, the order's documents and message, the SMTP and IMAP adapters, the
sending and fetching use cases). The login recipe (card reader + trust store + audit log +
authentication) is ``App.login``.

Every entry point gets what it needs here: the CLI commands (``ctx.obj``), the kiosk
(``appliance.commands.kiosk``), the demo, the benchmarks and the tests; tests pass fakes
for any adapter (``bootstrap(settings, registry=..., clock=..., new_uow=..., mail_transport=...)``).

The kiosk draws its lock screen before anything slow: this module imports no adapter at
import time (the heavy libraries, cryptography, sqlite-utils, httpx, python-escpos, PIL,
qrcode and apscheduler, are imported by the methods that need them), so the lazy imports
of the kiosk's start live here.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, TypeVar

from appliance.config import CARD_BACKENDS, Settings
from appliance.errors import ConfigError
from appliance.ports.clock import Clock, utc_now

if TYPE_CHECKING:
    from datetime import datetime

    from appliance.domain.prescription import Prescription
    from appliance.ports.card import CardReader, CardWatcher
    from appliance.ports.drugs import InteractionSource
    from appliance.ports.mail import Mailbox, MailTransport, MessageReader, OrderMailer
    from appliance.ports.printer import OrderPrinter, PrinterStatus
    from appliance.ports.registry import Registry
    from appliance.ports.uow import UnitOfWork
    from appliance.services.auth import Audit, PractitionerSession
    from appliance.services.mailbox import FetchReport, MailPolicy, MailSender
    from appliance.services.prescribing import SignResult
    from appliance.services.printing import PrintQueue, PrintWorker, QueueStatus
    from appliance.services.sync import SyncEngine
    from appliance.services.trust import TrustStore
    from appliance.store.referential.facts import ReferentialFacts
    from appliance.store.referential.search import Referential

log = logging.getLogger(__name__)

T = TypeVar("T")


class Once:
    """A value built by the first call, from any thread; later calls return it. A build
    that raises is not remembered: the next call tries again."""

    def __init__(self, build: Callable[[], Any]) -> None:
        self._build = build
        self._lock = threading.Lock()
        self._done = False
        self._value: Any = None

    def __call__(self) -> Any:
        with self._lock:
            if not self._done:
                self._value = self._build()
                self._done = True
            return self._value

    @property
    def built(self) -> bool:
        return self._done


# -- the card backend ----------------------------------------------------------------------------
@dataclass(frozen=True)
class CardBackend:
    """A card reader (opens the card for a login) and a maker of watchers (card and reader
    events for the kiosk)."""

    reader: CardReader
    watcher: Callable[[], CardWatcher]


def card_backend(settings: Settings) -> CardBackend:
    """The card adapters of ``[card] backend``. A new backend is one more case here (and
    its name in ``appliance.config.CARD_BACKENDS``).

    ``pcsc``: pcscd and Ordo's own APDUs (``drivers.card.pcsc``, ``drivers.card.monitor``).
    ``pkcs11``: a PKCS#11 module (``drivers.card.pkcs11``; ``[card] pkcs11_module``, OpenSC's
    when empty, and ``token_label``). Building them opens nothing: pcscd is reached, and the
    PKCS#11 module loaded into this process, at the first card operation (a login, the
    watcher's first scan), so only the kiosk and the card commands ever load it."""
    card = settings.card
    if card.backend == "pcsc":
        from drivers.card.monitor import ReaderMonitor
        from drivers.card.pcsc import PcscReader

        return CardBackend(PcscReader(), ReaderMonitor)
    if card.backend == "pkcs11":
        from drivers.card import pkcs11

        path = card.pkcs11_module or pkcs11.default_module()
        if path is None:
            raise ConfigError("card.pkcs11_module", card.pkcs11_module,
                              "le chemin d'un module PKCS#11 (celui d'OpenSC n'est pas "
                              "installé : apt-get install opensc-pkcs11)")
        module = pkcs11.module(path)  # not loaded yet
        return CardBackend(pkcs11.Pkcs11Reader(module, card.token_label),
                           lambda: pkcs11.Pkcs11Watcher(module, card.token_label))
    raise ConfigError("card.backend", card.backend, " ou ".join(CARD_BACKENDS))


# -- the print worker of an appliance --------------------------------------------------------------
class PrintService:
    """The print queue worker of a process (the kiosk's): ``start`` returns at once, the
    printer driver (python-escpos, PIL, qrcode: about half a second of imports) is loaded and
    the queue started on a thread, so that the lock screen does not wait for them. Jobs
    queued meanwhile are printed when the worker starts."""

    def __init__(self, app: App, idle_s: float = 5.0) -> None:
        self.app = app
        self.idle_s = idle_s
        self._worker: PrintWorker | None = None
        self._starter: threading.Thread | None = None
        self._uow: UnitOfWork | None = None

    def start(self, on_status: Callable[[QueueStatus], None]) -> None:
        self._starter = threading.Thread(target=self._start, args=(on_status,),
                                         name="print-start", daemon=True)
        self._starter.start()

    def _start(self, on_status: Callable[[QueueStatus], None]) -> None:
        from appliance.services.printing import PrintWorker

        try:
            self._uow = self.app.new_uow()
            queue = self.app.print_queue(self._uow, on_status=on_status)
        except Exception:
            log.exception("print worker: cannot start")
            return
        self._worker = PrintWorker(queue, idle_s=self.idle_s)
        self._worker.start()

    def stop(self) -> None:
        starter, self._starter = self._starter, None
        if starter is not None:
            starter.join()
        worker, self._worker = self._worker, None
        if worker is not None:
            worker.stop()
        uow, self._uow = self._uow, None
        if uow is not None:
            uow.close()

    def prepare(self, draft: Prescription, at: datetime | None = None) -> bool:
        """Make ahead the receipt of the draft under review (see
        ``printing.prepare_print``; call it from a worker). False when nothing was."""
        from appliance.services.printing import prepare_print

        try:
            printer = self.app.order_printer()
        except Exception:
            log.exception("print not prepared: no printer driver")
            return False
        return prepare_print(printer, draft, kind=self.app.settings.print.qr, at=at)

    def wake(self, signed: SignResult | None = None) -> None:
        """Print now; ``signed``: what ``prescribing.sign`` just returned, printed as
        signed without reading it back (``PrintQueue.signed_here``)."""
        if self._worker is not None:
            orders = signed.orders if signed is not None else ()
            self._worker.wake([(one.prescription, one.qr_payload) for one in orders])

    def probe(self) -> PrinterStatus:
        """Ask the printer itself (network I/O: call it from a worker)."""
        return self.app.order_printer().status()


# -- the root ----------------------------------------------------------------------------------
class App:
    """Lazily built adapters for one process; nothing is opened until first used.

    ``new_uow()`` gives a unit of work on a connection of its own (one per thread; close
    it); ``uow`` is the main thread's, closed with the app. The other attributes are built
    once and shared (they are thread-safe).
    """

    def __init__(self, settings: Settings, *,
                 new_uow: Callable[[], UnitOfWork] | None = None,
                 card: CardBackend | None = None,
                 trust: TrustStore | None = None,
                 printer: OrderPrinter | None = None,
                 secure_printer: OrderPrinter | None = None,
                 registry: Registry | None = None,
                 referential: Referential | None = None,
                 drug_facts: ReferentialFacts | None = None,
                 interactions: InteractionSource | None = None,
                 clock: Clock | None = None,
                 mail_transport: Callable[[], MailTransport] | None = None,
                 mailbox: Callable[[], Mailbox] | None = None) -> None:
        self.settings = settings
        self.clock: Clock = clock or utc_now
        self._closers: list[Callable[[], None]] = []
        self._lock = threading.Lock()
        self._uow_factory = new_uow
        self._migrated = Once(self._migrate)
        self._card = Once(lambda: card or card_backend(settings))
        self._trust = Once(lambda: trust or self._load_trust())
        self._printer = Once(lambda: printer or self._make_printer())
        self._secure_printer = Once(lambda: secure_printer or self._make_secure_printer())
        self._registry = Once(lambda: registry or self._make_registry())
        self._referential = Once(lambda: referential or self._open_referential())
        self._order_mailer = Once(self._make_order_mailer)
        self._mail_transport = mail_transport
        self._mailbox = mailbox
        self._drug_facts = Once(lambda: drug_facts or self._open_drug_facts())
        self._interactions = Once(lambda: interactions or self._no_interactions())
        self._main_uow: UnitOfWork | None = None

    # -- the database -----------------------------------------------------------------------
    def _migrate(self) -> None:
        from appliance.store.db import open_store

        open_store(self.settings.db_path, migrate=True).close()

    def migrate(self) -> None:
        """Create the database file and bring its schema up to date, once per process."""
        if self._uow_factory is None:
            self._migrated()

    def new_uow(self) -> UnitOfWork:
        """A unit of work on its own connection (close it when done)."""
        if self._uow_factory is not None:
            return self._uow_factory()
        from appliance.store.uow import SqliteUnitOfWork

        self.migrate()
        return SqliteUnitOfWork.open(self.settings.db_path)

    @property
    def uow(self) -> UnitOfWork:
        """The unit of work of the main thread (the CLI commands'), closed with the app."""
        with self._lock:
            if self._main_uow is None:
                self._main_uow = uow = self.new_uow()
                self._closers.append(uow.close)
            return self._main_uow

    # -- the card and the login -------------------------------------------------------------
    @property
    def card_reader(self) -> CardReader:
        reader: CardReader = self._card().reader
        return reader

    def card_watcher(self) -> CardWatcher:
        """A new card watcher (not started)."""
        watcher: CardWatcher = self._card().watcher()
        return watcher

    def _load_trust(self) -> TrustStore:
        from appliance.services.trust import load_trust_store

        security = self.settings.security
        return load_trust_store(security.trust_roots, security.crls)

    @property
    def trust(self) -> TrustStore:
        """The CPS trust roots and CRLs of ``[security]`` (``ConfigError`` if unreadable)."""
        store: TrustStore = self._trust()
        return store

    @property
    def audit_log(self) -> Audit:
        """``audit(**entry)`` for the card sessions, from any thread."""
        from appliance.services.auth import audit_log

        return audit_log(self.new_uow)

    def login(self, pin: str, *, reader: str | None = None,
              slot: int | None = None) -> PractitionerSession:
        """Open the card (by reader name, slot, or the first reader holding one) and
        authenticate its holder with ``pin`` against the trust store; audited. Call it on
        the thread that owns the card."""
        from appliance.services.auth import login

        return login(self.card_reader, pin, self.trust, audit=self.audit_log,
                     idle_timeout_s=float(self.settings.security.idle_timeout_s),
                     name=reader, slot=slot, now=self.clock())

    # -- printing ------------------------------------------------------------------------------
    def _make_printer(self) -> OrderPrinter:
        from drivers.printer import use_escpos_cache

        use_escpos_cache()  # before python-escpos is first imported
        from drivers.printer.escpos import EscPosOrderPrinter

        return EscPosOrderPrinter.from_settings(self.settings)

    def order_printer(self) -> OrderPrinter:
        """The printer of ``[printer]`` (its driver is imported by the first call)."""
        printer: OrderPrinter = self._printer()
        return printer

    def _make_secure_printer(self) -> OrderPrinter:
        from drivers.printer.secure import SecurePdfPrinter

        return SecurePdfPrinter.from_settings(self.settings)

    def secure_printer(self) -> OrderPrinter:
        """Where secure prescriptions print: their PDF/A in ``[print] secure_pdf_dir``, and
        sent to ``secure_printer_uri`` when set (never the receipt printer)."""
        printer: OrderPrinter = self._secure_printer()
        return printer

    def print_queue(self, uow: UnitOfWork | None = None, **options: Any) -> PrintQueue:
        """The print queue on ``uow`` (default: the main thread's): the receipt printer,
        the secure-paper printer and the QR content of ``[print] qr``."""
        from appliance.services.printing import PrintQueue

        return PrintQueue(uow or self.uow, self.order_printer(), clock=self.clock,
                          secure_printer=self.secure_printer(), qr=self.settings.print.qr,
                          **options)

    def print_service(self, idle_s: float = 5.0) -> PrintService:
        return PrintService(self, idle_s)

    # -- the registry --------------------------------------------------------------------------
    def _make_registry(self) -> Registry:
        from sync.client import RegistryClient

        client = RegistryClient.from_settings(self.settings.registry)
        self._closers.append(client.close)
        return client

    @property
    def registry(self) -> Registry:
        registry: Registry = self._registry()
        return registry

    def sync_engine(self, uow: UnitOfWork | None = None, **config: float) -> SyncEngine:
        """The sync use case on ``uow`` (default: the main thread's), with ``[sync]`` and
        ``config`` overrides (``EngineConfig`` fields)."""
        from appliance.services.sync import EngineConfig, SyncEngine

        settings = EngineConfig.from_settings(self.settings.sync, **config)
        settings = replace(settings, finess=self.settings.establishment.finess)
        return SyncEngine(uow or self.uow, self.registry, settings, clock=self.clock)

    # -- MSSanté -------------------------------------------------------------------------------
    @property
    def mail_policy(self) -> MailPolicy:
        """Where the signing use case queues each order: ``[pharmacy] mssante`` (empty:
        nowhere). Every signing entry point passes it (``prescribing.sign(..., mail=)``)."""
        from appliance.services.mailbox import MailPolicy

        return MailPolicy(self.settings.pharmacy.mssante)

    def _make_order_mailer(self) -> OrderMailer:
        from appliance.store.referential.build import referential_path
        from drivers.printer.layout import Letterhead, OrderDocument
        from drivers.printer.pdf import render_pdf
        from sync.cda import referential_lookup
        from sync.mssante import OrderMailer

        est = self.settings.establishment
        letterhead = Letterhead(est.name, est.finess, est.address)

        def render(prescription: Any, payload: str) -> bytes:
            # dated by the signature: every send of an order carries the same bytes
            return render_pdf(OrderDocument(prescription, payload, letterhead),
                              created=prescription.signed_at)

        return OrderMailer(est, self.settings.mssante.mailbox, render,
                           referential_lookup(referential_path(self.settings.data_dir)))

    def order_mailer(self) -> OrderMailer:
        """The order's PDF and eP-MED-DM document, and its message to the pharmacy."""
        mailer: OrderMailer = self._order_mailer()
        return mailer

    def mail_transport(self) -> MailTransport:
        """A new SMTP submission session of ``[mssante]`` (opened on first send)."""
        if self._mail_transport is not None:
            return self._mail_transport()
        from sync.mssante import SmtpTransport

        return SmtpTransport(self.settings.mssante)

    def mailbox(self) -> Mailbox:
        """The establishment's inbox of ``[mssante]`` (IMAPS, opened by ``with``)."""
        if self._mailbox is not None:
            return self._mailbox()
        from sync.mssante import ImapMailbox

        return ImapMailbox(self.settings.mssante)

    @property
    def message_reader(self) -> MessageReader:
        from sync.mssante import MessageReader

        return MessageReader()

    def mail_sender(self, uow: UnitOfWork | None = None, **options: Any) -> MailSender:
        """The sending use case on ``uow`` (default: the main thread's)."""
        from appliance.services.mailbox import MailSender

        options.setdefault("backoff_cap_s", float(self.settings.sync.backoff_cap_s))
        return MailSender(uow or self.uow, self.order_mailer(), self.mail_transport,
                          clock=self.clock, **options)

    def mail_fetch(self, uow: UnitOfWork | None = None) -> Callable[[], FetchReport]:
        """The fetching use case on ``uow`` (default: the main thread's), ready to call."""
        from appliance.services.mailbox import fetch_inbox

        target = uow or self.uow

        def fetch() -> FetchReport:
            return fetch_inbox(target, self.mailbox(), self.message_reader, clock=self.clock)

        return fetch

    @property
    def sends_mail(self) -> bool:
        """``[pharmacy] mssante`` and the SMTP side of ``[mssante]`` are set."""
        m = self.settings.mssante
        return bool(self.settings.pharmacy.mssante and m.mailbox
                    and (m.smtp_host or self._mail_transport is not None))

    @property
    def reads_mail(self) -> bool:
        """The IMAP side of ``[mssante]`` is set."""
        m = self.settings.mssante
        return bool(m.mailbox and (m.imap_host or self._mailbox is not None))

    # -- the drug referential ----------------------------------------------------------------
    def _open_referential(self) -> Referential:
        from appliance.store.referential.build import referential_path
        from appliance.store.referential.search import Referential

        referential = Referential(referential_path(self.settings.data_dir))
        self._closers.append(referential.close)
        return referential

    @property
    def referential(self) -> Referential:
        """The drug referential of the data directory (opened on its first query)."""
        referential: Referential = self._referential()
        return referential

    def _open_drug_facts(self) -> ReferentialFacts:
        from appliance.store.referential.build import referential_path
        from appliance.store.referential.facts import ReferentialFacts

        facts = ReferentialFacts(referential_path(self.settings.data_dir))
        self._closers.append(facts.close)
        return facts

    @property
    def drug_facts(self) -> ReferentialFacts:
        """What the prescribing checks read about drugs and substances
        (``appliance.ports.drugs.DrugFacts`` and ``SubstanceLookup``), from the referential
        file of the data directory (opened on first use; ``StoreError`` if there is none)."""
        facts: ReferentialFacts = self._drug_facts()
        return facts

    def has_referential(self) -> bool:
        """Whether a drug referential was imported (``ordo drugs import``)."""
        from appliance.store.referential.build import referential_path

        return self._drug_facts.built or referential_path(self.settings.data_dir).exists()

    @staticmethod
    def _no_interactions() -> InteractionSource:
        from appliance.store.referential.interactions import NoInteractionData

        return NoInteractionData()

    @property
    def interactions(self) -> InteractionSource:
        """The drug-interaction database of the checks: none is shipped (no open source
        exists); a licensed one is passed here (``bootstrap(settings, interactions=...)``)."""
        source: InteractionSource = self._interactions()
        return source

    # -- the end -----------------------------------------------------------------------------
    def close(self) -> None:
        while self._closers:
            closer = self._closers.pop()
            try:
                closer()
            except Exception:
                log.exception("closing an adapter failed")


def bootstrap(settings: Settings, **adapters: Any) -> App:
    """The ``App`` of this process; ``adapters`` replace the ones built from the settings
    (tests: ``new_uow``, ``card``, ``trust``, ``printer``, ``secure_printer``, ``registry``,
    ``referential``, ``drug_facts``, ``interactions``, ``clock``, ``mail_transport``,
    ``mailbox``)."""
    return App(settings, **adapters)
