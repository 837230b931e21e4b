"""The connection gate: count open TCP connections, overall and per address; refuse the rest
politely, in the peer's dialect."""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import trio

from triochat.events import Notice
from triochat.server.addresses import PerAddressLimit
from triochat.server.config import ServerConfig
from triochat.wire.http import http_refusal
from triochat.wire.json_lines import JsonServerCodec
from triochat.wire.lines import LineServerCodec

SERVER_FULL_WAIT = 1.0
"""Seconds a refused connection gets to show its dialect, so the refusal is in its language."""

REFUSAL_DRAIN_BYTES = 64 * 1024
"""Most bytes read from a refused connection while it is being closed."""

GatedHandler = Callable[[trio.SocketStream, Callable[[], None]], Awaitable[None]]
"""A handler that calls its second argument once its connection no longer counts."""


async def refuse_connection(
    stream: trio.SocketStream, config: ServerConfig, reason: str | None = None
) -> None:
    """Tell a connection the gate will not serve why it is closed (default: the server is full)."""
    if reason is None:
        reason = f"Server full ({config.max_connections} connections); try again later"
    with trio.move_on_after(SERVER_FULL_WAIT), contextlib.suppress(trio.BrokenResourceError):
        first = b""
        with trio.move_on_after(SERVER_FULL_WAIT / 2):
            first = bytes(await stream.receive_some(1))
            if config.web and first == b"G":
                first += await stream.receive_some(3)  # "GET ": a browser
        if config.web and first.startswith(b"GET "):
            await stream.send_all(http_refusal(503, reason))
        elif not (config.tls is not None and first.startswith(b"\x16")):
            # (A TLS peer can read nothing before its handshake: it is just closed.)
            codec = JsonServerCodec() if first.startswith(b"{") else LineServerCodec()
            await stream.send_all(codec.send(Notice(reason, is_error=True)))
        # Closing with unread bytes would send a reset, which can destroy the notice before
        # the peer reads it: say we are done, then drain (bounded) until the peer closes.
        await stream.send_eof()
        drained = 0
        while drained < REFUSAL_DRAIN_BYTES:
            data = await stream.receive_some(4096)
            if not data:
                break
            drained += len(data)
    await trio.aclose_forcefully(stream)


def peer_ip(stream: trio.SocketStream) -> str | None:
    """The peer's IP address, or ``None`` if the connection is already gone."""
    try:
        return str(stream.socket.getpeername()[0])
    except OSError:
        return None


@dataclass(frozen=True)
class GateStatistics:
    """What the gate has seen.

    Attributes:
        open: connections being served now.
        refused: connections refused because the server was full.
        refused_per_ip: connections refused because their address had too many already.
        addresses: distinct addresses with connections open now.
    """

    open: int
    refused: int
    refused_per_ip: int
    addresses: int


class ConnectionGate:
    """Counts open TCP connections against :attr:`ServerConfig.max_connections` and, per
    address, against :attr:`ServerConfig.max_per_ip`.

    A connection's place is freed as soon as its member has left the room (the handler calls
    ``release``), not when its last bytes are flushed: once the console says someone
    disconnected, a newcomer must be let in.
    """

    def __init__(self, config: ServerConfig) -> None:
        self._config = config
        self.open = 0
        self.refused = 0
        self._per_ip = PerAddressLimit(
            config.max_per_ip, exempt_loopback=config.per_ip_exempt_loopback
        )

    async def serve(self, stream: trio.SocketStream, handler: GatedHandler) -> None:
        """Run ``handler`` for ``stream``, or refuse it politely when the server is full or
        its address already has as many connections as it may."""
        if self.open >= self._config.max_connections:
            self.refused += 1
            await refuse_connection(stream, self._config)
            return
        try:
            counted = self._per_ip.acquire(peer_ip(stream))
        except LookupError:
            limit = self._config.max_per_ip
            reason = f"Too many connections from your address (limit {limit}); try again later"
            await refuse_connection(stream, self._config, reason)
            return
        self.open += 1
        released = False

        def release() -> None:
            nonlocal released
            if not released:
                released = True
                self.open -= 1
                self._per_ip.release(counted)

        try:
            await handler(stream, release)
        finally:
            release()

    def statistics(self) -> GateStatistics:
        """Current counters."""
        return GateStatistics(self.open, self.refused, self._per_ip.refused, len(self._per_ip))
