"""``ChatClient.py <port>`` (seed 000): the first stdin line is the name, then messages.

It speaks the seed's wire (SPEC §3): the name alone in its own write and every message in a
write of its own, without a newline, paced; it leaves by closing the connection. Every line
from the server is printed as it is (an unterminated chunk once the server goes quiet):
``<sender name>: <message>`` and the server's ``*** `` notices (a refused name's reason,
after which the next stdin line is the new try).
"""

from __future__ import annotations

import trio

from triochat.client.connection import LEAVE_GRACE, PacedSender, ServerLines, adopt
from triochat.client.early import EarlyStart
from triochat.client.terminal import StdinLines, say, warn
from triochat.events import Say
from triochat.wire.common import MAX_SERVER_LINE_BYTES
from triochat.wire.lines import LineClientCodec


async def run_line_client(start: EarlyStart) -> int:
    """Chat until stdin ends (exit 0) or the server goes away (exit 1).

    Args:
        start: the connection, with the name already sent by the launcher (see ``early``).
    """
    stream = await adopt(start)
    sender = PacedSender(stream, start.seconds_since_last_write())
    codec = LineClientCodec(MAX_SERVER_LINE_BYTES)
    exit_code = 0
    leaving = False
    async with stream, trio.open_nursery() as nursery:

        async def print_server_lines() -> None:
            nonlocal exit_code
            lines = ServerLines(stream, codec)
            while (line := await lines.readline()) is not None:
                say(line)
            if not leaving:
                warn("Connection closed by the server")
                exit_code = 1
            nursery.cancel_scope.cancel()

        async def send_stdin_lines() -> None:
            nonlocal leaving
            stdin = StdinLines(0, start.stdin_rest, ended=start.stdin_ended)
            try:
                while (line := await stdin.readline()) is not None:
                    await sender.send(codec.send(Say(line)))  # an empty line sends nothing
                leaving = True
                if not isinstance(stream, trio.abc.HalfCloseableStream):
                    # TLS cannot half-close: everything is sent, so close; the server
                    # reads it all before it sees the end.
                    await stream.aclose()
                    nursery.cancel_scope.cancel()
                    return
                await stream.send_eof()
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                return  # the reader says the server is gone
            # Let the server confirm by closing; everything sent is already delivered to it.
            await trio.sleep(LEAVE_GRACE)
            nursery.cancel_scope.cancel()

        nursery.start_soon(print_server_lines)
        nursery.start_soon(send_stdin_lines)
    return exit_code
