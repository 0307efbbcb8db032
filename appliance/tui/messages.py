"""App-wide messages. Posted from other threads (card monitor, print worker, session lock)
with ``post_message``, which is thread-safe; handled by ``OrdoApp``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from textual.message import Message

if TYPE_CHECKING:
    from appliance.ports.card import CardEvent


class CardChanged(Message):
    """A card or reader event seen by the card monitor."""

    def __init__(self, event: CardEvent) -> None:
        self.event = event
        super().__init__()


class SessionLocked(Message):
    """The practitioner's session locked (card removed, idle, logout...)."""

    def __init__(self, session: Any, reason: str) -> None:
        self.session = session
        self.reason = reason
        super().__init__()


class PrintStatusChanged(Message):
    """The print queue reported (``appliance.services.printing.QueueStatus``)."""

    def __init__(self, status: Any) -> None:
        self.status = status
        super().__init__()


class DataChanged(Message):
    """Prescriptions changed (signed, cancelled, reprinted): screens refresh."""


class RunInUi(Message):
    """Run ``callback(value)`` in the UI thread (how background jobs report back)."""

    def __init__(self, callback: Any, value: Any) -> None:
        self.callback = callback
        self.value = value
        super().__init__()
