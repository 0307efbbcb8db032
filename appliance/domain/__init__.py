"""The pure domain: identifiers, people, prescriptions and their states, posology wording,
QR payload. Standard library and python-stdnum only; no I/O."""

from typing import TypeAlias

# A JSON value, as the domain writes one (``to_dict()``, ``content()``).
Json: TypeAlias = str | int | float | bool | list["Json"] | dict[str, "Json"] | None
JsonObject: TypeAlias = dict[str, Json]
