"""Ports: the interfaces that the services need and that the adapters implement, one module
per kind of I/O (``typing.Protocol`` classes and the records they exchange):

    card.py      the CPS card, its readers, their events, the card as a signer (drivers.card)
    printer.py   the order printer and its status (drivers.printer)
    registry.py  the national registry (sync.client)
    uow.py       the local database: a unit of work and one repository per table
                 (appliance.store), with the read models of the screens
    mail.py      MSSanté: the order's documents and message, the establishment's mail
                 servers, what a received message carries (sync.mssante)
    drugs.py     the drug database of the prescribing checks: drug facts, substances,
                 interactions (appliance.store.referential)
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
        "AuditHead", "Dispensation", "DispensationPage", "EncodingRegistry", "Registry",
        "RegistryConflict", "RegistryError", "RegistryMisconfigured", "RegistryReceipt",
        "RegistryRejected",
        "RegistryThrottled", "RegistryUnavailable", "SignatureProof"), "registry"),
    **dict.fromkeys((
        "ALERT_STATUSES", "Allergies", "AuditAnchor", "AuditEntry", "AuditLog",
        "Certificates", "DispensationAlert", "Dispensations", "DraftRow", "ExternalPrescription",
        "ExternalPrescriptions", "FileEntry", "HistoryRow", "MailOutbox", "MailRecord",
        "MailStatus", "Meta", "Outbox", "OutboxRecord", "Practitioners", "PrescriptionAlerts",
        "Prescriptions", "PrintJob", "PrintJobs", "QuarantinedMail", "QuarantinedRecord",
        "ReceivedPrescription",
        "Residents", "Signed",
        "SignedRow", "StoppedLine", "StoppedLines", "StoredAlert", "SyncKeys", "SyncStatus",
        "Trail", "Treatment", "TreatmentLine", "UnitOfWork",
        "Views"), "uow"),
    **dict.fromkeys((
        "DocumentRefused", "ExternalLine", "Fetched", "MailError", "MailRejected",
        "MailTransport", "MailUnavailable", "Mailbox", "MessageReader", "OrderDocuments",
        "OrderMailer", "ReceivedDocument", "ReceivedMessage"), "mail"),
    **dict.fromkeys(("DrugFacts", "Interaction", "InteractionLevel", "InteractionSource",
                     "SubstanceLookup"), "drugs"),
    **dict.fromkeys(("Clock", "iso", "parse_iso", "utc_now"), "clock"),
}


def __getattr__(name: str) -> object:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)
