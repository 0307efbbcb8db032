"""Use cases of the drug and device referential: import (directory, zip, URL) and search.

A BDPM source is one of:

- a directory holding the five files (``CIS_bdpm.txt``, ``CIS_CIP_bdpm.txt``,
  ``CIS_COMPO_bdpm.txt``, ``CIS_GENER_bdpm.txt``, ``CIS_CPD_bdpm.txt``; names matched
  without regard to case);
- a zip holding them (at any depth);
- an http(s) URL (httpx, TLS verified): a URL ending in ``.zip`` is one zip; a URL
  containing ``{file}`` is a template; a ``.php`` URL, like the ANSM's
  ``telechargement.php``, gets ``?fichier=<name>`` per file (the ANSM site's form);
  any other URL is a folder, ``<url>/<name>``. Each download is bounded
  (``appliance.http_limits``): ``HTTP_DEADLINE_S`` for the whole request, the body
  streamed and refused past ``MAX_FILE_BYTES``, redirects followed only on the same host
  and never from https to http.

The referential's date is ``--date`` if given, else the newest modification date the
source reports (file mtime, zip entry date, HTTP ``Last-Modified``), else the import
day (UTC). Fetching happens here; parsing (``store.referential.bdpm``) is pure, and
building (``store.referential.build``) is atomic.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import ssl
import time
import zipfile
import zlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from appliance.errors import StoreError, ValidationError
from appliance.store.referential import build, guards
from appliance.store.referential.bdpm import FILE_NAMES, parse_bdpm
from appliance.store.referential.build import (
    ImportReport,
    import_lock,
    read_meta,
    referential_path,
)
from appliance.store.referential.devices import parse_devices
from appliance.store.referential.search import Presentation, Referential

if TYPE_CHECKING:  # httpx is imported by the download only: the kiosk opens the referential
    import httpx

log = logging.getLogger(__name__)

MAX_FILE_BYTES = guards.MAX_FILE_BYTES
HTTP_TIMEOUT_S, HTTP_CONNECT_TIMEOUT_S = 60.0, 15.0
# The whole of one download (connection, headers and body): a 4 MB file at 512 kbit/s.
HTTP_DEADLINE_S = 120.0
MAX_REDIRECTS = 5
ZIP_MAGIC = b"PK\x03\x04"


@dataclass(frozen=True)
class SourceFile:
    """One fetched file: its bytes and the modification date the source gave, if any."""

    name: str
    data: bytes
    modified: datetime | None = None


def open_referential(data_dir: Path) -> Referential:
    """The referential of ``data_dir`` (opened lazily, on first query)."""
    return Referential(referential_path(data_dir))


# --- search -------------------------------------------------------------------------


@dataclass(frozen=True)
class DrugSearch:
    """The presentations found, best first, and when there are none, why (in French)."""

    results: list[Presentation]
    hint: str = ""


def search_drugs(referential: Referential, text: str, limit: int = 20) -> DrugSearch:
    """Search drugs as the kiosk and ``ordo drugs search`` do; an empty answer carries
    "Aucun résultat" and what to type instead (``Referential.hint``)."""
    results = referential.search(text, limit)
    return DrugSearch(results, "" if results or not text.strip() else referential.hint(text))


# --- sources ------------------------------------------------------------------------


def _is_url(source: str | Path) -> bool:
    return isinstance(source, str) and urlsplit(source).scheme.lower() in {"http", "https"}


def _pick(available: Iterable[str], source: str) -> dict[str, str]:
    """Map each BDPM file name to the matching available name (case-insensitive)."""
    by_lower: dict[str, list[str]] = {}
    for name in available:
        by_lower.setdefault(Path(name).name.lower(), []).append(name)
    picked, missing = {}, []
    for wanted in FILE_NAMES:
        matches = by_lower.get(wanted.lower(), [])
        if len(matches) > 1:
            raise ValidationError("source", source, f"one {wanted}, found {len(matches)}")
        if matches:
            picked[wanted] = matches[0]
        else:
            missing.append(wanted)
    if missing:
        raise ValidationError("source", source,
                              f"the BDPM files {', '.join(FILE_NAMES)} "
                              f"(missing: {', '.join(missing)})")
    return picked


def _from_directory(directory: Path) -> dict[str, SourceFile]:
    picked = _pick((p.name for p in directory.iterdir() if p.is_file()), str(directory))
    try:
        sizes = {actual: (directory / actual).stat().st_size for actual in picked.values()}
    except OSError as exc:
        raise ValidationError("source", str(directory), f"readable files ({exc})") from exc
    guards.check_archive_members(((name, size, size) for name, size in sizes.items()),
                                 str(directory))
    files = {}
    for wanted, actual in picked.items():
        path = directory / actual
        try:
            with path.open("rb") as handle:
                data = handle.read(guards.MAX_FILE_BYTES + 1)
                modified = datetime.fromtimestamp(os.fstat(handle.fileno()).st_mtime, UTC)
        except OSError as exc:
            raise ValidationError("source", str(path), f"a readable file ({exc})") from exc
        if len(data) > guards.MAX_FILE_BYTES:  # it grew since
            raise ValidationError("source", str(path),
                                  f"a file of at most {guards.MAX_FILE_BYTES} bytes")
        files[wanted] = SourceFile(wanted, data, modified)
    return files


def _from_zip(data: bytes | Path, described: str) -> dict[str, SourceFile]:
    """The five files of a ZIP, checked from its directory before a byte is decompressed
    (``guards.check_archive_members``); zipfile reads a member no further than its
    declared size."""
    try:
        with zipfile.ZipFile(io.BytesIO(data) if isinstance(data, bytes) else data) as archive:
            members = {info.filename: info for info in archive.infolist() if not info.is_dir()}
            picked = _pick(members, described)
            guards.check_archive_members(
                ((actual, members[actual].file_size, members[actual].compress_size)
                 for actual in picked.values()), described)
            files = {}
            for wanted, actual in picked.items():
                info = members[actual]
                files[wanted] = SourceFile(wanted, archive.read(info),
                                           datetime(*info.date_time, tzinfo=UTC))
            return files
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, zlib.error) as exc:
        raise ValidationError("source", described, f"a readable zip file ({exc})") from exc


def _file_urls(url: str) -> dict[str, str]:
    if "{file}" in url:
        return {name: url.replace("{file}", name) for name in FILE_NAMES}
    path = urlsplit(url).path
    if path.lower().endswith(".php"):
        join = "&" if "?" in url else "?"
        return {name: f"{url}{join}fichier={name}" for name in FILE_NAMES}
    return {name: f"{url.rstrip('/')}/{name}" for name in FILE_NAMES}


def _download(client: httpx.Client, url: str, name: str, deadline_s: float) -> SourceFile:
    """GET one file: each request (and each redirect, same host and never off https)
    within ``deadline_s`` in all, the body streamed and refused past ``MAX_FILE_BYTES``."""
    import httpx

    from appliance import http_limits

    requested = url
    try:
        for _ in range(MAX_REDIRECTS + 1):
            with http_limits.deadline(deadline_s), \
                    client.stream("GET", url, headers=http_limits.IDENTITY) as response:
                if response.is_redirect:
                    url = http_limits.check_redirect(url, response.headers.get("location", ""))
                    continue
                response.raise_for_status()
                data = http_limits.read_capped(response, MAX_FILE_BYTES)
                modified = response.headers.get("last-modified")
                break
        else:
            raise StoreError(f"cannot download {requested}: more than {MAX_REDIRECTS} redirects")
    except http_limits.AnswerTooLarge as exc:
        raise ValidationError("source", url, f"a file of at most {MAX_FILE_BYTES} bytes "
                                             f"({exc})") from exc
    except (httpx.HTTPError, http_limits.RedirectRefused, http_limits.CompressedAnswer) as exc:
        raise StoreError(f"cannot download {url}: {exc}") from exc
    when = None
    if modified:
        try:
            when = parsedate_to_datetime(modified)
        except (TypeError, ValueError):
            when = None
    return SourceFile(name, data, when)


def _from_url(url: str, ca_file: str | None, deadline_s: float) -> dict[str, SourceFile]:
    # TLS is always verified: against the system's CAs, or the given bundle.
    try:
        verify = ssl.create_default_context(cafile=ca_file) if ca_file else True
    except (OSError, ssl.SSLError) as exc:
        raise ValidationError("ca_file", ca_file, f"a readable PEM bundle ({exc})") from exc
    import httpx

    from appliance.http_limits import BoundedTransport

    timeout = httpx.Timeout(HTTP_TIMEOUT_S, connect=HTTP_CONNECT_TIMEOUT_S)
    with httpx.Client(timeout=timeout, verify=verify, follow_redirects=False,
                      transport=BoundedTransport(verify=verify)) as client:
        if urlsplit(url).path.lower().endswith(".zip"):
            archive = _download(client, url, "archive.zip", deadline_s)
            return _from_zip(archive.data, url)
        return {name: _download(client, file_url, name, deadline_s)
                for name, file_url in _file_urls(url).items()}


def read_bdpm_source(source: str | Path, ca_file: str | None = None,
                     deadline_s: float = HTTP_DEADLINE_S) -> dict[str, SourceFile]:
    """Fetch the five BDPM files from a directory, a zip or an http(s) URL.

    ``ca_file``: a PEM bundle to verify the server with instead of the system's CAs;
    ``deadline_s``: the most each HTTP request may take, body included.
    """
    if _is_url(source):
        return _from_url(str(source), ca_file, deadline_s)
    path = Path(source)
    if path.is_dir():
        return _from_directory(path)
    if path.is_file():
        with path.open("rb") as handle:
            if handle.read(4) == ZIP_MAGIC:
                return _from_zip(path, str(path))
    raise ValidationError("source", str(source),
                          "a directory of BDPM files, a .zip of them, or an http(s) URL")


def digest(files: Iterable[SourceFile]) -> str:
    """SHA-256 over the files' names and bytes, in name order."""
    sha = hashlib.sha256()
    for f in sorted(files, key=lambda f: f.name):
        sha.update(f"{f.name}\0{len(f.data)}\0".encode())
        sha.update(f.data)
    return sha.hexdigest()


def _referential_date(files: Iterable[SourceFile], given: str | None) -> str:
    if given:
        try:
            return date.fromisoformat(given).isoformat()
        except ValueError:
            raise ValidationError("date", given, "a date YYYY-MM-DD") from None
    dates = [f.modified for f in files if f.modified is not None]
    return (max(dates) if dates else datetime.now(UTC)).date().isoformat()


def _describe(source: str | Path) -> str:
    """The source as stored and shown: an absolute path, or the URL without credentials."""
    if _is_url(source):
        parts = urlsplit(str(source))
        host = (parts.hostname or "") + (f":{parts.port}" if parts.port else "")
        return parts._replace(netloc=host).geturl()
    return str(Path(source).resolve())


# --- use cases ----------------------------------------------------------------------


def _unchanged(part: str, path: Path, meta: dict[str, str], source: str,
               sha256: str) -> ImportReport:
    referential = Referential(path)
    try:
        counts = referential.info().counts
    finally:
        referential.close()
    return ImportReport(part=part, source=source, sha256=sha256, unchanged=True,
                        date=meta.get(f"{part}_date", ""),
                        imported_at=meta.get(f"{part}_imported_at", ""), counts=counts)


def _import_part(part: str, path: Path, sha256: str, source: str,
                 build_part: Callable[[], ImportReport]) -> ImportReport:
    """Under the import lock: nothing to do if this part's source is unchanged, else build."""
    with import_lock(path):
        meta = read_meta(path)
        if (meta.get(f"{part}_sha256") == sha256
                and meta.get("schema_version") == build.SCHEMA_VERSION):
            return _unchanged(part, path, meta, source, sha256)
        return build_part()


def import_bdpm(data_dir: Path, source: str | Path, *, referential_date: str | None = None,
                ca_file: str | None = None, allow_shrink: bool = False,
                minimums: Mapping[str, int] = guards.FLOOR,
                deadline_s: float = HTTP_DEADLINE_S) -> ImportReport:
    """Import a BDPM release into ``<data_dir>/referential.sqlite``.

    Malformed rows are reported in ``ImportReport.errors`` and skipped; the same bytes
    as the last import leave the referential untouched (``unchanged``). Refused before
    anything is written (``guards.ImportRefused``): a file with fewer valid rows than
    ``minimums``, or more than 5 % of the specialties removed unless ``allow_shrink``.
    """
    started = time.monotonic()
    described = _describe(source)
    files = read_bdpm_source(source, ca_file=ca_file, deadline_s=deadline_s)
    sha256 = digest(files.values())
    when = _referential_date(files.values(), referential_date)
    path = referential_path(data_dir)

    def build_part() -> ImportReport:
        bdpm = parse_bdpm({name: f.data for name, f in files.items()})
        guards.check_rows(bdpm, minimums)
        guards.check_shrink(path, (row.cis for row in bdpm.specialties.records),
                            allow_shrink=allow_shrink)
        return build.import_bdpm(path, bdpm, source=described, sha256=sha256, date=when)

    report = _import_part(build.BDPM, path, sha256, described, build_part)
    log.info("BDPM import", extra={"fields": {
        "unchanged": report.unchanged, "date": report.date, "malformed": len(report.errors),
        "seconds": round(time.monotonic() - started, 2)}})
    return report


def import_devices(data_dir: Path, csv_file: Path) -> ImportReport:
    """Import an LPP code list (``CODE_LPP;L_CODE_LPP``) into the referential."""
    csv_file = Path(csv_file)
    try:
        data = csv_file.read_bytes()
        modified = datetime.fromtimestamp(csv_file.stat().st_mtime, UTC)
    except OSError as exc:
        raise ValidationError("file", str(csv_file), f"a readable CSV file ({exc})") from exc
    source = SourceFile("lpp", data, modified)  # the content decides, not the file name
    sha256 = digest([source])
    described = _describe(csv_file)
    path = referential_path(data_dir)
    report = _import_part(build.DEVICES, path, sha256, described, lambda: build.import_devices(
        path, parse_devices(data, csv_file.name), source=described, sha256=sha256,
        date=_referential_date([source], None)))
    log.info("LPP import", extra={"fields": {
        "unchanged": report.unchanged, "codes": report.counts.get("device", 0),
        "malformed": len(report.errors)}})
    return report
