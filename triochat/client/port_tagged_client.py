"""``mychatclient.py`` (seed 004): lines out, lines in, ``exit`` to leave.

It speaks the seed's wire (SPEC §3): each message in a write of its own without a newline,
paced, and ``exit`` as exactly those four bytes, the only goodbye a seed-004 server knows.
"""

from __future__ import annotations

import trio

from triochat.client.connection import LEAVE_GRACE, PacedSender, ServerLines, adopt
from triochat.client.early import EarlyStart
from triochat.client.terminal import StdinLines, say, warn
from triochat.events import Leave, Say
from triochat.wire.common import MAX_SERVER_LINE_BYTES
from triochat.wire.lines import PortTaggedClientCodec


async def run_port_tagged_client(start: EarlyStart) -> int:
    """Chat until ``exit`` or end of stdin (exit 0), or until the server goes away (exit 1).

    The server echoes ``exit`` before it closes; that echo is the goodbye, not a message.
    """
    stream = await adopt(start)
    sender = PacedSender(stream)
    codec = PortTaggedClientCodec(MAX_SERVER_LINE_BYTES)
    exit_code = 0
    leaving = False
    async with stream, trio.open_nursery() as nursery:

        async def print_server_lines() -> None:
            nonlocal exit_code
            lines = ServerLines(stream, codec)
            while (line := await lines.readline()) is not None:
                if leaving and line == codec.EXIT:
                    break
                say(line)
            if leaving:
                say("Disconnected from server")
            else:
                warn("Connection closed by the server")
                exit_code = 1
            nursery.cancel_scope.cancel()

        async def send_stdin_lines() -> None:
            nonlocal leaving
            stdin = StdinLines()
            try:
                while True:
                    line = await stdin.readline()
                    if line is None or line.strip() == codec.EXIT:
                        leaving = True
                        await sender.send(codec.send(Leave()))
                        break
                    await sender.send(codec.send(Say(line)))
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                return
            await trio.sleep(LEAVE_GRACE)
            say("Disconnected from server")
            nursery.cancel_scope.cancel()

        nursery.start_soon(print_server_lines)
        nursery.start_soon(send_stdin_lines)
    return exit_code
