"""``ChatClient.py <port>`` (seed 000): the first stdin line is the name, then messages.

Every line from the server is printed as it is: ``<sender name>: <message>`` and the server's
``*** `` notices (a refused name's reason, after which the next stdin line is the new try).
"""

from __future__ import annotations

import trio

from triochat.client.connection import LEAVE_GRACE, CannotConnect, ServerLines, connect
from triochat.client.terminal import StdinLines, say, stdin_is_terminal, warn


async def run_line_client(host: str, port: int, *, prompt_name: bool | None = None) -> int:
    """Chat until stdin ends (exit 0) or the server goes away (exit 1)."""
    try:
        stream = await connect(host, port)
    except CannotConnect as error:
        warn(str(error))
        return 1
    if prompt_name if prompt_name is not None else stdin_is_terminal():
        say("Enter your name:")
    exit_code = 0
    leaving = False
    async with stream, trio.open_nursery() as nursery:

        async def print_server_lines() -> None:
            nonlocal exit_code
            lines = ServerLines(stream)
            while (line := await lines.readline()) is not None:
                say(line)
            if not leaving:
                warn("Connection closed by the server")
                exit_code = 1
            nursery.cancel_scope.cancel()

        async def send_stdin_lines() -> None:
            nonlocal leaving
            stdin = StdinLines()
            try:
                while (line := await stdin.readline()) is not None:
                    await stream.send_all((line + "\n").encode())
                leaving = True
                await stream.send_eof()
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                return  # the reader says the server is gone
            # Let the server confirm by closing; everything sent is already delivered to it.
            await trio.sleep(LEAVE_GRACE)
            nursery.cancel_scope.cancel()

        nursery.start_soon(print_server_lines)
        nursery.start_soon(send_stdin_lines)
    return exit_code
