"""Ports: the interfaces that the services need and that the adapters implement, one module
per kind of I/O (``typing.Protocol`` classes and the records they exchange):

    card.py      the CPS card, its readers, their events, the card as a signer (drivers.card)
    printer.py   the order printer and its status (drivers.printer)
    registry.py  the national registry (sync.client)
    uow.py       the local database: a unit of work and one repository per table
                 (appliance.store), with the read models of the screens
    clock.py     the wall clock, and the house timestamp format

Services depend on these modules only; the composition root (``appliance.bootstrap``) picks
the adapters. Import from the module of the port (``from appliance.ports.card import
CardSession``); the names are also reachable from this package, loaded on first access (PEP
562), so that importing one port never loads the others.
"""

from __future__ import annotations

import importlib

# name -> module of this package (kept in step with each module's ``__all__`` by a test)
_EXPORTS: dict[str, str] = {
    **dict.fromkeys((
        "SHA256_DIGEST_INFO_PREFIX", "CardCertificates", "CardError", "CardEvent",
        "CardEventKind", "CardReader", "CardRemoved", "CardSession", "CardWatcher",
        "PinBlocked", "PinStatus", "Signer", "WrongPin", "sha256_digest_info"), "card"),
    **dict.fromkeys((
        "PRINTER_STATE_LABELS_FR", "OrderPrinter", "PrintReceipt", "PrintRequest",
        "PrinterError", "PrinterState", "PrinterStatus", "PrinterUnavailable"), "printer"),
    **dict.fromkeys((
        "Dispensation", "DispensationPage", "EncodingRegistry", "Registry",
        "RegistryConflict", "RegistryError", "RegistryReceipt", "RegistryRejected",
        "RegistryThrottled", "RegistryUnavailable", "SignatureProof"), "registry"),
    **dict.fromkeys((
        "AuditAnchor", "AuditEntry", "AuditLog", "DispensationAlert", "Dispensations", "DraftRow",
        "FileEntry", "HistoryRow", "Meta", "Outbox", "OutboxRecord", "Practitioners",
        "Prescriptions", "PrintJob", "PrintJobs", "QuarantinedRecord", "Residents", "Signed",
        "SignedRow", "SyncKeys", "SyncStatus", "UnitOfWork", "Views"), "uow"),
    **dict.fromkeys(("Clock", "iso", "parse_iso", "utc_now"), "clock"),
}


def __getattr__(name: str) -> object:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)
