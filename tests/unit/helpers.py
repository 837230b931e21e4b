"""Fakes and small helpers shared by the unit tests: no sockets, no real waiting.

- :class:`Recorder`: a room observer that keeps what it saw.
- :func:`make_member`: a room member over a real outbox.
- :class:`Peer`: the client end of an in-memory connection, read line by line.
- :class:`Server` / :func:`running`: chat sessions for one room in one nursery.
- :class:`FakeNetwork`, :class:`FakeSocket`, :class:`DatagramPeer`: an in-memory datagram
  network with enough of a UDP socket for the server's endpoint and the UDP client.
- :class:`Typist`, :func:`client_start`: a client's standard input and its connection.
- :class:`Err`, :func:`split`: for codec tests.
"""

from __future__ import annotations

import itertools
import json
import math
import socket
from collections import defaultdict
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import trio
import trio.lowlevel
import trio.testing

from triochat.client.early import EarlyStart
from triochat.events import ChatMessage, PrivateMessage, ServerEvent
from triochat.room import OUTBOX_LIMIT, Delivery, Member, Room, open_outbox
from triochat.server.config import ServerConfig
from triochat.server.session import ChatSession
from triochat.wire.json_lines import JsonServerCodec
from triochat.wire.lines import LineServerCodec

NOW = "2024-03-21 10:30:45"
"""The receive time the tests' room is told (the room reads no clock)."""

GUARD = 60.0
"""Deadline for any single wait: generous, and in virtual time under the autojump clock."""


# --- the room ---------------------------------------------------------------------------------


class Recorder:
    """A room observer that keeps what it saw: the console's lines in short, the order in
    which messages were accepted, and events to wait on."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.accepted: list[tuple[str, str]] = []
        self.display_times: list[str] = []
        self.first_message_from: dict[str, trio.Event] = defaultdict(trio.Event)
        self.joins = 0
        self._changed = trio.Event()

    def member_joined(self, member: Member) -> None:
        self.lines.append(f"joined {member.name} {member.ip}:{member.port} {member.client_id}")
        self.joins += 1
        self._notify()

    def member_left(self, member: Member) -> None:
        self.lines.append(f"left {member.name}")
        self._notify()

    def message_accepted(self, message: ChatMessage, sender: Member, recipients: list[str]) -> None:
        self.lines.append(f"{sender.name}: {message.text} -> {','.join(recipients)}")
        self.accepted.append((sender.name, message.text))
        self.display_times.append(message.display_time)
        self.first_message_from[sender.name].set()
        self._notify()

    def private_sent(self, message: PrivateMessage) -> None:
        self.lines.append(f"private {message.sender} -> {message.recipient}: {message.text}")
        self._notify()

    def member_renamed(self, member: Member, old: str) -> None:
        self.lines.append(f"renamed {old} -> {member.name}")
        self._notify()

    def _notify(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    async def wait_for_joins(self, count: int) -> None:
        """Until ``count`` members have joined, all told."""
        while self.joins < count:
            await self._changed.wait()


def make_member(
    name: str,
    evictions: list[str] | None = None,
    *,
    ip: str = "127.0.0.1",
    port: int = 1000,
) -> tuple[Member, trio.MemoryReceiveChannel[Delivery]]:
    """A member with a real outbox; its eviction reasons go to ``evictions``."""
    send, receive = open_outbox()
    reasons = evictions if evictions is not None else []
    member = Member(name=name, ip=ip, port=port, outbox=send, on_evict=reasons.append)
    return member, receive


def delivered(box: trio.MemoryReceiveChannel[Delivery]) -> list[ServerEvent]:
    """Every event waiting in a member's outbox, taken out."""
    seen: list[ServerEvent] = []
    while True:
        try:
            seen.append(box.receive_nowait().event)
        except trio.WouldBlock:
            return seen


# --- stream connections -----------------------------------------------------------------------


class Peer:
    """The client's end of a connection, reading whole lines."""

    def __init__(self, stream: trio.abc.HalfCloseableStream, name: str = "?") -> None:
        self.stream = stream
        self.name = name
        self._buffer = bytearray()
        self.eof = False

    async def send(self, data: bytes) -> None:
        await self.stream.send_all(data)

    async def line(self) -> str:
        with trio.fail_after(GUARD):
            while (newline := self._buffer.find(b"\n")) < 0:
                data = await self.stream.receive_some(65536)
                if not data:
                    self.eof = True
                    raise EOFError(bytes(self._buffer))
                self._buffer += data
        line = bytes(self._buffer[:newline]).decode()
        del self._buffer[: newline + 1]
        return line

    async def receive(self) -> bytes:
        """What one read brings (an unframed peer gets one message per read)."""
        assert not self._buffer
        return bytes(await self.stream.receive_some(65536))

    async def rest(self) -> bytes:
        """Everything until the server closes the connection."""
        data = bytes(self._buffer)
        while chunk := await self.stream.receive_some(65536):
            data += chunk
        del self._buffer[:]
        return data

    async def lines_until_eof(self, most: int) -> list[str]:
        """Every line until the server closes (at most ``most``); a reset counts as a close.

        An unterminated tail counts as a last line: what an unframed peer gets.
        """
        lines: list[str] = []
        for _ in range(most + 1):
            try:
                lines.append(await self.line())
            except (EOFError, trio.BrokenResourceError):
                if self._buffer:
                    lines.append(bytes(self._buffer).decode())
                    del self._buffer[:]
                return lines
        raise AssertionError(f"{self.name}: more than {most} lines: {lines[-3:]}")

    async def json(self) -> dict[str, object]:
        obj = json.loads(await self.line())
        assert isinstance(obj, dict)
        return obj

    async def closed(self) -> bool:
        """True when the next thing from the server is the end of the stream."""
        with trio.fail_after(GUARD):
            return (await self.stream.receive_some(65536)) == b"" and not self._buffer


class Server:
    """Chat sessions for one room, in one nursery."""

    def __init__(self, room: Room, nursery: trio.Nursery, limits: ServerConfig) -> None:
        self.room = room
        self.nursery = nursery
        self.limits = limits
        self.port = 40000

    def serve(
        self,
        stream: trio.abc.HalfCloseableStream,
        codec: LineServerCodec | JsonServerCodec | None = None,
    ) -> None:
        self.port += 1
        session = ChatSession(stream, codec, self.room, ("127.0.0.1", self.port), self.limits)
        self.nursery.start_soon(session.run)

    def connect(self, name: str = "?") -> Peer:
        client, server = trio.testing.memory_stream_pair()
        self.serve(server)
        return Peer(client, name)

    async def join(self, name: str) -> Peer:
        """A line member called ``name``, in the room when this returns."""
        peer = self.connect(name)
        await peer.send(f"{name}\n".encode())
        await self.wait_until(lambda: name in self.room.names())
        return peer

    async def join_json(self, name: str) -> Peer:
        peer = self.connect(name)
        await peer.send(
            json.dumps({"type": "nickname", "nickname": name, "clientID": "1"}).encode()
        )
        assert (await peer.json())["type"] == "welcome"
        return peer

    async def wait_until(self, condition: object) -> None:
        """Let the sessions run until ``condition()`` holds.

        Every task runs until it blocks; if the condition still does not hold, only a
        deadline can change anything, so the test must run on the autojump clock, where
        letting time pass costs nothing (bounded by :data:`GUARD`, in virtual time).

        Raises:
            AssertionError: the condition needs time to pass and the clock is a real one.
        """
        assert callable(condition)
        with trio.fail_after(GUARD):
            while True:
                await trio.testing.wait_all_tasks_blocked()
                if condition():
                    return
                assert isinstance(trio.lowlevel.current_clock(), trio.testing.MockClock), (
                    "every task is blocked and the condition does not hold yet: "
                    "it needs time to pass, so use the autojump_clock fixture"
                )
                await trio.sleep(0.01)  # virtual: autojumps to the next deadline or this one

    async def assert_room_works(self, members: list[Peer], label: str) -> None:
        """A newcomer joins and speaks; every member hears it next; the newcomer leaves."""
        name = f"newcomer{self.port}"
        newcomer = await self.join(name)
        await newcomer.send(f"hello after {label}\n".encode())
        for member in members:
            assert await member.line() == f"{name}: hello after {label}", member.name
        await newcomer.send(b"/quit\n")
        assert await newcomer.closed()
        await self.wait_until(lambda: name not in self.room.names())


@asynccontextmanager
async def running(room: Room | None = None, *, limits: ServerConfig) -> AsyncIterator[Server]:
    """A :class:`Server`; on the way out the room closes and every session is cancelled."""
    async with trio.open_nursery() as nursery:
        server = Server(room if room is not None else Room(), nursery, limits)
        yield server
        server.room.close("test over")
        nursery.cancel_scope.cancel()


# --- datagrams --------------------------------------------------------------------------------

Address = tuple[Any, ...]
SERVER = ("10.0.0.1", 5000)
"""The server's address on the fake network."""
INBOX_LIMIT = 4 * OUTBOX_LIMIT
"""Datagrams a fake socket holds unread before it drops more (the kernel's receive buffer)."""


class FakeNetwork:
    """Datagram sockets by address; a datagram to an unknown address is lost, as on a LAN."""

    def __init__(self) -> None:
        self.sockets: dict[Address, FakeSocket] = {}
        self.lost = 0
        self.send_errors: dict[Address, OSError] = {}
        self.blocked: dict[Address, trio.Event] = {}

    def socket(self, address: Address, *, peer: Address | None = None) -> FakeSocket:
        """A socket bound to ``address`` (connected to ``peer``, if given)."""
        sock = FakeSocket(self, address, peer)
        self.sockets[address] = sock
        return sock


class FakeSocket:
    """Enough of a UDP socket for the endpoint and the client: ``recvfrom`` and ``sendto``,
    and for a connected one ``recv``, ``send`` and ``getsockname``, all bounded."""

    def __init__(self, network: FakeNetwork, address: Address, peer: Address | None) -> None:
        self.network = network
        self.address = address
        self.peer = peer
        self._inbox_send, self._inbox = trio.open_memory_channel[tuple[bytes, Address] | OSError](
            INBOX_LIMIT
        )

    def getsockname(self) -> Address:
        return self.address

    def deliver(self, item: tuple[bytes, Address] | OSError) -> None:
        try:
            self._inbox_send.send_nowait(item)
        except trio.WouldBlock:
            self.network.lost += 1  # a full receive buffer drops, as the kernel does

    async def recvfrom(self, bufsize: int, /) -> tuple[bytes, Any]:
        while True:
            item = await self._inbox.receive()
            if isinstance(item, OSError):
                raise item
            data, source = item
            if self.peer is None or source == self.peer:  # a connected socket filters
                return data[:bufsize], source

    async def recv(self, bufsize: int, /) -> bytes:
        return (await self.recvfrom(bufsize))[0]

    async def sendto(self, data: bytes, address: Address, /) -> int:
        await trio.lowlevel.checkpoint()
        gate = self.network.blocked.get(address)
        if gate is not None:
            await gate.wait()
        error = self.network.send_errors.get(address)
        if error is not None:
            raise error
        target = self.network.sockets.get(address)
        if target is None:
            self.network.lost += 1
        else:
            target.deliver((bytes(data), self.address))
        return len(data)

    async def send(self, data: bytes, /) -> int:
        assert self.peer is not None, "send() on a socket that is not connected"
        return await self.sendto(data, self.peer)

    def received_nowait(self) -> list[str]:
        """Every datagram queued for this socket, decoded."""
        out: list[str] = []
        while True:
            try:
                item = self._inbox.receive_nowait()
            except trio.WouldBlock:
                return out
            assert not isinstance(item, OSError)
            out.append(item[0].decode())


class DatagramPeer:
    """A UDP client on the fake network, talking to :data:`SERVER`."""

    def __init__(self, network: FakeNetwork, port: int, ip: str = "10.0.0.2") -> None:
        self.socket = network.socket((ip, port))
        self.port = port

    async def send(self, data: bytes) -> None:
        await self.socket.sendto(data, SERVER)

    async def received(self) -> list[str]:
        """Everything the server sent us once every task is idle."""
        await trio.testing.wait_all_tasks_blocked()
        return self.socket.received_nowait()


# --- clients --------------------------------------------------------------------------------


class Typist:
    """Stands in for a client's ``StdinLines``: the test types lines when it chooses, and
    :meth:`end` is the end of input. Install it with ``monkeypatch`` in a client module."""

    def __init__(self, *lines: str) -> None:
        self._send, self._receive = trio.open_memory_channel[str](math.inf)
        self.type(*lines)

    def __call__(self, *args: object, **kwargs: object) -> Typist:
        """What the client's ``StdinLines(...)`` gives: this typist."""
        return self

    def type(self, *lines: str) -> None:
        for line in lines:
            self._send.send_nowait(line)

    def end(self) -> None:
        self._send.close()

    async def readline(self) -> str | None:
        try:
            return await self._receive.receive()
        except trio.EndOfChannel:
            return None


def client_start(**fields: Any) -> tuple[EarlyStart, trio.SocketStream]:
    """What a client's launcher hands over (a connected socket), and the server's end of it.

    A ``socketpair`` is a real socket, as the clients need, that never leaves the process: data
    written is readable at once, so the autojump clock stays deterministic.
    """
    ours, theirs = socket.socketpair()
    return EarlyStart(ours, **fields), trio.SocketStream(trio.socket.from_stdlib_socket(theirs))


def json_line(**fields: Any) -> bytes:
    """One object as the server writes it: a line."""
    return json.dumps(fields).encode() + b"\n"


async def next_object(stream: trio.abc.ReceiveStream) -> dict[str, Any]:
    """One write from a JSON client (each object goes alone): exactly one object."""
    data = await stream.receive_some(65536)
    assert data, "the client closed the connection"
    decoded = json.loads(data)
    assert isinstance(decoded, dict)
    return decoded


# --- codecs -----------------------------------------------------------------------------------


class Err:
    """A recorded RemoteProtocolError, comparable by its ``recoverable`` flag."""

    def __init__(self, recoverable: bool) -> None:
        self.recoverable = recoverable

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Err) and other.recoverable == self.recoverable

    def __hash__(self) -> int:
        return hash(self.recoverable)

    def __repr__(self) -> str:
        return f"Err(recoverable={self.recoverable})"


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    """``data`` cut at every point in ``cuts`` (taken modulo ``len(data) + 1``)."""
    points = sorted({0, len(data), *(cut % (len(data) + 1) for cut in cuts)})
    return [data[start:stop] for start, stop in itertools.pairwise(points)]
