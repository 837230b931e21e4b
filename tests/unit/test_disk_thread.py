"""DiskThread: a delivery's writes in a thread of its own, in order, each buffer given back on
the event loop; errors stop the writing and say so; finishing waits for the thread."""

from __future__ import annotations

import errno
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import cast

import pytest
import trio
import trio.testing

from triochat.client.disk_writer import DiskThread, DiskWriter
from triochat.transfer_io import FrameRun


class FakeRun:
    """What the thread needs of a FrameRun: payloads, and a release to call back."""

    def __init__(self, *payloads: bytes) -> None:
        self.payloads = [memoryview(payload) for payload in payloads]
        self.released_in_trio = False

    def release(self) -> None:
        trio.lowlevel.current_task()  # raises outside the event loop's thread
        self.released_in_trio = True


def run(*payloads: bytes) -> tuple[FakeRun, FrameRun]:
    fake = FakeRun(*payloads)
    return fake, cast(FrameRun, fake)


@pytest.fixture
def target(tmp_path: Path) -> Iterator[tuple[Path, DiskWriter]]:
    path = tmp_path / "copy.part"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    yield path, DiskWriter(fd)
    os.close(fd)


def never() -> None:
    raise AssertionError("on_error called")


async def test_runs_are_written_in_order_and_released_on_the_event_loop(
    target: tuple[Path, DiskWriter],
) -> None:
    path, disk = target
    thread = DiskThread(disk, flush_every=1 << 30, on_error=never)
    fakes = []
    for payloads in ([b"one ", b"two "], [b"three "], [b"", b"four"]):
        fake, frame_run = run(*payloads)
        fakes.append(fake)
        thread.submit(frame_run)
    await thread.finish(sync=False)
    assert path.read_bytes() == b"one two three four"
    assert all(fake.released_in_trio for fake in fakes)
    assert thread.error is None


async def test_finishing_complete_fsyncs_after_every_write(
    target: tuple[Path, DiskWriter], monkeypatch: pytest.MonkeyPatch
) -> None:
    _, disk = target
    calls: list[str] = []
    monkeypatch.setattr("triochat.client.disk_writer.os.fsync", lambda fd: calls.append("fsync"))
    monkeypatch.setattr(
        "triochat.client.disk_writer.os.fdatasync", lambda fd: calls.append("fdatasync")
    )
    real_write = disk.write

    def write(chunks: list[memoryview]) -> None:
        calls.append("write")
        real_write(chunks)

    monkeypatch.setattr(disk, "write", write)
    thread = DiskThread(disk, flush_every=10, on_error=never)
    for payload in (b"x" * 6, b"y" * 6, b"z"):
        thread.submit(run(payload)[1])
    await thread.finish(sync=True)
    # An early flush once 10 bytes went through the page cache; the fsync after the last.
    assert calls == ["write", "write", "fdatasync", "write", "fsync"]


async def test_an_unfinished_delivery_is_not_fsynced(
    target: tuple[Path, DiskWriter], monkeypatch: pytest.MonkeyPatch
) -> None:
    _, disk = target
    calls: list[int] = []
    monkeypatch.setattr("triochat.client.disk_writer.os.fsync", calls.append)
    thread = DiskThread(disk, flush_every=1 << 30, on_error=never)
    thread.submit(run(b"partial")[1])
    await thread.finish(sync=False)
    assert calls == []


async def test_a_write_error_is_kept_reported_once_and_stops_the_writing(
    target: tuple[Path, DiskWriter], monkeypatch: pytest.MonkeyPatch
) -> None:
    path, disk = target
    real_write = disk.write

    def write(chunks: list[memoryview]) -> None:
        if bytes(chunks[0]).startswith(b"bad"):
            raise OSError(errno.ENOSPC, "No space left on device")
        real_write(chunks)

    monkeypatch.setattr(disk, "write", write)
    reported: list[str] = []
    thread = DiskThread(disk, flush_every=1 << 30, on_error=lambda: reported.append("stop"))
    fakes = [run(b"good ")[0], run(b"bad")[0], run(b"never")[0]]
    for fake in fakes:
        thread.submit(cast(FrameRun, fake))
    await thread.finish(sync=True)
    assert reported == ["stop"]
    assert thread.error is not None and thread.error.errno == errno.ENOSPC
    assert path.read_bytes() == b"good "
    assert all(fake.released_in_trio for fake in fakes)  # every buffer given back


async def test_finishing_waits_for_the_write_in_progress_even_when_cancelled(
    target: tuple[Path, DiskWriter], monkeypatch: pytest.MonkeyPatch
) -> None:
    # The thread writes from the caller's buffers: a cancelled delivery must not free them
    # (or close the file) while a write is still under way.
    path, disk = target
    entered, gate = threading.Event(), threading.Event()
    real_write = disk.write

    def slow_write(chunks: list[memoryview]) -> None:
        entered.set()
        gate.wait()
        real_write(chunks)

    monkeypatch.setattr(disk, "write", slow_write)
    thread = DiskThread(disk, flush_every=1 << 30, on_error=never)
    thread.submit(run(b"in flight")[1])
    await trio.to_thread.run_sync(entered.wait)
    finished: list[bool] = []

    async def finish_cancelled() -> None:
        with trio.CancelScope() as scope:
            scope.cancel()
            await thread.finish(sync=False)
        finished.append(True)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(finish_cancelled)
        await trio.testing.wait_all_tasks_blocked()
        assert finished == []  # cancelled, and still waiting for the write
        gate.set()
    assert finished == [True]
    assert path.read_bytes() == b"in flight"
