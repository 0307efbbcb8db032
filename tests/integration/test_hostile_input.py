"""Input sized or shaped to hurt, given to the real ``ordo`` commands in their own
processes, with their peak memory (``ru_maxrss`` of the child, from ``wait4``) measured:
it must not grow with the input."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

ORDO = str(Path(sys.executable).parent / "ordo")
MB = 1024 * 1024


def run_measured(args: list[str], *, env: dict[str, str], stdin_bytes: int = 0,
                 stdin_data: bytes = b"", timeout: float = 120) -> tuple[int, str, float]:
    """Run ``ordo ARGS``; feed ``stdin_data`` or ``stdin_bytes`` of ``A`` (no newline).
    Returns (exit code, stdout + stderr, peak RSS in MB)."""
    proc = subprocess.Popen([ORDO, *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, env=env)

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
               threading.Thread(target=lambda: output.append(proc.stdout.read()), daemon=True)]
    for thread in threads:
        thread.start()
    _, status, usage = os.wait4(proc.pid, 0)  # the child's own peak, not the test's
    proc.returncode = os.waitstatus_to_exitcode(status)
    for thread in threads:
        thread.join(timeout)
    out = output[0] if output else b""
    return proc.returncode, out.decode("utf-8", "replace"), usage.ru_maxrss / 1024


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
