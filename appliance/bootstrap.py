"""The composition root: the one place that builds adapters from the settings.

Every entry point (CLI commands, kiosk, sync service) gets its ports from an ``App``;
tests build the same ``App`` around a temporary data directory.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from functools import cached_property

from appliance.config import Settings
from appliance.store import Store, open_store

log = logging.getLogger(__name__)


@dataclass
class App:
    """Lazily built adapters for one process; nothing is opened until first used."""

    settings: Settings
    _closers: list = field(default_factory=list, repr=False)

    @cached_property
    def store(self) -> Store:
        store = open_store(self.settings.db_path)
        self._closers.append(store.close)
        from appliance.store import mail_outbox  # record_signed queues to this address

        mail_outbox.configure(store, self.settings.pharmacy.mssante)
        return store

    def close(self) -> None:
        while self._closers:
            self._closers.pop()()


def bootstrap(settings: Settings) -> App:
    return App(settings)
