"""A drug import that would wipe or gut the referential is refused before anything is
written: too many specialties removed, a file missing or nearly empty, a ZIP bomb, a line a
million characters long. ``ordo doctor`` checks the referential's counts."""

from __future__ import annotations

import io
import os
import sqlite3
import struct
import zipfile
from pathlib import Path

import pytest
from click.testing import CliRunner

from appliance.cli import main
from appliance.errors import ImportRefused
from appliance.services.referential import import_bdpm, open_referential
from appliance.store.referential import bdpm, referential_path
from appliance.store.referential.guards import MAX_REMOVED_SHARE, RELEASE_MINIMUMS
from tests.integration.test_drugs_import import (
    SMALL,
    SPECS,
    bdpm_files,
    compo,
    pres,
    spec,
    write_dir,
    zip_bytes,
)

pytestmark = pytest.mark.integration


def _big(n: int) -> dict[str, bytes]:
    """A release of ``n`` specialties, one presentation and one substance each."""
    specs = [spec(f"6{i:07d}", f"PRODUIT {i} 10 mg, comprimé") for i in range(n)]
    presentations = [pres(f"6{i:07d}", f"{1000000 + i}") for i in range(n)]
    return bdpm_files(specs, presentations, [compo(f"6{i:07d}", "SUBSTANCE") for i in range(n)])


def _mtime_ns(data_dir: Path) -> int:
    return referential_path(data_dir).stat().st_mtime_ns


def test_an_import_removing_more_than_five_percent_of_the_specialties_is_refused(tmp_path):
    import_bdpm(tmp_path, write_dir(tmp_path / "may", _big(100)))
    before = _mtime_ns(tmp_path)
    smaller = write_dir(tmp_path / "june", _big(94))  # 6 removed of 100
    with pytest.raises(ImportRefused) as err:
        import_bdpm(tmp_path, smaller)
    assert (err.value.removed, err.value.previous) == (6, 100)
    assert "6 spécialités retirées sur 100 (6 %)" in err.value.french
    assert "--allow-shrink" in err.value.french
    assert _mtime_ns(tmp_path) == before  # nothing written
    assert open_referential(tmp_path).info().counts["specialty"] == 100
    assert MAX_REMOVED_SHARE == 0.05
    import_bdpm(tmp_path, write_dir(tmp_path / "june2", _big(95)))  # 5 removed: allowed
    report = import_bdpm(tmp_path, smaller, allow_shrink=True)
    assert report.changes["specialty"].removed == 1


def test_five_empty_files_are_refused_naming_the_file(tmp_path):
    empty = write_dir(tmp_path / "empty", {name: b"" for name in SMALL})
    with pytest.raises(ImportRefused) as err:
        import_bdpm(tmp_path, empty)
    assert "CIS_bdpm.txt : 0 ligne valide" in err.value.french
    assert not referential_path(tmp_path).exists()


def test_a_zip_of_junk_is_refused(tmp_path):
    junk = tmp_path / "junk.zip"
    junk.write_bytes(zip_bytes({name: os.urandom(3000) for name in SMALL}))
    with pytest.raises(ImportRefused, match="0 ligne valide") as err:
        import_bdpm(tmp_path, junk)
    assert "valid rows" in err.value.expected
    assert not referential_path(tmp_path).exists()


def _declare(archive: bytes, member: str, size: int) -> bytes:
    """The same archive with ``member``'s uncompressed size in the central directory set
    to ``size`` (what a crafted archive can claim)."""
    data = bytearray(archive)
    at = data.find(b"PK\x01\x02")  # central directory file headers (APPNOTE 4.3.12)
    while at != -1:
        name_len = struct.unpack_from("<H", data, at + 28)[0]
        if data[at + 46:at + 46 + name_len].decode() == member:
            struct.pack_into("<I", data, at + 24, size)
        at = data.find(b"PK\x01\x02", at + 46)
    return bytes(data)


def _deflated(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def test_zip_bombs_are_refused_before_anything_is_decompressed(tmp_path):
    files = dict(SMALL)
    files[bdpm.COMPOSITIONS] = b"\n" * (32 << 20)  # 32 MiB that deflate to 32 kB
    ratio = tmp_path / "ratio.zip"
    ratio.write_bytes(_deflated(files))
    with pytest.raises(ImportRefused, match="bombe de décompression") as err:
        import_bdpm(tmp_path, ratio)
    assert "ZIP bomb" in err.value.expected
    claimed = tmp_path / "claimed.zip"
    claimed.write_bytes(_declare(zip_bytes(SMALL), bdpm.SPECIALTIES, 4_000_000_000))
    with pytest.raises(ImportRefused, match="4000000000 octets décompressé") as err:
        import_bdpm(tmp_path, claimed)
    assert "at most" in err.value.expected
    assert not referential_path(tmp_path).exists()


def test_a_million_character_line_is_reported_by_number_and_length(tmp_path):
    files = dict(SMALL)
    files[bdpm.SPECIALTIES] = files[bdpm.SPECIALTIES] + b"6" * 1_000_000 + b"\r\n"
    report = import_bdpm(tmp_path, write_dir(tmp_path / "src", files))
    (error,) = report.errors
    assert (error.file, error.line) == (bdpm.SPECIALTIES, len(SPECS) + 1)
    assert "1000000 bytes" in error.reason and "666" not in str(error)
    assert report.counts["specialty"] == len(SPECS)


def test_a_long_bad_code_is_shown_cut(tmp_path):
    files = dict(SMALL)
    files[bdpm.SPECIALTIES] += (spec("6" * 5000, "LONG") + "\r\n").encode()
    report = import_bdpm(tmp_path, write_dir(tmp_path / "src", files))
    (error,) = report.errors
    assert len(error.reason) < 200 and "…" in error.reason


# -- the command ---------------------------------------------------------------------------
def _ordo(data_dir: Path, *args: str):
    return CliRunner().invoke(main, ["--data-dir", str(data_dir), "drugs", "import", *args])


def test_the_command_refuses_in_french_with_a_non_zero_exit(tmp_path):
    data = tmp_path / "data"
    assert _ordo(data, str(write_dir(tmp_path / "may", _big(40))), "--allow-small").exit_code == 0
    result = _ordo(data, str(write_dir(tmp_path / "june", _big(10))), "--allow-small")
    assert result.exit_code == 1
    assert "Erreur : import refusé, référentiel inchangé : " in result.output
    assert "30 spécialités retirées sur 40 (75 %)" in result.output
    assert "--allow-shrink" in result.output
    forced = _ordo(data, str(tmp_path / "june"), "--allow-small", "--allow-shrink")
    assert forced.exit_code == 0 and "−30 retirées" in forced.output


def test_the_command_wants_a_whole_release_unless_told_otherwise(tmp_path):
    result = _ordo(tmp_path / "data", str(write_dir(tmp_path / "small", SMALL)))
    assert result.exit_code == 1
    assert f"{len(SPECS)} lignes valides pour un minimum de " \
        f"{RELEASE_MINIMUMS[bdpm.SPECIALTIES]}" in result.output
    assert "--allow-small" in result.output
    assert not referential_path(tmp_path / "data").exists()


# -- the doctor ----------------------------------------------------------------------------
def test_the_doctor_checks_the_referential_counts(tmp_path):
    from appliance.ops.doctor import FAIL, WARN, run_doctor
    from tests.integration.test_ops_helpers import settings_for

    settings = settings_for(tmp_path)
    import_bdpm(settings.data_dir, write_dir(tmp_path / "small", SMALL))
    check = run_doctor(settings).get("referential")
    assert check.status == WARN and f"{len(SPECS)} specialties" in check.detail
    assert "demo or test extract" in check.hint
    conn = sqlite3.connect(referential_path(settings.data_dir))
    conn.execute("DELETE FROM specialty")
    conn.commit()
    conn.close()
    check = run_doctor(settings).get("referential")
    assert check.status == FAIL and "0 specialties" in check.detail


def test_a_file_of_junk_lines_is_read_no_further_and_refused(tmp_path):
    files = dict(SMALL)
    files[bdpm.COMPOSITIONS] = b"junk\n" * (8 << 20)  # 40 MiB, 8 million malformed lines
    with pytest.raises(ImportRefused) as err:
        import_bdpm(tmp_path, write_dir(tmp_path / "src", files))
    assert "CIS_COMPO_bdpm.txt : 1000 lignes rejetées avant la ligne 1001" in err.value.french
    assert not referential_path(tmp_path).exists()
