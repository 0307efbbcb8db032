"""Referential imports on real files: sources (directory, zip, HTTP, HTTPS), atomic swap
(a real process killed mid-import), no-op re-import, change report, devices, CLI, and
the ranking tiers on a small hand-made BDPM."""

from __future__ import annotations

import datetime as dt
import http.server
import io
import ipaddress
import json
import os
import signal
import ssl
import subprocess
import sys
import threading
import time
import zipfile
from collections.abc import Iterator
from email.utils import format_datetime
from pathlib import Path
from typing import ClassVar
from urllib.parse import parse_qs, urlsplit

import pytest
from click.testing import CliRunner
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from stdnum import ean

from appliance.cli import main
from appliance.errors import StoreError, ValidationError
from appliance.services.referential import import_bdpm, import_devices, open_referential
from appliance.store.referential import bdpm, referential_path

REPO = Path(__file__).resolve().parents[2]
REAL_BDPM = REPO.parent / "shared" / "data" / "bdpm"
NO_REAL_BDPM = "../shared/data/bdpm absent (the full 2022 BDPM extract)"
MARKETED = "Commercialisée"
PRES_MARKETED = "Déclaration de commercialisation"
PRES_STOPPED = "Déclaration d'arrêt de commercialisation"


def cip13(cip7: str) -> str:
    return "34009" + cip7 + ean.calc_check_digit("34009" + cip7)


def spec(cis: str, name: str, form: str = "comprimé", marketed: bool = True) -> str:
    return "\t".join([cis, name, form, "orale", "Autorisation active", "Procédure nationale",
                      MARKETED if marketed else "Non commercialisée", "01/02/2003", "", "",
                      " LABO", "Non"])


def pres(cis: str, cip7: str, marketed: bool = True, price: str = "2,50",
         rate: str = "65 %") -> str:
    return "\t".join([cis, cip7, "boîte de 30 comprimé(s)", "Présentation active",
                      PRES_MARKETED if marketed else PRES_STOPPED, "01/02/2003", cip13(cip7),
                      "oui", rate, price, "3,52" if price else "", "1,02" if price else "", ""])


def compo(cis: str, substance: str, dosage: str = "10 mg") -> str:
    return "\t".join([cis, "comprimé", "01234", substance, dosage, "un comprimé", "SA", "1", ""])


def bdpm_files(specs: list[str], presentations: list[str], compos: list[str] = (),
               generics: list[str] = (), conditions: list[str] = ()) -> dict[str, bytes]:
    """The five files as the ANSM writes them: cp1252, CRLF except CIS_CIP (LF)."""
    def encode(lines, newline="\r\n"):
        return "".join(line + newline for line in lines).encode("cp1252")
    return {bdpm.SPECIALTIES: encode(specs), bdpm.PRESENTATIONS: encode(presentations, "\n"),
            bdpm.COMPOSITIONS: encode(compos), bdpm.GENERICS: encode(generics),
            bdpm.CONDITIONS: encode(conditions)}


def write_dir(directory: Path, files: dict[str, bytes]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        (directory / name).write_bytes(data)
    return directory


def zip_bytes(files: dict[str, bytes], folder: str = "") -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in files.items():
            info = zipfile.ZipInfo(folder + name, date_time=(2024, 5, 6, 7, 8, 9))
            archive.writestr(info, data)
    return buffer.getvalue()


# A small release: ranking tiers for "zol", one non-marketed presentation, an accent.
SPECS = [
    spec("60000001", "ZOLTAR 10 mg, comprimé"),
    spec("60000002", "ZOLTAR 20 mg, comprimé", marketed=False),
    spec("60000003", "ALPHA ZOLTARINE 5 mg, comprimé"),
    spec("60000004", "BETA 1 mg, comprimé"),
    spec("60000005", "GAMMAZOLTAR 1 mg, gélule", form="gélule"),
    spec("60000006", "DELTAZOL 2 mg, gélule", form="gélule"),
    spec("60000007", "ÉPHÉDRINE TEST 30 mg/10 ml, solution injectable",
         form="solution injectable"),
]
PRES = [
    pres("60000001", "1000001"), pres("60000002", "1000002", marketed=False),
    pres("60000003", "1000003"), pres("60000004", "1000004"), pres("60000005", "1000005"),
    pres("60000006", "1000006", marketed=False), pres("60000007", "1000007", rate="100%"),
    pres("60000001", "1000008", price="1,234,56"),
]
COMPOS = [compo("60000004", "ZOLTARIUM"), compo("60000007", "ÉPHÉDRINE (CHLORHYDRATE D')")]
SMALL = bdpm_files(SPECS, PRES, COMPOS, conditions=["60000007\tliste I"])


def labels(results) -> list[str]:
    return [r.name for r in results]


@pytest.fixture
def small_dir(tmp_path: Path) -> Path:
    return write_dir(tmp_path / "bdpm", SMALL)


def test_ranking_tiers_marketed_first_and_codes(tmp_path: Path, small_dir: Path) -> None:
    import_bdpm(tmp_path, small_dir)
    ref = open_referential(tmp_path)
    assert labels(ref.search("zol")) == [
        "ZOLTAR 10 mg, comprimé", "ZOLTAR 10 mg, comprimé",   # name prefix, marketed
        "ZOLTAR 20 mg, comprimé",                             # name prefix, not marketed
        "ALPHA ZOLTARINE 5 mg, comprimé", "BETA 1 mg, comprimé",  # word prefix (name, DCI)
        "GAMMAZOLTAR 1 mg, gélule",                           # substring, marketed
        "DELTAZOL 2 mg, gélule",                              # substring, not marketed
    ]
    assert [r.marketed for r in ref.search("zoltar 2")][:1] == [False]
    # An exact code comes before everything, whatever the names say.
    assert [r.cip13 for r in ref.search(cip13("1000006"))] == [cip13("1000006")]
    assert [r.cip7 for r in ref.search("1000006")] == ["1000006"]
    assert {r.cip13 for r in ref.search("60000001")} == {cip13("1000001"), cip13("1000008")}
    assert ref.search(f"(01)0{cip13('1000005')}(17)270101(10)AB12")[0].cip13 == cip13("1000005")
    assert ref.search("zol", limit=2) == ref.search("zol")[:2]
    assert ref.search("   ") == [] and ref.search("zol", limit=0) == []


def test_accents_case_dci_and_short_queries(tmp_path: Path, small_dir: Path) -> None:
    import_bdpm(tmp_path, small_dir)
    ref = open_referential(tmp_path)
    for text in ("ephedrine", "ÉPHÉDRINE", "Éphédrine", "EPHEDRINE TEST 30"):
        assert labels(ref.search(text))[:1] == ["ÉPHÉDRINE TEST 30 mg/10 ml, solution injectable"]
    assert labels(ref.search("chlorhydrate")) == [
        "ÉPHÉDRINE TEST 30 mg/10 ml, solution injectable"]
    assert labels(ref.search("z"))[:3] == ["ZOLTAR 10 mg, comprimé"] * 2 + [
        "ZOLTAR 20 mg, comprimé"]
    assert labels(ref.search("zo"))[3:5] == ["ALPHA ZOLTARINE 5 mg, comprimé",
                                             "BETA 1 mg, comprimé"]
    assert "GAMMAZOLTAR 1 mg, gélule" not in labels(ref.search("zo"))  # substrings need 3
    found = ref.by_cip13(cip13("1000008"))
    assert found is not None and found.price_cents == 123456
    assert found.label == "ZOLTAR 10 mg, comprimé — boîte de 30 comprimé(s)"
    assert found.reimbursement_rates == (65,) and found.routes == ("orale",)
    assert ref.by_cip13(cip13("1999999")) is None
    assert [p.cip7 for p in ref.by_cis("60000001")] == ["1000001", "1000008"]
    assert ref.conditions("60000007") == ["liste I"]
    assert ref.search_devices("fauteuil") == [] and ref.device("1234567") is None  # no list


def _temp_files(directory: Path) -> list[Path]:
    return sorted(directory.glob(".referential.sqlite.*"))


def test_sources_directory_zip_and_dates(tmp_path: Path, small_dir: Path) -> None:
    report = import_bdpm(tmp_path / "a", small_dir, referential_date="2022-06-03")
    assert (report.date, report.unchanged) == ("2022-06-03", False)
    assert (report.files[1].name, report.files[1].rows) == (bdpm.PRESENTATIONS, len(PRES))
    archive = tmp_path / "bdpm.zip"
    archive.write_bytes(zip_bytes(SMALL, folder="export/"))
    report = import_bdpm(tmp_path / "b", archive)
    assert report.date == "2024-05-06"  # the zip entries' date
    assert open_referential(tmp_path / "b").info().counts["presentation"] == len(PRES)
    assert (referential_path(tmp_path / "b").stat().st_mode & 0o777) == 0o600
    incomplete = write_dir(tmp_path / "partial", {bdpm.SPECIALTIES: SMALL[bdpm.SPECIALTIES]})
    with pytest.raises(ValidationError, match="missing: CIS_CIP_bdpm.txt"):
        import_bdpm(tmp_path / "c", incomplete)
    with pytest.raises(ValidationError, match="directory"):
        import_bdpm(tmp_path / "c", tmp_path / "nothing-here")
    with pytest.raises(ValidationError, match="YYYY-MM-DD"):
        import_bdpm(tmp_path / "c", small_dir, referential_date="03/06/2022")


def test_same_data_is_a_no_op_and_a_new_month_reports_changes(tmp_path: Path,
                                                             small_dir: Path) -> None:
    first = import_bdpm(tmp_path, small_dir)
    assert first.changes["presentation"].added == len(PRES)
    db = referential_path(tmp_path)
    inode = db.stat().st_ino
    again = import_bdpm(tmp_path, small_dir)
    assert again.unchanged and again.date == first.date
    assert again.counts["presentation"] == len(PRES)
    assert db.stat().st_ino == inode  # the file was not rebuilt

    month = bdpm_files(
        [*SPECS[:-1], spec("60000007", "ÉPHÉDRINE TEST 30 mg/10 ml, solution injectable",
                           form="solution injectable", marketed=False),
         spec("60000009", "NOUVEAU 5 mg, comprimé")],
        [p for p in PRES if "1000003" not in p and "1000005" not in p]
        + [pres("60000009", "1000009"), pres("60000009", "1000010")]
        + [pres("60000005", "1000005", price="9,99")],
        COMPOS)
    report = import_bdpm(tmp_path, write_dir(tmp_path / "june", month))
    assert not report.unchanged
    assert report.changes["presentation"].__dict__ == {"added": 2, "removed": 1, "changed": 1}
    assert report.changes["specialty"].__dict__ == {"added": 1, "removed": 0, "changed": 1}
    ref = open_referential(tmp_path)
    assert ref.by_cip13(cip13("1000003")) is None
    assert ref.by_cip13(cip13("1000005")).price_cents == 999


def test_malformed_rows_are_reported_and_skipped(tmp_path: Path) -> None:
    files = bdpm_files(SPECS, PRES, COMPOS)
    files[bdpm.PRESENTATIONS] += (pres("60000001", "1000011").replace(
        cip13("1000011"), cip13("1000011")[:-1] + "0") + "\n").encode("cp1252")
    files[bdpm.PRESENTATIONS] += (pres("60000001", "1000012", price="abc") + "\n").encode()
    files[bdpm.SPECIALTIES] += b"60000099\tBAD\x81NAME\tx\r\n"
    files[bdpm.COMPOSITIONS] += b"60000001\tcomprim\xe9\r\n"
    report = import_bdpm(tmp_path, write_dir(tmp_path / "src", files))
    where = {(e.file, e.line) for e in report.errors}
    assert where == {(bdpm.PRESENTATIONS, len(PRES) + 1), (bdpm.PRESENTATIONS, len(PRES) + 2),
                     (bdpm.SPECIALTIES, len(SPECS) + 1), (bdpm.COMPOSITIONS, len(COMPOS) + 1)}
    for count in report.files:
        assert count.imported == count.rows - count.malformed
    assert report.counts["presentation"] == len(PRES)


@pytest.mark.skipif(not REAL_BDPM.is_dir(), reason=NO_REAL_BDPM)
def test_old_referential_survives_a_killed_import(tmp_path: Path, small_dir: Path) -> None:
    import_bdpm(tmp_path, small_dir)
    db = referential_path(tmp_path)
    proc = subprocess.Popen(
        [sys.executable, "-c", "from appliance.cli import main; main()",
         "--data-dir", str(tmp_path), "drugs", "import", str(REAL_BDPM), "--allow-shrink"],
        cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while not _temp_files(tmp_path) and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.005)
        time.sleep(0.2)  # well inside the build (~2 s on the real extract)
        assert proc.poll() is None, "the import ended before it could be killed"
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert _temp_files(tmp_path), "the kill should have left a half-built file behind"
    ref = open_referential(tmp_path)
    assert ref.info().counts["presentation"] == len(PRES)
    assert labels(ref.search("zoltar"))[0] == "ZOLTAR 10 mg, comprimé"

    month = dict(SMALL)
    month[bdpm.SPECIALTIES] += (spec("60000010", "OMEGA 1 mg, comprimé") + "\r\n").encode()
    month[bdpm.PRESENTATIONS] += (pres("60000010", "1000010") + "\n").encode()
    report = import_bdpm(tmp_path, write_dir(tmp_path / "next", month))
    assert report.changes["specialty"].added == 1
    assert _temp_files(tmp_path) == []
    assert ref.search("omega")[0].cis == "60000010"  # the open reader saw the new file
    assert (db.stat().st_mode & 0o777) == 0o600


def test_unreadable_previous_file_is_replaced(tmp_path: Path, small_dir: Path) -> None:
    referential_path(tmp_path).parent.mkdir(parents=True, exist_ok=True)
    referential_path(tmp_path).write_bytes(b"not a database" * 100)
    report = import_bdpm(tmp_path, small_dir)
    assert report.changes["presentation"].added == len(PRES)


def test_devices_import_search_and_coexistence(tmp_path: Path, small_dir: Path) -> None:
    lpp = tmp_path / "lpp.csv"
    lpp.write_bytes(("CODE_LPP;L_CODE_LPP\r\n1101021;BAS DE CONTENTION CLASSE 2\r\n"
                     "1234567;FAUTEUIL ROULANT À PROPULSION MANUELLE\r\n"
                     "7654321;ÉLECTRODE POUR NEUROSTIMULATION\r\n12AB;bad\r\n").encode("cp1252"))
    report = import_devices(tmp_path, lpp)
    assert report.files[0].rows == 4 and report.files[0].imported == 3
    assert [(e.line, e.file) for e in report.errors] == [(5, "lpp.csv")]
    assert import_devices(tmp_path, lpp).unchanged
    import_bdpm(tmp_path, small_dir)  # a BDPM import keeps the devices
    ref = open_referential(tmp_path)
    assert [d.code for d in ref.search_devices("electrode")] == ["7654321"]
    assert [d.code for d in ref.search_devices("roulant")] == ["1234567"]
    assert [d.code for d in ref.search_devices("1101021")] == ["1101021"]
    assert [d.code for d in ref.search_devices("f")] == ["1234567"]
    assert ref.device("1234567").label.startswith("FAUTEUIL")
    lpp.write_bytes(b"CODE_LPP;L_CODE_LPP\n1234567;FAUTEUIL ROULANT\n")
    report = import_devices(tmp_path, lpp)  # a device import keeps the drugs
    assert report.changes["device"].__dict__ == {"added": 0, "removed": 2, "changed": 1}
    assert ref.search("zoltar") and ref.info().counts["device"] == 1


# --- HTTP(S) sources ---------------------------------------------------------------------


class _Files(http.server.BaseHTTPRequestHandler):
    routes: ClassVar[dict[str, bytes]] = {}
    modified = format_datetime(dt.datetime(2022, 6, 3, 8, 0, tzinfo=dt.UTC), usegmt=True)

    def do_GET(self) -> None:
        parts = urlsplit(self.path)
        key = parts.path
        if parts.path.endswith(".php"):
            key = parse_qs(parts.query).get("fichier", [""])[0]
        body = self.routes.get(key)
        if body is None:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Last-Modified", self.modified)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def http_server(tmp_path: Path) -> Iterator[tuple[str, Path | None, callable]]:
    servers = []

    def serve(tls: bool = False) -> tuple[str, Path | None]:
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Files)
        ca = None
        if tls:
            ca = tmp_path / "ca.pem"
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            cert, key = _self_signed(tmp_path)
            context.load_cert_chain(cert, key)
            ca.write_bytes(cert.read_bytes())
            server.socket = context.wrap_socket(server.socket, server_side=True)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        scheme = "https" if tls else "http"
        return f"{scheme}://127.0.0.1:{server.server_address[1]}", ca

    _Files.routes = {**{f"/bdpm/{name}": data for name, data in SMALL.items()},
                     **dict(SMALL), "/bdpm.zip": zip_bytes(SMALL)}
    yield serve
    for server in servers:
        server.shutdown()
        server.server_close()


def _self_signed(directory: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(hours=1))
            .add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


def test_url_sources(tmp_path: Path, http_server) -> None:
    base, _ = http_server()
    for number, url in enumerate([f"{base}/bdpm/", f"{base}/bdpm.zip",
                                  f"{base}/telechargement.php", f"{base}/bdpm/{{file}}"]):
        report = import_bdpm(tmp_path / str(number), url)
        assert report.counts["presentation"] == len(PRES), url
        assert report.date in {"2022-06-03", "2024-05-06"}
    assert import_bdpm(tmp_path / "0", f"{base}/bdpm/").unchanged
    with pytest.raises(StoreError, match="404"):
        import_bdpm(tmp_path / "x", f"{base}/missing/")


def test_https_source_is_verified(tmp_path: Path, http_server) -> None:
    base, ca = http_server(tls=True)
    with pytest.raises(StoreError, match="(?i)certificate"):
        import_bdpm(tmp_path / "a", f"{base}/bdpm.zip")
    assert not referential_path(tmp_path / "a").exists()
    report = import_bdpm(tmp_path / "b", f"{base}/bdpm.zip", ca_file=str(ca))
    assert report.counts["presentation"] == len(PRES)


# --- CLI ---------------------------------------------------------------------------------


def test_cli_import_info_search_and_devices(tmp_path: Path, small_dir: Path) -> None:
    runner = CliRunner()

    def ordo(*args: str) -> str:
        result = runner.invoke(main, ["--data-dir", str(tmp_path / "data"), *args])
        assert result.exit_code == 0, result.output
        return result.output

    out = ordo("drugs", "import", str(small_dir), "--date", "2022-06-03", "--allow-small")
    assert "référentiel du 2022-06-03" in out and "présentations : 8 (+8" in out
    assert "identiques" in ordo("drugs", "import", str(small_dir))
    info = json.loads(ordo("drugs", "info", "--json"))
    assert info["date"] == "2022-06-03" and info["counts"]["presentation"] == len(PRES)
    assert "BDPM du 2022-06-03" in ordo("drugs", "info")
    found = json.loads(ordo("drugs", "search", "zol", "--json", "--limit", "3"))
    assert [f["cip13"] for f in found] == [cip13("1000001"), cip13("1000008"), cip13("1000002")]
    assert {"cip13", "cis", "label", "marketed"} <= set(found[0])
    assert found[2]["marketed"] is False
    text = ordo("drugs", "search", "zoltar", "20")
    assert cip13("1000002") in text and "non commercialisé" in text
    assert "Aucun résultat" in ordo("drugs", "search", "introuvable")
    lpp = tmp_path / "lpp.csv"
    lpp.write_text("CODE_LPP;L_CODE_LPP\n1234567;FAUTEUIL ROULANT\n", encoding="utf-8")
    assert "1 importées" in ordo("devices", "import", str(lpp))
    assert json.loads(ordo("devices", "search", "fauteuil", "--json")) == [
        {"code": "1234567", "label": "FAUTEUIL ROULANT"}]
    result = runner.invoke(main, ["--data-dir", str(tmp_path / "empty"), "drugs", "search", "x"])
    assert result.exit_code == 4 and "Erreur : " in result.output
    assert "ordo drugs import" in result.output
    assert sorted(os.listdir(tmp_path / "data")) == ["referential.sqlite",
                                                     "referential.sqlite.lock"]
