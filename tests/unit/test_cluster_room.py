"""The cluster room without Redis: a fake link stands in for it (``triochat/cluster``).

What the room does with the link's answers and the stream's entries, deterministically: the
Redis side itself is tested end to end in ``tests/e2e/test_cluster.py``.
"""

from __future__ import annotations

import pytest
import trio
import trio.testing

from triochat.cluster.address import ClusterAddress, parse_cluster_address
from triochat.cluster.records import (
    BadRecord,
    DirectRecord,
    MemberRecord,
    MessageRecord,
    can_travel,
)
from triochat.cluster.room import (
    MAYBE_NOT_SENT,
    NOT_SENT,
    ClaimName,
    ClusterRoom,
    LinkDown,
    Operation,
    PublishMessage,
    ReleaseName,
    SendDirect,
)
from triochat.events import (
    ChatMessage,
    FileAnnouncement,
    FileFailed,
    MemberJoined,
    MemberLeft,
    Notice,
    TransferRole,
    Welcome,
)
from triochat.history import History
from triochat.room import Delivery, NameTaken, Room

from .helpers import NOW, Recorder, delivered, make_member


class FakeLink:
    """Answers claims as told and keeps what the room submits."""

    def __init__(self) -> None:
        self.up = True
        self.taken: set[str] = set()
        self.submitted: list[Operation] = []
        self.claims: list[MemberRecord] = []

    async def claim(self, record: MemberRecord) -> bool:
        await trio.lowlevel.checkpoint()
        if not self.up:
            raise LinkDown
        self.claims.append(record)
        return record.name.casefold() not in self.taken

    def submit(self, operation: Operation) -> None:
        self.submitted.append(operation)


def texts(receive: trio.MemoryReceiveChannel[Delivery]) -> list[str]:
    out: list[str] = []
    while True:
        try:
            event = receive.receive_nowait().event
        except trio.WouldBlock:
            return out
        if isinstance(event, ChatMessage):
            out.append(f"{event.sender}: {event.text}")
        elif isinstance(event, Notice):
            out.append(f"*** {event.text}")
        else:
            out.append(type(event).__name__)


def other(name: str, token: str = "t", file_port: int | None = None) -> MemberRecord:
    return MemberRecord(name, "node-b", token, "10.0.0.2", 4000, "-", file_port)


async def test_a_reserved_name_joins_and_a_taken_one_is_refused() -> None:
    link = FakeLink()
    link.taken.add("bob")
    room = ClusterRoom("node-a", link)
    alice, _ = make_member("alice")
    await room.reserve(alice)
    room.join(alice)
    assert room.names() == ["alice"]
    assert [c.name for c in link.claims] == ["alice"]
    with pytest.raises(NameTaken, match="already in use"):
        await room.reserve(make_member("bob")[0])
    with pytest.raises(NameTaken, match="already in use"):
        await room.reserve(make_member("ALICE")[0])  # known here: Redis is not asked
    link.up = False
    with pytest.raises(NameTaken, match="Cannot reach the chat cluster"):
        await room.reserve(make_member("carol")[0])


async def test_messages_go_to_the_stream_and_fan_out_from_it_in_its_order() -> None:
    link = FakeLink()
    recorder = Recorder()
    room = ClusterRoom("node-a", link, recorder)
    alice, alice_box = make_member("alice")
    bob, bob_box = make_member("bob")
    for member in (alice, bob):
        await room.reserve(member)
        room.join(member)

    room.broadcast(alice, "one", received_at=NOW)
    assert texts(bob_box) == []  # nothing local until the stream hands it back
    (published,) = link.submitted
    assert isinstance(published, PublishMessage)
    # The stream's order wins: another node's message first, then alice's.
    remote = MessageRecord("node-b", "carol", "10.0.0.2", 4000, "-", "zero", NOW, NOW)
    room.apply("msg", remote.dumps())
    room.apply("msg", published.record.dumps())
    assert texts(bob_box) == ["carol: zero", "alice: one"]
    assert texts(alice_box) == ["carol: zero"]  # never back to its sender
    assert recorder.lines[-2:] == ["carol: zero -> alice,bob", "alice: one -> bob"]


async def test_sends_fail_with_a_notice_while_redis_is_unreachable() -> None:
    link = FakeLink()
    room = ClusterRoom("node-a", link)
    alice, alice_box = make_member("alice")
    await room.reserve(alice)
    room.join(alice)
    texts(alice_box)
    link.up = False
    room.broadcast(alice, "lost?", received_at=NOW)
    assert link.submitted == []
    assert texts(alice_box) == [f"*** {NOT_SENT}"]
    # A message on its way when the connection broke: perhaps sent, and said so.
    link.up = True
    room.broadcast(alice, "in flight", received_at=NOW)
    room.publish_failed(link.submitted[-1])
    assert texts(alice_box) == [f"*** {MAYBE_NOT_SENT}"]


async def test_other_nodes_members_are_listed_found_and_reached_through_the_stream() -> None:
    link = FakeLink()
    room = ClusterRoom("node-a", link)
    alice, _ = make_member("alice")
    await room.reserve(alice)
    room.join(alice)
    room.apply("join", other("bob", file_port=6001).dumps())
    assert room.names() == ["alice", "bob"]
    with pytest.raises(NameTaken):
        room.check_available("BOB")
    found = room.find("Bob")
    assert found is not None and (found.ip, found.file_port) == ("10.0.0.2", 6001)
    announcement = FileAnnouncement(TransferRole.FETCH, "tok", "notes.txt", "alice")
    assert found.deliver_nowait(Delivery(announcement))
    (sent,) = link.submitted
    assert isinstance(sent, SendDirect)
    assert (sent.record.node, sent.record.to, sent.record.event) == ("node-b", "bob", announcement)
    # A stale leave (an earlier claim's token) changes nothing; the right one removes bob.
    room.apply("leave", other("bob", token="old").dumps())
    assert room.names() == ["alice", "bob"]
    room.apply("leave", other("bob").dumps())
    assert room.names() == ["alice"]


async def test_direct_events_reach_only_the_member_they_were_meant_for() -> None:
    link = FakeLink()
    room = ClusterRoom("node-a", link)
    alice, alice_box = make_member("alice")
    await room.reserve(alice)
    room.join(alice)
    (claim,) = link.claims
    event = FileAnnouncement(TransferRole.FETCH, "tok", "notes.txt", "bob")
    room.apply("direct", DirectRecord("node-b", "alice", claim.token, event).dumps())
    room.apply("direct", DirectRecord("node-a", "alice", "someone-else", event).dumps())
    assert texts(alice_box) == []
    room.apply("direct", DirectRecord("node-a", "alice", claim.token, event).dumps())
    assert texts(alice_box) == ["FileAnnouncement"]


async def test_a_datagram_member_joins_at_once_and_goes_if_another_node_won_its_name() -> None:
    link = FakeLink()
    room = ClusterRoom("node-a", link)
    evictions: list[str] = []
    ulla, _ = make_member("ulla", evictions)
    room.join(ulla)  # synchronous, as the UDP endpoint registers
    (claim,) = link.submitted
    assert isinstance(claim, ClaimName)
    room.claim_lost(claim.record)
    assert evictions == ["Nickname already in use (on another node)"]


async def test_the_heartbeat_roster_replaces_the_others_and_finds_lost_claims() -> None:
    link = FakeLink()
    room = ClusterRoom("node-a", link)
    alice, _ = make_member("alice")
    await room.reserve(alice)
    room.join(alice)
    room.apply("join", other("gone").dumps())
    # Redis restarted empty: only another node's new claim is there, not alice's.
    lost = room.roster_refreshed([other("bob")], room.roster_mark())
    assert room.names() == ["alice", "bob"]
    assert [record.name for record in lost] == ["alice"]
    # A heartbeat's answer older than what the stream said since does not undo it.
    mark = room.roster_mark()
    room.apply("join", other("carol").dumps())
    room.apply("leave", other("bob").dumps())
    room.roster_refreshed([other("bob")], mark)
    assert room.names() == ["alice", "carol"]
    room.roster_refreshed([other("carol")], room.roster_mark())
    assert room.names() == ["alice", "carol"]
    room.leave(alice)
    assert isinstance(link.submitted[-1], ReleaseName)
    assert room.local_claims() == []


def test_cluster_addresses() -> None:
    assert parse_cluster_address("redis://127.0.0.1:6390/2") == ClusterAddress("127.0.0.1", 6390, 2)
    assert parse_cluster_address("redis://cache") == ClusterAddress("cache", 6379, 0)
    for bad in ("http://x:1", "redis://", "redis://h:99999", "redis://h/x", "redis://u:p@h"):
        with pytest.raises(ValueError):
            parse_cluster_address(bad)


def test_records_round_trip_and_bad_ones_are_refused() -> None:
    member = other("bob", file_port=7)
    assert MemberRecord.loads(member.dumps()) == member
    message = MessageRecord("n", "s", "1.2.3.4", 5, "c", "text: ünïcode", "t", "d")
    assert MessageRecord.loads(message.dumps()) == message
    for event in (
        Notice("hi", is_error=True, recoverable=True),
        FileAnnouncement(TransferRole.DELIVER, "tok", "a.txt", "alice"),
        FileFailed("tok", "a.txt", "alice", "no such file"),
    ):
        direct = DirectRecord("n", "bob", "tok", event)
        assert can_travel(event)
        assert DirectRecord.loads(direct.dumps()) == direct
    assert not can_travel(Welcome("bob", ("alice",)))  # not flat: stays on its node
    for bad in ("", "[]", "{}", '{"name": 1}', '{"event": {"type": "chat"}}'):
        for record_type in (MemberRecord, MessageRecord, DirectRecord):
            with pytest.raises(BadRecord):
                record_type.loads(bad)


async def test_the_room_in_memory_reserves_by_checking_only() -> None:
    room = Room()
    alice, _ = make_member("alice")
    await room.reserve(alice)
    room.join(alice)
    with pytest.raises(NameTaken):
        await room.reserve(make_member("Alice")[0])


async def test_a_cancelled_claim_does_not_keep_the_name() -> None:
    class SlowLink(FakeLink):
        async def claim(self, record: MemberRecord) -> bool:
            await trio.sleep_forever()

    room = ClusterRoom("node-a", SlowLink())
    async with trio.open_nursery() as nursery:
        nursery.start_soon(room.reserve, make_member("alice")[0])
        await trio.testing.wait_all_tasks_blocked()
        assert [record.name for record in room.local_claims()] == ["alice"]
        nursery.cancel_scope.cancel()  # as a registration timeout would
    assert room.local_claims() == []
    room.check_available("alice")


async def test_history_is_the_streams_order_and_starts_with_its_last_messages() -> None:
    room = ClusterRoom("node-a", FakeLink(), history=History(3))
    old = [MessageRecord("node-b", "carol", "ip", 1, "-", f"old {n}", NOW, NOW) for n in range(2)]
    room.preload_history(record.dumps() for record in old)
    room.apply("msg", MessageRecord("node-b", "carol", "ip", 1, "-", "new", NOW, NOW).dumps())
    assert room.history is not None
    assert [m.text for m in room.history.recent()] == ["old 0", "old 1", "new"]


async def test_a_page_hears_of_joins_and_leaves_here_and_on_other_nodes() -> None:
    # A member that watches presence (the browser page) is told every join and leave, as in
    # the room in memory: its own node's members, and the other nodes' from the stream and
    # from the heartbeat's roster (a node that died writes no leave).
    link = FakeLink()
    room = ClusterRoom("node-a", link)
    page, page_box = make_member("page")
    page.watches_presence = True
    await room.reserve(page)
    room.join(page)
    alice, _ = make_member("alice")
    await room.reserve(alice)
    room.join(alice)
    room.leave(alice)
    room.apply("join", other("carol", "c1").dumps())
    room.apply("join", other("carol", "c1").dumps())  # a claim made again: no second notice
    room.apply("leave", other("carol", "c1").dumps())
    room.apply("join", other("dave", "d1").dumps())
    room.roster_refreshed([other("erin", "e1")], mark=10**9)  # dave's node died; erin came
    seen = [
        f"{type(event).__name__} {event.name}"
        for event in delivered(page_box)
        if isinstance(event, MemberJoined | MemberLeft)
    ]
    assert seen == [
        "MemberJoined alice",
        "MemberLeft alice",
        "MemberJoined carol",
        "MemberLeft carol",
        "MemberJoined dave",
        "MemberLeft dave",
        "MemberJoined erin",
    ]


async def test_names_of_a_large_cluster_room_are_cut_to_the_limit() -> None:
    link = FakeLink()
    room = ClusterRoom("node-a", link)
    alice, _ = make_member("alice")
    await room.reserve(alice)
    room.join(alice)
    for number in range(5):
        room.apply("join", other(f"r{number}", f"t{number}").dumps())
    assert room.names(3) == ["alice", "r0", "r1"]
    assert room.names() == ["alice", "r0", "r1", "r2", "r3", "r4"]
