"""Integration fixtures: real daemons and files. One section per area; keep yours apart.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

# ---------------------------------------------------------------------------------------
# Parallel runs (``make test`` runs pytest-xdist workers): the machine has one pcscd and one
# pair of vpcd readers, so every test that inserts cards or talks to pcscd runs on the same
# worker, one after the other (``--dist loadgroup``).
# ---------------------------------------------------------------------------------------

CARD_FIXTURES = frozenset({"pcscd", "vcards", "card_watch"})


def pytest_collection_modifyitems(config, items):
    for item in items:
        uses_cards = CARD_FIXTURES & set(getattr(item, "fixturenames", ()))
        if uses_cards or item.get_closest_marker("pcscd"):
            item.add_marker(pytest.mark.xdist_group("pcscd"))


# ---------------------------------------------------------------------------------------
# Shared: one real SQLite store and its unit of work, software signers over the test PKI's
# card keys, signed prescriptions recorded as the sign use case records them
# (fixtures: store, uow, signers, orders)
# ---------------------------------------------------------------------------------------

SIGNER_PROFILES = ("physician", "expired", "revoked", "untrusted", "nurse")


@pytest.fixture
def store(tmp_path):
    """The appliance's store in ``tmp_path/data`` (the card tests' data directory too)."""
    from appliance.store import open_store

    store = open_store(tmp_path / "data" / "ordo.sqlite")
    yield store
    store.close()


@pytest.fixture
def uow(store):
    """The unit of work over ``store`` (the same connection)."""
    from appliance.store.uow import SqliteUnitOfWork

    return SqliteUnitOfWork(store, owns=False)


@pytest.fixture(scope="session")
def signers(card_pki):
    """{profile: SoftwareSigner} over the signature keys of the test PKI's cards (the
    nurse's card has one too: a non-prescriber's key, for refusals)."""
    from tests.harness.workers import physician_signer

    return {name: physician_signer(card_pki.directory, name) for name in SIGNER_PROFILES}


class SignedOrders:
    """Signs prescriptions with the test PKI's card keys and records them as the sign use
    case does (``record_signature``: prescription, outbox row, print job, signed part,
    audit entry), the resident and the practitioners on record."""

    def __init__(self, uow, signers) -> None:
        from appliance.domain.prescription_id import PrescriptionIdGenerator

        self.uow, self.store, self.signers = uow, uow.store, signers
        self.ids = PrescriptionIdGenerator(lambda: 1_764_063_000_000 + len(self.made))
        self.made: list = []

    def practitioner(self, profile: str = "physician"):
        from appliance.domain.people import Practitioner, Role
        from drivers.card.pki import PROFILES

        p = PROFILES[profile]
        role = Role.PRESCRIBER if p.profession == "Médecin" else Role.NURSE
        return Practitioner(id_nat_ps=p.id_nat_ps, last_name=p.family_name,
                            first_name=p.given_name, profession=p.profession, role=role,
                            am="751234567" if role is Role.PRESCRIBER else None)

    def sign_many(self, n: int = 1, profile: str = "physician", at=None, **fields) -> list:
        """``n`` signed prescriptions in one transaction; returns the prescriptions (the
        ``SignedPrescription``s are in ``made``)."""
        from datetime import UTC, datetime

        from appliance.services.signature import record_signature, sign_prescription
        from tests.factories import prescription, resident

        fields.setdefault("resident", resident())
        doctor = self.practitioner(profile)
        uow, made = self.uow, []
        with uow:
            uow.residents.upsert([fields["resident"]])
            uow.practitioners.upsert(doctor)
            uow.practitioners.upsert(self.practitioner("nurse"))
            for _ in range(n):
                draft = prescription(self.ids.new(), prescriber=doctor, **fields)
                signed = sign_prescription(draft, self.signers[profile],
                                           at or datetime.now(UTC).replace(microsecond=0))
                record_signature(uow, signed, actor=doctor.id_nat_ps)
                self.made.append(signed)
                made.append(signed.prescription)
            uow.commit()
        return made

    def sign(self, profile: str = "physician", at=None, **fields):
        """One signed prescription; returns the ``SignedPrescription`` (with its QR)."""
        self.sign_many(1, profile, at, **fields)
        return self.made[-1]

    def state(self, prescription_id: str) -> str:
        return self.store.query("SELECT state FROM prescriptions WHERE id = ?",
                                (prescription_id,))[0]["state"]

    def outbox(self) -> list[dict]:
        return self.store.query("SELECT * FROM outbox ORDER BY seq")


@pytest.fixture
def orders(uow, signers):
    return SignedOrders(uow, signers)


# ---------------------------------------------------------------------------------------
# Card: the real pcscd with the vsmartcard vpcd reader, the test PKI, virtual cards
# (fixtures: pcscd, card_pki, card_trust, card_data_dir, vcards, card_audit)
# ---------------------------------------------------------------------------------------

VPCD_READERS = 2


@pytest.fixture(scope="session")
def pcscd(tmp_path_factory):
    """pcscd (``drivers.card.pcscd.PcscdService``) with the two vpcd readers: the running
    one, else one started here (as root) and stopped at the end."""
    from appliance.errors import CardError
    from drivers.card.pcscd import PcscdService, can_start, pcscd_answers, running_pid

    if running_pid() is None and not pcscd_answers() and not can_start():
        pytest.skip("pcscd is not running and cannot be started here (apt-get install pcscd "
                    "vsmartcard-vpcd; root)")
    service = PcscdService(tmp_path_factory.mktemp("pcscd") / "pcscd.log")
    try:
        service.ensure(readers=VPCD_READERS)
    except CardError as exc:
        pytest.fail(f"pcscd: {exc}")
    yield service
    service.stop()


@pytest.fixture(scope="session")
def card_pki(tmp_path_factory):
    """The test PKI (``drivers.card.pki.PkiPaths``), made once per session."""
    from drivers.card.pki import init_pki

    return init_pki(tmp_path_factory.mktemp("card-pki") / "pki")


@pytest.fixture(scope="session")
def card_trust(card_pki):
    from appliance.services.trust import load_trust_store

    return load_trust_store(card_pki.trust_roots, card_pki.crls)


@pytest.fixture
def card_data_dir(tmp_path, card_pki):
    """A data dir whose ``pki`` is the session's test PKI (the ``store`` fixture's too)."""
    data = tmp_path / "data"
    data.mkdir(exist_ok=True)
    (data / "pki").symlink_to(card_pki.directory)
    return data


class VirtualCards:
    """Insert/remove virtual cards (real background processes, like ``ordo card``)."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.slots: set[int] = set()

    def insert(self, profile: str, slot: int = 0, pin: str = "1234"):
        from drivers.card import virtual

        self.slots.add(slot)
        return virtual.insert(self.data_dir, profile, slot, pin)

    def remove(self, slot: int = 0):
        from drivers.card import virtual

        return virtual.remove(self.data_dir, slot)

    def cleanup(self) -> None:
        from drivers.card import virtual

        for slot in sorted(self.slots):
            virtual.remove(self.data_dir, slot)


@pytest.fixture
def vcards(pcscd, card_data_dir):
    cards = VirtualCards(card_data_dir)
    yield cards
    cards.cleanup()


@pytest.fixture
def card_audit(store):
    """The real audit chain as the login recipe writes it (``appliance.services.auth.
    audit_log``: each entry in its own unit of work on the store's file)."""
    from appliance.services.auth import audit_log
    from appliance.store.uow import SqliteUnitOfWork

    return audit_log(lambda: SqliteUnitOfWork.open(store.path))


# ---------------------------------------------------------------------------------------
# Card through PKCS#11: SoftHSM2 tokens holding the test PKI's cards
# (fixtures: softhsm, p11_module)
# ---------------------------------------------------------------------------------------

# Spare physician tokens: a token taken away cannot come back in a process that loaded
# SoftHSM2, so each test that pulls one has its own.
P11_SPARE_TOKENS = ("pull-watch", "pull-sign", "pull-kiosk", "pin-tries", "kiosk", "cli")


@pytest.fixture(scope="session")
def softhsm(card_pki, tmp_path_factory):
    """SoftHSM2 tokens for every card profile (label = profile, PIN 1234), the spares above
    and an EC token ``ec``; ``SOFTHSM2_CONF`` points at them for the whole session (a
    PKCS#11 module reads its configuration once per process)."""
    from drivers.card import softhsm as soft

    if shutil.which("softhsm2-util") is None or soft.softhsm_module() is None:
        pytest.skip("SoftHSM2 is not installed (apt-get install softhsm2)")
    tokens = {name: name for name in soft.PROFILES}
    tokens.update({spare: "physician" for spare in P11_SPARE_TOKENS})
    paths = soft.provision(card_pki, tmp_path_factory.mktemp("softhsm"), tokens=tokens)
    _provision_ec_token(paths, paths.directory / "ec")
    previous = os.environ.get("SOFTHSM2_CONF")
    os.environ["SOFTHSM2_CONF"] = str(paths.conf)
    yield paths
    if previous is None:
        os.environ.pop("SOFTHSM2_CONF", None)
    else:
        os.environ["SOFTHSM2_CONF"] = previous


def _provision_ec_token(paths, folder: Path) -> None:
    """A token ``ec`` with a P-256 signature key and its self-signed certificate
    (``folder/sign.der``)."""
    from datetime import UTC, datetime, timedelta

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    from drivers.card import softhsm as soft

    folder.mkdir()
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "EC TEST")])
    now = datetime.now(UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(days=1)).not_valid_after(now + timedelta(days=30))
            .add_extension(x509.KeyUsage(
                digital_signature=False, content_commitment=True, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=False,
                crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
            .sign(key, hashes.SHA256()))
    (folder / "sign.der").write_bytes(cert.public_bytes(serialization.Encoding.DER))
    (folder / "sign.key").write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    subprocess.run(["softhsm2-util", "--init-token", "--free", "--label", "ec", "--pin",
                    soft.TEST_PIN, "--so-pin", soft.SO_PIN], check=True, capture_output=True,
                   env={**os.environ, "SOFTHSM2_CONF": str(paths.conf)})
    soft.import_objects(paths, [{"label": "ec", "objects": [
        {"id": "02", "label": "signature", "cert": str(folder / "sign.der"),
         "key": str(folder / "sign.key")}]}])


@pytest.fixture(scope="session")
def p11_module(softhsm):
    """The process's SoftHSM2 module (``drivers.card.pkcs11.Pkcs11Module``)."""
    from drivers.card import pkcs11

    return pkcs11.module(softhsm.module)


# ---------------------------------------------------------------------------------------
# Printing: the ESC/POS printer emulator on loopback, the trust roots as a verifier takes
# them (fixtures: print_trust, emulators)
# ---------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def print_trust(card_trust):
    """(trust roots + intermediates, CRLs) as ``verify_payload`` takes them."""
    return [*card_trust.roots, *card_trust.intermediates], list(card_trust.crls)


@pytest.fixture
def emulators():
    """``emulators(media="80mm", **options)`` starts a printer emulator on 127.0.0.1 (any
    free port); all are stopped at the end of the test."""
    from drivers.printer.emulator import PrinterEmulator
    from drivers.printer.layout import media_for

    started = []

    def start(media: str = "80mm", **options):
        emulator = PrinterEmulator(width_dots=media_for(media).width_dots, **options).start()
        started.append(emulator)
        return emulator

    yield start
    for emulator in started:
        emulator.stop()


# ---------------------------------------------------------------------------------------
# Registry sync: the reference registry on loopback (plain HTTP or mutual TLS), sync
# engines with small backoffs (fixtures: sync_trust, registry_sim, registry_tls,
#  make_engine)
# ---------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def sync_trust(card_pki):
    """The registry's trust store: the test PKI's CPS roots and CRLs."""
    from sync.registry_sim import TrustStore

    return TrustStore.load(card_pki.trust_roots, card_pki.crls)


@pytest.fixture
def registry_sim(tmp_path, sync_trust):
    """The reference registry over plain HTTP on 127.0.0.1 (any free port)."""
    from sync.registry_sim import RegistrySim, SimConfig

    sim = RegistrySim(SimConfig(db_path=tmp_path / "registry.sqlite", plain_http=True),
                      trust=sync_trust).start()
    yield sim
    sim.stop()


@pytest.fixture
def registry_tls(tmp_path, card_pki, sync_trust):
    """The reference registry over HTTPS with client certificates (the test PKI's
    establishment server certificate; clients from its organisations CA)."""
    from sync.registry_sim import RegistrySim, SimConfig

    est = card_pki.establishment
    sim = RegistrySim(SimConfig(db_path=tmp_path / "registry-tls.sqlite",
                                tls_cert=str(est / "server.pem"), tls_key=str(est / "server.key"),
                                client_ca=str(est / "ca.pem")), trust=sync_trust).start()
    yield sim
    sim.stop()


@pytest.fixture
def make_engine(uow):
    """``make_engine(url, **engine_config)``: a sync engine on ``uow`` with small
    backoffs (base 10 ms, cap 50 ms) unless told otherwise; clients closed at the end."""
    from appliance.services.sync import EngineConfig, SyncEngine
    from sync.client import RegistryClient

    clients = []

    def make(url: str, *, client_options: dict | None = None, **config):
        client = RegistryClient(url, **(client_options or {}))
        clients.append(client)
        values = {"backoff_base_s": 0.01, "backoff_cap_s": 0.05, "max_wait_s": 5.0,
                  **config}
        return SyncEngine(uow, client, EngineConfig(**values))

    yield make
    for client in clients:
        client.close()


# ---------------------------------------------------------------------------------------
# Proof of robustness: crash consistency, registry chaos, card faults. The
# harnesses live in tests/harness/; the crash and chaos tests use the printing and sync
# fixtures above. (fixtures: card_watch, slot1_card)
# ---------------------------------------------------------------------------------------

FAULT_SLOT = 1  # vpcd slot 1 (TCP 35964): other card tests mostly use slot 0
WATCH_TIMEOUT_S = 15.0


def _wait_until(predicate, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(0.01)


@pytest.fixture
def card_watch(pcscd):
    """The kiosk's card watcher: a started ``ReaderMonitor`` that already lists the readers."""
    from drivers.card.monitor import ReaderMonitor

    monitor = ReaderMonitor()
    monitor.start()
    try:
        _wait_until(lambda: monitor.service_up and len(monitor.readers()) >= VPCD_READERS,
                    WATCH_TIMEOUT_S, "the card monitor to list the vpcd readers")
        yield monitor
    finally:
        monitor.stop()


class Slot1Card:
    """The physician's virtual card in vpcd slot 1, inserted and pulled like a real one
    (its own process, killed on ``pull``); ``insert`` and ``wait_gone`` return once the
    card watcher agrees."""

    def __init__(self, vcards: VirtualCards, monitor) -> None:
        from drivers.card.virtual import vpcd_reader

        self.vcards, self.monitor = vcards, monitor
        self.reader = vpcd_reader(FAULT_SLOT)

    def insert(self, timeout_s: float = 60.0) -> None:
        from appliance.errors import CardError
        from drivers.card.pcsc import wait_for_card

        deadline = time.monotonic() + timeout_s
        while True:  # another test may hold slot 1 for a moment: wait for it to be free
            if wait_for_card(self.reader, present=False, timeout_s=1.0):
                try:
                    self.vcards.insert("physician", slot=FAULT_SLOT)
                    break
                except CardError:
                    if time.monotonic() > deadline:
                        raise
            elif time.monotonic() > deadline:
                pytest.fail(f"vpcd slot {FAULT_SLOT} stayed busy for {timeout_s} s")
        _wait_until(lambda: self.reader in self.monitor.cards(), WATCH_TIMEOUT_S,
                    "the card watcher to see the card")

    def pull(self) -> None:
        self.vcards.remove(slot=FAULT_SLOT)

    def wait_gone(self) -> None:
        _wait_until(lambda: self.reader not in self.monitor.cards(), WATCH_TIMEOUT_S,
                    "the card watcher to see the card leave")


@pytest.fixture
def slot1_card(vcards, card_watch):
    return Slot1Card(vcards, card_watch)
