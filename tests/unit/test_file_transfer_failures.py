"""The file relay when something breaks mid-way (SPEC §6): owners that are missing, cut,
corrupting, unreachable or silent, requesters that vanish, files over the limit. Each ends in
a clear failure over chat and on the console, and never in a partial file."""

from __future__ import annotations

import errno
import os
import random
from pathlib import Path

import pytest
import trio
import trio.testing

from triochat.events import FileAnnouncement, FileFailed
from triochat.server import relay as relay_module
from triochat.wire import chunks
from triochat.wire.chunks import CHUNK_SIZE

from .file_transfer_helpers import World, in_world, listing


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
        # Cut inside the second frame: the first was relayed whole.
        world.filters[7001] = lambda stream: CutAfter(stream, CHUNK_SIZE + 500_000)
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


async def test_an_owner_read_error_reaches_the_requester_as_its_one_error_frame(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The relay forwards the owner's error frame and adds none of its own: on a real socket
    # both would arrive in one read, and the requester must show the owner's reason.
    data = random.Random(7).randbytes(2 * CHUNK_SIZE)
    real_preadv = os.preadv
    reads: list[int] = []

    def failing_preadv(fd: int, buffers: list[memoryview], offset: int, flags: int = 0, /) -> int:
        reads.append(offset)
        if offset >= CHUNK_SIZE:
            raise OSError(errno.EIO, "Input/output error")
        return real_preadv(fd, buffers, offset, flags)

    monkeypatch.setattr("triochat.client.file_sender.os.preadv", failing_preadv)
    relay_errors: list[str] = []
    real_encode_error = chunks.encode_error

    def encode_error(message: str) -> bytes:
        relay_errors.append(message)
        return real_encode_error(message)

    monkeypatch.setattr(relay_module, "encode_error", encode_error)

    async def body(world: World) -> None:
        alice = world.add("alice", 7001)
        bob = world.add("bob", 7002)
        (alice.share / "big.bin").write_bytes(data)
        world.request(bob, "alice", "big.bin")
        await world.observer.wait_for(1)
        ((_, _, _, reason),) = world.observer.failed
        assert reason == "the owner failed: the owner cannot read the file"
        (line,) = await bob.reports.wait_for(1)
        # Over the file connection or over chat, whichever came first: the owner's reason.
        assert line.startswith("File big.bin from alice failed: ")
        assert line.endswith("the owner cannot read the file")
        await world.agents_idle()
        assert listing(bob.share) == set()

    await in_world(tmp_path, body)
    assert relay_errors == []  # the owner's error frame was the requester's only one
