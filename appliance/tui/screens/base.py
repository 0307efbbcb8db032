"""What every kiosk screen shares: access to the app's context and session, background
work that reports back only while the screen is still shown, and French error messages."""

from __future__ import annotations

import logging
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, Any, TypeVar

from textual.screen import ModalScreen, Screen
from textual.worker import Worker

from appliance.errors import OrdoError, ValidationError
from appliance.tui.messages import RunInUi

if TYPE_CHECKING:
    from appliance.services.auth import PractitionerSession
    from appliance.tui.app import OrdoApp
    from appliance.tui.context import KioskContext

log = logging.getLogger(__name__)

T = TypeVar("T")

LOCK_REASONS_FR = {
    "card_removed": "Carte retirée : session verrouillée.",
    "idle": "Session verrouillée après inactivité.",
    "logout": "Session fermée.",
    "other_card": "Une autre carte a été insérée : session verrouillée.",
    "reader_removed": "Lecteur de carte débranché : session verrouillée.",
    "service_lost": "Service carte à puce arrêté : session verrouillée.",
    "shutdown": "Arrêt du poste.",
}


def describe_error(exc: BaseException) -> str:
    """A French message for the physician or the nurse, never a traceback."""
    if isinstance(exc, ValidationError):
        return f"Saisie refusée ({exc.field}) : {exc.expected}"
    if isinstance(exc, OrdoError):
        return str(exc)
    return "Erreur interne : l'opération n'a pas abouti (voir le journal du poste)."


class _Background:
    """Mixin: ``background(job, done)`` runs ``job`` in a thread worker and calls ``done``
    (or ``failed``) in the UI thread, only if the screen is still mounted."""

    @property
    def kiosk(self) -> OrdoApp:
        return self.app  # type: ignore[attr-defined, no-any-return]

    @property
    def ctx(self) -> KioskContext:
        return self.kiosk.ctx

    @property
    def session(self) -> PractitionerSession | None:
        return self.kiosk.session

    def background(self, job: Callable[[], T], done: Callable[[T], Any] | None = None, *,
                   failed: Callable[[BaseException], Any] | None = None,
                   group: str = "default", exclusive: bool = False) -> Worker[None]:
        app = self.kiosk

        def run() -> None:
            try:
                result = job()
            except Exception as exc:
                if not isinstance(exc, OrdoError):
                    log.exception("kiosk background job failed")
                app.post_message(RunInUi(partial(self._report, failed or self.show_error),
                                         exc))
                return
            if done is not None:
                app.post_message(RunInUi(partial(self._report, done), result))

        return self.run_worker(run, thread=True, exit_on_error=False,  # type: ignore[attr-defined]
                               group=group, exclusive=exclusive)

    def _report(self, callback: Callable[[Any], Any], value: Any) -> None:
        if self.is_attached and self in self.app.screen_stack:  # type: ignore[attr-defined]
            if isinstance(value, BaseException) and callback is self.show_error:
                callback(describe_error(value))
            else:
                callback(value)

    def show_error(self, message: Any) -> None:
        """Screens override it to show ``message`` in their message line."""
        self.notify(str(message), severity="error")  # type: ignore[attr-defined]


class KioskScreen(_Background, Screen[Any]):
    pass


class KioskModal(_Background, ModalScreen[Any]):
    pass
