"""Timed reads and writes on one file connection, shared by the relay and the file agent.

Both ends of a transfer need the same three things: read the peer's handshake event, read more
frames, send frames, each within a stall timeout, with every way it can fail turned into one
exception whose text is fit to show the user.
"""

from __future__ import annotations

import contextlib
import mmap
import os
import platform
import socket
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

import trio

from triochat.wire.chunks import (
    CHUNK_SIZE,
    FRAME_OVERHEAD,
    FRAME_PREFIX_SIZE,
    FrameScanner,
    Handshake,
)
from triochat.wire.common import NEED_DATA, RemoteProtocolError

RECEIVE_SIZE = 64 * 1024
"""Bytes a handshake read takes at a time (the frames after it go to a :class:`FrameWindow`)."""
MAX_RECEIVE_LOW_WATER = 1024 * 1024
"""The most bytes a receive waits to gather: about one of the senders' frames. (Linux grows
the receive buffer to fit, up to half of ``tcp_rmem``'s maximum, 3 MiB by default.)"""
SLAB_SIZE = CHUNK_SIZE + FRAME_OVERHEAD
"""Bytes of one frame window buffer: exactly one of the senders' frames, so frames never
straddle the end of a buffer and nothing is moved when the window goes on to the next one."""


_Event = TypeVar("_Event")


def _kernel_at_least(major: int, minor: int) -> bool:
    if not sys.platform.startswith("linux"):
        return False
    try:
        found = tuple(int(part) for part in platform.release().split(".")[:2])
    except ValueError:
        return False
    return found >= (major, minor)


_LOW_WATER_GROWS_BUFFER = _kernel_at_least(4, 18)
"""Linux grows the receive buffer to fit ``SO_RCVLOWAT`` since 4.18; before, a mark above the
buffer's size would never be reached (the receive would wait for the stall timeout)."""
_DIRECT_CALLS = hasattr(os, "readv")
"""``os.readv`` on the socket's descriptor (POSIX); elsewhere Trio's socket methods."""


class TransferError(Exception):
    """This transfer cannot go on; ``str(error)`` says why, for the user."""


class TransferCutShort(TransferError):
    """The sender's connection ended before its end frame."""


class FileLink:
    """One file connection with a stall timeout on every read and write."""

    def __init__(self, stream: trio.abc.Stream, stall_timeout: float) -> None:
        self.stream = stream
        self.stall_timeout = stall_timeout
        """Seconds any wait of this transfer may take."""
        self._stall_timeout = stall_timeout
        # One receive buffer for the handshake; the frames are received by a FrameWindow.
        self._buffer = bytearray(RECEIVE_SIZE)
        self._view = memoryview(self._buffer)
        self._low_water = 1
        self._fd: int | None = None
        if isinstance(stream, trio.SocketStream) and _DIRECT_CALLS:
            self._fd = stream.socket.fileno()

    async def receive(self) -> memoryview:
        """The next bytes (empty at end of stream), for reading the handshake.

        A view into the link's own buffer, valid until the next ``receive``: readers copy
        what they keep (the handshake does).

        Raises:
            TransferError: nothing arrived within the stall timeout, or the peer hung up.
        """
        return self._view[: await self.receive_into(self._view)]

    def wake_for(self, count: int) -> None:
        """Wake a waiting receive only once ``count`` bytes have arrived (or the stream ends).

        A relay waiting for a 1 MiB frame would otherwise wake, read and scan for every 64 KiB
        the kernel hands over; ``SO_RCVLOWAT`` lets the kernel gather them. ``count`` must not
        be more than will surely come (the rest of a frame whose length is known), or the
        receive would wait for the stall timeout. A receive that finds bytes without waiting
        still returns them at once, so this only saves wake-ups.
        """
        count = max(1, min(count, MAX_RECEIVE_LOW_WATER))
        if not _LOW_WATER_GROWS_BUFFER:
            return
        if count != self._low_water and isinstance(self.stream, trio.SocketStream):
            with contextlib.suppress(OSError):
                self.stream.setsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT, count)
            self._low_water = count

    async def receive_into(self, view: memoryview) -> int:
        """Receive into ``view``; the count of bytes (0 at end of stream).

        On a socket this calls the system directly and waits only when nothing has arrived:
        Trio's socket methods cost more per call than the system call itself, and a relay makes
        thousands of calls per GiB. (Not a checkpoint unless it waits; :meth:`send` is one.)

        Raises:
            TransferError: as :meth:`receive`.
        """
        if self._fd is None:
            return await self._receive_some_into(view)
        await trio.lowlevel.checkpoint_if_cancelled()
        while True:
            try:
                return os.readv(self._fd, [view])
            except BlockingIOError:
                await self._wait(trio.lowlevel.wait_readable, "a peer stalled")
            except OSError as error:
                raise TransferError("a peer hung up") from error

    async def _receive_some_into(self, view: memoryview) -> int:
        try:
            with trio.fail_after(self._stall_timeout):
                data = await self.stream.receive_some(len(view))
        except trio.TooSlowError as error:
            raise TransferError("a peer stalled") from error
        except (trio.BrokenResourceError, trio.ClosedResourceError) as error:
            raise TransferError("a peer hung up") from error
        view[: len(data)] = data
        return len(data)

    async def send(self, data: bytes | bytearray | memoryview) -> None:
        """Send ``data`` (backpressure: waits while the peer is slow, up to the timeout).

        On a socket this writes directly, like :meth:`receive_into`; it always checkpoints.

        Raises:
            TransferError: the peer stopped reading, or hung up.
        """
        if self._fd is None:
            await self._send_all(data)
            return
        waited = False
        with memoryview(data) as whole:
            rest = whole
            while rest:
                try:
                    rest = rest[os.write(self._fd, rest) :]
                except BlockingIOError:
                    await self._wait(trio.lowlevel.wait_writable, "a peer stopped reading")
                    waited = True
                except OSError as error:
                    raise TransferError("a peer hung up") from error
            rest.release()
        if not waited:
            await trio.lowlevel.checkpoint()

    async def _send_all(self, data: bytes | bytearray | memoryview) -> None:
        try:
            with trio.fail_after(self._stall_timeout):
                await self.stream.send_all(data)
        except trio.TooSlowError as error:
            raise TransferError("a peer stopped reading") from error
        except (trio.BrokenResourceError, trio.ClosedResourceError) as error:
            raise TransferError("a peer hung up") from error

    async def _wait(self, until_ready: Callable[[int], Awaitable[None]], stalled: str) -> None:
        assert self._fd is not None
        try:
            with trio.fail_after(self._stall_timeout):
                await until_ready(self._fd)
        except trio.TooSlowError as error:
            raise TransferError(stalled) from error
        except trio.ClosedResourceError as error:
            raise TransferError("a peer hung up") from error

    async def read_handshake(self, handshake: Handshake[_Event]) -> _Event:
        """The peer's handshake event; bytes after it stay in ``handshake`` (``take_rest``).

        Raises:
            TransferError: a bad header, a stall, or the peer hung up first.
        """
        while True:
            try:
                event = handshake.next_event()
            except RemoteProtocolError as error:
                raise TransferError(str(error)) from error
            if event is not NEED_DATA:
                return event
            data = await self.receive()
            if not data:
                raise TransferError("a peer hung up")
            handshake.receive_data(data)


class _Slab:
    """One buffer of a frame window, and how many runs handed out from it are still held.

    ``aligned``: the buffer starts :data:`FRAME_PREFIX_SIZE` bytes before a page boundary, so
    the payload of a frame received at its start lies on the boundary, where the requester
    can write it to disk directly (``O_DIRECT``, see ``client/disk_writer.py``).
    """

    def __init__(self, capacity: int, *, aligned: bool = False) -> None:
        if aligned:
            area = mmap.mmap(-1, capacity + mmap.PAGESIZE)  # anonymous: page-aligned
            start = mmap.PAGESIZE - FRAME_PREFIX_SIZE
            self.view = memoryview(area)[start : start + capacity]
        else:
            self.view = memoryview(bytearray(capacity))
        self.held = 0


@dataclass(eq=False)
class FrameRun:
    """Whole verified frames, back to back, as they arrived: a view into a window's buffer.

    ``payloads`` are the data frames' payloads (views into ``frames``) when asked for. Call
    :meth:`release` once done with them: until then the window does not reuse the buffer.
    """

    frames: memoryview
    payloads: list[memoryview]
    _slab: _Slab
    _window: FrameWindow

    def release(self) -> None:
        """The views are no longer used; their buffer may be received into again."""
        self._window._release(self._slab)


class FrameWindow:
    """Receives a transfer's frames and verifies them where they land: nothing is copied.

    Bytes are received at the end of the current buffer; the complete frames among them are
    checked by a :class:`~triochat.wire.chunks.FrameScanner` and handed out as a
    :class:`FrameRun`. When the frame being received would not fit in what is left of the
    buffer, the window goes on to a free buffer, moving the part of that frame already
    received (with the senders' frame size, nothing: buffers hold whole frames). A reader that
    keeps runs for a while (the requester, writing them in a worker thread) holds at most
    ``buffers`` buffers; when all are held, receiving waits for a release, which is the
    backpressure (and if none comes within the link's stall timeout, the transfer fails).

    Args:
        link: the file connection.
        scanner: checks the frames (and keeps the size and digest).
        first: bytes already received after the handshake.
        buffers: how many buffers runs may hold at once.
        capacity: bytes per buffer (grown for a larger frame, up to the largest allowed).
        aligned: place each buffer so that a frame received at its start has its payload on
            a page boundary (see :class:`_Slab`).
    """

    def __init__(
        self,
        link: FileLink,
        scanner: FrameScanner,
        first: bytes = b"",
        *,
        buffers: int = 2,
        capacity: int = SLAB_SIZE,
        aligned: bool = False,
    ) -> None:
        self._link = link
        self._scanner = scanner
        self._capacity = capacity
        self._aligned = aligned
        self._limit = max(buffers, 2)
        self._slabs = [_Slab(max(capacity, len(first)), aligned=aligned)]
        self._current = self._slabs[0]
        self._current.view[: len(first)] = first
        self._start = 0
        self._end = len(first)
        self._released = trio.Event()

    async def next_run(self, *, payloads: bool = False) -> FrameRun:
        """The next whole verified frames (at least one), waiting for them to arrive.

        Raises:
            TransferCutShort: the stream ended before the end frame.
            TransferError: the peer stalled or hung up.
            RemoteProtocolError: (fatal) a bad frame (see ``FrameScanner.scan``).
        """
        while True:
            slab = self._current
            found: list[memoryview] = []
            used = self._scanner.scan(
                slab.view[self._start : self._end], found if payloads else None
            )
            if used:
                run = FrameRun(slab.view[self._start : self._start + used], found, slab, self)
                self._start += used
                slab.held += 1
                return run
            if self._scanner.finished:
                raise TransferError("no frames after the end of the file")
            missing = await self._make_room()
            self._link.wake_for(missing)
            count = await self._link.receive_into(self._current.view[self._end :])
            if not count:
                raise TransferCutShort(f"transfer cut short after {self._scanner.size} bytes")
            self._end += count

    async def _make_room(self) -> int:
        """Make sure the frame being received fits after ``_start`` in the current buffer;
        return how many of its bytes are still to come."""
        partial = self._current.view[self._start : self._end]
        needed = self._scanner.frame_length(partial)
        if self._start + needed <= len(self._current.view):
            return needed - len(partial)
        slab = await self._free_slab(needed, moving=len(partial) > 0)
        slab.view[: len(partial)] = partial
        self._current = slab
        self._start, self._end = 0, len(partial)
        return needed - len(partial)

    async def _free_slab(self, needed: int, *, moving: bool) -> _Slab:
        """A buffer no run holds, with room for ``needed`` bytes; waits for a release when
        every buffer is held.

        When the bytes to move are in the current buffer, it cannot take them itself; if no
        other buffer is free but nothing holds the current one either, a new buffer takes its
        place (its bytes are copied out before it is dropped).
        """
        while True:
            free = [slab for slab in self._slabs if not slab.held]
            others = [slab for slab in free if not (moving and slab is self._current)]
            roomy = [slab for slab in others if len(slab.view) >= needed]
            if roomy:
                return roomy[0]
            if len(self._slabs) < self._limit:
                slab = self._new_slab(needed)
                self._slabs.append(slab)
                return slab
            if free:
                # A sender's frames larger than the buffers: one grows (is replaced), once.
                index = self._slabs.index(others[0] if others else free[0])
                self._slabs[index] = slab = self._new_slab(needed)
                return slab
            try:
                with trio.fail_after(self._link.stall_timeout):
                    await self._released.wait()
            except trio.TooSlowError as error:
                # Nothing released a buffer: the reader's writes (the disk) stopped.
                raise TransferError("writing the file stalled") from error

    def _new_slab(self, needed: int) -> _Slab:
        return _Slab(max(self._capacity, needed), aligned=self._aligned)

    def _release(self, slab: _Slab) -> None:
        slab.held -= 1
        if not slab.held:
            self._released.set()
            self._released = trio.Event()
