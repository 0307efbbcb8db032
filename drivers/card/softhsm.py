"""SoftHSM2 tokens holding the test PKI's cards: a real PKCS#11 token for the tests, the
demo and the benchmarks. TEST ONLY.

``provision(pki, directory)`` writes ``directory/softhsm2.conf`` (its own token directory,
``directory/tokens``) and makes one token per card profile, labelled with the profile's
name (``physician``, ``nurse``, ``cpe``, ``expired``, ``revoked``, ``untrusted``,
``blocked``), user PIN ``1234``: ``softhsm2-util --init-token`` makes the token, then a
child process imports the card's certificates and private keys through the PKCS#11 API
(python-pkcs11): authentication objects with ``CKA_ID`` 01, signature objects with 02,
private keys ``CKA_PRIVATE``, ``CKA_SENSITIVE``, ``CKA_SIGN``, not extractable. The
import runs in a child so that the calling process never loads SoftHSM2 with this
configuration (a PKCS#11 module reads its configuration once per process).

SoftHSM2 keeps no PIN try counter: a wrong PIN only raises ``CKF_USER_PIN_COUNT_LOW``, and it
never locks. To act out what a card's middleware reports (``CKF_USER_PIN_FINAL_TRY``,
``CKF_USER_PIN_LOCKED``), ``set_token_flags`` writes those flags into the token's stored
flags (``CKA_OS_TOKENFLAGS`` in ``token.object``, which SoftHSM2 reads again when the
file changes). The ``blocked`` profile's token is provisioned locked this way.
``remove_token`` takes a token's directory away: SoftHSM2 then answers that token's
handles as invalid, as a module does for a card pulled from its reader.
"""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from appliance.errors import PkiError, ValidationError
from drivers.card.pki import PROFILES, PkiPaths

SO_PIN = "12345678"
TEST_PIN = "1234"
AUTH_ID, SIGN_ID = b"\x01", b"\x02"
SOFTHSM_MODULE_GLOBS = ("usr/lib/softhsm/libsofthsm2.so",
                        "usr/lib/*-linux-gnu/softhsm/libsofthsm2.so")
CKF_USER_PIN_COUNT_LOW = 0x00010000
CKF_USER_PIN_FINAL_TRY = 0x00020000
CKF_USER_PIN_LOCKED = 0x00040000
# SoftHSM2's object file: per attribute an 8-byte type, an 8-byte kind (2 = unsigned long,
# 3 = byte string with an 8-byte length) and the value.
_CKA_OS_TOKENLABEL = 0x80005349
_CKA_OS_TOKENFLAGS = 0x8000534B
_KIND_ULONG, _KIND_BYTES = 2, 3


def softhsm_module() -> str | None:
    for pattern in SOFTHSM_MODULE_GLOBS:
        found = sorted(Path("/").glob(pattern))
        if found:
            return str(found[0])
    return None


@dataclass(frozen=True)
class SoftHsmPaths:
    directory: Path

    @property
    def conf(self) -> Path:
        return self.directory / "softhsm2.conf"

    @property
    def tokens(self) -> Path:
        return self.directory / "tokens"

    @property
    def module(self) -> str:
        found = softhsm_module()
        if found is None:
            raise PkiError("SoftHSM2 n'est pas installé (apt-get install softhsm2)")
        return found

    def environment(self, token_label: str = "physician") -> dict[str, str]:  # noqa: S107
        """The variables that point SoftHSM2 and Ordo at these tokens."""
        return {"SOFTHSM2_CONF": str(self.conf), "ORDO_CARD_BACKEND": "pkcs11",
                "ORDO_CARD_PKCS11_MODULE": self.module, "ORDO_CARD_TOKEN_LABEL": token_label}

    def token_dir(self, label: str) -> Path:
        for folder in sorted(self.tokens.iterdir()):
            data = (folder / "token.object").read_bytes() if \
                (folder / "token.object").is_file() else b""
            if _attribute(data, _CKA_OS_TOKENLABEL) is not None and \
                    _token_label(data) == label:
                return folder
        raise PkiError(f"aucun jeton SoftHSM2 « {label} » dans {self.tokens}")


def _env(paths: SoftHsmPaths) -> dict[str, str]:
    return {**os.environ, "SOFTHSM2_CONF": str(paths.conf)}


def provision(pki: PkiPaths, directory: Path, *, tokens: dict[str, str] | None = None,
              pin: str = TEST_PIN, force: bool = False) -> SoftHsmPaths:
    """Make SoftHSM2 tokens for the test cards: ``tokens`` maps a token label to a profile
    (default: one token per profile, labelled with its name)."""
    tokens = {name: name for name in PROFILES} if tokens is None else tokens
    paths = SoftHsmPaths(Path(directory).resolve())
    util = shutil.which("softhsm2-util")
    if util is None or softhsm_module() is None:
        raise PkiError("SoftHSM2 n'est pas installé (apt-get install softhsm2)")
    if paths.tokens.exists() and any(paths.tokens.iterdir()):
        if not force:
            raise PkiError(f"des jetons SoftHSM2 existent déjà dans {paths.tokens} "
                           "(--force pour les remplacer)")
        shutil.rmtree(paths.tokens)
    paths.tokens.mkdir(parents=True, exist_ok=True, mode=0o700)
    paths.conf.write_text(
        "# SoftHSM2 for Ordo's TEST cards - never in production.\n"
        f"directories.tokendir = {paths.tokens}\n"
        "objectstore.backend = file\nlog.level = ERROR\nslots.removable = true\n", "utf-8")
    spec = []
    for label, profile in tokens.items():
        if profile not in PROFILES:
            raise ValidationError("profile", profile, " ou ".join(PROFILES),
                                  message=f"profil de carte inconnu : {profile}")
        if len(label.encode()) > 32:
            raise ValidationError("token_label", label, "32 octets au plus",
                                  message=f"étiquette de jeton trop longue (32 octets au plus) "
                                          f": {label}")
        done = subprocess.run(  # noqa: S603
            [util, "--init-token", "--free", "--label", label, "--pin", pin,
             "--so-pin", SO_PIN], env=_env(paths), capture_output=True, text=True, check=False)
        if done.returncode:
            raise PkiError(f"softhsm2-util --init-token {label} a échoué : "
                           f"{done.stderr.strip()}")
        folder = pki.card_dir(profile)
        objects = [{"id": AUTH_ID.hex(), "label": "authentification",
                    "cert": str(folder / "auth.der"), "key": str(folder / "auth.key")}]
        if (folder / "sign.der").is_file():
            objects.append({"id": SIGN_ID.hex(), "label": "signature",
                            "cert": str(folder / "sign.der"), "key": str(folder / "sign.key")})
        spec.append({"label": label, "objects": objects})
    import_objects(paths, spec, pin)
    for label, profile in tokens.items():
        if PROFILES[profile].initial_tries == 0:
            set_token_flags(paths, label, CKF_USER_PIN_LOCKED)
    return paths


def import_objects(paths: SoftHsmPaths, spec: list[dict[str, Any]], pin: str = TEST_PIN) -> None:
    """Import certificates and keys into existing tokens, in a child process."""
    done = subprocess.run(  # noqa: S603
        [sys.executable, "-m", "drivers.card.softhsm", paths.module, pin],
        input=json.dumps(spec), env=_env(paths), capture_output=True, text=True, check=False,
        cwd=Path(__file__).resolve().parents[2], timeout=120)
    if done.returncode:
        raise PkiError("l'import des cartes de test dans SoftHSM2 a échoué : "
                       f"{done.stderr.strip()[-800:]}")


# -- token.object ----------------------------------------------------------------------------
def _attribute(data: bytes, attribute: int) -> int | None:
    """Offset of ``attribute``'s value in a SoftHSM2 object file, or None."""
    marker = struct.pack(">QQ", attribute, _KIND_ULONG)
    at = data.find(marker)
    if at < 0:
        marker = struct.pack(">QQ", attribute, _KIND_BYTES)
        at = data.find(marker)
    return None if at < 0 else at + len(marker)


def _token_label(data: bytes) -> str:
    at = _attribute(data, _CKA_OS_TOKENLABEL)
    assert at is not None
    (length,) = struct.unpack(">Q", data[at:at + 8])
    return data[at + 8:at + 8 + length].decode("utf-8", "replace").rstrip()


def set_token_flags(paths: SoftHsmPaths, label: str, set_flags: int = 0,
                    clear_flags: int = 0) -> int:
    """Change a token's stored flags (see the module docstring); returns the new flags."""
    path = paths.token_dir(label) / "token.object"
    data = bytearray(path.read_bytes())
    at = _attribute(bytes(data), _CKA_OS_TOKENFLAGS)
    if at is None:
        raise PkiError(f"{path} : pas d'indicateurs de jeton (fichier SoftHSM2 inattendu)")
    (flags,) = struct.unpack(">Q", data[at:at + 8])
    flags = (flags | set_flags) & ~clear_flags
    data[at:at + 8] = struct.pack(">Q", flags)
    (generation,) = struct.unpack(">Q", data[:8])
    data[:8] = struct.pack(">Q", generation + 1)      # SoftHSM2 reads the file again
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(bytes(data))
    os.replace(tmp, path)
    return flags


def remove_token(paths: SoftHsmPaths, label: str) -> Path:
    """Take a token away (its directory is moved aside); returns where it went."""
    folder = paths.token_dir(label)
    target = paths.directory / "removed" / folder.name
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(str(folder), str(target))
    return target


# -- the child: import through the PKCS#11 API -------------------------------------------------
def _big(value: int) -> bytes:
    return value.to_bytes(max(1, (value.bit_length() + 7) // 8), "big")


def _key_attributes(key: Any) -> dict[Any, Any]:
    from cryptography.hazmat.primitives.asymmetric import ec, rsa
    from pkcs11 import Attribute, KeyType

    if isinstance(key, rsa.RSAPrivateKey):
        n = key.private_numbers()
        return {Attribute.KEY_TYPE: KeyType.RSA,
                Attribute.MODULUS: _big(n.public_numbers.n),
                Attribute.PUBLIC_EXPONENT: _big(n.public_numbers.e),
                Attribute.PRIVATE_EXPONENT: _big(n.d), Attribute.PRIME_1: _big(n.p),
                Attribute.PRIME_2: _big(n.q), Attribute.EXPONENT_1: _big(n.dmp1),
                Attribute.EXPONENT_2: _big(n.dmq1), Attribute.COEFFICIENT: _big(n.iqmp)}
    if isinstance(key, ec.EllipticCurvePrivateKey):
        from pkcs11.util.ec import encode_named_curve_parameters

        size = (key.curve.key_size + 7) // 8
        return {Attribute.KEY_TYPE: KeyType.EC,
                Attribute.EC_PARAMS: encode_named_curve_parameters(key.curve.name),
                Attribute.VALUE: key.private_numbers().private_value.to_bytes(size, "big")}
    raise SystemExit(f"unsupported key type {type(key).__name__}")


def _child(module: str, pin: str) -> None:
    import pkcs11
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import load_pem_private_key
    from pkcs11 import Attribute, CertificateType, ObjectClass

    spec = json.load(sys.stdin)
    lib = pkcs11.lib(module)
    for token_spec in spec:
        token = lib.get_token(token_label=token_spec["label"])
        with token.open(rw=True, user_pin=pin) as session:
            for obj in token_spec["objects"]:
                ident = bytes.fromhex(obj["id"])
                der = Path(obj["cert"]).read_bytes()
                cert = x509.load_der_x509_certificate(der)
                session.create_object({
                    Attribute.CLASS: ObjectClass.CERTIFICATE,
                    Attribute.CERTIFICATE_TYPE: CertificateType.X_509,
                    Attribute.TOKEN: True, Attribute.PRIVATE: False,
                    Attribute.LABEL: obj["label"], Attribute.ID: ident,
                    Attribute.SUBJECT: cert.subject.public_bytes(),
                    Attribute.ISSUER: cert.issuer.public_bytes(),
                    Attribute.SERIAL_NUMBER: _big(cert.serial_number),
                    Attribute.VALUE: der})
                key = load_pem_private_key(Path(obj["key"]).read_bytes(), None)
                session.create_object({
                    Attribute.CLASS: ObjectClass.PRIVATE_KEY, Attribute.TOKEN: True,
                    Attribute.PRIVATE: True, Attribute.SENSITIVE: True,
                    Attribute.EXTRACTABLE: False, Attribute.SIGN: True,
                    Attribute.DECRYPT: False, Attribute.LABEL: obj["label"],
                    Attribute.ID: ident, Attribute.SUBJECT: cert.subject.public_bytes(),
                    **_key_attributes(key)})


if __name__ == "__main__":
    _child(sys.argv[1], sys.argv[2])
