"""Structured log lines (logfmt), journald priorities, and the NIR redaction filter."""

from __future__ import annotations

import io
import logging
import os
import re

import pytest

from appliance.logs import (
    REDACTED,
    KeyValueFormatter,
    RedactFilter,
    redact,
    setup_logging,
    stream_is_journal,
)
from tests.factories import nir

NIR15 = nir("2400175123001")  # 15 digits with its key


@pytest.mark.parametrize("text", [
    NIR15,
    NIR15[:13],
    "2 40 01 75 123 001 " + NIR15[-2:],
    "2 40 01 75 123 001",
    nir("232022A012345"),
    "232022b012345",
    f"resident={NIR15};",
    f"(nir {NIR15[:13]})",
])
def test_nir_shaped_numbers_are_redacted(text):
    out = redact(f"before {text} after")
    assert REDACTED in out
    core = re.sub(r"[^0-9AB]", "", text.upper())
    assert len(core) >= 13 and core[:13] not in re.sub(r"[^0-9AB]", "", out.upper())


@pytest.mark.parametrize("text", [
    "3400935955838",  # CIP13: a public drug code
    "3400893826706",  # UCD
    "01M8AA52X8ECJK0TE86HARRT",  # a prescription ID
    "12345678901234",  # 14 digits: not a NIR
    "a" + "1" * 13,  # glued to a letter (a hash)
    "2026-11-25T09:30:00.000Z",
    "audit_seq=1234567",
])
def test_other_numbers_are_kept(text):
    assert redact(f"x {text} y") == f"x {text} y"


def _record(msg, *args, fields=None, exc=None):
    record = logging.LogRecord("appliance.test", logging.WARNING, __file__, 1, msg, args,
                               exc)
    if fields is not None:
        record.fields = fields
    return record


def test_filter_redacts_message_arguments_fields_and_traceback():
    try:
        raise ValueError(f"bad NIR {NIR15}")
    except ValueError:
        import sys

        exc = sys.exc_info()
    record = _record("import of %s failed", NIR15, fields={"ins": NIR15, "count": 3}, exc=exc)
    assert RedactFilter().filter(record) is True
    line = KeyValueFormatter().format(record)
    assert NIR15 not in line and NIR15[:13] not in line
    assert line.count(REDACTED) == 3
    assert "count=3" in line


def test_logfmt_line_quotes_what_needs_it():
    record = _record("backup written", fields={"path": "/var/lib/ordo/b 1.ordobak",
                                               "bytes": 42, "quote": 'a"b', "empty": ""})
    line = KeyValueFormatter().format(record)
    assert line.startswith("ts=") and line.split()[0].endswith("Z")
    assert ' level=warning logger=appliance.test msg="backup written" ' in line
    assert 'path="/var/lib/ordo/b 1.ordobak" bytes=42 quote="a\\"b" empty=""' in line


def test_journal_lines_carry_the_priority_and_no_time():
    formatter = KeyValueFormatter(journal=True)
    record = _record("disk nearly full")
    assert formatter.format(record).startswith("<4>level=warning ")
    record.levelno, record.levelname = logging.DEBUG, "DEBUG"
    assert formatter.format(record).startswith("<7>level=debug ")


def test_journal_is_detected_from_journal_stream(tmp_path):
    with (tmp_path / "log").open("w") as stream:
        st = os.fstat(stream.fileno())
        assert stream_is_journal(stream, {"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"})
        assert not stream_is_journal(stream, {"JOURNAL_STREAM": f"{st.st_dev}:1"})
        assert not stream_is_journal(stream, {})
    assert not stream_is_journal(io.StringIO(), {"JOURNAL_STREAM": "1:2"})


def test_setup_logging_levels_and_redaction():
    stream = io.StringIO()
    setup_logging("INFO", stream)
    log = logging.getLogger("appliance.services.test")
    log.debug("hidden")
    log.info("resident %s imported", NIR15, extra={"fields": {"room": "101"}})
    logging.getLogger("some.library").warning("library warning about %s", NIR15)
    logging.getLogger("some.library").info("library chatter")
    out = stream.getvalue().splitlines()
    assert len(out) == 2
    assert 'msg="resident [NIR] imported" room=101' in out[0]
    assert "logger=some.library" in out[1] and REDACTED in out[1]
