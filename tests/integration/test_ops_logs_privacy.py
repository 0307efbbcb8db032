"""No resident's name, NIR or birth date in any log line, with logging at DEBUG, over the
most complete workflow available: residents import (with a bad row), signed prescriptions
through their states (there is no prescribe command yet: the store's use cases are called
directly), audit, backup, restore, retention, doctor, configuration check, and a push to
the reference registry when the sync engine is importable.

A log line is a logfmt line (``ts=...``) and the indented traceback lines after it; other
stderr output (the import's per-row report to the operator) is not a log line, and is
checked to exist so that the filter below cannot hide everything."""

from __future__ import annotations

import io
import logging
import re
from datetime import UTC, date, datetime

import pytest
from click.testing import CliRunner

from appliance.cli import main
from appliance.domain.ids import Ins
from appliance.domain.prescription import State
from appliance.domain.prescription_id import PrescriptionIdGenerator
from appliance.logs import setup_logging
from appliance.services.prescribing import record_transition
from appliance.store.uow import SqliteUnitOfWork
from tests.factories import nir, physician, prescription
from tests.factories import resident as make_resident
from tests.integration.test_ops_helpers import ops_env

pytestmark = pytest.mark.integration

PEOPLE = [
    # (NIR body, birth name, used name, first names, birth date)
    ("2310775056123", "ZORGLUBEAU", "QUINTREFAUX", "Philomène Azélie", date(1931, 7, 19)),
    ("1280392118045", "VAN DER BRAKKE", "", "Anatole", date(1928, 3, 2)),
    ("232022A012345", "CASABIANCA", "", "Ghjuvanna", date(1932, 2, 28)),
]


def _csv() -> str:
    rows = ["nir;nom;nom_usage;prenoms;date_naissance;sexe;chambre;opposition"]
    for body, birth, used, first, born in PEOPLE:
        sex = "F" if body[0] == "2" else "M"
        rows.append(f"{nir(body)};{birth};{used};{first};{born:%d/%m/%Y};{sex};1{body[-2:]};non")
    rows.append(f"{nir('1440175123006')[:-1]}9;DUBROVNIKOV;;Casimir;1944-03-01;M;108;non")
    return "\n".join(rows) + "\n"


def forbidden() -> list[str]:
    words = []
    for body, birth, used, first, born in [*PEOPLE, ("144017512300", "DUBROVNIKOV", "",
                                                      "Casimir", date(1944, 3, 1))]:
        full = nir(body) if len(body) == 13 else body
        spaced = f"{full[0]} {full[1:3]} {full[3:5]} {full[5:7]} {full[7:10]} {full[10:13]}"
        words += [full, full[:13], spaced, birth, *first.split(), born.isoformat(),
                  f"{born:%d/%m/%Y}", f"{born:%Y%m%d}", f"{born:%d%m%Y}"]
        words += [used] if used else []
    return [w for w in words if len(w) >= 4]


def log_lines(text: str) -> list[str]:
    lines, inside = [], False
    for line in text.splitlines():
        if line.startswith("ts=") or line.startswith("<"):
            inside = True
            lines.append(line)
        elif inside and line.startswith("  "):
            lines.append(line)
        else:
            inside = False
    return lines


def assert_no_identity(lines: list[str]) -> None:
    words = forbidden()
    for line in lines:
        low = line.lower()
        leaked = [w for w in words if w.lower() in low]
        assert not leaked, f"{leaked} in log line: {line}"


def _record_signed(uow, p, actor: str) -> None:
    """A signed prescription with its outbox row, print job and audit entry (realistic
    signature and certificate sizes), in the caller's block."""
    uow.prescriptions.add_signed(p, signature=b"\x01" * 256, signer_cert=b"\x02" * 1200,
                                 signed_payload=None)
    uow.outbox.add(p.id, "create", datetime.now(UTC))
    job = uow.print_jobs.add(p.id, "original", actor, datetime.now(UTC))
    uow.audit.append(actor=actor, action="prescription.signed", subject=p.id,
                     details={"lines": len(p.lines), "print_job": job})


def test_a_full_workflow_at_debug_logs_no_identity(tmp_path):
    env = ops_env(tmp_path, ORDO_LOGGING_LEVEL="DEBUG")
    data = tmp_path / "data"
    runner = CliRunner()
    captured: list[str] = []

    def ordo(*args: str, code: int | None = 0):
        result = runner.invoke(main, ["--data-dir", str(data), *args], env=env)
        captured.append(result.stderr)
        if code is not None:
            assert result.exit_code == code, (args, result.output)
        return result

    csv_file = tmp_path / "residents.csv"
    csv_file.write_text(_csv(), encoding="utf-8")
    imported = ordo("residents", "import", str(csv_file))
    assert "3 created" in imported.stdout
    assert "line 5" in imported.stderr  # the operator's report is there, not in a log line
    ordo("residents", "list")

    direct = io.StringIO()
    setup_logging("DEBUG", direct)
    uow = SqliteUnitOfWork.open(data / "ordo.sqlite", migrate=True)
    ids = PrescriptionIdGenerator(clock_ms=lambda: int(datetime.now(UTC).timestamp() * 1000))
    doctor = physician()
    with uow:
        uow.practitioners.upsert(doctor)
        uow.commit()
    for n, person in enumerate(uow.residents.search(active_only=False)):
        p = prescription(ids.new(), resident=person, prescriber=doctor)
        with uow:
            uow.prescriptions.save_draft(p)
            uow.commit()
        p = p.transition(State.SIGNED, datetime.now(UTC))
        with uow:
            _record_signed(uow, p, doctor.id_nat_ps)
            uow.commit()
        steps = [State.REGISTERED, State.DISPENSED] if n != 1 else [State.CANCELLED]
        for step in steps:
            p = p.transition(step, datetime.now(UTC), reason="doublon")
            with uow:
                record_transition(uow, p, actor="sync")
                uow.commit()
    logging.getLogger("appliance.test").info("canary %s", nir(PEOPLE[0][0]))
    logging.getLogger("appliance.test").debug("debug canary")
    uow.close()

    ordo("audit", "verify")
    ordo("audit", "show")
    backups = tmp_path / "backups"
    ordo("backup", str(backups), "--keep", "3")
    [made] = list(backups.iterdir())
    ordo("restore", str(made), "--force")
    ordo("retention", "run", "--dry-run")
    ordo("retention", "run")
    ordo("doctor", "--json", code=1)
    ordo("config", "check", code=1)
    ordo("config", "show")
    ordo("id", "new")

    lines = log_lines("\n".join(captured) + "\n" + direct.getvalue())
    text = "\n".join(lines)
    for event in ("residents imported", "backup written", "backup restored",
                  "retention applied", "doctor finished", "migration applied"):
        assert f'msg="{event}"' in text, event
    assert 'msg="canary [NIR]"' in text  # the defence in depth is on
    assert 'level=debug logger=appliance.test msg="debug canary"' in text
    assert logging.getLogger("appliance").level == logging.DEBUG  # as the CLI set it
    assert_no_identity(lines)


def test_the_sync_leg_logs_no_identity(tmp_path):
    pytest.importorskip("appliance.services.sync")
    from appliance.services.sync import EngineConfig, SyncEngine
    from sync.client import RegistryClient
    from sync.registry_sim import RegistrySim, SimConfig
    from sync.registry_sim.verify import TrustStore

    stream = io.StringIO()
    setup_logging("DEBUG", stream)
    uow = SqliteUnitOfWork.open(tmp_path / "ordo.sqlite", migrate=True)
    ids = PrescriptionIdGenerator(clock_ms=lambda: int(datetime.now(UTC).timestamp() * 1000))
    people = []
    for body, birth, used, first, born in PEOPLE:
        people.append(make_resident(ins=Ins.from_nir(nir(body)), birth_name=birth,
                                    used_name=used or None, first_names=first,
                                    birth_date=born, sex="F" if body[0] == "2" else "M"))
    with uow:
        uow.residents.upsert(people)
        for person in people:
            p = prescription(ids.new(), resident=person).transition(State.SIGNED,
                                                                    datetime.now(UTC))
            _record_signed(uow, p, "810001234567")
        uow.commit()
    sim = RegistrySim(SimConfig(db_path=tmp_path / "registry.sqlite", plain_http=True),
                      trust=TrustStore.from_certificates([])).start()
    client = RegistryClient(sim.url)
    try:
        engine = SyncEngine(uow, client, EngineConfig(backoff_base_s=0.01,
                                                        backoff_cap_s=0.05, max_wait_s=1.0))
        engine.push()
        engine.pull()
    finally:
        client.close()
        sim.stop()
        uow.close()
    lines = log_lines(stream.getvalue())
    assert len(lines) >= 3, stream.getvalue()
    assert any(re.search(r"logger=appliance\.services\.sync", line) for line in lines)
    assert_no_identity(lines)
