"""The owner's side of a transfer: the file read straight into frames, sent as they fill.

Each read lands where the frame's payload goes, :data:`READ_PIECE` bytes at a time, and
each piece goes into the chunk's CRC-32C and the running XXH3-128 digest at once, while it
is still in the CPU's cache; the prefix and the CRC are filled in around the payload and the
frame goes out in one send. Reading and hashing run in a worker thread (both release the GIL,
and a slow disk must not stall the chat), one thread hop per 1 MiB frame; no chunk is copied
in Python.

(Reading with ``O_DIRECT``, as the requester writes, was tried and measured slower: 511-630
MB/s against 854-936 for 1 GiB, the owner's CPU unchanged. The file being sent is usually in
the page cache, and a direct read goes to the disk anyway, beside the requester's writes.)
"""

from __future__ import annotations

from typing import Any, Protocol

import trio

from triochat.transfer_io import FileLink
from triochat.wire.chunks import (
    CHUNK_SIZE,
    FRAME_OVERHEAD,
    FRAME_PREFIX_SIZE,
    checksum,
    encode_end,
    seal_data_frame,
)

_PAYLOAD = slice(FRAME_PREFIX_SIZE, FRAME_PREFIX_SIZE + CHUNK_SIZE)
READ_PIECE = 256 * 1024
"""Bytes read and hashed at a time: a piece is hashed right after it lands, while it is still
in the CPU's cache (a whole MiB often is not, beside other processes doing the same)."""


class ReadableFile(Protocol):
    """An unbuffered binary file (``open(path, "rb", buffering=0)``)."""

    def readinto(self, buffer: memoryview, /) -> int | None: ...


class FrameFiller:
    """Makes data frames of a file's bytes, keeping the whole-file digest (XXH3-128)."""

    def __init__(self, file: ReadableFile, digest: Any) -> None:
        self._file = file
        self._digest = digest
        self.sent = 0
        """File bytes put into frames so far."""
        self._error: OSError | None = None

    def fill(self, frame: memoryview) -> int:
        """One data frame of the next file bytes at the start of ``frame``; its size, or 0 at
        the end of the file. A short read ends the frame early (a file that grows while it is
        sent goes on in the next one).

        Raises:
            OSError: the file cannot be read (after the bytes read before the error went out).
        """
        if self._error is not None:
            raise self._error
        payload = frame[_PAYLOAD]
        count = crc = 0
        while count < len(payload):
            piece = payload[count : count + READ_PIECE]
            try:
                got = self._file.readinto(piece) or 0
            except OSError as error:
                if not count:
                    raise
                self._error = error
                break
            self._digest.update(piece[:got])
            crc = checksum(piece[:got], crc)
            count += got
            if got < len(piece):
                break
        if not count:
            return 0
        self.sent += count
        return seal_data_frame(frame, count, crc)


async def send_file(link: FileLink, file: ReadableFile, digest: Any) -> int:
    """Send the file as data frames and then the end frame; the bytes of file data sent.

    Raises:
        OSError: reading the file failed (the caller tells the relay with an error frame).
        TransferError: the relay stalled or hung up.
    """
    filler = FrameFiller(file, digest)
    frame = memoryview(bytearray(CHUNK_SIZE + FRAME_OVERHEAD))
    while used := await trio.to_thread.run_sync(filler.fill, frame):
        await link.send(frame[:used])
    await link.send(encode_end(filler.sent, digest.digest()))
    return filler.sent
