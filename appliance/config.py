"""Settings: embedded defaults, one TOML file, then ``ORDO_<SECTION>_<KEY>`` overrides.

The settings object is built once (by the CLI) and passed down; nothing reads the
environment elsewhere. Every value is checked at start: an invalid one raises
``ConfigError`` naming the key, the value and what is expected. Every value is bounded:
numbers by a range, texts by ``MAX_TEXT`` characters without control or bidirectional
characters, lists by ``MAX_LIST`` entries, the printer by the devices a printer can be.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import os
import pwd
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_type_hints
from urllib.parse import urlsplit

from appliance.domain.text import first_forbidden
from appliance.errors import ConfigError

ENV_PREFIX = "ORDO_"
ENV_DATA_DIR = "ORDO_DATA_DIR"
ENV_CONFIG = "ORDO_CONFIG"
SYSTEM_USER = "ordo"
SYSTEM_DATA_DIR = Path("/var/lib/ordo")
SYSTEM_CONFIG = Path("/etc/ordo/ordo.toml")
DEFAULTS_FILE = Path(__file__).with_name("defaults.toml")  # shipped in the package


def _check(pred: Callable[[Any], bool], expected: str) -> dict[str, Any]:
    return {"check": pred, "expected": expected}


def _between(low: float, high: float, unit: str = "") -> dict[str, Any]:
    """A number from ``low`` to ``high`` (NaN and infinities are outside any range)."""
    return _check(lambda v: low <= v <= high, f"un nombre de {low:g} à {high:g}{unit}")


# Devices a receipt or label printer appears as (Linux usblp, parallel port, serial lines,
# USB-serial adapters, Bluetooth serial, udev's stable serial links). Anything else, a
# file (``file:///etc/passwd``) or a disk (``/dev/sda``), is refused: the printer driver
# writes raw bytes to it.
_PRINTER_DEVICE = re.compile(
    r"/dev/(?:usb/lp\d{1,3}|lp\d{1,3}|ttyS\d{1,3}|ttyUSB\d{1,3}|ttyACM\d{1,3}"
    r"|rfcomm\d{1,3}|serial/by-(?:id|path)/(?!\.\.?$)[A-Za-z0-9._:+@-]{1,200})")
_SERIAL_DEVICE = re.compile(
    r"/dev/(?:ttyS\d{1,3}|ttyUSB\d{1,3}|ttyACM\d{1,3}|rfcomm\d{1,3}"
    r"|serial/by-(?:id|path)/(?!\.\.?$)[A-Za-z0-9._:+@-]{1,200})")
PRINTER_URIS = ("tcp://hôte:port, usb://VID:PID, serial:///dev/ttyS0 (ttyUSB, ttyACM, rfcomm, "
                "serial/by-id/...) ou file:///dev/usb/lp0 (/dev/lp0 ou une ligne série)")


def _uri_ok(value: str) -> bool:
    parts = urlsplit(value)
    if parts.scheme == "tcp":
        return bool(parts.hostname) and parts.port is not None and parts.port > 0
    if parts.scheme == "usb":
        return re.fullmatch(r"usb://[0-9a-fA-F]{4}:[0-9a-fA-F]{4}", value) is not None
    if parts.netloc or parts.fragment:
        return False
    if parts.scheme == "serial":
        return _SERIAL_DEVICE.fullmatch(parts.path) is not None
    return (parts.scheme == "file" and not parts.query
            and _PRINTER_DEVICE.fullmatch(parts.path) is not None)


def _finess_ok(value: str) -> bool:
    return value == "" or re.fullmatch(r"(\d{2}|2[AB])\d{7}", value) is not None


# Every text setting (names, addresses, paths, URLs): at most a path's length, and no
# control or bidirectional character (an ESC in the establishment's name would be a
# command to the printer). Lists (trust roots, CRLs): at most MAX_LIST entries.
MAX_TEXT = 4096
MAX_LIST = 64
# Texts printed on several lines: a line feed separates them (nothing else is allowed).
MULTILINE_TEXTS = frozenset({"establishment.address"})


def _phone_ok(value: str) -> bool:
    from appliance.domain.people import validate_phone
    from appliance.errors import ValidationError

    try:
        return value == "" or bool(validate_phone(value))
    except ValidationError:
        return False


def _email_ok(value: str) -> bool:
    from appliance.domain.people import validate_email
    from appliance.errors import ValidationError

    try:
        return value == "" or bool(validate_email(value))
    except ValidationError:
        return False


_PHONE = _check(_phone_ok, "un numéro de téléphone français : 01 23 45 67 89 ou "
                          "+33 1 23 45 67 89")
_EMAIL = _check(_email_ok, "une adresse électronique comme nom@domaine.fr")


_MAIL_RE = re.compile(r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+")
_mail_address = _check(lambda v: v == "" or _MAIL_RE.fullmatch(v) is not None,
                       "une adresse comme pharmacie@exemple.mssante.fr, ou rien")
_port = _check(lambda v: 1 <= v <= 65535, "un port TCP entre 1 et 65535")


@dataclass(frozen=True)
class Establishment:
    name: str = field(metadata=_check(bool, "un nom non vide"))
    finess: str = field(metadata=_check(
        _finess_ok, "9 caractères : 2 pour le département, 7 chiffres"))
    address: str = ""  # lines separated by newlines; "France" is added when missing
    phone: str = field(default="", metadata=_PHONE)
    email: str = field(default="", metadata=_EMAIL)


@dataclass(frozen=True)
class Prescriber:
    """What the CPS card does not carry, printed for a prescriber who has none of their own
    in the practitioners table (``ordo practitioners set-contact``)."""

    qualification: str = ""  # e.g. "Médecin généraliste", "Médecin coordonnateur"
    phone: str = field(default="", metadata=_PHONE)
    email: str = field(default="", metadata=_EMAIL)


@dataclass(frozen=True)
class Print:
    """What is printed: the QR content, and where secure prescriptions go."""

    qr: str = field(default="epu", metadata=_check(
        lambda v: v in {"epu", "signed"}, "epu ou signed"))
    secure_printer_uri: str = field(default="", metadata=_check(
        lambda v: v == "" or (urlsplit(v).scheme == "tcp" and bool(urlsplit(v).hostname)
                              and urlsplit(v).port is not None),
        "vide (fichiers PDF seulement) ou tcp://hôte:port d'une imprimante qui imprime "
        "le PDF"))
    secure_pdf_dir: str = ""  # default: <data_dir>/secure
    paper: str = field(default="A5", metadata=_check(lambda v: v in {"A5", "A4"}, "A5 ou A4"))


@dataclass(frozen=True)
class Pharmacy:
    """The partner pharmacy (officine) that dispenses for the establishment."""

    name: str = ""
    finess: str = field(default="", metadata=_check(
        _finess_ok, "9 caractères : 2 pour le département, 7 chiffres"))
    address: str = ""
    mssante: str = field(default="", metadata=_mail_address)  # its MSSanté mailbox


@dataclass(frozen=True)
class Mssante:
    """The establishment's MSSanté mailbox at its operator: SMTP submission and IMAP over
    TLS, authenticated by the establishment's client certificate (SASL EXTERNAL)."""

    mailbox: str = field(default="", metadata=_mail_address)
    smtp_host: str = ""
    smtp_port: int = field(default=587, metadata=_port)
    smtp_tls: str = field(default="starttls", metadata=_check(
        lambda v: v in {"starttls", "implicit"}, "starttls ou implicit"))
    imap_host: str = ""
    imap_port: int = field(default=993, metadata=_port)
    client_cert: str = ""
    client_key: str = ""
    ca_file: str = ""
    timeout_s: float = field(default=30.0, metadata=_between(1, 120, " secondes"))


@dataclass(frozen=True)
class Printer:
    uri: str = field(metadata=_check(_uri_ok, PRINTER_URIS))
    model: str = "TM-T20II"
    media: str = field(default="80mm", metadata=_check(
        lambda v: v in {"58mm", "80mm", "label62"}, "58mm, 80mm ou label62"))
    dpi: int = field(default=203, metadata=_check(
        lambda v: v in {180, 203, 300}, "180, 203 ou 300"))
    qr: str = field(default="raster", metadata=_check(
        lambda v: v in {"raster", "native"}, "raster ou native"))


@dataclass(frozen=True)
class Registry:
    url: str = field(metadata=_check(
        lambda v: urlsplit(v).scheme in {"http", "https"} and bool(urlsplit(v).hostname),
        "une URL http(s)"))
    client_cert: str = ""
    client_key: str = ""
    ca_file: str = ""
    timeout_s: float = field(default=10.0, metadata=_between(1, 120, " secondes"))


CARD_BACKENDS = ("pcsc", "pkcs11")  # adapters of appliance.bootstrap.card_backend


def _module_path_ok(value: str) -> bool:
    return value == "" or (value.startswith("/") and ".so" in Path(value).name)


@dataclass(frozen=True)
class Card:
    """The card backend: ``pcsc`` (a reader through pcscd, Ordo's own APDUs) or ``pkcs11``
    (a PKCS#11 module: OpenSC's ``opensc-pkcs11.so`` when ``pkcs11_module`` is empty, or the
    ANS's CPS middleware); ``token_label`` keeps only the token of that label."""

    backend: str = field(default="pcsc", metadata=_check(
        lambda v: v in CARD_BACKENDS, " ou ".join(CARD_BACKENDS)))
    pkcs11_module: str = field(default="", metadata=_check(
        _module_path_ok, "un chemin absolu vers un module PKCS#11 (.so), ou vide pour celui "
                         "d'OpenSC"))
    token_label: str = field(default="", metadata=_check(
        lambda v: len(v.encode("utf-8")) <= 32, "une étiquette de jeton de 32 octets au plus"))


@dataclass(frozen=True)
class Security:
    trust_roots: tuple[str, ...] = ()
    crls: tuple[str, ...] = ()
    idle_timeout_s: int = field(default=300, metadata=_check(
        lambda v: 30 <= v <= 3600, "un nombre de secondes entre 30 et 3600"))
    backup_key: str = ""


@dataclass(frozen=True)
class Sync:
    interval_s: int = field(default=30, metadata=_between(1, 3600, " secondes"))
    batch_size: int = field(default=50, metadata=_check(
        lambda v: 1 <= v <= 1000, "entre 1 et 1000"))
    backoff_cap_s: int = field(default=900, metadata=_between(1, 86400, " secondes"))


def listen_address(value: str) -> tuple[str, int] | None:
    """``[metrics] listen`` as (host, port): ``127.0.0.1:9464``, ``[::1]:9464``,
    ``localhost:9464``; ``None`` for the empty string (no endpoint). Raises ``ValueError``
    for anything else: the host is an IP address (or ``localhost``), never a name to look
    up, and the port is 1–65535."""
    if value == "":
        return None
    host, sep, port_text = value.rpartition(":")
    if not sep or not port_text.isascii() or not port_text.isdigit() or len(port_text) > 5:
        raise ValueError(value)
    port = int(port_text)
    if not 1 <= port <= 65535:
        raise ValueError(value)
    if host.startswith("[") and host.endswith("]"):
        if ipaddress.ip_address(host[1:-1]).version != 6:
            raise ValueError(value)
        return host[1:-1], port
    if host == "localhost":
        return "127.0.0.1", port
    if ipaddress.ip_address(host).version != 4:  # an IPv6 address goes in brackets
        raise ValueError(value)
    return host, port


@dataclass(frozen=True)
class Metrics:
    """The Prometheus endpoint of the sync service (``appliance.ops.metrics``): an address
    and port to listen on, or empty for none. It is not authenticated: loopback, or the
    address of a VPN interface."""

    listen: str = field(default="127.0.0.1:9464", metadata=_check(
        lambda v: listen_address(v) is not None or v == "",
        "vide (pas de mesures) ou adresse:port, par exemple 127.0.0.1:9464, [::1]:9464 ou "
        "l'adresse du VPN ; port de 1 à 65535"))


@dataclass(frozen=True)
class Referential:
    bdpm_url: str = field(metadata=_check(
        lambda v: urlsplit(v).scheme in {"http", "https"}, "une URL http(s)"))


@dataclass(frozen=True)
class Retention:
    prescriptions_years: int = field(default=10, metadata=_between(1, 100, " ans"))
    audit_years: int = field(default=10, metadata=_between(1, 100, " ans"))


@dataclass(frozen=True)
class Logging:
    level: str = field(default="INFO", metadata=_check(
        lambda v: v in {"DEBUG", "INFO", "WARNING", "ERROR"}, "DEBUG, INFO, WARNING ou ERROR"))


@dataclass(frozen=True)
class Settings:
    """All settings, plus where they came from."""

    establishment: Establishment
    printer: Printer
    registry: Registry
    security: Security
    sync: Sync
    referential: Referential
    retention: Retention
    logging: Logging
    data_dir: Path
    config_file: Path | None = None
    pharmacy: Pharmacy = field(default_factory=Pharmacy)
    card: Card = field(default_factory=Card)
    prescriber: Prescriber = field(default_factory=Prescriber)
    print: Print = field(default_factory=Print)
    mssante: Mssante = field(default_factory=Mssante)
    metrics: Metrics = field(default_factory=Metrics)

    @property
    def secure_pdf_dir(self) -> Path:
        """Where the PDFs of secure prescriptions are written (``[print] secure_pdf_dir``)."""
        return Path(self.print.secure_pdf_dir) if self.print.secure_pdf_dir else \
            self.data_dir / "secure"

    @property
    def db_path(self) -> Path:
        return self.data_dir / "ordo.sqlite"

    def as_dict(self, mask_secrets: bool = True) -> dict[str, dict[str, Any]]:
        """Sections and keys as plain values (paths of keys are masked when asked)."""
        out: dict[str, dict[str, Any]] = {}
        for name in SECTIONS:
            values = dataclasses.asdict(getattr(self, name))
            for key, value in values.items():
                if mask_secrets and key in SECRET_KEYS and value:
                    values[key] = "********"
                elif isinstance(value, tuple):
                    values[key] = list(value)
            out[name] = values
        return out


SECTIONS: tuple[str, ...] = tuple(
    f.name for f in dataclasses.fields(Settings) if f.name not in {"data_dir", "config_file"})
SECRET_KEYS = {"client_key", "backup_key"}


def _section_types() -> dict[str, type]:
    hints = get_type_hints(Settings)
    return {name: hints[name] for name in SECTIONS}


def toml_text(sections: Mapping[str, Mapping[str, Any]], header: str = "") -> str:
    """A configuration file for ``sections`` (strings, numbers, booleans, lists of
    strings), as Ordo's own tools write one (the demo, the benchmarks, the tests): JSON
    string syntax is TOML's basic string syntax."""
    def value(v: Any) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, int | float):
            return repr(v)
        if isinstance(v, list | tuple):
            return "[" + ", ".join(json.dumps(str(item), ensure_ascii=False) for item in v) + "]"
        return json.dumps(str(v), ensure_ascii=False)

    lines = [f"# {line}" for line in header.splitlines()]
    for section, values in sections.items():
        lines.append(f"[{section}]")
        lines += [f"{key} = {value(v)}" for key, v in values.items()]
    return "\n".join(lines) + "\n"


def write_config(path: Path, sections: Mapping[str, Mapping[str, Any]],
                 header: str = "") -> Path:
    """Write ``toml_text(sections, header)`` to ``path``; returns ``path``."""
    path.write_text(toml_text(sections, header), "utf-8")
    return path


def default_data_dir(environ: Mapping[str, str]) -> Path:
    """``/var/lib/ordo`` for the appliance's system user, else the XDG data dir."""
    try:
        user = pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:
        user = ""
    if user == SYSTEM_USER:
        return SYSTEM_DATA_DIR
    base = environ.get("XDG_DATA_HOME") or str(Path(environ.get("HOME", "~")).expanduser()
                                               / ".local" / "share")
    return Path(base) / "ordo"


def _parse_env(key: str, raw: str, kind: Any) -> Any:
    if kind is bool:
        low = raw.strip().lower()
        if low in {"1", "true", "yes", "oui", "on"}:
            return True
        if low in {"0", "false", "no", "non", "off"}:
            return False
        raise ConfigError(key, raw, "true ou false")
    if kind is int or kind is float:
        try:
            return kind(raw)
        except ValueError:
            raise ConfigError(key, raw, "un entier" if kind is int else "un nombre") from None
    if kind == tuple[str, ...]:
        return [part.strip() for part in raw.split(",") if part.strip()]
    return raw


def _coerce(key: str, value: Any, kind: Any) -> Any:
    if kind is bool:
        ok = isinstance(value, bool)
    elif kind is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif kind is float:
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        value = float(value) if ok else value
    elif kind == tuple[str, ...]:
        ok = isinstance(value, list) and all(isinstance(v, str) for v in value)
        value = tuple(value) if ok else value
    else:
        ok = isinstance(value, str)
    if not ok:
        name = {bool: "true ou false", int: "un entier", float: "un nombre",
                str: "une chaîne de caractères"}.get(kind, "une liste de chaînes")
        raise ConfigError(key, value, name)
    texts = [value] if isinstance(value, str) else list(value) if isinstance(value, tuple) else []
    if len(texts) > MAX_LIST:
        raise ConfigError(key, f"{len(texts)} entrées", f"au plus {MAX_LIST} entrées")
    for text in texts:
        if len(text) > MAX_TEXT:
            raise ConfigError(key, text[:40] + "…", f"au plus {MAX_TEXT} caractères")
        found = first_forbidden(text, line_feed=key in MULTILINE_TEXTS)
        if found is not None:
            code, position = found
            raise ConfigError(key, text, "un texte sans caractère de contrôle ni de direction "
                                         f"({code} en position {position})")
    return value


def load_settings(
    config_file: str | Path | None = None,
    data_dir: str | Path | None = None,
    environ: Mapping[str, str] | None = None,
) -> Settings:
    """Build the settings: defaults < TOML file < ``ORDO_*`` environment; check every value."""
    environ = os.environ if environ is None else environ
    raw: dict[str, dict[str, Any]] = tomllib.loads(DEFAULTS_FILE.read_text("utf-8"))

    path = config_file or environ.get(ENV_CONFIG)
    if path is None and SYSTEM_CONFIG.is_file():
        path = SYSTEM_CONFIG
    config_path = Path(path) if path else None
    if config_path is not None:
        try:
            user = tomllib.loads(config_path.read_text("utf-8"))
        except FileNotFoundError:
            raise ConfigError("--config", str(config_path), "un fichier TOML existant") from None
        except OSError as exc:  # a directory, no permission
            raise ConfigError("--config", str(config_path),
                              f"un fichier TOML lisible ({exc.strerror})") from None
        except UnicodeDecodeError as exc:
            raise ConfigError("--config", str(config_path),
                              f"du texte UTF-8 (l'octet {exc.start + 1} ne l'est pas)") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError("--config", str(config_path), f"du TOML valide ({exc})") from None
        except RecursionError:  # tomllib recurses into nested arrays and tables
            raise ConfigError("--config", str(config_path), "du TOML valide, moins imbriqué") \
                from None
        for section, values in user.items():
            if section not in raw or not isinstance(values, dict):
                raise ConfigError(section, values, f"une section parmi {', '.join(raw)}")
            for key, value in values.items():
                if key not in raw[section]:
                    raise ConfigError(f"{section}.{key}", value,
                                      f"une clé parmi {', '.join(raw[section])}")
                raw[section][key] = value

    types = _section_types()
    hints = {name: get_type_hints(cls) for name, cls in types.items()}
    for name, value in environ.items():
        if not name.startswith(ENV_PREFIX) or name in {ENV_DATA_DIR, ENV_CONFIG}:
            continue
        section, _, key = name[len(ENV_PREFIX):].lower().partition("_")
        if section not in raw or key not in raw[section]:
            known = ", ".join(f"ORDO_{s.upper()}_{k.upper()}" for s in raw for k in raw[s])
            raise ConfigError(name, value, f"un réglage connu ({known})")
        raw[section][key] = _parse_env(name, value, hints[section][key])

    sections: dict[str, Any] = {}
    for name, cls in types.items():
        values = {}
        for f in dataclasses.fields(cls):
            key = f"{name}.{f.name}"
            value = _coerce(key, raw[name][f.name], hints[name][f.name])
            check = f.metadata.get("check")
            try:
                ok = check is None or check(value)
            except ValueError:  # urlsplit: a port out of range, a broken IPv6 host
                ok = False
            if not ok:
                raise ConfigError(key, value, f.metadata["expected"])
            values[f.name] = value
        sections[name] = cls(**values)

    chosen = data_dir or environ.get(ENV_DATA_DIR)
    return Settings(
        **sections,
        data_dir=Path(chosen) if chosen else default_data_dir(environ),
        config_file=config_path,
    )
