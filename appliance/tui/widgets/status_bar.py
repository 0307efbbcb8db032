"""The one-line status bar shown on every screen: card reader, printer, registry and queue,
drug referential date. It shows ``OrdoApp.status_line``, which the app refreshes from a
worker (never from the UI thread).

It is the last widget of each screen, right above the footer (not docked: two widgets
docked to the same edge would overlap); each screen gives the rest of the height to one
``1fr`` widget."""

from __future__ import annotations

from textual.widgets import Static


class StatusBar(Static):
    DEFAULT_CSS = """
    StatusBar {
        height: 1;
        width: 100%;
        padding: 0 1;
        background: $panel;
        color: $text;
    }
    """

    def __init__(self) -> None:
        super().__init__(markup=False)

    def on_mount(self) -> None:
        self.watch(self.app, "status_line", self._show, init=True)

    def _show(self, text: str) -> None:
        self.update(text)
