"""The metrics endpoint's pure parts: ``[metrics] listen`` and its errors, the bounded
device probe, private registries."""

from __future__ import annotations

import threading
import time

import pytest
from prometheus_client import REGISTRY, generate_latest

from appliance.config import listen_address, load_settings
from appliance.errors import ConfigError
from appliance.ops.metrics import DeviceProbe, OrdoCollector, metrics_server, registry
from tests.fakes import FakeUnitOfWork


@pytest.mark.parametrize(("value", "expected"), [
    ("127.0.0.1:9464", ("127.0.0.1", 9464)),
    ("[::1]:9464", ("::1", 9464)),
    ("localhost:9100", ("127.0.0.1", 9100)),
    ("10.8.0.12:9464", ("10.8.0.12", 9464)),
    ("0.0.0.0:1", ("0.0.0.0", 1)),
    ("", None),
])
def test_listen_addresses(value, expected):
    assert listen_address(value) == expected


@pytest.mark.parametrize("value", [
    "9464", "127.0.0.1", "127.0.0.1:0", "127.0.0.1:65536", "127.0.0.1:-1", "::1:9464",
    "[127.0.0.1]:9464", "ehpad.example:9464", "127.0.0.1:９４６４", " 127.0.0.1:9464",
    "127.0.0.1:9464/metrics", "http://127.0.0.1:9464",
])
def test_a_bad_listen_address_is_refused_naming_the_key_and_the_value(value, tmp_path):
    with pytest.raises(ConfigError) as caught:
        load_settings(config_file=_empty(tmp_path), data_dir=tmp_path,
                      environ={"ORDO_METRICS_LISTEN": value})
    assert caught.value.key == "metrics.listen"
    assert caught.value.value == value
    assert "127.0.0.1:9464" in caught.value.expected
    assert f"metrics.listen = {value!r}" in str(caught.value)


def test_the_default_is_loopback_and_empty_disables(tmp_path):
    settings = load_settings(config_file=_empty(tmp_path), data_dir=tmp_path, environ={})
    assert settings.metrics.listen == "127.0.0.1:9464"
    off = load_settings(config_file=_empty(tmp_path), data_dir=tmp_path,
                        environ={"ORDO_METRICS_LISTEN": ""})
    assert metrics_server(off, FakeUnitOfWork) is None
    server = metrics_server(settings, FakeUnitOfWork)
    assert server is not None and server.address == "127.0.0.1:9464"


def _empty(tmp_path):
    path = tmp_path / "empty.toml"
    path.write_text("")
    return path


# -- the device probe ----------------------------------------------------------------------
def test_a_hung_device_is_down_within_the_timeout_and_not_asked_twice():
    release, calls = threading.Event(), []

    def hang():
        calls.append(1)
        release.wait(10)
        return 2

    probe = DeviceProbe("reader", hang, every_s=0.0, timeout_s=0.2)
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        probe.read()
    with pytest.raises(TimeoutError):
        probe.read()  # still hung: waits again, but no second thread piles up
    assert time.monotonic() - started < 2.0
    assert len(calls) == 1
    release.set()
    deadline = time.monotonic() + 5
    while True:
        try:
            assert probe.read() == 2
            break
        except TimeoutError:
            assert time.monotonic() < deadline
    assert len(calls) <= 2


def test_answers_are_reused_for_every_s_and_errors_reraised():
    calls, now = [], [0.0]

    def count():
        calls.append(1)
        if len(calls) == 2:
            raise OSError("unplugged")
        return len(calls)

    probe = DeviceProbe("printer", count, every_s=30.0, timeout_s=2.0,
                        monotonic=lambda: now[0])
    assert probe.read() == 1
    now[0] = 29.0
    assert probe.read() == 1 and len(calls) == 1
    now[0] = 30.0
    with pytest.raises(OSError, match="unplugged"):
        probe.read()
    with pytest.raises(OSError, match="unplugged"):
        probe.read()  # the failure is the answer until it is due again
    now[0] = 61.0
    assert probe.read() == 3


def test_collectors_live_in_private_registries(tmp_path):
    settings = load_settings(config_file=_empty(tmp_path), data_dir=tmp_path, environ={
        "ORDO_ESTABLISHMENT_FINESS": "2A0000013", "ORDO_PRINTER_URI": "tcp://127.0.0.1:1"})
    texts = []
    for _ in range(2):
        collector = OrdoCollector(settings, FakeUnitOfWork, device_timeout_s=0.5,
                                  card_readers=lambda: 0)
        texts.append(generate_latest(registry(collector)).decode())
    assert all('ordo_build_info{finess="2A0000013"' in text for text in texts)
    assert all('ordo_outbox_pending{finess="2A0000013"} 0.0' in text for text in texts)
    assert "ordo_" not in generate_latest(REGISTRY).decode()


def test_a_printer_on_a_device_file_is_left_to_the_kiosk(tmp_path):
    """The sync service has no device access: a file:// or serial:// printer is not asked
    (its gauges are absent rather than reporting it down)."""
    for uri, asked in (("file:///dev/usb/lp0", False), ("serial:///dev/ttyUSB0", False),
                       ("tcp://127.0.0.1:1", True)):
        settings = load_settings(config_file=_empty(tmp_path), data_dir=tmp_path,
                                 environ={"ORDO_PRINTER_URI": uri})
        collector = OrdoCollector(settings, FakeUnitOfWork, device_timeout_s=1.0,
                                  card_readers=lambda: 1)
        text = generate_latest(registry(collector)).decode()
        assert ('ordo_printer_up{finess=""} 0.0' in text) is asked, uri
        assert ("ordo_printer_" in text) is asked, uri
        assert 'ordo_card_reader_present{finess=""} 1.0' in text
