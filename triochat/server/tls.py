"""TLS on the chat port (SPEC §9): a connection that opens with a TLS handshake speaks TLS.

A TLS record starts with the byte 0x16 (handshake), which no name, JSON object or HTTP request
starts with, so the server can tell without a second port. The first byte is *peeked*
(``MSG_PEEK``), not read: a plain connection stays the untouched socket stream, keeping the
writer's fast path, and only TLS connections are wrapped in ``trio.SSLStream``. Inside, the
dialect is sniffed again as usual (lines, JSON, or the page over https and wss).
"""

from __future__ import annotations

import socket
import ssl

import trio

TLS_HANDSHAKE = 0x16
"""The first byte of a TLS record that carries a handshake (a ClientHello)."""


async def accept_tls(
    stream: trio.SocketStream, context: ssl.SSLContext, patience: float
) -> trio.abc.Stream:
    """``stream`` itself, or ``stream`` in TLS when its first byte starts a TLS handshake.

    Waits at most ``patience`` seconds for the first byte; a peer that sends nothing stays
    plain (the session then times it out as any silent connection). The TLS handshake itself
    happens at the first read, under the session's registration timeout.

    Raises:
        OSError: the connection failed while peeking.
    """
    with trio.move_on_after(patience):
        first = await stream.socket.recv(1, socket.MSG_PEEK)
        if first and first[0] == TLS_HANDSHAKE:
            # https_compatible: browsers and our clients may close without a TLS close_notify.
            return trio.SSLStream(stream, context, server_side=True, https_compatible=True)
    return stream
