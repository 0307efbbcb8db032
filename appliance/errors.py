"""The error tree of Ordo. Every error raised on purpose is an ``OrdoError``.

    OrdoError
    ├── ConfigError            a setting is missing or invalid (key, value, expected)
    ├── ValidationError        bad input: a field, its value, what was expected
    │   └── InvalidIdentifier  NIR, RPPS, CIP13, prescription ID... with the reason
    ├── StateError             an illegal state transition of a prescription
    ├── StoreError             the local database refused an operation
    │   └── AuditChainBroken   the audit chain does not verify (names the entry)
    ├── CardError              the CPS card or the reader (drivers translate pyscard errors)
    ├── PrinterError           the printer is offline, out of paper, or refused the job
    └── RegistryError          the national registry (or its link) failed

Adapters translate library errors at the boundary (``raise CardError(...) from exc``);
the CLI and the UI turn them into clean French or English messages, never tracebacks.
"""

from __future__ import annotations


class OrdoError(Exception):
    """Root of every error Ordo raises on purpose."""


class ConfigError(OrdoError):
    """A setting is invalid: names the key, the value and what is expected."""

    def __init__(self, key: str, value: object, expected: str) -> None:
        self.key, self.value, self.expected = key, value, expected
        super().__init__(f"invalid setting {key} = {value!r}: expected {expected}")


class ValidationError(OrdoError):
    """Bad input: names the field, the value and what is expected."""

    def __init__(self, field: str, value: object, expected: str) -> None:
        self.field, self.value, self.expected = field, value, expected
        super().__init__(f"{field}: {value!r} is invalid: {expected}")


class InvalidIdentifier(ValidationError):
    """An identifier (NIR, RPPS, CIP13, prescription ID...) fails its format or key."""


class StateError(OrdoError):
    """A transition that the prescription state machine forbids."""


class StoreError(OrdoError):
    """The local store refused an operation."""


class AuditChainBroken(StoreError):
    """The audit chain does not verify; ``seq`` is the first broken entry."""

    def __init__(self, seq: int, reason: str) -> None:
        self.seq, self.reason = seq, reason
        super().__init__(f"audit entry {seq}: {reason}")


class CardError(OrdoError):
    """The CPS card or the reader failed or refused."""


class PrinterError(OrdoError):
    """The printer is unreachable, out of paper, or refused the job."""


class RegistryError(OrdoError):
    """The registry link failed or the registry refused."""
