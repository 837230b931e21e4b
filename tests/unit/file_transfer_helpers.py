"""Fakes for the file-transfer tests: an agent's user, replies on a file connection, and a
:class:`World` of a room, a :class:`FileRelay` and real agents joined by in-memory streams.

Agent tests talk to :class:`FileAgent.handle` directly, playing the relay. Relay tests wire a
:class:`FileRelay` to two (or three) real agents through a fake ``connect`` that hands out one
end of a ``memory_stream_pair`` and lets the member's agent serve the other; announcements
travel through the members' real outboxes.
"""

from __future__ import annotations

import json
import os
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trio
import trio.testing
import xxhash

from triochat.client.file_agent import FileAgent
from triochat.events import FileAnnouncement, FileFailed, FileRequest, ServerEvent
from triochat.room import Delivery, Member, Room, open_outbox
from triochat.server.relay import FileRelay
from triochat.wire.chunks import (
    ChunkDecoder,
    DataChunk,
    encode_data,
    encode_end,
)
from triochat.wire.common import NEED_DATA

TOKEN = "0123456789abcdef0123456789abcdef"
GUARD = 30.0
"""Seconds any single test may take before it counts as hung (a healthy run needs little)."""


class Reports:
    """The lines an agent reports to its user, and a way to wait for them."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self._changed = trio.Event()

    def __call__(self, line: str) -> None:
        self.lines.append(line)
        self._changed.set()
        self._changed = trio.Event()

    async def wait_for(self, count: int) -> list[str]:
        while len(self.lines) < count:
            await self._changed.wait()
        return self.lines


async def read_to_end(stream: trio.abc.ReceiveStream) -> bytes:
    """Everything until the other side closes."""
    data = bytearray()
    while chunk := await stream.receive_some():
        data += chunk
    return bytes(data)


@dataclass
class Reply:
    """What a file connection sent back: a header, then (for a fetch) frames."""

    header: dict[str, Any] | None
    rest: bytes

    def decoded(self) -> tuple[bytes, list[Any]]:
        """The data and the events of the frames after the header."""
        decoder = ChunkDecoder()
        decoder.receive_data(self.rest)
        events: list[Any] = []
        while (event := decoder.next_event()) is not NEED_DATA:
            events.append(event)
        decoder.end_of_stream()
        data = b"".join(bytes(e.payload) for e in events if isinstance(e, DataChunk))
        return data, events


def header_line(fields: dict[str, Any]) -> bytes:
    """A handshake line as the wire has it, written by hand: these tests play the relay and
    check the agent's bytes, not the codec's view of them."""
    return json.dumps(fields).encode() + b"\n"


def parse_reply(raw: bytes) -> Reply:
    line, newline, rest = raw.partition(b"\n")
    if not newline:
        return Reply(None, raw)
    return Reply(json.loads(line), rest)


def frames_of(data: bytes, chunk: int = 1000) -> list[bytes]:
    """``data`` as data frames of ``chunk`` bytes."""
    return [encode_data(data[i : i + chunk]) for i in range(0, len(data), chunk)]


def end_of(data: bytes) -> bytes:
    return encode_end(len(data), xxhash.xxh3_128_digest(data))


def delivery(data: bytes, token: str = TOKEN, chunk: int = 1000) -> bytes:
    """What the relay sends a requester: header, data frames, end frame."""
    header = header_line({"token": token, "size": len(data)})
    return header + b"".join(frames_of(data, chunk)) + end_of(data)


def listing(directory: Path) -> set[str]:
    return set(os.listdir(directory))


def temp_files(directory: Path) -> list[str]:
    return [name for name in os.listdir(directory) if name.endswith(".part")]


@contextmanager
def umask(mask: int) -> Iterator[None]:
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


async def fetch(agent: FileAgent, token: str = TOKEN) -> Reply:
    """Connect to the agent as the relay does to an owner; everything it sends back."""
    ours, theirs = trio.testing.memory_stream_pair()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(agent.handle, theirs)
        await ours.send_all(header_line({"token": token}))
        raw = await read_to_end(ours)
    return parse_reply(raw)


class Observer:
    """Records how transfers end, like the server console."""

    def __init__(self) -> None:
        self.finished: list[tuple[str, str, str, int]] = []
        self.failed: list[tuple[str, str, str, str]] = []
        self._changed = trio.Event()

    def transfer_finished(self, filename: str, owner: str, requester: str, size: int) -> None:
        self.finished.append((filename, owner, requester, size))
        self._notify()

    def transfer_failed(self, filename: str, owner: str, requester: str, reason: str) -> None:
        self.failed.append((filename, owner, requester, reason))
        self._notify()

    def _notify(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    async def wait_for(self, count: int) -> None:
        while len(self.finished) + len(self.failed) < count:
            await self._changed.wait()


@dataclass
class FileMember:
    """A member of the room with its own file agent and share directory."""

    member: Member
    agent: FileAgent
    share: Path
    inbox: trio.MemoryReceiveChannel[Delivery]
    reports: Reports
    events: list[ServerEvent] = field(default_factory=list)

    def told(self, kind: type) -> list[Any]:
        return [event for event in self.events if isinstance(event, kind)]


StreamFilter = Callable[[trio.abc.Stream], trio.abc.Stream]


class World:
    """A room, a relay with a fake ``connect``, and the members' agents behind it."""

    def __init__(
        self,
        nursery: trio.Nursery,
        root: Path,
        *,
        stall_timeout: float = 30.0,
        max_file_bytes: int = 1 << 40,
    ) -> None:
        self.nursery = nursery
        self.root = root
        self.room = Room()
        self.observer = Observer()
        self.relay = FileRelay(
            self.room,
            self.observer,
            connect=self.connect,
            stall_timeout=stall_timeout,
            max_file_bytes=max_file_bytes,
        )
        self.by_port: dict[int, FileMember] = {}
        self.dials: list[tuple[str, int]] = []
        self.filters: dict[int, StreamFilter] = {}
        self.refuse: set[int] = set()
        self.unserved: set[int] = set()
        self.hold: trio.Event | None = None
        self.evictions: list[str] = []
        self._kept: list[trio.abc.Stream] = []
        self.handlers = 0
        self._handler_done = trio.Event()

    async def start(self) -> None:
        await self.nursery.start(self.relay.serve)

    def add(self, name: str, file_port: int | None, *, pump: bool = True) -> FileMember:
        share = self.root / name
        share.mkdir()
        send, receive = open_outbox()
        member = Member(
            name=name,
            ip="127.0.0.1",
            port=40000 + len(self.room),
            outbox=send,
            on_evict=self.evictions.append,
            client_id="menu",
            file_port=file_port,
        )
        self.room.join(member)
        reports = Reports()
        peer = FileMember(member, FileAgent(share, reports), share, receive, reports)
        if file_port is not None:
            self.by_port[file_port] = peer
        if pump:
            self.nursery.start_soon(self._pump, peer)
        return peer

    async def _pump(self, peer: FileMember) -> None:
        """The member's chat connection: announcements go to its agent, like the menu client."""
        async for delivery in peer.inbox:
            event = delivery.event
            peer.events.append(event)
            if isinstance(event, FileAnnouncement):
                peer.agent.announce(event)
            elif isinstance(event, FileFailed):
                peer.agent.transfer_failed(event)

    async def connect(self, ip: str, port: int) -> trio.abc.Stream:
        self.dials.append((ip, port))
        await trio.lowlevel.checkpoint()
        if self.hold is not None:
            await self.hold.wait()
        if port in self.refuse:
            raise OSError("connection refused")
        ours, theirs = trio.testing.memory_stream_pair()
        if port in self.unserved:
            self._kept.append(theirs)  # open, but nobody answers: a hung client
            return ours
        served: trio.abc.Stream = theirs
        if port in self.filters:
            served = self.filters[port](theirs)
        self.nursery.start_soon(self._handle, self.by_port[port].agent, served)
        return ours

    async def _handle(self, agent: FileAgent, stream: trio.abc.Stream) -> None:
        self.handlers += 1
        try:
            await agent.handle(stream)
        finally:
            self.handlers -= 1
            self._handler_done.set()
            self._handler_done = trio.Event()

    async def agents_idle(self) -> None:
        """Wait until every file connection an agent was serving has ended."""
        while self.handlers:
            await self._handler_done.wait()

    def request(self, requester: FileMember, owner: str, filename: str) -> None:
        self.relay.request(requester.member, FileRequest(owner, filename))


RunWorld = Callable[[World], Awaitable[None]]


async def in_world(
    tmp_path: Path, body: RunWorld, *, stall_timeout: float = 30.0, max_file_bytes: int = 1 << 40
) -> None:
    with trio.fail_after(GUARD):
        async with trio.open_nursery() as nursery:
            world = World(
                nursery, tmp_path, stall_timeout=stall_timeout, max_file_bytes=max_file_bytes
            )
            await world.start()
            await body(world)
            nursery.cancel_scope.cancel()
