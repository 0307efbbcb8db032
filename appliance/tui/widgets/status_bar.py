"""The one-line status bar shown on every screen: card reader, printer, registry and queue,
drug referential date. It shows ``OrdoApp.status_line``, which the app refreshes from a
worker (never from the UI thread)."""

from __future__ import annotations

from textual.widgets import Static


class StatusBar(Static):
    DEFAULT_CSS = """
    StatusBar {
        dock: bottom;
        height: 1;
        width: 100%;
        padding: 0 1;
        background: $panel;
        color: $text;
    }
    """

    def on_mount(self) -> None:
        self.watch(self.app, "status_line", self._show, init=True)

    def _show(self, text: str) -> None:
        self.update(text)
