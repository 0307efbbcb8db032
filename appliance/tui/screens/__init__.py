"""The kiosk's screens, one module each (lock, PIN, N° AM, home, resident file, editor,
review, signed order, cancellation, sync and alerts)."""
