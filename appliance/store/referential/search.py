"""Queries on the referential: as-you-type search, codes, barcode scans, status.

``Referential`` is opened once and reused by the UI; it reopens the file by itself
when an import has replaced it. A drug query is read by ``terms.parse_query``: words
(brand or DCI), strengths ("1000mg", "1 g", "25µg", "0,25", "4000 UI", "10 %") and
form or age words ("cp", "gél", "sachet", "buv", "inj", "suppo", "enfant"…) after a
drug word. Strengths and forms filter every tier below; words rank them, best first:

0. exact code: CIP13, CIP7, CIS (all its presentations), or a scanned GS1 string;
1. the name starts with the query's words: first, among the marketed oral forms for
   adults, the names whose part before the strength is exactly those words ("MOVICOL,
   poudre…" before "MOVICOL CHOCOLAT"), then all of them;
2. every word starts a word of the name or of a substance (DCI);
3. every word is a substring of the name or of a substance.

A word of five letters or more that starts no word of the referential cannot match
tiers 1 and 2: they are run instead with the known words one typo away from it
("amoxiciline" finds "amoxicilline"), before tier 3.

Within a tier, documents come in the order the import numbered them: marketed first,
tablets and capsules to swallow, then effervescent, dispersible, orodispersible or
chewable ones, other oral forms, other routes, paediatric presentations, one active
substance before several, then by name, reimbursed and smaller boxes first
(``build.drug_rank``). Words are folded like the index (``text.search_key``), so case
and accents do not matter.

Tier 1 reads the stem and name indexes; tier 2 the FTS5 word index (prefix indexes for
one to four characters keep one- and two-letter queries cheap; strengths and forms are
the tokens of its second column); tier 3 looks the few known words that contain a query
word (the vocabulary's own trigram index) up in the word index, or, when there are many,
reads the FTS5 trigram index of the documents (a word of three characters or more, the
trigram minimum; shorter words are checked with ``LIKE``). A search that finds nothing
can be explained with ``hint``: the word meant, or the strengths and forms the drug
exists in.
"""

from __future__ import annotations

import logging
import os
import re
import sqlite3
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, Generic, TypeVar, cast

from appliance.domain.ids import validate_cip13, validate_cis
from appliance.errors import StoreError
from appliance.store.referential import build, terms
from appliance.store.referential.build import (
    LIST_SEPARATOR,
    SCHEMA_VERSION,
    readonly_uri,
    table_counts,
)
from appliance.store.referential.composition import DrugFacts, drug_facts
from appliance.store.referential.gs1 import looks_like_scan, parse_scan
from appliance.store.referential.spelling import MIN_TYPO_LENGTH, Vocabulary
from appliance.store.referential.text import prefix_upper_bound, search_key

log = logging.getLogger(__name__)

# A row of the referential file: its column types are the schema's (``sqlite3`` rows are Any).
_Row = tuple[Any, ...]
R = TypeVar("R", bound="Presentation | Device")
R_co = TypeVar("R_co", bound="Presentation | Device", covariant=True)

DEFAULT_LIMIT = 20
LABEL_SEPARATOR = " — "
MAX_LIMIT = 500
TRIGRAM = 3
MATCH_MAX_DOCS = 1000
MAX_HOLDERS = 40  # vocabulary words containing a query word, looked up as words
ALL_DOCS = 1 << 62  # the estimate of a condition that must stay a LIKE filter
RANKS = tuple(range(build.RANKS))  # build.drug_rank's values
STEM_RANKS = build.drug_rank(True, terms.OTHER_ORAL + 1, False, False)  # marketed oral


@dataclass(frozen=True, slots=True)
class Presentation:
    """A box ready to prescribe: codes, labels, dosage, reimbursement, price.

    ``label`` is the specialty name and the pack (``name — pack``); ``price_cents`` is
    the drug's price without the pharmacist's dispensing fee (BDPM's first price field);
    ``box`` what the box holds ("30 comprimés", "1 flacon de 100 ml"; "" if the pack
    label does not say).
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
    box: str = ""

    @property
    def reimbursed(self) -> bool:
        return bool(self.reimbursement_rates)


@dataclass(frozen=True, slots=True)
class Device:
    """A medical device of the LPP list."""

    code: str
    label: str


@dataclass(frozen=True, slots=True)
class Component:
    """One row of a specialty's composition: ``nature`` is ``SA`` (active substance) or
    ``FT`` (therapeutic fraction); an SA and its FT share ``element`` and ``link``."""

    element: str
    substance_code: str
    substance: str
    nature: str
    link: int


@dataclass(frozen=True, slots=True)
class GenericMember:
    """A specialty's place in a generic group: ``kind`` 0 princeps, 1 generic,
    2 generic by posology complement, 4 substitutable generic."""

    group_id: int
    cis: str
    kind: int
    sort: int


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


def _presentation(row: _Row) -> Presentation:
    (_, cip13, cip7, cis, name, form, dosage, pack, substances, routes, rates, price,
     marketed, box) = row
    return Presentation(
        cip13, cip7, cis, LABEL_SEPARATOR.join(part for part in (name, pack) if part), name,
        form, dosage, pack, _split(substances), _split(routes),
        tuple(int(rate) for rate in _split(rates)), price, bool(marketed), box)


def _device(row: _Row) -> Device:
    return Device(row[1], row[2])


@dataclass(frozen=True, slots=True)
class _Term:
    """One condition of a query: an FTS5 expression, or the same as a ``LIKE`` filter on
    the document (``d``), with the estimated number of documents it holds."""

    fts: str
    like: str
    params: tuple[str, ...]
    docs: int


@dataclass(frozen=True)
class _Index(Generic[R_co]):
    """The SQL of one searchable kind (drugs or devices), and its result objects."""

    doc: str
    columns: str
    ranked: bool  # documents have a ``rank`` (drugs) and facet tokens
    build: Callable[[_Row], R_co]

    def rows_sql(self, count: int) -> str:
        marks = ",".join("?" * count)
        return f"SELECT {self.columns} FROM {self.doc} WHERE id IN ({marks})"  # noqa: S608

    def code_sql(self, column: str) -> str:
        return f"SELECT id FROM {self.doc} WHERE {column} = ? ORDER BY id"  # noqa: S608

    def stem_sql(self, filters: Sequence[_Term]) -> str:
        """Names whose part before the strength is exactly the query's words, among the
        marketed oral forms for adults."""
        where = "".join(f" AND {t.like}" for t in filters)
        return (f"SELECT id FROM {self.doc} AS d WHERE stem_key = ? AND rank < "  # noqa: S608
                f"{STEM_RANKS}{where} ORDER BY id LIMIT ?")

    def prefix_sql(self, filters: Sequence[_Term]) -> str:
        """Names in a prefix range, best rank first. With the index (rank, name_key),
        ``rank IN (…)`` lets SQLite read each rank's range in order, without sorting."""
        where = "".join(f" AND {t.like}" for t in filters)
        if not self.ranked:
            return (f"SELECT id FROM {self.doc} AS d WHERE name_key >= ? "  # noqa: S608
                    f"AND name_key < ?{where} ORDER BY name_key, id LIMIT ?")
        ranks = ",".join(str(rank) for rank in RANKS)
        return (f"SELECT id FROM {self.doc} AS d WHERE rank IN ({ranks}) "  # noqa: S608
                f"AND name_key >= ? AND name_key < ?{where} ORDER BY rank, name_key, id "
                "LIMIT ?")

    def match_sql(self, fts: str, filters: Sequence[_Term]) -> str:
        """Ids matching an FTS5 query, in rank order, filtered by ``LIKE`` conditions."""
        if not filters:
            return (f"SELECT rowid AS id FROM {self.doc}_{fts} "  # noqa: S608
                    f"WHERE {self.doc}_{fts} MATCH ? ORDER BY rowid LIMIT ?")
        where = "".join(f" AND {t.like}" for t in filters)
        return (f"SELECT f.rowid AS id FROM {self.doc}_{fts} AS f JOIN {self.doc} AS d "  # noqa: S608
                f"ON d.id = f.rowid WHERE {self.doc}_{fts} MATCH ?{where} "
                "ORDER BY f.rowid LIMIT ?")


DRUGS = _Index("drug_doc", "id, cip13, cip7, cis, name, form, dosage, pack, "
               "substances, routes, reimbursement_rates, price_cents, marketed, box", True,
               _presentation)
DEVICES = _Index("device_doc", "id, code, label", False, _device)
_SomeIndex = _Index[Presentation | Device]
CACHE_SIZE = 4096
STATEMENT_CACHE = 256


def _phrase(token: str) -> str:
    return '"' + token.replace('"', '""') + '"'


def _either(column: str, fts: list[str]) -> str:
    return f"{column} : ({' OR '.join(fts)})" if len(fts) > 1 else f"{column} : {fts[0]}"


def _any(likes: list[str]) -> str:
    return f"({' OR '.join(likes)})" if len(likes) > 1 else likes[0]


@dataclass
class _Counts:
    """Estimated document counts of one file's common word prefixes, substrings and facet
    tokens, and its vocabulary (read on first need)."""

    prefixes: dict[str, int]
    substrings: dict[str, int]
    facets: dict[str, int]
    facet_prefixes: dict[str, int]
    vocabulary: Vocabulary | None = None


@dataclass(frozen=True)
class _Plan:
    """A query read for one index: its words, their corrections, its filters."""

    key: str  # the whole text folded ("doliprane 1000 mg co"), numbers included
    words: tuple[str, ...]
    filters: tuple[tuple[str, ...], ...]
    # per word: None when the word is known, else the known words one typo away
    corrections: tuple[tuple[str, ...] | None, ...]


NO_RESULT = "Aucun résultat : vérifiez l'orthographe ou scannez la boîte."
HINT_DOCS = 200
SHOWN_STRENGTHS = 8
SHOWN_FORMS = 3
_UNIT_NAMES = {terms.MASS: "mg", terms.VOLUME: "ml", terms.UNITS: "UI", terms.PERCENT: "%"}
_STRENGTH_TOKENS = frozenset((terms.NUMBER, *_UNIT_NAMES))


def _decimal_fr(value: Decimal) -> str:
    return terms.number_token(value).replace("d", ",")


def strength_text(token: str) -> str:
    """A strength facet token as a physician reads it: "1000 mg", "25 µg", "4000 UI"."""
    value = Decimal(token[1:].replace("d", "."))
    if token[0] == terms.MASS:
        return f"{_decimal_fr(value * 1000)} µg" if value < 1 else f"{_decimal_fr(value)} mg"
    return f"{_decimal_fr(value)} {_UNIT_NAMES[token[0]]}"


def _strength_order(token: str) -> tuple[str, Decimal]:
    return token[0], Decimal(token[1:].replace("d", "."))


def _satisfies(tokens: set[str], alternatives: tuple[str, ...]) -> bool:
    for alternative in alternatives:
        if alternative.endswith("*"):
            if any(token.startswith(alternative[:-1]) for token in tokens):
                return True
        elif alternative in tokens:
            return True
    return False


def _listed(items: list[str], most: int) -> str:
    """Items joined with commas, ending with a full stop or "…" when some were left out."""
    return ", ".join(items[:most]) + (", …" if len(items) > most else ".")


class Referential:
    """The referential file, opened read-only on first use and reused.

    Nothing is opened by the constructor. Each call checks (one ``stat``) whether an
    import replaced the file and reopens it if so. Results are immutable and the last
    ``cache_size`` are kept, since as-you-type queries return the same rows again and
    again. Safe to share between threads.

    A file that an older version of Ordo built is upgraded by the first search
    (``build.upgrade``: its search tables made again from its own rows, atomically, a
    few seconds on the whole BDPM; the kiosk's ``warm_up`` does it before anyone
    searches); if that fails, the searches of that file refuse with the reason, once
    each, without trying again until the file is replaced.
    """

    def __init__(self, path: Path | str, cache_size: int = CACHE_SIZE) -> None:
        self.path = Path(path)
        self.cache_size = cache_size
        self._conn: sqlite3.Connection | None = None
        self._identity: tuple[int, int] | None = None
        self._cache: dict[str, dict[int, Presentation | Device]] = {}
        self._counts: dict[str, _Counts] = {}
        self._tables: frozenset[str] = frozenset()
        self._schema: str | None = None
        self._upgrade_failed: tuple[tuple[int, int], str] | None = None
        self._lock = threading.Lock()

    # --- connection -------------------------------------------------------------------

    def _db(self, current: bool = True, upgrade: bool = True) -> sqlite3.Connection:
        """The connection to the current file, reopened if an import replaced it.

        A call takes the connection once and uses it throughout: ranks are only
        meaningful within one file. ``current``: refuse a file that another version of
        Ordo built (its search tables differ) unless it can be upgraded."""
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            raise StoreError(f"référentiel des médicaments absent ({self.path}) : "
                             "lancez « ordo drugs import »") from None
        identity = (st.st_dev, st.st_ino)
        if self._conn is None or identity != self._identity:
            self.close()
            try:
                conn = sqlite3.connect(readonly_uri(self.path), uri=True,
                                       check_same_thread=False,
                                       cached_statements=STATEMENT_CACHE)
                self._tables = frozenset(name for (name,) in conn.execute(
                    "SELECT name FROM sqlite_master WHERE type = 'table'"))
                row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'"
                                   ).fetchone() if "meta" in self._tables else None
            except sqlite3.Error as exc:
                raise StoreError(f"cannot open the referential {self.path}: {exc}") from exc
            self._conn, self._identity = conn, identity
            self._schema = row[0] if row else None
        if current and self._schema != SCHEMA_VERSION:
            if upgrade and self._schema in build.UPGRADABLE_SCHEMAS:
                self._upgrade(identity)
                return self._db(current, upgrade=False)
            raise StoreError(
                f"le référentiel {self.path} a le schéma {self._schema}, cette version "
                f"d'Ordo lit le schéma {SCHEMA_VERSION} : relancez « ordo drugs import »")
        return self._conn

    def _upgrade(self, identity: tuple[int, int]) -> None:
        """Upgrade the file of an older schema, or say why it cannot be searched (one
        try per file)."""
        if self._upgrade_failed is not None and self._upgrade_failed[0] == identity:
            raise StoreError(self._upgrade_failed[1])
        log.warning("drug referential of an older schema: rebuilding its search tables",
                    extra={"fields": {"schema": self._schema}})
        try:
            build.upgrade(self.path)
        except Exception as exc:  # whatever the cause, the file stays as it was
            log.exception("drug referential upgrade failed")
            message = (f"le référentiel {self.path} date d'une version précédente d'Ordo et "
                       f"n'a pas pu être mis à jour ({exc}) : relancez « ordo drugs import »")
            self._upgrade_failed = (identity, message)
            raise StoreError(message) from exc

    def _rows(self, conn: sqlite3.Connection, sql: str,
              params: Sequence[object]) -> list[_Row]:
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
        """Presentations matching ``text`` (name, DCI, strength, form, code or scan),
        best first."""
        return self._search(DRUGS, text, limit, self._drug_codes(text))

    def search_devices(self, text: str, limit: int = DEFAULT_LIMIT) -> list[Device]:
        """LPP devices matching ``text`` (label words or the 7-digit code), best first."""
        compact = "".join(text.split())
        codes = [("code", compact)] if len(compact) == 7 and compact.isdigit() else []
        return self._search(DEVICES, text, limit, codes)

    def _search(self, index: _Index[R], text: str, limit: int,
                codes: list[tuple[str, str]]) -> list[R]:
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

    def _ranked(self, conn: sqlite3.Connection, index: _SomeIndex, text: str, limit: int,
                codes: list[tuple[str, str]], filtered: bool = True) -> list[int]:
        """Ids of the best ``limit`` documents, tier after tier (see the module doc).

        The tiers are the arms of one ``UNION ALL`` statement, read row by row: SQLite
        runs an arm only when the rows before it were not enough. ``filtered``: apply
        the query's strengths and forms (the hint looks without them).
        """
        limit = max(0, min(limit, MAX_LIMIT))
        if not limit:
            return []
        # Each arm may repeat rows of earlier arms (fewer than ``limit`` were taken).
        arm_limit = 2 * limit
        arms: list[tuple[str, tuple[object, ...]]] = [(index.code_sql(column), (value,))
                                         for column, value in codes]
        plan = self._plan(conn, index, text)
        if plan is not None and (plan.words or filtered):
            arms.extend(self._arms(conn, index, plan, arm_limit, filtered))
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

    def _plan(self, conn: sqlite3.Connection, index: _SomeIndex, text: str) -> _Plan | None:
        """The query's words, filters, and the corrections of the words nothing knows."""
        if index.ranked:
            query = terms.parse_query(text)
            words, filters = query.words, query.filters
        else:
            words, filters = tuple(search_key(text).split()), ()
        if not words and not filters:
            return None
        corrections: list[tuple[str, ...] | None] = [None] * len(words)
        if any(len(word) >= MIN_TYPO_LENGTH for word in words):
            vocabulary = self._vocabulary(conn, index)
            for i, word in enumerate(words):
                if vocabulary.needs_correction(word):
                    corrections[i] = tuple(vocabulary.corrections(word))
        return _Plan(search_key(text), words, filters, tuple(corrections))

    def _arms(self, conn: sqlite3.Connection, index: _SomeIndex, plan: _Plan, arm_limit: int,
              filtered: bool) -> list[tuple[str, tuple[object, ...]]]:
        """The name-prefix, word-prefix, substring and typo arms of a query."""
        counts = self._word_counts(conn, index)
        filters = [self._facet_term(counts, f) for f in plan.filters] if filtered else []
        if not plan.words:
            return [self._match_arm(index, filters, arm_limit)]
        unknown = [c for c in plan.corrections if c is not None]
        arms: list[tuple[str, tuple[object, ...]]] = []
        if not unknown:
            arms.extend(self._name_arms(index, plan.words, filters, arm_limit, plan.key))
            arms.append(self._match_arm(index, [self._word_term(counts, (w,))
                                                for w in plan.words] + filters, arm_limit))
        elif all(unknown):  # a word starts no known word: the words one typo away
            pairs = list(zip(plan.words, plan.corrections, strict=True))
            likeliest = tuple(c[0] if c else w for w, c in pairs)
            arms.extend(self._name_arms(index, likeliest, filters, arm_limit))
            fixed = [self._word_term(counts, c or (w,)) for w, c in pairs]
            arms.append(self._match_arm(index, fixed + filters, arm_limit))
        arms.extend(self._substring_arms(conn, index, plan.words, filters, arm_limit))
        return arms

    def _substring_arms(self, conn: sqlite3.Connection, index: _SomeIndex,
                        words: tuple[str, ...], filters: list[_Term],
                        arm_limit: int) -> list[tuple[str, tuple[object, ...]]]:
        """Every word is a substring of a word of the document (tier 3).

        A query word has no space, so it is a substring of the text if and only if it is
        one of a word of the text: when the vocabulary holds few words containing each
        query word, they are looked up as whole words in the word index; otherwise the
        trigram index starts from the rarest word and ``LIKE`` checks the others."""
        longs = [w for w in words if len(w) >= TRIGRAM]
        if not longs:  # substrings need three characters, the trigram index's minimum
            return []
        vocabulary = self._vocabulary(conn, index)
        holders = [self._containing(conn, index, w, MAX_HOLDERS) for w in longs]
        if all(held is not None for held in holders):
            if not all(holders):
                return []  # a word is in no word of the referential
            if len(longs) == len(words) and all(
                    h.startswith(w) for w, held in zip(longs, holders, strict=True)
                    for h in held or ()):
                return []  # only in the words they start: tier 2 found them
            conditions = [_Term(_either("text_key", [_phrase(h) for h in held]),
                                _any(["' ' || d.text_key || ' ' LIKE ?"] * len(held)),
                                tuple(f"% {h} %" for h in held),
                                sum(vocabulary.docs[h] for h in held))
                          for held in holders if held]
            conditions += [_Term("", "d.text_key LIKE ?", (f"%{w}%",), ALL_DOCS)
                           for w in words if len(w) < TRIGRAM]  # always a filter
            return [self._match_arm(index, conditions + filters, arm_limit)]
        counts = self._word_counts(conn, index)
        driver = min(longs, key=lambda t: (counts.substrings.get(t, 0), -len(t)))
        rest = list(words)
        rest.remove(driver)
        others = [_Term("", "d.text_key LIKE ?", (f"%{w}%",), 0) for w in rest] + filters
        return [(index.match_sql("tri", others),
                 (_phrase(driver), *(p for t in others for p in t.params), arm_limit))]

    @staticmethod
    def _name_arms(index: _SomeIndex, words: tuple[str, ...], filters: list[_Term],
                   arm_limit: int, typed: str = "") -> list[tuple[str, tuple[object, ...]]]:
        """Names whose stem is the words, then names starting with the text as typed
        (a name typed whole, strength included: needed when numbers come between the
        words), then names starting with the words."""
        key = " ".join(words)
        params = tuple(p for t in filters for p in t.params)
        arms = [(index.stem_sql(filters), (key, *params, arm_limit))] if index.ranked else []
        # When the text starts with the words, its names are among the words' names, in
        # the same order: the second arm would find nothing new.
        prefixes = [key] if not typed or typed.startswith(key) else [typed, key]
        for prefix in prefixes:
            arms.append((index.prefix_sql(filters),
                         (prefix, prefix_upper_bound(prefix), *params, arm_limit)))
        return arms

    @staticmethod
    def _match_arm(index: _SomeIndex, conditions: list[_Term],
                   arm_limit: int) -> tuple[str, tuple[object, ...]]:
        """One FTS5 word-index query for every condition.

        FTS5 gets the conditions that hold fewer than ``MATCH_MAX_DOCS`` documents
        (estimated from the common-word and facet counts); the others filter its
        candidates with ``LIKE``: "comprime"* is in half the drug documents, and both a
        long doclist in an AND and the merge of every word a prefix covers cost more than
        checking the candidates. If every condition is common, FTS5 starts from the
        rarest.
        """
        matched = [t for t in conditions if t.docs < MATCH_MAX_DOCS]
        if not matched:
            matched = [min(conditions, key=lambda t: (t.docs, -len(t.fts)))]
        rest = [t for t in conditions if t not in matched]
        return (index.match_sql("word", rest),
                (" AND ".join(t.fts for t in matched), *(p for t in rest for p in t.params),
                 arm_limit))

    @staticmethod
    def _word_term(counts: _Counts, words: tuple[str, ...]) -> _Term:
        """A word that starts a word of the document, or one of several."""
        return _Term(_either("text_key", [f"{_phrase(w)}*" for w in words]),
                     _any(["' ' || d.text_key LIKE ?"] * len(words)),
                     tuple(f"% {w}%" for w in words),
                     sum(counts.prefixes.get(w, 0) for w in words))

    @staticmethod
    def _facet_term(counts: _Counts, alternatives: tuple[str, ...]) -> _Term:
        """A strength, form or age filter: one of its facet tokens (or token starts)."""
        fts, likes, params, docs = [], [], [], 0
        for alternative in alternatives:
            if alternative.endswith("*"):
                token = alternative[:-1]
                fts.append(f"{_phrase(token)}*")
                likes.append("' ' || d.facets LIKE ?")
                params.append(f"% {token}%")
                docs += counts.facet_prefixes.get(token, 0)
            else:
                fts.append(_phrase(alternative))
                likes.append("' ' || d.facets || ' ' LIKE ?")
                params.append(f"% {alternative} %")
                docs += counts.facets.get(alternative, 0)
        return _Term(_either("facets", fts), _any(likes), tuple(params), docs)

    def _containing(self, conn: sqlite3.Connection, index: _SomeIndex, part: str,
                    most: int) -> list[str] | None:
        """The words of the vocabulary that contain ``part`` (three characters or more),
        or ``None`` when there are more than ``most``."""
        sql = (f"SELECT word FROM {index.doc}_vocab_tri WHERE {index.doc}_vocab_tri "  # noqa: S608
               "MATCH ? LIMIT ?")
        found = [word for (word,) in self._rows(conn, sql, (_phrase(part), most + 1))]
        return found if len(found) <= most else None

    def _word_counts(self, conn: sqlite3.Connection, index: _SomeIndex) -> _Counts:
        """Estimated document counts of common prefixes, substrings and facets, per file."""
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
            facets: dict[str, int] = {}
            facet_prefixes: dict[str, int] = {}
            if index.ranked:
                sql = f"SELECT token, docs FROM {index.doc}_facet"  # noqa: S608
                for token, docs in self._rows(conn, sql, ()):
                    facets[token] = docs
                    for end in range(2, len(token) + 1):
                        facet_prefixes[token[:end]] = facet_prefixes.get(token[:end], 0) + docs
            counts = self._counts[index.doc] = _Counts(prefixes, substrings, facets,
                                                       facet_prefixes)
        return counts

    def _vocabulary(self, conn: sqlite3.Connection, index: _SomeIndex) -> Vocabulary:
        counts = self._word_counts(conn, index)
        if counts.vocabulary is None:
            sql = f"SELECT word, docs FROM {index.doc}_vocab"  # noqa: S608
            counts.vocabulary = Vocabulary(self._rows(conn, sql, ()))
        return counts.vocabulary

    def vocabulary(self) -> Vocabulary:
        """The words of the drug names and substances, with their document counts."""
        with self._lock:
            return self._vocabulary(self._db(), DRUGS)

    def warm_up(self) -> None:
        """Open the file (upgrading it if an older Ordo built it) and load what searches
        read once per file: the word and facet counts and the spelling vocabulary, with
        its word starts (typos) and trigrams (the hints of an empty answer), so that the
        first search, misspelt or not, does not wait for them."""
        with self._lock:
            conn = self._db()
            for index in (DRUGS, DEVICES):
                if index.doc in self._tables:
                    self._vocabulary(conn, index).warm_up()

    # --- hints ------------------------------------------------------------------------

    def hint(self, text: str) -> str:
        """Why ``search(text)`` finds nothing, in French, and what to type instead: the
        known word nearest to an unknown one, or the strengths and forms that the drug
        exists in. ``""`` when there is nothing to search."""
        query = terms.parse_query(text)
        if query.empty:
            return ""
        with self._lock:
            conn = self._db()
            if DRUGS.doc not in self._tables:
                return NO_RESULT
            vocabulary = self._vocabulary(conn, DRUGS)
            for word in query.words:
                if self._known(conn, vocabulary, word):
                    continue
                near = vocabulary.near(word)
                if not near:
                    return f"Aucun résultat : aucun nom ni aucune substance ne contient « {word} »."
                folded = " ".join(terms.fold_text(text).split())
                meant = re.sub(rf"(?<![a-z0-9]){re.escape(word)}(?![a-z0-9])", near[0],
                               folded, count=1)
                return f"Aucun résultat. Vouliez-vous dire « {meant} » ?"
            if not query.words:
                return NO_RESULT
            ids = self._ranked(conn, DRUGS, text, HINT_DOCS, [], filtered=False)
            rows = self._rows(conn, "SELECT name, form, facets, name_key FROM drug_doc "  # noqa: S608
                              f"WHERE id IN ({','.join('?' * len(ids))})", ids) if ids else []
        return self._filter_hint(query, " ".join(query.words), rows)

    def _known(self, conn: sqlite3.Connection, vocabulary: Vocabulary, word: str) -> bool:
        if vocabulary.starts_a_word(word) or not word.isalpha():
            return True
        if len(word) >= TRIGRAM and self._containing(conn, DRUGS, word, 0) is None:
            return True  # some word holds it
        return vocabulary.needs_correction(word) and bool(vocabulary.corrections(word))

    @staticmethod
    def _filter_hint(query: terms.Query, words: str, rows: list[tuple[str, str, str, str]]) -> str:
        """The words match: say which strength or form none of their drugs has (among
        the drugs whose name starts with the words, if any)."""
        if not rows:  # each word is known, but no drug has them all
            return NO_RESULT
        named = [row for row in rows if row[3].startswith(words)]
        rows = named or rows
        docs = [set(facets.split()) for _, _, facets, _ in rows]
        failing = [f for f in query.filters if not any(_satisfies(d, f) for d in docs)]
        strength_filters = [f for f in failing if f[0][0] in _STRENGTH_TOKENS]
        if strength_filters:
            dimensions = {a[0] for f in strength_filters for a in f} & set(_UNIT_NAMES)
            written = {amount.dimension + terms.number_token(amount.canonical)
                       for name, _, _, _ in rows for amount in terms.amounts(name)
                       if amount.dimension in dimensions and amount.canonical is not None}
            if written:
                shown = _listed([strength_text(t) for t in sorted(written, key=_strength_order)],
                                SHOWN_STRENGTHS)
                return f"Aucun résultat : « {words} » existe en {shown}"
        if failing:
            forms = sorted({form for _, form, _, _ in rows if form})
            if forms:
                return f"Aucun résultat : « {words} » existe en {_listed(forms, SHOWN_FORMS)}"
        return f"Aucun résultat. Essayez « {words} »."

    def _load(self, conn: sqlite3.Connection, index: _Index[R], ids: list[int]) -> list[R]:
        """Result objects for ``ids``, in order, from the cache or the database."""
        # the cache of ``index.doc`` holds only what ``index.build`` made
        cache = cast("dict[int, R]", self._cache.setdefault(index.doc, {}))
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

    def _by_code(self, index: _Index[R], column: str, code: str) -> list[R]:
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

    def composition(self, cis: str) -> list[Component]:
        """The active substances (SA) and therapeutic fractions (FT) of a specialty
        (CIS_COMPO), in the file's order."""
        code = validate_cis(cis)
        with self._lock:
            conn = self._db()
            if "composition" not in self._tables:
                return []
            rows = self._rows(conn, "SELECT element, substance_code, substance, nature, link"
                              " FROM composition WHERE cis = ? ORDER BY rowid", (code,))
        return [Component(*row) for row in rows]

    def generic_group(self, cis: str) -> list[GenericMember]:
        """Every specialty of the generic groups (CIS_GENER) that hold ``cis``, the
        specialty itself included; by group, then in the group's order."""
        code = validate_cis(cis)
        with self._lock:
            conn = self._db()
            if "generic_group" not in self._tables:
                return []
            rows = self._rows(conn, "SELECT g.group_id, g.cis, g.kind, g.sort FROM generic_group g"
                              " WHERE g.group_id IN (SELECT group_id FROM generic_group"
                              " WHERE cis = ?) ORDER BY g.group_id, g.sort, g.cis", (code,))
        return [GenericMember(*row) for row in rows]

    def info(self) -> ReferentialInfo:
        """Dates, sources and counts; ``StoreError`` if there is no referential yet."""
        with self._lock:
            conn = self._db(current=False)
            meta: dict[str, str] = dict(self._rows(conn, "SELECT key, value FROM meta", ()))
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
