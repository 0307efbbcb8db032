"""The pure domain: identifiers, people, prescriptions and their states, posology wording,
QR payload. Standard library and python-stdnum only; no I/O."""

from collections.abc import Mapping, Sequence
from typing import TypeAlias

# A JSON value, as the domain writes one (``to_dict()``, ``content()``) and json or rfc8785
# accept one (any sequence is an array, any mapping an object).
Json: TypeAlias = str | int | float | bool | Sequence["Json"] | Mapping[str, "Json"] | None
JsonObject: TypeAlias = dict[str, Json]
