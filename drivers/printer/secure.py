"""Secure prescriptions go to secure paper, never to a receipt: implements ``OrderPrinter``.

Each order becomes its PDF/A (``pdf.render_pdf``: quantities in words, the number of
medications) written to ``[print] secure_pdf_dir`` (``<data_dir>/secure`` by default; the
directory 0700, each file 0600, written whole then renamed), named after the order's ID
(``…-duplicata-<job>.pdf`` for a reprint). When ``[print] secure_printer_uri``
is ``tcp://host:port``, the PDF is also sent as is to that printer (raw TCP, "port 9100"),
a printer loaded with secure paper that prints PDF files directly; the job is done when
the printer has taken every byte (and, when it says so, closed the connection).
Otherwise the PDF waits in the directory for whoever prints it on secure paper, and the
kiosk says so.
"""

from __future__ import annotations

import contextlib
import os
import socket
import time
from pathlib import Path
from urllib.parse import urlsplit

from appliance.errors import PrinterError
from appliance.ports.printer import (
    PrinterState,
    PrinterStatus,
    PrinterUnavailable,
    PrintReceipt,
)
from drivers.printer.layout import Letterhead, OrderDocument

DIR_MODE = 0o700
FILE_MODE = 0o600
DEFAULT_TIMEOUT_S = 10.0


class SecurePdfPrinter:
    """The ``OrderPrinter`` for secure prescriptions (see the module doc)."""

    def __init__(self, directory: Path | str, *, establishment: Letterhead, uri: str = "",
                 paper: str = "A5", timeout: float = DEFAULT_TIMEOUT_S) -> None:
        self.directory = Path(directory)
        self.establishment = establishment
        self.uri = uri
        self.paper = paper
        self.timeout = timeout
        self._endpoint: tuple[str, int] | None = None
        if uri:
            parts = urlsplit(uri)
            if parts.scheme != "tcp" or not parts.hostname or parts.port is None:
                raise PrinterError(f"imprimante sécurisée invalide : {uri!r} (tcp://hôte:port)")
            self._endpoint = (parts.hostname, parts.port)

    @classmethod
    def from_settings(cls, settings: object) -> SecurePdfPrinter:
        pr = settings.print  # type: ignore[attr-defined]
        return cls(settings.secure_pdf_dir,  # type: ignore[attr-defined]
                   establishment=Letterhead.from_settings(settings),
                   uri=pr.secure_printer_uri, paper=pr.paper)

    @property
    def qr_capacity(self) -> int:
        return 4296  # a QR code version 40, level L: the PDF has room for any payload

    @property
    def description(self) -> str:
        return f"pdf:{self.directory}" + (f" + {self.uri}" if self.uri else "")

    def status(self) -> PrinterStatus:
        if self._endpoint is None:
            return PrinterStatus(PrinterState.READY, f"PDF dans {self.directory}")
        try:
            with socket.create_connection(self._endpoint, timeout=self.timeout):
                return PrinterStatus(PrinterState.READY)
        except OSError:
            return PrinterStatus(PrinterState.UNREACHABLE, self.uri)

    def path_for(self, request: object) -> Path:
        pid = request.prescription.id  # type: ignore[attr-defined]
        if request.duplicate_at is None:  # type: ignore[attr-defined]
            return self.directory / f"{pid}.pdf"
        return self.directory / f"{pid}-duplicata-{request.job_id}.pdf"  # type: ignore

    def prepare(self, request: object) -> None:
        """Nothing: a secure order is a PDF for another printer, not waited for at the
        terminal."""

    def print_order(self, request: object) -> PrintReceipt:
        from drivers.printer.pdf import render_pdf

        started = time.monotonic()
        doc = OrderDocument(request.prescription, request.qr_payload,  # type: ignore
                            self.establishment, request.duplicate_at)  # type: ignore
        data = render_pdf(doc, self.paper)
        self._write(self.path_for(request), data)
        confirmed = self._send(data) if self._endpoint is not None else False
        return PrintReceipt(bytes_sent=len(data), tickets=1,
                            seconds=time.monotonic() - started, confirmed=confirmed)

    def _write(self, path: Path, data: bytes) -> None:
        try:
            self.directory.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
            os.chmod(self.directory, DIR_MODE)
            tmp = path.with_suffix(".tmp")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
            with os.fdopen(fd, "wb") as out:
                out.write(data)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, path)
        except OSError as exc:
            raise PrinterUnavailable(PrinterState.UNKNOWN,
                                     f"PDF sécurisé impossible à écrire ({exc.strerror})"
                                     ) from exc

    def _send(self, data: bytes) -> bool:
        """True when the printer closed the connection after the last byte; False when it
        kept it open past the timeout (every byte was sent: sending again would print a
        second copy)."""
        assert self._endpoint is not None
        try:
            sock = socket.create_connection(self._endpoint, timeout=self.timeout)
        except OSError as exc:
            raise PrinterUnavailable(PrinterState.UNREACHABLE,
                                     f"Imprimante sécurisée injoignable ({self.uri})") from exc
        try:
            sock.sendall(data)
            sock.shutdown(socket.SHUT_WR)
            try:
                while sock.recv(4096):  # the printer closes once it has the whole file
                    pass
            except TimeoutError:
                return False
            return True
        except OSError as exc:
            raise PrinterUnavailable(PrinterState.UNREACHABLE,
                                     "Connexion à l'imprimante sécurisée perdue",
                                     sent_some=True) from exc
        finally:
            with contextlib.suppress(OSError):
                sock.close()
