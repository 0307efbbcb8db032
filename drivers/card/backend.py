"""The one place that picks the card adapters from the settings (``[card] backend``).

``make_card_backend(settings)`` returns the ``CardReader`` and the ``CardWatcher`` of the
configured backend: ``pcsc`` (pcscd, Ordo's APDUs: ``drivers.card.pcsc`` and
``drivers.card.monitor``) or ``pkcs11`` (a PKCS#11 module: ``drivers.card.pkcs11``). Making
them opens nothing: pcscd is reached and the PKCS#11 module loaded at their first use, in the
process that uses them (the kiosk or a card command). Nothing heavy is imported here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from appliance.config import Settings


def make_card_backend(settings: Settings) -> tuple[Any, Any]:
    """``(reader, watcher)`` for ``settings.card``."""
    card = settings.card
    if card.backend == "pkcs11":
        from drivers.card import pkcs11

        module = pkcs11.module(pkcs11.module_path(card.pkcs11_module))
        return (pkcs11.Pkcs11Reader(module, card.token_label),
                pkcs11.Pkcs11Watcher(module, card.token_label))
    from drivers.card.monitor import ReaderMonitor
    from drivers.card.pcsc import PcscReader

    return PcscReader(), ReaderMonitor()


def make_card_reader(settings: Settings) -> Any:
    """The ``CardReader`` alone (for the commands that open the card once)."""
    card = settings.card
    if card.backend == "pkcs11":
        from drivers.card import pkcs11

        return pkcs11.Pkcs11Reader(pkcs11.module(pkcs11.module_path(card.pkcs11_module)),
                                   card.token_label)
    from drivers.card.pcsc import PcscReader

    return PcscReader()
