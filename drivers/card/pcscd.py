"""Start pcscd when nobody runs it, for the demo and the benchmarks.

The appliance itself relies on Debian's socket-activated pcscd; this is for a machine where
it is not running (a fresh demo box, a benchmark run). ``ensure`` uses the running pcscd if it
answers, or waits for it if its process is alive (busy, or starting); only when no pcscd runs
does it start ``pcscd --foreground`` (root), after removing the pid and socket files a killed
pcscd leaves behind, and wait until the vpcd readers are listed. ``stop`` only ever stops the
pcscd this object started, and leaves another pcscd's files alone.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

from appliance.errors import CardError

RUN_DIR = Path("/run/pcscd")
PID_FILE = RUN_DIR / "pcscd.pid"
STALE_FILES = (PID_FILE, RUN_DIR / "pcscd.comm")
VPCD_PREFIX = "Virtual PCD"


def pcscd_answers() -> bool:
    from drivers.card.pcsc import PcscContext

    try:
        PcscContext().establish().release()
    except CardError:
        return False
    return True


def vpcd_readers() -> list[str]:
    from drivers.card.pcsc import reader_states

    try:
        return [r.name for r in reader_states() if r.name.startswith(VPCD_PREFIX)]
    except CardError:
        return []


def running_pid() -> int | None:
    """The pid of a live pcscd from its pid file (it may not answer yet), else None."""
    try:       # pcscd writes "<pid>\n\0"
        pid = int(PID_FILE.read_bytes().replace(b"\0", b"").strip())
        comm = Path(f"/proc/{pid}/comm").read_text().strip()
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0]
    except (OSError, ValueError, IndexError):
        return None
    return pid if comm == "pcscd" and state not in {"Z", "X"} else None


def can_start() -> bool:
    """Whether this process could start pcscd (installed, and we are root)."""
    binary = shutil.which("pcscd") or "/usr/sbin/pcscd"
    return Path(binary).exists() and os.geteuid() == 0


class PcscdService:
    """pcscd used if it runs, else started here and stopped by ``stop`` (never a pcscd
    someone else started)."""

    def __init__(self, log_path: Path) -> None:
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def ours(self) -> bool:
        return self.process is not None

    def restart(self, readers: int = 1) -> None:
        """Stop and start again the pcscd this object started (``CardError`` otherwise)."""
        if not self.ours:
            raise CardError("pcscd tournait déjà : il n'est pas redémarré ici")
        self.stop()
        self.ensure(readers)

    def ensure(self, readers: int = 1, timeout_s: float = 10.0) -> bool:
        """Wait until ``readers`` vpcd readers are listed; True if this call started pcscd."""
        started = False
        if running_pid() is None and not pcscd_answers():
            binary = shutil.which("pcscd") or "/usr/sbin/pcscd"
            if not Path(binary).exists():
                raise CardError("pcscd n'est pas installé (apt-get install pcscd "
                                "vsmartcard-vpcd)")
            if os.geteuid() != 0:
                raise CardError("pcscd ne tourne pas : sudo systemctl start pcscd")
            for stale in STALE_FILES:
                stale.unlink(missing_ok=True)
            with open(self.log_path, "ab") as out:
                self.process = subprocess.Popen([binary, "--foreground"],  # noqa: S603
                                                stdout=out, stderr=subprocess.STDOUT)
            started = True
        deadline = time.monotonic() + timeout_s
        while len(vpcd_readers()) < readers:
            if self.process is not None and self.process.poll() is not None:
                raise CardError(f"pcscd s'est arrêté ; voir {self.log_path}")
            if time.monotonic() > deadline:
                self.stop()
                raise CardError("pcscd ne voit pas le lecteur virtuel vpcd (paquet "
                                "vsmartcard-vpcd ?)")
            time.sleep(0.05)
        return started

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None:
            return
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if running_pid() is None:  # not the files of a pcscd started since
            for stale in STALE_FILES:
                stale.unlink(missing_ok=True)
