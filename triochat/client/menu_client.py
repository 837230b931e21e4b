"""``ChatClient.py -l <listen port> -p <server port>`` (seed 001): menu chat with files.

The first stdin line is the user's name; then the seed's menu, prompts and goodbye, to the
letter. Chat arrives as ``<sender>: <message>`` lines at any time (each line whole, so never
mixed into a prompt). File requests return to the menu at once; transfers run in the file
agent's tasks, concurrently with chat and with each other, in both directions.
"""

from __future__ import annotations

from pathlib import Path

import trio

from triochat.client.connection import LEAVE_GRACE, PacedSender, adopt
from triochat.client.early import EarlyStart, show_status
from triochat.client.file_agent import FileAgent
from triochat.client.json_client import ServerObjects, join_reply, server_went_away, show_reply
from triochat.client.terminal import StdinLines, say
from triochat.clock import now_display
from triochat.events import (
    ChatMessage,
    FileAnnouncement,
    FileFailed,
    FileRequest,
    Hello,
    Leave,
    Say,
    Welcome,
)
from triochat.wire.json_lines import MENU_CLIENT_ID, JsonClientCodec

MENU = (
    "Enter an option ('m', 'f', 'x'):",
    "  (M)essage (send)",
    "  (F)ile (request)",
    " e(X)it",
)
GOODBYE = "closing your sockets...goodbye"


async def _join(
    sender: PacedSender, server: ServerObjects, stdin: StdinLines, name: str | None, file_port: int
) -> str | None:
    """Join under ``name`` (already requested by the launcher) or, while the server refuses,
    under the next stdin lines; the name joined under, or None."""
    while name is not None:
        reply = await join_reply(server)
        if reply is None:
            return None
        if isinstance(reply, Welcome):
            return name
        say(f"*** {reply.text}")
        line = await stdin.readline()
        if line is None:
            return None
        name = line.strip()
        hello = Hello(name, MENU_CLIENT_ID, now_display(), file_port)
        await sender.send(server.codec.send(hello))
    return None


async def run_menu_client(
    start: EarlyStart, name: str | None, file_port: int, share_dir: Path
) -> int:
    """Run the menu until ``x`` or end of stdin (exit 0), or the server goes away (exit 1).

    Args:
        start: the chat connection and the file port's listeners; the join request for
            ``name`` is already sent (``None``: stdin ended before a name).
        name: the name asked for.
        file_port: the port the listeners are bound to.
        share_dir: where files are served from and saved to.
    """
    listeners = [trio.SocketListener(trio.socket.from_stdlib_socket(s)) for s in start.listeners]
    stream = await adopt(start)
    sender = PacedSender(stream, start.seconds_since_last_write())
    stdin = StdinLines(0, start.stdin_rest, ended=start.stdin_ended)
    agent = FileAgent(share_dir, say, progress=show_status)
    server = ServerObjects(stream)
    exit_code = 0
    async with stream:
        try:
            joined = await _join(sender, server, stdin, name, file_port)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            joined = None
        if joined is None:
            for listener in listeners:
                await listener.aclose()
            say(GOODBYE)
            return 1 if server.closed else 0  # stdin ended first: a normal goodbye
        leaving = False
        acknowledged = trio.Event()
        async with trio.open_nursery() as nursery:
            await nursery.start(agent.serve, listeners)

            async def show_incoming() -> None:
                nonlocal exit_code
                while (event := await server.next()) is not None:
                    if isinstance(event, ChatMessage):
                        say(f"{event.sender}: {event.text}")
                    elif isinstance(event, FileAnnouncement):
                        agent.announce(event)
                    elif isinstance(event, FileFailed):
                        agent.transfer_failed(event)
                    else:
                        show_reply(event, acknowledged)
                if not leaving:
                    exit_code = server_went_away()
                nursery.cancel_scope.cancel()

            async def run_menu() -> None:
                nonlocal leaving
                try:
                    await _menu_loop(sender, server.codec, stdin, joined)
                    leaving = True
                    say(GOODBYE)
                    await sender.send(server.codec.send(Leave(joined, MENU_CLIENT_ID)))
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    return
                with trio.move_on_after(LEAVE_GRACE):
                    await acknowledged.wait()
                nursery.cancel_scope.cancel()

            nursery.start_soon(show_incoming)
            nursery.start_soon(run_menu)
    return exit_code


async def _menu_loop(
    sender: PacedSender, codec: JsonClientCodec, stdin: StdinLines, name: str
) -> None:
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
                await sender.send(codec.send(Say(text, name, now_display())))
        elif choice == "f":
            say("Who owns the file?")
            owner = await stdin.readline()
            if owner is None:
                return
            say("Which file do you want?")
            filename = await stdin.readline()
            if filename is None:
                return
            await sender.send(codec.send(FileRequest(owner.strip(), filename.strip())))
