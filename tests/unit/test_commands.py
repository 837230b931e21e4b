"""A chatting member's events as room calls, and the message rate (no sockets, no real time)."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from triochat.events import (
    ChatMessage,
    Dialect,
    FileRequest,
    Goodbye,
    Leave,
    Notice,
    Presence,
    Say,
    ServerEvent,
    Who,
)
from triochat.room import Delivery, Member, Room
from triochat.server.commands import Commands
from triochat.server.config import ServerConfig

from .helpers import delivered, make_member


def join(room: Room, name: str) -> tuple[Member, trio.MemoryReceiveChannel[Delivery]]:
    member, receive = make_member(name, port=1)
    room.join(member)
    return member, receive


async def test_each_event_becomes_its_room_call() -> None:
    room = Room()
    ann, ann_box = join(room, "ann")
    _bob, bob_box = join(room, "bob")
    finished: list[ServerEvent] = []
    commands = Commands(room, ServerConfig(), finished.append)
    commands.dispatch(ann, Say("hi"))
    commands.dispatch(ann, Say("not mine", nickname="bob"))
    commands.dispatch(ann, Who())
    commands.dispatch(ann, FileRequest("bob", "a.txt"))
    commands.dispatch(ann, Leave())
    [message] = delivered(bob_box)
    assert isinstance(message, ChatMessage) and (message.sender, message.text) == ("ann", "hi")
    told = delivered(ann_box)
    assert [(n.text, n.is_error) for n in told if isinstance(n, Notice)] == [
        ("Nickname 'bob' is not yours: you joined as 'ann'", True),
        ("File transfer is not available here", True),
    ]
    assert finished == [Goodbye("ann")]
    [presence] = [e for e in told if isinstance(e, Presence)]
    assert [(m.name, m.dialect) for m in presence.members] == [
        ("ann", Dialect.LINE),
        ("bob", Dialect.LINE),
    ]


async def test_a_fast_sender_waits_for_its_rate_and_is_told_once(
    autojump_clock: trio.testing.MockClock,
) -> None:
    room = Room()
    ann, ann_box = join(room, "ann")
    _bob, bob_box = join(room, "bob")
    commands = Commands(room, ServerConfig(message_rate=2, message_burst=1), lambda _: None)
    start = trio.current_time()
    for number in range(5):
        await commands.handle(ann, Say(f"m{number}"))
    # One at once, then one every half second: nothing dropped, nothing early.
    assert trio.current_time() - start == pytest.approx(2.0)
    assert [e.text for e in delivered(bob_box) if isinstance(e, ChatMessage)] == [
        "m0",
        "m1",
        "m2",
        "m3",
        "m4",
    ]
    notices = [e.text for e in delivered(ann_box) if isinstance(e, Notice)]
    assert len(notices) == 1 and notices[0].startswith("Slow down: at most 2 messages per second")
