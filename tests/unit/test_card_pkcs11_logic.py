"""Pure logic of the PKCS#11 backend: PIN tries from the token flags, the watcher's
comparison of two slot scans, the [card] settings, the composition root's PKCS#11 adapters
(made without loading the module) and the wrong-PIN message."""

from __future__ import annotations

import subprocess
import sys

import pytest

from appliance.config import load_settings
from appliance.errors import ConfigError
from appliance.ports.card import CardEventKind
from appliance.services.auth import AuthRefused
from drivers.card.pkcs11 import Pkcs11Module, Pkcs11Watcher, TokenView, pin_status_from_flags

COUNT_LOW, FINAL_TRY, LOCKED = 0x10000, 0x20000, 0x40000


@pytest.mark.parametrize(("flags", "tries", "blocked"), [
    (0, None, False), (COUNT_LOW, None, False), (COUNT_LOW | FINAL_TRY, 1, False),
    (COUNT_LOW | FINAL_TRY | LOCKED, 0, True), (LOCKED, 0, True)])
def test_tries_left_only_as_precisely_as_the_token_tells(flags, tries, blocked):
    status = pin_status_from_flags(flags)
    assert (status.tries_left, status.blocked) == (tries, blocked)


def _watcher():
    events = []
    watcher = Pkcs11Watcher(Pkcs11Module("/nonexistent/module.so"))   # never loaded here
    watcher.subscribe(events.append)
    return watcher, events


def _kinds(events):
    return [(e.kind, e.reader, e.initial) for e in events]


def test_first_scan_reports_readers_and_cards_as_initial():
    watcher, events = _watcher()
    watcher._apply({"A": TokenView("A", 1, "physician", "s1"), "B": TokenView("B", 2)}, set())
    assert _kinds(events) == [(CardEventKind.READER_ADDED, "A", True),
                              (CardEventKind.INSERTED, "A", True),
                              (CardEventKind.READER_ADDED, "B", True)]
    assert watcher.cards() == {"A": b""} and watcher.readers() == ["A", "B"]


def test_removal_insertion_swap_and_slot_events():
    watcher, events = _watcher()
    card = TokenView("A", 1, "physician", "s1")
    watcher._apply({"A": card}, set())
    events.clear()
    watcher._apply({"A": TokenView("A", 1)}, set())                 # taken out
    watcher._apply({"A": card}, set())                              # back in
    watcher._apply({"A": TokenView("A", 1, "nurse", "s2")}, set())  # another card
    watcher._apply({"A": TokenView("A", 1, "nurse", "s2")}, {1})    # out and in between scans
    watcher._apply({}, set())                                       # the reader is gone
    assert [(k, r) for k, r, _ in _kinds(events)] == [
        (CardEventKind.REMOVED, "A"), (CardEventKind.INSERTED, "A"),
        (CardEventKind.REMOVED, "A"), (CardEventKind.INSERTED, "A"),
        (CardEventKind.REMOVED, "A"), (CardEventKind.INSERTED, "A"),
        (CardEventKind.REMOVED, "A"), (CardEventKind.READER_REMOVED, "A")]
    assert not any(initial for _, _, initial in _kinds(events))


def test_a_module_that_fails_reports_the_cards_removed_then_the_service_lost():
    watcher, events = _watcher()
    watcher._service = True
    watcher._apply({"A": TokenView("A", 1, "physician", "s1")}, set())
    events.clear()
    watcher._service_lost("C_GetSlotList failed")
    watcher._service_lost("still failing")
    assert [e.kind for e in events] == [CardEventKind.REMOVED, CardEventKind.READER_REMOVED,
                                        CardEventKind.SERVICE_LOST]
    assert not watcher.service_up and watcher.cards() == {}


def test_card_settings_are_checked():
    settings = load_settings(environ={"ORDO_CARD_BACKEND": "pkcs11",
                                      "ORDO_CARD_TOKEN_LABEL": "CPS"})
    assert (settings.card.backend, settings.card.pkcs11_module, settings.card.token_label) == (
        "pkcs11", "", "CPS")
    assert load_settings(environ={}).card.backend == "pcsc"
    for key, value, words in (("ORDO_CARD_BACKEND", "opensc", "pcsc ou pkcs11"),
                              ("ORDO_CARD_PKCS11_MODULE", "opensc-pkcs11.so", "chemin absolu"),
                              ("ORDO_CARD_TOKEN_LABEL", "x" * 33, "32 octets au plus")):
        with pytest.raises(ConfigError) as exc:
            load_settings(environ={key: value})
        assert words in str(exc.value) and value in str(exc.value)


def test_wrong_pin_message_with_and_without_a_count():
    assert str(AuthRefused("wrong_pin", tries_left=2)) == \
        "Code PIN incorrect : 2 essai(s) restant(s)."
    assert str(AuthRefused("wrong_pin", tries_left=None)) == "Code PIN incorrect."


def test_the_root_builds_the_pkcs11_adapters_without_loading_the_module(tmp_path):
    from appliance.bootstrap import bootstrap
    from drivers.card.pkcs11 import Pkcs11Reader

    module = tmp_path / "libvendor-pkcs11.so"          # never loaded: it need not exist
    app = bootstrap(load_settings(data_dir=tmp_path, environ={
        "ORDO_CARD_BACKEND": "pkcs11", "ORDO_CARD_PKCS11_MODULE": str(module),
        "ORDO_CARD_TOKEN_LABEL": "CPS"}))
    reader = app.card_reader
    assert isinstance(reader, Pkcs11Reader) and reader.token_label == "CPS"
    assert reader.module.path == str(module) and not reader.module.loaded
    first, second = app.card_watcher(), app.card_watcher()
    assert isinstance(first, Pkcs11Watcher) and first is not second
    assert first.module is reader.module and first.token_label == "CPS"
    assert not first.running and not reader.module.loaded
    app.close()


def test_building_the_card_backend_imports_no_pkcs11_binding(tmp_path):
    code = ("import sys\nfrom appliance.bootstrap import bootstrap\n"
            "from appliance.config import load_settings\n"
            f"app = bootstrap(load_settings(data_dir={str(tmp_path)!r}, environ={{"
            "'ORDO_CARD_BACKEND': 'pkcs11', 'ORDO_CARD_PKCS11_MODULE': '/x/p11.so'}))\n"
            "app.card_reader, app.card_watcher()\n"
            "print(' '.join(m for m in ('pkcs11', 'cryptography') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.split() == []
