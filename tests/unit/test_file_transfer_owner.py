"""The owner's file agent serving a fetch (SPEC §6): who gets served, which files, and
what goes on the wire, over in-memory streams.

The tests play the relay: they connect to :meth:`FileAgent.handle` and present a token.
"""

from __future__ import annotations

import errno
import json
import os
import random
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import trio
import trio.testing
import xxhash

if TYPE_CHECKING:
    pass

from triochat.client.file_agent import ANNOUNCE_WAIT, HEADER_TIMEOUT, FileAgent
from triochat.events import FileAnnouncement, TransferRole
from triochat.wire.chunks import (
    CHUNK_SIZE,
    AgentHandshake,
    ChunkDecoder,
    DataChunk,
    EndOfFile,
    RelayHandshake,
    SenderFailed,
    TransferAccepted,
    TransferRequest,
    encode_data,
)
from triochat.wire.common import NEED_DATA

from .file_transfer_helpers import (
    TOKEN,
    Reply,
    Reports,
    end_of,
    fetch,
    header_line,
    parse_reply,
    read_to_end,
)

# --- FileAgent: who gets served ---------------------------------------------------------------


async def test_stranger_with_unknown_token_gets_nothing_after_announce_wait(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    (tmp_path / "a.txt").write_bytes(b"secret")
    reports = Reports()
    agent = FileAgent(tmp_path, reports, announce_wait=1.5)
    agent.announce(FileAnnouncement(TransferRole.FETCH, TOKEN, "a.txt", "bob"))
    ours, theirs = trio.testing.memory_stream_pair()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(agent.handle, theirs)
        await ours.send_all(header_line({"token": "deadbeef"}))
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
        await ours.send_all(header_line({"token": "deadbeef"}))
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
    agent.announce(FileAnnouncement(TransferRole.FETCH, TOKEN, "a.txt", "bob"))
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
        await ours.send_all(header_line({"token": TOKEN}))
        await trio.sleep(ANNOUNCE_WAIT * 0.8)  # virtual time: the chat connection is slow
        agent.announce(FileAnnouncement(TransferRole.FETCH, TOKEN, "late.bin", "bob"))
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
    agent.announce(FileAnnouncement(TransferRole.FETCH, TOKEN, "a.txt", "bob"))
    first = await fetch(agent)
    assert first.decoded()[0] == b"once"
    second = await fetch(agent)
    assert second.header is None
    assert second.rest == b""


async def test_fetch_serves_every_byte_value_in_frames(tmp_path: Path) -> None:
    data = bytes(range(256)) * 4096 + b"tail"  # 1 MiB and a bit: several frames
    (tmp_path / "all.bin").write_bytes(data)
    agent = FileAgent(tmp_path, Reports())
    agent.announce(FileAnnouncement(TransferRole.FETCH, TOKEN, "all.bin", "bob"))
    reply = await fetch(agent)
    assert reply.header == {"status": "ok", "size": len(data)}
    got, events = reply.decoded()
    assert got == data
    assert len(events) > 2
    assert events[-1] == EndOfFile(len(data), xxhash.xxh3_128_digest(data), end_of(data))


async def test_fetch_of_an_empty_file(tmp_path: Path) -> None:
    (tmp_path / "empty").write_bytes(b"")
    agent = FileAgent(tmp_path, Reports())
    agent.announce(FileAnnouncement(TransferRole.FETCH, TOKEN, "empty", "bob"))
    reply = await fetch(agent)
    assert reply.header == {"status": "ok", "size": 0}
    assert reply.rest == end_of(b"")


async def test_fetch_of_a_missing_file_gets_an_error_header(tmp_path: Path) -> None:
    agent = FileAgent(tmp_path, Reports())
    agent.announce(FileAnnouncement(TransferRole.FETCH, TOKEN, "missing.txt", "bob"))
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
    agent.announce(FileAnnouncement(TransferRole.FETCH, TOKEN, filename, "bob"))
    ours, theirs = trio.testing.memory_stream_pair()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(agent.handle, theirs)
        await ours.send_all(header_line({"token": TOKEN}))
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
    agent.announce(FileAnnouncement(TransferRole.FETCH, TOKEN, "alias.txt", "bob"))
    reply = await fetch(agent)
    assert reply.header == {"status": "ok", "size": 6}
    assert reply.decoded()[0] == b"inside"


class FailingReads:
    """``os.preadv`` on a disk going bad: reads fail (EIO) after the first one."""

    def __init__(self) -> None:
        self.reads = 0
        self._preadv = os.preadv  # the real one, before the test patches the os module

    def __call__(self, fd: int, buffers: list[memoryview], offset: int, flags: int = 0, /) -> int:
        self.reads += 1
        if self.reads > 1:
            raise OSError(errno.EIO, "Input/output error")
        return self._preadv(fd, buffers, offset, flags)


async def test_read_error_mid_file_is_reported_with_an_error_frame(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "flaky.bin").write_bytes(os.urandom(3 * CHUNK_SIZE))

    monkeypatch.setattr("triochat.client.file_sender.os.preadv", FailingReads())
    agent = FileAgent(tmp_path, Reports())
    agent.announce(FileAnnouncement(TransferRole.FETCH, TOKEN, "flaky.bin", "bob"))
    reply = await fetch(agent)
    assert reply.header == {"status": "ok", "size": 3 * CHUNK_SIZE}
    decoder = ChunkDecoder()
    decoder.receive_data(reply.rest)
    events = []
    while (event := decoder.next_event()) is not NEED_DATA:  # no RemoteProtocolError
        events.append(event)
    assert isinstance(events[0], DataChunk)
    assert isinstance(events[-1], SenderFailed)


def test_reply_helpers_parse_what_the_agent_sends() -> None:
    # Guards the helpers above: a reply with no header line is not mistaken for one.
    assert parse_reply(b"") == Reply(None, b"")
    raw = header_line({"status": "ok", "size": 1}) + encode_data(b"x") + end_of(b"x")
    reply = parse_reply(raw)
    assert reply.header == {"status": "ok", "size": 1}
    data, events = reply.decoded()
    assert data == b"x"
    assert not any(isinstance(e, SenderFailed) for e in events)
    assert json.loads(header_line({"a": 1})) == {"a": 1}
    # The hand-written lines are the codec's own bytes.
    assert header_line({"token": TOKEN, "size": 3}) == RelayHandshake().send(
        TransferRequest(TOKEN, 3)
    )
    assert header_line({"status": "ok", "size": 1}) == AgentHandshake().send(TransferAccepted(1))


class GrowingFile:
    """``os.preadv`` on a file that someone appends to while it is read (after the first read)."""

    extra = b"appended while sending" * 1000

    def __init__(self, path: Path) -> None:
        self._path = path
        self._grown = False
        self._preadv = os.preadv  # the real one, before the test patches the os module

    def __call__(self, fd: int, buffers: list[memoryview], offset: int, flags: int = 0, /) -> int:
        count = self._preadv(fd, buffers, offset, flags)
        if not self._grown:
            self._grown = True
            with self._path.open("ab") as appender:
                appender.write(self.extra)
        return count


async def test_a_file_that_grows_while_sent_arrives_as_read_and_verified(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The owner sends what it read; size and digest in the end frame describe exactly that."""
    original = random.Random(6).randbytes(2 * CHUNK_SIZE + 17)
    (tmp_path / "log.txt").write_bytes(original)

    monkeypatch.setattr("triochat.client.file_sender.os.preadv", GrowingFile(tmp_path / "log.txt"))
    agent = FileAgent(tmp_path, Reports())
    agent.announce(FileAnnouncement(TransferRole.FETCH, TOKEN, "log.txt", "bob"))
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
