"""What every kiosk screen shares: access to the app's context and session, background
work that reports back only while the screen is still shown, and French error messages."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, Any, TypeVar

from textual.css.query import NoMatches
from textual.screen import ModalScreen, Screen
from textual.widgets import Static
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


# The fields of the domain's errors, named as the screens call them.
FIELDS_FR = {
    "posology.duration.value": "Durée", "posology.duration": "Durée",
    "posology.duration.unit": "Durée", "posology.dose": "Posologie",
    "posology.text": "Posologie", "posologie": "Posologie", "durée": "Durée",
    "quantité": "Boîtes", "medication.quantity": "Boîtes", "device.quantity": "Quantité",
    "medication.label": "Médicament", "medication.cis": "Médicament",
    "medication.code": "Médicament", "medication.instructions": "Posologie",
    "device.label": "Dispositif", "device.lpp": "Code LPP", "act.text": "Acte",
    "renewals": "Renouvellements", "lines": "Lignes", "prescriber.am": "N° AM",
    "cancel_reason": "Motif", "am": "N° AM",
}

# What the domain expects (English), in French; the fields the editor parses itself are
# French already.
_EXPECTED_FR = (
    (r"a whole number from (\d+) to (\d+)", r"un nombre entier de \1 à \2"),
    (r".*without control (?:or bidirectional )?characters.*\((U\+[0-9A-F]+) at position "
     r"(\d+)\)", r"un texte sans caractère de contrôle (\1 en position \2)"),
    (r".*without control (?:or bidirectional )?characters.*",
     "un texte sans caractère de contrôle"),
    (r"at most (\d+) characters", r"au plus \1 caractères"),
    (r"a non-empty (?:text|name).*", "un texte non vide"),
    (r"a Decimal greater than 0.*", "un nombre supérieur à 0 (3 décimales au plus)"),
    (r"a number greater than 0 and at most (\d+)", r"un nombre supérieur à 0 et au plus \1"),
    (r"a number", "un nombre"),
    (r"between (\d+) and (\d+)", r"entre \1 et \2"),
    (r"at least one line", "au moins une ligne"),
    (r"the prescriber's N° AM", "le N° AM du prescripteur"),
)


def _expected_fr(expected: str) -> str | None:
    for pattern, french in _EXPECTED_FR:
        match = re.fullmatch(pattern, expected)
        if match is not None:
            return match.expand(french)
    return None


_REGISTRY_FR = (
    (r"registry refused \((\d+)\): (.*)", r"refus du registre (code \1) : \2"),
    (r"registry error \((\d+)\): (.*)", r"erreur du registre (code \1) : \2"),
    (r"TLS refused: (.*)", r"connexion TLS refusée : \1"),
)


def registry_text_fr(text: str | None) -> str:
    """A reason the sync service recorded (the registry's answer, kept as received for the
    logs), in French for the screen; the registry's own words are shown as they are."""
    text = text or "?"
    for pattern, french in _REGISTRY_FR:
        match = re.fullmatch(pattern, text, re.DOTALL)
        if match is not None:
            return match.expand(french)
    return text


def describe_error(exc: BaseException) -> str:
    """A French message for the physician or the nurse, never a traceback nor an internal
    name: the field as the screen calls it, what is expected, what was typed."""
    if isinstance(exc, ValidationError):
        field = exc.field
        label = FIELDS_FR.get(field) or FIELDS_FR.get(field.split(".")[0]) or (
            "Posologie" if field.startswith("posology") else "Saisie")
        expected = _expected_fr(exc.expected)
        if expected is None:
            native = field in FIELDS_FR and field.isalpha()  # the editor's own, French
            expected = exc.expected if native else "une valeur acceptée"
        typed = exc.value if isinstance(exc.value, str | int) else None
        typed = "".join(c if c.isprintable() else "·" for c in str(typed or ""))[:30]
        shown = f" (saisi : {typed})" if typed else ""
        return f"Saisie refusée - {label} : {expected}{shown}."
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
        """``message`` in the screen's message line, in the error style."""
        self.say(message, error=True)

    def show_info(self, message: Any) -> None:
        """``message`` (something done) in the screen's message line, in the success
        style."""
        self.say(message, error=False)

    def say(self, message: Any, *, error: bool) -> None:
        try:
            line = self.query_one("#message", Static)  # type: ignore[attr-defined]
        except NoMatches:
            self.notify(str(message), severity="error" if error else "information",  # type: ignore[attr-defined]
                        markup=False)
            return
        line.update(str(message))
        line.set_class(error, "-error")
        line.set_class(not error, "-ok")


class KioskScreen(_Background, Screen[Any]):
    pass


class KioskModal(_Background, ModalScreen[Any]):
    pass
