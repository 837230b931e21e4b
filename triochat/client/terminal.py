"""Async lines from standard input, and whole-line output to stdout.

Standard input may be a terminal, a pipe or a redirected file; epoll cannot wait on a regular
file, so reads run in a worker thread. They use ``os.read`` on the descriptor rather than
``sys.stdin`` so that an abandoned read never holds the buffered reader's lock while the
interpreter shuts down.
"""

from __future__ import annotations

import os

import trio

from triochat.client.early import say, stdin_is_terminal, warn

__all__ = ["MAX_STDIN_LINE", "STDIN_READ_SIZE", "StdinLines", "say", "stdin_is_terminal", "warn"]

STDIN_READ_SIZE = 64 * 1024
MAX_STDIN_LINE = 1024 * 1024
"""A typed or piped line longer than this is cut into pieces of this size."""


class StdinLines:
    """Lines from a file descriptor (standard input by default), without their line endings.

    Args:
        fd: the descriptor to read.
        already_read: bytes the launcher read from it before Trio started (see ``early``).
        ended: the descriptor had already reached its end then.
    """

    def __init__(self, fd: int = 0, already_read: bytes = b"", *, ended: bool = False) -> None:
        self._fd = fd
        self._buffer = bytearray(already_read)
        self._eof = ended

    async def readline(self) -> str | None:
        """The next line, or ``None`` at end of input (a last unterminated line counts)."""
        while True:
            newline = self._buffer.find(b"\n")
            if newline >= 0:
                raw = bytes(self._buffer[:newline])
                del self._buffer[: newline + 1]
                return _decode(raw)
            if len(self._buffer) >= MAX_STDIN_LINE:
                raw = bytes(self._buffer[:MAX_STDIN_LINE])
                del self._buffer[:MAX_STDIN_LINE]
                return _decode(raw)
            if self._eof:
                if self._buffer:
                    raw = bytes(self._buffer)
                    del self._buffer[:]
                    return _decode(raw)
                return None
            data = await trio.to_thread.run_sync(
                os.read, self._fd, STDIN_READ_SIZE, abandon_on_cancel=True
            )
            if data:
                self._buffer += data
            else:
                self._eof = True


def _decode(raw: bytes) -> str:
    if raw.endswith(b"\r"):
        raw = raw[:-1]
    return raw.decode("utf-8", errors="replace")
