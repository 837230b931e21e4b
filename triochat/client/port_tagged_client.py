"""``mychatclient.py`` (seed 004): lines out, lines in, ``exit`` to leave."""

from __future__ import annotations

import trio

from triochat.client.connection import LEAVE_GRACE, CannotConnect, ServerLines, connect
from triochat.client.terminal import StdinLines, say, warn


async def run_port_tagged_client(host: str = "127.0.0.1", port: int = 12000) -> int:
    """Chat until ``exit`` or end of stdin (exit 0), or until the server goes away (exit 1).

    The server echoes ``exit`` before it closes; that echo is the goodbye, not a message.
    """
    try:
        stream = await connect(host, port)
    except CannotConnect as error:
        warn(str(error))
        return 1
    say("Connected to chat server. Type 'exit' to leave.")
    exit_code = 0
    leaving = False
    async with stream, trio.open_nursery() as nursery:

        async def print_server_lines() -> None:
            nonlocal exit_code
            lines = ServerLines(stream)
            while (line := await lines.readline()) is not None:
                if leaving and line == "exit":
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
                    if line is None or line.strip() == "exit":
                        leaving = True
                        await stream.send_all(b"exit\n")
                        break
                    await stream.send_all((line + "\n").encode())
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                return
            await trio.sleep(LEAVE_GRACE)
            say("Disconnected from server")
            nursery.cancel_scope.cancel()

        nursery.start_soon(print_server_lines)
        nursery.start_soon(send_stdin_lines)
    return exit_code
