"""The owner's sender: a file read straight into data frames (FrameFiller) and sent (send_file).

Whatever the file does (ends on a chunk boundary, is empty, reads short, fails), the frames
must be exactly what a receiver verifies: CHUNK_SIZE payloads, a short last one, an end frame
with the size and the XXH3-128 of the bytes actually sent.
"""

from __future__ import annotations

import errno
import io
import os
import random
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio
import trio.testing
import xxhash

from triochat.client.file_sender import READ_PIECE, FrameFiller, ReadableFile, send_file
from triochat.transfer_io import FileLink
from triochat.wire.chunks import (
    CHUNK_SIZE,
    FRAME_OVERHEAD,
    ChunkDecoder,
    DataChunk,
    EndOfFile,
    encode_data,
    new_digest,
)
from triochat.wire.common import NEED_DATA

FRAME = CHUNK_SIZE + FRAME_OVERHEAD
"""One full data frame on the wire."""
SECOND_FRAME = CHUNK_SIZE // READ_PIECE + 1
"""The number of the read that starts the second frame (a frame is read piece by piece)."""


def file_data(size: int, seed: int = 0) -> bytes:
    """``size`` reproducible pseudo-random bytes (a misplaced chunk would show)."""
    return random.Random(seed).randbytes(size)


class Received:
    """What a receiver that checks everything makes of a whole stream."""

    def __init__(self, stream: bytes) -> None:
        decoder = ChunkDecoder(check_digest=True)
        decoder.receive_data(stream)
        self.payload_sizes: list[int] = []
        self.data = b""
        self.end: EndOfFile | None = None
        while (event := decoder.next_event()) is not NEED_DATA:
            if isinstance(event, DataChunk):
                self.payload_sizes.append(len(event.payload))
                self.data += event.payload
            else:
                assert isinstance(event, EndOfFile)
                self.end = event
        decoder.end_of_stream()  # raises unless the end frame verified


class ShortRead:
    """A file whose ``short_call``-th read returns only ``short`` bytes (as a pipe, a growing
    file or a network file system may)."""

    def __init__(self, data: bytes, short_call: int, short: int) -> None:
        self._file = io.BytesIO(data)
        self._calls = 0
        self._short_call = short_call
        self._short = short

    def readinto(self, buffer: memoryview, /) -> int | None:
        self._calls += 1
        if self._calls == self._short_call:
            buffer = buffer[: self._short]
        return self._file.readinto(buffer)


class FailingRead:
    """A file whose ``fail_call``-th read raises ``error`` (a disk error, a removed mount)."""

    def __init__(self, data: bytes, fail_call: int, error: OSError) -> None:
        self._file = io.BytesIO(data)
        self._calls = 0
        self._fail_call = fail_call
        self._error = error

    def readinto(self, buffer: memoryview, /) -> int | None:
        self._calls += 1
        if self._calls == self._fail_call:
            raise self._error
        return self._file.readinto(buffer)


def data_frames(buffer: bytes) -> list[int]:
    """The payload sizes of the data frames in ``buffer``, each verified; nothing else in it."""
    decoder = ChunkDecoder()
    decoder.receive_data(buffer)
    sizes: list[int] = []
    while (event := decoder.next_event()) is not NEED_DATA:
        assert isinstance(event, DataChunk)
        sizes.append(len(event.payload))
    assert sum(sizes) + len(sizes) * FRAME_OVERHEAD == len(buffer)
    return sizes


def fill_all(filler: FrameFiller) -> list[bytes]:
    """Every frame ``fill`` produces until it says the file ended (into one reused buffer,
    as ``send_file`` does)."""
    buffer = memoryview(bytearray(FRAME))
    out: list[bytes] = []
    while used := filler.fill(buffer):
        out.append(bytes(buffer[:used]))
    return out


async def sent_over_a_link(file: ReadableFile) -> tuple[bytes, int]:
    """What ``send_file`` puts on the wire for ``file``, and what it returns."""
    ours, theirs = trio.testing.memory_stream_pair()
    digest = new_digest()
    sent = await send_file(FileLink(ours, stall_timeout=5), file, digest)
    await ours.aclose()
    stream = bytearray()
    while data := await theirs.receive_some():
        stream += data
    return bytes(stream), sent


# --- FrameFiller -------------------------------------------------------------------------------


def test_frames_carry_full_chunks_and_a_short_last_one() -> None:
    data = file_data(2 * CHUNK_SIZE + 12345)
    filler = FrameFiller(io.BytesIO(data), new_digest())
    buffers = fill_all(filler)
    assert [len(buffer) for buffer in buffers] == [FRAME, FRAME, 12345 + FRAME_OVERHEAD]
    assert buffers == [
        encode_data(data[:CHUNK_SIZE]),
        encode_data(data[CHUNK_SIZE : 2 * CHUNK_SIZE]),
        encode_data(data[2 * CHUNK_SIZE :]),
    ]
    assert filler.sent == len(data)


def test_the_running_digest_is_the_files_xxh3_128() -> None:
    data = file_data(CHUNK_SIZE + 7, seed=1)
    digest = new_digest()
    fill_all(FrameFiller(io.BytesIO(data), digest))
    assert digest.digest() == xxhash.xxh3_128(data).digest()


def test_a_file_of_whole_chunks_needs_no_empty_frame() -> None:
    data = file_data(2 * CHUNK_SIZE, seed=2)
    filler = FrameFiller(io.BytesIO(data), new_digest())
    assert [len(buffer) for buffer in fill_all(filler)] == [FRAME, FRAME]
    assert filler.fill(memoryview(bytearray(FRAME))) == 0  # and the end stays the end


def test_an_empty_file_fills_nothing() -> None:
    filler = FrameFiller(io.BytesIO(b""), new_digest())
    assert filler.fill(memoryview(bytearray(FRAME))) == 0
    assert filler.sent == 0


def test_fill_makes_one_frame_even_in_a_larger_buffer() -> None:
    # One frame per thread hop: the payload goes right after the prefix, the CRC after it.
    data = file_data(2 * CHUNK_SIZE, seed=3)
    filler = FrameFiller(io.BytesIO(data), new_digest())
    buffer = memoryview(bytearray(2 * FRAME))
    assert filler.fill(buffer) == FRAME
    assert bytes(buffer[:FRAME]) == encode_data(data[:CHUNK_SIZE])
    assert filler.sent == CHUNK_SIZE


def test_a_short_read_mid_file_gives_a_short_frame_and_the_file_goes_on() -> None:
    # A short read is not the end (a pipe, a network file system, a file that grows): only a
    # read of nothing is.
    data = file_data(3 * CHUNK_SIZE, seed=4)
    digest = new_digest()
    filler = FrameFiller(ShortRead(data, short_call=SECOND_FRAME, short=1000), digest)
    frames = fill_all(filler)
    assert [data_frames(frame) for frame in frames] == [
        [CHUNK_SIZE],
        [1000],
        [CHUNK_SIZE],
        [CHUNK_SIZE - 1000],
    ]
    assert frames[1] == encode_data(data[CHUNK_SIZE : CHUNK_SIZE + 1000])
    assert filler.sent == len(data)
    assert digest.digest() == xxhash.xxh3_128(data).digest()


def test_a_read_error_after_a_frame_comes_from_the_next_fill() -> None:
    # The frame already read is good data and goes out; the error ends the transfer after.
    data = file_data(3 * CHUNK_SIZE, seed=5)
    error = OSError(5, "Input/output error")
    filler = FrameFiller(FailingRead(data, fail_call=SECOND_FRAME, error=error), new_digest())
    buffer = memoryview(bytearray(FRAME))
    used = filler.fill(buffer)
    assert bytes(buffer[:used]) == encode_data(data[:CHUNK_SIZE])
    with pytest.raises(OSError, match="Input/output error") as caught:
        filler.fill(buffer)
    assert caught.value is error
    assert filler.sent == CHUNK_SIZE


def test_a_read_error_inside_a_frame_sends_the_part_read_then_raises() -> None:
    # The pieces read before the error are good data: they go out as a shorter frame.
    data = file_data(3 * CHUNK_SIZE, seed=11)
    error = OSError(5, "Input/output error")
    filler = FrameFiller(FailingRead(data, fail_call=2, error=error), new_digest())
    buffer = memoryview(bytearray(FRAME))
    used = filler.fill(buffer)
    assert bytes(buffer[:used]) == encode_data(data[:READ_PIECE])
    with pytest.raises(OSError, match="Input/output error") as caught:
        filler.fill(buffer)
    assert caught.value is error
    assert filler.sent == READ_PIECE


def test_a_read_error_at_the_very_first_read_raises_at_once() -> None:
    filler = FrameFiller(FailingRead(b"x" * 10, fail_call=1, error=OSError("gone")), new_digest())
    with pytest.raises(OSError, match="gone"):
        filler.fill(memoryview(bytearray(FRAME)))
    assert filler.sent == 0


def test_a_read_of_none_counts_as_the_end() -> None:
    # readinto may answer None (nothing available on a non-blocking file): no frame, no data.
    class Nothing:
        def readinto(self, buffer: memoryview, /) -> int | None:
            return None

    filler = FrameFiller(Nothing(), new_digest())
    assert filler.fill(memoryview(bytearray(FRAME))) == 0


# --- send_file ---------------------------------------------------------------------------------


async def test_send_file_sends_verifiable_frames_then_the_end(tmp_path: Path) -> None:
    data = file_data(2 * CHUNK_SIZE + 999, seed=7)
    path = tmp_path / "file.bin"
    path.write_bytes(data)
    with path.open("rb", buffering=0) as file:
        stream, sent = await sent_over_a_link(file)
    received = Received(stream)
    assert sent == len(data)
    assert received.payload_sizes == [CHUNK_SIZE, CHUNK_SIZE, 999]
    assert received.data == data
    assert received.end is not None
    assert received.end.size == len(data)
    assert received.end.digest == xxhash.xxh3_128(data).digest()


async def test_send_file_of_an_empty_file_sends_only_the_end_frame(tmp_path: Path) -> None:
    path = tmp_path / "empty"
    path.write_bytes(b"")
    with path.open("rb", buffering=0) as file:
        stream, sent = await sent_over_a_link(file)
    received = Received(stream)
    assert sent == 0
    assert received.payload_sizes == []
    assert received.end is not None
    assert received.end.size == 0
    assert received.end.digest == xxhash.xxh3_128(b"").digest()
    assert stream == received.end.frame


async def test_send_file_with_a_short_read_mid_file_still_verifies() -> None:
    data = file_data(3 * CHUNK_SIZE + 5, seed=8)
    stream, sent = await sent_over_a_link(ShortRead(data, short_call=SECOND_FRAME, short=4096))
    received = Received(stream)
    rest = len(data) - 2 * CHUNK_SIZE - 4096
    assert received.payload_sizes == [CHUNK_SIZE, 4096, CHUNK_SIZE, rest]
    assert received.data == data
    assert sent == len(data)


async def test_send_file_raises_a_read_error_after_sending_what_it_read() -> None:
    data = file_data(3 * CHUNK_SIZE, seed=9)
    ours, theirs = trio.testing.memory_stream_pair()
    file = FailingRead(data, fail_call=SECOND_FRAME, error=OSError("disk gone"))
    with pytest.raises(OSError, match="disk gone"):
        await send_file(FileLink(ours, stall_timeout=5), file, new_digest())
    await ours.aclose()
    stream = bytearray()
    while chunk := await theirs.receive_some():
        stream += chunk
    assert stream == encode_data(data[:CHUNK_SIZE])  # the first frame, and no end frame


async def test_send_file_returns_the_bytes_sent_not_the_files_size_at_the_start() -> None:
    # A file read as it grows: what counts, and what the end frame says, is what was read.
    data = file_data(CHUNK_SIZE + 10, seed=10)
    stream, sent = await sent_over_a_link(io.BytesIO(data))
    received = Received(stream)
    assert received.end is not None
    assert sent == received.end.size == len(data)


# --- reads from the page cache on the event loop -------------------------------------------


def test_a_cached_file_fills_a_whole_frame_without_a_thread(tmp_path: Path) -> None:
    # Just written, so in the page cache: a cached-only read needs no worker thread.
    data = file_data(CHUNK_SIZE + 10, seed=12)
    path = tmp_path / "cached.bin"
    path.write_bytes(data)
    with path.open("rb", buffering=0) as file:
        filler = FrameFiller(file, new_digest())
        buffer = memoryview(bytearray(FRAME))
        used = filler.fill(buffer, cached_only=True)
        assert used is not None
        assert bytes(buffer[:used]) == encode_data(data[:CHUNK_SIZE])


def test_an_in_memory_file_leaves_cached_only_reads_to_the_thread() -> None:
    filler = FrameFiller(io.BytesIO(b"abc"), new_digest())
    buffer = memoryview(bytearray(FRAME))
    assert filler.fill(buffer, cached_only=True) is None
    assert filler.fill(buffer) == len(encode_data(b"abc"))


def test_a_frame_begun_from_the_cache_is_finished_by_the_blocking_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The cache holds the first piece only: the worker thread's read goes on from there, and
    # the frame (its CRC, the digest) is the same as if read in one go.
    data = file_data(2 * CHUNK_SIZE, seed=13)
    path = tmp_path / "half-cached.bin"
    path.write_bytes(data)
    real_preadv = os.preadv
    calls: list[int] = []

    def preadv(fd: int, buffers: list[memoryview], offset: int, flags: int = 0, /) -> int:
        calls.append(flags)
        if flags and len(calls) > 1:
            raise BlockingIOError(errno.EAGAIN, "not in the page cache")
        return real_preadv(fd, buffers, offset, flags)

    monkeypatch.setattr("triochat.client.file_sender.os.preadv", preadv)
    digest = new_digest()
    with path.open("rb", buffering=0) as file:
        filler = FrameFiller(file, digest)
        buffer = memoryview(bytearray(FRAME))
        assert filler.fill(buffer, cached_only=True) is None
        used = filler.fill(buffer)
        assert used is not None
        assert bytes(buffer[:used]) == encode_data(data[:CHUNK_SIZE])
        frames = [bytes(buffer[:used]), *fill_all(filler)]
    assert b"".join(frames) == encode_data(data[:CHUNK_SIZE]) + encode_data(data[CHUNK_SIZE:])
    assert digest.digest() == xxhash.xxh3_128(data).digest()
    assert calls[0] != 0 and 0 in calls  # cached-only first, then blocking


def test_a_file_system_refusing_cached_only_reads_is_read_in_the_thread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # tmpfs, overlayfs (Docker) and others answer RWF_NOWAIT with EOPNOTSUPP: the frame
    # comes from the blocking read instead, at the same offset, and later frames do not ask.
    data = file_data(2 * CHUNK_SIZE + 3, seed=14)
    path = tmp_path / "no-nowait.bin"
    path.write_bytes(data)
    real_preadv = os.preadv
    flags_seen: list[int] = []

    def preadv(fd: int, buffers: list[memoryview], offset: int, flags: int = 0, /) -> int:
        flags_seen.append(flags)
        if flags:
            raise OSError(errno.EOPNOTSUPP, "Operation not supported")
        return real_preadv(fd, buffers, offset, flags)

    monkeypatch.setattr("triochat.client.file_sender.os.preadv", preadv)
    with path.open("rb", buffering=0) as file:
        filler = FrameFiller(file, new_digest())
        buffer = memoryview(bytearray(FRAME))
        frames = []
        while True:
            used = filler.fill(buffer, cached_only=True)
            if used is None:
                used = filler.fill(buffer)
            if not used:
                break
            frames.append(bytes(buffer[:used]))
    assert b"".join(frames) == b"".join(
        encode_data(data[start : start + CHUNK_SIZE]) for start in range(0, len(data), CHUNK_SIZE)
    )
    assert flags_seen.count(0) == len(flags_seen) - 1  # one refused cached read, no more


@pytest.fixture
def tmpfs_file() -> Iterator[tuple[Path, bytes]]:
    """A file on /dev/shm (tmpfs, a file system without RWF_NOWAIT reads), and its bytes."""
    shm = Path("/dev/shm")
    if not shm.is_dir() or not os.access(shm, os.W_OK):
        pytest.skip("no writable /dev/shm here")
    data = file_data(CHUNK_SIZE + 77, seed=15)
    fd, name = tempfile.mkstemp(dir=shm, prefix="triochat-test-")
    os.write(fd, data)
    os.close(fd)
    yield Path(name), data
    os.unlink(name)


async def test_a_file_on_tmpfs_is_sent_whole(tmpfs_file: tuple[Path, bytes]) -> None:
    path, data = tmpfs_file
    with path.open("rb", buffering=0) as file:
        stream, sent = await sent_over_a_link(file)
    received = Received(stream)
    assert sent == len(data)
    assert received.data == data
