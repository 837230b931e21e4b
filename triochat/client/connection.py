"""Connecting to the server and reading its lines, shared by the TCP client modes."""

from __future__ import annotations

import trio

from triochat.client.terminal import warn
from triochat.wire.common import MAX_SERVER_LINE_BYTES, NEED_DATA, RemoteProtocolError
from triochat.wire.lines import LineFramer

RECEIVE_SIZE = 64 * 1024
LEAVE_GRACE = 0.8
"""Seconds a leaving client waits for the server to confirm; exit stays under one second."""


class CannotConnect(Exception):
    """The server could not be reached; ``str(error)`` says where and why."""


async def connect(host: str, port: int) -> trio.SocketStream:
    """A TCP connection to the chat server.

    Raises:
        CannotConnect: refused, unreachable, or the host does not resolve.
    """
    try:
        return await trio.open_tcp_stream(host, port)
    except OSError as error:
        reason = error.strerror or str(error)
        raise CannotConnect(
            f"Cannot connect to the chat server at {host}:{port}: {reason}"
        ) from error


class ServerLines:
    """Whole text lines from the server (the line and port-tagged dialects)."""

    def __init__(self, stream: trio.abc.ReceiveStream) -> None:
        self._stream = stream
        self._framer = LineFramer(MAX_SERVER_LINE_BYTES)
        self._eof = False

    async def readline(self) -> str | None:
        """The next line from the server, or ``None`` once it has closed the connection."""
        while True:
            try:
                line = self._framer.next_line()
            except RemoteProtocolError as error:
                # Cannot happen with our server (see MAX_SERVER_LINE_BYTES); say so if it does.
                warn(f"Dropped a line from the server: {error}")
                continue
            if line is not NEED_DATA:
                return line
            if self._eof:
                return self._framer.flush_partial()
            try:
                data = await self._stream.receive_some(RECEIVE_SIZE)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                data = b""
            if data:
                self._framer.receive_data(data)
            else:
                self._eof = True
