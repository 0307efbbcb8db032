"""Real mail servers for the MSSanté tests and the benchmark, on loopback ephemeral ports.

- ``SmtpSubmission``: aiosmtpd (PyPI) as the operator's SMTP submission server: STARTTLS or
  implicit TLS, a client certificate required and verified against the test PKI, SASL
  EXTERNAL (the identity is the certificate's CN), the sender must be that identity. It
  delivers into ``<root>/<recipient>/`` Maildirs. It can refuse a recipient for good (550)
  and drop the connection after DATA (the message is stored, the answer never sent), the
  fault MSSanté senders must survive.
- ``Dovecot``: the Debian ``dovecot-imapd`` daemon as the operator's IMAPS server with a
  throwaway configuration: TLS with a verified client certificate, SASL EXTERNAL with the
  user name from the certificate's CN, the same Maildirs.
"""

from __future__ import annotations

import contextlib
import mailbox
import os
import pwd
import shutil
import socket
import ssl
import subprocess
import tempfile
import threading
import time
from base64 import b64decode
from collections.abc import Callable
from pathlib import Path

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult

DOVECOT = shutil.which("dovecot") or "/usr/sbin/dovecot"
MAIL_USER = "nobody"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def server_context(cert: Path, key: Path, client_ca: Path) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(client_ca))
    ctx.load_cert_chain(str(cert), str(key))
    ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


def _cn(peercert: dict | None) -> str | None:
    for rdn in (peercert or {}).get("subject", ()):
        for key, value in rdn:
            if key == "commonName":
                return value
    return None


class _Handler:
    def __init__(self, server: SmtpSubmission) -> None:
        self.server = server

    async def auth_EXTERNAL(self, smtp, args):
        identity = _cn(smtp.transport.get_extra_info("peercert"))
        if identity is None:
            return AuthResult(success=False)
        if len(args) == 1:
            response = await smtp.challenge_auth("")
        else:
            response = b"" if args[1] == "=" else b64decode(args[1])
        if response not in (b"", identity.encode()):
            return AuthResult(success=False)
        return AuthResult(success=True, auth_data=identity)

    async def handle_RCPT(self, smtp, session, envelope, address, rcpt_options):
        if address in self.server.refuse:
            return "550 5.1.1 Destinataire inconnu"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, smtp, session, envelope):
        if envelope.mail_from != session.auth_data:
            return "553 5.7.1 L'expéditeur doit être le titulaire du certificat"
        self.server.deliver(envelope.rcpt_tos, envelope.original_content or envelope.content)
        if self.server.should_drop():
            smtp.transport.abort()  # stored, but the client never hears 250
            return "250 OK"
        return "250 OK"


class _Controller(Controller):
    def _trigger_server(self) -> None:  # a plain connect is enough to invoke the factory
        with contextlib.suppress(OSError), socket.create_connection(
                (self.hostname, self.port), 1.0):
            pass


class SmtpSubmission:
    def __init__(self, root: Path, cert: Path, key: Path, client_ca: Path, *,
                 implicit: bool = False,
                 drop: Callable[[int], bool] = lambda n: False) -> None:
        self.root = root
        self.refuse: set[str] = set()
        self.drop = drop
        self.accepted = 0
        self.dropped = 0
        self._lock = threading.Lock()
        self.port = free_port()
        ctx = server_context(cert, key, client_ca)
        kwargs = {"ssl_context": ctx} if implicit else {"tls_context": ctx,
                                                        "require_starttls": True}
        # with implicit TLS the whole session is TLS (aiosmtpd only counts STARTTLS)
        self.controller = _Controller(_Handler(self), hostname="127.0.0.1", port=self.port,
                                      auth_required=True, auth_require_tls=not implicit,
                                      data_size_limit=60 * 1024 * 1024, **kwargs)

    def start(self) -> SmtpSubmission:
        self.controller.start()
        return self

    def stop(self) -> None:
        self.controller.stop()

    def should_drop(self) -> bool:
        with self._lock:
            n = self.accepted
            dropped = self.drop(n)
            self.dropped += dropped
            return dropped

    def deliver(self, recipients: list[str], content: bytes) -> None:
        with self._lock:
            self.accepted += 1
            for rcpt in recipients:
                deliver_to_maildir(self.root, rcpt, content)

    def messages(self, recipient: str) -> list[bytes]:
        box = self.root / recipient
        if not box.exists():
            return []
        return [m.as_bytes() for m in mailbox.Maildir(str(box), create=False)]


def deliver_to_maildir(root: Path, recipient: str, content: bytes) -> None:
    """What an MTA's local delivery does: the message into the recipient's Maildir."""
    root.mkdir(parents=True, exist_ok=True)
    box = mailbox.Maildir(str(root / recipient), create=True)
    box.add(content)
    _give_to_mail_user(root / recipient)


def _give_to_mail_user(path: Path) -> None:
    user = pwd.getpwnam(MAIL_USER)
    for dirpath, _dirnames, filenames in os.walk(path):
        os.chown(dirpath, user.pw_uid, user.pw_gid)
        for name in filenames:
            os.chown(os.path.join(dirpath, name), user.pw_uid, user.pw_gid)


_DOVECOT_CONF = """\
base_dir = {base}/run
state_dir = {base}/state
instance_name = ordo-test-{port}
log_path = {base}/dovecot.log
protocols = imap
listen = 127.0.0.1
ssl = required
ssl_cert = <{cert}
ssl_key = <{key}
ssl_ca = <{ca}
ssl_verify_client_cert = yes
ssl_require_crl = no
ssl_min_protocol = TLSv1.2
auth_mechanisms = external
auth_ssl_require_client_cert = yes
auth_ssl_username_from_cert = yes
ssl_cert_username_field = commonName
disable_plaintext_auth = yes
default_login_user = dovenull
default_internal_user = dovecot
first_valid_uid = 1
mail_location = maildir:{mail}/%u
mail_uid = {uid}
mail_gid = {gid}
passdb {{
  driver = static
  args = nopassword=y
}}
userdb {{
  driver = static
  args = uid={uid} gid={gid} home={mail}/%u
}}
service imap-login {{
  inet_listener imap {{
    port = 0
  }}
  inet_listener imaps {{
    port = {port}
    ssl = yes
  }}
}}
service anvil {{
  chroot =
}}
service stats {{
  unix_listener stats-writer {{
    mode = 0666
  }}
}}
"""


class Dovecot:
    """``dovecot -F`` with a throwaway configuration (IMAPS on a loopback port)."""

    def __init__(self, mail_root: Path, cert: Path, key: Path, client_ca: Path) -> None:
        self.mail_root = mail_root
        self.base = Path(tempfile.mkdtemp(prefix="ordo-dovecot-"))
        os.chmod(self.base, 0o755)
        self.port = free_port()
        user = pwd.getpwnam(MAIL_USER)
        # the TLS files are read by the master (root); copies keep the test PKI untouched
        conf = _DOVECOT_CONF.format(base=self.base, port=self.port, cert=cert, key=key,
                                    ca=client_ca, mail=mail_root, uid=user.pw_uid,
                                    gid=user.pw_gid)
        self.conf = self.base / "dovecot.conf"
        self.conf.write_text(conf)
        self.process: subprocess.Popen | None = None

    def start(self, timeout: float = 20.0) -> Dovecot:
        self.mail_root.mkdir(parents=True, exist_ok=True)
        os.chmod(self.mail_root, 0o755)
        _give_to_mail_user(self.mail_root)
        self.process = subprocess.Popen([DOVECOT, "-F", "-c", str(self.conf)],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError("dovecot did not start: "
                                   + self.process.stderr.read().decode(errors="replace")
                                   + self.log())
            with contextlib.suppress(OSError), socket.create_connection(
                    ("127.0.0.1", self.port), 0.5):
                return self
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"dovecot did not listen on {self.port}: {self.log()}")

    def log(self) -> str:
        path = self.base / "dovecot.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        if self.process is not None and self.process.stderr is not None:
            self.process.stderr.close()
        shutil.rmtree(self.base, ignore_errors=True)


def available() -> bool:
    return Path(DOVECOT).is_file() and os.geteuid() == 0
