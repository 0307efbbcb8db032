"""``make bench``: run every benchmark, keep the JSON, rewrite the README's table.

Each benchmark is a module of this package that prints JSON and measures its own baseline in
the same run. This runner only starts them, one after the other, stores what they print in
``bench/results/latest.json`` and rewrites the table between ``<!-- bench:begin -->`` and
``<!-- bench:end -->`` in README.md (one row per benchmark: figure, same-run baseline,
ratio, goal, met or not), so the figures there are always the last measured ones. A
benchmark that fails is recorded with its error and the others still run (exit status 1).

    python -m bench [--sync-count N] [--only NAME,...] [--no-readme] [--table-only]

``--only`` runs the named benchmarks and keeps the other results of ``latest.json``;
``--table-only`` runs nothing and writes the table of ``latest.json`` again.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results" / "latest.json"
README = ROOT / "README.md"
BEGIN, END = "<!-- bench:begin -->", "<!-- bench:end -->"


def run(module: str, *args: str) -> dict:
    print(f"bench: {module} {' '.join(args)}", file=sys.stderr)
    started = time.monotonic()
    out = subprocess.run([sys.executable, "-m", module, *args], cwd=ROOT, check=False,
                         capture_output=True, text=True, timeout=1800)
    if out.returncode:
        return {"error": f"{module} exited {out.returncode}: {out.stderr.strip()[-1500:]}",
                "wall_s": round(time.monotonic() - started, 1)}
    result = json.loads(out.stdout)
    result["wall_s"] = round(time.monotonic() - started, 1)
    return result


def _ms(figures: dict, cuts: tuple[str, ...] = ("p50", "p95", "p99")) -> str:
    return ", ".join(f"{k} {figures[k]:.2f} ms" for k in cuts)


def _s(figures: dict) -> str:
    return f"median {figures['p50'] / 1000:.2f} s, p95 {figures['p95'] / 1000:.2f} s"


def _met(ok: bool) -> str:
    return "**yes**" if ok else "**no**"


def _row(*cells: object) -> str:
    return "| " + " | ".join(str(c) for c in cells) + " |"


def _search(s: dict) -> list[str]:
    lat, q, goals = s["latency_ms"], s["queries"], s["goals"]
    rows = [
        _row(f"drug search, {q['prefixes']:,} keystroke prefixes ({q['name_prefixes']:,} of "
             f"{q['names']} real names, {q['shape_prefixes']:,} of the {q['query_set']} "
             f"physicians' queries) × {q['rounds']} rounds", "`python -m bench.search`",
             _ms(lat["search"]), f"bare FTS5 trigram query: {_ms(lat['bare_trigram'])}",
             f"p95 {s['ratio_to_bare_trigram']['p95']}×", "p95 ≤ 2 ms and ≤ 3× bare",
             _met(goals["search_p95_le_2ms"] and goals["search_p95_le_3x_bare"])),
    ]
    if "search_shapes" in lat:
        rows.append(_row(
            "the physicians' queries alone (glued units, typos, abbreviated forms)",
            "`python -m bench.search`", _ms(lat["search_shapes"]),
            f"bare FTS5 trigram query: {_ms(lat['bare_trigram_shapes'])}",
            f"p95 {s['ratio_to_bare_trigram_shapes']['p95']}×", "p95 ≤ 2 ms and ≤ 3× bare",
            _met(goals["shapes_p95_le_2ms"] and goals["shapes_p95_le_3x_bare"])))
    if "query_set" in s:
        qs = s["query_set"]
        rows.append(_row(
            f"{qs['queries']} real-world queries (`tests/data/drug_queries.csv`): the "
            "intended drug first", "`python -m bench.search`",
            f"{qs['right_first']} / {qs['queries']} ({qs['share']:.0%})", "—", "—", "≥ 90 %",
            _met(goals["query_set_ge_90pct"])))
    rows.append(_row("full BDPM import (real 2022 extract)", "`python -m bench.search`",
                     f"{s['import']['seconds']} s, {s['database']['size_bytes'] / 1e6:.1f} MB, "
                     f"{s['import']['malformed_rows']} malformed rows reported", "—", "—",
                     "≤ 10 s", _met(goals["import_le_10s"])))
    return rows


def _kiosk_start(k: dict) -> list[str]:
    return [_row(f"kiosk cold start to the lock screen, {k['runs']} runs each, alternated",
                 "`python -m bench.kiosk_start`",
                 f"{_s(k['kiosk_ms'])}; fully ready (status line shows the printer) "
                 f"median {k['kiosk_ready_ms']['p50'] / 1000:.2f} s"
                 if k.get("kiosk_ready_ms") else _s(k["kiosk_ms"]),
                 f"bare Textual app (Static + Footer), same pseudo-terminal: {_s(k['bare_ms'])}",
                 f"median {k['ratio']['p50']}×, p95 {k['ratio']['p95']}×",
                 "median ≤ 1.5× bare", _met(k["goals"]["met"]))]


def _sign_print(p: dict) -> list[str]:
    cuts = ("p50", "p95")
    rows = [_row(f"sign to last byte at the printer, virtual card in pcscd + TCP emulator, "
                 f"{p['runs']} runs, {p.get('qr', 'signed')} QR", "`python -m bench.sign_print`",
                 _ms(p["sign_to_last_byte_ms"], cuts),
                 f"card signature + bare TCP send of the same {p['job_bytes'] / 1000:.0f} kB "
                 f"job: {_ms(p['bare_sign_plus_send_ms'], cuts)}",
                 f"p95 {p['ratio']['p95']}×", "p95 ≤ 40 ms",
                 _met(p["sign_to_last_byte_ms"]["p95"] <= p["goals"]["p95_max_ms"]))]
    if "receipt_dots" in p:
        now, before = p["receipt_dots"], p["receipt_before_dots"]
        rows.append(_row(
            f"receipt of the same 3-line order, every mention, {p['qr_chars']}-character "
            "QR", "`python -m bench.sign_print`",
            ", ".join(f"{m} {now[m] / 8:.0f} mm" for m in before),
            "before (commit 91f24f6, 2,000-character QR): " +
            ", ".join(f"{m} {before[m] / 8:.0f} mm" for m in before),
            ", ".join(f"{p['receipt_ratio'][m]}×" for m in before), "≤ 1× before",
            _met(p["goals"]["receipt_no_longer"])))
    return [*rows, *_integrity_rows(p)]


def _integrity_rows(p: dict) -> list[str]:
    check = p.get("integrity_check")
    if not check:
        return []
    cuts = ("p50", "p95")
    alone = check["check_alone_us"]
    return [_row("a signed order loaded for printing (row, load, QR payload), checked against "
                 "its signature as every print, reprint, PDF and upload does",
                 "`python -m bench.sign_print`",
                 f"{_ms(check['order_payload_with_check_ms'], cuts)}; the check alone "
                 f"p50 {alone['p50']:.0f} µs, "
                 f"{check['share_of_sign_to_last_byte_p50'] * 100:.1f} % of sign to print",
                 "the same with the check switched off, alternated: "
                 f"{_ms(check['order_payload_without_check_ms'], cuts)}",
                 f"p50 {check['ratio_p50']}×", "sign to print p95 ≤ 40 ms, check included",
                 _met(p["sign_to_last_byte_ms"]["p95"] <= p["goals"]["p95_max_ms"]))]


def _card_login(c: dict) -> list[str]:
    login, sign = c["login"], c["sign_print_pkcs11"]
    cuts = ("p50", "p95")
    return [
        _row(f"card login (open, certificates checked, PIN, challenge, logout), PKCS#11 on "
             f"SoftHSM2, {login['runs']} runs each, alternated", "`python -m bench.card_login`",
             _ms(login["pkcs11_login_ms"], cuts),
             f"PC/SC backend, virtual card in pcscd: {_ms(login['pcsc_login_ms'], cuts)}",
             f"median {login['ratio_pkcs11_to_pcsc']['p50']}×", "median ≤ 1.5× PC/SC",
             _met(login["goal"]["met"])),
        _row(f"sign to last byte at the printer, PKCS#11 backend (SoftHSM2) + TCP emulator, "
             f"{sign['runs']} runs", "`python -m bench.card_login`",
             _ms(sign["sign_to_last_byte_ms"], cuts),
             f"card signature + bare TCP send of the same job: "
             f"{_ms(sign['bare_sign_plus_send_ms'], cuts)}", f"p95 {sign['ratio']['p95']}×",
             "p95 ≤ 150 ms", _met(sign["goals"]["met"])),
    ]


def _sync(y: dict) -> list[str]:
    n, seq, bare = y["count"], y["sequential"], y["bare"]
    goals = y["goals"]
    cpu = (f"; client CPU {seq['cpu_ms_per_record']} ms/record ({seq['cpu_ratio']}× bare)"
           if "cpu_ratio" in seq else "")
    runs = f", median of {y['runs']} runs" if y.get("runs", 1) > 1 else ""
    return [_row(f"registry drain, {n:,} prescriptions, loopback{runs}",
                 f"`python -m bench.sync --count {n}`",
                 f"engine one at a time {seq['push_s']} s ({seq['per_s']}/s){cpu}; "
                 f"4 in flight {y['concurrent']['push_s']} s; "
                 f"peak {y['concurrent']['peak_rss_mb']} MB",
                 f"bare httpx loop {bare['seconds']} s ({bare['per_s']}/s, "
                 f"{bare['cpu_ms_per_record']} ms CPU/record)",
                 f"{seq['ratio']}× one at a time, {y['concurrent']['ratio']}× "
                 "4 in flight",
                 f"≥ {goals['ratio_min']}× bare and CPU ≤ {goals.get('cpu_ratio_max', '—')}× "
                 "bare (one at a time)",
                 _met(goals.get("met", goals["ratio_sequential_ok"])))]


def _sync_faults(f: dict) -> list[str]:
    e = f["engine"]
    return [_row("registry drain with 20 % 500/503, 5 % resets, 5 % lost answers",
                 f"`python -m bench.sync --count {f['count']} --faults`",
                 f"{e['push_s']} s, {e['held']:,} held by the registry, "
                 f"{e['acknowledged']:,} acknowledged, {e['replayed']} replays", "—", "—",
                 "exactly once", _met(f["exactly_once"]))]


def _outage(o: dict) -> list[str]:
    rows = []
    for r in o["runs"]:
        prev = r["previous_policy_wait_s"]
        rows.append(_row(
            f"registry back after a {r['outage_s']:.0f} s outage, {r['queued']} queued, the "
            "real `ordo sync run`", "`python -m bench.outage`",
            f"first acknowledgement {r['first_ack_s']} s after the registry answers, queue "
            f"empty {r['drained_s']} s",
            f"a client retrying every 50 ms: {r['bare_s']} s; the former backoff's wait: "
            f"mean {prev['mean']} s, p95 {prev['p95']} s",
            f"{r['ratio_to_previous_policy_mean']}× the former mean", "drained ≤ 10 s",
            _met(r["goal_met"])))
    return rows


def _store(m: dict) -> list[str]:
    lat, build = m["latency_ms"], m["build"]
    built = f"built in {build['seconds']:.0f} s" if build.get("seconds") else "reused"
    per = m["history_size"]["median"]
    return [_row(f"store of {m['count']:,} prescriptions ({per:.0f} per resident): "
                 "a resident's history", "`python -m bench.store_million`",
                 f"history ({per:.0f} prescriptions listed) {_ms(lat['history'], ('p50', 'p95'))}"
                 f"; listed as the kiosk does (connection, rows, list lines) "
                 f"{_ms(lat['history_listed'], ('p50', 'p95'))}; whole resident file "
                 f"{_ms(lat['resident_file'], ('p50', 'p95'))}; "
                 f"{m['bytes_per_prescription']:,} bytes per prescription; {built}",
                 f"the history's SQL run bare (`fetchall()`): "
                 f"{_ms(lat['history_rows'], ('p50', 'p95'))}",
                 f"p50 {m['ratio_history_to_anchor']['p50']}×, "
                 f"p95 {m['ratio_history_to_anchor']['p95']}×",
                 "history p95 ≤ 10 ms", _met(m["goals"]["met"])),
            *([_row(f"store of {m['count']:,} prescriptions: the whole resident file "
                    f"({per:.0f} prescriptions) and the file's size",
                    "`python -m bench.store_million`",
                    f"resident file {_ms(lat['resident_file'], ('p50', 'p95'))}; "
                    f"{m['bytes_per_prescription']:,} bytes per prescription",
                    "the list from the history alone (`history_listed`): "
                    f"{_ms(lat['history_listed'], ('p50', 'p95'))}",
                    f"p95 {m['ratio_resident_file_to_history_listed']['p95']}×",
                    "resident file p95 ≤ 20 ms, ≤ 2,500 bytes per prescription",
                    _met(m["goals"]["resident_file_met"] and m["goals"]["bytes_met"]))]
              if "bytes_met" in m["goals"] else [])]


def _memory(m: dict) -> list[str]:
    k, y = m["kiosk"], m["sync"]
    kiosk = k["kiosk"]
    return [
        _row(f"kiosk peak memory (VmHWM): lock screen, card login, {kiosk['keystrokes']} "
             f"keystrokes searching {kiosk['drugs']} drugs in the full BDPM",
             "`python -m bench.memory`",
             f"{kiosk['peak_mb']} MB (lock screen {kiosk['lock_screen_mb']} MB)",
             f"bare Textual app, same keystrokes: {k['bare_textual']['peak_mb']} MB",
             f"{k['ratio']}×", "≤ 150 MB", _met(m["goals"]["kiosk_met"])),
        _row(f"sync service peak memory (VmHWM), `ordo sync run` draining {y['count']:,}",
             "`python -m bench.memory`", f"{y['service_peak_mb']} MB",
             f"python importing httpx: {y['bare_httpx_peak_mb']} MB", f"{y['ratio']}×",
             "≤ 80 MB", _met(m["goals"]["sync_met"])),
    ]


def _checks(c: dict) -> list[str]:
    lat, cuts = c["latency_ms"], ("p50", "p95")
    rows = [_row(f"prescribing checks, {c['draft_lines']}-line draft against a "
                 f"{c['current_lines']}-line current treatment, {c['rounds']} rounds",
                 "`python -m bench.checks`",
                 f"drugs already read (as the editor re-checks): {_ms(lat['check_warm'], cuts)}; "
                 f"first check, drugs read from the referential: {_ms(lat['check_cold'], cuts)}",
                 f"the referential lookups alone (25 specialties): "
                 f"{_ms(lat['lookups_cold'], cuts)}",
                 f"first check p95 {c['ratio']['p95']}×", "p95 ≤ 5 ms",
                 _met(c["goals"]["p95_le_5ms"]))]
    sets = c.get("sets")
    if sets:
        o, d = sets["ordinary"], sets["dangerous"]
        infos = ", ".join(f"{n} {code}" for code, n in sorted(o["info_by_code"].items()))
        rows.append(_row("prescribing checks on the test sets (real 2022 extract)",
                         "`python -m bench.checks`",
                         f"{o['cases']} ordinary: {o['cases_with_serious_alerts']} with an "
                         f"important or blocking alert (info: {infos or 'none'}); "
                         f"{d['cases']} dangerous: {d['caught']} caught", "—", "—",
                         "0 and all", _met(o["cases_with_serious_alerts"] == 0
                                          and d["caught"] == d["cases"])))
    return rows


def _residents(r: dict) -> list[str]:
    i = r["import"]
    return [_row(f"`ordo residents import` of {r['rows']:,} rows ({r['file_mb']} MB CSV): "
                 "peak memory (VmHWM)", "`python -m bench.residents_import`",
                 f"{i['peak_mb']} MB, {i['seconds']} s ({i['rows_per_s']:,} rows/s)",
                 f"bare `csv.reader` over the file: {r['bare_csv_reader']['peak_mb']} MB",
                 f"{r['ratio']}×", "≤ 100 MB", _met(r["goals"]["peak_le_100mb"]))]


ROWS: dict[str, Callable[[dict], list[str]]] = {
    "search": _search, "kiosk_start": _kiosk_start, "sign_print": _sign_print,
    "card_login": _card_login,
    "sync": _sync, "sync_faults": _sync_faults, "outage": _outage, "store_million": _store,
    "memory": _memory, "residents_import": _residents, "checks": _checks}


def table(results: dict) -> str:
    rows = ["| benchmark | command | figure | baseline in the same run | ratio | goal | met |",
            "|---|---|---|---|---|---|---|"]
    for name, render in ROWS.items():
        result = results.get(name)
        if not result:
            continue
        if "error" in result:
            rows.append(_row(name, f"`python -m bench.{name.removesuffix('_faults')}`",
                             "failed: " + result["error"].splitlines()[-1][:200]
                             .replace("|", "/"), "—", "—", "—", "—"))
            continue
        rows += render(result)
    runner = results.get("runner", {})
    load = runner.get("loadavg_end") or os.getloadavg()
    rows.append("")
    rows.append(f"Machine: {runner.get('cpus', os.cpu_count())} CPUs, load average at the end "
                f"{load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f}"
                + (f"; the whole run took {runner['seconds'] / 60:.1f} min."
                   if runner.get("seconds") else "."))
    return "\n".join(rows)


def plan(sync_count: int) -> dict[str, tuple[str, ...]]:
    """What ``make bench`` runs, in this order (the long store build last)."""
    return {
        "search": ("bench.search",),
        "kiosk_start": ("bench.kiosk_start",),
        "sign_print": ("bench.sign_print",),
        "card_login": ("bench.card_login",),
        "sync": ("bench.sync", "--count", str(sync_count)),
        "sync_faults": ("bench.sync", "--count", "1000", "--faults"),
        "outage": ("bench.outage", "--outage-s", "30", "300"),
        "memory": ("bench.memory",),
        "checks": ("bench.checks",),
        "residents_import": ("bench.residents_import",),
        "store_million": ("bench.store_million",),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sync-count", type=int, default=2000)
    parser.add_argument("--only", help="comma-separated benchmarks: " + ", ".join(ROWS))
    parser.add_argument("--no-readme", action="store_true")
    parser.add_argument("--table-only", action="store_true")
    args = parser.parse_args()
    todo = plan(args.sync_count)
    results: dict = {}
    whole_run = not (args.only or args.table_only)
    if args.table_only:
        todo = {}
    elif args.only:
        wanted = [name.strip() for name in args.only.split(",")]
        unknown = [name for name in wanted if name not in todo]
        if unknown:
            parser.error(f"unknown benchmark(s) {unknown}: expected {', '.join(todo)}")
        todo = {name: todo[name] for name in wanted}
    if not whole_run and RESULTS.exists():
        results = json.loads(RESULTS.read_text("utf-8"))
    started = time.monotonic()
    for name, (module, *module_args) in todo.items():
        results[name] = run(module, *module_args)
    if todo:
        runner = results.setdefault("runner", {})
        runner.update(cpus=os.cpu_count(), loadavg_end=[round(x, 2) for x in os.getloadavg()])
        if whole_run:
            runner["seconds"] = round(time.monotonic() - started, 1)
    if todo:
        RESULTS.parent.mkdir(exist_ok=True)
        RESULTS.write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n", "utf-8")
    text = table(results)
    print(text)
    if not args.no_readme:
        readme = README.read_text("utf-8")
        head, rest = readme.split(BEGIN, 1)
        _, tail = rest.split(END, 1)
        README.write_text(f"{head}{BEGIN}\n{text}\n{END}{tail}", "utf-8")
    return 1 if any("error" in r for r in results.values() if isinstance(r, dict)) else 0


if __name__ == "__main__":
    raise SystemExit(main())
