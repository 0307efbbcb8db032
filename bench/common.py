"""Shared helpers of the benchmarks: percentiles, peak memory, pcscd, a pseudo-terminal
runner and a prepared data directory.

Nothing here runs at import time and the imports are the standard library's only, so a
benchmark's child process (``python -m bench.X --child ...``) pays for what it measures and
nothing else.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import pty
import select
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import termios
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from drivers.card.pcscd import PcscdService

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_BDPM = ROOT.parent / "shared" / "data" / "bdpm"
CLI = [sys.executable, "-c", "from appliance.cli import main; main()"]
DEMO_AM = "751234567"
PIN = "1234"
# vpcd slot 1 (TCP 35964): slot 0 belongs to the integration tests running beside us.
BENCH_SLOT = 1


def machine() -> dict:
    return {"cpus": os.cpu_count(),
            "loadavg_1_5_15": [round(x, 2) for x in os.getloadavg()]}


def emit(result: dict) -> None:
    """Print a benchmark's result: JSON only, on stdout (what ``python -m bench`` reads)."""
    json.dump(result, sys.stdout, indent=2, ensure_ascii=False)
    sys.stdout.write("\n")


@contextlib.contextmanager
def bench_run(keep: Path | None, prefix: str, *, pcscd: bool = False,
              **first: object) -> Iterator[tuple[Path, dict]]:
    """Every benchmark's frame: a work directory (``keep``, kept; else a temporary one,
    removed after), pcscd started if asked and not running (stopped after), and the result
    dict, with the machine's load before and after, emitted as JSON at the end (nothing is
    emitted when the run fails)."""
    work = keep or Path(tempfile.mkdtemp(prefix=prefix))
    work.mkdir(parents=True, exist_ok=True)
    service = Pcscd(work / "pcscd.log") if pcscd else None
    try:
        result: dict = {"machine_before": machine()}
        if service is not None:
            result["pcscd_started_here"] = service.ensure()
        result.update(first)
        yield work, result
        result["machine_after"] = machine()
    finally:
        if service is not None:
            service.stop()
        if keep is None:
            shutil.rmtree(work, ignore_errors=True)
    emit(result)


def percentiles_ms(seconds: Sequence[float]) -> dict[str, float]:
    """p50/p95/p99/max/mean of durations given in seconds, in milliseconds."""
    ordered = sorted(seconds)
    if len(ordered) == 1:
        only = round(ordered[0] * 1000, 2)
        return {"p50": only, "p95": only, "p99": only, "max": only, "mean": only, "n": 1}
    cuts = statistics.quantiles(ordered, n=100, method="inclusive")
    return {"p50": round(cuts[49] * 1000, 2), "p95": round(cuts[94] * 1000, 2),
            "p99": round(cuts[98] * 1000, 2), "max": round(ordered[-1] * 1000, 2),
            "mean": round(statistics.fmean(ordered) * 1000, 2), "n": len(ordered)}


def vm_hwm_kb(pid: int | str = "self") -> int:
    """Peak resident set (``VmHWM``) of a process, in KiB (0 if it is gone)."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        return 0
    return 0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


# -- pcscd -------------------------------------------------------------------------------------
class Pcscd(PcscdService):
    """The shared supervisor, waiting for slot ``BENCH_SLOT``'s reader too. Never stops a
    pcscd it did not start: other jobs may share it."""

    def ensure(self, readers: int = BENCH_SLOT + 1, timeout_s: float = 10.0) -> bool:
        return super().ensure(readers, timeout_s)


# -- a process on a pseudo-terminal ----------------------------------------------------------
@dataclass
class PtyRun:
    seconds: float | None          # spawn to the first marker on the terminal
    marker: str | None
    ready_seconds: float | None = None  # spawn to the ``ready`` text, drawn after a marker
    peak_rss_kb: int = 0
    output_bytes: int = 0
    returncode: int | None = None
    tail: str = field(default="", repr=False)


def run_on_pty(argv: Sequence[str], markers: Sequence[str], *, env: dict[str, str],
               cwd: Path = ROOT, timeout_s: float = 60.0, size: tuple[int, int] = (80, 24),
               after: Callable[[int], None] | None = None,
               ready: str | None = None) -> PtyRun:
    """Start ``argv`` on a fresh pseudo-terminal of ``size`` (columns, rows), time it from
    spawn until one of ``markers`` is drawn (and then, if given, until the ``ready`` text
    is drawn too), call ``after(pid)`` if given, then end it (SIGTERM, then SIGKILL) while
    draining its output."""
    master, slave = pty.openpty()
    columns, rows = size
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))
    wanted = [(m, m.encode("utf-8")) for m in markers]
    started = time.monotonic()
    proc = subprocess.Popen(list(argv), stdin=slave, stdout=slave, stderr=slave, cwd=cwd,
                            env=env, start_new_session=True, close_fds=True)
    os.close(slave)
    seen: tuple[float, str] | None = None
    ready_at: float | None = None
    buffer = bytearray()

    def read_until(found: Callable[[], bool], deadline: float) -> bool:
        while time.monotonic() < deadline:
            if found():
                return True
            readable, _, _ = select.select([master], [], [], 0.2)
            if not readable:
                if proc.poll() is not None:
                    return found()
                continue
            try:
                chunk = os.read(master, 65536)
            except OSError:
                return found()
            buffer.extend(chunk)
        return found()

    def first_marker() -> bool:
        nonlocal seen
        if seen is None:
            hit = next((text for text, raw in wanted if raw in buffer), None)
            if hit is not None:
                seen = (time.monotonic() - started, hit)
        return seen is not None

    try:
        deadline = started + timeout_s
        read_until(first_marker, deadline)
        peak = vm_hwm_kb(proc.pid)
        if ready is not None and seen is not None:
            wanted_ready = ready.encode("utf-8")
            if read_until(lambda: wanted_ready in buffer, deadline):
                ready_at = time.monotonic() - started
        if after is not None and seen is not None:
            after(proc.pid)
            peak = vm_hwm_kb(proc.pid) or peak
    finally:
        _end(proc, master)
        os.close(master)
    tail = bytes(buffer[-400:]).decode("utf-8", "replace")
    return PtyRun(seen[0] if seen else None, seen[1] if seen else None, ready_at, peak,
                  len(buffer), proc.returncode, tail)


def _end(proc: subprocess.Popen, master: int) -> None:
    """SIGTERM, drain the terminal so that the process can write its last frame, then
    SIGKILL after 10 s."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + 10
    while proc.poll() is None and time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 0.05)
        if ready:
            try:
                os.read(master, 65536)
            except OSError:
                time.sleep(0.05)
    if proc.poll() is None:
        proc.kill()
    proc.wait()


# -- a data directory like the appliance's ---------------------------------------------------
def write_settings(data_dir: Path, pki, printer_uri: str,
                   registry_url: str = "http://127.0.0.1:9/fhir") -> Path:
    """``ordo.toml`` trusting the test PKI, with the printer and registry given."""
    from appliance.config import write_config

    return write_config(data_dir / "ordo.toml", {
        "establishment": {"name": "EHPAD Les Tilleuls (mesures)", "finess": "750000001",
                          "address": "1 rue des Tilleuls, 75000 Paris"},
        "printer": {"uri": printer_uri},
        "registry": {"url": registry_url},
        "security": {"trust_roots": [str(p) for p in pki.trust_roots],
                     "crls": [str(p) for p in pki.crls]},
    })


def prepare_data_dir(data_dir: Path, *, printer_uri: str, bdpm: Path | None) -> tuple:
    """A data directory as after installation: the test PKI, ``ordo.toml``, the store with
    the demo residents and the demo physician (with his N° AM), and the BDPM imported
    (``bdpm``: a directory; None for none). Returns ``(settings, pki, import_seconds)``."""
    from appliance.bootstrap import bootstrap
    from appliance.config import load_settings
    from appliance.domain.people import Practitioner, Role
    from appliance.services import prescribing
    from appliance.services.referential import import_bdpm
    from appliance.tui.demo_data import demo_residents
    from drivers.card.pki import PROFILES, init_pki

    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    pki = init_pki(data_dir / "pki")
    toml = write_settings(data_dir, pki, printer_uri)
    settings = load_settings(config_file=toml, data_dir=data_dir, environ={})
    app = bootstrap(settings)
    try:
        uow = app.uow
        with uow:
            uow.residents.upsert(demo_residents())
            uow.commit()
        p = PROFILES["physician"]
        prescribing.add_practitioner(uow, Practitioner(
            id_nat_ps=p.id_nat_ps, last_name=p.family_name, first_name=p.given_name,
            profession=p.profession, role=Role.PRESCRIBER, am=DEMO_AM), actor="bench")
    finally:
        app.close()
    seconds = 0.0
    if bdpm is not None:
        started = time.monotonic()
        import_bdpm(data_dir, str(bdpm))
        seconds = time.monotonic() - started
    return settings, pki, round(seconds, 2)


def pkcs11_settings(settings: Any, pki: Any, work: Path) -> Any:
    """``settings`` with the PKCS#11 backend (``[card] backend = "pkcs11"``) on the
    physician's card as a SoftHSM2 token, provisioned in ``work/softhsm``. SoftHSM2 reads
    ``SOFTHSM2_CONF`` when this process first loads it, at the first card operation: nothing
    before has."""
    import dataclasses

    from drivers.card import softhsm

    tokens = softhsm.provision(pki, work / "softhsm", tokens={"physician": "physician"},
                               force=True)
    os.environ["SOFTHSM2_CONF"] = str(tokens.conf)
    card = dataclasses.replace(settings.card, backend="pkcs11", pkcs11_module=tokens.module,
                               token_label="physician")
    return dataclasses.replace(settings, card=card)


def child_env(**extra: str) -> dict[str, str]:
    """The environment of a measured child: ours without ORDO_* or systemd variables."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("ORDO_", "TEXTUAL")) and k not in ("NOTIFY_SOCKET",
                                                                 "WATCHDOG_USEC")}
    env.update(extra)
    return env
