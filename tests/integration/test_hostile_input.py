"""Input sized or shaped to hurt, given to the real ``ordo`` commands in their own
processes, with their peak memory (``ru_maxrss`` of the child, from ``wait4``) measured:
it must not grow with the input."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

MB = 1024 * 1024


# ``ordo`` run by a Python that writes its own peak (VmHWM) to a file when it exits. The
# peak of the exec'ed image only: ``ru_maxrss`` from ``wait4`` would also hold this test
# process's own peak, which a forked (or vforked) child inherits across ``exec``.
LAUNCH = """
import atexit, sys
out = sys.argv.pop(1)
def peak():
    with open("/proc/self/status") as status, open(out, "w") as written:
        written.write(next(line.split()[1] for line in status if line.startswith("VmHWM:")))
atexit.register(peak)
sys.argv[0] = "ordo"
from appliance.cli import main
main()
"""


def run_measured(args: list[str], *, env: dict[str, str], stdin_bytes: int = 0,
                 stdin_data: bytes = b"", timeout: float = 120,
                 address_space_mb: int | None = None) -> tuple[int, str, float]:
    """Run ``ordo ARGS``; feed ``stdin_data`` or ``stdin_bytes`` of ``A`` (no newline).
    Returns (exit code, stdout + stderr, peak RSS in MB, 0 if it did not exit by itself);
    killed after ``timeout``; ``address_space_mb`` caps it (a shell's ``ulimit -v``)."""
    with tempfile.NamedTemporaryFile(prefix="ordo-peak-") as peak_file:
        argv = [sys.executable, "-c", LAUNCH, peak_file.name, *args]
        if address_space_mb is not None:
            argv = ["sh", "-c", f'ulimit -v {address_space_mb * 1024} && exec "$0" "$@"',
                    *argv]
        proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, env=env)
        killer = threading.Timer(timeout, proc.kill)
        killer.start()

        def feed() -> None:
            try:
                if stdin_data:
                    proc.stdin.write(stdin_data)
                block = b"A" * MB
                for _ in range(stdin_bytes // MB):
                    proc.stdin.write(block)
            except (BrokenPipeError, OSError):
                pass  # the command stopped reading: that is the point
            finally:
                with contextlib.suppress(OSError):
                    proc.stdin.close()

        output: list[bytes] = []
        threads = [threading.Thread(target=feed, daemon=True),
                   threading.Thread(target=lambda: output.append(proc.stdout.read()),
                                    daemon=True)]
        for thread in threads:
            thread.start()
        proc.wait()
        killer.cancel()
        for thread in threads:
            thread.join(timeout)
        written = Path(peak_file.name).read_text().strip()
    out = output[0] if output else b""
    return proc.returncode, out.decode("utf-8", "replace"), int(written or 0) / 1024


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("ORDO_")}
    return {**environ, "ORDO_DATA_DIR": str(tmp_path / "data")}


def test_qr_verify_reads_a_few_kilobytes_of_a_huge_stdin(env):
    code, small_out, small_rss = run_measured(["qr", "verify"], env=env,
                                              stdin_data=b"ORD1:NOTAPAYLOAD\n")
    assert code == 1 and "INVALID" in small_out
    code, out, rss = run_measured(["qr", "verify"], env=env, stdin_bytes=96 * MB)
    assert code == 1 and "INVALID" in out, out
    assert "at most" in out and "AAAA" not in out  # the size is named, the input not echoed
    assert rss - small_rss < 16, (rss, small_rss)


def write_residents_csv(path: Path, rows: int) -> Path:
    """``rows`` valid residents, each NIR different (with its key)."""
    from appliance.domain.ids import nir_key

    with path.open("w", encoding="utf-8") as out:
        out.write("nir;nom;nom_usage;prenoms;date_naissance;sexe;chambre;opposition\n")
        for i in range(rows):
            order, commune, month = i % 999 + 1, (i // 999) % 900 + 100, 1 + (i // 899_100) % 12
            body = f"2{40 + i // 10_789_200:02d}{month:02d}75{commune:03d}{order:03d}"
            out.write(f"{body}{nir_key(body)};MARTIN{i % 97};;Jeanne Marie;15/01/1940;F;"
                      f"{i % 900 + 100};non\n")
    return path


def test_residents_import_streams_the_csv(env, tmp_path):
    """Ten times the rows, the same peak: the CSV is read row by row, never held whole
    (``python -m bench.residents_import`` gives the figure for 1,000,000 rows)."""
    small = write_residents_csv(tmp_path / "small.csv", 5_000)
    big = write_residents_csv(tmp_path / "big.csv", 50_000)
    code, out, small_rss = run_measured(["residents", "import", str(small)], env=env)
    assert code == 0 and "5000 created" in out, out
    env = {**env, "ORDO_DATA_DIR": str(tmp_path / "other")}
    code, out, big_rss = run_measured(["residents", "import", str(big)], env=env)
    assert code == 0 and "50000 created" in out, out
    assert big_rss - small_rss < 8, (small_rss, big_rss)
