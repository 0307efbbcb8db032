"""Benchmark of the store at 1,000,000 prescriptions: a resident's history, bytes per
prescription.

Run from the repository root::

    python -m bench.store_million [--residents 2000] [--per-resident 500] [--keep DIR]

**Build.** ``open_store`` makes the file with the real schema and every migration; the
residents (valid NIR keys) and four prescribers go in through the unit of work. Then, in bulk
(``journal_mode=OFF``, ``synchronous=OFF`` while loading; WAL again afterwards, as the
appliance uses it), ``residents × per_resident`` prescriptions shaped like the ones the
appliance keeps after a normal life: signed, printed, acknowledged by the registry, i.e. per
prescription the ``prescriptions`` row (body from ``Prescription.to_dict()`` stored as the
store stores it, ``encode_body``; a card signature's 256 random bytes; the signer's
certificate, a reference: kept once; the registry receipt; the signed bytes, the QR's signed
part made from the body, kept as ``stored_payload`` keeps them: not at all, since they are the
ones rebuilt from the body, checked against ``SignedOrder`` and the store's function on the
first 50 rows), its ``outbox`` row (acknowledged, with the receipt), its ``print_jobs`` row (done)
and its three audit entries (``prescription.signed``, ``print.printed``,
``registry.create.acknowledged``) in one valid hash chain. Bodies are made once per resident
and line template (six templates of one to four lines); IDs are real ones (creation time +
random bits + check character) spread over ten years, residents interleaved at random, exactly
``per_resident`` each. Not generated: dispensations, drafts, cancellations, reprints.

**Queries**, over random residents (the database file is in the page cache), on one
connection opened once unless said otherwise:

- ``history``: ``uow.views.history(ins)``, the resident's prescriptions as the
  kiosk's resident file lists them (ID, state, dates, prescriber, from the covering index of
  migration m005, ``history_plan`` in the JSON), 500 ``HistoryRow`` with their state and
  dates decoded;
- ``history_rows``, its **anchor**: the same SQL (``store.views.HISTORY_SQL``) executed bare,
  ``fetchall()`` of plain tuples. History and anchor run back to back for each resident,
  each first in turn (the first warms SQLite's page cache for the second); the JSON gives
  ``ratio_history_to_anchor`` (p50, p95) and the garbage collections that ran inside
  ``history`` calls (``gc_collections_during_history``);
- ``history_listed``: the resident screen's list from the history alone, as the kiosk does
  it: a fresh connection (the kiosk's ``ctx.uow()`` opens one per worker call, so
  statements are prepared again and SQLite's page cache starts empty), ``history()``, close,
  then the list line of every row (``RxView.row()``: the screen makes all 500 when it fills
  the list, none lazily);
- ``resident_file``: the exact work the kiosk does to open a resident's file short of
  drawing it (``ResidentScreen.refresh_data``), on 200 residents (``--files``: a p95 of 30
  samples is their second worst, one descheduling of the process on this shared machine or
  one full garbage collection of the interpreter; of 200, it is the tenth): a fresh connection,
  ``load_views`` (the ``resident_file`` read model: history plus the records the registry
  has not acknowledged and the dispensations of all its prescriptions, in three queries; a
  prescription's print jobs and registry answer are read when it is opened), the
  allergies, the treatment (the bodies of the prescriptions with a line running in the
  last 90 days, found by the ``lines_end`` column, and the stopped lines of those
  prescriptions), every list line;
- baselines: ``SELECT body FROM prescriptions WHERE rowid = ?`` (one random row) and
  ``SELECT count(*) ... WHERE resident_ins = ?`` (an index alone);
- ``history_bodies``: ``uow.prescriptions.of_resident(ins)``, every prescription
  parsed into domain objects (what the file did before m005; the appliance no longer calls
  it), and ``bodies_rows``, its SQL bare; timed in a second pass so that their garbage (and
  the collections it sets off) does not land in the kiosk's own figures above;
- ``print_jobs_lookup_unindexed``: one ``print_jobs`` lookup by prescription forced to scan
  the table (``NOT INDEXED``): the resident file's per-prescription query before migration
  m004.

Goals at 1,000,000: history p95 ≤ 10 ms (``goals.met``; ``goals.history_listed_met`` says
the same of ``history_listed``), the whole resident file p95 ≤ 20 ms
(``goals.resident_file_met``) and at most 2,500 bytes of file per prescription
(``goals.bytes_met``). Prints JSON only.
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import json
import random
import sqlite3
import statistics
import sys
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from bench.common import bench_run, percentiles_ms

GOAL_P95_MS = 10.0
GOAL_FILE_P95_MS = 20.0
GOAL_BYTES = 2500
BODIES_SQL = ("SELECT body FROM prescriptions WHERE resident_ins = ?"
              " ORDER BY created_at DESC")
SEED = 9
CHUNK = 20_000
YEARS = 10
PRINTER = "tcp://192.168.1.50:9100 80mm raster"
JOB_BYTES = 44_109
SURNAMES = ("MARTIN", "BERNARD", "THOMAS", "PETIT", "ROBERT", "RICHARD", "DURAND", "DUBOIS",
            "MOREAU", "LAURENT", "SIMON", "MICHEL", "LEFEBVRE", "LEROY", "ROUX", "DAVID")
FIRST_NAMES = ("Jeanne", "Marie Louise", "Odette", "Suzanne", "Jean", "Lucien", "André Paul",
               "Germaine", "Marcel", "Yvonne", "Henri", "Simone")
# Placeholders put in the templates, then split out: one marker per varying field.
_ID, _CREATED, _SIGNED = "01M8AA52X8ECJK0TE86HARRT", "2001-01-01T00:00:00.000+00:00", \
    "2001-01-02T00:00:00.000+00:00"


def _canonical(obj: dict) -> bytes:
    """RFC 8785 bytes of the audit entries made here (ASCII keys, strings, integers and
    booleans only, for which sorted compact JSON is the canonical form; checked against
    ``rfc8785`` on the first entries)."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def _templates() -> list[tuple]:
    from decimal import Decimal

    from appliance.domain.posology import Duration, FreeTextPosology, Posology
    from appliance.domain.prescription import ActLine, DeviceLine, MedicationLine

    def med(label: str, cis: str, dose: str, unit: str, moments: tuple, days: int | None = None,
            ald: bool = False) -> MedicationLine:
        return MedicationLine(label=label, cis=cis, posology=Posology(
            dose=Decimal(dose), unit=unit, moments=moments,
            duration=Duration(days, "jour") if days else None), ald=ald)

    doliprane = med("DOLIPRANE 1000 mg, comprimé", "60234100", "1", "comprimé",
                    ("matin", "midi", "soir"), 5)
    kardegic = med("KARDEGIC 75 mg, poudre pour solution buvable en sachet-dose", "64755969",
                   "1", "sachet", ("midi",), ald=True)
    levothyrox = med("LEVOTHYROX 75 microgrammes, comprimé sécable", "67530960", "1",
                     "comprimé", ("matin",), 90, ald=True)
    movicol = med("MOVICOL, poudre pour solution buvable en sachet", "66010570", "1", "sachet",
                  ("matin",), 30)
    free = MedicationLine(label="AMOXICILLINE 500 mg, gélule", cis="60234100",
                          posology=FreeTextPosology("2 gélules 3 fois par jour pendant 7 jours"))
    device = DeviceLine(label="Pansements hydrocolloïdes 10 x 10 cm", quantity=Decimal(10))
    act = ActLine(text="Soins infirmiers : pansement tous les 2 jours pendant 15 jours")
    bio = ActLine(text="NFS, CRP, ionogramme, créatininémie")
    return [(doliprane,), (kardegic, levothyrox), (doliprane, kardegic, bio),
            (free, movicol), (levothyrox, device, act, bio), (movicol, act)]


def _residents(count: int) -> list:
    from appliance.domain.ids import Ins, nir_key
    from appliance.domain.people import Resident

    out = []
    for n in range(count):
        sex = "F" if n % 3 else "M"
        born = date(1925 + n % 20, 1 + n % 12, 1 + n % 28)
        body = f"{'2' if sex == 'F' else '1'}{born.year % 100:02d}{born.month:02d}75" \
               f"{100 + n // 1000:03d}{n % 1000:03d}"
        out.append(Resident(ins=Ins.from_nir(body + nir_key(body)),
                            birth_name=SURNAMES[n % len(SURNAMES)],
                            first_names=FIRST_NAMES[n % len(FIRST_NAMES)], birth_date=born,
                            sex=sex, room=f"{1 + n // 40}{n % 40:02d}"))
    return out


def _prescribers() -> list:
    from stdnum import luhn

    from appliance.domain.people import Practitioner, Role

    out = []
    for n, (last, first) in enumerate((("DUVAL", "Claire"), ("BLANC", "Paul"),
                                       ("FONTAINE", "Anne"), ("GIRARD", "Louis"))):
        body = f"10001234{n:02d}"
        out.append(Practitioner(id_nat_ps="8" + body + luhn.calc_check_digit(body),
                                last_name=last, first_name=first, profession="Médecin",
                                role=Role.PRESCRIBER, am=f"7512345{n:02d}"))
    return out


def _split(text: str) -> list:
    """A JSON template cut at the placeholders: text, field index, text, ..."""
    markers = {_ID: 0, _CREATED: 1, _SIGNED: 2}
    parts: list = []
    rest = text
    while True:
        hits = [(rest.find(m), m) for m in markers if rest.find(m) >= 0]
        if not hits:
            parts.append(rest)
            return parts
        pos, marker = min(hits)
        parts += [rest[:pos], markers[marker]]
        rest = rest[pos + len(marker):]


def build(path: Path, residents: int, per_resident: int) -> dict:
    from appliance.domain.prescription import Prescription, State
    from appliance.domain.prescription_id import PrescriptionIdGenerator
    from appliance.domain.qr import SEPARATOR, SignedOrder
    from appliance.store.audit import GENESIS, _digest
    from appliance.store.meta import ID_FLOOR_KEY
    from appliance.store.prescriptions import decode_body, encode_body, stored_payload
    from appliance.store.uow import SqliteUnitOfWork
    from appliance.store.views import lines_end
    from drivers.card.pki import init_pki

    started = time.monotonic()
    rng = random.Random(SEED)
    pki = init_pki(path.parent / "pki")
    cert = (pki.card_dir("physician") / "sign.der").read_bytes()
    people = _residents(residents)
    doctors = _prescribers()
    uow = SqliteUnitOfWork.open(path, migrate=True)
    with uow:
        uow.residents.upsert(people)
        for doctor in doctors:
            uow.practitioners.upsert(doctor)
        cert_id = uow.certificates.intern(cert)  # kept once (migration m009)
        uow.commit()
    uow.close()

    templates = _templates()
    created0 = datetime(2001, 1, 1, tzinfo=UTC)
    bodies, contents, heads = {}, {}, {}
    shapes: list = []    # a body of each template: its lines' last day from the signing day
    ends: dict = {}
    for r_index, resident in enumerate(people):
        for t_index, lines in enumerate(templates):
            p = Prescription(id=_ID, prescriber=doctors[r_index % len(doctors)],
                             resident=resident, created_at=created0, lines=lines,
                             state=State.REGISTERED, signed_at=created0 + timedelta(days=1),
                             updated_at=created0 + timedelta(days=1))
            bodies[r_index, t_index] = _split(json.dumps(p.to_dict(), ensure_ascii=False))
            if r_index == 0:
                shapes.append(p.to_dict())
            contents[r_index, t_index] = _split(_canonical(p.content()).decode())
        doctor = doctors[r_index % len(doctors)]
        # the signed part's fields before the ID, and between the ID and the signing time
        heads[r_index] = (f"{SignedOrder.version}{SEPARATOR}", SEPARATOR.join((
            "", doctor.rpps or "", doctor.am or "", resident.birth_name, resident.first_names,
            resident.birth_date.strftime("%Y%m%d"), "")))

    total = residents * per_resident
    order = [r for r in range(residents) for _ in range(per_resident)]
    rng.shuffle(order)
    span_ms = YEARS * 365 * 86_400_000
    start_ms = int((datetime.now(UTC) - timedelta(days=YEARS * 365)).timestamp() * 1000)
    step_ms = span_ms // total
    clock = [start_ms]
    ids = PrescriptionIdGenerator(lambda: clock[0], rng.randbytes)
    signature = rng.randbytes(256)

    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = OFF")
    conn.execute("PRAGMA synchronous = OFF")
    conn.execute("PRAGMA cache_size = -262144")
    prev_hash, seq, checked = GENESIS, 0, 0
    conn.execute("BEGIN")
    for base in range(0, total, CHUNK):
        rx, outbox, jobs, entries = [], [], [], []
        for n in range(base, min(base + CHUNK, total)):
            clock[0] = start_ms + n * step_ms
            pid = ids.new()
            created = datetime.fromtimestamp(clock[0] / 1000, UTC)
            signed = created + timedelta(seconds=40 + n % 300)
            acked = signed + timedelta(seconds=2 + n % 30)
            c_iso, s_iso = created.isoformat(timespec="milliseconds"), \
                signed.isoformat(timespec="milliseconds")
            a_iso = acked.isoformat(timespec="milliseconds")
            r_index = order[n]
            t_index = n % len(templates)
            fill = (pid, c_iso, s_iso)
            body = "".join(fill[part] if isinstance(part, int) else part
                           for part in bodies[r_index, t_index])
            content = "".join(fill[part] if isinstance(part, int) else part
                              for part in contents[r_index, t_index])
            head, middle = heads[r_index]
            signed_part = (f"{head}{pid}{middle}{signed:%Y%m%d%H%M%S}{SEPARATOR}"
                           + hashlib.sha256(content.encode()).hexdigest()).encode()
            stored = encode_body(json.loads(body))
            day = (t_index, signed.date())
            end = ends.get(day)
            if end is None:   # the column as the store fills it, once per template and day
                end = ends[day] = lines_end(s_iso, shapes[t_index])
            payload: bytes | None = None  # what the store keeps of it: nothing, see below
            if n < 50:  # the card's bytes as the appliance makes them, kept as it keeps them
                loaded = Prescription.from_dict(json.loads(decode_body(stored)))
                assert signed_part == SignedOrder.from_prescription(loaded).to_bytes()
                payload = stored_payload(loaded, signed_part)
                assert payload is None
            receipt_id = f"RX-{rng.getrandbits(80):020X}"
            job_id = n + 1
            actor = doctors[r_index % len(doctors)].id_nat_ps
            if n < 50:
                assert end == lines_end(s_iso, json.loads(body))
            rx.append((pid, "registered", people[r_index].ins.value, actor, c_iso, s_iso,
                       a_iso, stored, signature, cert_id, receipt_id, None, payload, end))
            outbox.append((pid, "create", s_iso, "acknowledged", 1, json.dumps(
                {"id": receipt_id, "at": a_iso, "replayed": False}), a_iso))
            jobs.append((job_id, pid, "original", actor, s_iso, "done", 1, s_iso))
            lines = len(templates[t_index])
            for at, who, action, details in (
                    (signed, actor, "prescription.signed", {"lines": lines,
                                                            "print_job": job_id}),
                    (signed + timedelta(seconds=1), actor, "print.printed",
                     {"job": job_id, "kind": "original", "attempts": 1, "bytes": JOB_BYTES,
                      "tickets": 1, "confirmed": True, "printer": PRINTER}),
                    (acked, "sync", "registry.create.acknowledged",
                     {"receipt": receipt_id, "replayed": False})):
                seq += 1
                when = at.isoformat(timespec="microseconds")
                entry = {"seq": seq, "at": when, "actor": who, "action": action,
                         "subject": pid, "details": details}
                digest = hashlib.sha256(prev_hash.encode("ascii")
                                        + _canonical(entry)).hexdigest()
                if checked < 50:  # the fast canonical form is RFC 8785's
                    assert digest == _digest(prev_hash, seq, when, who, action, pid, details)
                    checked += 1
                entries.append((seq, when, who, action, pid,
                                json.dumps(details, ensure_ascii=False, sort_keys=True),
                                prev_hash, digest))
                prev_hash = digest
        conn.executemany(
            "INSERT INTO prescriptions (id, state, resident_ins, prescriber_id, created_at,"
            " signed_at, updated_at, body, signature, signer_cert_id, registry_receipt,"
            " cancel_reason, signed_payload, lines_end)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rx)
        conn.executemany(
            "INSERT INTO outbox (prescription_id, kind, created_at, status, attempts, receipt,"
            " acknowledged_at) VALUES (?, ?, ?, ?, ?, ?, ?)", outbox)
        conn.executemany(
            "INSERT INTO print_jobs (id, prescription_id, kind, requested_by, created_at,"
            " status, attempts, done_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)", jobs)
        conn.executemany(
            "INSERT INTO audit (seq, at, actor, action, subject, details, prev_hash, hash)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?)", entries)
        if (base // CHUNK) % 10 == 9:
            conn.execute("COMMIT")
            conn.execute("BEGIN")
    conn.executemany("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
                     [("audit.count", str(seq)), ("audit.head", prev_hash),
                      (ID_FLOOR_KEY, str(ids.last_ms))])
    conn.execute("COMMIT")
    conn.execute("ANALYZE")
    conn.execute("PRAGMA journal_mode = WAL")
    conn.close()
    return {"seconds": round(time.monotonic() - started, 1), "prescriptions": total,
            "residents": residents, "per_resident": per_resident, "audit_entries": seq}


def table_sizes(path: Path) -> dict[str, int] | None:
    """Bytes per table and index (SQLite's ``dbstat``), None if it is not compiled in."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        rows = conn.execute("SELECT name, sum(pgsize) FROM dbstat GROUP BY name"
                            " ORDER BY 2 DESC").fetchall()
    except sqlite3.OperationalError:
        return None
    finally:
        conn.close()
    return {name: size for name, size in rows}


def _listed(path: Path, ins: str) -> list[str]:
    """The resident screen's list from the history alone: a connection for the load (the
    kiosk's ``ctx.uow()`` opens one per worker call), ``views.history()``, then the list line
    of every row (``RxView.row()``, made for all rows when the list is filled)."""
    from appliance.store.uow import SqliteUnitOfWork
    from appliance.tui.screens.resident import RxView

    uow = SqliteUnitOfWork.open(path)
    try:
        rows = uow.views.history(ins)
    finally:
        uow.close()
    return [RxView(h).row() for h in rows]


def _resident_file(path: Path, resident: Any, today: date) -> list[str]:
    """What the kiosk does to open a resident's file (``ResidentScreen.refresh_data``),
    short of drawing it: a connection for the load, ``load_views`` (the ``resident_file``
    read model: history plus the records the registry has not acknowledged and the
    dispensations, three queries), the allergies, the treatment (current, stopped and
    ended lately: the bodies of the prescriptions still running), then the list line of
    every row and the treatment's."""
    from appliance.services import treatment
    from appliance.store.uow import SqliteUnitOfWork
    from appliance.tui.screens.resident import load_views

    uow = SqliteUnitOfWork.open(path)
    try:
        views = load_views(uow, resident, None)
        allergies = [a.substance for a in uow.allergies.of_resident(resident.ins.value)]
        running = treatment.resident_treatment(uow, resident.ins.value, today=today)
    finally:
        uow.close()
    return [v.row() for v in views] + allergies + [
        t.posology_text for t in running.current + [t for t, _ in running.stopped]
        + running.ended]


def measure(path: Path, residents_sampled: int, files_sampled: int) -> dict:
    from appliance.store.uow import SqliteUnitOfWork
    from appliance.store.views import HISTORY_SQL

    rng = random.Random(SEED + 1)
    uow = SqliteUnitOfWork.open(path)
    store = uow.store
    try:
        conn = store.conn
        bare = conn.cursor()           # the anchor: plain tuples, as history() reads them
        bare.row_factory = None
        inses = [row[0] for row in conn.execute("SELECT ins FROM residents ORDER BY ins")]
        count = conn.execute("SELECT count(*) FROM prescriptions").fetchone()[0]
        max_rowid = conn.execute("SELECT max(rowid) FROM prescriptions").fetchone()[0]
        history_plan = " ".join(str(row[-1]) for row in conn.execute(
            f"EXPLAIN QUERY PLAN {HISTORY_SQL}", ("x",)))
        assert "COVERING INDEX prescriptions_history" in history_plan, history_plan
        clock = time.perf_counter
        names = ("history", "history_rows", "history_listed", "bare_rowid",
                 "bare_indexed_count", "history_bodies", "bodies_rows")
        timings: dict[str, list[float]] = {k: [] for k in names}
        sizes = []
        picked = [rng.choice(inses) for _ in range(residents_sampled)]
        for ins in picked[:5]:                          # warm the statements
            uow.views.history(ins)
            bare.execute(HISTORY_SQL, (ins,)).fetchall()
            _listed(path, ins)

        collections = {0: 0, 1: 0, 2: 0}
        in_history = [False]

        def count_collections(phase: str, info: dict) -> None:
            if phase == "start" and in_history[0]:
                collections[info["generation"]] += 1

        gc.callbacks.append(count_collections)
        try:
            for n, ins in enumerate(picked):
                rowid = rng.randint(1, max_rowid)
                t0 = clock()
                conn.execute("SELECT body FROM prescriptions WHERE rowid = ?",
                             (rowid,)).fetchall()
                t1 = clock()
                conn.execute("SELECT count(*) FROM prescriptions WHERE resident_ins = ?",
                             (ins,)).fetchall()
                t2 = clock()
                timings["bare_rowid"].append(t1 - t0)
                timings["bare_indexed_count"].append(t2 - t1)
                # History and its anchor in turn first: the first warms SQLite's page cache
                # for the second.
                for step in ((0, 1) if n % 2 else (1, 0)):
                    if step:
                        t0 = clock()
                        rows = bare.execute(HISTORY_SQL, (ins,)).fetchall()
                        timings["history_rows"].append(clock() - t0)
                    else:
                        in_history[0] = True
                        t0 = clock()
                        history = uow.views.history(ins)
                        timings["history"].append(clock() - t0)
                        in_history[0] = False
                t0 = clock()
                lines = _listed(path, ins)
                timings["history_listed"].append(clock() - t0)
                sizes.append(len(history))
                assert [r[0] for r in rows] == [h.id for h in history] and \
                    len(lines) == len(history)
        finally:
            gc.callbacks.remove(count_collections)
        for ins in picked:        # parsing 500 bodies makes garbage: apart from the above
            t0 = clock()
            bodies = conn.execute(BODIES_SQL, (ins,)).fetchall()
            t1 = clock()
            parsed = uow.prescriptions.of_resident(ins)
            t2 = clock()
            timings["bodies_rows"].append(t1 - t0)
            timings["history_bodies"].append(t2 - t1)
            assert len(bodies) == len(parsed)
        file_times = []
        today = datetime.now(UTC).date()
        running = []
        files = picked[:files_sampled] + [rng.choice(inses)
                                          for _ in range(files_sampled - len(picked))]
        for ins in files:
            resident = uow.residents.get(ins)
            t0 = clock()
            lines = _resident_file(path, resident, today)
            file_times.append(clock() - t0)
            running.append(len(lines) - len(uow.views.history(ins)))
            assert running[-1] >= 0
        unindexed = []
        some_ids = [row[0] for row in conn.execute(
            "SELECT id FROM prescriptions WHERE rowid IN (?, ?, ?)",
            (1, max_rowid // 2, max_rowid))]
        for pid in some_ids:
            t0 = clock()
            conn.execute("SELECT kind, status, last_error FROM print_jobs NOT INDEXED"
                         " WHERE prescription_id = ? ORDER BY id", (pid,)).fetchall()
            unindexed.append(clock() - t0)
        plan = " ".join(str(row[-1]) for row in conn.execute(
            "EXPLAIN QUERY PLAN SELECT kind, status, last_error FROM print_jobs"
            " WHERE prescription_id = ? ORDER BY id", ("x",)))
    finally:
        uow.close()
    stats = {name: percentiles_ms(values) for name, values in timings.items()}
    stats["resident_file"] = percentiles_ms(file_times)
    stats["print_jobs_lookup_unindexed"] = percentiles_ms(unindexed)
    return {"count": count, "residents_sampled": residents_sampled,
            "resident_files_sampled": files_sampled,
            "resident_file_treatment_lines": {"min": min(running),
                                              "median": statistics.median(running),
                                              "max": max(running)},
            "history_size": {"min": min(sizes), "median": statistics.median(sizes),
                             "max": max(sizes)},
            "latency_ms": stats, "history_plan": history_plan,
            "gc_collections_during_history": {f"gen{g}": c for g, c in collections.items()},
            "print_jobs_lookup_plan": plan}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--residents", type=int, default=2000)
    parser.add_argument("--per-resident", type=int, default=500)
    parser.add_argument("--sample", type=int, default=200,
                        help="residents whose history is timed (200)")
    parser.add_argument("--files", type=int, default=200,
                        help="residents whose whole file (resident_file) is timed (200)")
    parser.add_argument("--keep", type=Path, help="work in this directory and keep it; an "
                        "ordo.sqlite already built there is measured again, not rebuilt")
    args = parser.parse_args(argv)
    with bench_run(args.keep, "ordo-bench-store-") as (work, result):
        path = work / "data" / "ordo.sqlite"
        if path.exists() and args.keep:
            result["build"] = {"seconds": None, "reused": str(path)}
        else:
            result["build"] = build(path, args.residents, args.per_resident)
        from appliance.store import open_store

        open_store(path).close()       # any migration newer than the build, as at start-up
        measured = measure(path, args.sample, args.files)
        result.update(measured)
        size = path.stat().st_size
        result["file_bytes"] = size
        result["bytes_per_prescription"] = round(size / result["count"])
        tables = table_sizes(path)
        if tables is not None:
            result["bytes_per_prescription_by_table"] = {
                name: round(b / result["count"]) for name, b in tables.items()
                if b / result["count"] >= 1}
        latency = result["latency_ms"]
        history, anchor = latency["history"], latency["history_rows"]
        result["ratio_history_to_anchor"] = {
            q: round(history[q] / anchor[q], 2) for q in ("p50", "p95")}
        result["ratio_history_to_bare_rowid_p95"] = round(
            history["p95"] / latency["bare_rowid"]["p95"], 1)
        result["ratio_resident_file_to_history_listed"] = {
            q: round(latency["resident_file"][q] / latency["history_listed"][q], 2)
            for q in ("p50", "p95")}
        result["goals"] = {"history_p95_max_ms": GOAL_P95_MS,
                           "met": history["p95"] <= GOAL_P95_MS,
                           "history_listed_met": latency["history_listed"]["p95"] <= GOAL_P95_MS,
                           "resident_file_p95_max_ms": GOAL_FILE_P95_MS,
                           "resident_file_met": latency["resident_file"]["p95"]
                           <= GOAL_FILE_P95_MS,
                           "bytes_per_prescription_max": GOAL_BYTES,
                           "bytes_met": result["bytes_per_prescription"] <= GOAL_BYTES}
    return 0


if __name__ == "__main__":
    sys.exit(main())
