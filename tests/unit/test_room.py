"""The room: names, total-order fan-out, bounded outboxes and eviction (no sockets)."""

from __future__ import annotations

import pytest
import trio
import trio.lowlevel
import trio.testing

from triochat.events import ChatMessage, Dialect, ServerEvent
from triochat.room import OUTBOX_LIMIT, Delivery, InvalidName, Member, NameTaken, Room

from .helpers import NOW, Recorder, make_member


def drain(receive: trio.MemoryReceiveChannel[Delivery]) -> list[str]:
    texts: list[str] = []
    while True:
        try:
            delivery = receive.receive_nowait()
        except trio.WouldBlock:
            return texts
        assert isinstance(delivery.event, ChatMessage)
        texts.append(f"{delivery.event.sender}: {delivery.event.text}")


@pytest.mark.parametrize(
    ("timestamp", "kept", "shown"),
    [
        (None, NOW, NOW),  # none sent: the caller's receive time
        ("not a time", "not a time", NOW),  # kept as sent, shown as the receive time
        ("2001-02-03T04:05:06", "2001-02-03T04:05:06", "2001-02-03 04:05:06"),
    ],
)
def test_the_room_takes_its_time_from_the_caller(
    timestamp: str | None, kept: str, shown: str
) -> None:
    room = Room()
    sender, _ = make_member("s")
    room.join(sender)
    message = room.broadcast(sender, "hi", timestamp, received_at=NOW)
    assert (message.timestamp, message.display_time) == (kept, shown)


def test_names_are_unique_ignoring_case_and_checked() -> None:
    room = Room()
    alice, _ = make_member("Alice")
    room.join(alice)
    with pytest.raises(NameTaken, match="Nickname already in use"):
        room.join(make_member("aLICE")[0])
    with pytest.raises(InvalidName):
        room.join(make_member("has space")[0])
    with pytest.raises(InvalidName):
        room.join(make_member("/slash")[0])
    room.leave(alice)
    room.join(make_member("alice")[0])
    assert room.names() == ["alice"]


def test_broadcast_skips_sender_and_reports_recipients_in_join_order() -> None:
    recorder = Recorder()
    room = Room(recorder)
    members = [make_member(name) for name in ("a", "b", "c")]
    for member, _ in members:
        room.join(member)
    room.broadcast(members[1][0], "hello", received_at=NOW)
    assert drain(members[0][1]) == ["b: hello"]
    assert drain(members[1][1]) == []
    assert drain(members[2][1]) == ["b: hello"]
    assert recorder.lines[-1] == "b: hello -> a,c"


def test_datagram_style_member_receives_its_own_message() -> None:
    room = Room()
    sender, sender_box = make_member("udp")
    sender.receives_own = True
    other, other_box = make_member("tcp")
    room.join(sender)
    room.join(other)
    room.broadcast(sender, "hi", received_at=NOW)
    assert drain(sender_box) == ["udp: hi"]
    assert drain(other_box) == ["udp: hi"]


def test_control_characters_are_escaped_once_for_everyone() -> None:
    room = Room()
    sender, _ = make_member("s")
    reader, box = make_member("r")
    room.join(sender)
    room.join(reader)
    room.broadcast(sender, "line\nforged: \x1b[31mred", received_at=NOW)
    assert drain(box) == ["s: line\\x0aforged: \\x1b[31mred"]


def test_each_delivery_is_encoded_once_per_dialect() -> None:
    class CountingEncoder:
        dialect = Dialect.LINE
        calls = 0

        def send(self, event: ServerEvent) -> bytes:
            CountingEncoder.calls += 1
            return b"x"

    delivery = Delivery(ChatMessage("a", "b", "t", "t", "127.0.0.1", 1))
    encoder = CountingEncoder()
    assert [delivery.encode_for(encoder) for _ in range(5)] == [b"x"] * 5
    assert CountingEncoder.calls == 1


async def test_concurrent_senders_give_every_member_one_total_order() -> None:
    room = Room()
    members = [make_member(f"m{i}") for i in range(5)]
    for member, _ in members:
        room.join(member)
    outsider, outsider_box = make_member("listener")
    room.join(outsider)

    async def chatter(member: Member) -> None:
        for number in range(20):
            room.broadcast(member, f"{member.name}-{number}", received_at=NOW)
            await trio.lowlevel.checkpoint()

    async with trio.open_nursery() as nursery:
        for member, _ in members:
            nursery.start_soon(chatter, member)

    everything = drain(outsider_box)
    assert len(everything) == 100
    for member, box in members:
        seen = drain(box)
        expected = [line for line in everything if not line.startswith(f"{member.name}: ")]
        assert seen == expected
        # Per-sender order is kept too.
        own = [line for line in everything if line.startswith(f"{member.name}: ")]
        assert own == [f"{member.name}: {member.name}-{n}" for n in range(20)]


def test_member_that_cannot_keep_up_is_evicted_and_others_get_everything() -> None:
    recorder = Recorder()
    room = Room(recorder)
    reasons: list[str] = []
    slow, _slow_box = make_member("slow", reasons)
    fast, fast_box = make_member("fast")
    sender, _ = make_member("sender")
    for member in (slow, fast, sender):
        room.join(member)

    # The evicting session would leave the room; emulate it with the eviction callback.
    def evict_slow(reason: str) -> None:
        reasons.append(reason)
        room.leave(slow)

    slow.on_evict = evict_slow
    total = OUTBOX_LIMIT + 10
    received_by_fast = 0
    for number in range(total):
        room.broadcast(sender, str(number), received_at=NOW)
        received_by_fast += len(drain(fast_box))
    assert received_by_fast == total
    assert len(reasons) == 1
    assert "behind" in reasons[0]
    assert "slow" not in room.names()
    stats = room.statistics()
    assert stats.evictions == 1
    assert stats.messages == total
    assert "left slow" in recorder.lines


def test_close_evicts_everyone_with_the_reason_and_refuses_joins() -> None:
    room = Room()
    reasons: list[str] = []
    member, _ = make_member("a", reasons)

    def evict(reason: str) -> None:
        reasons.append(reason)
        room.leave(member)

    member.on_evict = evict
    room.join(member)
    room.close("Server shutting down")
    assert reasons == ["Server shutting down"]
    assert room.statistics().evictions == 0
    with pytest.raises(NameTaken):
        room.join(make_member("b")[0])


class CountingEncoder:
    """A one-dialect encoder that counts how often it is asked to encode."""

    dialect = Dialect.LINE

    def __init__(self) -> None:
        self.calls = 0

    def send(self, event: ServerEvent) -> bytes:
        self.calls += 1
        return b"x"


@pytest.mark.parametrize(("encode_once", "expected_calls"), [(True, 1), (False, 2)])
def test_encode_once_shares_the_bytes_between_members(
    encode_once: bool, expected_calls: int
) -> None:
    room = Room(encode_once=encode_once)
    outboxes = []
    for name in ("ann", "bob", "cy"):
        member, receive = make_member(name)
        room.join(member)
        outboxes.append(receive)
    sender = room.find("ann")
    assert sender is not None
    room.broadcast(sender, "hi", received_at=NOW)
    encoder = CountingEncoder()
    for receive in outboxes[1:]:  # the sender gets no copy
        assert receive.receive_nowait().encode_for(encoder) == b"x"
    assert encoder.calls == expected_calls
