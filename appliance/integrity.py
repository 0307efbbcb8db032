"""The check that a stored signed prescription is still the one the card signed.

Whoever can write the database file could change a signed prescription's body (a dose, a
drug) and have the appliance print, show or send the altered order under a QR code that
still verifies (the QR carries the signed part, whose hash covers the original body).
``check_signed`` runs where a signed row is loaded (``appliance.ports.uow.SignedRow.load``),
so every path that shows or sends a signed prescription gets it:

1. the signed part rebuilt from the stored body (ID, RPPS, N° AM, the resident's names and
   birth date, the signing time, ``H`` = SHA-256 of the canonical body) equals the stored
   signed part byte for byte;
2. the stored signature verifies over the stored signed part with the stored signer's
   certificate (RSA PKCS#1 v1.5 or ECDSA, SHA-256), so that a body changed together with
   its signed part is refused too.

What it does not prove: that the certificate is a trusted CPS certificate (the appliance
checks the chain when the card logs in, and pharmacies and the registry check it on every
order: a certificate replaced by one the intruder made is refused there). The room and the
lifecycle state are not signed (a resident moves, an order gets dispensed).
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC
from functools import lru_cache
from types import SimpleNamespace

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from appliance.domain.prescription import Prescription
from appliance.domain.qr import SEPARATOR, SIGNED_PART_VERSION, SignedOrder
from appliance.errors import OrdoError, TamperedPrescription


@lru_cache(maxsize=64)
def _public_key(cert_der: bytes) -> rsa.RSAPublicKey | ec.EllipticCurvePublicKey | None:
    """The certificate's public key (cached: a drain loads many orders of one signer)."""
    try:
        key = x509.load_der_x509_certificate(cert_der).public_key()
    except (ValueError, TypeError, UnsupportedAlgorithm):
        return None
    return key if isinstance(key, rsa.RSAPublicKey | ec.EllipticCurvePublicKey) else None


def _signature_holds(cert_der: bytes, signature: bytes, data: bytes) -> bool:
    key = _public_key(cert_der)
    try:
        if isinstance(key, rsa.RSAPublicKey):
            key.verify(signature, data, padding.PKCS1v15(), hashes.SHA256())
        elif isinstance(key, ec.EllipticCurvePublicKey):
            key.verify(signature, data, ec.ECDSA(hashes.SHA256()))
        else:
            return False
    except (InvalidSignature, ValueError):
        return False
    return True


def _canonical(prescription: Prescription, signed_hex: str | None) -> tuple[bytes, str]:
    """The body's canonical bytes and their hex SHA-256. For a prescription's content
    (strings, integers, booleans, ASCII keys) RFC 8785 is ``json.dumps`` with sorted keys,
    no spaces and raw UTF-8; that shortcut (a tenth of the cost) is taken when it gives the
    signed hash, which then proves the contents equal (JSON text is one-to-one with its
    value), or when there is no signed hash to compare with (the signature then decides);
    otherwise the reference implementation decides."""
    fast = json.dumps(prescription.content(), sort_keys=True, separators=(",", ":"),
                      ensure_ascii=False).encode("utf-8")
    digest = hashlib.sha256(fast).hexdigest()
    if signed_hex is None or digest == signed_hex:
        return fast, digest
    canonical = prescription.canonical_bytes()
    return canonical, hashlib.sha256(canonical).hexdigest()


def _rebuilt(prescription: Prescription, signed_hex: str | None = None
             ) -> tuple[bytes, bytes] | None:
    """The signed part rebuilt from a stored body's fields as they are (the fields
    ``SignedOrder.from_prescription`` takes; ``to_bytes`` without the constructor's checks
    of identifiers and dates, a third of the cost: any difference shows in the bytes) and
    the body's canonical bytes (``_canonical``); None when the body lacks a field."""
    p = prescription
    try:
        canonical, content_hex = _canonical(p, signed_hex)
        part = SignedOrder.to_bytes(SimpleNamespace(  # type: ignore[arg-type]
            version=SIGNED_PART_VERSION, prescription_id=p.id, rpps=p.prescriber.rpps,
            am=p.prescriber.am, last_name=p.resident.birth_name,
            first_names=p.resident.first_names, birth_date=p.resident.birth_date,
            issued_at=p.signed_at.astimezone(UTC),  # type: ignore[union-attr]
            content_hash=bytes.fromhex(content_hex)))
    except (AttributeError, TypeError, ValueError, OrdoError):
        return None
    return part, canonical


def rebuilt_signed_part(prescription: Prescription) -> bytes | None:
    """The signed part rebuilt from a stored body (``_rebuilt``), or None."""
    rebuilt = _rebuilt(prescription)
    return None if rebuilt is None else rebuilt[0]


def check_signed(prescription_id: str, prescription: Prescription, signed_part: bytes,
                 signature: bytes, cert_der: bytes) -> bytes:
    """Raise ``TamperedPrescription`` unless ``prescription`` (the stored body) is what the
    stored signature covers: the signed part rebuilt from the body (``_rebuilt``) is
    ``signed_part`` byte for byte, and the signature holds over it. Returns the body's
    canonical bytes (``canonical_bytes()``), whose hash the signed part carries: what the
    registry gets beside the signature."""
    p = prescription
    signed_hex = signed_part.rsplit(SEPARATOR.encode(), 1)[-1].decode("ascii", "replace")
    rebuilt = _rebuilt(p, signed_hex)
    if rebuilt is None or rebuilt[0] != signed_part or p.id != prescription_id:
        raise TamperedPrescription(prescription_id, "le contenu ne correspond plus à "
                                                    "l'empreinte signée")
    if not _signature_holds(cert_der, signature, signed_part):
        raise TamperedPrescription(prescription_id, "la signature ne correspond plus")
    return rebuilt[1]


def check_rebuilt(prescription_id: str, prescription: Prescription, signature: bytes,
                  cert_der: bytes) -> tuple[bytes, bytes]:
    """``check_signed`` for a row whose signed part is not stored because it is the one
    rebuilt from the body (``appliance.store.prescriptions.stored_payload``): returns it
    with the body's canonical bytes, rebuilt by the fast canonical form or, when the
    signature does not hold over that one, by the reference form
    (``SignedOrder.from_prescription``, which raises ``ValidationError`` on a body that
    lacks a field). When the signature holds over neither, the body is not what was
    signed: ``TamperedPrescription``."""
    if prescription.id == prescription_id:
        fast = _rebuilt(prescription)
        if fast is not None and _signature_holds(cert_der, signature, fast[0]):
            return fast
        reference = SignedOrder.from_prescription(prescription).to_bytes()
        if (fast is None or reference != fast[0]) and _signature_holds(cert_der, signature,
                                                                        reference):
            return reference, prescription.canonical_bytes()
    raise TamperedPrescription(prescription_id, "le contenu ne correspond plus à "
                                                "l'empreinte signée")
