"""Printers: order layout (``layout``), ESC/POS printers by URI (``escpos``), their
real-time status bits (``status``), the PDF (``pdf``) and a TCP ESC/POS printer emulator for
tests and demonstrations (``emulator``).

``use_escpos_cache()`` tells python-escpos where to keep its parsed capabilities; the
composition root calls it before it first imports the driver (nothing happens when this
package is imported). Without ``ESCPOS_CAPABILITIES_PICKLE_DIR``, python-escpos parses its
600 kB ``capabilities.json`` with PyYAML at every import (about 0.3 s on the appliance) and
leaves the result in a new ``mkdtemp()`` directory each time. The cache goes to systemd's
``$CACHE_DIRECTORY``, else ``$XDG_CACHE_HOME/ordo``, else ``~/.cache/ordo``: a directory owned
by this user and closed to others, since python-escpos unpickles what it finds there. If
none can be made so, the variable stays unset and python-escpos works as it does by default.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

ESCPOS_CACHE_ENV = "ESCPOS_CAPABILITIES_PICKLE_DIR"


def escpos_cache_dir() -> Path | None:
    """A private cache directory for python-escpos, created if needed; None if unusable."""
    try:
        if os.environ.get("CACHE_DIRECTORY"):
            base = Path(os.environ["CACHE_DIRECTORY"].split(":")[0])
        elif os.environ.get("XDG_CACHE_HOME"):
            base = Path(os.environ["XDG_CACHE_HOME"]) / "ordo"
        else:
            base = Path.home() / ".cache" / "ordo"
        target = base / "escpos"
        target.mkdir(mode=0o700, parents=True, exist_ok=True)
        info = target.stat()
    except (OSError, RuntimeError):
        return None
    if info.st_uid != os.getuid() or info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        return None
    return target


def use_escpos_cache() -> None:
    """Point python-escpos at ``escpos_cache_dir()`` unless the environment already chose;
    call it before python-escpos is first imported."""
    if ESCPOS_CACHE_ENV not in os.environ:
        cache = escpos_cache_dir()
        if cache is not None:
            os.environ[ESCPOS_CACHE_ENV] = str(cache)
