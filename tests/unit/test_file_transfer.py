"""File agent and file relay over in-memory streams (SPEC §6): no sockets, no real waiting.

Agent tests talk to :class:`FileAgent.handle` directly, playing the relay. Relay tests wire a
:class:`FileRelay` to two (or three) real agents through a fake ``connect`` that hands out one
end of a ``memory_stream_pair`` and lets the member's agent serve the other; announcements
travel through the members' real outboxes.
"""

from __future__ import annotations

import errno
import hashlib
import io
import json
import os
import random
import stat
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing

from triochat.client.file_agent import ANNOUNCE_WAIT, HEADER_TIMEOUT, FileAgent
from triochat.events import FileAnnouncement, FileFailed, FileRequest, ServerEvent
from triochat.room import Delivery, Member, Room, open_outbox
from triochat.server.relay import MAX_TRANSFERS, FileRelay
from triochat.wire.chunks import (
    CHUNK_SIZE,
    ChunkDecoder,
    DataChunk,
    EndOfFile,
    HeaderReader,
    SenderFailed,
    encode_data,
    encode_end,
    encode_error,
    encode_header,
)
from triochat.wire.common import NEED_DATA

TOKEN = "0123456789abcdef0123456789abcdef"
GUARD = 30.0
"""Seconds any single test may take before it counts as hung (a healthy run needs little)."""

# --- helpers ----------------------------------------------------------------------------------


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


def parse_reply(raw: bytes) -> Reply:
    reader = HeaderReader()
    reader.receive_data(raw)
    header = reader.next_header()
    if header is NEED_DATA:
        return Reply(None, raw)
    return Reply(header, reader.take_rest())


def frames_of(data: bytes, chunk: int = 1000) -> list[bytes]:
    """``data`` as data frames of ``chunk`` bytes."""
    return [encode_data(data[i : i + chunk]) for i in range(0, len(data), chunk)]


def end_of(data: bytes) -> bytes:
    return encode_end(len(data), hashlib.sha256(data).digest())


def delivery(data: bytes, token: str = TOKEN, chunk: int = 1000) -> bytes:
    """What the relay sends a requester: header, data frames, end frame."""
    header = encode_header({"token": token, "size": len(data)})
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
        await ours.send_all(encode_header({"token": token}))
        raw = await read_to_end(ours)
    return parse_reply(raw)


# --- FileAgent: who gets served ---------------------------------------------------------------


async def test_stranger_with_unknown_token_gets_nothing_after_announce_wait(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    (tmp_path / "a.txt").write_bytes(b"secret")
    reports = Reports()
    agent = FileAgent(tmp_path, reports, announce_wait=1.5)
    agent.announce("fetch", TOKEN, "a.txt", "bob")
    ours, theirs = trio.testing.memory_stream_pair()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(agent.handle, theirs)
        await ours.send_all(encode_header({"token": "deadbeef"}))
        start = trio.current_time()
        received = await read_to_end(ours)
        waited = trio.current_time() - start
    assert received == b""
    assert waited == pytest.approx(1.5)
    assert reports.lines == []
    # The stranger used nothing up: the real token is still served.
    reply = await fetch(agent)
    assert reply.header == {"status": "ok", "size": 6}
    assert reply.decoded()[0] == b"secret"


async def test_stranger_with_unknown_token_default_wait_gets_nothing(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    # Regression: with announce_wait == HEADER_TIMEOUT this raised UnboundLocalError in handle.
    agent = FileAgent(tmp_path, Reports())
    ours, theirs = trio.testing.memory_stream_pair()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(agent.handle, theirs)
        await ours.send_all(encode_header({"token": "deadbeef"}))
        start = trio.current_time()
        assert await read_to_end(ours) == b""
        assert trio.current_time() - start == pytest.approx(ANNOUNCE_WAIT)


async def test_silent_connection_is_closed_after_the_header_timeout(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    # Regression: this raised UnboundLocalError in handle, which ended the whole client.
    agent = FileAgent(tmp_path, Reports(), announce_wait=1.0)
    ours, theirs = trio.testing.memory_stream_pair()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(agent.handle, theirs)
        start = trio.current_time()
        assert await read_to_end(ours) == b""
        assert trio.current_time() - start == pytest.approx(HEADER_TIMEOUT)


@pytest.mark.parametrize(
    "first_line",
    [
        b"not json\n",
        b"[1, 2, 3]\n",
        b'{"token": 12345}\n',
        b'{"token": null}\n',
        b"{}\n",
        b"GET / HTTP/1.0\r\n\r\n",
        b"\xff" * 5000,
    ],
)
async def test_garbage_instead_of_a_header_gets_nothing(
    tmp_path: Path, first_line: bytes, autojump_clock: trio.testing.MockClock
) -> None:
    (tmp_path / "a.txt").write_bytes(b"secret")
    agent = FileAgent(tmp_path, Reports(), announce_wait=1.0)
    agent.announce("fetch", TOKEN, "a.txt", "bob")
    ours, theirs = trio.testing.memory_stream_pair()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(agent.handle, theirs)
        await ours.send_all(first_line)
        assert await read_to_end(ours) == b""


async def test_token_announced_after_the_connection_arrived_is_served(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    data = bytes(range(256)) * 40
    (tmp_path / "late.bin").write_bytes(data)
    agent = FileAgent(tmp_path, Reports())
    ours, theirs = trio.testing.memory_stream_pair()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(agent.handle, theirs)
        await ours.send_all(encode_header({"token": TOKEN}))
        await trio.sleep(ANNOUNCE_WAIT * 0.8)  # virtual time: the chat connection is slow
        agent.announce("fetch", TOKEN, "late.bin", "bob")
        raw = await read_to_end(ours)
    reply = parse_reply(raw)
    assert reply.header == {"status": "ok", "size": len(data)}
    got, events = reply.decoded()
    assert got == data
    assert isinstance(events[-1], EndOfFile)


async def test_a_token_serves_one_connection_only(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    (tmp_path / "a.txt").write_bytes(b"once")
    agent = FileAgent(tmp_path, Reports(), announce_wait=1.0)
    agent.announce("fetch", TOKEN, "a.txt", "bob")
    first = await fetch(agent)
    assert first.decoded()[0] == b"once"
    second = await fetch(agent)
    assert second.header is None
    assert second.rest == b""


async def test_fetch_serves_every_byte_value_in_frames(tmp_path: Path) -> None:
    data = bytes(range(256)) * 4096 + b"tail"  # 1 MiB and a bit: several frames
    (tmp_path / "all.bin").write_bytes(data)
    agent = FileAgent(tmp_path, Reports())
    agent.announce("fetch", TOKEN, "all.bin", "bob")
    reply = await fetch(agent)
    assert reply.header == {"status": "ok", "size": len(data)}
    got, events = reply.decoded()
    assert got == data
    assert len(events) > 2
    assert events[-1] == EndOfFile(len(data), hashlib.sha256(data).digest(), end_of(data))


async def test_fetch_of_an_empty_file(tmp_path: Path) -> None:
    (tmp_path / "empty").write_bytes(b"")
    agent = FileAgent(tmp_path, Reports())
    agent.announce("fetch", TOKEN, "empty", "bob")
    reply = await fetch(agent)
    assert reply.header == {"status": "ok", "size": 0}
    assert reply.rest == end_of(b"")


async def test_fetch_of_a_missing_file_gets_an_error_header(tmp_path: Path) -> None:
    agent = FileAgent(tmp_path, Reports())
    agent.announce("fetch", TOKEN, "missing.txt", "bob")
    reply = await fetch(agent)
    assert reply.header == {"status": "error", "message": "no such file"}
    assert reply.rest == b""


SECRET = b"OUTSIDE THE SHARE DIRECTORY"


@pytest.fixture
def share(tmp_path: Path) -> Path:
    """A share directory, with a secret file next to it and links pointing out of it."""
    share = tmp_path / "share"
    share.mkdir()
    (tmp_path / "x").write_bytes(SECRET)
    (tmp_path / "secret-dir").mkdir()
    (tmp_path / "secret-dir" / "y").write_bytes(SECRET)
    (share / "link-out").symlink_to(tmp_path / "x")
    (share / "link-relative").symlink_to(Path("..") / "x")
    (share / "dir-link").symlink_to(tmp_path / "secret-dir")
    (share / "subdir").mkdir()
    (share / "subdir" / "z").write_bytes(SECRET)
    (share / "link-into-subdir").symlink_to(share / "subdir" / "z")
    (share / "dangling").symlink_to(tmp_path / "nowhere")
    return share


@pytest.mark.parametrize(
    ("filename", "message"),
    [
        ("../x", "not a plain file name"),
        ("/etc/passwd", "not a plain file name"),
        ("..\\x", "not a plain file name"),
        ("subdir/z", "not a plain file name"),
        ("dir-link/y", "not a plain file name"),
        ("..", "not a plain file name"),
        (".", "not a plain file name"),
        ("", "not a plain file name"),
        ("link-out", "no such file"),
        ("link-relative", "no such file"),
        ("link-into-subdir", "no such file"),
        ("dangling", "no such file"),
        ("dir-link", "no such file"),
        ("subdir", "cannot read it"),
    ],
)
async def test_path_tricks_get_an_error_and_never_file_bytes(
    share: Path, filename: str, message: str
) -> None:
    agent = FileAgent(share, Reports())
    agent.announce("fetch", TOKEN, filename, "bob")
    ours, theirs = trio.testing.memory_stream_pair()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(agent.handle, theirs)
        await ours.send_all(encode_header({"token": TOKEN}))
        raw = await read_to_end(ours)
    assert SECRET not in raw
    assert b"root:" not in raw
    reply = parse_reply(raw)
    assert reply.header == {"status": "error", "message": message}
    assert reply.rest == b""


async def test_a_link_that_stays_inside_the_share_directory_is_served(share: Path) -> None:
    (share / "real.txt").write_bytes(b"inside")
    (share / "alias.txt").symlink_to("real.txt")
    agent = FileAgent(share, Reports())
    agent.announce("fetch", TOKEN, "alias.txt", "bob")
    reply = await fetch(agent)
    assert reply.header == {"status": "ok", "size": 6}
    assert reply.decoded()[0] == b"inside"


class FailingReads(io.FileIO):
    """A file whose reads fail (EIO) after the first one, like a disk going bad."""

    reads = 0

    def read(self, size: int | None = -1, /) -> bytes:
        self.reads += 1
        if self.reads > 1:
            raise OSError(errno.EIO, "Input/output error")
        return super().read(size)


async def test_read_error_mid_file_is_reported_with_an_error_frame(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "flaky.bin").write_bytes(os.urandom(3 * CHUNK_SIZE))

    async def open_failing(path: Path, mode: str) -> trio.abc.AsyncResource:
        return trio.wrap_file(FailingReads(path, "rb"))

    monkeypatch.setattr(trio, "open_file", open_failing)
    agent = FileAgent(tmp_path, Reports())
    agent.announce("fetch", TOKEN, "flaky.bin", "bob")
    reply = await fetch(agent)
    assert reply.header == {"status": "ok", "size": 3 * CHUNK_SIZE}
    decoder = ChunkDecoder()
    decoder.receive_data(reply.rest)
    events = []
    while (event := decoder.next_event()) is not NEED_DATA:  # no RemoteProtocolError
        events.append(event)
    assert isinstance(events[0], DataChunk)
    assert isinstance(events[-1], SenderFailed)


# --- FileAgent: receiving a delivery ----------------------------------------------------------


async def test_delivery_is_written_atomically_with_ordinary_permissions(tmp_path: Path) -> None:
    data = random.Random(1).randbytes(50_000)
    reports = Reports()
    with umask(0o027):
        agent = FileAgent(tmp_path, reports)
    agent.announce("deliver", TOKEN, "photo.bin", "alice")
    stream = delivery(data)
    cut = len(stream) // 2
    ours, theirs = trio.testing.memory_stream_pair()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(agent.handle, theirs)
        await ours.send_all(stream[:cut])
        await trio.testing.wait_all_tasks_blocked()
        # Half-way: the data goes to a hidden temporary file, never to the final name.
        assert "photo.bin" not in listing(tmp_path)
        (temp,) = temp_files(tmp_path)
        assert temp.startswith(".photo.bin.")
        await ours.send_all(stream[cut:])
        raw = await read_to_end(ours)
    assert parse_reply(raw) == Reply({"status": "ok", "size": len(data)}, b"")
    assert listing(tmp_path) == {"photo.bin"}
    assert (tmp_path / "photo.bin").read_bytes() == data
    assert stat.S_IMODE((tmp_path / "photo.bin").stat().st_mode) == 0o640
    assert reports.lines == [f"File photo.bin received from alice: {len(data)} bytes, verified"]


async def test_delivery_mode_follows_the_umask(tmp_path: Path) -> None:
    with umask(0o002):
        agent = FileAgent(tmp_path, Reports())
    agent.announce("deliver", TOKEN, "a.txt", "alice")
    ours, theirs = trio.testing.memory_stream_pair()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(agent.handle, theirs)
        await ours.send_all(delivery(b"hello"))
        await read_to_end(ours)
    assert stat.S_IMODE((tmp_path / "a.txt").stat().st_mode) == 0o664


def with_flipped_byte(stream: bytes, index: int) -> bytes:
    corrupt = bytearray(stream)
    corrupt[index] ^= 0x40
    return bytes(corrupt)


DATA = bytes(range(256)) * 20  # 5120 bytes: six frames of 1000 bytes
HEADER = encode_header({"token": TOKEN, "size": len(DATA)})
FRAMES = b"".join(frames_of(DATA))
WHOLE = HEADER + FRAMES + end_of(DATA)

BROKEN_DELIVERIES = {
    "cut mid-frame": (HEADER + FRAMES[:2500], "cut short"),
    "cut at a frame boundary": (HEADER + FRAMES[: 2 * 1009], "cut short"),
    "cut before the end frame": (HEADER + FRAMES, "cut short"),
    "cut inside the end frame": (HEADER + FRAMES + end_of(DATA)[:20], "cut short"),
    "flipped payload byte": (with_flipped_byte(WHOLE, len(HEADER) + 1009 + 100), "checksum"),
    "flipped crc byte": (with_flipped_byte(WHOLE, len(HEADER) + 1008), "checksum"),
    "wrong digest": (
        HEADER + FRAMES + encode_end(len(DATA), hashlib.sha256(b"other").digest()),
        "digest mismatch",
    ),
    "wrong size": (
        HEADER + FRAMES + encode_end(len(DATA) + 1, hashlib.sha256(DATA).digest()),
        "size mismatch",
    ),
    "sender gave up": (HEADER + FRAMES[:1009] + encode_error("the owner hung up"), "hung up"),
    "garbage frames": (HEADER + b"garbage" * 10, "unknown frame kind"),
}


@pytest.mark.parametrize("case", list(BROKEN_DELIVERIES))
async def test_broken_delivery_leaves_no_file_and_no_temp_file(tmp_path: Path, case: str) -> None:
    stream, reason = BROKEN_DELIVERIES[case]
    (tmp_path / "kept.txt").write_bytes(b"old contents")
    reports = Reports()
    agent = FileAgent(tmp_path, reports)
    agent.announce("deliver", TOKEN, "kept.txt", "alice")
    ours, theirs = trio.testing.memory_stream_pair()
    with trio.fail_after(GUARD):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(agent.handle, theirs)
            await ours.send_all(stream)
            await ours.send_eof()
            raw = await read_to_end(ours)
    reply = parse_reply(raw)
    assert reply.header is not None
    assert reply.header["status"] == "error"
    assert reason in reply.header["message"]
    # Nothing new, and the old file under that name is untouched.
    assert listing(tmp_path) == {"kept.txt"}
    assert (tmp_path / "kept.txt").read_bytes() == b"old contents"
    (line,) = reports.lines
    assert line.startswith("File kept.txt from alice failed: ")
    assert reason in line


@pytest.mark.parametrize("cut", [0, 10, len(HEADER) + 1, len(WHOLE) // 2, len(WHOLE) - 1])
async def test_delivery_cut_by_a_closed_connection_leaves_nothing(tmp_path: Path, cut: int) -> None:
    agent = FileAgent(tmp_path, Reports())
    agent.announce("deliver", TOKEN, "cut.bin", "alice")
    ours, theirs = trio.testing.memory_stream_pair()
    with trio.fail_after(GUARD):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(agent.handle, theirs)
            await ours.send_all(WHOLE[:cut])
            await ours.aclose()
    assert listing(tmp_path) == set()


@pytest.mark.parametrize("filename", ["../evil.txt", "/tmp/evil.txt", ".hidden", "a/b"])
async def test_delivery_under_a_tricky_name_writes_nothing(tmp_path: Path, filename: str) -> None:
    share = tmp_path / "share"
    share.mkdir()
    agent = FileAgent(share, Reports())
    agent.announce("deliver", TOKEN, filename, "alice")
    ours, theirs = trio.testing.memory_stream_pair()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(agent.handle, theirs)
        await ours.send_all(delivery(b"evil"))
        await read_to_end(ours)
    assert listing(share) == set()
    assert listing(tmp_path) == {"share"}


async def test_delivery_replaces_a_link_and_never_writes_through_it(tmp_path: Path) -> None:
    share = tmp_path / "share"
    share.mkdir()
    outside = tmp_path / "outside.txt"
    outside.write_bytes(b"must stay")
    (share / "evil.txt").symlink_to(outside)
    agent = FileAgent(share, Reports())
    agent.announce("deliver", TOKEN, "evil.txt", "alice")
    ours, theirs = trio.testing.memory_stream_pair()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(agent.handle, theirs)
        await ours.send_all(delivery(b"delivered"))
        await read_to_end(ours)
    assert outside.read_bytes() == b"must stay"
    assert not (share / "evil.txt").is_symlink()
    assert (share / "evil.txt").read_bytes() == b"delivered"


# --- FileRelay --------------------------------------------------------------------------------


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
class Peer:
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
        self.by_port: dict[int, Peer] = {}
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

    def add(self, name: str, file_port: int | None, *, pump: bool = True) -> Peer:
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
        peer = Peer(member, FileAgent(share, reports), share, receive, reports)
        if file_port is not None:
            self.by_port[file_port] = peer
        if pump:
            self.nursery.start_soon(self._pump, peer)
        return peer

    async def _pump(self, peer: Peer) -> None:
        """The member's chat connection: announcements go to its agent, like the menu client."""
        async for delivery in peer.inbox:
            event = delivery.event
            peer.events.append(event)
            if isinstance(event, FileAnnouncement):
                peer.agent.announce(event.role, event.token, event.filename, event.peer)
            elif isinstance(event, FileFailed):
                peer.agent.transfer_failed(event.token, event.filename, event.owner, event.reason)

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

    def request(self, requester: Peer, owner: str, filename: str) -> None:
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


async def test_relay_moves_every_byte_value_and_a_large_random_file(tmp_path: Path) -> None:
    all_bytes = bytes(range(256)) * 1024
    large = random.Random(3).randbytes(3 * 1024 * 1024 + 12345)

    async def body(world: World) -> None:
        alice = world.add("alice", 7001)
        bob = world.add("bob", 7002)
        (alice.share / "all_bytes.bin").write_bytes(all_bytes)
        (alice.share / "large.bin").write_bytes(large)
        world.request(bob, "alice", "all_bytes.bin")
        await world.observer.wait_for(1)
        world.request(bob, "Alice", "large.bin")  # names are case-insensitive
        await world.observer.wait_for(2)
        assert world.observer.failed == []
        assert world.observer.finished == [
            ("all_bytes.bin", "alice", "bob", len(all_bytes)),
            ("large.bin", "alice", "bob", len(large)),
        ]
        assert (bob.share / "all_bytes.bin").read_bytes() == all_bytes
        assert hashlib.sha256((bob.share / "large.bin").read_bytes()).digest() == (
            hashlib.sha256(large).digest()
        )
        assert listing(bob.share) == {"all_bytes.bin", "large.bin"}
        assert bob.reports.lines == [
            f"File all_bytes.bin received from alice: {len(all_bytes)} bytes, verified",
            f"File large.bin received from alice: {len(large)} bytes, verified",
        ]
        assert alice.reports.lines == []
        assert world.dials == [("127.0.0.1", 7001), ("127.0.0.1", 7002)] * 2
        # Each side heard of the transfer over its own chat connection, with its own token.
        (fetch_one, fetch_two) = alice.told(FileAnnouncement)
        (deliver_one, deliver_two) = bob.told(FileAnnouncement)
        assert (fetch_one.role, fetch_one.filename, fetch_one.peer) == (
            "fetch",
            "all_bytes.bin",
            "bob",
        )
        assert (deliver_one.role, deliver_one.filename, deliver_one.peer) == (
            "deliver",
            "all_bytes.bin",
            "alice",
        )
        tokens = {fetch_one.token, fetch_two.token, deliver_one.token, deliver_two.token}
        assert len(tokens) == 4
        assert all(len(token) >= 32 for token in tokens)
        assert world.relay.stats.completed == 2
        assert world.relay.stats.bytes_relayed == len(all_bytes) + len(large)

    await in_world(tmp_path, body)


async def test_relay_runs_several_transfers_at_once_both_ways(tmp_path: Path) -> None:
    rng = random.Random(4)
    files = {
        ("alice", "a-empty"): b"",
        ("alice", "a-one"): b"\x00",
        ("alice", "a-mid.bin"): rng.randbytes(700_000),
        ("bob", "b-big.bin"): rng.randbytes(1_300_000),
        ("bob", "b-text.txt"): "ünïcode text\r\nwith lines\n".encode() * 1000,
        ("carol", "c-bytes"): bytes(range(256)) * 3000,
    }
    requests = [
        ("bob", "alice", "a-empty"),
        ("bob", "alice", "a-one"),
        ("bob", "alice", "a-mid.bin"),
        ("carol", "alice", "a-mid.bin"),
        ("alice", "bob", "b-big.bin"),
        ("alice", "bob", "b-text.txt"),
        ("carol", "bob", "b-big.bin"),
        ("alice", "carol", "c-bytes"),
        ("bob", "carol", "c-bytes"),
    ]

    async def body(world: World) -> None:
        peers = {name: world.add(name, port) for name, port in [("alice", 1), ("bob", 2)]}
        peers["carol"] = world.add("carol", 3)
        for (owner, filename), data in files.items():
            (peers[owner].share / filename).write_bytes(data)
        for requester, owner, filename in requests:
            world.request(peers[requester], owner, filename)
        assert world.relay.stats.started == len(requests)
        await world.observer.wait_for(len(requests))
        assert world.observer.failed == []
        assert sorted(world.observer.finished) == sorted(
            (filename, owner, requester, len(files[owner, filename]))
            for requester, owner, filename in requests
        )
        for requester, owner, filename in requests:
            assert (peers[requester].share / filename).read_bytes() == files[owner, filename]
        for peer in peers.values():
            assert temp_files(peer.share) == []
        assert sorted(peers["bob"].reports.lines) == sorted(
            f"File {filename} received from {owner}: {len(files[owner, filename])} bytes, verified"
            for requester, owner, filename in requests
            if requester == "bob"
        )

    await in_world(tmp_path, body)


async def test_missing_file_fails_over_chat_and_is_recorded(tmp_path: Path) -> None:
    async def body(world: World) -> None:
        world.add("alice", 7001)
        bob = world.add("bob", 7002)
        world.request(bob, "alice", "missing.txt")
        await world.observer.wait_for(1)
        assert world.observer.failed == [("missing.txt", "alice", "bob", "no such file")]
        assert world.observer.finished == []
        await bob.reports.wait_for(1)
        (announcement,) = bob.told(FileAnnouncement)
        assert bob.told(FileFailed) == [
            FileFailed(announcement.token, "missing.txt", "alice", "no such file")
        ]
        assert bob.reports.lines == ["File missing.txt from alice failed: no such file"]
        assert listing(bob.share) == set()
        assert world.dials == [("127.0.0.1", 7001)]  # the requester was never dialed
        assert world.relay.stats.failed == 1

    await in_world(tmp_path, body)


class CutAfter(trio.abc.Stream):
    """The owner's end of its file connection, cut (closed) after ``limit`` bytes were sent."""

    def __init__(self, inner: trio.abc.Stream, limit: int) -> None:
        self.inner = inner
        self.remaining = limit

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        if len(data) <= self.remaining:
            self.remaining -= len(data)
            await self.inner.send_all(data)
            return
        await self.inner.send_all(bytes(data)[: self.remaining])
        self.remaining = 0
        await self.inner.aclose()
        raise trio.BrokenResourceError("cut")

    async def wait_send_all_might_not_block(self) -> None:
        await self.inner.wait_send_all_might_not_block()

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        return await self.inner.receive_some(max_bytes)

    async def aclose(self) -> None:
        await self.inner.aclose()


class FlipByte(CutAfter):
    """The owner's end of its file connection, with one byte corrupted on the way out."""

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        if 0 <= self.remaining < len(data):
            corrupt = bytearray(data)
            corrupt[self.remaining] ^= 0x01
            data = corrupt
        self.remaining -= len(data)
        await self.inner.send_all(data)


async def test_owner_cut_mid_transfer_leaves_the_requester_no_file(tmp_path: Path) -> None:
    data = random.Random(5).randbytes(2 * 1024 * 1024)

    async def body(world: World) -> None:
        alice = world.add("alice", 7001)
        bob = world.add("bob", 7002)
        (alice.share / "big.bin").write_bytes(data)
        world.filters[7001] = lambda stream: CutAfter(stream, 700_000)
        world.request(bob, "alice", "big.bin")
        await world.observer.wait_for(1)
        ((filename, owner, requester, reason),) = world.observer.failed
        assert (filename, owner, requester) == ("big.bin", "alice", "bob")
        assert "hung up" in reason
        (line,) = await bob.reports.wait_for(1)
        assert line.startswith("File big.bin from alice failed: ")
        assert "hung up" in line
        await world.agents_idle()
        assert listing(bob.share) == set()
        assert 0 < world.relay.stats.bytes_relayed < len(data)

    await in_world(tmp_path, body)


async def test_owner_corrupting_a_chunk_is_caught_by_the_relay(tmp_path: Path) -> None:
    data = random.Random(6).randbytes(1024 * 1024)

    async def body(world: World) -> None:
        alice = world.add("alice", 7001)
        bob = world.add("bob", 7002)
        (alice.share / "big.bin").write_bytes(data)
        world.filters[7001] = lambda stream: FlipByte(stream, 400_000)
        world.request(bob, "alice", "big.bin")
        await world.observer.wait_for(1)
        ((_, _, _, reason),) = world.observer.failed
        assert reason.startswith("corrupt data from the owner")
        (line,) = await bob.reports.wait_for(1)
        assert line == f"File big.bin from alice failed: {reason}"
        await world.agents_idle()
        assert listing(bob.share) == set()

    await in_world(tmp_path, body)


async def test_unreachable_owner_fails_over_chat(tmp_path: Path) -> None:
    async def body(world: World) -> None:
        world.add("alice", 7001)
        bob = world.add("bob", 7002)
        world.refuse.add(7001)
        world.request(bob, "alice", "a.txt")
        await world.observer.wait_for(1)
        ((_, _, _, reason),) = world.observer.failed
        assert "owner's file port" in reason
        assert await bob.reports.wait_for(1) == [f"File a.txt from alice failed: {reason}"]
        (failed,) = bob.told(FileFailed)
        assert failed.reason == reason

    await in_world(tmp_path, body)


async def test_unreachable_requester_fails_over_chat(tmp_path: Path) -> None:
    async def body(world: World) -> None:
        alice = world.add("alice", 7001)
        bob = world.add("bob", 7002)
        (alice.share / "a.txt").write_bytes(b"hello")
        world.refuse.add(7002)
        world.request(bob, "alice", "a.txt")
        await world.observer.wait_for(1)
        ((_, _, _, reason),) = world.observer.failed
        assert "requester's file port" in reason
        assert await bob.reports.wait_for(1) == [f"File a.txt from alice failed: {reason}"]
        (failed,) = bob.told(FileFailed)
        assert failed.reason == reason
        assert listing(bob.share) == set()

    await in_world(tmp_path, body)


async def test_silent_owner_is_given_up_after_the_stall_timeout(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    async def body(world: World) -> None:
        world.add("alice", 7001)
        bob = world.add("bob", 7002)
        world.unserved.add(7001)
        start = trio.current_time()
        world.request(bob, "alice", "a.txt")
        await world.observer.wait_for(1)
        assert trio.current_time() - start == pytest.approx(7.0)
        ((_, _, _, reason),) = world.observer.failed
        assert "stalled" in reason
        await bob.reports.wait_for(1)
        assert len(bob.told(FileFailed)) == 1

    await in_world(tmp_path, body, stall_timeout=7.0)


REFUSALS = [
    ("nobody", "a.txt", "no member of that name is in the room (yet)"),
    ("carol", "a.txt", "carol does not share files"),
    ("bob", "a.txt", "you own that file already"),
    ("alice", "../x", "not a plain file name"),
    ("alice", "/etc/passwd", "not a plain file name"),
    ("alice", ".hidden", "not a plain file name"),
    ("alice", "", "not a plain file name"),
]


@pytest.mark.parametrize(("owner", "filename", "reason"), REFUSALS)
async def test_impossible_requests_fail_at_once(
    tmp_path: Path, owner: str, filename: str, reason: str
) -> None:
    async def body(world: World) -> None:
        alice = world.add("alice", 7001, pump=False)
        bob = world.add("bob", 7002, pump=False)
        carol = world.add("carol", None, pump=False)
        world.request(bob, owner, filename)
        failed = bob.inbox.receive_nowait().event
        assert failed == FileFailed("", filename, owner, reason)
        for peer in (alice, bob, carol):
            with pytest.raises(trio.WouldBlock):
                peer.inbox.receive_nowait()
        assert world.dials == []
        assert world.relay.stats.started == 0
        await trio.testing.wait_all_tasks_blocked()
        # The console says so too (a line per refusal), and nothing finished.
        assert world.observer.failed == [(filename, owner, "bob", reason)]
        assert world.observer.finished == []

    await in_world(tmp_path, body)


async def test_requester_without_file_port_fails_at_once(tmp_path: Path) -> None:
    async def body(world: World) -> None:
        alice = world.add("alice", 7001, pump=False)
        dave = world.add("dave", None, pump=False)
        world.request(dave, "alice", "a.txt")
        failed = dave.inbox.receive_nowait().event
        assert isinstance(failed, FileFailed)
        assert (failed.filename, failed.owner) == ("a.txt", "alice")
        assert "file port" in failed.reason
        with pytest.raises(trio.WouldBlock):
            alice.inbox.receive_nowait()
        assert world.dials == []

    await in_world(tmp_path, body)


async def test_too_many_transfers_are_refused_until_some_end(tmp_path: Path) -> None:
    async def body(world: World) -> None:
        world.add("alice", 7001, pump=False)
        bob = world.add("bob", 7002, pump=False)
        world.hold = trio.Event()
        world.refuse.add(7001)
        for index in range(MAX_TRANSFERS):
            world.request(bob, "alice", f"f{index}")
        world.request(bob, "alice", "one-too-many")
        told = [bob.inbox.receive_nowait().event for _ in range(MAX_TRANSFERS + 1)]
        assert all(isinstance(event, FileAnnouncement) for event in told[:-1])
        assert isinstance(told[-1], FileFailed)
        assert "too many transfers" in told[-1].reason
        # The dials fail; each transfer ends and makes room again.
        world.hold.set()
        await world.observer.wait_for(MAX_TRANSFERS + 1)  # the refusal is on the console too
        assert len(world.observer.failed) == MAX_TRANSFERS + 1
        world.hold = None
        world.request(bob, "alice", "now-there-is-room")
        while isinstance(event := bob.inbox.receive_nowait().event, FileFailed):
            pass
        assert isinstance(event, FileAnnouncement)
        assert event.filename == "now-there-is-room"

    await in_world(tmp_path, body)


def test_reply_helpers_parse_what_the_agent_sends() -> None:
    # Guards the helpers above: a reply with no header line is not mistaken for one.
    assert parse_reply(b"") == Reply(None, b"")
    raw = encode_header({"status": "ok", "size": 1}) + encode_data(b"x") + end_of(b"x")
    reply = parse_reply(raw)
    assert reply.header == {"status": "ok", "size": 1}
    data, events = reply.decoded()
    assert data == b"x"
    assert not any(isinstance(e, SenderFailed) for e in events)
    assert json.loads(encode_header({"a": 1})) == {"a": 1}


async def test_a_failure_reported_twice_is_shown_once(tmp_path: Path) -> None:
    """The relay reports failures over chat and the file connection may too: one line."""
    lines: list[str] = []
    agent = FileAgent(tmp_path, lines.append)
    agent.announce("deliver", "t1", "a.txt", "owner")
    agent.transfer_failed("t1", "a.txt", "owner", "no such file")
    agent.transfer_failed("t1", "a.txt", "owner", "no such file")
    agent.transfer_failed("t2", "b.txt", "owner", "owner gone")
    agent.transfer_failed("", "c.txt", "owner", "no such member")
    agent.transfer_failed("", "c.txt", "owner", "no such member")
    assert lines == [
        "File a.txt from owner failed: no such file",
        "File b.txt from owner failed: owner gone",
        "File c.txt from owner failed: no such member",
        "File c.txt from owner failed: no such member",
    ]


async def test_a_file_over_the_size_limit_is_refused(tmp_path: Path) -> None:
    async def body(world: World) -> None:
        alice = world.add("alice", 7001)
        bob = world.add("bob", 7002)
        (alice.share / "big.bin").write_bytes(b"x" * 5000)
        world.request(bob, "alice", "big.bin")
        await world.observer.wait_for(1)
        (failure,) = world.observer.failed
        assert failure[:3] == ("big.bin", "alice", "bob")
        assert failure[3] == "file too large (5000 bytes; the limit is 4096)"
        await bob.reports.wait_for(1)
        assert bob.reports.lines == [
            "File big.bin from alice failed: file too large (5000 bytes; the limit is 4096)"
        ]
        assert listing(bob.share) == set()

    await in_world(tmp_path, body, max_file_bytes=4096)


class FullDisk(io.FileIO):
    """A file whose writes fail with ENOSPC once ``room`` bytes were written."""

    room = 20_000

    def write(self, data: Any, /) -> int:
        if self.tell() + len(data) > self.room:
            raise OSError(errno.ENOSPC, "No space left on device")
        return super().write(data)


async def test_a_full_disk_on_the_requester_leaves_no_file_and_says_why(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_fdopen = os.fdopen

    def fdopen_full(fd: int, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
        if "w" in mode:
            return io.BufferedWriter(FullDisk(fd, "wb"), buffer_size=1000)
        return real_fdopen(fd, mode, *args, **kwargs)

    monkeypatch.setattr("triochat.client.file_agent.os.fdopen", fdopen_full)
    reports = Reports()
    agent = FileAgent(tmp_path, reports)
    agent.announce("deliver", TOKEN, "movie.bin", "alice")
    ours, theirs = trio.testing.memory_stream_pair()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(agent.handle, theirs)
        await ours.send_all(delivery(random.Random(5).randbytes(60_000)))
        reply = parse_reply(await read_to_end(ours))
    assert reply.header == {"status": "error", "message": "No space left on device"}
    assert reports.lines == ["File movie.bin from alice failed: No space left on device"]
    assert listing(tmp_path) == set()  # neither the file nor its temporary


class GrowingFile(io.FileIO):
    """A file that someone appends to while it is being read (after the first read)."""

    extra = b"appended while sending" * 1000
    grown = False

    def read(self, size: int | None = -1, /) -> bytes:
        data = super().read(size)
        if not self.grown:
            self.grown = True
            with open(self.name, "ab") as appender:
                appender.write(self.extra)
        return data


async def test_a_file_that_grows_while_sent_arrives_as_read_and_verified(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The owner sends what it read; size and digest in the end frame describe exactly that."""
    original = random.Random(6).randbytes(2 * CHUNK_SIZE + 17)
    (tmp_path / "log.txt").write_bytes(original)

    async def open_growing(path: Path, mode: str) -> trio.abc.AsyncResource:
        return trio.wrap_file(GrowingFile(path, "rb"))

    monkeypatch.setattr(trio, "open_file", open_growing)
    agent = FileAgent(tmp_path, Reports())
    agent.announce("fetch", TOKEN, "log.txt", "bob")
    reply = await fetch(agent)
    assert reply.header == {"status": "ok", "size": len(original)}  # the size when it started
    decoder = ChunkDecoder()
    decoder.receive_data(reply.rest)
    received = b""
    while (event := decoder.next_event()) is not NEED_DATA:
        if isinstance(event, DataChunk):
            received += bytes(event.payload)
        else:
            assert isinstance(event, EndOfFile)
    assert received == original + GrowingFile.extra  # digest and size verified by the decoder
    decoder.end_of_stream()


class VanishAfter(CutAfter):
    """The requester's end of its file connection: it goes away after ``limit`` bytes read."""

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        if self.remaining <= 0:
            await self.inner.aclose()
            raise trio.BrokenResourceError("requester vanished")
        data = await self.inner.receive_some(max_bytes)
        self.remaining -= len(data)
        return data


async def test_requester_vanishing_mid_transfer_ends_only_that_transfer(tmp_path: Path) -> None:
    data = random.Random(8).randbytes(2 * 1024 * 1024)

    async def body(world: World) -> None:
        alice = world.add("alice", 7001)
        bob = world.add("bob", 7002)
        (alice.share / "big.bin").write_bytes(data)
        world.filters[7002] = lambda stream: VanishAfter(stream, 500_000)
        world.request(bob, "alice", "big.bin")
        await world.observer.wait_for(1)
        ((filename, owner, requester, _reason),) = world.observer.failed
        assert (filename, owner, requester) == ("big.bin", "alice", "bob")
        await world.agents_idle()
        assert listing(bob.share) == set()  # no file, no temporary
        assert listing(alice.share) == {"big.bin"}
        # The relay is free for the next transfer, which goes through.
        del world.filters[7002]
        (alice.share / "small.txt").write_bytes(b"still works")
        world.request(bob, "alice", "small.txt")
        await world.observer.wait_for(2)
        assert world.observer.finished[-1][:3] == ("small.txt", "alice", "bob")
        assert (bob.share / "small.txt").read_bytes() == b"still works"

    await in_world(tmp_path, body)
