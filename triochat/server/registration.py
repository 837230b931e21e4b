"""A new TCP connection's first moments: its dialect from the first bytes, then a name.

:func:`register` ends with the member in the room and its welcome queued, or with nothing
(the peer left, sent no acceptable name in time, or broke the protocol), having told the peer
why in its own dialect.
"""

from __future__ import annotations

from collections.abc import Callable

import trio

from triochat.events import Dialect, Goodbye, Hello, Leave, Notice, Welcome
from triochat.room import Delivery, Member, NameTaken, Room
from triochat.server.config import ServerConfig
from triochat.server.reader import EventReader, Reader, ServerCodec, sniff_codec
from triochat.server.writer import MemberWriter
from triochat.text import InvalidName
from triochat.wire.common import RemoteProtocolError

WELCOME_ROSTER = 100
"""Most member names a JSON ``welcome`` lists."""

MemberFactory = Callable[[str, str | None, int | None], Member]
"""Makes the member for an accepted (name, client id, file port)."""


async def register(
    stream: trio.abc.Stream,
    codec: ServerCodec | None,
    writer: MemberWriter,
    room: Room,
    config: ServerConfig,
    new_member: MemberFactory,
    *,
    fixed_name: str | None = None,
) -> tuple[Member, Reader] | None:
    """Find the dialect (unless ``codec`` is given), then join the room under a name.

    ``fixed_name`` joins without asking (port-tagged members). Sets ``writer.codec`` once the
    dialect is known. Returns the member and the reader to go on with.
    """
    with trio.move_on_after(config.registration_timeout):
        codec = codec or await sniff_codec(stream, config)
        if codec is None:
            return None
        writer.codec = codec
        reader: Reader = EventReader(stream, codec, config)
        if codec.dialect is Dialect.WEB:
            # Only a page's codec says WEB; its module is loaded by then (see sniff_codec).
            from triochat.server.web import WebSocketReader
            from triochat.wire.websocket import WebSocketServerCodec

            assert isinstance(codec, WebSocketServerCodec)
            reader = WebSocketReader(stream, codec, config, writer)
        member = await _take_a_name(reader, writer, room, new_member, fixed_name)
        return None if member is None else (member, reader)
    with trio.move_on_after(config.close_grace):
        await writer.send_direct(Notice("Timed out waiting for a nickname", is_error=True))
    return None


async def _take_a_name(
    reader: Reader,
    writer: MemberWriter,
    room: Room,
    new_member: MemberFactory,
    fixed_name: str | None,
) -> Member | None:
    codec = writer.codec
    if fixed_name is not None:
        try:
            member = new_member(fixed_name, None, None)
            await room.reserve(member)
            return admit(room, member, codec)
        except (InvalidName, NameTaken) as error:
            await writer.send_direct(Notice(str(error), is_error=True))
            return None
    while True:
        try:
            event = await reader.next_event()
        except RemoteProtocolError as error:
            await writer.send_direct(Notice(str(error), is_error=True))
            if not error.recoverable:
                return None
            continue
        if event is None:
            return None
        if isinstance(event, Leave):
            await writer.send_direct(Goodbye(""))
            return None
        if not isinstance(event, Hello):
            await writer.send_direct(Notice("Send your nickname first", is_error=True))
            continue
        try:
            member = new_member(event.name, event.client_id, event.file_port)
            # The name is claimed first (across the cluster with --cluster), then the join
            # and the welcome follow in one synchronous step.
            await room.reserve(member)
            return admit(room, member, codec, history=event.history)
        except (InvalidName, NameTaken) as error:
            await writer.send_direct(Notice(str(error), is_error=True))


def admit(room: Room, member: Member, codec: ServerCodec, *, history: int | None = None) -> Member:
    """Join ``member`` and queue its welcome, then the last ``history`` messages if it asked;
    raises InvalidName or NameTaken."""
    room.join(member)
    codec.name_accepted()
    # Queued in the same synchronous step as the join, so it precedes every broadcast.
    # Only the JSON dialect and the page show the roster, and only its first names: copying
    # every name for every join would make N joins cost N squared.
    shows_roster = codec.dialect in (Dialect.JSON, Dialect.WEB)
    roster = room.names(limit=WELCOME_ROSTER) if shows_roster else []
    member.deliver_nowait(Delivery(Welcome(member.name, tuple(roster))))
    if history:
        # In the same step too: no live message can slip in between the replay and the
        # broadcasts that follow it, so nothing is seen twice or missed.
        room.replay(member, history)
    return member
