"""Serving the room: listeners and UDP sockets in, sessions out, until cancelled.

:func:`serve_chat` and :func:`serve_port_tagged` have the shape of ``trio.serve_tcp``: start
them with ``await nursery.start(...)``, which returns a :class:`ChatService` once everything
is accepting, and cancel them to stop. A graceful stop (tell every member, give their writers
a moment) is :meth:`ChatService.shutdown` first. Signals, the banner, ``ERR -`` lines and exit
codes are the command line's (``triochat/cli_server.py``).
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import trio

from triochat.room import Room
from triochat.server.addresses import PerAddressLimit
from triochat.server.config import ServerConfig
from triochat.server.gate import ConnectionGate
from triochat.server.relay import FileRelay, RelayObserver, SilentRelayObserver
from triochat.server.session import ChatSession, SessionCounter
from triochat.server.tls import accept_tls
from triochat.server.udp import DatagramEndpoint
from triochat.server.udp_sockets import open_datagram_sockets
from triochat.server.writer import Flusher
from triochat.wire.lines import PortTaggedServerCodec

logger = logging.getLogger(__name__)

SHUTDOWN_GRACE = 1.5
"""Seconds members get, at shutdown, to receive the notice before their sessions are ended."""

BIND_TRIES = 10
"""Ports tried when port 0 asks for any free one that TCP and UDP can both have."""

Service = Callable[..., Awaitable[None]]
"""A background job started with ``nursery.start`` (it takes ``task_status``)."""

SessionStarter = Callable[[trio.SocketStream, Callable[[], None]], Awaitable[None]]


@dataclass
class ChatService:
    """A running server, as ``nursery.start(serve_chat, ...)`` reports it.

    Attributes:
        room: the room it serves.
        port: the TCP port it listens on (UDP, if any, has the same number).
        gate: open and refused connection counts.
    """

    room: Room
    port: int
    gate: ConnectionGate
    _accepting: trio.CancelScope
    _counter: SessionCounter

    async def shutdown(
        self, reason: str = "Server shutting down", grace: float = SHUTDOWN_GRACE
    ) -> None:
        """Stop accepting, tell every member ``reason``, wait (at most ``grace``) until their
        sessions have ended. The caller then cancels the service."""
        self._accepting.cancel()
        self.room.close(reason)
        with trio.move_on_after(grace):
            await self._counter.wait_idle()


def peer_of(stream: trio.SocketStream) -> tuple[str, int]:
    """The (ip, port) of a connected socket stream."""
    address = stream.socket.getpeername()
    return str(address[0]), int(address[1])


async def open_chat_sockets(
    port: int, host: str | None, *, udp: bool = True, reuse_port: bool = False
) -> tuple[list[trio.SocketListener], list[trio.socket.SocketType]]:
    """TCP listeners on ``port`` and, with ``udp``, UDP sockets on the same number.

    ``port=0`` picks a free port that every listener and UDP socket can share.
    ``reuse_port`` lets other processes bind the same port too (SO_REUSEPORT; the kernel
    spreads connections and datagram senders over them): nodes of one cluster.

    Raises:
        OSError: the port is really busy or not ours to bind.
    """
    open_listeners = open_reuse_port_listeners if reuse_port else trio.open_tcp_listeners
    for _ in range(BIND_TRIES if port == 0 else 1):
        listeners = await open_listeners(port, host=host)
        try:
            bound = _port_of(listeners[0])
            if port == 0 and any(_port_of(listener) != bound for listener in listeners[1:]):
                # One free port per address family: bind them all to the first one's.
                await _close_all(listeners)
                listeners = await open_listeners(bound, host=host)
            datagram_sockets = (
                await open_datagram_sockets(bound, host, reuse_port=reuse_port) if udp else []
            )
        except OSError:
            await _close_all(listeners)
            if port != 0:
                raise
            continue
        return listeners, datagram_sockets
    raise OSError(f"no free port for TCP and UDP after {BIND_TRIES} tries")


async def open_reuse_port_listeners(
    port: int, *, host: str | None = None, backlog: int = 4096
) -> list[trio.SocketListener]:
    """What ``trio.open_tcp_listeners`` opens, with SO_REUSEPORT set on every socket.

    Raises:
        OSError: the port is busy (without SO_REUSEPORT) or not ours to bind.
    """
    if not hasattr(socket, "SO_REUSEPORT"):
        raise OSError("SO_REUSEPORT is not available on this platform")
    infos = await trio.socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )
    listeners: list[trio.SocketListener] = []
    try:
        for family, type_, proto, _, sockaddr in infos:
            sock = trio.socket.socket(family, type_, proto)
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
                if family == socket.AF_INET6:
                    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                await sock.bind(sockaddr)
                sock.listen(backlog)
            except BaseException:
                sock.close()
                raise
            listeners.append(trio.SocketListener(sock))
    except BaseException:
        await _close_all(listeners)
        raise
    return listeners


def _port_of(listener: trio.SocketListener) -> int:
    return int(listener.socket.getsockname()[1])


async def _close_all(listeners: Sequence[trio.SocketListener]) -> None:
    for listener in listeners:
        await listener.aclose()


async def serve_chat(
    listeners: Sequence[trio.SocketListener],
    room: Room,
    config: ServerConfig,
    *,
    datagram_sockets: Sequence[trio.socket.SocketType] = (),
    transfer_observer: RelayObserver | None = None,
    task_status: trio.TaskStatus[ChatService] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve every dialect in ``room`` until cancelled (see the module docstring).

    Args:
        listeners: bound TCP listeners (line, JSON and file-request members).
        room: the room; its observer is the console.
        config: every limit.
        datagram_sockets: bound UDP sockets for datagram members (none: no UDP).
        transfer_observer: told about file transfers (the console), if anyone.
        task_status: gets the :class:`ChatService` once accepting.
    """
    relay = FileRelay(
        room, transfer_observer or SilentRelayObserver(), max_file_bytes=config.max_file_bytes
    )
    counter = SessionCounter()
    flusher = Flusher()

    async def start_session(stream: trio.SocketStream, release: Callable[[], None]) -> None:
        member_stream: trio.abc.Stream = stream
        try:
            peer = peer_of(stream)
            # Finds peers that vanished without a word (power cut, cable pulled).
            stream.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
            if config.tls is not None:
                member_stream = await accept_tls(stream, config.tls, config.registration_timeout)
        except OSError:  # reset before we even looked at it
            await trio.aclose_forcefully(stream)
            return
        session = ChatSession(
            member_stream,
            None,
            room,
            peer,
            config,
            counter=counter,
            on_file_request=relay.request,
            on_finish=release,
            flusher=flusher if config.fast_path else None,
        )
        await session.run()

    services: list[Service] = [flusher.serve, relay.serve]
    if datagram_sockets:
        per_address = PerAddressLimit(
            config.max_per_ip, exempt_loopback=config.per_ip_exempt_loopback
        )
        endpoint = DatagramEndpoint(
            room, list(datagram_sockets), counter=counter, per_address=per_address
        )
        services.append(endpoint.serve)
    await _serve(listeners, room, config, start_session, services, counter, task_status)


async def serve_port_tagged(
    listeners: Sequence[trio.SocketListener],
    room: Room,
    config: ServerConfig,
    *,
    task_status: trio.TaskStatus[ChatService] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve seed-004 members, named by their port, in ``room`` until cancelled."""
    counter = SessionCounter()
    flusher = Flusher()

    async def start_session(stream: trio.SocketStream, release: Callable[[], None]) -> None:
        try:
            peer = peer_of(stream)
        except OSError:
            await trio.aclose_forcefully(stream)
            return
        session = ChatSession(
            stream,
            PortTaggedServerCodec(config.max_line_bytes),
            room,
            peer,
            config,
            fixed_name=str(peer[1]),
            counter=counter,
            on_finish=release,
            flusher=flusher if config.fast_path else None,
        )
        await session.run()

    await _serve(listeners, room, config, start_session, [flusher.serve], counter, task_status)


async def _serve(
    listeners: Sequence[trio.SocketListener],
    room: Room,
    config: ServerConfig,
    start_session: SessionStarter,
    services: Sequence[Service],
    counter: SessionCounter,
    task_status: trio.TaskStatus[ChatService],
) -> None:
    gate = ConnectionGate(config)

    async def handle(stream: trio.SocketStream) -> None:
        try:
            await gate.serve(stream, start_session)
        except Exception:
            # One connection's bug must never take the server down; it is logged, not hidden.
            logger.exception("session failed")

    async with trio.open_nursery() as nursery:
        for service in services:
            await nursery.start(service)
        accepting = trio.CancelScope()

        async def accept() -> None:
            with accepting:
                await trio.serve_listeners(handle, list(listeners), handler_nursery=nursery)

        nursery.start_soon(accept)
        task_status.started(ChatService(room, _port_of(listeners[0]), gate, accepting, counter))
