"""The connection limit: count open TCP connections, refuse the rest politely."""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable

import trio

from triochat.events import Notice
from triochat.server.config import ServerConfig
from triochat.wire.json_lines import JsonServerCodec
from triochat.wire.lines import LineServerCodec

SERVER_FULL_WAIT = 1.0
"""Seconds a refused connection gets to show its dialect, so the refusal is in its language."""

GatedHandler = Callable[[trio.SocketStream, Callable[[], None]], Awaitable[None]]
"""A handler that calls its second argument once its connection no longer counts."""


async def refuse_connection(stream: trio.SocketStream, config: ServerConfig) -> None:
    """Tell a connection over :attr:`ServerConfig.max_connections` why it is closed."""
    reason = f"Server full ({config.max_connections} connections); try again later"
    with trio.move_on_after(SERVER_FULL_WAIT), contextlib.suppress(trio.BrokenResourceError):
        first = b""
        with trio.move_on_after(SERVER_FULL_WAIT / 2):
            first = bytes(await stream.receive_some(1))
        codec = JsonServerCodec() if first.startswith(b"{") else LineServerCodec()
        await stream.send_all(codec.send(Notice(reason, is_error=True)))
    await trio.aclose_forcefully(stream)


class ConnectionGate:
    """Counts open TCP connections against :attr:`ServerConfig.max_connections`.

    A connection's place is freed as soon as its member has left the room (the handler calls
    ``release``), not when its last bytes are flushed: once the console says someone
    disconnected, a newcomer must be let in.
    """

    def __init__(self, config: ServerConfig) -> None:
        self._config = config
        self.open = 0
        self.refused = 0

    async def serve(self, stream: trio.SocketStream, handler: GatedHandler) -> None:
        """Run ``handler`` for ``stream``, or refuse it politely when the server is full."""
        if self.open >= self._config.max_connections:
            self.refused += 1
            await refuse_connection(stream, self._config)
            return
        self.open += 1
        released = False

        def release() -> None:
            nonlocal released
            if not released:
                released = True
                self.open -= 1

        try:
            await handler(stream, release)
        finally:
            release()
