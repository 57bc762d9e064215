"""No real network while the kit runs: only loopback sockets (the served fake) and in-process ASGI.

A connector that builds its own client, or takes a hard-coded vendor URL instead of the configured
``base_url``, would reach the real service from a test run — with the author's real credentials, perhaps.
While a :class:`NetworkGuard` is active, connecting to (or even resolving) anything but a loopback
address fails at once, and the attempt is recorded so the check can say what to fix.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

_LOOPBACK_NAMES = frozenset({"localhost", "localhost.", "ip6-localhost"})


class NetworkRefused(ConnectionRefusedError):
    """Raised in place of a connection to a host that is not loopback."""


def _is_loopback(host: Any) -> bool:
    if host is None:
        return True
    if isinstance(host, bytes):
        host = host.decode("ascii", "replace")
    text = str(host).strip("[]").lower()
    if text in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(text.split("%")[0]).is_loopback
    except ValueError:
        return False


class NetworkGuard:
    """Patches the socket module so that only loopback connections go through; records the rest."""

    def __init__(self) -> None:
        self.refused: list[str] = []

    def _refuse(self, host: Any, port: Any) -> NetworkRefused:
        if isinstance(host, bytes):
            host = host.decode("ascii", "replace")
        where = f"{host}:{port}" if port is not None else str(host)
        self.refused.append(where)
        return NetworkRefused(f"the conformance kit refuses real network access (to {where})")

    @contextmanager
    def active(self) -> Iterator[NetworkGuard]:
        original_connect = socket.socket.connect
        original_connect_ex = socket.socket.connect_ex
        original_getaddrinfo = socket.getaddrinfo
        guard = self

        def connect(sock: socket.socket, address: Any) -> None:
            if sock.family in (socket.AF_INET, socket.AF_INET6) and not _is_loopback(address[0]):
                raise guard._refuse(address[0], address[1])
            original_connect(sock, address)

        def connect_ex(sock: socket.socket, address: Any) -> int:
            if sock.family in (socket.AF_INET, socket.AF_INET6) and not _is_loopback(address[0]):
                raise guard._refuse(address[0], address[1])
            return original_connect_ex(sock, address)

        def getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
            if not _is_loopback(host):
                raise guard._refuse(host, port)
            return original_getaddrinfo(host, port, *args, **kwargs)

        socket.socket.connect = connect  # type: ignore[method-assign]
        socket.socket.connect_ex = connect_ex  # type: ignore[method-assign]
        socket.getaddrinfo = getaddrinfo
        try:
            yield self
        finally:
            socket.socket.connect = original_connect  # type: ignore[method-assign]
            socket.socket.connect_ex = original_connect_ex  # type: ignore[method-assign]
            socket.getaddrinfo = original_getaddrinfo


__all__ = ["NetworkGuard", "NetworkRefused"]
