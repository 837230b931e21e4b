"""Private messages, renames, presence and history in the room and through a member's
commands (SPEC §11): no sockets, the autojump clock where time matters."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from triochat.events import (
    ChatMessage,
    Dialect,
    HistoryReplay,
    HistoryRequest,
    Notice,
    Presence,
    PrivateMessage,
    PrivateSay,
    Rename,
    Renamed,
    Say,
    SetNotices,
    Who,
)
from triochat.history import History
from triochat.room import Delivery, Member, NameTaken, NoSuchMember, Room
from triochat.server.commands import Commands
from triochat.server.config import ServerConfig
from triochat.text import InvalidName

from .helpers import NOW, Recorder, delivered, make_member


def join(
    room: Room, name: str, **fields: object
) -> tuple[Member, trio.MemoryReceiveChannel[Delivery]]:
    member, box = make_member(name)
    for key, value in fields.items():
        setattr(member, key, value)
    room.join(member)
    return member, box


def notices(box: trio.MemoryReceiveChannel[Delivery]) -> list[tuple[str, bool]]:
    return [(e.text, e.is_error) for e in delivered(box) if isinstance(e, Notice)]


# --- private messages -------------------------------------------------------------------------


def test_a_private_message_reaches_only_its_recipient_and_never_history() -> None:
    watcher = Recorder()
    room = Room(observer=watcher, history=History(10))
    ann, ann_box = join(room, "ann")
    _bob, bob_box = join(room, "Bob")
    _cat, cat_box = join(room, "cat")
    message = room.private(ann, "bob", "psst\nforged", received_at=NOW)
    assert delivered(bob_box) == [message]
    assert (message.sender, message.recipient, message.text) == ("ann", "Bob", "psst\\x0aforged")
    assert (message.timestamp, message.display_time) == (NOW, NOW)
    assert delivered(cat_box) == [] and delivered(ann_box) == []
    assert room.history is not None and len(room.history) == 0
    assert watcher.lines[-1] == "private ann -> Bob: psst\\x0aforged"
    assert room.statistics().private_messages == 1
    with pytest.raises(NoSuchMember):
        room.private(ann, "nobody", "hello?", received_at=NOW)


def test_a_private_message_to_nobody_is_a_recoverable_error_for_the_sender() -> None:
    room = Room()
    ann, ann_box = join(room, "ann")
    Commands(room, ServerConfig(), lambda _: None).dispatch(ann, PrivateSay("zed", "hi"))
    assert notices(ann_box) == [("No member called 'zed' here", True)]


# --- renames ----------------------------------------------------------------------------------


def test_a_rename_frees_the_old_name_at_once_and_tells_those_who_asked() -> None:
    watcher = Recorder()
    room = Room(observer=watcher)
    ann, ann_box = join(room, "ann")
    _bob, bob_box = join(room, "bob", wants_notices=True)
    _cat, cat_box = join(room, "cat")
    assert room.rename(ann, "Anna") == "ann"
    assert ann.name == "Anna" and room.find("anna") is ann and room.find("ann") is None
    assert room.names() == ["Anna", "bob", "cat"]  # its place in join order is kept
    assert delivered(bob_box) == [Renamed("ann", "Anna")]
    assert delivered(cat_box) == []
    assert delivered(ann_box) == [Renamed("ann", "Anna")]  # the confirmation
    assert watcher.lines[-1] == "renamed ann -> Anna"
    join(room, "ann")  # the old name is free
    room.rename(ann, "ANNA")  # a change of case only
    assert room.find("anna") is ann and ann.name == "ANNA"
    assert room.statistics().renames == 2


def test_a_rename_to_a_taken_or_invalid_name_changes_nothing() -> None:
    room = Room()
    ann, _ = join(room, "ann")
    join(room, "bob")
    with pytest.raises(NameTaken):
        room.rename(ann, "BOB")
    with pytest.raises(InvalidName):
        room.rename(ann, "has space")
    assert room.names() == ["ann", "bob"] and ann.name == "ann"


def test_rename_commands_answer_the_asker() -> None:
    room = Room()
    ann, ann_box = join(room, "ann")
    join(room, "bob")
    commands = Commands(room, ServerConfig(), lambda _: None)
    commands.dispatch(ann, Rename("bob"))
    commands.dispatch(ann, Rename("/slash"))
    commands.dispatch(ann, Rename("anna"))
    told = delivered(ann_box)
    assert told[0] == Notice(
        "Cannot rename to 'bob': Nickname already in use", is_error=True, recoverable=True
    )
    assert isinstance(told[1], Notice) and told[1].text.startswith("Cannot rename to '/slash'")
    assert told[2] == Renamed("ann", "anna")


def test_notices_are_turned_on_and_off() -> None:
    room = Room()
    ann, ann_box = join(room, "ann")
    bob, _ = join(room, "bob")
    commands = Commands(room, ServerConfig(), lambda _: None)
    commands.dispatch(ann, SetNotices(on=True))
    room.rename(bob, "rob")
    commands.dispatch(ann, SetNotices(on=False))
    room.rename(bob, "bob")
    assert delivered(ann_box) == [
        Notice("Notices on", recoverable=True),
        Renamed("bob", "rob"),
        Notice("Notices off", recoverable=True),
    ]


async def test_private_messages_and_renames_share_the_message_rate(
    autojump_clock: trio.testing.MockClock,
) -> None:
    room = Room()
    ann, _ = join(room, "ann")
    _bob, bob_box = join(room, "bob")
    commands = Commands(room, ServerConfig(message_rate=1, message_burst=1), lambda _: None)
    start = trio.current_time()
    await commands.handle(ann, Say("one"))
    await commands.handle(ann, PrivateSay("bob", "two"))
    await commands.handle(ann, Rename("anna"))
    assert trio.current_time() - start == pytest.approx(2.0)
    got = delivered(bob_box)
    assert [type(e) for e in got] == [ChatMessage, PrivateMessage]
    assert ann.name == "anna"


# --- presence ---------------------------------------------------------------------------------


async def test_who_shows_dialect_and_idle_time_from_the_last_event(
    autojump_clock: trio.testing.MockClock,
) -> None:
    room = Room()
    start = trio.current_time()
    ann, ann_box = join(room, "ann", last_active=start)
    join(room, "jay", dialect=Dialect.JSON, last_active=start)
    commands = Commands(room, ServerConfig(), lambda _: None)
    await trio.sleep(30)
    await commands.handle(ann, Say("still here"))
    await trio.sleep(5)
    await commands.handle(ann, Who())
    [presence] = delivered(ann_box)
    assert isinstance(presence, Presence)
    assert [(m.name, m.dialect, round(m.idle_seconds)) for m in presence.members] == [
        ("ann", Dialect.LINE, 0),  # asking counts as activity
        ("jay", Dialect.JSON, 35),
    ]


# --- history ----------------------------------------------------------------------------------


def test_history_keeps_the_last_n_in_order_and_hands_each_to_its_sink() -> None:
    sunk: list[str] = []
    history = History(3, sink=lambda m: sunk.append(m.text))
    room = Room(history=history)
    ann, _ = join(room, "ann")
    for number in range(5):
        room.broadcast(ann, f"m{number}", received_at=NOW)
    assert [m.text for m in history.recent()] == ["m2", "m3", "m4"]
    assert [m.text for m in history.recent(2)] == ["m3", "m4"]
    assert history.recent(0) == () and len(history.recent(99)) == 3
    assert sunk == ["m0", "m1", "m2", "m3", "m4"]
    with pytest.raises(ValueError):
        History(0)


def test_history_requests_replay_to_the_asker_only() -> None:
    room = Room(history=History(10))
    ann, ann_box = join(room, "ann")
    bob, bob_box = join(room, "bob")
    commands = Commands(room, ServerConfig(), lambda _: None)
    commands.dispatch(bob, HistoryRequest())
    assert notices(bob_box) == [("No messages in history yet", False)]
    room.broadcast(ann, "one", received_at=NOW)
    room.broadcast(ann, "two", received_at=NOW)
    delivered(bob_box)
    commands.dispatch(bob, HistoryRequest(1))
    [replay] = delivered(bob_box)
    assert isinstance(replay, HistoryReplay) and [m.text for m in replay.messages] == ["two"]
    assert delivered(ann_box) == []


def test_history_off_says_so() -> None:
    room = Room()
    ann, ann_box = join(room, "ann")
    Commands(room, ServerConfig(), lambda _: None).dispatch(ann, HistoryRequest(5))
    assert notices(ann_box) == [("History is off on this server", True)]
