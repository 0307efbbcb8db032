"""``ordo install``, ``ordo doctor``, ``ordo backup``, ``ordo restore``, ``ordo retention run``.

Commands for the installer and for the nightly timer; their output is in English (it is
read by whoever installs or maintains the box, not by the care staff).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import click

from appliance.bootstrap import App
from appliance.cli import operator
from appliance.errors import StoreError
from appliance.ops import backup as backups
from appliance.ops.doctor import run_doctor
from appliance.ops.files import adopt_owner
from appliance.ops.install import install as run_install
from appliance.ops.retention import run_retention


@contextlib.contextmanager
def _files(what: str) -> Iterator[None]:
    """Files and directories these operations write (a missing or read-only data
    directory, a full disk) fail with a clean error."""
    try:
        yield
    except OSError as exc:
        raise StoreError(f"{what} : {exc.strerror or exc} ({exc.filename or '?'})") from exc


@click.command("install")
@click.option("--root", "root", type=click.Path(file_okay=False, path_type=Path),
              default=Path("/"), show_default=True,
              help="Install into this directory (a staging root) instead of the machine.")
@click.pass_obj
def install_cmd(app: App, root: Path) -> None:
    """Install the ordo user, directories, configuration and systemd units (idempotent).

    Example: sudo /opt/ordo/.venv/bin/ordo install
    """
    with _files(f"installation impossible dans {root}"):
        report = run_install(root)
    for outcome in report.outcomes:
        note = f"  ({outcome.note})" if outcome.note else ""
        click.echo(f"{outcome.status:<9} {outcome.path}{note}")
    click.echo("nothing to do: already installed" if not report.changed else
               f"installed into {report.root}")
    for note in report.notes:
        click.echo(f"next: {note}")


@click.command("doctor")
@click.option("--json", "as_json", is_flag=True, help="JSON output.")
@click.pass_obj
def doctor_cmd(app: App, as_json: bool) -> None:
    """Check every part of the appliance; exit 1 if a check fails.

    One line per check: status, name, what was found and, if needed, how to fix it.
    """
    report = run_doctor(app.settings)
    if as_json:
        click.echo(report.to_json())
    else:
        for line in report.lines():
            click.echo(line)
    if not report.ok:
        raise SystemExit(1)


@click.command("backup")
@click.argument("dest", type=click.Path(path_type=Path))
@click.option("--keep", type=click.IntRange(min=1), default=None,
              help="When DEST is a directory: keep only the newest N ordo-*.ordobak files.")
@click.pass_obj
def backup_cmd(app: App, dest: Path, keep: int | None) -> None:
    """Write an encrypted backup of the database to DEST.

    DEST is the backup file if it ends in .ordobak, else a directory (created if needed)
    that receives ordo-<UTC time>.ordobak.

    Safe while the kiosk and the sync service run. The key is security.backup_key.
    Example: ordo backup /var/lib/ordo/backups --keep 14
    """
    with _files("sauvegarde impossible"):
        result = backups.backup(app.settings, dest, keep=keep)
    adopt_owner(app.settings.db_path)
    state = result.state
    click.echo(f"backup written: {result.path} ({result.size / 1e6:.1f} MB, "
               f"{state.prescriptions} prescriptions, audit entry {state.audit_seq}, "
               f"key {result.header['key_id']}, {result.seconds:.2f} s)")
    for old in result.removed:
        click.echo(f"removed old backup: {old}")


@click.command("restore")
@click.argument("src", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--force", is_flag=True,
              help="Restore even over newer data (which is backed up first).")
@click.pass_obj
def restore_cmd(app: App, src: Path, force: bool) -> None:
    """Restore the database from an encrypted backup, after verifying it.

    Refuses to go back over newer data unless --force. Stop the kiosk and the sync
    service first (systemctl stop ordo-kiosk ordo-sync), start them again after.
    """
    with _files("restauration impossible"):
        result = backups.restore(app.settings, src, force=force, actor=operator())
    if result.safety_backup is not None:
        click.echo(f"the replaced data was kept as {result.safety_backup}")
    click.echo(f"restored {src} (made {result.header.get('created_at')}): "
               f"{result.after.prescriptions} prescriptions, audit verified up to entry "
               f"{result.audit_seq}")
    click.echo("next: systemctl restart ordo-kiosk ordo-sync")


@click.group("retention")
def retention_group() -> None:
    """The retention policy for old prescriptions and audit entries ([retention])."""


@retention_group.command("run")
@click.option("--dry-run", is_flag=True, help="Only count what would be deleted.")
@click.pass_obj
def retention_run(app: App, dry_run: bool) -> None:
    """Delete prescriptions and audit entries older than the configured limits.

    Only prescriptions dispensed, cancelled or registered, with nothing pending; the
    audit chain still verifies afterwards, and the run itself is audited.
    """
    app.migrate()
    from appliance.store.db import open_store

    store = open_store(app.settings.db_path, migrate=False)
    try:
        report = run_retention(store, app.settings.retention, dry_run=dry_run,
                               actor=operator())
    finally:
        store.close()
    adopt_owner(app.settings.db_path)
    click.echo(report.summary())


COMMANDS = [install_cmd, doctor_cmd, backup_cmd, restore_cmd, retention_group]
