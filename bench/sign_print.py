"""Benchmark of sign-to-last-byte-at-the-printer with the virtual card, against a bare
card signature plus a bare TCP send of the same job, same run.

Run from the repository root::

    python -m bench.sign_print [--runs 30] [--keep DIR] [--backend pcsc|pkcs11]

Real pieces: pcscd with the vsmartcard ``vpcd`` reader (the running pcscd, or one started
here and stopped at the end), the virtual physician card in **slot 1** (TCP 35964; slot 0
is left to the tests), the ESC/POS printer emulator over TCP in a process of its own (as a
network printer is a box of its own), a real store. The physician logs in once with the
card (PIN, challenge), then ``--runs`` drafts of three lines (two medications, one act) for
a demo resident are made beforehand (not timed). With ``--backend pkcs11`` the card is the
physician's SoftHSM2 token instead, reached through the PKCS#11 backend that the composition
root builds from ``[card]`` (no pcscd).

Alternately, ``--runs`` times each:

- **ordo**: as the kiosk's review screen does: while the order is shown (not timed),
  ``printing.prepare_print`` has the printer driver make its receipt ahead (layout, ePU QR
  raster: all but the signing time); then, timed, ``prescribing.sign`` (the card signs the
  QR part through pcscd; prescription, outbox row, print job and audit entry in one
  transaction) then ``PrintWorker.wake`` with the signed orders; the print worker thread
  (its own store connection) claims the job, builds the ticket and sends it with the
  status checks and the final ``DLE EOT`` acknowledgement. Time: from the sign call to the
  emulator's last received byte of that job (``time.monotonic``, one clock for both
  processes on Linux).
- **bare**: ``CardSession.sign`` of the same bytes on the same card, then one TCP
  connection that sends the raw bytes the emulator received for an Ordo job, in one
  write, and reads the printer's answers. Same end point.

The same run renders the first order's receipt (the ePU QR, every mention) for 58 mm and
80 mm paper through the emulator's interpreter and reports its length, against the length
of the same 3-line order's receipt before the mentions and the ePU QR (a 2,000-character
signed QR then; measured once at commit 91f24f6 with this draft, these settings and the
same interpreter, as the old layout code no longer exists to run beside the new).

Then ``integrity_check``: what checking each stored order against its signature costs
(``appliance.integrity``, run by every print, reprint, PDF and upload): ``order_payload``
with the check and with it switched off, alternated in the same run, and the check alone.

Goals: ordo p95 ≤ 40 ms with the ePU QR, the check included; the receipt no longer than
before. Prints JSON only.
"""

from __future__ import annotations

import argparse
import json
import select
import socket
import subprocess
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from bench.common import (
    BENCH_SLOT,
    PIN,
    ROOT,
    bench_run,
    percentiles_ms,
    pkcs11_settings,
    prepare_data_dir,
)

if TYPE_CHECKING:
    from appliance.services.drafts import Draft

GOAL_P95_MS = 40.0
# The same order's receipt at commit 91f24f6 (signed 2,000-character QR, fewer mentions),
# rendered by the emulator's interpreter: dots of paper (203 dpi, 8 dots per mm).
RECEIPT_BEFORE_DOTS = {"58mm": 1479, "80mm": 1646}


def receipt_dots(uow, prescription_id: str, settings) -> dict[str, int]:
    """The length of an order's receipt on 58 and 80 mm paper, in dots."""
    from appliance.services.printing import order_payload
    from drivers.printer.emulator import render_bytes
    from drivers.printer.escpos import PrinterProfile, render_job
    from drivers.printer.layout import Letterhead, OrderDocument, media_for, tickets_for

    prescription, payload = order_payload(uow, prescription_id, settings.print.qr)
    out = {"qr_chars": len(payload)}
    for name in RECEIPT_BEFORE_DOTS:
        media = media_for(name)
        doc = OrderDocument(prescription, payload, Letterhead.from_settings(settings))
        data = render_job(tickets_for(doc, media), PrinterProfile("TM-T20II", media))
        out[name] = sum(t.image.height for t in render_bytes(data, media.width_dots))
    return out


# -- the printer, in a process of its own ----------------------------------------------------
def emulator_child() -> None:
    """``--emulator``: serve on a free port, print ``{"port": N}``, then one JSON line per
    job (its first and last byte on the monotonic clock; the raw bytes of job 1) until
    stdin closes."""
    from drivers.printer.emulator import PrinterEmulator

    emulator = PrinterEmulator(decode_qr=False).start()
    done = threading.Event()

    def watch_stdin() -> None:
        sys.stdin.read()
        done.set()

    threading.Thread(target=watch_stdin, daemon=True).start()
    print(json.dumps({"port": emulator.port}), flush=True)
    reported = 0
    while not done.is_set():
        jobs = emulator.wait_for_jobs(reported + 1, timeout=0.2)
        for job in jobs[reported:]:
            line = {"job": job.number, "first": job.first_byte, "last": job.last_byte,
                    "bytes": len(job.raw), "complete": job.complete}
            if job.number == 1:
                line["raw"] = bytes(job.raw).hex()
            print(json.dumps(line), flush=True)
        reported = len(jobs)
    emulator.stop()


class EmulatorProcess:
    def __init__(self) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "bench.sign_print", "--emulator"],
                                     cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     text=True)
        assert self.proc.stdout is not None
        self.port = json.loads(self.proc.stdout.readline())["port"]

    @property
    def uri(self) -> str:
        return f"tcp://127.0.0.1:{self.port}"

    def next_job(self, timeout_s: float = 30.0) -> dict:
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout_s)
        if not ready:
            raise SystemExit("sign_print: the printer emulator received no job")
        return json.loads(self.proc.stdout.readline())

    def stop(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def bare_send(port: int, raw: bytes, answers: int) -> None:
    """One connection, the job in one write, then the printer's status answers."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.sendall(raw)
        got = 0
        while got < answers:
            data = sock.recv(16)
            if not data:
                break
            got += len(data)


# -- the run ------------------------------------------------------------------------------------
def integrity_cost(uow: object, prescription_ids: list[str], rounds: int = 20) -> dict:
    """What checking a stored signed prescription against its signature costs the print
    path: ``order_payload`` (read the row, load it, build the QR payload) with the check and
    with it switched off, alternated over the same orders; and the check alone."""
    from appliance import integrity
    from appliance.ports import uow as uow_port
    from appliance.services.printing import order_payload

    def skip_signed(*_: object) -> bytes:
        return b""

    def skip_rebuilt(*_: object) -> tuple[bytes, bytes]:
        return b"", b""

    def switch(on: bool) -> None:  # the ePU payload reads neither the signed part nor H
        uow_port.check_signed = integrity.check_signed if on else skip_signed
        uow_port.check_rebuilt = integrity.check_rebuilt if on else skip_rebuilt

    timed: dict[str, list[float]] = {"with_check": [], "without_check": [], "alone": []}
    for index in range(rounds):
        modes = ["with_check", "without_check"]
        for mode in modes if index % 2 == 0 else modes[::-1]:
            switch(mode == "with_check")
            for pid in prescription_ids:
                started = time.perf_counter()
                order_payload(uow, pid)  # type: ignore[arg-type]
                timed[mode].append(time.perf_counter() - started)
    switch(True)
    rows = uow.prescriptions.signed_rows(prescription_ids)  # type: ignore[attr-defined]
    for _ in range(rounds):
        for row in rows.values():
            signed = row.load()
            started = time.perf_counter()
            if row.signed_payload is None:   # the signed part is rebuilt, not stored
                integrity.check_rebuilt(row.id, signed.prescription, signed.proof.signature,
                                        signed.proof.signer_cert)
            else:
                integrity.check_signed(row.id, signed.prescription, signed.proof.signed_part,
                                       signed.proof.signature, signed.proof.signer_cert)
            timed["alone"].append(time.perf_counter() - started)
    with_ms, without_ms = percentiles_ms(timed["with_check"]), percentiles_ms(
        timed["without_check"])
    return {
        "order_payload_with_check_ms": with_ms,
        "order_payload_without_check_ms": without_ms,
        "ratio_p50": round(with_ms["p50"] / without_ms["p50"], 2),
        "check_alone_us": percentiles_ms([t * 1000 for t in timed["alone"]]),
    }


def three_lines(draft: Draft) -> Draft:
    """The demo's draft as ``RECEIPT_BEFORE_DOTS`` measured it: two medications and one act
    (the demo has had a third medication since)."""
    from appliance.domain.prescription import MedicationLine

    kept = [line for line in draft.lines
            if not (isinstance(line, MedicationLine) and line.label.startswith("LASILIX"))]
    return replace(draft, lines=kept)


def measure(work: Path, runs: int, backend: str = "pcsc") -> dict:
    from appliance.bootstrap import bootstrap
    from appliance.ports.card import sha256_digest_info
    from appliance.services import prescribing
    from appliance.services.printing import PrintWorker, prepare_print
    from appliance.tui.demo_data import demo_draft
    from drivers.card import virtual
    from drivers.card.pki import PROFILES

    emulator = EmulatorProcess()
    data_dir = work / "data"
    inserted = None
    session = worker = app = worker_uow = None
    try:
        settings, pki, _ = prepare_data_dir(data_dir, printer_uri=emulator.uri, bdpm=None)
        if backend == "pkcs11":
            settings = pkcs11_settings(settings, pki, work)
        else:
            inserted = virtual.insert(data_dir, "physician", BENCH_SLOT, PIN)
        app = bootstrap(settings)  # the kiosk's adapters: login recipe, units of work, printer
        store = app.uow.store  # type: ignore[attr-defined]
        session = app.login(PIN, reader=inserted.reader if inserted else None)
        doctor = PROFILES["physician"].id_nat_ps
        drafts = prescribing.import_drafts(app.uow, [(doctor, three_lines(demo_draft()))]
                                           * (runs + 1),
                                           ids=prescribing.IdAllocator(), actor=doctor)
        worker_uow = app.new_uow()  # the print worker's own connection, as in the kiosk
        worker = PrintWorker(app.print_queue(worker_uow), idle_s=3600.0)
        worker.start()

        printer = app.order_printer()

        def ordo(prescription_id: str) -> tuple[float, float, dict]:
            # The review screen (not timed): the order as the physician reads it, and its
            # receipt made ahead but for the signature, as the kiosk does.
            draft = app.uow.prescriptions.get(prescription_id)
            prepare_print(printer, draft, kind=settings.print.qr)
            started = time.monotonic()
            result = prescribing.sign(app.uow, session, prescription_id)
            signed = time.monotonic()
            worker.wake([(one.prescription, one.qr_payload) for one in result.orders])
            job = emulator.next_job()
            if not job["complete"]:
                raise SystemExit(f"sign_print: job {job['job']} incomplete")
            return job["last"] - started, signed - started, job

        # Warm-up (not counted): the first job also gives the bytes for the bare sends.
        _, _, first = ordo(drafts[0].id)
        raw = bytes.fromhex(first["raw"])
        answers = raw.count(b"\x10\x04")
        with app.uow as uow:  # the bytes the card signed (rebuilt from the body when stored)
            loaded = uow.prescriptions.signed_rows([drafts[0].id])[drafts[0].id].load()
        signed_bytes = loaded.proof.signed_part

        def bare() -> tuple[float, float, dict]:
            started = time.monotonic()
            session.card.sign(sha256_digest_info(signed_bytes))
            signed = time.monotonic()
            bare_send(emulator.port, raw, answers)
            job = emulator.next_job()
            return job["last"] - started, signed - started, job

        total: dict[str, list[float]] = {"ordo": [], "bare": []}
        sign_part: dict[str, list[float]] = {"ordo": [], "bare": []}
        wire: dict[str, list[float]] = {"ordo": [], "bare": []}
        for index, draft in enumerate(drafts[1:]):
            order = ["ordo", "bare"] if index % 2 == 0 else ["bare", "ordo"]
            for name in order:
                seconds, sign_s, job = ordo(draft.id) if name == "ordo" else bare()
                total[name].append(seconds)
                sign_part[name].append(sign_s)
                wire[name].append(job["last"] - job["first"])
        worker.stop()                               # lets it mark the last job done
        worker = None
        integrity = integrity_cost(app.uow, [d.id for d in drafts])
        printed = store.query("SELECT count(*) AS n FROM print_jobs WHERE status = 'done'")
        ordo_ms, bare_ms = percentiles_ms(total["ordo"]), percentiles_ms(total["bare"])
        receipt = receipt_dots(app.uow, drafts[0].id, settings)
        shorter = all(receipt[m] <= RECEIPT_BEFORE_DOTS[m] for m in RECEIPT_BEFORE_DOTS)
        return {
            "runs": runs,
            "job_bytes": len(raw),
            "sign_to_last_byte_ms": ordo_ms,
            "bare_sign_plus_send_ms": bare_ms,
            "ratio": {cut: round(ordo_ms[cut] / bare_ms[cut], 2) for cut in ("p50", "p95")},
            "breakdown_p50_ms": {
                "ordo_sign_and_store": percentiles_ms(sign_part["ordo"])["p50"],
                "bare_card_signature": percentiles_ms(sign_part["bare"])["p50"],
                "ordo_first_to_last_byte": percentiles_ms(wire["ordo"])["p50"],
                "bare_first_to_last_byte": percentiles_ms(wire["bare"])["p50"],
            },
            "integrity_check": {
                **integrity,
                "share_of_sign_to_last_byte_p50": round(
                    integrity["check_alone_us"]["p50"] / 1000 / ordo_ms["p50"], 4),
            },
            "jobs_done": printed[0]["n"],
            "jobs_expected": runs + 1,
            "reader": session.reader,
            "backend": backend,
            "qr": settings.print.qr,
            "qr_chars": receipt.pop("qr_chars"),
            "receipt_dots": receipt,
            "receipt_before_dots": RECEIPT_BEFORE_DOTS,
            "receipt_ratio": {m: round(receipt[m] / RECEIPT_BEFORE_DOTS[m], 3)
                              for m in RECEIPT_BEFORE_DOTS},
            "goals": {"p95_max_ms": GOAL_P95_MS, "receipt_no_longer": shorter,
                      "met": ordo_ms["p95"] <= GOAL_P95_MS and shorter},
        }
    finally:
        if worker is not None:
            worker.stop()
        if worker_uow is not None:
            worker_uow.close()
        if session is not None:
            session.logout()
        if app is not None:
            app.close()
        if inserted is not None:
            virtual.remove(data_dir, BENCH_SLOT)
        emulator.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30, help="measured runs of each (30)")
    parser.add_argument("--keep", type=Path, help="work in this directory and keep it")
    parser.add_argument("--backend", choices=("pcsc", "pkcs11"), default="pcsc",
                        help="the card: the virtual card in pcscd (pcsc), or the physician's "
                             "SoftHSM2 token through the PKCS#11 backend (pkcs11)")
    parser.add_argument("--emulator", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.emulator:
        emulator_child()
        return 0
    with bench_run(args.keep, "ordo-bench-sign-", pcscd=args.backend == "pcsc") as (work, result):
        result.update(measure(work, args.runs, args.backend))
    return 0


if __name__ == "__main__":
    sys.exit(main())
