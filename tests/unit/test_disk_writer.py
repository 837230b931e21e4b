"""DiskWriter: chunks land in the file in order whichever way they go (around the page cache
when aligned, through it otherwise), and every refusal of O_DIRECT falls back, never fails."""

from __future__ import annotations

import errno
import mmap
import os
import random
from collections.abc import Iterator
from pathlib import Path

import pytest

from triochat.client.disk_writer import (
    ALIGNMENT,
    DiskWriter,
    is_page_aligned,
    open_direct_writer,
)

MIB = 1024 * 1024


def aligned_view(data: bytes) -> memoryview:
    """``data`` in a page-aligned buffer (as the requester's frame window places payloads)."""
    area = mmap.mmap(-1, max(len(data), 1))
    view = memoryview(area)[: len(data)]
    view[:] = data
    return view


@pytest.fixture
def target(tmp_path: Path) -> Iterator[tuple[Path, int]]:
    path = tmp_path / "copy.part"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    yield path, fd
    os.close(fd)


def direct_or_skip(path: Path) -> int:
    direct = open_direct_writer(path)
    if direct is None:
        pytest.skip(f"no O_DIRECT for {path.parent} on this system")
    return direct


def test_page_alignment_is_told_from_the_address() -> None:
    area = memoryview(mmap.mmap(-1, 2 * ALIGNMENT))
    assert is_page_aligned(area)
    assert is_page_aligned(area[ALIGNMENT:])
    assert not is_page_aligned(area[5:])
    assert not is_page_aligned(memoryview(b"read-only bytes"))  # never written directly
    assert not is_page_aligned(area[:0])


def test_aligned_chunks_go_around_the_page_cache_and_land_in_order(
    target: tuple[Path, int],
) -> None:
    path, fd = target
    chunks = [random.Random(seed).randbytes(MIB) for seed in range(3)]
    writer = DiskWriter(fd, direct_or_skip(path))
    try:
        writer.write([aligned_view(chunk) for chunk in chunks])
    finally:
        writer.close()
    assert writer.direct_bytes == 3 * MIB
    assert writer.offset == 3 * MIB
    assert path.read_bytes() == b"".join(chunks)


def test_unaligned_and_short_chunks_go_through_the_page_cache_in_order(
    target: tuple[Path, int],
) -> None:
    # A buffer off a page boundary, then a short chunk (the file's last), then an aligned
    # whole-page chunk that now sits at an unaligned offset: all buffered, all in place.
    path, fd = target
    odd = memoryview(bytearray(ALIGNMENT + 7))[7:]
    odd[:] = b"a" * ALIGNMENT
    short = aligned_view(b"b" * 1000)
    late = aligned_view(b"c" * ALIGNMENT)
    writer = DiskWriter(fd, direct_or_skip(path))
    try:
        writer.write([odd, short, late])
    finally:
        writer.close()
    assert writer.direct_bytes == 0
    assert path.read_bytes() == b"a" * ALIGNMENT + b"b" * 1000 + b"c" * ALIGNMENT


def test_a_direct_write_refused_with_einval_falls_back_for_good(
    target: tuple[Path, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Some file systems take O_DIRECT at open and refuse the writes: nothing is lost.
    path, fd = target
    direct = os.open(path, os.O_WRONLY)  # stands in for the O_DIRECT descriptor
    real_pwritev = os.pwritev
    refused: list[int] = []

    def pwritev(fd_: int, buffers: list[memoryview], offset: int, /) -> int:
        if fd_ == direct:
            refused.append(offset)
            raise OSError(errno.EINVAL, "Invalid argument")
        return real_pwritev(fd_, buffers, offset)

    monkeypatch.setattr("triochat.client.disk_writer.os.pwritev", pwritev)
    chunks = [bytes([n]) * ALIGNMENT for n in range(4)]
    writer = DiskWriter(fd, direct)
    writer.write([aligned_view(chunk) for chunk in chunks[:2]])
    writer.write([aligned_view(chunk) for chunk in chunks[2:]])
    writer.close()
    assert refused == [0]  # tried once, then never again
    assert writer.direct_bytes == 0
    assert path.read_bytes() == b"".join(chunks)
    with pytest.raises(OSError):
        os.fstat(direct)  # the writer closed it


def test_partial_writes_go_on_where_they_stopped(
    target: tuple[Path, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    path, fd = target
    real_pwritev = os.pwritev

    def stingy(fd_: int, buffers: list[memoryview], offset: int, /) -> int:
        # At most 1,000 bytes per call, as a signal or a nearly full disk may leave it.
        first = buffers[0][:1000]
        return real_pwritev(fd_, [first], offset)

    monkeypatch.setattr("triochat.client.disk_writer.os.pwritev", stingy)
    data = random.Random(1).randbytes(10_000)
    writer = DiskWriter(fd)
    writer.write([memoryview(data[:3333]), memoryview(data[3333:])])
    assert writer.offset == len(data)
    assert path.read_bytes() == data


def test_a_full_disk_is_raised(target: tuple[Path, int], monkeypatch: pytest.MonkeyPatch) -> None:
    _, fd = target

    def full(fd_: int, buffers: list[memoryview], offset: int, /) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("triochat.client.disk_writer.os.pwritev", full)
    with pytest.raises(OSError, match="No space left"):
        DiskWriter(fd).write([memoryview(b"data")])


def test_a_write_that_takes_nothing_is_an_error_not_a_loop(
    target: tuple[Path, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    _, fd = target
    monkeypatch.setattr("triochat.client.disk_writer.os.pwritev", lambda *args: 0)
    with pytest.raises(OSError, match="took no bytes"):
        DiskWriter(fd).write([memoryview(b"data")])


def test_without_o_direct_there_is_no_direct_descriptor(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delattr(os, "O_DIRECT", raising=False)
    path = tmp_path / "file"
    path.write_bytes(b"")
    assert open_direct_writer(path) is None


def test_a_file_system_refusing_o_direct_at_open_gives_none(tmp_path: Path) -> None:
    # A path that cannot be opened at all stands in for the refusal (EINVAL on some mounts).
    assert open_direct_writer(tmp_path / "missing" / "file") is None


def test_empty_chunks_write_nothing_and_fail_nothing(target: tuple[Path, int]) -> None:
    # An empty data frame is well formed; some other sender may send one.
    path, fd = target
    writer = DiskWriter(fd)
    writer.write([memoryview(b""), memoryview(b"abc"), memoryview(b""), memoryview(b"de")])
    writer.write([memoryview(b"")])
    assert writer.offset == 5
    assert path.read_bytes() == b"abcde"
