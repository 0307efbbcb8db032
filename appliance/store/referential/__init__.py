"""The drug and device referential: BDPM and LPP parsing, its own SQLite file, search.

``bdpm`` and ``devices`` parse source files (pure); ``build`` writes the referential
file atomically; ``search`` answers the UI (``Referential``); ``gs1`` decodes scanner
input; ``text`` folds names and queries alike.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

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


if TYPE_CHECKING:  # what the names are, for the type checker
    from appliance.store.referential.build import REFERENTIAL_FILE as REFERENTIAL_FILE
    from appliance.store.referential.build import FileCount as FileCount
    from appliance.store.referential.build import ImportReport as ImportReport
    from appliance.store.referential.build import TableChange as TableChange
    from appliance.store.referential.build import referential_path as referential_path
    from appliance.store.referential.search import Device as Device
    from appliance.store.referential.search import Presentation as Presentation
    from appliance.store.referential.search import Referential as Referential
    from appliance.store.referential.search import ReferentialInfo as ReferentialInfo


def __getattr__(name: str) -> object:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
