"""The CPS card through a PKCS#11 module: OpenSC's ``opensc-pkcs11.so`` (CPx cards through
its IAS-ECC driver), the ANS's own middleware (Cryptolib CPS, ``libcps3_pkcs11_lux.so``),
or SoftHSM2 in the tests.

``Pkcs11Reader`` (``appliance.ports.card.CardReader``), ``Pkcs11Card`` (``CardSession``) and
``Pkcs11Watcher`` (``CardWatcher``) sit behind the same port as the PC/SC path
(``drivers.card.pcsc``, ``cps``, ``monitor``): the services, the kiosk and the CLI see no
difference. The binding is python-pkcs11 (``import pkcs11``), imported when the module is
first used, never at import time.

How the port maps onto PKCS#11:

* a "reader" is a slot, named by its description (OpenSC: the PC/SC reader's name); a card
  is an initialised token in it (``token_label`` keeps only the token of that label).
  PKCS#11 has no ATR: ``atr`` is empty.
* ``pin_status``: the token flags of ``C_GetTokenInfo``, as precisely as the token tells:
  ``CKF_USER_PIN_LOCKED`` → 0 tries (blocked), ``CKF_USER_PIN_FINAL_TRY`` → 1, otherwise
  unknown (``None``; ``CKF_USER_PIN_COUNT_LOW`` only says that a wrong PIN was typed).
* ``verify_pin``: ``C_Login`` (CKU_USER) on a new session; ``CKR_PIN_INCORRECT`` →
  ``WrongPin`` with the tries the flags then tell, ``CKR_PIN_LOCKED`` → ``PinBlocked``. A
  token whose flags already say locked gets no ``C_Login`` at all. No reference to the PIN is
  kept once ``C_Login`` returns (a Python string cannot be wiped; it is dropped at once).
  python-pkcs11 logs in on a session it opens for that (it has no login on an existing
  session) and does not close it when ``C_Login`` is refused: that session stays open, not
  logged in, until the card leaves or the process ends (one per wrong PIN, and a card
  blocks after a few). The login state of PKCS#11 is the token's, for every session of the
  process: ``close`` logs out, which logs those out too.
* ``read_certificates``: every X.509 certificate object of the token, told apart by its key
  usage as in PROTOCOL.md (the labels differ between OpenSC and the ANS middleware): the
  one with ``nonRepudiation`` is the signature certificate, the one with
  ``digitalSignature`` (and no ``nonRepudiation``) the authentication one. Each private key
  is the one whose ``CKA_ID`` is its certificate's (PKCS#15 links them so), else the one
  with the certificate's modulus.
* ``authenticate``/``sign``: RSA keys, ``CKM_RSA_PKCS`` over the DER DigestInfo the port
  passes (exactly what ``CKM_SHA256_RSA_PKCS`` would build over the data); EC keys,
  ``CKM_ECDSA`` over the SHA-256 digest inside that DigestInfo, returned DER-encoded
  (``ECDSA-Sig-Value``, X9.62), as ``cryptography`` verifies it.
* ``get_challenge``: ``C_GenerateRandom`` of the token (the host's own random when the
  token has no generator).
* ``close``: ``C_Logout`` then ``C_CloseSession``.

Errors: every binding exception becomes a ``CardError``. A session or object that turns
invalid with the token gone (``CKR_SESSION_HANDLE_INVALID``, ``CKR_DEVICE_REMOVED``,
``CKR_TOKEN_NOT_PRESENT``, ``CKR_OBJECT_HANDLE_INVALID``, ...) raises ``CardRemoved``, so the
practitioner's session locks.

Threads: python-pkcs11 initialises the module with ``C_Initialize(NULL)``, i.e. without
asking it for OS locking, and releases the GIL during each call (the kiosk keeps drawing
while a real card computes a signature). So every call into one module goes through that
module's own lock (``Pkcs11Module.lock``): the card thread and the watcher never call it at
the same time.

The watcher polls every ``interval_s`` (0.1 s): each cycle it first drains
``C_WaitForSlotEvent(CKF_DONT_BLOCK)`` where the module supports it (OpenSC does: a slot it
names is reported removed then inserted again even if the same card came back between two
polls), then reads the slot list and each slot's token (``C_GetSlotList``,
``C_GetSlotInfo``, ``C_GetTokenInfo``) and compares it with the previous cycle (serial
number and label). A blocking ``C_WaitForSlotEvent`` is not used: it would have to run
outside the module's lock, i.e. at the same time as the card thread's calls, which a module
initialised without locking does not allow; and SoftHSM2 answers it "not supported".
"""

from __future__ import annotations

import contextlib
import logging
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from appliance.errors import CardError, CardRemoved, PinBlocked, WrongPin
from appliance.ports.card import (
    SHA256_DIGEST_INFO_PREFIX,
    CardCertificates,
    CardEvent,
    CardEventKind,
    PinStatus,
)

log = logging.getLogger(__name__)

DEFAULT_INTERVAL_S = 0.1
DEFAULT_RETRY_S = 1.0
MAX_EVENTS_PER_CYCLE = 32

# Where Debian (and most distributions) put OpenSC's module, per architecture.
OPENSC_MODULE_GLOBS = ("/usr/lib/*-linux-gnu/opensc-pkcs11.so",
                       "/usr/lib/*-linux-gnu/pkcs11/opensc-pkcs11.so",
                       "/usr/lib64/opensc-pkcs11.so", "/usr/lib/opensc-pkcs11.so")


def default_module() -> str | None:
    """OpenSC's PKCS#11 module on this machine, if installed."""
    for pattern in OPENSC_MODULE_GLOBS:
        found = sorted(Path("/").glob(pattern.lstrip("/")))
        if found:
            return str(found[0])
    return None


# -- errors ------------------------------------------------------------------------------------
_GONE_NAMES = frozenset({
    "SessionHandleInvalid", "SessionClosed", "DeviceRemoved", "TokenNotPresent",
    "TokenNotRecognised", "SlotIDInvalid", "ObjectHandleInvalid", "KeyHandleInvalid",
})
# Answers that may mean the token went away: checked against the slot before deciding.
_MAYBE_GONE_NAMES = frozenset({"GeneralError", "DeviceError", "FunctionFailed"})


def _name(exc: BaseException) -> str:
    return type(exc).__name__


class Pkcs11Module:
    """One loaded PKCS#11 module (one per path and process), and the lock every call into
    it takes. Loaded at the first use, never when this object is made."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.lock = threading.RLock()
        self._lib: Any = None

    @property
    def loaded(self) -> bool:
        return self._lib is not None

    @property
    def lib(self) -> Any:
        with self.lock:
            if self._lib is None:
                self._lib = _load(self.path)
            return self._lib

    def info(self) -> dict[str, str]:
        lib = self.lib
        return {"path": self.path, "manufacturer": lib.manufacturer_id,
                "description": lib.library_description,
                "library_version": ".".join(map(str, lib.library_version)),
                "cryptoki_version": ".".join(map(str, lib.cryptoki_version))}

    @contextlib.contextmanager
    def call(self, what: str, slot: Any = None) -> Iterator[None]:
        """Run one step under the module's lock; translate the binding's errors."""
        from pkcs11.exceptions import PKCS11Error

        with self.lock:
            try:
                yield
            except PKCS11Error as exc:
                name = _name(exc)
                if name in _GONE_NAMES or (name in _MAYBE_GONE_NAMES and slot is not None
                                           and not self._token_there(slot)):
                    raise CardRemoved(f"{what}: the token is gone ({name})") from exc
                raise CardError(f"{what}: {name} {exc}".strip()) from exc

    def _token_there(self, slot: Any) -> bool:
        from pkcs11 import SlotFlag
        from pkcs11.exceptions import PKCS11Error

        try:
            fresh = next((s for s in self.lib.get_slots() if s.slot_id == slot.slot_id), None)
            if fresh is None or not fresh.flags & SlotFlag.TOKEN_PRESENT:
                return False
            fresh.get_token()
        except PKCS11Error:
            return False
        return True


_MODULES: dict[str, Pkcs11Module] = {}
_MODULES_LOCK = threading.Lock()


def module(path: str) -> Pkcs11Module:
    """The process's ``Pkcs11Module`` for ``path`` (a module is initialised once per
    process: ``C_Initialize`` twice is an error)."""
    with _MODULES_LOCK:
        found = _MODULES.get(path)
        if found is None:
            found = _MODULES[path] = Pkcs11Module(path)
        return found


def _load(path: str) -> Any:
    try:
        import pkcs11
    except ImportError as exc:      # pragma: no cover - a broken installation
        raise CardError(f"python-pkcs11 is not installed: {exc}") from exc
    if not Path(path).is_file():
        raise CardError(f"module PKCS#11 introuvable : {path}")
    try:
        lib = pkcs11.lib(path)
    except pkcs11.exceptions.PKCS11Error as exc:
        raise CardError(f"module PKCS#11 inutilisable : {path} ({_name(exc)} {exc})".strip()
                        ) from exc
    log.info("PKCS#11 module loaded", extra={"fields": {
        "module": path, "manufacturer": lib.manufacturer_id,
        "version": ".".join(map(str, lib.library_version))}})
    return lib


# -- slots and tokens --------------------------------------------------------------------------
@dataclass(frozen=True)
class TokenView:
    """What the watcher and the reader know of a slot at one moment."""

    reader: str
    slot_id: int
    label: str = ""
    serial: str = ""
    flags: int = 0
    manufacturer: str = ""
    model: str = ""

    @property
    def present(self) -> bool:
        return bool(self.serial or self.label)


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    return str(value).strip()


def scan(mod: Pkcs11Module, token_label: str = "") -> list[TokenView]:
    """Every slot of the module, in the module's order, with its token when one is there
    (initialised and, when ``token_label`` is set, of that label). Takes the lock."""
    from pkcs11 import SlotFlag, TokenFlag
    from pkcs11.exceptions import PKCS11Error

    views: list[TokenView] = []
    with mod.call("cannot list the PKCS#11 slots"):
        slots = mod.lib.get_slots()
        names: dict[str, int] = {}
        for slot in slots:
            base = _text(slot.slot_description) or f"slot {slot.slot_id}"
            names[base] = names.get(base, 0) + 1
        for slot in slots:
            base = _text(slot.slot_description) or f"slot {slot.slot_id}"
            reader = base if names[base] == 1 else f"{base} ({slot.slot_id})"
            view = TokenView(reader, slot.slot_id)
            if slot.flags & SlotFlag.TOKEN_PRESENT:
                try:
                    token = slot.get_token()
                except PKCS11Error:
                    token = None     # being removed, or unreadable: no card
                if (token is not None and token.flags & TokenFlag.TOKEN_INITIALIZED
                        and (not token_label or token.label == token_label)):
                    view = TokenView(reader, slot.slot_id, token.label, _text(token.serial),
                                     int(token.flags), token.manufacturer_id, token.model)
            views.append(view)
    return views


def pin_status_from_flags(flags: int) -> PinStatus:
    """Tries left as precisely as the token flags tell (PKCS#11 ``CK_TOKEN_INFO``)."""
    from pkcs11 import TokenFlag

    if flags & TokenFlag.USER_PIN_LOCKED:
        return PinStatus(tries_left=0)
    if flags & TokenFlag.USER_PIN_FINAL_TRY:
        return PinStatus(tries_left=1)
    return PinStatus(tries_left=None)


def flag_names(flags: int) -> list[str]:
    """The PIN-related token flags set, by their PKCS#11 names (for diagnostics)."""
    from pkcs11 import TokenFlag

    wanted = (TokenFlag.USER_PIN_COUNT_LOW, TokenFlag.USER_PIN_FINAL_TRY,
              TokenFlag.USER_PIN_LOCKED, TokenFlag.USER_PIN_TO_BE_CHANGED,
              TokenFlag.TOKEN_INITIALIZED, TokenFlag.USER_PIN_INITIALIZED,
              TokenFlag.LOGIN_REQUIRED, TokenFlag.PROTECTED_AUTHENTICATION_PATH)
    return [f"CKF_{f.name}" for f in wanted if flags & f]


# -- the reader ---------------------------------------------------------------------------------
class Pkcs11Reader:
    """``CardReader`` over a PKCS#11 module: slots are readers, tokens are cards."""

    def __init__(self, mod: Pkcs11Module, token_label: str = "") -> None:
        self.module = mod
        self.token_label = token_label

    def readers(self) -> list[str]:
        return [view.reader for view in scan(self.module, self.token_label)]

    def open(self, slot: int = 0) -> Pkcs11Card:
        views = scan(self.module, self.token_label)
        if not 0 <= slot < len(views):
            raise CardError(f"aucun lecteur à l'emplacement {slot} (lecteurs : "
                            f"{', '.join(v.reader for v in views) or 'aucun'})")
        view = views[slot]
        if not view.present:
            wanted = f" « {self.token_label} »" if self.token_label else ""
            raise CardRemoved(f"aucune carte{wanted} dans le lecteur « {view.reader} »")
        return Pkcs11Card.open(self.module, view)


# -- the card session --------------------------------------------------------------------------
@dataclass
class _KeyPair:
    certificate: bytes
    key: Any = None            # the pkcs11 PrivateKey, found at the first use
    cert_id: bytes = b""


@dataclass
class Pkcs11Card:
    """``CardSession`` on one token: a public session from the start, a logged-in one after
    ``verify_pin``."""

    module: Pkcs11Module
    view: TokenView
    _slot: Any = field(repr=False)
    _token: Any = field(repr=False)
    _public: Any = field(default=None, repr=False)
    _user: Any = field(default=None, repr=False)
    _pairs: dict[str, _KeyPair] = field(default_factory=dict, repr=False)
    _closed: bool = False

    @classmethod
    def open(cls, mod: Pkcs11Module, view: TokenView) -> Pkcs11Card:
        with mod.call(f"cannot open the token in {view.reader!r}"):
            slot = next((s for s in mod.lib.get_slots() if s.slot_id == view.slot_id), None)
            if slot is None:
                raise CardRemoved(f"the reader {view.reader!r} is gone")
            token = slot.get_token()
            if _text(token.serial) != view.serial:
                raise CardRemoved(f"the card in {view.reader!r} was changed")
            public = token.open()
        return cls(mod, view, slot, token, public)

    # -- port ------------------------------------------------------------------------------
    @property
    def reader(self) -> str:
        return self.view.reader

    @property
    def atr(self) -> bytes:
        return b""          # PKCS#11 does not expose the card's ATR

    @property
    def token_serial(self) -> str:
        return self.view.serial

    def _session(self) -> Any:
        if self._closed:
            raise CardError("the card session is closed")
        return self._user if self._user is not None else self._public

    def token_flags(self) -> int:
        """Fresh ``C_GetTokenInfo`` flags; ``CardRemoved`` if another token took the slot."""
        with self.module.call("cannot read the token information", self._slot):
            token = self._slot.get_token()
        if _text(token.serial) != self.view.serial:
            raise CardRemoved(f"the card in {self.reader!r} was changed")
        return int(token.flags)

    def pin_status(self) -> PinStatus:
        status = pin_status_from_flags(self.token_flags())
        return PinStatus(status.tries_left, verified=self._user is not None)

    def verify_pin(self, pin: str) -> None:
        from pkcs11.exceptions import PinIncorrect, PinLocked, UserAlreadyLoggedIn

        if self._closed:
            raise CardError("the card session is closed")
        if pin_status_from_flags(self.token_flags()).blocked:
            raise PinBlocked()
        try:
            with self.module.call("C_Login", self._slot):
                user = self._token.open(user_pin=pin)
        except CardError as exc:
            cause = exc.__cause__
            if isinstance(cause, PinIncorrect):
                raise WrongPin(pin_status_from_flags(self.token_flags()).tries_left) from None
            if isinstance(cause, PinLocked):
                raise PinBlocked() from None
            if isinstance(cause, UserAlreadyLoggedIn):
                raise CardError("the token is already logged in by another session of this "
                                "process: the PIN was not checked") from None
            raise
        if self._user is not None:
            self._close_session(self._user)
        self._user = user
        log.debug("PKCS#11 login", extra={"fields": {"reader": self.reader}})

    def read_certificates(self) -> CardCertificates:
        self._load_certificates()
        auth = self._pairs.get("authentication")
        if auth is None:
            raise CardError("the token holds no authentication certificate")
        sign = self._pairs.get("signature")
        return CardCertificates(authentication=auth.certificate,
                                signature=sign.certificate if sign else None)

    def get_challenge(self, length: int = 8) -> bytes:
        from pkcs11.exceptions import FunctionNotSupported, RandomNoRNG

        try:
            with self.module.call("C_GenerateRandom", self._slot):
                data = bytes(self._session().generate_random(length * 8))
        except CardError as exc:
            if not isinstance(exc.__cause__, FunctionNotSupported | RandomNoRNG):
                raise
            data = secrets.token_bytes(length)
        if len(data) != length:
            raise CardError(f"C_GenerateRandom returned {len(data)} bytes, expected {length}")
        return data

    def authenticate(self, digest_info: bytes) -> bytes:
        return self._sign("authentication", digest_info)

    def sign(self, digest_info: bytes) -> bytes:
        return self._sign("signature", digest_info)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        user, public, self._user, self._public = self._user, self._public, None, None
        for session in (user, public):
            if session is not None:
                self._close_session(session)

    # -- inside ----------------------------------------------------------------------------
    def _close_session(self, session: Any) -> None:
        from pkcs11.exceptions import PKCS11Error

        with self.module.lock:
            try:
                session.close()          # C_Logout (when logged in), then C_CloseSession
            except PKCS11Error as exc:   # the token is gone: nothing left to close
                log.debug("closing a PKCS#11 session: %s", _name(exc))

    def _load_certificates(self) -> None:
        if self._pairs:
            return
        from cryptography import x509
        from pkcs11 import Attribute, CertificateType, ObjectClass

        found: list[tuple[bytes, bytes]] = []
        with self.module.call("cannot read the certificates", self._slot):
            for obj in self._session().get_objects({
                    Attribute.CLASS: ObjectClass.CERTIFICATE,
                    Attribute.CERTIFICATE_TYPE: CertificateType.X_509}):
                found.append((bytes(obj[Attribute.VALUE]), bytes(obj[Attribute.ID] or b"")))
        for der, cert_id in found:
            try:
                usage = x509.load_der_x509_certificate(der).extensions.get_extension_for_class(
                    x509.KeyUsage).value
            except (ValueError, x509.ExtensionNotFound):
                continue         # not a card certificate (a CA certificate, say)
            if usage.content_commitment:
                kind = "signature"
            elif usage.digital_signature:
                kind = "authentication"
            else:
                continue
            self._pairs.setdefault(kind, _KeyPair(der, cert_id=cert_id))

    def _private_key(self, kind: str) -> tuple[Any, Any]:
        """The private key of ``kind``'s certificate, and that certificate's public key."""
        from cryptography import x509
        from pkcs11 import Attribute, ObjectClass

        self._load_certificates()
        pair = self._pairs.get(kind)
        if pair is None:
            raise CardError(f"the card has no {kind} key (no {kind} certificate)")
        public = x509.load_der_x509_certificate(pair.certificate).public_key()
        if pair.key is None:
            with self.module.call(f"cannot find the {kind} key", self._slot):
                keys = list(self._session().get_objects({
                    Attribute.CLASS: ObjectClass.PRIVATE_KEY}))
                match = [k for k in keys if pair.cert_id and k[Attribute.ID] == pair.cert_id]
                if not match:
                    modulus = getattr(public, "public_numbers", lambda: None)()
                    n = getattr(modulus, "n", None)
                    match = [k for k in keys if n is not None
                             and _modulus(k) == n]
            if not match:
                raise CardError(f"no private key on the card for its {kind} certificate "
                                "(is the PIN verified?)")
            pair.key = match[0]
        return pair.key, public

    def _sign(self, kind: str, digest_info: bytes) -> bytes:
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
        from pkcs11 import Mechanism

        if self._user is None:
            raise CardError("the PIN must be verified before the card signs")
        key, public = self._private_key(kind)
        if isinstance(public, ec.EllipticCurvePublicKey):
            if not digest_info.startswith(SHA256_DIGEST_INFO_PREFIX) or \
                    len(digest_info) != len(SHA256_DIGEST_INFO_PREFIX) + 32:
                raise CardError("an EC key signs a SHA-256 DigestInfo only")
            with self.module.call(f"C_Sign (CKM_ECDSA, {kind} key)", self._slot):
                raw = bytes(key.sign(digest_info[len(SHA256_DIGEST_INFO_PREFIX):],
                                     mechanism=Mechanism.ECDSA))
            half = len(raw) // 2
            return encode_dss_signature(int.from_bytes(raw[:half], "big"),
                                        int.from_bytes(raw[half:], "big"))
        with self.module.call(f"C_Sign (CKM_RSA_PKCS, {kind} key)", self._slot):
            value = bytes(key.sign(digest_info, mechanism=Mechanism.RSA_PKCS))
        if not value:
            raise CardError(f"C_Sign: the card returned no {kind} signature")
        return value


def _modulus(key: Any) -> int | None:
    from pkcs11 import Attribute
    from pkcs11.exceptions import PKCS11Error

    try:
        return int.from_bytes(bytes(key[Attribute.MODULUS]), "big")
    except (PKCS11Error, KeyError, TypeError):
        return None


# -- the watcher --------------------------------------------------------------------------------
class Pkcs11Watcher:
    """``CardWatcher`` over a PKCS#11 module: reports ``CardEvent``s like the PC/SC monitor
    (``drivers.card.monitor.ReaderMonitor``), from its own thread. A module that cannot be
    loaded or answers with errors is reported as ``SERVICE_LOST`` (every card removed
    first) and tried again every ``retry_s``."""

    def __init__(self, mod: Pkcs11Module, token_label: str = "",
                 interval_s: float = DEFAULT_INTERVAL_S,
                 retry_s: float = DEFAULT_RETRY_S) -> None:
        self.module = mod
        self.token_label = token_label
        self.interval_s = interval_s
        self.retry_s = retry_s
        self._subscribers: list[Callable[[CardEvent], None]] = []
        self._views: dict[str, TokenView] = {}
        self._service: bool | None = None
        self._events_supported = True
        self._initial = True
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._state = threading.Lock()
        self.cycles = 0

    # -- port -------------------------------------------------------------------------------
    def subscribe(self, callback: Callable[[CardEvent], None]) -> None:
        self._subscribers.append(callback)

    def start(self) -> None:
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="pkcs11-watcher", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 2.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
            self._thread = None

    def __enter__(self) -> Pkcs11Watcher:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- state (as the kiosk reads it) -----------------------------------------------------
    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    @property
    def service_up(self) -> bool:
        return bool(self._service)

    @property
    def uses_slot_events(self) -> bool:
        return self._events_supported

    def cards(self) -> dict[str, bytes]:
        with self._state:
            return {name: b"" for name, view in self._views.items() if view.present}

    def readers(self) -> list[str]:
        with self._state:
            return list(self._views)

    # -- loop -------------------------------------------------------------------------------
    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._cycle()
                wait = self.interval_s
            except CardError as exc:
                self._service_lost(str(exc))
                wait = self.retry_s
            except Exception:
                log.exception("PKCS#11 watcher cycle failed; starting again")
                wait = self.retry_s
            self._stop.wait(wait)

    def _cycle(self) -> None:
        self.cycles += 1
        changed = self._slot_events()
        views = {view.reader: view for view in scan(self.module, self.token_label)}
        if self._service is not True:
            if self._service is False:
                log.info("PKCS#11 module answers again")
                self._emit(CardEvent(CardEventKind.SERVICE_BACK, at=time.monotonic()))
            self._service = True
            self._initial = True
        self._apply(views, changed)

    def _slot_events(self) -> set[int]:
        """Slots the module reports changed since the last cycle (non-blocking)."""
        if not self._events_supported:
            return set()
        from pkcs11.exceptions import FunctionNotSupported, NoEvent, PKCS11Error

        changed: set[int] = set()
        with self.module.lock:
            lib = self.module.lib
            for _ in range(MAX_EVENTS_PER_CYCLE):
                try:
                    changed.add(lib.wait_for_slot_event(blocking=False).slot_id)
                except NoEvent:
                    break
                except FunctionNotSupported:
                    self._events_supported = False
                    log.info("the PKCS#11 module has no slot events: polling the slots")
                    break
                except PKCS11Error as exc:
                    log.debug("C_WaitForSlotEvent: %s", _name(exc))
                    break
        return changed

    def _apply(self, views: dict[str, TokenView], changed: set[int]) -> None:
        now = time.monotonic()
        initial, self._initial = self._initial, False
        with self._state:
            before, self._views = self._views, views
        for name, old in before.items():
            if name not in views:
                if old.present:
                    self._emit(CardEvent(CardEventKind.REMOVED, name, at=now))
                self._emit(CardEvent(CardEventKind.READER_REMOVED, name, at=now))
        for name, view in views.items():
            known = before.get(name)
            if known is None:
                self._emit(CardEvent(CardEventKind.READER_ADDED, name, at=now, initial=initial))
            old = known if known is not None else TokenView(name, view.slot_id)
            swapped = (old.present and view.present and
                       ((old.serial, old.label) != (view.serial, view.label)
                        or view.slot_id in changed))
            if old.present and (not view.present or swapped):
                self._emit(CardEvent(CardEventKind.REMOVED, name, at=now))
            if view.present and (not old.present or swapped):
                self._emit(CardEvent(CardEventKind.INSERTED, name, at=now, initial=initial))

    def _service_lost(self, why: str) -> None:
        now = time.monotonic()
        with self._state:
            gone, self._views = self._views, {}
        for name, view in gone.items():
            if view.present:
                self._emit(CardEvent(CardEventKind.REMOVED, name, at=now))
            self._emit(CardEvent(CardEventKind.READER_REMOVED, name, at=now))
        if self._service is not False:
            log.warning("PKCS#11 module unusable: %s", why)
            self._emit(CardEvent(CardEventKind.SERVICE_LOST, at=now))
        self._service = False

    def _emit(self, event: CardEvent) -> None:
        log.info("card event %s", event.kind.value, extra={"fields": {"reader": event.reader}})
        for callback in list(self._subscribers):
            try:
                callback(event)
            except Exception:
                log.exception("card event subscriber failed")


def describe(mod: Pkcs11Module, token_label: str = "") -> dict[str, Any]:
    """The module and its tokens, for ``ordo doctor`` and ``ordo card info``."""
    info: dict[str, Any] = dict(mod.info())
    info["slots"] = [{"reader": v.reader, "slot_id": v.slot_id, "token": v.label,
                      "serial": v.serial, "manufacturer": v.manufacturer, "model": v.model,
                      "flags": flag_names(v.flags) if v.present else []}
                     for v in scan(mod, token_label)]
    return info

