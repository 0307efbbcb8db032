"""Queries on the referential: as-you-type search, codes, barcode scans, status.

``Referential`` is opened once and reused by the UI; it reopens the file by itself
when an import has replaced it. Ranking, best first:

0. exact code: CIP13, CIP7, CIS (all its presentations), or a scanned GS1 string;
1. the name starts with the query;
2. every word of the query starts a word of the name or of a substance (DCI);
3. every word of the query is a substring of the name or of a substance.

Within a tier, marketed presentations come first, then by name. Queries are folded
like the index (``text.search_key``), so case and accents do not matter. Tier 1 reads
the name index, tier 2 the FTS5 word index (with prefix indexes for one to four
characters, so one- and two-letter queries are cheap), tier 3 the FTS5 trigram index;
tier 3 needs a word of three characters or more (the trigram minimum) and checks the
shorter words with ``LIKE``.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from appliance.domain.ids import validate_cip13, validate_cis
from appliance.errors import StoreError
from appliance.store.referential.build import LIST_SEPARATOR, readonly_uri, table_counts
from appliance.store.referential.composition import DrugFacts, drug_facts
from appliance.store.referential.gs1 import looks_like_scan, parse_scan
from appliance.store.referential.text import prefix_upper_bound, search_key

log = logging.getLogger(__name__)

DEFAULT_LIMIT = 20
LABEL_SEPARATOR = " — "
MAX_LIMIT = 500
TRIGRAM = 3
MATCH_MAX_DOCS = 1000


@dataclass(frozen=True, slots=True)
class Presentation:
    """A box ready to prescribe: codes, labels, dosage, reimbursement, price.

    ``label`` is the specialty name and the pack (``name — pack``); ``price_cents`` is
    the drug's price without the pharmacist's dispensing fee (BDPM's first price field).
    """

    cip13: str
    cip7: str
    cis: str
    label: str
    name: str
    form: str
    dosage: str
    pack: str
    substances: tuple[str, ...]
    routes: tuple[str, ...]
    reimbursement_rates: tuple[int, ...]
    price_cents: int | None
    marketed: bool


@dataclass(frozen=True, slots=True)
class Device:
    """A medical device of the LPP list."""

    code: str
    label: str


@dataclass(frozen=True)
class ReferentialInfo:
    """The referential's dates, sources and row counts (for ``drugs info`` and the kiosk)."""

    path: str
    size_bytes: int
    date: str | None
    imported_at: str | None
    source: str | None
    devices_date: str | None
    devices_imported_at: str | None
    devices_source: str | None
    counts: dict[str, int] = field(default_factory=dict)


def _split(value: str) -> tuple[str, ...]:
    return tuple(value.split(LIST_SEPARATOR)) if value else ()


def _presentation(row: Sequence[Any]) -> Presentation:
    _, cip13, cip7, cis, name, form, dosage, pack, substances, routes, rates, price, marketed = row
    return Presentation(
        cip13, cip7, cis, LABEL_SEPARATOR.join(part for part in (name, pack) if part), name,
        form, dosage, pack, _split(substances), _split(routes),
        tuple(int(rate) for rate in _split(rates)), price, bool(marketed))


def _device(row: Sequence[Any]) -> Device:
    return Device(row[1], row[2])


@dataclass(frozen=True)
class _Index:
    """The SQL of one searchable kind (drugs or devices)."""

    doc: str
    columns: str
    marketed: bool
    build: Callable[[Sequence[Any]], Any]

    def rows_sql(self, count: int) -> str:
        marks = ",".join("?" * count)
        return f"SELECT {self.columns} FROM {self.doc} WHERE id IN ({marks})"  # noqa: S608

    def code_sql(self, column: str) -> str:
        return f"SELECT id FROM {self.doc} WHERE {column} = ? ORDER BY id"  # noqa: S608

    def prefix_sql(self) -> str:
        """Names in a prefix range, marketed first. With the index (marketed DESC,
        name_key), ``marketed IN (0, 1)`` lets SQLite read both groups in order from the
        index, without sorting."""
        if not self.marketed:
            return (f"SELECT id FROM {self.doc} WHERE name_key >= ? AND name_key < ? "  # noqa: S608
                    "ORDER BY name_key, id LIMIT ?")
        return (f"SELECT id FROM {self.doc} WHERE marketed IN (0, 1) AND name_key >= ? "  # noqa: S608
                "AND name_key < ? ORDER BY marketed DESC, name_key, id LIMIT ?")

    def match_sql(self, fts: str, filters: int) -> str:
        """Ids matching an FTS5 query, in rank order, filtered by ``LIKE`` patterns."""
        if not filters:
            return (f"SELECT rowid AS id FROM {self.doc}_{fts} "  # noqa: S608
                    f"WHERE {self.doc}_{fts} MATCH ? ORDER BY rowid LIMIT ?")
        where = "".join(" AND ' ' || d.text_key LIKE ?" for _ in range(filters))
        return (f"SELECT f.rowid AS id FROM {self.doc}_{fts} AS f JOIN {self.doc} AS d "  # noqa: S608
                f"ON d.id = f.rowid WHERE {self.doc}_{fts} MATCH ?{where} "
                "ORDER BY f.rowid LIMIT ?")


DRUGS = _Index("drug_doc", "id, cip13, cip7, cis, name, form, dosage, pack, "
               "substances, routes, reimbursement_rates, price_cents, marketed", True,
               _presentation)
DEVICES = _Index("device_doc", "id, code, label", False, _device)
CACHE_SIZE = 4096
STATEMENT_CACHE = 256


def _phrase(token: str) -> str:
    return '"' + token.replace('"', '""') + '"'


class Referential:
    """The referential file, opened read-only on first use and reused.

    Nothing is opened by the constructor. Each call checks (one ``stat``) whether an
    import replaced the file and reopens it if so. Results are immutable and the last
    ``cache_size`` are kept, since as-you-type queries return the same rows again and
    again. Safe to share between threads.
    """

    def __init__(self, path: Path | str, cache_size: int = CACHE_SIZE) -> None:
        self.path = Path(path)
        self.cache_size = cache_size
        self._conn: sqlite3.Connection | None = None
        self._identity: tuple[int, int] | None = None
        self._cache: dict[str, dict[int, Any]] = {}
        self._counts: dict[str, tuple[dict[str, int], dict[str, int]]] = {}
        self._tables: frozenset[str] = frozenset()
        self._lock = threading.Lock()

    # --- connection -------------------------------------------------------------------

    def _db(self) -> sqlite3.Connection:
        """The connection to the current file, reopened if an import replaced it.

        A call takes the connection once and uses it throughout: ranks are only
        meaningful within one file."""
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            raise StoreError(
                f"no drug referential at {self.path}: run `ordo drugs import`") from None
        identity = (st.st_dev, st.st_ino)
        if self._conn is None or identity != self._identity:
            self.close()
            try:
                conn = sqlite3.connect(readonly_uri(self.path), uri=True,
                                       check_same_thread=False,
                                       cached_statements=STATEMENT_CACHE)
                self._tables = frozenset(name for (name,) in conn.execute(
                    "SELECT name FROM sqlite_master WHERE type = 'table'"))
            except sqlite3.Error as exc:
                raise StoreError(f"cannot open the referential {self.path}: {exc}") from exc
            self._conn, self._identity = conn, identity
        return self._conn

    def _rows(self, conn: sqlite3.Connection, sql: str, params: Sequence[Any]) -> list[tuple]:
        try:
            return conn.execute(sql, params).fetchall()
        except sqlite3.Error as exc:
            raise StoreError(f"referential query failed ({self.path}): {exc}") from exc

    def close(self) -> None:
        self._cache.clear()
        self._counts.clear()
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    # --- search -----------------------------------------------------------------------

    def search(self, text: str, limit: int = DEFAULT_LIMIT) -> list[Presentation]:
        """Presentations matching ``text`` (name, DCI, code or scan), best first."""
        return self._search(DRUGS, text, limit, self._drug_codes(text))

    def search_devices(self, text: str, limit: int = DEFAULT_LIMIT) -> list[Device]:
        """LPP devices matching ``text`` (label words or the 7-digit code), best first."""
        compact = "".join(text.split())
        codes = [("code", compact)] if len(compact) == 7 and compact.isdigit() else []
        return self._search(DEVICES, text, limit, codes)

    def _search(self, index: _Index, text: str, limit: int,
                codes: list[tuple[str, str]]) -> list[Any]:
        with self._lock:
            conn = self._db()
            if index.doc not in self._tables:  # e.g. no device list imported yet
                return []
            return self._load(conn, index, self._ranked(conn, index, text, limit, codes))

    @staticmethod
    def _drug_codes(text: str) -> list[tuple[str, str]]:
        """Exact-code lookups for ``text``: scanned GS1 string, CIP13, CIP7 or CIS."""
        if looks_like_scan(text):
            scan = parse_scan(text)
            if scan is not None and scan.cip13:
                return [("cip13", scan.cip13)]
        compact = "".join(text.split())
        if not compact.isdigit():
            return []
        if len(compact) == 14 and compact.startswith("0"):  # a bare GTIN-14
            compact = compact[1:]
        column = {13: "cip13", 7: "cip7", 8: "cis"}.get(len(compact))
        return [(column, compact)] if column else []

    def _ranked(self, conn: sqlite3.Connection, index: _Index, text: str, limit: int,
                codes: list[tuple[str, str]]) -> list[int]:
        """Ids of the best ``limit`` documents, tier after tier (see the module doc).

        The tiers are the arms of one ``UNION ALL`` statement, read row by row: SQLite
        runs an arm only when the rows before it were not enough.
        """
        limit = max(0, min(limit, MAX_LIMIT))
        if not limit:
            return []
        # Each arm may repeat rows of earlier arms (fewer than ``limit`` were taken).
        arm_limit = 2 * limit
        arms: list[tuple[str, tuple]] = [(index.code_sql(column), (value,))
                                         for column, value in codes]
        key = search_key(text)
        if key:
            arms.append((index.prefix_sql(), (key, prefix_upper_bound(key), arm_limit)))
            arms.extend(self._match_arms(conn, index, key.split(), arm_limit))
        if not arms:
            return []
        sql = " UNION ALL ".join(f"SELECT id FROM ({arm})" for arm, _ in arms)  # noqa: S608
        found: dict[int, None] = {}
        try:
            cursor = conn.execute(sql, [p for _, params in arms for p in params])
            try:
                for (rank_id,) in cursor:
                    found[rank_id] = None
                    if len(found) >= limit:
                        break
            finally:
                cursor.close()
        except sqlite3.Error as exc:
            raise StoreError(f"referential query failed ({self.path}): {exc}") from exc
        return list(found)

    def _match_arms(self, conn: sqlite3.Connection, index: _Index, tokens: list[str],
                    arm_limit: int) -> list[tuple[str, tuple]]:
        """The word-prefix arm and, for words of three characters, the substring arm.

        FTS5 gets the words that prefix fewer than ``MATCH_MAX_DOCS`` documents (estimated
        from the common-word counts); the others filter its candidates with ``LIKE``:
        "comprime"* is in half the drug documents, and both a long doclist in an AND and
        the merge of every word a prefix covers cost more than checking the candidates.
        If every word is common, FTS5 starts from the rarest. The substring arm starts
        from the rarest word of three characters or more and filters with the rest.
        """
        prefix_docs, substring_docs = self._word_counts(conn, index)
        matched = [t for t in tokens if prefix_docs.get(t, 0) < MATCH_MAX_DOCS]
        if not matched:
            matched = [min(tokens, key=lambda t: (prefix_docs[t], -len(t)))]
        filters = list(tokens)
        for token in matched:
            filters.remove(token)
        arms = [(index.match_sql("word", len(filters)),
                 (" AND ".join(f"{_phrase(t)}*" for t in matched),
                  *(f"% {t}%" for t in filters), arm_limit))]
        longs = [t for t in tokens if len(t) >= TRIGRAM]
        if longs:  # substrings need three characters, the trigram index's minimum
            driver = min(longs, key=lambda t: (substring_docs.get(t, 0), -len(t)))
            filters = list(tokens)
            filters.remove(driver)
            arms.append((index.match_sql("tri", len(filters)),
                         (_phrase(driver), *(f"%{t}%" for t in filters), arm_limit)))
        return arms

    def _word_counts(self, conn: sqlite3.Connection,
                     index: _Index) -> tuple[dict[str, int], dict[str, int]]:
        """Estimated document counts of common prefixes and substrings, per file."""
        counts = self._counts.get(index.doc)
        if counts is None:
            prefixes: dict[str, int] = {}
            substrings: dict[str, int] = {}
            sql = f"SELECT word, docs FROM {index.doc}_common"  # noqa: S608
            for word, docs in self._rows(conn, sql, ()):
                for end in range(1, len(word) + 1):
                    prefixes[word[:end]] = prefixes.get(word[:end], 0) + docs
                for sub in {word[i:j] for i in range(len(word))
                            for j in range(i + TRIGRAM, len(word) + 1)}:
                    substrings[sub] = substrings.get(sub, 0) + docs
            counts = self._counts[index.doc] = (prefixes, substrings)
        return counts

    def _load(self, conn: sqlite3.Connection, index: _Index, ids: list[int]) -> list[Any]:
        """Result objects for ``ids``, in order, from the cache or the database."""
        cache = self._cache.setdefault(index.doc, {})
        try:
            return [cache[i] for i in ids]
        except KeyError:
            pass
        if sum(len(c) for c in self._cache.values()) + len(ids) > self.cache_size:
            cache.clear()
        missing = [i for i in ids if i not in cache]
        for row in self._rows(conn, index.rows_sql(len(missing)), missing):
            cache[row[0]] = index.build(row)
        return [cache[i] for i in ids]

    # --- lookups ----------------------------------------------------------------------

    def _by_code(self, index: _Index, column: str, code: str) -> list[Any]:
        with self._lock:
            conn = self._db()
            if index.doc not in self._tables:
                return []
            ids = [i for (i,) in self._rows(conn, index.code_sql(column), (code,))]
            return self._load(conn, index, ids)

    def by_cip13(self, code: str) -> Presentation | None:
        """The presentation with this CIP13 (``InvalidIdentifier`` if the code is malformed)."""
        found = self._by_code(DRUGS, "cip13", validate_cip13(code))
        return found[0] if found else None

    def by_cis(self, code: str) -> list[Presentation]:
        """The presentations of a specialty, marketed first."""
        return self._by_code(DRUGS, "cis", validate_cis(code))

    def device(self, code: str) -> Device | None:
        """The LPP device with this code, if listed."""
        found = self._by_code(DEVICES, "code", "".join(code.split()))
        return found[0] if found else None

    def conditions(self, cis: str) -> list[str]:
        """Prescription and dispensing conditions of a specialty (CIS_CPD)."""
        code = validate_cis(cis)
        with self._lock:
            conn = self._db()
            if "condition" not in self._tables:
                return []
            rows = self._rows(conn, "SELECT text FROM condition WHERE cis = ? ORDER BY rowid",
                              (code,))
        return [row[0] for row in rows]

    def facts(self, cis: str) -> DrugFacts:
        """The common name (DC) and the conditions of a specialty, as a printed order needs
        them (``composition.drug_facts``: empty when the referential has no composition)."""
        return drug_facts(self.path, cis)

    def info(self) -> ReferentialInfo:
        """Dates, sources and counts; ``StoreError`` if there is no referential yet."""
        with self._lock:
            conn = self._db()
            meta = dict(self._rows(conn, "SELECT key, value FROM meta", ()))
            try:
                counts = table_counts(conn)
            except sqlite3.Error as exc:
                raise StoreError(f"referential query failed ({self.path}): {exc}") from exc
            size = os.stat(self.path).st_size
        return ReferentialInfo(
            path=str(self.path), size_bytes=size, date=meta.get("bdpm_date"),
            imported_at=meta.get("bdpm_imported_at"), source=meta.get("bdpm_source"),
            devices_date=meta.get("devices_date"),
            devices_imported_at=meta.get("devices_imported_at"),
            devices_source=meta.get("devices_source"), counts=counts)
