"""The status line's card part: "Carte présente" only when the reader in use holds a card
(the session's reader, or the one whose PIN is being typed)."""

from __future__ import annotations

from types import SimpleNamespace

from appliance.tui.app import OrdoApp
from appliance.tui.context import KioskContext


class TwoReaders:
    """A card watcher with two readers; ``cards`` says which hold a card."""

    def __init__(self, *holding: str) -> None:
        self.holding = set(holding)
        self.service_up = True

    def readers(self) -> list[str]:
        return ["Lecteur A", "Lecteur B"]

    def cards(self) -> dict[str, bytes]:
        return {reader: b"\x3b" for reader in self.holding}


def card_part(watcher: TwoReaders, session_reader: str | None) -> str:
    app = OrdoApp(KioskContext(new_uow=lambda: None, login=lambda reader, pin: None,
                               watcher=watcher))
    if session_reader is not None:
        app.session = SimpleNamespace(reader=session_reader)
    app._update_card_status()
    return app._parts["card"]


def test_a_card_in_another_reader_is_not_the_session_s_card():
    assert card_part(TwoReaders("Lecteur B"), "Lecteur A") == "Carte absente"
    assert card_part(TwoReaders("Lecteur A", "Lecteur B"), "Lecteur A") == "Carte présente"


def test_without_a_session_any_card_is_the_one_the_lock_screen_waits_for():
    assert card_part(TwoReaders("Lecteur B"), None) == "Carte présente"
    assert card_part(TwoReaders(), None) == "Carte absente"
