"""Connecting to the server, paced writes and reading its lines, shared by the TCP clients.

Our clients speak the seeds' wire (SPEC §3): the seeds' servers take each ``recv()`` as one
message, so every message goes in a write of its own, :data:`WRITE_GAP` after the previous
one; and their servers add no newline, so an unterminated chunk is shown as a line once
:data:`QUIET_FLUSH` passes without more.
"""

from __future__ import annotations

import math

import trio

from triochat.client.early import CannotStart, EarlyStart
from triochat.client.terminal import warn
from triochat.wire.common import NEED_DATA, RemoteProtocolError
from triochat.wire.lines import LineClientCodec, PortTaggedClientCodec

RECEIVE_SIZE = 64 * 1024
LEAVE_GRACE = 0.8
"""Seconds a leaving client waits for the server to confirm; exit stays under one second."""

WRITE_GAP = 0.15
"""Least seconds between two writes: longer than our server's 0.1 s quiet time, so each
message is read on its own there too."""

QUIET_FLUSH = 0.02
"""Seconds an unterminated chunk from the server waits for more before it is shown as a line:
less than the 0.05 s between two writes of our server to an unframed peer."""


async def adopt(start: EarlyStart) -> trio.abc.Stream:
    """A Trio stream over the connection the launcher made before Trio started.

    With ``--tls`` it is a TLS stream: the handshake happens here, then what the launcher
    kept for after it (the name) is written.

    Raises:
        CannotStart: the TLS handshake failed (a certificate that does not verify, a server
            that does not speak TLS).
    """
    stream = trio.SocketStream(trio.socket.from_stdlib_socket(start.sock))
    if start.tls is None:
        return stream
    secured = trio.SSLStream(
        stream, start.tls, server_hostname=start.server_hostname, https_compatible=True
    )
    try:
        await secured.do_handshake()
        if pending := start.take_pending():
            await secured.send_all(pending)
    except trio.BrokenResourceError as error:
        await trio.aclose_forcefully(stream)
        reason = error.__cause__ or error
        raise CannotStart(f"TLS with the chat server failed: {reason}") from None
    return secured


class PacedSender:
    """Writes whole messages to the server, each alone, :data:`WRITE_GAP` apart.

    Safe to share between tasks: writes take turns.

    Args:
        stream: the connection.
        seconds_since_last_write: how long ago something was last written to it (before
            Trio ran), or ``None`` if nothing was.
    """

    def __init__(
        self, stream: trio.abc.SendStream, seconds_since_last_write: float | None = None
    ) -> None:
        self._stream = stream
        self._lock = trio.Lock()
        self._last_write = (
            -math.inf
            if seconds_since_last_write is None
            else trio.current_time() - seconds_since_last_write
        )

    async def send(self, data: bytes) -> None:
        """Write ``data`` in one go, no sooner than :data:`WRITE_GAP` after the last write.

        Raises:
            trio.BrokenResourceError: the connection broke.
            trio.ClosedResourceError: the stream was closed.
        """
        if not data:
            return
        async with self._lock:
            await trio.sleep_until(self._last_write + WRITE_GAP)
            await self._stream.send_all(data)
            self._last_write = trio.current_time()


class ServerLines:
    """Lines from the server (the line and port-tagged dialects).

    A chunk that sits unterminated for :data:`QUIET_FLUSH` seconds is a line of its own: the
    seeds' servers and ours, to a client that sends no newlines, end nothing in a newline.
    """

    def __init__(
        self, stream: trio.abc.ReceiveStream, codec: LineClientCodec | PortTaggedClientCodec
    ) -> None:
        self._stream = stream
        self._codec = codec
        self._eof = False

    async def readline(self) -> str | None:
        """The next line from the server, or ``None`` once it has closed the connection."""
        while True:
            try:
                line = self._codec.next_event()
            except RemoteProtocolError as error:
                # Our server's lines fit MAX_SERVER_LINE_BYTES; say so if another's do not.
                warn(f"Dropped a line from the server: {error}")
                continue
            if line is not NEED_DATA:
                return line.text
            if self._eof:
                rest = self._codec.flush_idle()
                return None if rest is None else rest.text
            if self._codec.has_partial:
                with trio.move_on_after(QUIET_FLUSH):
                    await self._receive()
                    continue
                partial = self._codec.flush_idle()
                if partial is not None:
                    return partial.text
            else:
                await self._receive()

    async def _receive(self) -> None:
        try:
            data = await self._stream.receive_some(RECEIVE_SIZE)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            data = b""
        if data:
            self._codec.receive_data(data)
        else:
            self._eof = True
