"""MSSanté pure parts: settings, Message-ID, XDM packaging and its defensive reader."""

from __future__ import annotations

import io
import zipfile
from datetime import UTC, datetime

import pytest

from appliance.config import load_settings
from appliance.errors import ConfigError, DocumentRefused
from sync import mssante, xdm


@pytest.mark.parametrize("key, value", [("ORDO_PHARMACY_MSSANTE", "pas-une-adresse"),
                                        ("ORDO_MSSANTE_MAILBOX", "a@b"),
                                        ("ORDO_MSSANTE_SMTP_TLS", "none"),
                                        ("ORDO_MSSANTE_IMAP_PORT", "70000")])
def test_bad_mssante_settings_are_refused_with_the_key(key, value):
    with pytest.raises(ConfigError, match=key.split("_", 2)[2].lower()):
        load_settings(environ={key: value})


def test_message_id_depends_on_the_order_and_the_mailbox_only():
    a = mssante.message_id("01M8AA52X8ECJK0TE86HARRT", "ehpad@x.mssante.fr")
    assert a == "<01M8AA52X8ECJK0TE86HARRT.ordonnance@x.mssante.fr>"
    assert a == mssante.message_id("01M8AA52X8ECJK0TE86HARRT", "ehpad@x.mssante.fr")


def _sub() -> xdm.Submission:
    at = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)
    return xdm.Submission("2.25.1", "2.25.2", at, "123^^^&1.2.250.1.213.1.4.8&ISO", "p", "i",
                          "pharma@x.mssante.fr", at, "Ordonnance")


def test_xdm_is_deterministic_and_reads_back():
    docs = [xdm.XdmDocument("DOC0001.XML", b"<x/>", "text/xml", ("a", "b", "c"), "CDA"),
            xdm.XdmDocument("DOC0002.PDF", b"%PDF-1.4", "application/pdf", ("a", "b", "c"),
                            "PDF")]
    first, second = xdm.build_xdm(_sub(), docs), xdm.build_xdm(_sub(), docs)
    assert first == second
    names = zipfile.ZipFile(io.BytesIO(first)).namelist()
    assert names[:3] == ["INDEX.HTM", "README.TXT", "IHE_XDM/SUBSET01/METADATA.XML"]
    assert [(d.name, d.data) for d in xdm.read_xdm(first)] == [
        ("DOC0001.XML", b"<x/>"), ("DOC0002.PDF", b"%PDF-1.4")]


def _zip(entries: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as z:
        for name, data in entries.items():
            z.writestr(name, data)
    return buf.getvalue()


@pytest.mark.parametrize("data, reason", [
    (_zip({"/etc/passwd": b"x"}), "traversée"),
    (_zip({"IHE_XDM/../../x.xml": b"x"}), "traversée"),
    (_zip({f"IHE_XDM/SUBSET01/{n}.XML": b"x" for n in range(100)}), "entrées"),
    (_zip({"IHE_XDM/SUBSET01/DOC.XML": b"\0" * (5 * 1024 * 1024)}), "bombe"),
    (b"PK\x03\x04 not a zip", "illisible"),
], ids=["absolute-path", "parent-path", "too-many-entries", "bomb", "not-a-zip"])
def test_hostile_zips_are_refused_with_a_reason(data, reason):
    with pytest.raises(DocumentRefused, match=reason):
        xdm.read_xdm(data)
