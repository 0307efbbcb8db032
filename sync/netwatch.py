"""The kernel's word that the network changed: rtnetlink (RFC 3549) on a plain
``socket.AF_NETLINK`` socket, no dependency.

``NetworkWatcher(on_change)`` subscribes to the multicast groups of links
(``RTMGRP_LINK``), addresses and routes (IPv4 and IPv6), and calls ``on_change()`` from its
own thread when a link comes up (``RTM_NEWLINK`` with ``IFF_RUNNING``) or an address or a
route is added: the moments connectivity may have returned. Losses (``RTM_DEL*``, a link
going down) call nothing. A burst of messages (a DHCP lease brings an address, then routes)
calls it once, ``settle_s`` after the first message. Where netlink is not available (another
system, or a sandbox that forbids ``AF_NETLINK``), ``start()`` returns False and the sync
service relies on its periodic probe alone.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator

log = logging.getLogger(__name__)

NETLINK_ROUTE = 0
# <linux/rtnetlink.h>
RTMGRP_LINK, RTMGRP_IPV4_IFADDR, RTMGRP_IPV4_ROUTE = 0x1, 0x10, 0x40
RTMGRP_IPV6_IFADDR, RTMGRP_IPV6_ROUTE = 0x100, 0x400
GROUPS = (RTMGRP_LINK | RTMGRP_IPV4_IFADDR | RTMGRP_IPV4_ROUTE | RTMGRP_IPV6_IFADDR
          | RTMGRP_IPV6_ROUTE)
RTM_NEWLINK, RTM_NEWADDR, RTM_NEWROUTE = 16, 20, 24
IFF_UP, IFF_RUNNING = 0x1, 0x40
_NLMSGHDR = struct.Struct("=IHHII")   # length, type, flags, sequence, port id
_IFINFOMSG = struct.Struct("=BxHiII")  # family, (pad), type, index, flags, change


def messages(data: bytes) -> Iterator[tuple[int, bytes]]:
    """(type, payload) of each netlink message in one datagram; a truncated tail ends it."""
    offset = 0
    while offset + _NLMSGHDR.size <= len(data):
        length, kind, _flags, _seq, _pid = _NLMSGHDR.unpack_from(data, offset)
        if length < _NLMSGHDR.size or offset + length > len(data):
            return
        yield kind, data[offset + _NLMSGHDR.size:offset + length]
        offset += (length + 3) & ~3  # NLMSG_ALIGN


def connectivity_may_have_returned(data: bytes) -> bool:
    """True when a datagram reports a link up and running, or an address or route added."""
    for kind, payload in messages(data):
        if kind in (RTM_NEWADDR, RTM_NEWROUTE):
            return True
        if kind == RTM_NEWLINK and len(payload) >= _IFINFOMSG.size:
            flags = _IFINFOMSG.unpack_from(payload)[3]
            if flags & IFF_UP and flags & IFF_RUNNING:
                return True
    return False


class NetworkWatcher:
    def __init__(self, on_change: Callable[[], None], *, settle_s: float = 0.2) -> None:
        self.on_change = on_change
        self.settle_s = settle_s
        self.events = 0  # calls of on_change so far
        self._sock: socket.socket | None = None
        self._wake_r = self._wake_w = -1
        self._thread: threading.Thread | None = None

    def start(self) -> bool:
        """Subscribe and start the thread; False (and a log line) when netlink is not
        available here."""
        family = getattr(socket, "AF_NETLINK", None)
        if family is None:
            log.info("no netlink on this system: the registry is probed on a schedule only")
            return False
        try:
            sock = socket.socket(family, socket.SOCK_RAW | socket.SOCK_CLOEXEC, NETLINK_ROUTE)
            sock.bind((0, GROUPS))
        except OSError as exc:
            log.warning("network events unavailable: the registry is probed on a schedule "
                        "only", extra={"fields": {"reason": exc.strerror or str(exc)}})
            return False
        self._sock = sock
        self._wake_r, self._wake_w = os.pipe()
        self._thread = threading.Thread(target=self._run, name="netwatch", daemon=True)
        self._thread.start()
        return True

    def stop(self) -> None:
        if self._thread is None:
            return
        with contextlib.suppress(OSError):
            os.write(self._wake_w, b"x")
        self._thread.join(timeout=5)
        self._thread = None
        for fd in (self._wake_r, self._wake_w):
            with contextlib.suppress(OSError):
                os.close(fd)
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def _run(self) -> None:
        sock = self._sock
        assert sock is not None
        due: float | None = None  # when to call on_change (a burst settles first)
        while True:
            timeout = None if due is None else max(due - time.monotonic(), 0.0)
            readable, _, _ = select.select([sock, self._wake_r], [], [], timeout)
            if self._wake_r in readable:
                return
            if sock in readable:
                try:
                    data = sock.recv(65536)
                except OSError as exc:  # ENOBUFS: messages were lost; something changed
                    log.debug("netlink receive failed", extra={"fields": {"errno": exc.errno}})
                    data = b""
                    due = due or time.monotonic() + self.settle_s
                if data and connectivity_may_have_returned(data) and due is None:
                    due = time.monotonic() + self.settle_s
            if due is not None and time.monotonic() >= due:
                due = None
                self.events += 1
                log.info("network changed: probing the registry now")
                try:
                    self.on_change()
                except Exception:
                    log.exception("network change handler failed")
