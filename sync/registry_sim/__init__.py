"""The reference registry: a real HTTP(S) server on loopback that plays the national base.

It records prescriptions idempotently on their ID, checks the card signature against its
own trust roots, lets a pharmacy dispense (fully, partly, with a substitution or another
quantity), serves the dispensations back to the prescriber with a cursor, accepts a
cancellation before any dispensation, authenticates the appliance by mutual TLS, and injects
faults deterministically. Its own SQLite file; nothing shared with the appliance's store.
"""

from sync.registry_sim.db import RegistryDB, Substitute
from sync.registry_sim.faults import Faults
from sync.registry_sim.server import RegistrySim, SimConfig
from sync.registry_sim.verify import TrustStore

__all__ = ["Faults", "RegistryDB", "RegistrySim", "SimConfig", "Substitute", "TrustStore"]
