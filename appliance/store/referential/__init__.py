"""The drug and device referential: BDPM and LPP parsing, its own SQLite file, search.

``bdpm`` and ``devices`` parse source files (pure); ``build`` writes the referential
file atomically; ``search`` answers the UI (``Referential``); ``gs1`` decodes scanner
input; ``text`` folds names and queries alike.
"""

from appliance.store.referential.build import (
    REFERENTIAL_FILE,
    FileCount,
    ImportReport,
    TableChange,
    referential_path,
)
from appliance.store.referential.search import (
    Device,
    Presentation,
    Referential,
    ReferentialInfo,
)

__all__ = [
    "REFERENTIAL_FILE",
    "Device",
    "FileCount",
    "ImportReport",
    "Presentation",
    "Referential",
    "ReferentialInfo",
    "TableChange",
    "referential_path",
]
