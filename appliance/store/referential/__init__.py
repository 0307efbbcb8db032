"""The drug and device referential: BDPM and LPP parsing, its own SQLite file, search.

``bdpm`` and ``devices`` parse source files (pure); ``build`` writes the referential
file atomically; ``search`` answers the UI (``Referential``); ``gs1`` decodes scanner
input; ``text`` folds names and queries alike.
"""

from __future__ import annotations

import importlib
from typing import Any

# Imported on first access (PEP 562): the kiosk only needs ``search``; ``build`` brings the
# BDPM parsers, which only an import needs.
_EXPORTS = {
    "REFERENTIAL_FILE": "build",
    "FileCount": "build",
    "ImportReport": "build",
    "TableChange": "build",
    "referential_path": "build",
    "Device": "search",
    "Presentation": "search",
    "Referential": "search",
    "ReferentialInfo": "search",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
