"""Logging for every Ordo process: one ``key=value`` line per event, with a level.

Format (logfmt): ``level=info logger=appliance.ops.backup msg="backup written"
bytes=52428800 path=/var/lib/ordo/backups/ordo-20261125T023000Z.ordobak``. Values that hold
spaces, quotes or ``=`` are double-quoted with backslash escapes; extra fields come from
``log.info("...", extra={"fields": {...}})``.

- On a terminal (or a pipe) each line starts with ``ts=`` (UTC, ISO 8601, milliseconds).
- Under systemd (``JOURNAL_STREAM`` names our stderr) the journal stamps the time itself:
  no ``ts=``, and each line starts with the ``sd-daemon(3)`` priority prefix ``<N>`` so
  that ``journalctl -p warning`` works.

Defence in depth: ``RedactFilter`` replaces NIR-shaped digit runs (13 or 15 digits,
groups separated by single spaces allowed, ``2A``/``2B`` for Corsica) with ``[NIR]`` in
the message, its arguments, the extra fields and the traceback. 13-digit runs starting
``3400`` are CIP13/UCD drug codes (public) and are kept. Names and birth dates cannot be
recognised: code must never log them (the store's audit refuses such keys too).
"""

from __future__ import annotations

import logging
import os
import re
import sys
from datetime import UTC, datetime
from typing import Any, TextIO

LOGGER_NAMES = ("appliance", "drivers", "sync")
REDACTED = "[NIR]"

# sd-daemon(3): <3> error, <4> warning, <6> info, <7> debug.
_SD_PRIORITY = {logging.CRITICAL: 2, logging.ERROR: 3, logging.WARNING: 4, logging.INFO: 6,
                logging.DEBUG: 7}
# A NIR: sex digit, year, month, department (2A/2B for Corsica), commune, order, [key].
# Runs glued to other letters or digits (prescription IDs, hashes) are not NIRs.
_NIR_RE = re.compile(
    r"(?<![0-9A-Za-z])"
    r"(?P<nir>\d(?: ?\d{2}){2} ?(?:\d{2}|2[ABab])(?: ?\d{3}){2}(?: ?\d{2})?)"
    r"(?![0-9A-Za-z])"
)
_PUBLIC_PREFIXES = ("3400",)  # CIP13 (34009) and UCD (34008) drug codes
_BARE = re.compile(r"[^\s\"'=\\]+")


def redact(text: str) -> str:
    """``text`` with every NIR-shaped digit run replaced by ``[NIR]``."""

    def _replace(match: re.Match[str]) -> str:
        digits = match.group("nir").replace(" ", "")
        if len(digits) == 13 and digits.startswith(_PUBLIC_PREFIXES):
            return match.group(0)
        return REDACTED

    return _NIR_RE.sub(_replace, text)


def _redact_value(value: Any) -> Any:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, int | float | bool) or value is None:
        return value
    return redact(str(value))


class RedactFilter(logging.Filter):
    """Rewrites a record so that no NIR-shaped number reaches a handler."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except (TypeError, ValueError):
            message = str(record.msg)
        record.msg, record.args = redact(message), None
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            record.fields = {k: _redact_value(v) for k, v in fields.items()}
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True


def _quote(value: Any) -> str:
    text = "" if value is None else str(value)
    if text and _BARE.fullmatch(text):
        return text
    escaped = (text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
               .replace("\r", "\\r").replace("\t", "\\t"))
    return f'"{escaped}"'


class KeyValueFormatter(logging.Formatter):
    """One logfmt line per record (tracebacks follow, indented, in journal mode too)."""

    def __init__(self, journal: bool = False) -> None:
        super().__init__()
        self.journal = journal

    def format(self, record: logging.LogRecord) -> str:
        parts = []
        if not self.journal:
            stamp = datetime.fromtimestamp(record.created, UTC)
            parts.append("ts=" + stamp.isoformat(timespec="milliseconds").replace("+00:00", "Z"))
        parts += [f"level={record.levelname.lower()}", f"logger={record.name}",
                  f"msg={_quote(record.getMessage())}"]
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            parts += [f"{key}={_quote(value)}" for key, value in fields.items()]
        line = " ".join(parts)
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            line += "\n" + "\n".join("  " + ln for ln in record.exc_text.splitlines())
        if self.journal:
            prefix = f"<{_SD_PRIORITY.get(record.levelno, 6)}>"
            line = "\n".join(prefix + ln for ln in line.splitlines())
        return line


def stream_is_journal(stream: TextIO, environ: dict[str, str] | None = None) -> bool:
    """True when ``stream`` is connected to journald (``JOURNAL_STREAM=dev:ino``)."""
    value = (os.environ if environ is None else environ).get("JOURNAL_STREAM", "")
    dev, _, ino = value.partition(":")
    try:
        st = os.fstat(stream.fileno())
    except (AttributeError, OSError, ValueError):
        return False
    return bool(dev and ino) and f"{st.st_dev}:{st.st_ino}" == f"{dev}:{ino}"


def setup_logging(level: str, stream: TextIO | None = None) -> logging.Handler:
    """Send Ordo's loggers (at ``level``) and other libraries' warnings to ``stream``
    (default: stderr) through the redaction filter; returns the handler."""
    stream = sys.stderr if stream is None else stream
    handler = logging.StreamHandler(stream)
    handler.setFormatter(KeyValueFormatter(journal=stream_is_journal(stream)))
    handler.addFilter(RedactFilter())
    for name in LOGGER_NAMES:
        logger = logging.getLogger(name)
        logger.handlers[:] = [handler]
        logger.setLevel(level)
        logger.propagate = False
    root = logging.getLogger()
    root.handlers[:] = [h for h in root.handlers if not getattr(h, "_ordo", False)]
    handler._ordo = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    if root.level == logging.NOTSET or root.level > logging.WARNING:
        root.setLevel(logging.WARNING)
    return handler
