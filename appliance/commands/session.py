"""Card sessions for the CLI: open the card, authenticate its holder, audit from any thread.

Shared by the commands that act for a practitioner (``ordo prescribe``, ``ordo reprint``) and
by the kiosk's composition root.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import click

from appliance.errors import CardError

if TYPE_CHECKING:  # cryptography is loaded by the first login, not by the kiosk's start
    from appliance.config import Settings
    from appliance.services.auth import PractitionerSession
    from appliance.services.trust import TrustStore
    from appliance.store.db import Store


def store_audit(open_db: Callable[[], Store]) -> Callable[..., object]:
    """``audit(**entry)`` for the auth service, callable from any thread (own connection)."""

    def append(**entry: Any) -> object:
        from appliance.store import audit

        store = open_db()
        try:
            return audit.append(store, **entry)
        finally:
            store.close()

    return append


def card_reader_for(settings: Settings) -> Any:
    """The ``CardReader`` of the configured backend (``[card] backend``)."""
    from drivers.card.backend import make_card_reader

    return make_card_reader(settings)


def open_card(reader: str | None, slot: int | None, card_reader: Any = None) -> Any:
    """Open the card in ``reader`` (by name), in ``slot`` (by index), or in the first
    reader holding one; ``card_reader`` is the backend's reader (PC/SC when None)."""
    if card_reader is None:
        from drivers.card.pcsc import PcscReader

        card_reader = PcscReader()
    if reader is not None:
        names = card_reader.readers()
        if reader not in names:
            raise CardError(f"lecteur introuvable : {reader}")
        return card_reader.open(names.index(reader))
    if slot is not None:
        return card_reader.open(slot)
    names = card_reader.readers()
    holding = set(card_reader.readers_with_card())
    for index, name in enumerate(names):
        if name in holding:
            return card_reader.open(index)
    raise CardError("aucune carte dans les lecteurs : insérez la carte CPS")


def login(trust: TrustStore, audit_log: Callable[..., object], idle_timeout_s: float,
          pin: str, *, reader: str | None = None, slot: int | None = None,
          card_reader: Any = None) -> PractitionerSession:
    """Open the card and authenticate its holder (call it on the card thread)."""
    from appliance.services.auth import authenticate

    card = open_card(reader, slot, card_reader)
    try:
        return authenticate(card, pin, trust, audit=audit_log, idle_timeout_s=idle_timeout_s)
    except BaseException:
        card.close()
        raise


def read_pin(pin_stdin: bool) -> str:
    if pin_stdin:
        return sys.stdin.readline().strip()
    return str(click.prompt("Code PIN", hide_input=True))
