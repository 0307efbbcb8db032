"""Benchmark of a card login with the PKCS#11 backend (SoftHSM2) against the PC/SC backend
(the virtual card in pcscd), both in one run; then sign to last byte at the printer with the
PKCS#11 backend.

Run from the repository root::

    python -m bench.card_login [--runs 30] [--sign-runs 30] [--keep DIR]

A login is what the kiosk and ``ordo card login`` do when a PIN is typed: open the card
(``CardReader.open``), ``authenticate`` (certificates read and checked against the test
PKI's trust roots and CRLs, PIN verified, challenge signed by the authentication key and
checked), then ``logout`` (session closed, card reset or logged out). The two backends are
timed alternately, ``--runs`` each after one warm-up each:

- **pcsc**: pcscd with the vsmartcard ``vpcd`` reader (the running pcscd, or one started
  here), the virtual physician card in **slot 1** (slot 0 is left to the tests);
- **pkcs11**: SoftHSM2 (``libsofthsm2.so``) with the physician's token provisioned by
  ``drivers.card.softhsm`` (the same test PKI), through ``drivers.card.pkcs11``.

Goal: PKCS#11 login median ≤ 1.5× the PC/SC login median. Then ``bench.sign_print``'s
measure runs with ``backend="pkcs11"`` (sign, store, print worker, emulator's last byte):
goal p95 ≤ 150 ms. Prints JSON only.
"""

from __future__ import annotations

import argparse
import functools
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from bench.common import BENCH_SLOT, PIN, Pcscd, emit, machine, percentiles_ms

GOAL_RATIO = 1.5
GOAL_SIGN_P95_MS = 150.0


def measure_logins(work: Path, runs: int) -> dict:
    from appliance.services.auth import authenticate
    from appliance.services.trust import load_trust_store
    from appliance.store import audit, open_store
    from drivers.card import pkcs11, softhsm, virtual
    from drivers.card.pcsc import PcscReader
    from drivers.card.pki import init_pki

    data_dir = work / "logins"
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    pki = init_pki(data_dir / "pki")
    trust = load_trust_store(pki.trust_roots, pki.crls)
    tokens = softhsm.provision(pki, data_dir / "softhsm",
                               tokens={"physician": "physician"})
    os.environ["SOFTHSM2_CONF"] = str(tokens.conf)
    store = open_store(data_dir / "ordo.sqlite")
    audit_log = functools.partial(audit.append, store)
    inserted = virtual.insert(data_dir, "physician", BENCH_SLOT, PIN, data_dir / "pki")
    try:
        pcsc_reader = PcscReader()
        p11_reader = pkcs11.Pkcs11Reader(pkcs11.module(tokens.module), "physician")
        module_load_started = time.monotonic()
        p11_reader.readers()                     # loads the module (once per process)
        module_load_s = time.monotonic() - module_load_started

        def open_pcsc():
            return pcsc_reader.open(pcsc_reader.readers().index(inserted.reader))

        def open_p11():
            names = p11_reader.readers()
            return p11_reader.open(names.index(p11_reader.readers_with_card()[0]))

        def login(open_card) -> float:
            started = time.monotonic()
            card = open_card()
            try:
                session = authenticate(card, PIN, trust, audit=audit_log,
                                       idle_timeout_s=3600.0)
            except BaseException:
                card.close()
                raise
            session.logout()
            return time.monotonic() - started

        timings: dict[str, list[float]] = {"pcsc": [], "pkcs11": []}
        openers = {"pcsc": open_pcsc, "pkcs11": open_p11}
        for name in openers:                     # warm-up (not counted)
            login(openers[name])
        for index in range(runs):
            order = ["pcsc", "pkcs11"] if index % 2 == 0 else ["pkcs11", "pcsc"]
            for name in order:
                timings[name].append(login(openers[name]))
        pcsc_ms, p11_ms = percentiles_ms(timings["pcsc"]), percentiles_ms(timings["pkcs11"])
        ratio = {cut: round(p11_ms[cut] / pcsc_ms[cut], 2) for cut in ("p50", "p95")}
        return {"runs": runs, "pcsc_login_ms": pcsc_ms, "pkcs11_login_ms": p11_ms,
                "ratio_pkcs11_to_pcsc": ratio,
                "pkcs11_module_load_ms": round(module_load_s * 1000, 1),
                "pcsc_reader": inserted.reader, "pkcs11_module": tokens.module,
                "goal": {"median_ratio_max": GOAL_RATIO, "met": ratio["p50"] <= GOAL_RATIO}}
    finally:
        virtual.remove(data_dir, BENCH_SLOT)
        store.close()


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
    work = args.keep or Path(tempfile.mkdtemp(prefix="ordo-bench-login-"))
    work.mkdir(parents=True, exist_ok=True)
    pcscd = Pcscd(work / "pcscd.log")
    try:
        started_pcscd = pcscd.ensure()
        result: dict = {"machine_before": machine(), "pcscd_started_here": started_pcscd}
        result["login"] = measure_logins(work, args.runs)
        signing = sign_print_pkcs11(args.sign_runs)
        signing["goals"] = {"p95_max_ms": GOAL_SIGN_P95_MS,
                            "met": signing["sign_to_last_byte_ms"]["p95"] <= GOAL_SIGN_P95_MS}
        result["sign_print_pkcs11"] = signing
        result["goals"] = {"login_met": result["login"]["goal"]["met"],
                           "sign_print_met": signing["goals"]["met"]}
        result["machine_after"] = machine()
    finally:
        pcscd.stop()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    emit(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
