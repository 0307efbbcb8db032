"""Benchmark of a card login with the PKCS#11 backend (SoftHSM2) against the PC/SC backend
(the virtual card in pcscd), both in one run; then sign to last byte at the printer with the
PKCS#11 backend.

Run from the repository root::

    python -m bench.card_login [--runs 30] [--sign-runs 30] [--keep DIR]

A login is what the kiosk, ``ordo card login``, ``ordo prescribe`` and ``ordo reprint`` do
when a PIN is typed: ``App.login`` of the composition root (open the card with the reader of
``[card] backend``, read the certificates and check them against the test PKI's trust roots
and CRLs, verify the PIN, have the authentication key sign a challenge and check it, audit
entry in its own unit of work), then ``logout`` (audit entry, card reset or logged out). One
``App`` per backend, the same data directory; timed alternately, ``--runs`` each after one
warm-up each:

- **pcsc**: ``[card] backend = "pcsc"``, pcscd with the vsmartcard ``vpcd`` reader (the
  running pcscd, or one started here), the virtual physician card in **slot 1** (slot 0 is
  left to the tests);
- **pkcs11**: ``[card] backend = "pkcs11"``, SoftHSM2 (``libsofthsm2.so``) with the
  physician's token provisioned by ``drivers.card.softhsm`` (the same test PKI).

Goal: PKCS#11 login median ≤ 1.5× the PC/SC login median. Then ``bench.sign_print
--backend pkcs11`` runs in a process of its own (sign, store, print worker, emulator's last
byte): goal p95 ≤ 150 ms. Prints JSON only.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from bench.common import (
    BENCH_SLOT,
    PIN,
    bench_run,
    percentiles_ms,
    pkcs11_settings,
    prepare_data_dir,
)

GOAL_RATIO = 1.5
GOAL_SIGN_P95_MS = 150.0


def measure_logins(work: Path, runs: int) -> dict:
    from appliance.bootstrap import bootstrap
    from drivers.card import virtual

    data_dir = work / "logins"
    settings, pki, _ = prepare_data_dir(data_dir, printer_uri="tcp://127.0.0.1:9", bdpm=None)
    apps = {"pcsc": bootstrap(settings),
            "pkcs11": bootstrap(pkcs11_settings(settings, pki, work))}
    inserted = virtual.insert(data_dir, "physician", BENCH_SLOT, PIN)
    try:
        p11_reader = apps["pkcs11"].card_reader
        module_load_started = time.monotonic()
        p11_reader.readers()                     # loads the module (once per process)
        module_load_s = time.monotonic() - module_load_started
        readers = {"pcsc": inserted.reader, "pkcs11": None}   # None: the first with a card

        def login(name: str) -> float:
            started = time.monotonic()
            session = apps[name].login(PIN, reader=readers[name])
            session.logout()
            return time.monotonic() - started

        timings: dict[str, list[float]] = {"pcsc": [], "pkcs11": []}
        for name in timings:                     # warm-up (not counted)
            login(name)
        for index in range(runs):
            order = ["pcsc", "pkcs11"] if index % 2 == 0 else ["pkcs11", "pcsc"]
            for name in order:
                timings[name].append(login(name))
        pcsc_ms, p11_ms = percentiles_ms(timings["pcsc"]), percentiles_ms(timings["pkcs11"])
        ratio = {cut: round(p11_ms[cut] / pcsc_ms[cut], 2) for cut in ("p50", "p95")}
        return {"runs": runs, "pcsc_login_ms": pcsc_ms, "pkcs11_login_ms": p11_ms,
                "ratio_pkcs11_to_pcsc": ratio,
                "pkcs11_module_load_ms": round(module_load_s * 1000, 1),
                "pcsc_reader": inserted.reader,
                "pkcs11_module": apps["pkcs11"].settings.card.pkcs11_module,
                "goal": {"median_ratio_max": GOAL_RATIO, "met": ratio["p50"] <= GOAL_RATIO}}
    finally:
        virtual.remove(data_dir, BENCH_SLOT)
        for app in apps.values():
            app.close()


def sign_print_pkcs11(runs: int) -> dict:
    """``bench.sign_print --backend pkcs11`` in a process of its own (SoftHSM2 reads its
    configuration once per process, and that one has its own tokens and PKI)."""
    import json
    import subprocess

    from bench.common import ROOT

    done = subprocess.run([sys.executable, "-m", "bench.sign_print", "--backend", "pkcs11",
                           "--runs", str(runs)], cwd=ROOT, capture_output=True, text=True,
                          check=False, timeout=1200)
    if done.returncode:
        raise SystemExit(f"bench.sign_print --backend pkcs11 failed: {done.stderr[-1500:]}")
    return json.loads(done.stdout)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30, help="logins of each backend (30)")
    parser.add_argument("--sign-runs", type=int, default=30,
                        help="signed and printed orders with the PKCS#11 backend (30)")
    parser.add_argument("--keep", type=Path, help="work in this directory and keep it")
    args = parser.parse_args(argv)
    with bench_run(args.keep, "ordo-bench-login-", pcscd=True) as (work, result):
        result["login"] = measure_logins(work, args.runs)
        signing = sign_print_pkcs11(args.sign_runs)
        signing["goals"] = {"p95_max_ms": GOAL_SIGN_P95_MS,
                            "met": signing["sign_to_last_byte_ms"]["p95"] <= GOAL_SIGN_P95_MS}
        result["sign_print_pkcs11"] = signing
        result["goals"] = {"login_met": result["login"]["goal"]["met"],
                           "sign_print_met": signing["goals"]["met"]}
    return 0


if __name__ == "__main__":
    sys.exit(main())
