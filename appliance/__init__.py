"""Ordo: the on-site application (domain, store, services, UI, CLI)."""

__version__ = "0.1.0"
