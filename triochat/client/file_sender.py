"""The owner's side of a transfer: the file read straight into frames, sent as they fill.

Each read lands where its frame's payload goes in a buffer of :data:`FRAMES_PER_READ`
frames; the prefix, the chunk's CRC-32C and the running XXH3-128 digest are filled in around
it, and the buffer goes out in one send. Reading and hashing run in a worker thread (both
release the GIL, and a slow disk must not stall the chat), one thread hop per buffer; no
chunk is copied in Python.
"""

from __future__ import annotations

from typing import Any, Protocol

import trio

from triochat.transfer_io import FileLink
from triochat.wire.chunks import (
    CHUNK_SIZE,
    FRAME_OVERHEAD,
    FRAME_PREFIX_SIZE,
    encode_end,
    seal_data_frame,
)

FRAMES_PER_READ = 1
"""Frames filled per thread hop: 1 MiB of file data at the senders' chunk size."""
_FRAME_SIZE = CHUNK_SIZE + FRAME_OVERHEAD
_PAYLOAD = slice(FRAME_PREFIX_SIZE, FRAME_PREFIX_SIZE + CHUNK_SIZE)


class ReadableFile(Protocol):
    """An unbuffered binary file (``open(path, "rb", buffering=0)``)."""

    def readinto(self, buffer: memoryview, /) -> int | None: ...


class FrameFiller:
    """Fills a buffer with data frames read from ``file``, keeping the whole-file digest."""

    def __init__(self, file: ReadableFile, digest: Any) -> None:
        self._file = file
        self._digest = digest
        self.sent = 0
        """File bytes put into frames so far."""
        self._error: OSError | None = None

    def fill(self, buffer: memoryview) -> int:
        """Frames for the next file bytes, from the start of ``buffer``; their total size.

        0 means the end of the file. A short read ends the buffer early (a file that grows
        while it is sent goes on in the next one).

        Raises:
            OSError: the file cannot be read (after the frames read before the error went).
        """
        if self._error is not None:
            raise self._error
        used = 0
        while used + _FRAME_SIZE <= len(buffer):
            frame = buffer[used : used + _FRAME_SIZE]
            payload = frame[_PAYLOAD]
            try:
                count = self._file.readinto(payload) or 0
            except OSError as error:
                if not used:
                    raise
                self._error = error
                break
            if not count:
                break
            self._digest.update(payload[:count])
            used += seal_data_frame(frame, count)
            self.sent += count
            if count < CHUNK_SIZE:
                break
        return used


async def send_file(link: FileLink, file: ReadableFile, digest: Any) -> int:
    """Send the file as data frames and then the end frame; the bytes of file data sent.

    Raises:
        OSError: reading the file failed (the caller tells the relay with an error frame).
        TransferError: the relay stalled or hung up.
    """
    filler = FrameFiller(file, digest)
    buffer = memoryview(bytearray(FRAMES_PER_READ * _FRAME_SIZE))
    while used := await trio.to_thread.run_sync(filler.fill, buffer):
        await link.send(buffer[:used])
    await link.send(encode_end(filler.sent, digest.digest()))
    return filler.sent
