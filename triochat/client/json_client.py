"""``ChatClient.py <host> <port> <nickname> <clientID>`` (seed 003): the JSON client.

The launcher prints the banner and sends the join request before Trio starts (see ``early``).
This module waits for the answer (asking for another nickname on stdin while the server says
the one given is taken; ``disconnect`` there leaves), shows each broadcast as
``<date/time> :: <nickname>: <message>``, and on ``disconnect`` or end of stdin leaves with an
acknowledgement and prints the ``Summary:`` line.

Every object goes in a write of its own, paced (SPEC §4): the seed's servers ``json.loads``
each ``recv()`` and fail on two objects in one read.
"""

from __future__ import annotations

import signal
from collections.abc import AsyncIterator
from dataclasses import dataclass
from enum import Enum

import trio

from triochat.client.chat_commands import shown_lines, typed_event
from triochat.client.connection import LEAVE_GRACE, RECEIVE_SIZE, PacedSender, adopt
from triochat.client.early import EarlyStart
from triochat.client.terminal import StdinLines, say, stdin_is_terminal, warn
from triochat.clock import now_display
from triochat.events import (
    ChatMessage,
    Goodbye,
    Hello,
    Leave,
    Notice,
    PrivateMessage,
    PrivateSay,
    Renamed,
    Say,
    ServerEvent,
    Welcome,
)
from triochat.startup import EXIT_INTERRUPTED, ctrl_c_pending
from triochat.timestamps import display_time_of
from triochat.wire.common import MAX_SERVER_LINE_BYTES, NEED_DATA, RemoteProtocolError
from triochat.wire.json_lines import JsonClientCodec

DISCONNECT_COMMAND = "disconnect"


@dataclass
class SessionStats:
    """What the ``Summary:`` line reports; characters count message text only."""

    start: str
    messages_sent: int = 0
    messages_received: int = 0
    chars_sent: int = 0
    chars_received: int = 0

    def summary(self, end: str) -> str:
        """The exact ``Summary:`` line."""
        return (
            f"Summary: start:{self.start}, end:{end}, msg sent:{self.messages_sent}, "
            f"msg rcv:{self.messages_received}, char sent:{self.chars_sent}, "
            f"char rcv:{self.chars_received}"
        )


class ServerObjects:
    """JSON objects from the server as events; ``None`` once the server has closed.

    Attributes:
        codec: the connection's client-role codec; senders use its ``send`` too.
    """

    def __init__(self, stream: trio.abc.ReceiveStream) -> None:
        self._stream = stream
        self.codec = JsonClientCodec(MAX_SERVER_LINE_BYTES)
        self._unread: ServerEvent | None = None
        self.closed = False

    def unread(self, event: ServerEvent) -> None:
        """Have :meth:`next` return ``event`` again before anything new (one at most)."""
        self._unread = event

    async def closes_within(self, seconds: float) -> bool:
        """True if the server closes the connection within ``seconds`` (nothing is lost)."""
        with trio.move_on_after(seconds):
            event = await self.next()
            if event is None:
                return True
            self.unread(event)
        return False

    async def next(self) -> ServerEvent | None:
        """The next event from the server, or ``None`` at end of connection."""
        if self._unread is not None:
            unread, self._unread = self._unread, None
            return unread
        while True:
            try:
                event = self.codec.next_event()
            except RemoteProtocolError as error:
                warn(f"Bad data from the server: {error}")
                if error.recoverable:
                    continue
                # The stream can no longer be framed: treat it as the server going away.
                self.closed = True
                return None
            if event is not NEED_DATA:
                return event
            try:
                data = await self._stream.receive_some(RECEIVE_SIZE)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                data = b""
            if not data:
                self.closed = True
                return None
            self.codec.receive_data(data)


JOIN_REPLY_WAIT = 2.0
"""Seconds to wait for the answer to a join. Seed 003's server answers only a taken nickname,
so silence means accepted; triochat's answers at once, and the margin is for a loaded machine."""

IMPLIED_WELCOME = Welcome("", ())
"""What a server that does not acknowledge joins is taken to have said."""


def is_refusal(event: ServerEvent) -> bool:
    """True for an ``error`` object: it refuses a name or ends the session."""
    return isinstance(event, Notice) and event.is_error and not event.recoverable


async def join_reply(server: ServerObjects) -> Welcome | Notice | None:
    """The answer to a ``nickname`` object: a welcome (said or implied), a refusal, or None.

    A broadcast also means the join was accepted (only members get them); it stays for the
    chat loop to show. Other objects before the answer are not for a member yet: skipped.
    """
    with trio.move_on_after(JOIN_REPLY_WAIT):
        while (reply := await server.next()) is not None:
            if isinstance(reply, ChatMessage):
                server.unread(reply)
                return IMPLIED_WELCOME
            if isinstance(reply, Welcome) or (isinstance(reply, Notice) and is_refusal(reply)):
                return reply
        return None
    return IMPLIED_WELCOME


def show_reply(reply: ServerEvent, acknowledged: trio.Event) -> None:
    """What the JSON and menu clients do alike with a reply after joining."""
    if isinstance(reply, Goodbye):
        acknowledged.set()
    elif isinstance(reply, Notice):
        warn(f"Server: {reply.text}")


def server_went_away() -> int:
    """Say on stderr that the server closed the connection; the exit code for it."""
    warn("Connection closed by the server")
    return 1


REFUSED_CLOSE_WAIT = 0.25
"""Seconds to watch, after a refused nickname, whether the server closes the connection:
some servers do, and the user must not be asked for a name that nobody will read."""


class JoinEnded(Enum):
    """How joining ended without a name."""

    CLOSED = "the server closed the connection"
    LEFT = "the user left at the nickname prompt"
    INTERRUPTED = "Ctrl-C"


async def _join_unless_interrupted(
    interrupts: AsyncIterator[int],
    sender: PacedSender,
    server: ServerObjects,
    stdin: StdinLines,
    nickname: str,
    client_id: str,
) -> str | JoinEnded:
    """:func:`_join`, cut short by Ctrl-C (also one that came before Trio ran)."""
    if ctrl_c_pending():
        return JoinEnded.INTERRUPTED
    joined: str | JoinEnded = JoinEnded.INTERRUPTED
    async with trio.open_nursery() as nursery:

        async def stop_on_ctrl_c() -> None:
            async for _ in interrupts:
                nursery.cancel_scope.cancel()
                return

        nursery.start_soon(stop_on_ctrl_c)
        try:
            joined = await _join(sender, server, stdin, nickname, client_id)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            joined = JoinEnded.CLOSED
        nursery.cancel_scope.cancel()
    return joined


async def _join(
    sender: PacedSender,
    server: ServerObjects,
    stdin: StdinLines,
    nickname: str,
    client_id: str,
) -> str | JoinEnded:
    """Wait for the answer to the join request the launcher sent for ``nickname``.

    While the server refuses, ask for another nickname on stdin and try that.

    Returns:
        The name joined under, or why there is none.
    """
    while True:
        reply = await join_reply(server)
        if reply is None:
            return JoinEnded.CLOSED
        if isinstance(reply, Welcome):
            return nickname
        say(reply.text)
        if await server.closes_within(REFUSED_CLOSE_WAIT):
            return JoinEnded.CLOSED
        say("Enter a different nickname:")
        line = await stdin.readline()
        if line is None or line.strip() == DISCONNECT_COMMAND:
            return JoinEnded.LEFT
        nickname = line.strip()
        await sender.send(server.codec.send(Hello(nickname, client_id, now_display())))


async def run_json_client(start: EarlyStart, nickname: str, client_id: str, started: str) -> int:
    """Chat until ``disconnect`` or end of stdin (exit 0), or the server goes away (exit 1).

    Args:
        start: the connection, with the join request for ``nickname`` already sent.
        nickname: the nickname asked for.
        client_id: the client ID sent with it.
        started: the banner's date/time, the start of the ``Summary:``.
    """
    stream = await adopt(start)
    sender = PacedSender(stream, start.seconds_since_last_write())
    stats = SessionStats(start=started)
    server = ServerObjects(stream)
    stdin = StdinLines()
    exit_code = 0
    with trio.open_signal_receiver(signal.SIGINT) as interrupts:
        async with stream:
            joined = await _join_unless_interrupted(
                interrupts, sender, server, stdin, nickname, client_id
            )
            if isinstance(joined, JoinEnded):
                if joined is JoinEnded.CLOSED:
                    warn("Could not join the chat: the server closed the connection")
                say(stats.summary(now_display()))
                return {
                    JoinEnded.CLOSED: 1,
                    JoinEnded.LEFT: 0,
                    JoinEnded.INTERRUPTED: EXIT_INTERRUPTED,
                }[joined]
            joined_as = joined
            if stdin_is_terminal():
                say("Enter message:")
            leaving = False
            acknowledged = trio.Event()
            # Typed lines and the leave both write whole objects; the lock keeps them apart.
            sending = trio.Lock()
            async with trio.open_nursery() as nursery:

                async def show_incoming() -> None:
                    nonlocal exit_code
                    nonlocal joined_as
                    while (event := await server.next()) is not None:
                        if isinstance(event, ChatMessage):
                            shown_time = display_time_of(event.timestamp, now_display())
                            say(f"{shown_time} :: {event.sender}: {event.text}")
                            stats.messages_received += 1
                            stats.chars_received += len(event.text)
                            continue
                        lines = shown_lines(event, now_display())
                        if lines is None:
                            show_reply(event, acknowledged)
                            continue
                        for shown in lines:
                            say(shown)
                        if isinstance(event, PrivateMessage):
                            stats.messages_received += 1
                            stats.chars_received += len(event.text)
                        elif isinstance(event, Renamed) and event.old == joined_as:
                            # Our own rename: messages must carry the new nickname now.
                            joined_as = event.new
                    if not leaving:
                        exit_code = server_went_away()
                    nursery.cancel_scope.cancel()

                async def leave() -> None:
                    """Say ``disconnect``, give the server a moment to acknowledge, stop."""
                    nonlocal leaving
                    async with sending:
                        if leaving:
                            return
                        leaving = True
                        try:
                            await sender.send(server.codec.send(Leave(joined_as, client_id)))
                        except (trio.BrokenResourceError, trio.ClosedResourceError):
                            nursery.cancel_scope.cancel()
                            return
                    with trio.move_on_after(LEAVE_GRACE):
                        await acknowledged.wait()
                    nursery.cancel_scope.cancel()

                async def send_typed() -> None:
                    try:
                        while (line := await stdin.readline()) is not None:
                            if line.strip() == DISCONNECT_COMMAND:
                                break
                            if not line:
                                continue
                            try:
                                typed = typed_event(line, joined_as, now_display())
                            except RemoteProtocolError as error:
                                warn(str(error))  # a command's usage; nothing was sent
                                continue
                            async with sending:
                                if leaving:
                                    return
                                await sender.send(server.codec.send(typed))
                            if isinstance(typed, Say | PrivateSay):
                                stats.messages_sent += 1
                                stats.chars_sent += len(typed.text)
                    except (trio.BrokenResourceError, trio.ClosedResourceError):
                        return
                    await leave()

                async def leave_on_ctrl_c() -> None:
                    # Ctrl-C leaves like "disconnect" and still shows the Summary (seed 003:
                    # "upon exiting, the client displays statistics").
                    nonlocal exit_code
                    async for _ in interrupts:
                        exit_code = EXIT_INTERRUPTED
                        await leave()
                        return

                nursery.start_soon(show_incoming)
                nursery.start_soon(send_typed)
                nursery.start_soon(leave_on_ctrl_c)
    say(stats.summary(now_display()))
    return exit_code
