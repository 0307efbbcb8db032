"""``ordo install``: put the appliance in place on a Debian box, or into a staging root.

What it writes (paths under ``--root``, ``/`` by default)::

    etc/sysusers.d/ordo.conf        0644  the ``ordo`` system user (groups lp, dialout)
    etc/tmpfiles.d/ordo.conf        0644  owners and modes, re-applied at every boot
    etc/ordo/                       0750  root:ordo
    etc/ordo/ordo.toml              0640  root:ordo  commented template, never overwritten
    etc/ordo/backup.key             0640  root:ordo  32 random bytes, never overwritten
    var/lib/ordo/                   0700  ordo:ordo  the data directory
    var/lib/ordo/backups/           0700  ordo:ordo  nightly backups
    etc/systemd/system/ordo-*.{service,timer}  0644  the units of ``systemd/``
    usr/local/bin/ordo              symlink to the ``ordo`` of this installation (the units'
                                    ``ExecStart``)

Run as root on ``/``, it also creates the user (``systemd-sysusers``, else ``useradd``),
sets the owners and reloads systemd. Into another root (an image being built, a test) it
sets the modes only: ``systemd-sysusers`` and ``systemd-tmpfiles --create`` apply the two
snippets at the first boot, the Debian way. Local administrator files go under ``/etc``
(``/usr/lib`` belongs to packages).

Idempotent: each path is reported ``created``, ``updated`` (content or mode changed),
``unchanged``, or ``kept`` (an edited configuration file, left as it is).
"""

from __future__ import annotations

import grp
import os
import pwd
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from appliance.config import SYSTEM_USER
from appliance.errors import ValidationError
from appliance.ops.backup import generate_key_text

UNITS_DIR = Path(__file__).resolve().parents[2] / "systemd"
UNIT_FILES = ("ordo-kiosk.service", "ordo-sync.service", "ordo-backup.service",
              "ordo-backup.timer")
BIN_PATH = "/usr/local/bin/ordo"
CONFIG_DIR = "/etc/ordo"
CONFIG_FILE = "/etc/ordo/ordo.toml"
KEY_FILE = "/etc/ordo/backup.key"
DATA_DIR = "/var/lib/ordo"
BACKUP_DIR = "/var/lib/ordo/backups"
SYSUSERS_FILE = "/etc/sysusers.d/ordo.conf"
TMPFILES_FILE = "/etc/tmpfiles.d/ordo.conf"
UNIT_DIR = "/etc/systemd/system"

SYSUSERS = f"""\
# Ordo's system user, created by systemd-sysusers (ordo install runs it; at boot too).
# lp and dialout: USB and serial receipt printers.
u {SYSTEM_USER} - "Ordo e-prescription appliance" {DATA_DIR} /usr/sbin/nologin
m {SYSTEM_USER} lp
m {SYSTEM_USER} dialout
"""
TMPFILES = f"""\
# Ordo's directories, owners and modes, applied by systemd-tmpfiles at every boot.
d {DATA_DIR} 0700 {SYSTEM_USER} {SYSTEM_USER} -
d {BACKUP_DIR} 0700 {SYSTEM_USER} {SYSTEM_USER} -
d {CONFIG_DIR} 0750 root {SYSTEM_USER} -
z {CONFIG_FILE} 0640 root {SYSTEM_USER} -
z {KEY_FILE} 0640 root {SYSTEM_USER} -
"""
TEMPLATE_HEADER = f"""\
# Ordo — configuration of this appliance ({CONFIG_FILE}).
# Written once by `ordo install`, never overwritten: edit it, then run `ordo config check`
# and `ordo doctor`. Every key left commented keeps the default shown. Any key can also be
# set by an environment variable ORDO_<SECTION>_<KEY> (e.g. ORDO_PRINTER_URI).
#
# To set before the first prescription: [establishment] name, finess, address;
# [printer] uri; [registry] url, client_cert, client_key, ca_file; [security] trust_roots
# and crls; [pharmacy]. Keep a copy of the backup key off the box: without it no backup
# can be restored.
"""


def config_template() -> str:
    """The commented configuration template, made from the embedded defaults."""
    defaults = resources.files("appliance").joinpath("defaults.toml").read_text("utf-8")
    out = [TEMPLATE_HEADER]
    section = ""
    for line in defaults.splitlines():
        if line.startswith("#") and not section:
            continue
        header = re.match(r"\[(\w+)\]", line)
        if header:
            section = header.group(1)
            out.append("")
            out.append(line)
        elif section == "security" and line.startswith("backup_key"):
            out.append(f'backup_key = "{KEY_FILE}"       # created by ordo install')
        elif re.match(r"\w+ = ", line):
            out.append("# " + line)
        elif line.strip():
            out.append(line)
    return "\n".join(out).replace("\n\n\n", "\n\n").rstrip() + "\n"


@dataclass(frozen=True)
class Item:
    path: str
    kind: str  # "dir", "file" or "symlink"
    mode: int = 0o644
    owner: str = "root"
    group: str = "root"
    content: bytes = b""
    target: str = ""
    keep: bool = False  # never overwrite an existing file
    generated: bool = False  # content made once (a key): an existing file is never compared


@dataclass(frozen=True)
class Outcome:
    path: str
    status: str  # created, updated, unchanged, kept, skipped
    note: str = ""


@dataclass
class InstallReport:
    root: Path
    system: bool
    outcomes: list[Outcome] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return any(o.status in {"created", "updated"} for o in self.outcomes)


def default_executable() -> Path | None:
    """The ``ordo`` script next to the running interpreter (the installation's venv)."""
    candidate = Path(sys.executable).parent / "ordo"
    return candidate if candidate.is_file() else None


def plan(units_dir: Path = UNITS_DIR, executable: Path | None = None) -> list[Item]:
    """Everything ``install`` puts in place, parents before children."""
    missing = [name for name in UNIT_FILES if not (units_dir / name).is_file()]
    if missing:
        raise ValidationError("units", str(units_dir),
                              f"a directory with {', '.join(missing)} (run ordo install from "
                              "the Ordo source tree)")
    items = [
        Item(SYSUSERS_FILE, "file", content=SYSUSERS.encode()),
        Item(TMPFILES_FILE, "file", content=TMPFILES.encode()),
        Item(CONFIG_DIR, "dir", 0o750, group=SYSTEM_USER),
        Item(CONFIG_FILE, "file", 0o640, group=SYSTEM_USER, content=config_template().encode(),
             keep=True),
        Item(KEY_FILE, "file", 0o640, group=SYSTEM_USER, keep=True, generated=True),
        Item(DATA_DIR, "dir", 0o700, SYSTEM_USER, SYSTEM_USER),
        Item(BACKUP_DIR, "dir", 0o700, SYSTEM_USER, SYSTEM_USER),
    ]
    items += [Item(f"{UNIT_DIR}/{name}", "file", content=(units_dir / name).read_bytes())
              for name in UNIT_FILES]
    if executable is not None:
        items.append(Item(BIN_PATH, "symlink", target=str(executable)))
    return items


class _Applier:
    def __init__(self, root: Path, system: bool) -> None:
        self.root, self.system = root, system

    def where(self, item: Item) -> Path:
        return self.root / item.path.lstrip("/")

    def ids(self, item: Item) -> tuple[int, int] | None:
        if not self.system:
            return None
        return pwd.getpwnam(item.owner).pw_uid, grp.getgrnam(item.group).gr_gid

    def fix_attributes(self, path: Path, item: Item) -> bool:
        changed = False
        st = path.lstat()
        if st.st_mode & 0o7777 != item.mode:
            os.chmod(path, item.mode)
            changed = True
        ids = self.ids(item)
        if ids is not None and (st.st_uid, st.st_gid) != ids:
            os.chown(path, *ids)
            changed = True
        return changed

    def write(self, path: Path, item: Item, content: bytes) -> None:
        temp = path.with_name(f".{path.name}.ordo-install")
        fd = os.open(temp, os.O_CREAT | os.O_TRUNC | os.O_WRONLY, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(content)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(temp, item.mode)
        ids = self.ids(item)
        if ids is not None:
            os.chown(temp, *ids)
        os.replace(temp, path)

    def apply(self, item: Item) -> Outcome:
        path = self.where(item)
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o755)
        if item.kind == "dir":
            if not path.is_dir():
                path.mkdir(mode=item.mode)
                self.fix_attributes(path, item)
                return Outcome(item.path, "created")
            changed = self.fix_attributes(path, item)
            return Outcome(item.path, "updated" if changed else "unchanged",
                           "owner or mode" if changed else "")
        if item.kind == "symlink":
            return self.symlink(path, item)
        if not path.exists():
            content = generate_key_text().encode() if item.generated else item.content
            self.write(path, item, content)
            return Outcome(item.path, "created")
        if item.keep:
            changed = self.fix_attributes(path, item)
            if changed:
                return Outcome(item.path, "updated", "owner or mode; content kept")
            same = item.generated or path.read_bytes() == item.content
            return Outcome(item.path, "unchanged" if same else "kept",
                           "" if same else "edited locally, left as it is")
        if path.read_bytes() != item.content:
            self.write(path, item, item.content)
            return Outcome(item.path, "updated")
        changed = self.fix_attributes(path, item)
        return Outcome(item.path, "updated" if changed else "unchanged",
                       "owner or mode" if changed else "")

    def symlink(self, path: Path, item: Item) -> Outcome:
        if path.is_symlink():
            if os.readlink(path) == item.target:
                return Outcome(item.path, "unchanged")
            path.unlink()
            path.symlink_to(item.target)
            return Outcome(item.path, "updated", f"now -> {item.target}")
        if path.exists():
            return Outcome(item.path, "kept", "an existing file, not a symlink: left as it is")
        path.symlink_to(item.target)
        return Outcome(item.path, "created", f"-> {item.target}")


def _create_user(root: Path) -> Outcome:
    try:
        pwd.getpwnam(SYSTEM_USER)
        return Outcome(f"user {SYSTEM_USER}", "unchanged")
    except KeyError:
        pass
    if shutil.which("systemd-sysusers"):
        command = ["systemd-sysusers", str(root / SYSUSERS_FILE.lstrip("/"))]
    else:
        command = ["useradd", "--system", "--user-group", "--home-dir", DATA_DIR,
                   "--no-create-home", "--shell", "/usr/sbin/nologin",
                   "--groups", "lp,dialout", SYSTEM_USER]
    result = subprocess.run(command, capture_output=True, text=True, check=False)  # noqa: S603
    if result.returncode != 0:
        raise ValidationError("user", SYSTEM_USER, f"a system user created by {command[0]} "
                                                   f"({result.stderr.strip()})")
    return Outcome(f"user {SYSTEM_USER}", "created", command[0])


def install(root: Path = Path("/"), *, executable: Path | None = None,
            units_dir: Path = UNITS_DIR) -> InstallReport:
    """Install into ``root``; see the module docstring."""
    root = root.resolve()
    system = root == Path("/")
    if system and os.geteuid() != 0:
        raise ValidationError("--root", "/", "root privileges to install on this machine "
                                             "(sudo ordo install), or --root DIR for a staging "
                                             "root")
    executable = executable if executable is not None else default_executable()
    items = plan(units_dir, executable)
    report = InstallReport(root, system)
    applier = _Applier(root, system)
    for item in items:
        if system and item.path == CONFIG_DIR:
            report.outcomes.append(_create_user(root))
        report.outcomes.append(applier.apply(item))
    if executable is None:
        report.outcomes.append(Outcome(BIN_PATH, "skipped",
                                       "no ordo executable next to this Python"))
    elif executable.resolve().is_relative_to(Path("/root")) or \
            executable.resolve().is_relative_to(Path("/home")):
        report.notes.append(f"{executable} is under /root or /home, which the units hide "
                            "(ProtectHome=yes): install Ordo under /opt/ordo")
    units_changed = any(o.path.startswith(UNIT_DIR) and o.status in {"created", "updated"}
                        for o in report.outcomes)
    if system and units_changed and Path("/run/systemd/system").is_dir():
        subprocess.run(["systemctl", "daemon-reload"], check=False)  # noqa: S607
    if any(o.path == KEY_FILE and o.status == "created" for o in report.outcomes):
        report.notes.append(f"a new backup key was written to {KEY_FILE}: copy it off the box "
                            "now (without it no backup can be restored)")
    report.notes.append(f"edit {CONFIG_FILE}, then run: ordo config check")
    report.notes.append("systemctl enable --now ordo-kiosk.service ordo-sync.service "
                        "ordo-backup.timer")
    report.notes.append("then check everything with: ordo doctor")
    return report
