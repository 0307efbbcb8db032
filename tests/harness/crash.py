"""Crash consistency: prescribe + print + sync as real processes, killed with SIGKILL at
seeded random moments, then the invariants.

The children are forked from the fork server (``workers``) and share one SQLite file, a TCP
printer emulator, a directory for the secure-paper PDFs and the reference registry (with a
few faults of its own). Each trial starts a prescriber (0 to 2 headless prescriptions; in
about one trial in four the first one mixes a narcotic with the other lines, which signing
splits into two orders) and restarts the print and sync workers if they are dead, then,
after a seeded delay, kills: everything at the same instant (a power cut), or the
prescriber at its own moment and each other worker with one chance in two at its own moment
(a survivor works on through the next trial). Then:

- every ID a prescriber reported (only after ``prescribe`` returned) is stored, signed, and
  its signature verifies (``checks.signed_and_valid``);
- no prescription is half-signed (``checks.all_or_nothing``), and a mixed draft is either
  still a draft or two signed orders, never one of them (``checks.split_pairs``);
- every print job marked ``done`` was acknowledged by the printer (a secure order's: its
  whole PDF is written, and it never reached the receipt printer);
- ``PRAGMA integrity_check`` is ok; the audit chain verifies (every ``audit_every`` trials
  and at the end: a broken chain stays broken).

A print worker comes back as if the leases of the dead ones had expired (its clock is a lease
per trial ahead), so the job a killed worker held prints again at once. After the last trial,
a last power cut, then two print workers and one sync worker restart without kills and drain;
then every signed prescription has its original job done and at least one acknowledged copy
at the printer, or its whole PDF for a secure order (a second copy is legitimate when a kill
fell between the printer's acknowledgement and the ``done`` mark: counted as
``duplicates``; only a job that a killed worker held may print twice), the registry holds
each of them exactly once (created once, no conflict), and every outbox row is
acknowledged.

``CrashHarness.run()`` returns a JSON-ready report whose ``problems`` list is empty when
every invariant held.
"""

from __future__ import annotations

import random
import signal
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from appliance.domain.qr import EpuPayload
from appliance.errors import ValidationError
from appliance.services.printing import LEASE
from appliance.services.trust import load_trust_store
from appliance.store import open_store
from drivers.card.pki import PkiPaths
from sync.registry_sim import Faults
from tests import factories
from tests.harness import checks, workers

ROLES = ("prescriber", "printer", "syncer")
ENGINE = {"batch_size": 20, "backoff_base_s": 0.01, "backoff_cap_s": 0.05, "max_wait_s": 0.5,
          "concurrency": 4}
REGISTRY_FAULTS = {"error_rate": 0.05, "reset_rate": 0.02, "drop_rate": 0.05, "latency_ms": 3}
DRAIN_TIMEOUT_S = 120.0
MIXED_RATE = 0.25  # trials whose first prescription mixes a narcotic with other lines


@dataclass
class Trial:
    number: int
    mode: str  # power_cut | staggered
    kill_at_ms: dict[str, float]
    prescriptions: int
    mixed: bool = False
    shown: list[str] = field(default_factory=list)
    killed_alive: list[str] = field(default_factory=list)


class CrashHarness:
    """Seeded SIGKILL trials on a store in ``work``; ``emulator`` is a running
    ``PrinterEmulator``, ``registry`` a running ``RegistrySim`` (its faults are set here)."""

    def __init__(self, work: Path, pki: PkiPaths, emulator: Any, registry: Any, *,
                 seed: int = 0, window_s: float = 0.3, audit_every: int = 10,
                 media: str = "80mm") -> None:
        self.work = Path(work)
        self.pki = pki
        self.emulator = emulator
        self.registry = registry
        self.seed = seed
        self.rng = random.Random(seed)
        self.window_s = window_s
        self.audit_every = audit_every
        self.resident = factories.resident(7)
        self.setup = workers.Setup(store=str(self.work / "data" / "ordo.sqlite"),
                                   pki=str(pki.directory),
                                   resident_ins=self.resident.ins.value,
                                   printer_uri=emulator.uri, registry_url=registry.url,
                                   media=media, engine=ENGINE,
                                   secure_dir=str(self.work / "secure"))
        self.secure_dir = self.work / "secure"
        trust = load_trust_store(pki.trust_roots, pki.crls)
        self.roots = [*trust.roots, *trust.intermediates]
        self.crls = list(trust.crls)
        self.ctx = workers.fork_context()
        self.copies = checks.PrintedCopies(emulator)
        self.trials: list[Trial] = []
        self.problems: list[str] = []
        self.shown: list[str] = []
        self.procs: dict[str, Any] = {}
        self.interrupted: set[str] = set()

    # -- children ---------------------------------------------------------------------------
    def _start(self, role: str, *args: Any, name: str | None = None, **kwargs: Any) -> Any:
        process = self.ctx.Process(target=getattr(workers, role), args=(self.setup, *args),
                                   kwargs=kwargs, name=name or f"crash-{role}", daemon=True)
        process.start()
        return process

    def _note_interrupted(self, worker_id: str) -> None:
        """The jobs a killed print worker held (claimed, not done): the only ones that may
        legitimately print twice."""
        store = open_store(self.setup.store, migrate=False)
        try:
            self.interrupted.update(row["prescription_id"] for row in store.query(
                "SELECT prescription_id FROM print_jobs WHERE claimed_by = ?"
                " AND status = 'queued'", (worker_id,)))
        finally:
            store.close()

    # -- one trial --------------------------------------------------------------------------
    def _plan(self, number: int) -> Trial:
        """Power cut: every worker dies at the same moment. Staggered: the prescriber dies at
        its own moment, the print and sync workers each with one chance in two (a survivor
        goes on working through the next trial)."""
        rng = self.rng
        mode = "power_cut" if rng.random() < 0.4 else "staggered"
        if mode == "power_cut":
            kill_at = dict.fromkeys(ROLES, rng.uniform(0, self.window_s))
        else:
            kill_at = {"prescriber": rng.uniform(0, self.window_s)}
            for role in ROLES[1:]:
                at = rng.uniform(0, self.window_s)
                if rng.random() < 0.5:
                    kill_at[role] = at
        prescriptions = rng.randint(0, 2)
        mixed = prescriptions > 0 and rng.random() < MIXED_RATE
        return Trial(number, mode, {k: round(v * 1000, 1) for k, v in kill_at.items()},
                     prescriptions=prescriptions, mixed=mixed)

    @staticmethod
    def _restart_shift(number: int) -> float:
        """A print worker started at trial ``number`` comes back after the leases of every
        earlier one expired: its clock is ``number`` leases (and a second) ahead."""
        return number * (LEASE.total_seconds() + 1)

    def _ensure_workers(self, number: int) -> None:
        for role in ROLES[1:]:
            process = self.procs.get(role)
            if process is None or process.exitcode is not None:
                if role == "printer":
                    self.procs[role] = self._start(
                        role, clock_shift_s=self._restart_shift(number),
                        worker_id=f"printer-{number}", name=f"crash-printer-{number}")
                else:
                    self.procs[role] = self._start(role)

    def _kill(self, role: str, trial: Trial | None) -> None:
        process = self.procs.pop(role, None)
        if process is None:
            return
        if process.exitcode is None:
            if trial is not None:
                trial.killed_alive.append(role)
            process.kill()
        process.join(10)
        if role == "printer":
            self._note_interrupted(f"printer-{process.name.rsplit('-', 1)[-1]}")
        if process.exitcode not in (0, -signal.SIGKILL):
            self.problems.append(f"trial {trial.number if trial else 'end'}: {role} exited "
                                 f"with {process.exitcode}")

    def run_trial(self, number: int) -> Trial:
        trial = self._plan(number)
        shown_path = self.work / f"shown-{number:04d}.txt"
        self._ensure_workers(number)
        self.procs["prescriber"] = self._start("prescriber", str(shown_path),
                                               trial.prescriptions, mixed=trial.mixed)
        started = time.monotonic()
        for role in sorted(trial.kill_at_ms, key=lambda r: trial.kill_at_ms[r]):
            left = trial.kill_at_ms[role] / 1000 - (time.monotonic() - started)
            if left > 0:
                time.sleep(left)  # the seeded kill moment is what the trial is about
            self._kill(role, trial)
        if shown_path.exists():
            text = shown_path.read_text("ascii")
            trial.shown = [line for line in text.split("\n")[:-1] if line]
        self.shown.extend(trial.shown)
        self.trials.append(trial)
        return trial

    def check_trial(self, trial: Trial, *, full: bool) -> None:
        store = open_store(self.setup.store, migrate=False)
        try:
            with checks.snapshot(store):  # surviving workers keep writing meanwhile
                found = checks.integrity(store)
                found += checks.all_or_nothing(store)
                found += checks.split_pairs(store)
                found += checks.signed_and_valid(store, trial.shown, self.roots, self.crls)
                found += checks.done_jobs_printed(store, self.copies,
                                                  secure_dir=self.secure_dir)
                if full:
                    found += checks.audit_chain(store)
        finally:
            store.close()
        self.problems.extend(f"trial {trial.number} ({trial.mode}): {p}" for p in found)

    # -- after the last trial ---------------------------------------------------------------
    def drain(self) -> dict[str, Any]:
        """A last power cut, then the workers restart without kills and the queues drain."""
        for role in ROLES:
            self._kill(role, None)
        started = time.monotonic()
        shift = self._restart_shift(len(self.trials) + 1)
        report = self.work / "drain-sync.json"
        procs = [self._start("printer", drain=True, clock_shift_s=shift, worker_id="drain-a"),
                 self._start("printer", drain=True, clock_shift_s=shift, worker_id="drain-b"),
                 self._start("syncer", drain=True, report_path=str(report))]
        for process in procs:
            process.join(DRAIN_TIMEOUT_S)
            if process.exitcode is None:
                process.kill()
                process.join(5)
                self.problems.append(f"drain: {process.name} did not finish in "
                                     f"{DRAIN_TIMEOUT_S} s")
            elif process.exitcode != 0:
                self.problems.append(f"drain: {process.name} exited with {process.exitcode}")
        return {"seconds": round(time.monotonic() - started, 2)}

    def final_check(self) -> dict[str, Any]:
        store = open_store(self.setup.store, migrate=False)
        try:
            found = checks.integrity(store) + checks.audit_chain(store)
            found += checks.all_or_nothing(store) + checks.split_pairs(store)
            found += checks.signed_and_valid(store, self.shown, self.roots, self.crls)
            rows = store.query("SELECT id, state FROM prescriptions")
            signed = {r["id"] for r in rows if r["state"] in checks.SIGNED_STATES}
            secure = checks.secure_ids(store) & signed
            splits = store.query("SELECT count(*) AS n FROM audit"
                                 " WHERE action = 'prescription.split'")[0]["n"]
            drafts = sum(1 for r in rows if r["state"] == "draft")
            jobs = store.query("SELECT prescription_id, status FROM print_jobs"
                               " WHERE kind = 'original'")
            found += [f"{j['prescription_id']}: original print job {j['status']} after the "
                      "drain" for j in jobs if j["status"] != "done"]
            found += [f"{pid}: signed, never acknowledged by the printer"
                      for pid in self.copies.wait_for(signed - secure)]
            found += [problem for pid in sorted(secure)
                      if (problem := checks.secure_pdf_problem(self.secure_dir, pid))]
            found += [f"{pid}: a secure order printed on the receipt" for pid in sorted(secure)
                      if self.copies.copies[pid] or self.copies.cut_off[pid]]
            outbox = Counter(r["status"] for r in store.query("SELECT status FROM outbox"))
            if set(outbox) - {"acknowledged"}:
                found.append(f"outbox after the drain: {dict(outbox)}")
            states = Counter(r["state"] for r in rows if r["id"] in signed)
            if set(states) - {"registered"}:
                found.append(f"signed prescriptions after the drain: {dict(states)}")
        finally:
            store.close()
        held = {row["id"] for row in self.registry.db.list_prescriptions()}
        stats = self.registry.stats()
        counts = stats["counts"]
        if held != signed:
            found.append(f"registry: {len(held - signed)} unknown, {len(signed - held)} missing")
        if counts.get("created", 0) != len(signed):
            found.append(f"registry created {counts.get('created', 0)} for {len(signed)} signed")
        for bad in ("conflicts", "rejected"):
            if counts.get(bad):
                found.append(f"registry {bad}: {counts[bad]}")
        # A sync worker killed in the middle of a request body leaves a truncated request
        # that the registry answers 400 to nobody: at most one per kill of a sync worker.
        truncated = counts.get("bad_requests", 0)
        sync_kills = sum("syncer" in t.killed_alive for t in self.trials) + 1
        if truncated > sync_kills:
            found.append(f"registry: {truncated} bad requests for {sync_kills} sync kills")
        if not set(self.shown) <= signed:
            found.append("shown IDs missing from the signed ones")
        twice = {pid for pid, n in self.copies.copies.items() if n > 1}
        if twice - self.interrupted:
            found.append(f"printed twice without a killed print worker holding the job: "
                         f"{sorted(twice - self.interrupted)}")
        found += self._printed_qr_verify()
        self.problems.extend(f"final: {p}" for p in found)
        return {"signed": len(signed), "drafts_left": drafts, "shown": len(self.shown),
                "secure": {"signed": len(secure), "splits": splits,
                           "mixed_trials": sum(t.mixed for t in self.trials),
                           "pdfs": len(list(self.secure_dir.glob("*.pdf")))},
                "registry": {"held": len(held), "created": counts.get("created", 0),
                             "replayed": counts.get("replayed", 0),
                             "truncated_requests": truncated,
                             "faults": stats["faults"]},
                "printed": {"acknowledged_copies": sum(self.copies.copies.values()),
                            "duplicates": self.copies.duplicates(),
                            "prescriptions_printed_twice": len(twice),
                            "jobs_held_by_killed_workers": len(self.interrupted),
                            "cut_off_jobs": sum(self.copies.cut_off.values()),
                            "unreadable_jobs": self.copies.unreadable}}

    def _printed_qr_verify(self, sample: int = 3) -> list[str]:
        """Decode the QR of a few printed copies (zxing-cpp on the emulator's raster): the
        paper carries the order's ePU payload (its signature is checked from the store by
        ``checks.signed_and_valid``)."""
        problems = []
        for pid in sorted(self.copies.jobs)[:sample]:
            job = self.copies.jobs[pid][0]
            texts = [q["text"] for ticket in job.tickets for q in ticket.decode_qr()
                     if "QR" in q["format"]]
            if not texts:
                problems.append(f"{pid}: no QR code decoded from the printed copy")
                continue
            try:
                printed = EpuPayload.decode(texts[0])
            except ValidationError as exc:
                problems.append(f"{pid}: printed QR is not an ePU payload: {exc}")
                continue
            if printed.prescription_id != pid:
                problems.append(f"{pid}: printed QR carries {printed.prescription_id}")
        return problems

    # -- the whole run ----------------------------------------------------------------------
    def prepare(self) -> None:
        workers.prepare_store(self.setup, self.pki.directory, self.resident)
        self.registry.set_faults(Faults(seed=self.seed, **REGISTRY_FAULTS))

    def run(self, trials: int) -> dict[str, Any]:
        started = time.monotonic()
        self.prepare()
        for number in range(trials):
            trial = self.run_trial(number)
            full = (number + 1) % self.audit_every == 0
            self.check_trial(trial, full=full)
            if self.problems:  # a broken invariant stays broken: report the first trial
                break
        trials_s = time.monotonic() - started
        drain = self.drain()
        final = self.final_check()
        killed = Counter(role for t in self.trials for role in t.killed_alive)
        return {"seed": self.seed, "trials": len(self.trials),
                "modes": dict(Counter(t.mode for t in self.trials)),
                "killed_while_running": dict(killed),
                "prescriptions_asked": sum(t.prescriptions for t in self.trials),
                "trials_seconds": round(trials_s, 2), "drain": drain, **final,
                "seconds": round(time.monotonic() - started, 2),
                "problems": self.problems}
