"""Putting the server together: listeners, sessions, console, and a clean Ctrl-C."""

from __future__ import annotations

import contextlib
import errno
import logging
import signal
import socket
from collections.abc import Awaitable, Callable, Sequence
from functools import partial

import trio

from triochat.events import Notice
from triochat.room import Room
from triochat.server.console import ChatConsole, PortTaggedConsole
from triochat.server.reader import SessionLimits
from triochat.server.relay import FileRelay
from triochat.server.session import ChatSession, SessionCounter
from triochat.server.udp import DatagramEndpoint
from triochat.server.udp_sockets import open_datagram_sockets
from triochat.wire.json_lines import JsonCodec
from triochat.wire.lines import LineCodec, PortTaggedCodec

logger = logging.getLogger(__name__)

SHUTDOWN_GRACE = 1.5
"""Seconds members get, after Ctrl-C, to receive the shutdown notice before we close."""


def peer_of(stream: trio.SocketStream) -> tuple[str, int]:
    """The (ip, port) of a connected socket stream."""
    address = stream.socket.getpeername()
    return str(address[0]), int(address[1])


def display_ip(host: str | None) -> str:
    """The IP address the banner shows: the bound host, else this machine's address."""
    if host:
        return host
    try:
        return socket.gethostbyname(socket.gethostname())
    except OSError:
        return "127.0.0.1"


Handler = Callable[[trio.SocketStream], Awaitable[None]]
GatedHandler = Callable[[trio.SocketStream, Callable[[], None]], Awaitable[None]]
"""A handler that calls its second argument once its connection no longer counts."""
Service = Callable[..., Awaitable[None]]
"""A background job started with ``nursery.start`` (it takes ``task_status``)."""


async def _run_handler(handler: Handler, stream: trio.SocketStream) -> None:
    try:
        await handler(stream)
    except Exception:
        # One connection's bug must never take the server down; it is logged, not hidden.
        logger.exception("session failed")


SERVER_FULL_WAIT = 1.0
"""Seconds a refused connection gets to show its dialect, so the refusal is in its language."""


async def refuse_connection(stream: trio.SocketStream, limits: SessionLimits) -> None:
    """Tell a connection over :attr:`SessionLimits.max_connections` why it is closed."""
    reason = f"Server full ({limits.max_connections} connections); try again later"
    with trio.move_on_after(SERVER_FULL_WAIT), contextlib.suppress(trio.BrokenResourceError):
        first = b""
        with trio.move_on_after(SERVER_FULL_WAIT / 2):
            first = bytes(await stream.receive_some(1))
        codec = JsonCodec() if first.startswith(b"{") else LineCodec()
        await stream.send_all(codec.encode(Notice(reason, is_error=True)))
    await trio.aclose_forcefully(stream)


class ConnectionGate:
    """Counts open TCP connections against :attr:`SessionLimits.max_connections`.

    A connection's place is freed as soon as its member has left the room (the handler calls
    ``release``), not when its last bytes are flushed: once the console says someone
    disconnected, a newcomer must be let in.
    """

    def __init__(self, limits: SessionLimits) -> None:
        self._limits = limits
        self.open = 0
        self.refused = 0

    async def serve(self, stream: trio.SocketStream, handler: GatedHandler) -> None:
        """Run ``handler`` for ``stream``, or refuse it politely when the server is full."""
        if self.open >= self._limits.max_connections:
            self.refused += 1
            await refuse_connection(stream, self._limits)
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


async def _serve_until_signal(
    listeners: list[trio.SocketListener],
    handler: Handler,
    room: Room,
    counter: SessionCounter,
    services: Sequence[Service] = (),
) -> None:
    """Serve until SIGINT/SIGTERM, then tell every member and give writers a grace to flush."""
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with trio.open_nursery() as sessions:
            accepting = trio.CancelScope()

            async def accept() -> None:
                with accepting:
                    await trio.serve_listeners(
                        partial(_run_handler, handler), listeners, handler_nursery=sessions
                    )

            for service in services:
                await sessions.start(service)
            sessions.start_soon(accept)
            async for signum in signals:
                logger.info("signal %s: shutting down", signum)
                break
            accepting.cancel()
            room.close("Server shutting down")
            with trio.move_on_after(SHUTDOWN_GRACE):
                await counter.wait_idle()
            sessions.cancel_scope.cancel()


async def open_listeners(port: int, host: str | None) -> list[trio.SocketListener]:
    """TCP listeners on ``port`` (all interfaces unless ``host``); SO_REUSEADDR is set by trio.

    Raises:
        OSError: the port is really busy or not ours to bind.
    """
    return await trio.open_tcp_listeners(port, host=host)


async def run_chat_server(
    port: int, host: str | None = None, limits: SessionLimits | None = None, *, udp: bool = True
) -> int:
    """``ChatServer.py``: every dialect in one room (UDP too unless ``udp=False``).

    Returns the exit code.
    """
    limits = limits or SessionLimits()
    console = ChatConsole()
    try:
        listeners = await open_listeners(port, host)
    except OSError as error:
        logger.debug("listen failed: %r", error)
        console.line(f"ERR - cannot create ChatServer socket using port number {port}")
        return 1
    try:
        bound_port = int(listeners[0].socket.getsockname()[1])
        datagram_sockets = await open_datagram_sockets(bound_port, host) if udp else []
    except OSError as error:
        logger.debug("UDP bind failed: %r", error)
        for listener in listeners:
            await listener.aclose()
        console.line(f"ERR - cannot create ChatServer socket using port number {port}")
        return 1
    room = Room(observer=console, outbox_limit=limits.outbox_limit)
    relay = FileRelay(room, console, max_file_bytes=limits.max_file_bytes)
    counter = SessionCounter()
    gate = ConnectionGate(limits)
    console.started(display_ip(host), port)

    async def start_session(stream: trio.SocketStream, release: Callable[[], None]) -> None:
        try:
            peer = peer_of(stream)
            # Finds peers that vanished without a word (power cut, cable pulled).
            stream.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        except OSError:  # reset before we even looked at it
            await trio.aclose_forcefully(stream)
            return
        session = ChatSession(
            stream,
            None,
            room,
            peer,
            limits,
            counter=counter,
            on_file_request=relay.request,
            on_finish=release,
        )
        await session.run()

    async def handle(stream: trio.SocketStream) -> None:
        await gate.serve(stream, start_session)

    services: list[Service] = [room.serve_flusher, relay.serve]
    if datagram_sockets:
        services.append(DatagramEndpoint(room, datagram_sockets, counter=counter).serve)
    try:
        await _serve_until_signal(listeners, handle, room, counter, services)
    finally:
        for sock in datagram_sockets:
            sock.close()
    return 0


async def run_port_tagged_server(
    port: int = 12000, host: str = "127.0.0.1", limits: SessionLimits | None = None
) -> int:
    """``mychatserver.py`` (seed 004): members named by their port. Returns the exit code."""
    limits = limits or SessionLimits()
    console = PortTaggedConsole()
    try:
        listeners = await open_listeners(port, host)
    except OSError as error:
        reason = "port is busy" if error.errno == errno.EADDRINUSE else str(error)
        logger.error("cannot listen on %s:%s: %s", host, port, reason)
        console.line(f"ERR - cannot listen on {host}:{port}")
        return 1
    room = Room(observer=console)
    counter = SessionCounter()
    console.started(host, port)

    async def handle(stream: trio.SocketStream) -> None:
        peer = peer_of(stream)
        session = ChatSession(
            stream,
            PortTaggedCodec(limits.max_line_bytes),
            room,
            peer,
            limits,
            fixed_name=str(peer[1]),
            counter=counter,
        )
        await session.run()

    await _serve_until_signal(listeners, handle, room, counter, [room.serve_flusher])
    return 0
