"""``ChatClient.py -l <listen port> -p <server port>`` (seed 001): menu chat with files.

The first stdin line is the user's name; then the seed's menu, prompts and goodbye, to the
letter. Chat arrives as ``<sender>: <message>`` lines at any time (each line whole, so never
mixed into a prompt). File requests return to the menu at once; transfers run in the file
agent's tasks, concurrently with chat and with each other, in both directions.
"""

from __future__ import annotations

from pathlib import Path

import trio

from triochat.client.connection import LEAVE_GRACE, CannotConnect, connect
from triochat.client.file_agent import FileAgent
from triochat.client.json_client import ServerObjects, join_reply, server_went_away, show_reply
from triochat.client.terminal import StdinLines, say, stdin_is_terminal, warn
from triochat.timestamps import now_display
from triochat.wire.json_lines import Broadcast, JsonClientCodec

MENU = (
    "Enter an option ('m', 'f', 'x'):",
    "  (M)essage (send)",
    "  (F)ile (request)",
    " e(X)it",
)
GOODBYE = "closing your sockets...goodbye"
MENU_CLIENT_ID = "menu"


async def _join(
    stream: trio.SocketStream, server: ServerObjects, stdin: StdinLines, file_port: int
) -> str | None:
    """Join under the first stdin line (or the next ones, while refused); the name, or None."""
    if stdin_is_terminal():
        say("Enter your name:")
    while True:
        line = await stdin.readline()
        if line is None:
            return None
        name = line.strip()
        await stream.send_all(
            JsonClientCodec.nickname(name, MENU_CLIENT_ID, now_display(), file_port)
        )
        reply = await join_reply(server)
        if reply is None:
            return None
        if reply.type == "welcome":
            return name
        say(f"*** {reply.message}")


async def run_menu_client(host: str, server_port: int, listen_port: int, share_dir: Path) -> int:
    """Run the menu until ``x`` or end of stdin (exit 0), or the server goes away (exit 1)."""
    try:
        listeners = await trio.open_tcp_listeners(listen_port)
    except OSError as error:
        warn(f"Cannot listen for files on port {listen_port}: {error.strerror or error}")
        return 1
    try:
        stream = await connect(host, server_port)
    except CannotConnect as error:
        warn(str(error))
        return 1
    stdin = StdinLines()
    agent = FileAgent(share_dir, say)
    server = ServerObjects(stream)
    exit_code = 0
    async with stream:
        try:
            name = await _join(stream, server, stdin, listen_port)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            name = None
        if name is None:
            say(GOODBYE)
            return 1 if server.closed else 0  # stdin ended first: a normal goodbye
        leaving = False
        acknowledged = trio.Event()
        async with trio.open_nursery() as nursery:
            await nursery.start(agent.serve, listeners)

            async def show_incoming() -> None:
                nonlocal exit_code
                while (event := await server.next()) is not None:
                    if isinstance(event, Broadcast):
                        say(f"{event.nickname}: {event.message}")
                    elif event.type in ("file_fetch", "file_incoming"):
                        peer_key = "requester" if event.type == "file_fetch" else "owner"
                        agent.announce(
                            "fetch" if event.type == "file_fetch" else "deliver",
                            str(event.fields.get("token", "")),
                            str(event.fields.get("filename", "")),
                            str(event.fields.get(peer_key, "")),
                        )
                    elif event.type == "file_failed":
                        agent.transfer_failed(
                            str(event.fields.get("token", "")),
                            str(event.fields.get("filename", "")),
                            str(event.fields.get("owner", "")),
                            event.message,
                        )
                    else:
                        show_reply(event, acknowledged)
                if not leaving:
                    exit_code = server_went_away()
                nursery.cancel_scope.cancel()

            async def run_menu() -> None:
                nonlocal leaving
                try:
                    await _menu_loop(stream, stdin, name)
                    leaving = True
                    say(GOODBYE)
                    await stream.send_all(JsonClientCodec.disconnect(name, MENU_CLIENT_ID))
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    return
                with trio.move_on_after(LEAVE_GRACE):
                    await acknowledged.wait()
                nursery.cancel_scope.cancel()

            nursery.start_soon(show_incoming)
            nursery.start_soon(run_menu)
    return exit_code


async def _menu_loop(stream: trio.SocketStream, stdin: StdinLines, name: str) -> None:
    """Show the menu and act on options until ``x`` or end of stdin."""
    while True:
        for line in MENU:
            say(line)
        option = await stdin.readline()
        if option is None:
            return
        choice = option.strip().lower()
        if choice == "x":
            return
        if choice == "m":
            say("Enter your message:")
            text = await stdin.readline()
            if text is None:
                return
            if text:
                await stream.send_all(JsonClientCodec.message(name, text, now_display()))
        elif choice == "f":
            say("Who owns the file?")
            owner = await stdin.readline()
            if owner is None:
                return
            say("Which file do you want?")
            filename = await stdin.readline()
            if filename is None:
                return
            await stream.send_all(JsonClientCodec.file_request(owner.strip(), filename.strip()))
