"""The requester's file agent receiving a delivery (SPEC §6): the file is written to a
temporary file and renamed into place only when complete and verified; anything broken
leaves nothing behind. The tests play the relay over in-memory streams.
"""

from __future__ import annotations

import errno
import hashlib
import os
import random
import stat
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing

from triochat.client.file_agent import FileAgent
from triochat.events import FileAnnouncement, FileFailed, TransferRole
from triochat.wire.chunks import (
    encode_end,
    encode_error,
)

from .file_transfer_helpers import (
    GUARD,
    TOKEN,
    Reply,
    Reports,
    delivery,
    end_of,
    frames_of,
    header_line,
    listing,
    parse_reply,
    read_to_end,
    temp_files,
    umask,
)


async def test_delivery_is_written_atomically_with_ordinary_permissions(tmp_path: Path) -> None:
    data = random.Random(1).randbytes(50_000)
    reports = Reports()
    with umask(0o027):
        agent = FileAgent(tmp_path, reports)
    agent.announce(FileAnnouncement(TransferRole.DELIVER, TOKEN, "photo.bin", "alice"))
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
    agent.announce(FileAnnouncement(TransferRole.DELIVER, TOKEN, "a.txt", "alice"))
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
HEADER = header_line({"token": TOKEN, "size": len(DATA)})
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
    agent.announce(FileAnnouncement(TransferRole.DELIVER, TOKEN, "kept.txt", "alice"))
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
    agent.announce(FileAnnouncement(TransferRole.DELIVER, TOKEN, "cut.bin", "alice"))
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
    agent.announce(FileAnnouncement(TransferRole.DELIVER, TOKEN, filename, "alice"))
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
    agent.announce(FileAnnouncement(TransferRole.DELIVER, TOKEN, "evil.txt", "alice"))
    ours, theirs = trio.testing.memory_stream_pair()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(agent.handle, theirs)
        await ours.send_all(delivery(b"delivered"))
        await read_to_end(ours)
    assert outside.read_bytes() == b"must stay"
    assert not (share / "evil.txt").is_symlink()
    assert (share / "evil.txt").read_bytes() == b"delivered"


async def test_a_failure_reported_twice_is_shown_once(tmp_path: Path) -> None:
    """The relay reports failures over chat and the file connection may too: one line."""
    lines: list[str] = []
    agent = FileAgent(tmp_path, lines.append)
    agent.announce(FileAnnouncement(TransferRole.DELIVER, "t1", "a.txt", "owner"))
    agent.transfer_failed(FileFailed("t1", "a.txt", "owner", "no such file"))
    agent.transfer_failed(FileFailed("t1", "a.txt", "owner", "no such file"))
    agent.transfer_failed(FileFailed("t2", "b.txt", "owner", "owner gone"))
    agent.transfer_failed(FileFailed("", "c.txt", "owner", "no such member"))
    agent.transfer_failed(FileFailed("", "c.txt", "owner", "no such member"))
    assert lines == [
        "File a.txt from owner failed: no such file",
        "File b.txt from owner failed: owner gone",
        "File c.txt from owner failed: no such member",
        "File c.txt from owner failed: no such member",
    ]


class FullDisk:
    """``os.pwritev`` on a disk with ``room`` bytes free: then it fails with ENOSPC."""

    room = 20_000

    def __init__(self) -> None:
        self.written = 0
        self._pwritev = os.pwritev  # the real one, before the test patches the os module

    def __call__(self, fd: int, buffers: list[memoryview], offset: int, /) -> int:
        wanted = sum(len(buffer) for buffer in buffers)
        if self.written + wanted > self.room:
            raise OSError(errno.ENOSPC, "No space left on device")
        written = self._pwritev(fd, buffers, offset)
        self.written += written
        return written


async def test_a_full_disk_on_the_requester_leaves_no_file_and_says_why(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("triochat.client.disk_writer.os.pwritev", FullDisk())
    reports = Reports()
    agent = FileAgent(tmp_path, reports)
    agent.announce(FileAnnouncement(TransferRole.DELIVER, TOKEN, "movie.bin", "alice"))
    ours, theirs = trio.testing.memory_stream_pair()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(agent.handle, theirs)
        await ours.send_all(delivery(random.Random(5).randbytes(60_000), chunk=4096))
        reply = parse_reply(await read_to_end(ours))
    assert reply.header == {"status": "error", "message": "No space left on device"}
    assert reports.lines == ["File movie.bin from alice failed: No space left on device"]
    assert listing(tmp_path) == set()  # neither the file nor its temporary


async def _deliver(tmp_path: Path, data: bytes) -> tuple[Reply, Reports]:
    reports = Reports()
    agent = FileAgent(tmp_path, reports)
    agent.announce(FileAnnouncement(TransferRole.DELIVER, TOKEN, "movie.bin", "alice"))
    ours, theirs = trio.testing.memory_stream_pair()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(agent.handle, theirs)
        await ours.send_all(delivery(data))
        reply = parse_reply(await read_to_end(ours))
    return reply, reports


async def test_a_long_delivery_is_flushed_early_and_fsynced_before_the_rename(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Early fdatasync calls overlap the transfer; the final fsync still comes before the rename.
    calls: list[str] = []
    real_replace = os.replace
    monkeypatch.setattr("triochat.client.file_agent.FLUSH_EVERY", 10_000)
    monkeypatch.setattr(
        "triochat.client.file_agent.os.fdatasync", lambda fd: calls.append("fdatasync")
    )
    monkeypatch.setattr("triochat.client.file_agent.os.fsync", lambda fd: calls.append("fsync"))

    def replace(source: Any, target: Any) -> None:
        calls.append("replace")
        real_replace(source, target)

    monkeypatch.setattr("triochat.client.file_agent.os.replace", replace)
    data = random.Random(8).randbytes(100_000)
    reply, reports = await _deliver(tmp_path, data)
    assert reply.header == {"status": "ok", "size": len(data)}
    assert (tmp_path / "movie.bin").read_bytes() == data
    assert "fdatasync" in calls
    assert calls[-2:] == ["fsync", "replace"]
    assert reports.lines == [f"File movie.bin received from alice: {len(data)} bytes, verified"]


async def test_a_failing_early_flush_fails_the_delivery_and_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def fdatasync(fd: int) -> None:
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr("triochat.client.file_agent.FLUSH_EVERY", 10_000)
    monkeypatch.setattr("triochat.client.file_agent.os.fdatasync", fdatasync)
    reply, reports = await _deliver(tmp_path, random.Random(9).randbytes(100_000))
    assert reply.header == {"status": "error", "message": "Input/output error"}
    assert reports.lines == ["File movie.bin from alice failed: Input/output error"]
    assert listing(tmp_path) == set()
