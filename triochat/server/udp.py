"""The server's UDP endpoint: one socket, demultiplexed into one room member per address.

Seed 002's clients greet the server from a UDP address and from then on get every message as
an ``INCOMING`` datagram. Here each greeting address becomes an ordinary room
:class:`~triochat.room.Member` (``receives_own``: datagram members hear their own messages),
with its own bounded outbox and its own sender task, so the room's total order, eviction of
members that cannot keep up, unique names and console lines work exactly as for TCP members.

The receive loop never waits on anything but ``recvfrom``: parsing, registration and fan-out
are synchronous, and replies to peers that are not members (a refused name) go through a small
bounded queue that drops, and counts, what does not fit. Whatever is not a command from a
registered address (garbage, strangers, oversized or non-UTF-8 datagrams, ICMP errors that
surface as ``OSError``) is ignored and counted in :meth:`DatagramEndpoint.statistics`; nothing
a peer sends can stop the endpoint.

A registration lives while its address sends something at least every ``ttl`` seconds
(clients refresh with ``GREETING``); ``LEAVE`` ends it at once. Like trio's DTLS endpoint, the
socket is shared and per-peer state is bounded: at most ``max_registrations`` members.
"""

from __future__ import annotations

import dataclasses
import errno
import logging
import math
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import trio

from triochat.clock import now_display
from triochat.events import Dialect, Hello, Leave, Notice, Say
from triochat.room import Delivery, Member, NameTaken, Room, open_outbox
from triochat.server.addresses import PerAddressLimit
from triochat.server.session import SessionCounter
from triochat.text import InvalidName
from triochat.wire.datagrams import (
    MAX_DATAGRAM_BYTES,
    REGISTRATION_TTL,
    DatagramServerCodec,
    Farewell,
    Garbage,
    GarbageReason,
)

logger = logging.getLogger(__name__)

RECEIVE_SIZE = MAX_DATAGRAM_BYTES + 1
"""One byte more than we accept, so an oversized datagram shows as oversized, not cut."""

MAX_REGISTRATIONS = 4096
"""Most datagram members at once; greetings beyond it are refused."""

REPLY_QUEUE_LIMIT = 64
"""Replies to non-members (refused greetings) waiting to be sent; more are dropped."""

MAX_REPLY_BYTES = 64
"""Longest reply to an address that is not a member: a greeting can never amplify much."""

SEND_GRACE = 1.0
"""Seconds a removed member's sender gets to flush what was queued and say why it ends."""

MAX_DEFAULT_NAME_TRIES = 100
"""``udp-<port>``, ``udp-<port>-2``, ... up to this many tries before a greeting is refused."""

_FATAL_ERRNOS = frozenset({errno.EBADF, errno.ENOTSOCK})

Address = tuple[Any, ...]


class DatagramSocket(Protocol):
    """What the endpoint needs from a UDP socket (a ``trio.socket`` socket, or a test fake)."""

    def recvfrom(self, bufsize: int, /) -> Awaitable[tuple[bytes, Any]]: ...

    def sendto(self, data: bytes, address: Address, /) -> Awaitable[int]: ...


@dataclass
class DatagramStatistics:
    """Counters for monitoring and tests.

    Attributes:
        registered: datagram members right now.
        received: datagrams read from the socket.
        greetings: new registrations.
        refreshes: greetings from addresses already registered.
        messages: messages from members passed to the room.
        leaves: registrations ended by ``LEAVE``.
        expired: registrations that were silent for the TTL.
        evicted: members the room evicted (could not keep up, or shutdown).
        refused: greetings refused (name taken, endpoint full, room closing, per address).
        refused_per_ip: greetings refused because their address had too many members.
        unregistered: commands other than greetings from addresses that are not members.
        too_long, not_utf8, empty, unknown: ignored datagrams, by reason.
        socket_errors: ``OSError`` from ``recvfrom``/``sendto`` (ICMP errors and the like).
        sent: datagrams sent.
        replies_dropped: replies to non-members dropped because the reply queue was full.
    """

    registered: int = 0
    received: int = 0
    greetings: int = 0
    refreshes: int = 0
    messages: int = 0
    leaves: int = 0
    expired: int = 0
    evicted: int = 0
    refused: int = 0
    refused_per_ip: int = 0
    unregistered: int = 0
    too_long: int = 0
    not_utf8: int = 0
    empty: int = 0
    unknown: int = 0
    socket_errors: int = 0
    sent: int = 0
    replies_dropped: int = 0

    @property
    def ignored(self) -> int:
        """Datagrams that were not acted upon at all."""
        return self.unregistered + self.too_long + self.not_utf8 + self.empty + self.unknown


_GARBAGE_COUNTERS = {
    GarbageReason.TOO_LONG: "too_long",
    GarbageReason.NOT_UTF8: "not_utf8",
    GarbageReason.EMPTY: "empty",
    GarbageReason.UNKNOWN: "unknown",
}


class _Registration:
    """One registered address: its member, its outbox, and its sender task's scope."""

    def __init__(
        self, sock: DatagramSocket, address: Address, last_heard: float, outbox_limit: int
    ) -> None:
        self.socket = sock
        self.address = address
        self.last_heard = last_heard
        self.outbox_send, self.outbox_receive = open_outbox(outbox_limit)
        self.send_scope = trio.CancelScope()
        self.farewell: str | None = None
        self.removed = False
        self.member: Member | None = None
        self.counted_ip: str | None = None  # its place in the per-address count, if any


class DatagramEndpoint:
    """Serves the datagram dialect on one or more bound UDP sockets (IPv4 and IPv6).

    Args:
        room: the room datagram members join.
        sockets: bound UDP sockets; the endpoint reads and writes them but does not close them.
        counter: counts each member's sender task, so server shutdown can wait for the last
            notices to go out.
        ttl: seconds a registration lives without a datagram from its address.
        max_registrations: most datagram members at once.
    """

    def __init__(
        self,
        room: Room,
        sockets: Sequence[DatagramSocket],
        *,
        counter: SessionCounter | None = None,
        ttl: float = REGISTRATION_TTL,
        max_registrations: int = MAX_REGISTRATIONS,
        per_address: PerAddressLimit | None = None,
    ) -> None:
        if not sockets:
            raise ValueError("a datagram endpoint needs at least one socket")
        self._room = room
        self._sockets = list(sockets)
        self._counter = counter or SessionCounter()
        self._ttl = ttl
        self._max_registrations = max_registrations
        # Datagram members count against the same per-address limit as TCP connections
        # (counted apart): one address must not take every datagram place either.
        self._per_address = per_address if per_address is not None else PerAddressLimit(0)
        self._codec = DatagramServerCodec()
        # Insertion order is refresh order: the first registration is always the next to expire.
        self._registrations: dict[Address, _Registration] = {}
        self._replies_send, self._replies_receive = trio.open_memory_channel[
            tuple[DatagramSocket, Address, bytes]
        ](REPLY_QUEUE_LIMIT)
        self._stats = DatagramStatistics()
        self._nursery: trio.Nursery | None = None

    def statistics(self) -> DatagramStatistics:
        """A snapshot of the counters."""
        return dataclasses.replace(self._stats, registered=len(self._registrations))

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Serve until cancelled; ``task_status.started()`` once datagrams are being read.

        Every registration left when it is cancelled leaves the room.
        """
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                nursery.start_soon(self._expire_loop)
                nursery.start_soon(self._reply_loop)
                for sock in self._sockets:
                    nursery.start_soon(self._receive_loop, sock)
                task_status.started()
        finally:
            self._nursery = None
            for registration in list(self._registrations.values()):
                self._remove(registration, None)

    # --- receiving ---------------------------------------------------------------------------

    async def _receive_loop(self, sock: DatagramSocket) -> None:
        while True:
            try:
                data, address = await sock.recvfrom(RECEIVE_SIZE)
            except OSError as error:
                if error.errno in _FATAL_ERRNOS:
                    raise
                # An ICMP error about an earlier datagram (e.g. ConnectionRefusedError): the
                # peer it concerns simply stops hearing from us; registrations expire.
                self._stats.socket_errors += 1
                logger.debug("recvfrom: %r", error)
                await trio.lowlevel.checkpoint()
                continue
            self.datagram_received(sock, data, tuple(address))

    def datagram_received(self, sock: DatagramSocket, data: bytes, address: Address) -> None:
        """Act on one datagram from ``address`` (synchronous: nothing here waits)."""
        self._stats.received += 1
        command = self._codec.receive_datagram(data)
        registration = self._registrations.get(address)
        if registration is not None:
            self._refresh(registration)
        if isinstance(command, Garbage):
            counter = _GARBAGE_COUNTERS[command.reason]
            setattr(self._stats, counter, getattr(self._stats, counter) + 1)
            return
        if isinstance(command, Hello):
            if registration is None:
                self._register(sock, address, command.name)
            else:
                self._stats.refreshes += 1
            return
        if registration is None or registration.member is None:
            self._stats.unregistered += 1
            return
        if isinstance(command, Say):
            self._stats.messages += 1
            registration.member.last_active = trio.current_time()
            self._room.broadcast(registration.member, command.text, received_at=now_display())
        elif isinstance(command, Leave):
            self._stats.leaves += 1
            self._remove(registration, None)

    def _refresh(self, registration: _Registration) -> None:
        registration.last_heard = trio.current_time()
        # Move it to the end: the dict stays ordered by the time each address was last heard.
        del self._registrations[registration.address]
        self._registrations[registration.address] = registration

    # --- registration ------------------------------------------------------------------------

    def _register(self, sock: DatagramSocket, address: Address, requested: str) -> None:
        if self._nursery is None:
            return
        if len(self._registrations) >= self._max_registrations:
            self._refuse(sock, address, "Too many datagram members, try later")
            return
        ip, port = str(address[0]), int(address[1])
        try:
            counted = self._per_address.acquire(ip)
        except LookupError:
            self._stats.refused_per_ip += 1
            limit = self._per_address.limit
            self._refuse(sock, address, f"Too many members from your address (limit {limit})")
            return
        name = requested or self._default_name(port)
        if name is None:
            self._per_address.release(counted)
            self._refuse(sock, address, "No free default name, greet with one")
            return
        registration = _Registration(sock, address, trio.current_time(), self._room.outbox_limit)

        def evicted(reason: str) -> None:
            self._stats.evicted += 1
            self._remove(registration, reason)

        member = Member(
            name=name,
            ip=ip,
            port=port,
            outbox=registration.outbox_send,
            on_evict=evicted,
            receives_own=True,
            dialect=Dialect.DATAGRAM,
            last_active=trio.current_time(),
        )
        try:
            self._room.join(member)
        except (NameTaken, InvalidName) as error:
            registration.outbox_send.close()
            registration.outbox_receive.close()
            self._per_address.release(counted)
            self._refuse(sock, address, str(error))
            return
        registration.member = member
        registration.counted_ip = counted
        self._registrations[address] = registration
        self._stats.greetings += 1
        self._counter.opened()
        self._nursery.start_soon(self._send_loop, registration)

    def _default_name(self, port: int) -> str | None:
        base = f"udp-{port}"
        for attempt in range(1, MAX_DEFAULT_NAME_TRIES + 1):
            candidate = base if attempt == 1 else f"{base}-{attempt}"
            if self._room.find(candidate) is None:
                return candidate
        return None

    def _refuse(self, sock: DatagramSocket, address: Address, reason: str) -> None:
        """One short ``ERROR`` reply, if the reply queue has room; never more."""
        self._stats.refused += 1
        data = self._codec.send(Notice(reason, is_error=True))[:MAX_REPLY_BYTES]
        try:
            self._replies_send.send_nowait((sock, address, data))
        except trio.WouldBlock:
            self._stats.replies_dropped += 1

    def _remove(self, registration: _Registration, farewell: str | None) -> None:
        """End a registration now: leave the room, let the sender flush within a grace.

        ``farewell`` is the reason sent last as ``BYE <reason>`` (none after ``LEAVE``).
        Synchronous and idempotent, so the room may call it (eviction) from inside a broadcast.
        """
        if registration.removed:
            return
        registration.removed = True
        registration.farewell = farewell
        if self._registrations.get(registration.address) is registration:
            del self._registrations[registration.address]
        if registration.member is not None:
            self._room.leave(registration.member)
        self._per_address.release(registration.counted_ip)
        registration.counted_ip = None
        registration.outbox_send.close()
        if registration.send_scope.deadline == math.inf:
            registration.send_scope.deadline = trio.current_time() + SEND_GRACE

    # --- sending -----------------------------------------------------------------------------

    async def _send_loop(self, registration: _Registration) -> None:
        """Drain one member's outbox, one datagram per delivery, in the room's order."""
        try:
            with registration.send_scope, registration.outbox_receive:
                async for delivery in registration.outbox_receive:
                    await self._send(registration.socket, registration.address, delivery)
                if registration.farewell is not None:
                    await self._send_bytes(
                        registration.socket,
                        registration.address,
                        self._codec.send(Farewell(registration.farewell)),
                    )
        finally:
            self._counter.closed()
            self._remove(registration, None)

    async def _send(self, sock: DatagramSocket, address: Address, delivery: Delivery) -> None:
        await self._send_bytes(sock, address, delivery.encode_for(self._codec))

    async def _send_bytes(self, sock: DatagramSocket, address: Address, data: bytes) -> None:
        if not data:
            return
        try:
            await sock.sendto(data, address)
        except OSError as error:
            if error.errno in _FATAL_ERRNOS:
                raise
            self._stats.socket_errors += 1
            logger.debug("sendto %s: %r", address, error)
        else:
            self._stats.sent += 1

    async def _reply_loop(self) -> None:
        async for sock, address, data in self._replies_receive:
            await self._send_bytes(sock, address, data)

    # --- expiry ------------------------------------------------------------------------------

    async def _expire_loop(self) -> None:
        while True:
            now = trio.current_time()
            for registration in list(self._registrations.values()):
                if registration.last_heard + self._ttl > now:
                    break
                self._stats.expired += 1
                self._remove(registration, "Registration expired")
            first = next(iter(self._registrations.values()), None)
            await trio.sleep_until(first.last_heard + self._ttl if first else now + self._ttl)


__all__ = [
    "MAX_REGISTRATIONS",
    "DatagramEndpoint",
    "DatagramSocket",
    "DatagramStatistics",
]
