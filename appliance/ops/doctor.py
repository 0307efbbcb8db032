"""``ordo doctor``: check every part of the appliance and say how to fix what is wrong.

One ``Check`` per part, each ``ok``, ``warn`` or ``fail`` with a one-line detail and, when
not ok, a hint for the installer. The doctor only reads: it never connects to a card,
never prints, never writes the database (it opens it like any reader), so it can run
while the kiosk and the sync service work.

Checks, in order: ``config`` (``configcheck``), ``pcscd`` and ``card`` (PC/SC), or with
``[card] backend = "pkcs11"`` ``pkcs11`` (the module: path, manufacturer, library version,
loaded in a child process) and ``card`` (the token and its flags),
``printer`` (paper sensor), ``registry`` (TLS with the client certificate), ``clock``
(not before this release, not before the newest audit entry, close to the registry's
``Date``), ``database`` (``PRAGMA integrity_check``, migrations, modes), ``audit`` (the
hash chain, its append-only triggers and its retention anchor), ``disk`` (free space in
the data directory), ``referential`` (drug data age, counts against the minimums of a
whole BDPM; a file an older Ordo built), ``backup`` (age of the newest nightly backup),
``metrics`` (the sync service's Prometheus endpoint answers on ``[metrics] listen``, or
is disabled), ``mssante`` (when configured: TLS to the SMTP and IMAP servers verified, the
establishment's certificate accepted, SASL EXTERNAL login) and, on a machine run by
systemd, ``services`` (the kiosk, the sync service, the backup timer).
"""

from __future__ import annotations

import ipaddress
import json
import logging
import os
import shutil
import sqlite3
import subprocess
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from appliance.config import SYSTEM_USER, Settings, listen_address
from appliance.errors import AuditChainBroken, CardError, OrdoError, PrinterError, RegistryError
from appliance.ops import health, probes
from appliance.ops.backup import BACKUP_SUBDIR
from appliance.ops.configcheck import ERROR, Finding, check_settings
from appliance.ops.files import adopt_owner, service_user
from appliance.store import audit
from appliance.store.db import Store, connect, describe_failure
from appliance.store.migrations import MIGRATIONS
from appliance.store.referential.build import SCHEMA_VERSION, UPGRADABLE_SCHEMAS

log = logging.getLogger(__name__)

OK, WARN, FAIL = "ok", "warn", "fail"
# The clock cannot be earlier than this release: bump it when releasing.
RELEASE_DATE = date(2026, 11, 25)
CLOCK_WARN = timedelta(seconds=60)
CLOCK_FAIL = timedelta(minutes=10)
DISK_WARN_BYTES = 1 << 30
DISK_FAIL_BYTES = 256 << 20
REFERENTIAL_WARN_DAYS = 35
BACKUP_WARN = timedelta(hours=36)
METRICS_TIMEOUT_S = 3.0
MAX_METRICS_BODY = 1 << 20
UNITS = ("ordo-kiosk.service", "ordo-sync.service", "ordo-backup.timer")


@dataclass(frozen=True)
class Check:
    name: str
    status: str
    detail: str
    hint: str = ""


@dataclass
class DoctorReport:
    checks: list[Check] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(check.status != FAIL for check in self.checks)

    def get(self, name: str) -> Check:
        return next(check for check in self.checks if check.name == name)

    def to_json(self) -> str:
        return json.dumps({"ok": self.ok, "checks": [asdict(c) for c in self.checks]},
                          ensure_ascii=False, indent=2)

    def lines(self) -> list[str]:
        width = max((len(c.name) for c in self.checks), default=0)
        out = []
        for c in self.checks:
            line = f"{c.status.upper():<4}  {c.name:<{width}}  {c.detail}"
            if c.hint:
                line += f"  -> {c.hint}"
            out.append(line)
        failed = sum(c.status == FAIL for c in self.checks)
        warned = sum(c.status == WARN for c in self.checks)
        out.append(f"{len(self.checks)} checks: {failed} failed, {warned} warning(s)")
        return out


@dataclass
class _Context:
    settings: Settings
    now: datetime
    registry: probes.RegistryProbe | None = None
    newest_audit_at: datetime | None = None


def run_doctor(settings: Settings, now: datetime | None = None) -> DoctorReport:
    """Run every check; never raises for a broken part (that is what it reports)."""
    ctx = _Context(settings, now or datetime.now(UTC))
    report = DoctorReport()
    steps: list[Callable[[_Context], list[Check]]] = [
        _config, _card, _printer, _registry, _database, _clock, _disk, _referential,
        _backup, _metrics, _mssante, _services]
    for step in steps:
        try:
            report.checks += step(ctx)
        except Exception as exc:  # a probe bug must not hide the other checks
            log.exception("doctor check crashed", extra={"fields": {"check": step.__name__}})
            report.checks.append(Check(step.__name__.strip("_"), FAIL,
                                       f"the check itself failed: {type(exc).__name__}: {exc}",
                                       "report this to the Ordo maintainers"))
    order = ["config", "pcscd", "pkcs11", "card", "printer", "registry", "clock", "database",
             "audit", "disk", "referential", "backup", "metrics", "mssante", "services"]
    report.checks.sort(key=lambda c: order.index(c.name) if c.name in order else len(order))
    log.info("doctor finished", extra={"fields": {
        "ok": report.ok, **{c.name: c.status for c in report.checks}}})
    return report


def _config(ctx: _Context) -> list[Check]:
    findings = check_settings(ctx.settings, ctx.now)
    errors = [f for f in findings if f.level == ERROR]
    source = ctx.settings.config_file
    edit = f"edit {source}" if source else "create /etc/ordo/ordo.toml (ordo install)"

    def text(finding: Finding) -> str:
        e = finding.error
        return f"{e.key} = {e.value!r}: expected {e.expected}"

    if errors:
        more = f" (and {len(errors) - 1} more error(s))" if len(errors) > 1 else ""
        return [Check("config", FAIL, f"{text(errors[0])}{more}",
                      f"{edit}; `ordo config check` lists every problem")]
    if findings:
        return [Check("config", WARN, f"{text(findings[0])} ({len(findings)} warning(s))",
                      f"{edit}; `ordo config check` lists every problem")]
    return [Check("config", OK, f"configuration complete ({source or 'embedded defaults'})")]


def _card(ctx: _Context) -> list[Check]:
    """The card backend of ``[card] backend``: pcscd and its readers, or the PKCS#11
    module and its tokens."""
    if ctx.settings.card.backend == "pkcs11":
        return _pkcs11(ctx)
    return _pcsc(ctx)


def _pkcs11(ctx: _Context) -> list[Check]:
    card = ctx.settings.card
    path = card.pkcs11_module or probes.default_pkcs11_module()
    if not path:
        return [Check("pkcs11", FAIL, "backend pkcs11, but no module configured and OpenSC's "
                                      "is not installed",
                      "apt-get install opensc-pkcs11 (or the ANS's CPS middleware) and set "
                      "card.pkcs11_module"),
                Check("card", FAIL, "no PKCS#11 module, so no card", "fix the module first")]
    try:
        probe = probes.pkcs11_module(path, card.token_label)
    except CardError as exc:
        return [Check("pkcs11", FAIL, f"backend pkcs11: {exc}",
                      "check card.pkcs11_module (`ordo config check`); a module from another "
                      "architecture or with missing libraries does not load"),
                Check("card", FAIL, "the PKCS#11 module does not load, so no card",
                      "fix the module first")]
    checks = [Check("pkcs11", OK, f"backend pkcs11: {path} ({probe.manufacturer}, "
                                  f"{probe.description}, library version "
                                  f"{probe.library_version}), {len(probe.slots)} slot(s)")]
    tokens = probe.tokens
    wanted = f" labelled {card.token_label!r}" if card.token_label else ""
    if not tokens:
        hint = ("insert a CPS card; with OpenSC or the ANS middleware the reader goes through "
                "pcscd (systemctl status pcscd; pcsc_scan shows the card)")
        return [*checks, Check("card", WARN, f"no token{wanted} in the module's slots", hint)]
    token = tokens[0]
    flags = ", ".join(token["flags"]) or "no flag"
    detail = (f"token {token['label']!r} (serial {token['serial']}, {token['manufacturer']} "
              f"{token['model']}) in {token['slot']}: {flags}")
    if "CKF_USER_PIN_LOCKED" in token["flags"]:
        return [*checks, Check("card", FAIL, detail, "the card's PIN is blocked: have it "
                                                     "unblocked (PUK) before use")]
    return [*checks, Check("card", OK, detail)]


def _pcsc(ctx: _Context) -> list[Check]:
    try:
        readers = probes.pcsc_readers()
    except CardError as exc:
        return [Check("pcscd", FAIL, str(exc),
                      "start the PC/SC daemon: systemctl enable --now pcscd.socket "
                      "(Debian package pcscd)"),
                Check("card", FAIL, "no PC/SC service, so no card can be read",
                      "fix pcscd first")]
    if not readers:
        return [Check("pcscd", FAIL, "pcscd runs but sees no card reader",
                      "plug the CPS card reader in (USB); `pcsc_scan` shows what pcscd sees; "
                      "a CCID reader needs the libccid package"),
                Check("card", FAIL, "no reader, so no card", "plug the card reader in")]
    names = ", ".join(r.name for r in readers)
    checks = [Check("pcscd", OK, f"{len(readers)} reader(s): {names}")]
    present = [r for r in readers if r.card_present]
    if present:
        checks.append(Check("card", OK, f"card present in {present[0].name} "
                                        f"(ATR {present[0].atr})"))
    else:
        checks.append(Check("card", WARN, "no card in the reader(s)",
                            "insert a CPS card to test the reader, then run the doctor again"))
    return checks


def _printer(ctx: _Context) -> list[Check]:
    uri = ctx.settings.printer.uri
    try:
        status = probes.printer_status(uri)
    except PrinterError as exc:
        return [Check("printer", FAIL, f"{uri}: {exc}",
                      "switch the printer on, check its cable or network link, and that "
                      "printer.uri is its address (its self-test page, FEED held at power-on, "
                      "shows its IP)")]
    if status.paper == "out":
        return [Check("printer", FAIL, f"{uri}: no paper", "load a paper roll")]
    if status.paper == "near_end":
        return [Check("printer", WARN, f"{uri}: paper roll nearly empty",
                      "keep a spare roll next to the printer")]
    if status.paper == "unknown":
        return [Check("printer", OK, f"{uri}: {status.detail}")]
    return [Check("printer", OK, f"{uri}: reachable, paper present")]


def _registry(ctx: _Context) -> list[Check]:
    """Reach ``GET [registry.url]/metadata`` with the client certificate. Anything but a
    FHIR CapabilityStatement there is a failure that names the setting to fix (the sync
    service pauses its queue on the same misconfigurations, ``sync.link``)."""
    r = ctx.settings.registry
    try:
        probe = probes.registry_probe(r.url, ca_file=r.ca_file, client_cert=r.client_cert,
                                      client_key=r.client_key, timeout=min(r.timeout_s, 10.0))
    except RegistryError as exc:
        text = str(exc)
        if "not valid for this host name" in text:
            hint = ("registry.url must use the host name the registry's certificate is "
                    "issued for")
        elif "not trusted" in text:
            hint = ("registry.ca_file must hold the authority that signed the registry's "
                    "certificate; a wrong clock also breaks certificate checks")
        elif "TLS" in text or "TLS files" in text:
            hint = ("check registry.client_cert and registry.client_key (`ordo config check`) "
                    "and that the registry accepts this certificate")
        else:
            hint = ("check the network link (cable, Wi-Fi, DNS) and registry.url; "
                    "prescriptions are queued meanwhile")
        return [Check("registry", FAIL, f"{r.url}: {text}", hint)]
    ctx.registry = probe
    tls = f"{probe.tls_version}, client certificate" if probe.tls_version else "plain HTTP"
    if 300 <= probe.status_code < 400:
        return [Check("registry", FAIL, f"{r.url}: misconfigured: redirected "
                                        f"({probe.status_code}) to {probe.location or '?'}",
                      "registry.url must be the registry's FHIR base itself; the sync "
                      "queue waits meanwhile")]
    if probe.status_code in (401, 403):
        return [Check("registry", FAIL, f"{r.url}: refused ({probe.status_code}) over {tls}",
                      "the registry does not accept this client certificate: check "
                      "registry.client_cert, or have the certificate enrolled")]
    if probe.status_code >= 400 or probe.resource_type != "CapabilityStatement":
        what = (f"HTTP {probe.status_code}" if probe.status_code >= 400 else
                f"HTTP {probe.status_code} but {probe.resource_type or probe.content_type or 'no'}"
                " content instead of a FHIR CapabilityStatement")
        return [Check("registry", FAIL, f"{probe.url}: misconfigured: {what} over {tls}",
                      "registry.url must be the registry's FHIR base (…/fhir): the sync queue "
                      "waits, nothing is quarantined, until it is fixed")]
    status = OK if probe.tls_version else WARN
    hint = "" if probe.tls_version else "use the https URL of the registry"
    return [Check("registry", status, f"{r.url}: HTTP {probe.status_code} over {tls} in "
                                      f"{probe.elapsed_s * 1000:.0f} ms", hint)]


def _mssante(ctx: _Context) -> list[Check]:
    m, to = ctx.settings.mssante, ctx.settings.pharmacy.mssante
    if not (m.smtp_host or m.imap_host):
        if to:
            return [Check("mssante", FAIL, f"pharmacy.mssante = {to} but no MSSanté server",
                          "set [mssante] smtp_host, imap_host, mailbox and the certificate")]
        return []
    missing = [k for k, v in (("mailbox", m.mailbox), ("client_cert", m.client_cert)) if not v]
    if missing:
        return [Check("mssante", FAIL, f"mssante.{missing[0]} is empty",
                      "the establishment's MSSanté mailbox and its certificate are required")]
    from sync.mssante import probe

    try:
        done = probe(m)
    except OrdoError as exc:  # unreadable PEM, TLS refused, server unreachable, login refused
        return [Check("mssante", FAIL, f"{m.mailbox}: {exc}",
                      "check mssante.ca_file (the operator's authority), client_cert and "
                      "client_key, that the servers are reachable and that the operator "
                      "knows this certificate for this mailbox")]
    return [Check("mssante", OK, f"{m.mailbox}: TLS verified, certificate accepted, "
                                 f"logged in ({', '.join(done)})")]


def _clock(ctx: _Context) -> list[Check]:
    now = ctx.now
    hint = ("set the clock and keep it synchronised: timedatectl set-ntp true "
            "(and check the motherboard battery if it drifts at each boot)")
    if now.date() < RELEASE_DATE:
        return [Check("clock", FAIL, f"the clock says {now:%Y-%m-%d %H:%M} UTC, before this "
                                     f"release ({RELEASE_DATE})", hint)]
    if ctx.registry is not None and ctx.registry.server_date is not None:
        skew = ctx.registry.local_time - ctx.registry.server_date
        side = "ahead of" if skew > timedelta(0) else "behind"
        text = f"{abs(skew.total_seconds()):.0f} s {side} the registry"
        if abs(skew) >= CLOCK_FAIL:
            return [Check("clock", FAIL, text, hint)]
        if abs(skew) >= CLOCK_WARN:
            return [Check("clock", WARN, text, hint)]
    else:
        text = "registry not reachable, compared with local records only"
    if ctx.newest_audit_at is not None and now < ctx.newest_audit_at - CLOCK_WARN:
        return [Check("clock", WARN, f"the clock ({now:%Y-%m-%d %H:%M} UTC) is before the "
                                     f"newest audit entry ({ctx.newest_audit_at:%Y-%m-%d %H:%M}"
                                     " UTC)", hint)]
    return [Check("clock", OK, f"{now:%Y-%m-%d %H:%M:%S} UTC, {text}")]


def _database(ctx: _Context) -> list[Check]:
    path = ctx.settings.db_path
    if not path.is_file():
        hint = ("start the kiosk once (systemctl start ordo-kiosk) or restore a backup "
                "(ordo restore FILE)")
        return [Check("database", FAIL, f"no database at {path}", hint),
                Check("audit", FAIL, "no database, so no audit chain", hint)]
    checks = []
    restore_hint = ("restore the newest backup: ordo restore --force <newest file in "
                    f"{ctx.settings.data_dir / BACKUP_SUBDIR}>")
    unwritable = _unwritable(path)
    conn = None
    try:
        conn = connect(path)
        problems = [row[0] for row in conn.execute("PRAGMA integrity_check")]
    except sqlite3.DatabaseError as exc:
        if conn is not None:
            conn.close()
        adopt_owner(path, side_files_only=True)
        first = unwritable or Check("database", FAIL,
                                    f"{path} is not a usable database: {exc}", restore_hint)
        return [first, Check("audit", FAIL, "the database cannot be read", restore_hint)]
    try:
        adopt_owner(path, side_files_only=True)
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        applied = set()
        if "_migrations" in tables:
            applied = {r[0] for r in conn.execute("SELECT name FROM _migrations")}
        pending = [name for name, _ in MIGRATIONS if name not in applied]
        size = path.stat().st_size
        if problems != ["ok"]:
            checks.append(Check("database", FAIL, "integrity check: " + "; ".join(problems[:3]),
                                restore_hint))
        elif unwritable is not None:
            checks.append(unwritable)
        else:
            checks.append(_database_files(path, size, pending))
        checks.append(_audit(ctx, Store(conn, path), tables))
    finally:
        conn.close()
        adopt_owner(path, side_files_only=True)
    return checks


def _unwritable(path: Path) -> Check | None:
    """A failed check when this process could not write the database: the file and its WAL
    side files opened for writing (an immutable or read-only file, a read-only file system),
    and a file created and removed in its directory (SQLite creates its side files there).
    Nothing of the database is changed. As root, a file's mode does not stop a write: the
    services' user is checked by the ownership test."""
    hint = (f"make the data directory writable again: lsattr -d {path.parent} {path}* "
            f"(chattr -i removes an immutable flag), the owner and mode (chown "
            f"{SYSTEM_USER}, chmod 600), free space (df -h {path.parent}), and that the "
            "file system is mounted read-write")
    targets = [path] + [side for side in (path.with_name(path.name + "-wal"),
                                          path.with_name(path.name + "-shm"))
                        if side.exists()]
    for target in targets:
        try:
            os.close(os.open(target, os.O_RDWR))
        except OSError as exc:
            return Check("database", FAIL, f"{target} cannot be written: "
                                           f"{describe_failure(exc)}", hint)
    probe = path.with_name(f".{path.name}.doctor-{os.getpid()}")
    try:
        os.close(os.open(probe, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
        probe.unlink()
    except OSError as exc:
        return Check("database", FAIL, f"no file can be created in {path.parent}: "
                                       f"{describe_failure(exc)}", hint)
    return None


def _database_files(path: Path, size: int, pending: list[str]) -> Check:
    detail = f"{path} ({size / 1e6:.1f} MB): integrity ok"
    owner = service_user()
    st, dir_st = path.stat(), path.parent.stat()
    if owner is not None and os.geteuid() == 0 and st.st_uid != owner.pw_uid:
        return Check("database", FAIL, f"{detail}, but owned by uid {st.st_uid}",
                     f"the services run as {SYSTEM_USER}: chown -R {SYSTEM_USER}:"
                     f"{SYSTEM_USER} {path.parent}")
    if st.st_mode & 0o077 or dir_st.st_mode & 0o077:
        return Check("database", WARN, f"{detail}, but readable by others",
                     f"chmod 700 {path.parent}; chmod 600 {path}")
    if pending:
        return Check("database", WARN, f"{detail}, {len(pending)} migration(s) pending",
                     "they are applied when the kiosk or the sync service starts")
    return Check("database", OK, detail)


def _audit(ctx: _Context, store: Store, tables: set[str]) -> Check:
    if "audit" not in tables:
        return Check("audit", FAIL, "no audit table", "start the kiosk once to create the schema")
    hint_broken = ("the audit chain was altered or damaged: keep this file for investigation "
                   "(copy it), then restore the newest good backup with ordo restore --force")
    try:
        count = audit.verify(store)
    except AuditChainBroken as exc:
        return Check("audit", FAIL, f"chain broken at entry {exc.seq}: {exc.reason}", hint_broken)
    newest = store.query("SELECT at FROM audit ORDER BY seq DESC LIMIT 1")
    if newest:
        ctx.newest_audit_at = datetime.fromisoformat(newest[0]["at"])
    cut = audit.anchor_status(store)
    if cut is not None and not cut.recorded:
        return Check("audit", FAIL, f"the chain starts at entry {cut.seq} but no retention "
                                    "run recorded that cut", hint_broken)
    problems = audit.guard_problems(store)
    if problems:
        return Check("audit", FAIL, f"{count} entries verified, but " + "; ".join(problems),
                     "find out who changed the audit table (keep a copy of the file), then "
                     "ordo audit restore-guards (recorded in the chain)")
    if cut is not None:
        return Check("audit", OK, f"{count} entries verified (kept from entry {cut.seq} by "
                                  f"the retention run of {(cut.recorded_at or '')[:10]})")
    return Check("audit", OK, f"{count} entries verified, append-only triggers intact")


def _disk(ctx: _Context) -> list[Check]:
    path = ctx.settings.data_dir
    probe = path if path.exists() else next((p for p in path.parents if p.exists()), Path("/"))
    usage = shutil.disk_usage(probe)
    detail = f"{usage.free / 2**30:.1f} GiB free of {usage.total / 2**30:.1f} GiB in {probe}"
    hint = (f"free space: delete old files in {path / BACKUP_SUBDIR} or other partitions' "
            "data, or use a larger disk")
    if usage.free < DISK_FAIL_BYTES:
        return [Check("disk", FAIL, detail, hint)]
    if usage.free < DISK_WARN_BYTES:
        return [Check("disk", WARN, detail, hint)]
    return [Check("disk", OK, detail)]


def _referential(ctx: _Context) -> list[Check]:
    from appliance.store.referential.guards import TABLE_MINIMUMS

    path = ctx.settings.data_dir / probes.REFERENTIAL_FILE
    dated = health.referential_age(ctx.settings.data_dir, ctx.now)
    hint = "import the current BDPM: ordo drugs import"
    if dated is None:
        return [Check("referential", FAIL, f"no drug referential at {path}", hint)]
    found, age = dated.found, dated.days
    counts = probes.referential_counts(path, tuple(TABLE_MINIMUMS))
    detail = (f"drug data of {found.day} ({age} days old, from {found.source}): "
              f"{counts.get('specialty', 0)} specialties, "
              f"{counts.get('presentation', 0)} presentations")
    if found.schema is not None and found.schema != SCHEMA_VERSION:
        if found.schema in UPGRADABLE_SCHEMAS:  # the first search upgrades it
            return [Check("referential", WARN, (
                f"{detail}; built by an older Ordo (schema {found.schema}): the kiosk's "
                "start or the first search rebuilds its search tables (typos, strengths and "
                "forms are not forgiven until then)"), "re-import to do it now: ordo drugs "
                "import")]
        return [Check("referential", FAIL, (
            f"{detail}; schema {found.schema}, this Ordo reads {SCHEMA_VERSION}: the drug "
            "search refuses it"), hint)]
    if not all(counts.get(table) for table in TABLE_MINIMUMS):
        return [Check("referential", FAIL, detail, f"nothing can be prescribed: {hint}")]
    small = [table for table, least in TABLE_MINIMUMS.items() if counts[table] < least]
    if small:
        plural = {"specialty": "specialties", "presentation": "presentations"}
        least = ", ".join(f"{TABLE_MINIMUMS[t]} {plural.get(t, t)}" for t in small)
        return [Check("referential", WARN, f"{detail}, fewer than a whole BDPM ({least})",
                      f"a demo or test extract, or a truncated import: {hint}")]
    if age > REFERENTIAL_WARN_DAYS:
        return [Check("referential", WARN, detail, hint)]
    return [Check("referential", OK, detail)]


def _backup(ctx: _Context) -> list[Check]:
    directory = ctx.settings.data_dir / BACKUP_SUBDIR
    found = health.backup_age(ctx.settings.data_dir, ctx.now)
    if found is None:
        return [Check("backup", WARN, f"no backup in {directory}",
                      "enable the nightly backup: systemctl enable --now ordo-backup.timer "
                      "(or run ordo backup now), and copy the backup key off the box")]
    detail = f"newest {found.newest.name}, {found.age_s / 3600:.0f} h old"
    if found.age_s > BACKUP_WARN.total_seconds():
        return [Check("backup", WARN, detail,
                      "the nightly backup stopped: journalctl -u ordo-backup.service")]
    return [Check("backup", OK, detail)]


def _metrics(ctx: _Context) -> list[Check]:
    """``[metrics] listen``: disabled, or the sync service's endpoint answering there with
    Ordo's metrics (asked on loopback when it listens on every interface)."""
    import httpx

    listen = ctx.settings.metrics.listen
    address = listen_address(listen)
    if address is None:
        return [Check("metrics", OK, "Prometheus endpoint disabled (metrics.listen is empty)")]
    host, port = address
    ip = ipaddress.ip_address(host)
    if ip.is_unspecified:
        host = "::1" if ip.version == 6 else "127.0.0.1"
    url = f"http://[{host}]:{port}/metrics" if ":" in host else f"http://{host}:{port}/metrics"
    where = "loopback only" if ip.is_loopback else (
        "every interface, unauthenticated" if ip.is_unspecified else
        "unauthenticated: keep this address on the VPN")
    try:
        with httpx.Client(timeout=METRICS_TIMEOUT_S, follow_redirects=False) as client, \
                client.stream("GET", url) as response:
            body = probes.read_capped(response, MAX_METRICS_BODY)
    except httpx.HTTPError as exc:
        return [Check("metrics", WARN, f"metrics.listen = {listen}: nothing answers "
                                       f"({type(exc).__name__})",
                      "the sync service serves it: systemctl status ordo-sync (journalctl -u "
                      "ordo-sync says why it could not listen: address in use, or not an "
                      "address of this machine)")]
    if response.status_code != 200 or b"ordo_build_info" not in body:
        return [Check("metrics", WARN, f"metrics.listen = {listen}: HTTP "
                                       f"{response.status_code} without Ordo's metrics",
                      "another program holds this port: choose another metrics.listen")]
    status = WARN if ip.is_unspecified else OK
    hint = ("set metrics.listen to 127.0.0.1:9464 or the VPN's address" if ip.is_unspecified
            else "")
    return [Check("metrics", status, f"Prometheus endpoint served at {url} ({where})", hint)]


def _services(ctx: _Context) -> list[Check]:
    if not Path("/run/systemd/system").is_dir() or shutil.which("systemctl") is None:
        return []
    result = subprocess.run(["systemctl", "is-active", *UNITS],  # noqa: S603, S607
                            capture_output=True, text=True, timeout=10, check=False)
    states = dict(zip(UNITS, result.stdout.split(), strict=False))
    down = [unit for unit in UNITS if states.get(unit) != "active"]
    if down:
        return [Check("services", WARN, "not running: " + ", ".join(
                    f"{u} ({states.get(u, 'unknown')})" for u in down),
                      "systemctl enable --now " + " ".join(down)
                      + "; journalctl -u <unit> tells why")]
    return [Check("services", OK, "kiosk, sync and backup timer active")]
