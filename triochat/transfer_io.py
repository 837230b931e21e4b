"""Timed reads and writes on one file connection, shared by the relay and the file agent.

Both ends of a transfer need the same three things: read the peer's handshake event, read more
frames, send frames, each within a stall timeout, with every way it can fail turned into one
exception whose text is fit to show the user.
"""

from __future__ import annotations

from typing import TypeVar

import trio

from triochat.wire.chunks import Handshake
from triochat.wire.common import NEED_DATA, RemoteProtocolError

RECEIVE_SIZE = 1024 * 1024
"""Bytes read at a time: the most either end holds of one transfer."""


_Event = TypeVar("_Event")


class TransferError(Exception):
    """This transfer cannot go on; ``str(error)`` says why, for the user."""


class FileLink:
    """One file connection with a stall timeout on every read and write."""

    def __init__(self, stream: trio.abc.Stream, stall_timeout: float) -> None:
        self.stream = stream
        self._stall_timeout = stall_timeout
        # One receive buffer for the whole transfer: a fresh 1 MiB object per read costs an
        # allocation and its page faults each time, more than the copy the reader makes.
        self._buffer = bytearray(RECEIVE_SIZE)
        self._view = memoryview(self._buffer)

    async def receive(self) -> bytes | memoryview:
        """The next bytes (empty at end of stream).

        On a socket this is a view into the link's own buffer, valid until the next
        ``receive``: readers copy what they keep (both decoders do).

        Raises:
            TransferError: nothing arrived within the stall timeout, or the peer hung up.
        """
        try:
            with trio.fail_after(self._stall_timeout):
                if isinstance(self.stream, trio.SocketStream):
                    count = await self.stream.socket.recv_into(self._view)
                    return self._view[:count]
                return bytes(await self.stream.receive_some(RECEIVE_SIZE))
        except trio.TooSlowError as error:
            raise TransferError("a peer stalled") from error
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as error:
            # OSError: the raw socket's own errors (reset, closed), which SocketStream would
            # have turned into the stream errors above.
            raise TransferError("a peer hung up") from error

    async def send(self, data: bytes) -> None:
        """Send ``data`` (backpressure: waits while the peer is slow, up to the timeout).

        Raises:
            TransferError: the peer stopped reading, or hung up.
        """
        try:
            with trio.fail_after(self._stall_timeout):
                await self.stream.send_all(data)
        except trio.TooSlowError as error:
            raise TransferError("a peer stopped reading") from error
        except (trio.BrokenResourceError, trio.ClosedResourceError) as error:
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
