"""The pure domain: identifiers, people, prescriptions and their states, posology wording,
QR payload. Standard library and python-stdnum only; no I/O."""
