"""Is it the record, the network, or the way the link is set up? What the registry client
makes of a failure, so that only a refusal about a record's own content quarantines it.

- **Misconfiguration** (``RegistryMisconfigured``, with the setting to fix): a redirection
  (the URL is not the registry's base), a 2xx answer that is not FHIR (a web page, a
  captive portal), a 4xx without an ``OperationOutcome``, a 401/403/404/405 confirmed by
  ``GET [base]/metadata`` failing too, the registry's certificate not valid for the host
  name (``registry.url``), expired or from an authority ``registry.ca_file`` does not hold
  (``registry.ca_file``), the server refusing the establishment's certificate
  (``registry.client_cert``), a server that does not speak TLS at that address.
- **Unavailable** (transient): no connection, a timeout, a connection lost, 408, 5xx.
- **Rejected** (the record): a 4xx with an ``OperationOutcome`` while the base answers.

The sync use case pauses the queue on a misconfiguration, probes the base until it
answers, and shows the key in ``ordo sync status`` and on the kiosk's status line.
"""

from __future__ import annotations

import ssl
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from appliance.errors import RegistryMisconfigured

URL, CA_FILE, CLIENT_CERT = "registry.url", "registry.ca_file", "registry.client_cert"

# OpenSSL X509_V_ERR_* codes (x509_vfy.h) the registry's certificate can fail with.
_NAME_MISMATCH = {62, 64}          # HOSTNAME_MISMATCH, IP_ADDRESS_MISMATCH
_NOT_IN_TIME = {9, 10}             # CERT_NOT_YET_VALID, CERT_HAS_EXPIRED
# Alerts a server sends when it refuses the client's certificate (RFC 8446 §6.2).
_CLIENT_CERT_ALERTS = ("ALERT_BAD_CERTIFICATE", "ALERT_UNKNOWN_CA", "ALERT_CERTIFICATE_EXPIRED",
                       "ALERT_CERTIFICATE_REVOKED", "ALERT_CERTIFICATE_UNKNOWN",
                       "ALERT_CERTIFICATE_REQUIRED", "ALERT_ACCESS_DENIED",
                       "ALERT_UNSUPPORTED_CERTIFICATE", "ALERT_DECRYPT_ERROR")
# The other end does not speak TLS (or not a version we accept) at that address.
_NOT_TLS = ("WRONG_VERSION_NUMBER", "UNKNOWN_PROTOCOL", "HTTP_REQUEST", "PACKET_LENGTH_TOO_LONG",
            "UNSUPPORTED_PROTOCOL", "ALERT_PROTOCOL_VERSION", "NO_PROTOCOLS_AVAILABLE")


def tls_misconfiguration(error: ssl.SSLError, host: str) -> RegistryMisconfigured | None:
    """The misconfiguration a TLS failure reveals; ``None`` when it may be transient (the
    connection cut during the handshake, say)."""
    if isinstance(error, ssl.SSLCertVerificationError):
        code = error.verify_code
        message = error.verify_message or str(error)
        if code in _NAME_MISMATCH:
            return RegistryMisconfigured(URL, f"le certificat du registre n'est pas valable "
                                              f"pour le nom {host} ({message})")
        if code in _NOT_IN_TIME:
            return RegistryMisconfigured(CA_FILE, f"le certificat du registre n'est pas en "
                                                  f"cours de validité ({message}) ; vérifier "
                                                  "aussi l'horloge de l'appareil")
        return RegistryMisconfigured(CA_FILE, "le certificat du registre n'est pas reconnu "
                                              f"par les autorités configurées ({message})")
    text = f"{error.reason or ''} {error}".upper()
    if any(alert in text for alert in _CLIENT_CERT_ALERTS):
        return RegistryMisconfigured(CLIENT_CERT, "le registre refuse le certificat de "
                                                  f"l'établissement (TLS : {error.reason})")
    if any(marker in text for marker in _NOT_TLS):
        return RegistryMisconfigured(URL, f"{host} ne parle pas TLS comme attendu à cette "
                                          f"adresse (TLS : {error.reason})")
    return None


def is_fhir(body: Any) -> bool:
    return isinstance(body, Mapping) and isinstance(body.get("resourceType"), str)


def is_outcome(body: Any) -> bool:
    return is_fhir(body) and body.get("resourceType") == "OperationOutcome"


def redirected(status: int, location: str | None, base_url: str) -> RegistryMisconfigured:
    where = location or "?"
    target = urlsplit(where).hostname
    host = urlsplit(base_url).hostname
    elsewhere = f" (autre hôte que {host})" if target and target != host else ""
    return RegistryMisconfigured(URL, f"le registre redirige vers {where}{elsewhere} "
                                      f"(HTTP {status})", status=status)


def not_fhir(status: int, content_type: str | None, url: str) -> RegistryMisconfigured:
    kind = (content_type or "sans type").split(";")[0].strip() or "sans type"
    if status in (401, 403):
        return RegistryMisconfigured(CLIENT_CERT, "le registre refuse l'accès (HTTP "
                                                  f"{status}, réponse {kind})", status=status)
    return RegistryMisconfigured(URL, f"{url} ne répond pas en FHIR (HTTP {status}, réponse "
                                      f"{kind})", status=status)


def base_refused(status: int, reason: str, url: str) -> RegistryMisconfigured:
    """``GET [base]/metadata`` answered with an error: the base itself is wrong."""
    if status in (401, 403):
        return RegistryMisconfigured(CLIENT_CERT, "le registre refuse le certificat de "
                                                  f"l'établissement (HTTP {status} : {reason})",
                                     status=status)
    return RegistryMisconfigured(URL, f"{url} n'est pas la base FHIR du registre (HTTP "
                                      f"{status} : {reason})", status=status)


def needs_confirmation(status: int) -> bool:
    """A refusal that may be about the record or about the link (another address, another
    certificate): ``GET [base]/metadata`` tells which."""
    return status in (401, 403, 404, 405)
