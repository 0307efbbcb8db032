"""Building the referential SQLite file, atomically, and reporting what changed.

The referential (drugs from the BDPM, devices from an LPP list) lives in its own file,
``<data_dir>/referential.sqlite``, separate from the prescriptions store: it is
rebuilt whole at each import and never written in place.

- An import takes an exclusive ``flock`` on ``referential.sqlite.lock``, removes the
  temporary files that a killed import left behind, builds the complete new file
  as ``.referential.sqlite.<random>.tmp`` in the same directory (mode 0600), fsyncs
  it, then ``os.replace()``s it over the old one and fsyncs the directory. A process
  killed at any moment leaves the previous file as it was.
- Readers open the file read-only and immutable; a reader that sees a new inode
  reopens (see ``search.Referential``).
- The part not being imported (devices during a BDPM import, drugs during a device
  import) is copied from the previous file.
- Each part's source hash is stored in ``meta``: importing the same bytes again is a
  no-op. Otherwise the report counts added / removed / changed rows of the main
  tables against the previous file.
- A file an older Ordo built (``schema_version`` in ``UPGRADABLE_SCHEMAS``) keeps the
  BDPM and LPP rows this version reads, only its search documents and indexes differ:
  ``upgrade`` makes them again from the file's own tables, the same way and as
  atomically as an import, and keeps its ``meta`` (dates, sources, hashes).

The search documents (``drug_doc``, ``device_doc``) are numbered in ranking order, so
that FTS5, which returns rowids in ascending order, yields the best rows of each tier
first without sorting. For drugs that order is ``rank`` (marketed first; then tablets
and capsules, special tablets, other oral forms, other routes, paediatric
presentations; one substance before several: see ``drug_rank``), folded name, oldest
marketing authorisation (among identical names, the parallel imports come last),
reimbursed boxes first, smaller boxes first. Each drug document also carries its facet
tokens (strengths, forms, box size, age group: ``terms``) and its box size as shown.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import secrets
import sqlite3
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from appliance.errors import StoreError
from appliance.store.referential import terms
from appliance.store.referential.text import search_key

if TYPE_CHECKING:  # the kiosk's search reads the file without loading the parsers
    from appliance.store.referential.bdpm import (
        Bdpm,
        CompositionRow,
        ParsedFile,
        RowError,
        SomeParsedFile,
        SpecialtyRow,
    )
    from appliance.store.referential.devices import DeviceRow

log = logging.getLogger(__name__)

R = TypeVar("R")

REFERENTIAL_FILE = "referential.sqlite"
SCHEMA_VERSION = "2"
# Older schemas whose tables hold every row the search documents are made of: such a file
# is upgraded (``upgrade``) rather than refused. Schema 1: the same BDPM and LPP tables,
# the search documents without ranks, facets, box sizes nor vocabulary.
UPGRADABLE_SCHEMAS = frozenset({"1"})
FILE_MODE = 0o600
DIR_MODE = 0o700
LIST_SEPARATOR = "|"
MAX_DOSAGE_CHARS = 160

BDPM = "bdpm"
DEVICES = "devices"

_BDPM_SCHEMA = """
CREATE TABLE specialty (
    cis TEXT PRIMARY KEY, name TEXT NOT NULL, form TEXT NOT NULL, routes TEXT NOT NULL,
    amm_status TEXT NOT NULL, amm_procedure TEXT NOT NULL, marketing TEXT NOT NULL,
    amm_date TEXT, bdm_status TEXT NOT NULL, eu_number TEXT NOT NULL,
    holders TEXT NOT NULL, reinforced_monitoring INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE presentation (
    cip13 TEXT PRIMARY KEY, cip7 TEXT NOT NULL, cis TEXT NOT NULL, label TEXT NOT NULL,
    admin_status TEXT NOT NULL, marketing TEXT NOT NULL, marketing_date TEXT,
    collectivities TEXT NOT NULL, reimbursement_rates TEXT NOT NULL,
    price_cents INTEGER, price_with_fee_cents INTEGER, fee_cents INTEGER,
    indications TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE composition (
    cis TEXT NOT NULL, element TEXT NOT NULL, substance_code TEXT NOT NULL,
    substance TEXT NOT NULL, dosage TEXT NOT NULL, dosage_reference TEXT NOT NULL,
    nature TEXT NOT NULL, link INTEGER NOT NULL
);
CREATE TABLE generic_group (
    group_id INTEGER NOT NULL, label TEXT NOT NULL, cis TEXT NOT NULL,
    kind INTEGER NOT NULL, sort INTEGER NOT NULL
);
CREATE TABLE condition (cis TEXT NOT NULL, text TEXT NOT NULL);
CREATE TABLE drug_doc (
    id INTEGER PRIMARY KEY, cip13 TEXT NOT NULL, cip7 TEXT NOT NULL, cis TEXT NOT NULL,
    name TEXT NOT NULL, form TEXT NOT NULL, dosage TEXT NOT NULL,
    pack TEXT NOT NULL, substances TEXT NOT NULL, routes TEXT NOT NULL,
    reimbursement_rates TEXT NOT NULL, price_cents INTEGER, marketed INTEGER NOT NULL,
    name_key TEXT NOT NULL, text_key TEXT NOT NULL, rank INTEGER NOT NULL,
    stem_key TEXT NOT NULL, facets TEXT NOT NULL, box TEXT NOT NULL
);
"""
_BDPM_INDEXES = """
CREATE INDEX composition_cis ON composition (cis);
CREATE INDEX generic_group_cis ON generic_group (cis);
CREATE INDEX condition_cis ON condition (cis);
CREATE INDEX presentation_cis ON presentation (cis);
CREATE INDEX drug_doc_name ON drug_doc (rank, name_key);
CREATE INDEX drug_doc_stem ON drug_doc (stem_key);
CREATE UNIQUE INDEX drug_doc_cip13 ON drug_doc (cip13);
CREATE INDEX drug_doc_cip7 ON drug_doc (cip7);
CREATE INDEX drug_doc_cis ON drug_doc (cis);
"""
_DEVICE_SCHEMA = """
CREATE TABLE device (code TEXT PRIMARY KEY, label TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE device_doc (
    id INTEGER PRIMARY KEY, code TEXT NOT NULL, label TEXT NOT NULL,
    name_key TEXT NOT NULL, text_key TEXT NOT NULL
);
"""
_DEVICE_INDEXES = """
CREATE INDEX device_doc_name ON device_doc (name_key);
CREATE UNIQUE INDEX device_doc_code ON device_doc (code);
"""
# Word-prefix index: unicode61 over the folded text (and, for drugs, the facet tokens in
# a second column), prefix indexes for 1 to 4 characters so that short prefixes stay
# cheap (detail=none would be 2 MB smaller but its prefix queries are several times
# slower); substring index: trigram (https://sqlite.org/fts5.html, sections 4.3.4 and
# 4.2). ``<doc>_vocab`` lists every word of the text with its document count (the
# spelling tolerance's vocabulary), ``<doc>_facet`` every facet token; both are read
# from the word index with fts5vocab. ``<doc>_vocab_tri`` finds the words that contain a
# part of a word ("oliprane": doliprane, codoliprane).
_FTS = """
CREATE VIRTUAL TABLE {doc}_word USING fts5(
    {columns}, content='{doc}', content_rowid='id', tokenize='unicode61',
    prefix='1 2 3 4');
CREATE VIRTUAL TABLE {doc}_tri USING fts5(
    text_key, content='{doc}', content_rowid='id', tokenize='trigram');
INSERT INTO {doc}_word ({doc}_word) VALUES ('rebuild');
INSERT INTO {doc}_tri ({doc}_tri) VALUES ('rebuild');
INSERT INTO {doc}_word ({doc}_word) VALUES ('optimize');
INSERT INTO {doc}_tri ({doc}_tri) VALUES ('optimize');
CREATE TABLE {doc}_common (word TEXT PRIMARY KEY, docs INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE {doc}_vocab (word TEXT PRIMARY KEY, docs INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE {doc}_facet (token TEXT PRIMARY KEY, docs INTEGER NOT NULL) WITHOUT ROWID;
CREATE VIRTUAL TABLE temp.{doc}_terms USING fts5vocab(main, {doc}_word, col);
INSERT INTO {doc}_vocab SELECT term, doc FROM temp.{doc}_terms WHERE col = 'text_key';
INSERT INTO {doc}_facet SELECT term, doc FROM temp.{doc}_terms WHERE col = 'facets';
DROP TABLE temp.{doc}_terms;
CREATE VIRTUAL TABLE {doc}_vocab_tri USING fts5(word, tokenize='trigram');
INSERT INTO {doc}_vocab_tri SELECT word FROM {doc}_vocab;
"""
# Words found in at least this share of the documents (and COMMON_MIN_DOCS) are listed
# in ``<doc>_common`` with their document counts: the search uses them to start from
# its most selective word ("comprime" is in half the drug documents).
COMMON_SHARE = 0.005
COMMON_MIN_DOCS = 20
_META_SCHEMA = "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID"

# Tables compared between two imports: (table, key column).
COMPARED = {BDPM: (("specialty", "cis"), ("presentation", "cip13")),
            DEVICES: (("device", "code"),)}
# Keys added, keys removed, rows added or changed (all columns compared); the second
# form, for a previous file of another schema, compares keys only.
_DIFF_SQL = """SELECT
  (SELECT count(*) FROM (SELECT {key} FROM main.{table} EXCEPT SELECT {key} FROM old.{table})),
  (SELECT count(*) FROM (SELECT {key} FROM old.{table} EXCEPT SELECT {key} FROM main.{table})),
  (SELECT count(*) FROM (SELECT * FROM main.{table} EXCEPT SELECT * FROM old.{table}))"""
_KEY_DIFF_SQL = """SELECT
  (SELECT count(*) FROM (SELECT {key} FROM main.{table} EXCEPT SELECT {key} FROM old.{table})),
  (SELECT count(*) FROM (SELECT {key} FROM old.{table} EXCEPT SELECT {key} FROM main.{table})),
  0"""
_BDPM_TABLES = ("specialty", "presentation", "composition", "generic_group", "condition")
_DRUG_TABLES = (*_BDPM_TABLES, "drug_doc")


@dataclass(frozen=True)
class TableChange:
    """Rows of one table compared with the previous referential."""

    added: int = 0
    removed: int = 0
    changed: int = 0


@dataclass(frozen=True)
class FileCount:
    """One source file: data rows read, rows imported, rows refused as malformed."""

    name: str
    rows: int
    imported: int
    malformed: int


@dataclass
class ImportReport:
    """What an import did; ``unchanged`` when the source was identical to the last one."""

    part: str
    source: str
    sha256: str
    unchanged: bool
    date: str
    imported_at: str
    files: list[FileCount] = field(default_factory=list)
    errors: list[RowError] = field(default_factory=list)
    changes: dict[str, TableChange] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)


def _statements(script: str) -> Iterator[str]:
    for statement in script.split(";\n"):
        if statement.strip():
            yield statement


def _execute(conn: sqlite3.Connection, script: str) -> None:
    for statement in _statements(script):
        conn.execute(statement)


def _file_counts(files: Iterable[SomeParsedFile | ParsedFile[DeviceRow]]) -> list[FileCount]:
    return [FileCount(f.name, f.rows, len(f.records), len(f.errors)) for f in files]


# --- search documents ----------------------------------------------------------------


def _dosage_and_substances(rows: list[CompositionRow]) -> tuple[str, list[str], str]:
    """Dosage text, substances to show, and the search key of every substance name.

    Within an element, a therapeutic fraction (FT) replaces the active substance (SA)
    it is linked to: ``RANITIDINE (CHLORHYDRATE DE) 168 mg`` is prescribed as
    ``RANITIDINE BASE 150 mg``.
    """
    groups: dict[tuple[str, int], list[CompositionRow]] = defaultdict(list)
    for row in rows:
        groups[(row.element, row.link)].append(row)
    shown: list[CompositionRow] = []
    for group in groups.values():
        fractions = [row for row in group if row.nature == "FT"]
        shown.extend(fractions or group)
    dosages = list(dict.fromkeys(row.dosage for row in shown if row.dosage))
    dosage = " + ".join(dosages)
    if len(dosage) > MAX_DOSAGE_CHARS:
        dosage = dosage[:MAX_DOSAGE_CHARS - 1] + "…"
    names = list(dict.fromkeys(row.substance for row in shown))
    every = dict.fromkeys(search_key(row.substance) for row in rows)
    return dosage, names, " ".join(every)


@dataclass
class _Specialty:
    """What every presentation of a specialty shares in its search document."""

    name: str
    form: str
    routes: str
    amm_date: str  # the oldest first among identical names (parallel imports come later)
    dosage: str
    substances: str
    name_key: str
    text_key: str
    stem_key: str
    facets: set[str]
    combination: bool  # more than one active substance or strength ("15 mg + 20 mg")
    family: tuple[str, str]  # name stem and substances: "DOLIPRANE", "paracetamol"
    form_class: int
    strength: Decimal | None
    paediatric: bool


def _specialty(specialty: SpecialtyRow | None, rows: list[CompositionRow]) -> _Specialty:
    name = specialty.name if specialty else ""
    form = specialty.form if specialty else ""
    routes = specialty.routes if specialty else ()
    dosage, substances, substances_key = _dosage_and_substances(rows)
    name_key = search_key(name)
    facts = terms.name_facts(name, form, tuple(routes))
    facets = set(facts.tokens)
    for row in rows:  # strengths per unit of administration ("un comprimé")
        if row.dosage and row.dosage_reference.startswith(("un ", "une ")):
            facets.update(token for amount in terms.amounts(row.dosage)
                          if amount.dimension is not None for token in amount.tokens())
    return _Specialty(
        name, form, LIST_SEPARATOR.join(routes),
        specialty.amm_date.isoformat() if specialty and specialty.amm_date else "~",
        dosage, LIST_SEPARATOR.join(substances), name_key,
        f"{name_key} {substances_key}".strip(), facts.stem, facets,
        len(substances) > 1 or " + " in dosage, (facts.stem, substances_key),
        facts.form_class, facts.strength, facts.paediatric)


PAEDIATRIC_CLASS = terms.OTHER_ROUTE + 1
RANKS = 2 * (PAEDIATRIC_CLASS + 1) * 2  # drug_rank's values: 0 to RANKS - 1


def drug_rank(marketed: bool, form_class: int, paediatric: bool, combination: bool) -> int:
    """0–19, best first: marketed before not; then tablets and capsules to swallow,
    effervescent, dispersible, orodispersible or chewable ones, other oral forms, other
    routes, paediatric presentations (``terms.NameFacts.form_class``); then one active
    substance before several (AMOXICILLINE before AMOXICILLINE/ACIDE CLAVULANIQUE)."""
    group = PAEDIATRIC_CLASS if paediatric else form_class
    return (0 if marketed else RANKS // 2) + 2 * group + combination


def _paediatric_strengths(specialties: Iterable[_Specialty]) -> None:
    """Mark as paediatric the low-strength presentations of a family that has tablets.

    Within one family (same name stem, same substances), a form other than a solid oral
    one whose strength per unit is below every solid oral strength of the family is
    ranked with the paediatric presentations: DOLIPRANE 100 mg to 300 mg in sachets and
    suppositories, where DOLIPRANE tablets start at 500 mg. Families without tablets
    (KARDEGIC sachets) and strengths per ml are left alone."""
    lowest: dict[tuple[str, str], Decimal] = {}
    for s in specialties:
        if s.form_class <= terms.SPECIAL_SOLID and s.strength is not None and not s.paediatric:
            lowest[s.family] = min(lowest.get(s.family, s.strength), s.strength)
    for s in specialties:
        floor = lowest.get(s.family)
        if (s.form_class > terms.SPECIAL_SOLID and s.strength is not None and floor is not None
                and s.strength < floor):
            s.paediatric = True


_UNKNOWN_BOX = 1 << 31


def _box_count(box: str) -> int:
    """What the box holds, for the order: unknown sizes last."""
    count = box.split(" ", 1)[0]
    return int(count) if count.isdigit() else _UNKNOWN_BOX


def drug_documents(bdpm: Bdpm) -> list[tuple[object, ...]]:
    """One search document per presentation, in ranking order, numbered from 1."""
    specialties = {row.cis: row for row in bdpm.specialties.records}
    compositions: dict[str, list[CompositionRow]] = defaultdict(list)
    for row in bdpm.compositions.records:
        compositions[row.cis].append(row)
    per_cis = {cis: _specialty(specialties.get(cis), compositions.get(cis, []))
               for cis in dict.fromkeys(p.cis for p in bdpm.presentations.records)}
    _paediatric_strengths(per_cis.values())
    facets_of = {cis: " ".join(sorted(
        {*s.facets, terms.PAEDIATRIC if s.paediatric else terms.ADULT}))
        for cis, s in per_cis.items()}
    docs = []
    for p in bdpm.presentations.records:
        s = per_cis[p.cis]
        box, pack_tokens = terms.pack_facts(p.label)
        count = _box_count(box)
        # A token may be there twice (the form in the name and the pack): no matter.
        facets = f"{facets_of[p.cis]} {pack_tokens}" + (
            f" {terms.BOX}{count}" if count < _UNKNOWN_BOX else "")
        rank = drug_rank(p.marketed, s.form_class, s.paediatric, s.combination)
        sort = (rank, s.name_key, s.amm_date, p.cis, not p.reimbursement_rates, count,
                p.label, p.cip13)
        docs.append((sort, (
            p.cip13, p.cip7, p.cis, s.name, s.form, s.dosage, p.label, s.substances,
            s.routes, LIST_SEPARATOR.join(str(rate) for rate in p.reimbursement_rates),
            p.price_cents, int(p.marketed), s.name_key, s.text_key, rank, s.stem_key,
            facets.strip(), box)))
    docs.sort(key=lambda item: item[0])
    return [(number, *doc) for number, (_, doc) in enumerate(docs, start=1)]


def device_documents(rows: Iterable[tuple[str, str]]) -> list[tuple[int, str, str, str, str]]:
    """One search document per LPP code, in ranking order, numbered from 1."""
    keyed = sorted((search_key(label), code, label) for code, label in rows)
    return [(number, code, label, key, key)
            for number, (key, code, label) in enumerate(keyed, start=1)]


# --- writing -----------------------------------------------------------------------


def _iso(value: object) -> object:
    return value.isoformat() if hasattr(value, "isoformat") else value


def _write_bdpm(conn: sqlite3.Connection, bdpm: Bdpm) -> None:
    _execute(conn, _BDPM_SCHEMA)
    conn.executemany(
        "INSERT INTO specialty VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
        ((r.cis, r.name, r.form, LIST_SEPARATOR.join(r.routes), r.amm_status,
          r.amm_procedure, r.marketing, _iso(r.amm_date), r.bdm_status, r.eu_number,
          LIST_SEPARATOR.join(r.holders), int(r.reinforced_monitoring))
         for r in bdpm.specialties.records))
    conn.executemany(
        "INSERT INTO presentation VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
        ((r.cip13, r.cip7, r.cis, r.label, r.admin_status, r.marketing,
          _iso(r.marketing_date), r.collectivities,
          LIST_SEPARATOR.join(str(rate) for rate in r.reimbursement_rates),
          r.price_cents, r.price_with_fee_cents, r.fee_cents, r.indications)
         for r in bdpm.presentations.records))
    conn.executemany(
        "INSERT INTO composition VALUES (?,?,?,?,?,?,?,?)",
        ((r.cis, r.element, r.substance_code, r.substance, r.dosage, r.dosage_reference,
          r.nature, r.link) for r in bdpm.compositions.records))
    conn.executemany(
        "INSERT INTO generic_group VALUES (?,?,?,?,?)",
        ((r.group_id, r.group_label, r.cis, r.kind, r.sort) for r in bdpm.generics.records))
    conn.executemany("INSERT INTO condition VALUES (?,?)",
                     ((r.cis, r.text) for r in bdpm.conditions.records))
    conn.executemany(f"INSERT INTO drug_doc VALUES ({','.join('?' * 19)})",  # noqa: S608
                     drug_documents(bdpm))
    _finish_drugs(conn)


def _index_documents(conn: sqlite3.Connection, doc: str, columns: str) -> None:
    """Full-text indexes, vocabulary and common-word counts of a document table."""
    _execute(conn, _FTS.format(doc=doc, columns=columns))
    total = conn.execute(f"SELECT count(*) FROM {doc}").fetchone()[0]  # noqa: S608
    least = max(COMMON_MIN_DOCS, int(total * COMMON_SHARE))
    conn.execute(f"INSERT INTO {doc}_common SELECT word, docs FROM {doc}_vocab "  # noqa: S608
                 "WHERE docs >= ?", (least,))


def _finish_drugs(conn: sqlite3.Connection) -> None:
    _execute(conn, _BDPM_INDEXES)
    _index_documents(conn, "drug_doc", "text_key, facets")


def _write_devices(conn: sqlite3.Connection, rows: Iterable[tuple[str, str]]) -> None:
    rows = list(rows)
    _execute(conn, _DEVICE_SCHEMA)
    conn.executemany("INSERT INTO device VALUES (?, ?)", rows)
    conn.executemany("INSERT INTO device_doc VALUES (?,?,?,?,?)", device_documents(rows))
    _execute(conn, _DEVICE_INDEXES)
    _index_documents(conn, "device_doc", "text_key")


def _copy_drugs(conn: sqlite3.Connection) -> None:
    _execute(conn, _BDPM_SCHEMA)
    for table in _DRUG_TABLES:
        conn.execute(f"INSERT INTO main.{table} SELECT * FROM old.{table}")  # noqa: S608
    _finish_drugs(conn)


def _listed(value: str | None) -> tuple[str, ...]:
    return tuple(value.split(LIST_SEPARATOR)) if value else ()


def _day(value: str | None) -> date | None:
    return date.fromisoformat(value) if value else None


def stored_bdpm(conn: sqlite3.Connection, schema: str = "main") -> Bdpm:
    """The specialties, presentations and compositions held by the BDPM tables of
    ``schema`` (what ``drug_documents`` reads; no generic groups nor conditions), as
    the parser gave them to the import that wrote them."""
    from appliance.store.referential import bdpm as b

    specialties = [b.SpecialtyRow(
        cis=cis, name=name, form=form, routes=_listed(routes), amm_status=amm_status,
        amm_procedure=amm_procedure, marketing=marketing, amm_date=_day(amm_date),
        bdm_status=bdm_status, eu_number=eu_number, holders=_listed(holders),
        reinforced_monitoring=bool(reinforced))
        for (cis, name, form, routes, amm_status, amm_procedure, marketing, amm_date,
             bdm_status, eu_number, holders, reinforced) in conn.execute(
            "SELECT cis, name, form, routes, amm_status, amm_procedure, marketing, "  # noqa: S608
            "amm_date, bdm_status, eu_number, holders, reinforced_monitoring "
            f"FROM {schema}.specialty")]
    presentations = [b.PresentationRow(
        cis=cis, cip7=cip7, label=label, admin_status=admin_status, marketing=marketing,
        marketing_date=_day(marketing_date), cip13=cip13, collectivities=collectivities,
        reimbursement_rates=tuple(int(rate) for rate in _listed(rates)),
        price_cents=price, price_with_fee_cents=price_with_fee, fee_cents=fee,
        indications=indications)
        for (cip13, cip7, cis, label, admin_status, marketing, marketing_date, collectivities,
             rates, price, price_with_fee, fee, indications) in conn.execute(
            "SELECT cip13, cip7, cis, label, admin_status, marketing, marketing_date, "  # noqa: S608
            "collectivities, reimbursement_rates, price_cents, price_with_fee_cents, "
            f"fee_cents, indications FROM {schema}.presentation")]
    compositions = [b.CompositionRow(*row) for row in conn.execute(  # in the file's order
        "SELECT cis, element, substance_code, substance, dosage, dosage_reference, "  # noqa: S608
        f"nature, link FROM {schema}.composition ORDER BY rowid")]
    return b.Bdpm(b.ParsedFile(b.SPECIALTIES, specialties),
                  b.ParsedFile(b.PRESENTATIONS, presentations),
                  b.ParsedFile(b.COMPOSITIONS, compositions),
                  b.ParsedFile(b.GENERICS), b.ParsedFile(b.CONDITIONS))


def _rebuild_drugs(conn: sqlite3.Connection) -> None:
    """The drug part of a previous file of an older schema: its BDPM tables copied, its
    search documents and indexes made again from them."""
    _execute(conn, _BDPM_SCHEMA)
    for table in _BDPM_TABLES:
        conn.execute(f"INSERT INTO main.{table} SELECT * FROM old.{table}")  # noqa: S608
    conn.executemany(f"INSERT INTO drug_doc VALUES ({','.join('?' * 19)})",  # noqa: S608
                     drug_documents(stored_bdpm(conn)))
    _finish_drugs(conn)


def _has_table(conn: sqlite3.Connection, schema: str, table: str) -> bool:
    row = conn.execute(f"SELECT 1 FROM {schema}.sqlite_master WHERE type = 'table' "  # noqa: S608
                       "AND name = ?", (table,)).fetchone()
    return row is not None


def _changes(conn: sqlite3.Connection, part: str, has_old: bool) -> dict[str, TableChange]:
    """Added, removed and changed rows; rows of another schema version count as changed
    only if their key is new or gone."""
    same_schema = _old_schema(conn, has_old) == SCHEMA_VERSION
    out = {}
    for table, key in COMPARED[part]:
        if not has_old or not _has_table(conn, "old", table):
            total = conn.execute(f"SELECT count(*) FROM main.{table}").fetchone()[0]  # noqa: S608
            out[table] = TableChange(added=total)
            continue
        sql = _DIFF_SQL if same_schema else _KEY_DIFF_SQL
        added, removed, differing = conn.execute(sql.format(key=key, table=table)).fetchone()
        out[table] = TableChange(added=added, removed=removed,
                                 changed=differing - added if same_schema else 0)
    return out


def table_counts(conn: sqlite3.Connection) -> dict[str, int]:
    """Rows per main table of the referential on ``conn``, by table name."""
    tables = [row[0] for row in conn.execute(
        "SELECT name FROM main.sqlite_master WHERE type = 'table' AND name IN "
        "('specialty', 'presentation', 'composition', 'generic_group', 'condition', 'device') "
        "ORDER BY name")]
    return {t: conn.execute(f"SELECT count(*) FROM main.{t}").fetchone()[0]  # noqa: S608
            for t in tables}


# --- files, lock and swap -------------------------------------------------------------


def referential_path(data_dir: Path) -> Path:
    return Path(data_dir) / REFERENTIAL_FILE


def _temp_glob(path: Path) -> str:
    return f".{path.name}.*.tmp*"


@contextlib.contextmanager
def import_lock(path: Path) -> Iterator[None]:
    """One import at a time; inside, the leftovers of killed imports are removed."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=DIR_MODE)
        fd = os.open(path.with_name(path.name + ".lock"), os.O_CREAT | os.O_RDWR, FILE_MODE)
    except OSError as exc:
        raise StoreError(f"cannot prepare the referential in {path.parent}: {exc}") from exc
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        for stale in path.parent.glob(_temp_glob(path)):
            log.warning("removing a temporary file left by an interrupted import",
                        extra={"fields": {"file": stale.name}})
            stale.unlink(missing_ok=True)
        yield
    finally:
        os.close(fd)


def read_meta(path: Path) -> dict[str, str]:
    """The ``meta`` table of the current referential; ``{}`` if none or unreadable."""
    if not path.exists():
        return {}
    try:
        conn = sqlite3.connect(readonly_uri(path), uri=True)
        try:
            return dict(conn.execute("SELECT key, value FROM meta").fetchall())
        finally:
            conn.close()
    except sqlite3.Error as exc:
        log.warning("the current referential is unreadable; it will be replaced",
                    extra={"fields": {"path": str(path), "error": str(exc)}})
        return {}


def _attach_old(conn: sqlite3.Connection, path: Path) -> bool:
    """Attach the current referential as ``old``; ``False`` if there is none or it is
    unreadable (then it is simply replaced)."""
    if not path.exists():
        return False
    try:
        conn.execute("ATTACH DATABASE ? AS old", (readonly_uri(path),))
        conn.execute("SELECT count(*) FROM old.sqlite_master").fetchone()
    except sqlite3.Error as exc:
        log.warning("the current referential is unreadable; it will be replaced",
                    extra={"fields": {"path": str(path), "error": str(exc)}})
        with contextlib.suppress(sqlite3.Error):
            conn.execute("DETACH DATABASE old")
        return False
    return True


def readonly_uri(path: Path) -> str:
    """A URI opening ``path`` read-only and immutable: the file is never written in place."""
    return f"{path.resolve().as_uri()}?mode=ro&immutable=1"


def _fsync(path: Path, flags: int = os.O_RDONLY) -> None:
    fd = os.open(path, flags)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def replace_referential(path: Path, fill: Callable[[sqlite3.Connection, bool], R]) -> R:
    """Build a new referential with ``fill(conn, has_old)`` and swap it in atomically.

    ``fill`` runs inside one transaction on the new file, with the previous referential
    (if any) attached read-only as ``old``. Call with the import lock held.
    """
    temp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    try:
        os.close(os.open(temp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, FILE_MODE))
        conn = sqlite3.connect(str(temp), isolation_level=None)
        try:
            # The temporary file is thrown away on any failure: no journal needed.
            conn.execute("PRAGMA journal_mode = OFF")
            conn.execute("PRAGMA synchronous = OFF")
            has_old = _attach_old(conn, path)
            conn.execute("BEGIN")
            result = fill(conn, has_old)
            conn.execute("COMMIT")
            if has_old:
                conn.execute("DETACH DATABASE old")
            conn.execute("ANALYZE")
        finally:
            conn.close()
        _fsync(temp)
        os.replace(temp, path)
        _fsync(path.parent)
    except (OSError, sqlite3.Error) as exc:
        temp.unlink(missing_ok=True)
        raise StoreError(f"cannot build the referential {path}: {exc}") from exc
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    return result


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _write_meta(conn: sqlite3.Connection, has_old: bool, values: dict[str, str]) -> None:
    conn.execute(_META_SCHEMA)
    if has_old:
        conn.execute("INSERT INTO main.meta SELECT key, value FROM old.meta")
    conn.executemany("INSERT OR REPLACE INTO main.meta VALUES (?, ?)",
                     [*values.items(), ("schema_version", SCHEMA_VERSION)])


def _old_schema(conn: sqlite3.Connection, has_old: bool) -> str | None:
    if not has_old or not _has_table(conn, "old", "meta"):
        return None
    row = conn.execute("SELECT value FROM old.meta WHERE key = 'schema_version'").fetchone()
    return row[0] if row else None


def import_bdpm(path: Path, bdpm: Bdpm, *, source: str, sha256: str, date: str) -> ImportReport:
    """Replace the drug part of the referential with ``bdpm`` (lock held by the caller)."""
    report = ImportReport(BDPM, source, sha256, False, date, _now(),
                          files=_file_counts(bdpm.files()), errors=bdpm.errors)

    def fill(conn: sqlite3.Connection, has_old: bool) -> None:
        _write_bdpm(conn, bdpm)
        devices: list[tuple[str, str]] = []
        if has_old and _has_table(conn, "old", "device"):
            devices = conn.execute("SELECT code, label FROM old.device").fetchall()
        if devices:
            _write_devices(conn, devices)
        _write_meta(conn, has_old, {"bdpm_sha256": sha256, "bdpm_date": date,
                                    "bdpm_source": source,
                                    "bdpm_imported_at": report.imported_at})
        report.changes = _changes(conn, BDPM, has_old)
        report.counts = table_counts(conn)

    replace_referential(path, fill)
    return report


def import_devices(path: Path, devices: ParsedFile[DeviceRow], *, source: str, sha256: str,
                   date: str) -> ImportReport:
    """Replace the device part of the referential (lock held by the caller)."""
    report = ImportReport(DEVICES, source, sha256, False, date, _now(),
                          files=_file_counts([devices]), errors=list(devices.errors))

    def fill(conn: sqlite3.Connection, has_old: bool) -> None:
        if has_old and _has_table(conn, "old", "drug_doc"):
            version = _old_schema(conn, has_old)
            if version in UPGRADABLE_SCHEMAS:
                _rebuild_drugs(conn)
            elif version != SCHEMA_VERSION:
                raise StoreError(
                    f"the drug referential has schema {version}, this version writes "
                    f"{SCHEMA_VERSION}: import the BDPM again first")
            else:
                _copy_drugs(conn)
        _write_devices(conn, ((r.code, r.label) for r in devices.records))
        _write_meta(conn, has_old, {"devices_sha256": sha256, "devices_date": date,
                                    "devices_source": source,
                                    "devices_imported_at": report.imported_at})
        report.changes = _changes(conn, DEVICES, has_old)
        report.counts = table_counts(conn)

    replace_referential(path, fill)
    return report


def upgrade(path: Path) -> bool:
    """Bring a referential of an older schema (``UPGRADABLE_SCHEMAS``) to this version's:
    a new file with the same BDPM and LPP rows and ``meta`` (dates, sources, hashes: the
    same source imported again stays a no-op), its search documents and indexes made
    again from those rows, swapped in atomically like an import (the old file stays on
    any failure). Takes the import lock; ``False`` if the file needs nothing (another
    process upgraded it meanwhile). ``StoreError`` if it cannot be done."""
    started = time.monotonic()
    with import_lock(path):
        version = read_meta(path).get("schema_version")
        if version == SCHEMA_VERSION:
            return False
        if version not in UPGRADABLE_SCHEMAS:
            raise StoreError(f"the referential {path} has schema {version}, which this "
                             "version cannot upgrade: import the BDPM again")

        def fill(conn: sqlite3.Connection, has_old: bool) -> None:
            if not has_old:
                raise StoreError(f"the referential {path} became unreadable")
            if _has_table(conn, "old", "drug_doc"):
                _rebuild_drugs(conn)
            if _has_table(conn, "old", "device"):
                _write_devices(conn, conn.execute("SELECT code, label FROM old.device"
                                                  ).fetchall())
            _write_meta(conn, has_old, {"upgraded_from_schema": version,
                                        "upgraded_at": _now()})

        replace_referential(path, fill)
    log.info("referential upgraded", extra={"fields": {
        "from_schema": version, "to_schema": SCHEMA_VERSION,
        "seconds": round(time.monotonic() - started, 2)}})
    return True
