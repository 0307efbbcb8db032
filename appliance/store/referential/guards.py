"""What a BDPM import must pass before anything is written.

A bad source (five empty files, truncated files, a ZIP of junk) used to replace the
referential with a nearly empty one: nothing could be prescribed any more. Three guards:

- **Rows**: each file must give at least its minimum of valid rows. Any import:
  ``FLOOR`` (one specialty, one presentation, one composition). ``ordo drugs import``
  asks for ``RELEASE_MINIMUMS``, half the rows of the 2022 release (15,676 specialties,
  20,747 presentations, 32,340 compositions, 10,009 generic-group rows, 24,767
  conditions), unless ``--allow-small`` (a test or demo extract).
- **Shrink**: an import that would remove more than ``MAX_REMOVED_SHARE`` (5 %) of the
  specialties of the current referential is refused unless forced (``--allow-shrink``);
  the message names how many would go.
- **Archives**: a ZIP's members are checked from its directory before any byte is
  decompressed: each at most ``MAX_FILE_BYTES``, all five at most ``MAX_TOTAL_BYTES``,
  and none over 1 MiB that expands more than ``MAX_RATIO`` times (the real files deflate
  5 to 10 times; a ZIP bomb, a thousand times). A member is then read no further than
  its declared size.

Each refusal is an ``appliance.errors.ImportRefused`` (a ``ValidationError``: exit code 1)
with a French message for the CLI.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from appliance.errors import ImportRefused
from appliance.store.referential.bdpm import (
    COMPOSITIONS,
    CONDITIONS,
    GENERICS,
    PRESENTATIONS,
    SPECIALTIES,
)
from appliance.store.referential.build import readonly_uri

if TYPE_CHECKING:
    from appliance.store.referential.bdpm import Bdpm

MAX_REMOVED_SHARE = 0.05
FLOOR: Mapping[str, int] = {SPECIALTIES: 1, PRESENTATIONS: 1, COMPOSITIONS: 1}
RELEASE_MINIMUMS: Mapping[str, int] = {SPECIALTIES: 8_000, PRESENTATIONS: 10_000,
                                       COMPOSITIONS: 16_000, GENERICS: 5_000,
                                       CONDITIONS: 5_000}
# The referential's tables and the minimums the doctor compares them with.
TABLE_MINIMUMS: Mapping[str, int] = {"specialty": RELEASE_MINIMUMS[SPECIALTIES],
                                     "presentation": RELEASE_MINIMUMS[PRESENTATIONS]}
MAX_FILE_BYTES = 64 * 1024 * 1024   # the largest real file is 4 MB
MAX_TOTAL_BYTES = 128 * 1024 * 1024  # the five real files are 12 MB
MAX_RATIO = 100
RATIO_FROM_BYTES = 1024 * 1024


def check_rows(bdpm: Bdpm, minimums: Mapping[str, int] = FLOOR) -> None:
    """Refuse a release a file of which is junk or has fewer valid rows than its minimum."""
    junk = [parsed for parsed in bdpm.files() if parsed.abandoned_at is not None]
    if junk:
        english = "; ".join(f"{p.name}: {len(p.errors)} malformed lines by line "
                            f"{p.abandoned_at}, {len(p.records)} valid rows" for p in junk)
        french = " ; ".join(f"{p.name} : {len(p.errors)} lignes rejetées avant la ligne "
                            f"{p.abandoned_at}, pour {len(p.records)} valides" for p in junk)
        raise ImportRefused("source", junk[0].name, f"BDPM files with valid rows ({english})",
                            f"{french} : ce ne sont pas des fichiers de la BDPM.")
    short = [(parsed.name, len(parsed.records), minimums[parsed.name])
             for parsed in bdpm.files()
             if len(parsed.records) < minimums.get(parsed.name, 0)]
    if not short:
        return
    english = "; ".join(f"{name}: {found} valid rows, fewer than {least}"
                        for name, found, least in short)
    french = " ; ".join(f"{name} : {found} ligne{'s' if found > 1 else ''} valide"
                        f"{'s' if found > 1 else ''} pour un minimum de {least}"
                        for name, found, least in short)
    raise ImportRefused("source", short[0][0], f"a whole BDPM release ({english})",
                        f"{french}. Fichiers vides, tronqués ou qui ne sont pas la BDPM ? "
                        "Pour un extrait de test ou de démonstration : --allow-small.")


def check_shrink(path: Path, new_cis: Iterable[str], *, allow_shrink: bool = False) -> None:
    """Refuse to remove more than ``MAX_REMOVED_SHARE`` of the current specialties."""
    if allow_shrink or not path.exists():
        return
    try:
        conn = sqlite3.connect(readonly_uri(path), uri=True)
        try:
            old = {row[0] for row in conn.execute("SELECT cis FROM specialty")}
        finally:
            conn.close()
    except sqlite3.Error:
        return  # no usable referential: nothing to protect
    if not old:
        return
    removed = len(old - set(new_cis))
    if removed <= MAX_REMOVED_SHARE * len(old):
        return
    share = round(100 * removed / len(old))
    raise ImportRefused(
        "source", f"{removed} of {len(old)} specialties removed",
        f"an import removing at most {MAX_REMOVED_SHARE:.0%} of the specialties "
        "(--allow-shrink to force)",
        f"{removed} spécialités retirées sur {len(old)} ({share} %), plus que les "
        f"{MAX_REMOVED_SHARE * 100:.0f} % permis. Vérifiez la source ; pour forcer : "
        "--allow-shrink.",
        removed=removed, previous=len(old))


def check_archive_members(members: Iterable[tuple[str, int, int]], described: str) -> None:
    """``(name, declared size, compressed size)`` of the members to read, before reading."""
    total = 0
    for name, size, compressed in members:
        where = f"{described}:{name}"
        if size > MAX_FILE_BYTES:
            raise ImportRefused("source", where, f"a file of at most {MAX_FILE_BYTES} bytes "
                                                 f"once decompressed (it says {size})",
                                f"{name} ferait {size} octets décompressé, plus que les "
                                f"{MAX_FILE_BYTES} permis.")
        if size > RATIO_FROM_BYTES and size > MAX_RATIO * max(compressed, 1):
            ratio = size // max(compressed, 1)
            raise ImportRefused("source", where,
                                f"a file compressed 1 to {MAX_RATIO} at most (it is "
                                f"1 to {ratio}: a ZIP bomb?)",
                                f"{name} est compressé de 1 à {ratio}, plus que 1 à "
                                f"{MAX_RATIO} : une bombe de décompression ?")
        total += size
    if total > MAX_TOTAL_BYTES:
        raise ImportRefused("source", described, f"files of at most {MAX_TOTAL_BYTES} bytes "
                                                 f"in all once decompressed ({total})",
                            f"les fichiers feraient {total} octets décompressés, plus que "
                            f"les {MAX_TOTAL_BYTES} permis.")
