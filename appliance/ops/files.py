"""Ownership and permission helpers for files the appliance's user must read or own.

Operators often run ``ordo`` commands as root; a file root creates in the data directory
(the database, its WAL side files, a restored copy) must still belong to the directory's
owner, or the kiosk and the sync service (``User=ordo``) can no longer open it.
"""

from __future__ import annotations

import grp
import os
import pwd
import stat
from pathlib import Path

from appliance.config import SYSTEM_USER

SIDE_SUFFIXES = ("-wal", "-shm", "-journal")


def service_user() -> pwd.struct_passwd | None:
    """The appliance's system user, if it exists on this machine."""
    try:
        return pwd.getpwnam(SYSTEM_USER)
    except KeyError:
        return None


def adopt_owner(path: Path, *, side_files_only: bool = False) -> None:
    """When running as root, give ``path`` and its SQLite side files the owner of their
    directory (no-op otherwise, or when the directory belongs to root). With
    ``side_files_only``, leave ``path`` itself as it is (a reader must not repair it)."""
    if os.geteuid() != 0:
        return
    try:
        parent = path.parent.stat()
    except OSError:
        return
    if parent.st_uid == 0:
        return
    sides = [path.with_name(path.name + suffix) for suffix in SIDE_SUFFIXES]
    for candidate in sides if side_files_only else [path, *sides]:
        try:
            st = candidate.lstat()
        except FileNotFoundError:
            continue
        if (st.st_uid, st.st_gid) != (parent.st_uid, parent.st_gid):
            os.chown(candidate, parent.st_uid, parent.st_gid, follow_symlinks=False)


def readable_by(path: Path, user: pwd.struct_passwd) -> bool:
    """Whether ``user`` could read ``path`` (permission bits and the directories above;
    ACLs are not considered)."""
    if user.pw_uid == 0:
        return path.exists()
    groups = {user.pw_gid} | {g.gr_gid for g in grp.getgrall() if user.pw_name in g.gr_mem}

    def allowed(st: os.stat_result, owner_bit: int, group_bit: int, other_bit: int) -> bool:
        if st.st_uid == user.pw_uid:
            return bool(st.st_mode & owner_bit)
        if st.st_gid in groups:
            return bool(st.st_mode & group_bit)
        return bool(st.st_mode & other_bit)

    try:
        resolved = path.resolve(strict=True)
        for directory in reversed(resolved.parents):
            if not allowed(directory.stat(), stat.S_IXUSR, stat.S_IXGRP, stat.S_IXOTH):
                return False
        return allowed(resolved.stat(), stat.S_IRUSR, stat.S_IRGRP, stat.S_IROTH)
    except OSError:
        return False
