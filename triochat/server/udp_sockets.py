"""Binding the server's UDP sockets: one per address family, on the TCP listener's port."""

from __future__ import annotations

import errno
import logging
import socket as stdlib_socket
from typing import Any

import trio

logger = logging.getLogger(__name__)

SOCKET_RECEIVE_BUFFER = 1024 * 1024
"""SO_RCVBUF we ask for (the kernel may cap it): room for bursts while the loop catches up."""


async def open_datagram_sockets(
    port: int, host: str | None, *, reuse_port: bool = False
) -> list[trio.socket.SocketType]:
    """Bound UDP sockets on ``port``: one per address family ``host`` resolves to.

    With ``host=None`` that is ``0.0.0.0`` and ``::`` (IPv6-only, so they do not clash), as
    :func:`trio.open_tcp_listeners` does for TCP. No SO_REUSEADDR: UDP has no TIME_WAIT to
    wait out, and on UDP it would let two servers share the port silently.

    Raises:
        OSError: the port is busy or not ours to bind.

    ``reuse_port`` sets SO_REUSEPORT: several processes that all ask for it share the port
    (the kernel keeps each sender's datagrams on one of them).
    """
    infos = await trio.socket.getaddrinfo(
        host, port, type=stdlib_socket.SOCK_DGRAM, flags=stdlib_socket.AI_PASSIVE
    )
    sockets: list[trio.socket.SocketType] = []
    seen: set[tuple[int, Any]] = set()
    try:
        for family, type_, proto, _, sockaddr in infos:
            if (family, sockaddr) in seen:
                continue
            seen.add((family, sockaddr))
            try:
                sock = trio.socket.socket(family, type_, proto)
            except OSError as error:
                if error.errno == errno.EAFNOSUPPORT:
                    continue  # this machine lacks the family; the others will do
                raise
            try:
                if family == stdlib_socket.AF_INET6:
                    sock.setsockopt(stdlib_socket.IPPROTO_IPV6, stdlib_socket.IPV6_V6ONLY, 1)
                if reuse_port:
                    sock.setsockopt(stdlib_socket.SOL_SOCKET, stdlib_socket.SO_REUSEPORT, 1)
                try:
                    sock.setsockopt(
                        stdlib_socket.SOL_SOCKET, stdlib_socket.SO_RCVBUF, SOCKET_RECEIVE_BUFFER
                    )
                except OSError as error:
                    logger.debug("SO_RCVBUF: %r", error)
                await sock.bind(sockaddr)
            except BaseException:
                sock.close()
                raise
            sockets.append(sock)
    except BaseException:
        for sock in sockets:
            sock.close()
        raise
    if not sockets:
        raise OSError(errno.EAFNOSUPPORT, f"no usable address family for {host!r}")
    return sockets
