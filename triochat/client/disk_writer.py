"""A delivery's writes to disk, straight from the receive buffers where the kernel allows.

Buffered writes copy every byte into the page cache, and on a virtual machine a page cache
that has to grow costs more again (each new page is faulted in from the host): a third of
the requester's CPU went there. With ``O_DIRECT`` the disk reads the receive buffer itself,
so the requester neither copies the file nor fills the page cache with it, and the fsync
before the rename has only metadata left. ``O_DIRECT`` wants the buffer's address, its
length and the file offset aligned to the block size: the frame window places each
standard frame's payload on a page boundary (``FrameWindow(aligned=True)``), and 1 MiB
chunks are whole pages. Whatever does not fit that (a short last chunk, another sender's
chunk size, a file system without ``O_DIRECT``) goes through the page cache as before; the
fsync covers both.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import queue
import threading
from collections.abc import Callable
from pathlib import Path

import trio

from triochat.transfer_io import FrameRun

ALIGNMENT = 4096
"""Bytes that direct writes align to: a page, which satisfies 512- and 4096-byte disks."""
_IOV_MAX = 1024
"""The most buffers one ``pwritev`` takes (Linux's IOV_MAX)."""


def is_page_aligned(view: memoryview) -> bool:
    """Whether ``view`` starts on a page boundary (a writable, contiguous buffer)."""
    try:
        return ctypes.addressof(ctypes.c_char.from_buffer(view)) % ALIGNMENT == 0
    except (TypeError, ValueError):  # read-only or empty: never written directly
        return False


def open_direct_writer(path: Path) -> int | None:
    """A second descriptor on ``path`` that writes around the page cache, or None where the
    system or the file system has no ``O_DIRECT``."""
    flag = getattr(os, "O_DIRECT", 0)
    if not flag:
        return None
    try:
        return os.open(path, os.O_WRONLY | flag)
    except OSError:
        return None


class DiskWriter:
    """Writes a file's chunks in order, each at its offset, directly when aligned.

    Args:
        fd: the file, opened for ordinary (buffered) writes.
        direct_fd: the same file opened with ``O_DIRECT`` (see :func:`open_direct_writer`), or None.
            The writer owns it and closes it in :meth:`close`.
    """

    def __init__(self, fd: int, direct_fd: int | None = None) -> None:
        self.fd = fd
        """The file's ordinary descriptor (flushes and fsyncs go through it)."""
        self._direct_fd = direct_fd
        self.offset = 0
        """Bytes written so far: where the next chunk goes."""
        self.direct_bytes = 0
        """Of those, bytes that went around the page cache."""

    @property
    def buffered_bytes(self) -> int:
        """Bytes written through the page cache so far."""
        return self.offset - self.direct_bytes

    def write(self, chunks: list[memoryview]) -> None:
        """Write ``chunks`` one after the other (in a worker thread: it blocks).

        Raises:
            OSError: the disk refused (full, failing).
        """
        chunks = [chunk for chunk in chunks if len(chunk)]  # an empty frame writes nothing
        start = 0
        while start < len(chunks):
            direct = self._fits_direct(chunks[start])
            end = start + 1
            while (
                end < len(chunks)
                and end - start < _IOV_MAX
                and direct == self._fits_direct(chunks[end], offset_ok=True)
            ):
                end += 1
            self._write_run(chunks[start:end], direct)
            start = end

    def _fits_direct(self, chunk: memoryview, *, offset_ok: bool = False) -> bool:
        # Within a run of whole-page chunks the offset stays aligned once the first one is.
        return (
            self._direct_fd is not None
            and (offset_ok or self.offset % ALIGNMENT == 0)
            and len(chunk) % ALIGNMENT == 0
            and is_page_aligned(chunk)
        )

    def _write_run(self, chunks: list[memoryview], direct: bool) -> None:
        pending = chunks
        while pending:
            fd = self._direct_fd if direct and self._direct_fd is not None else self.fd
            try:
                written = os.pwritev(fd, pending, self.offset)
            except OSError as error:
                if fd != self.fd and error.errno == errno.EINVAL:
                    # The file system takes O_DIRECT at open but not for these writes.
                    self._stop_direct()
                    continue
                raise
            if written <= 0:
                raise OSError(errno.EIO, "the disk took no bytes")
            self.offset += written
            if fd != self.fd:
                self.direct_bytes += written
            pending = _after(pending, written)
            if written % ALIGNMENT:
                direct = False  # what is left is no longer aligned: through the page cache

    def _stop_direct(self) -> None:
        if self._direct_fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._direct_fd)
            self._direct_fd = None

    def close(self) -> None:
        """Close the direct descriptor (the caller closes ``fd``)."""
        self._stop_direct()


def _after(chunks: list[memoryview], count: int) -> list[memoryview]:
    """What is left of ``chunks`` once their first ``count`` bytes are written."""
    rest = list(chunks)
    while rest and count >= len(rest[0]):
        count -= len(rest.pop(0))
    if count:
        rest[0] = rest[0][count:]
    return rest


class DiskThread:
    """A delivery's own thread that writes verified runs as they come, in order.

    The receiving side hands each run over without waiting (:meth:`submit`); the thread
    writes its payloads, flushes now and then, and gives the run's buffer back on the event
    loop. One thread for the whole delivery costs a wake-up per run, where a
    ``trio.to_thread`` hop per run cost about 100 µs of CPU here (more again with many
    transfers at once).

    Args:
        disk: where the payloads go.
        flush_every: bytes written through the page cache between early ``fdatasync`` calls
            (direct writes leave nothing there to flush).
        on_error: called on the event loop when a write or a flush fails (the error is in
            :attr:`error`); the caller stops receiving.
    """

    def __init__(self, disk: DiskWriter, *, flush_every: int, on_error: Callable[[], None]):
        self._disk = disk
        self._flush_every = flush_every
        self._on_error = on_error
        self._token = trio.lowlevel.current_trio_token()
        self._queue: queue.SimpleQueue[FrameRun | bool] = queue.SimpleQueue()
        self._done = trio.Event()
        self.error: OSError | None = None
        """The first write or flush error."""
        self._thread = threading.Thread(target=self._run, name="triochat-disk", daemon=True)
        self._thread.start()

    def submit(self, run: FrameRun) -> None:
        """Write ``run``'s payloads after those submitted before; its buffer is released once
        written (or skipped, after an error)."""
        self._queue.put(run)

    async def finish(self, *, sync: bool) -> None:
        """No more runs: wait until every one is written and, with ``sync``, the file is
        fsynced. Shielded from cancellation: the thread writes from the caller's buffers."""
        self._queue.put(sync)
        with trio.CancelScope(shield=True):
            await self._done.wait()

    def _run(self) -> None:
        unflushed = 0
        while not isinstance(item := self._queue.get(), bool):
            if self.error is None:
                try:
                    buffered = self._disk.buffered_bytes
                    self._disk.write(item.payloads)
                    unflushed += self._disk.buffered_bytes - buffered
                    if unflushed >= self._flush_every:
                        unflushed = 0
                        os.fdatasync(self._disk.fd)
                except OSError as error:
                    self._fail(error)
            self._token.run_sync_soon(item.release)
        if item and self.error is None:
            try:
                os.fsync(self._disk.fd)
            except OSError as error:
                self._fail(error)
        self._token.run_sync_soon(self._done.set)

    def _fail(self, error: OSError) -> None:
        self.error = error
        self._token.run_sync_soon(self._on_error)
