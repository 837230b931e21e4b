"""The UDP endpoint over an in-memory datagram network: no real sockets, no real sleeps."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
import trio
import trio.testing

from triochat.events import ChatMessage, Notice
from triochat.room import OUTBOX_LIMIT, Delivery, Member, Room
from triochat.server.addresses import PerAddressLimit
from triochat.server.session import SessionCounter
from triochat.server.udp import REPLY_QUEUE_LIMIT, DatagramEndpoint
from triochat.wire.datagrams import MAX_DATAGRAM_BYTES, REGISTRATION_TTL

from .helpers import NOW, SERVER, DatagramPeer, FakeNetwork, Recorder, make_member


def fake_tcp_member(name: str = "tina") -> tuple[Member, trio.MemoryReceiveChannel[Delivery]]:
    member, receive = make_member(name, ip="192.0.2.9", port=7000)
    return member, receive


def drain(receive: trio.MemoryReceiveChannel[Delivery]) -> list[str]:
    out: list[str] = []
    while True:
        try:
            delivery = receive.receive_nowait()
        except trio.WouldBlock:
            return out
        event = delivery.event
        if isinstance(event, ChatMessage):
            out.append(f"{event.sender}@{event.sender_ip}:{event.sender_port}: {event.text}")


@asynccontextmanager
async def serving(
    room: Room, *, counter: SessionCounter | None = None, **options: Any
) -> AsyncIterator[tuple[DatagramEndpoint, FakeNetwork]]:
    network = FakeNetwork()
    endpoint = DatagramEndpoint(room, [network.socket(SERVER)], counter=counter, **options)
    async with trio.open_nursery() as nursery:
        await nursery.start(endpoint.serve)
        yield endpoint, network
        nursery.cancel_scope.cancel()


async def test_greeting_registers_and_messages_reach_everyone_the_sender_included() -> None:
    recorder = Recorder()
    room = Room(observer=recorder)
    async with serving(room) as (endpoint, network):
        first, second = DatagramPeer(network, 4001), DatagramPeer(network, 4002)
        await first.send(b"GREETING")
        await second.send(b"GREETINGS bob")  # the seed's spelling, with a name
        await trio.testing.wait_all_tasks_blocked()
        assert room.names() == ["udp-4001", "bob"]
        await first.send(b"MESSAGE How are you?")
        await second.send(b"MEShi")  # the seed's own client: no space
        expected = [
            "INCOMING 10.0.0.2 4001 udp-4001: How are you?",
            "INCOMING 10.0.0.2 4002 bob: hi",
        ]
        assert await first.received() == expected
        assert await second.received() == expected
        assert recorder.lines == [
            "joined udp-4001 10.0.0.2:4001 -",
            "joined bob 10.0.0.2:4002 -",
            "udp-4001: How are you? -> udp-4001,bob",
            "bob: hi -> udp-4001,bob",
        ]
        stats = endpoint.statistics()
        assert (stats.registered, stats.greetings, stats.messages, stats.sent) == (2, 2, 2, 4)
        assert stats.ignored == 0


async def test_tcp_and_udp_members_hear_each_other() -> None:
    room = Room()
    tina, tina_outbox = fake_tcp_member()
    room.join(tina)
    async with serving(room) as (_, network):
        udp = DatagramPeer(network, 4001)
        await udp.send(b"GREETING ulla")
        await trio.testing.wait_all_tasks_blocked()
        room.broadcast(tina, "hello datagrams", received_at=NOW)
        await udp.send(b"MESSAGE hello tcp")
        assert await udp.received() == [
            "INCOMING 192.0.2.9 7000 tina: hello datagrams",
            "INCOMING 10.0.0.2 4001 ulla: hello tcp",
        ]
        assert drain(tina_outbox) == ["ulla@10.0.0.2:4001: hello tcp"]


async def test_control_characters_never_reach_anyone_raw() -> None:
    room = Room()
    async with serving(room) as (_, network):
        udp = DatagramPeer(network, 4001)
        await udp.send(b"GREETING")
        await udp.send(b"MESSAGE line one\nINCOMING 6.6.6.6 1 evil: forged\x1b[2J")
        assert await udp.received() == [
            "INCOMING 10.0.0.2 4001 udp-4001: line one\\x0aINCOMING 6.6.6.6 1 evil: forged\\x1b[2J"
        ]


async def test_garbage_and_strangers_are_ignored_and_counted() -> None:
    room = Room()
    async with serving(room) as (endpoint, network):
        member, stranger = DatagramPeer(network, 4001), DatagramPeer(network, 4002)
        await member.send(b"GREETING")
        for data in [
            b"",
            b"HELLO",
            b"\xff\xfe\x00garbage",
            b"MESSAGE " + b"x" * MAX_DATAGRAM_BYTES,
            b"MESSAGE   ",
            b"INCOMING 1.2.3.4 5 x: y",
        ]:
            await member.send(data)
            await stranger.send(data)
        await stranger.send(b"MESSAGE let me in")
        await stranger.send(b"LEAVE")
        await member.send(b"MESSAGE still here")
        assert await member.received() == ["INCOMING 10.0.0.2 4001 udp-4001: still here"]
        assert await stranger.received() == []
        stats = endpoint.statistics()
        assert (stats.unknown, stats.not_utf8, stats.too_long, stats.empty) == (6, 2, 2, 2)
        assert stats.unregistered == 2
        assert stats.ignored == 14
        assert stats.received == 16
        assert room.names() == ["udp-4001"]


async def test_icmp_errors_and_send_failures_are_counted_and_survived() -> None:
    room = Room()
    async with serving(room) as (endpoint, network):
        alive, gone = DatagramPeer(network, 4001), DatagramPeer(network, 4002)
        await alive.send(b"GREETING")
        await gone.send(b"GREETING")
        await trio.testing.wait_all_tasks_blocked()
        network.send_errors[gone.socket.address] = ConnectionRefusedError(111, "refused")
        network.sockets[SERVER].deliver(ConnectionRefusedError(111, "Connection refused"))
        network.sockets[SERVER].deliver(OSError(113, "No route to host"))
        await alive.send(b"MESSAGE still fine")
        assert await alive.received() == ["INCOMING 10.0.0.2 4001 udp-4001: still fine"]
        assert endpoint.statistics().socket_errors == 3
        assert room.names() == ["udp-4001", "udp-4002"]


async def test_a_taken_name_gets_one_short_error_and_no_registration() -> None:
    room = Room()
    alice, _ = fake_tcp_member("Alice")
    room.join(alice)
    async with serving(room) as (endpoint, network):
        udp = DatagramPeer(network, 4001)
        await udp.send(b"GREETING aLiCe")
        assert await udp.received() == ["ERROR Nickname already in use"]
        await udp.send(b"MESSAGE hi")
        assert await udp.received() == []
        assert room.names() == ["Alice"]
        stats = endpoint.statistics()
        assert (stats.refused, stats.unregistered, stats.registered) == (1, 1, 0)
        await udp.send(b"GREETING")  # a name-less greeting gets a default name
        await trio.testing.wait_all_tasks_blocked()
        assert room.names() == ["Alice", "udp-4001"]


async def test_default_names_avoid_names_in_use() -> None:
    room = Room()
    for name in ("udp-4001", "UDP-4001-2"):
        room.join(fake_tcp_member(name)[0])
    async with serving(room) as (_, network):
        await DatagramPeer(network, 4001).send(b"GREETING two words")  # invalid name: the default
        await DatagramPeer(network, 4001, ip="10.0.0.3").send(b"GREETING")
        await trio.testing.wait_all_tasks_blocked()
        assert room.names() == ["udp-4001", "UDP-4001-2", "udp-4001-3", "udp-4001-4"]


async def test_greeting_again_is_harmless() -> None:
    recorder = Recorder()
    room = Room(observer=recorder)
    async with serving(room) as (endpoint, network):
        udp = DatagramPeer(network, 4001)
        for data in (b"GREETING", b"GREETINGS", b"GREETING another-name"):
            await udp.send(data)
        await udp.send(b"MESSAGE once")
        assert await udp.received() == ["INCOMING 10.0.0.2 4001 udp-4001: once"]
        assert recorder.lines == ["joined udp-4001 10.0.0.2:4001 -", "udp-4001: once -> udp-4001"]
        stats = endpoint.statistics()
        assert (stats.greetings, stats.refreshes) == (1, 2)


async def test_leave_unregisters_at_once() -> None:
    recorder = Recorder()
    room = Room(observer=recorder)
    async with serving(room) as (endpoint, network):
        leaver, stayer = DatagramPeer(network, 4001), DatagramPeer(network, 4002)
        await leaver.send(b"GREETING lee")
        await stayer.send(b"GREETING stu")
        await leaver.send(b"LEAVE")
        await trio.testing.wait_all_tasks_blocked()
        assert room.names() == ["stu"]
        assert recorder.lines[-1] == "left lee"
        await leaver.send(b"MESSAGE too late")
        await stayer.send(b"MESSAGE bye lee")
        assert await leaver.received() == []
        assert await stayer.received() == ["INCOMING 10.0.0.2 4002 stu: bye lee"]
        assert endpoint.statistics().leaves == 1
        await leaver.send(b"GREETING lee")  # and may come back
        await trio.testing.wait_all_tasks_blocked()
        assert room.names() == ["stu", "lee"]


async def test_silent_registrations_expire_and_any_datagram_refreshes(
    autojump_clock: trio.testing.MockClock,
) -> None:
    recorder = Recorder()
    room = Room(observer=recorder)
    async with serving(room) as (endpoint, network):
        quiet, chatty = DatagramPeer(network, 4001), DatagramPeer(network, 4002)
        await quiet.send(b"GREETING quiet")
        await chatty.send(b"GREETING chatty")
        await trio.sleep(REGISTRATION_TTL - 10)
        await chatty.send(b"MESSAGE still here")  # a message refreshes too
        await trio.sleep(9)
        assert room.names() == ["quiet", "chatty"]
        await trio.sleep(2)
        assert room.names() == ["chatty"]
        assert await quiet.received() == [
            "INCOMING 10.0.0.2 4002 chatty: still here",
            "BYE Registration expired",
        ]
        await trio.sleep(REGISTRATION_TTL - 12)
        await chatty.send(b"GREETING")  # the client's periodic refresh
        await trio.sleep(REGISTRATION_TTL - 1)
        assert room.names() == ["chatty"]
        await trio.sleep(2)
        assert room.names() == []
        assert recorder.lines[-2:] == ["left quiet", "left chatty"]
        assert endpoint.statistics().expired == 2


async def test_a_member_that_cannot_keep_up_is_evicted_without_stalling_others() -> None:
    recorder = Recorder()
    room = Room(observer=recorder)
    tina, tina_outbox = fake_tcp_member()
    room.join(tina)
    async with serving(room) as (endpoint, network):
        slow, fast = DatagramPeer(network, 4001), DatagramPeer(network, 4002)
        await slow.send(b"GREETING slow")
        await fast.send(b"GREETING fast")
        await trio.testing.wait_all_tasks_blocked()
        gate = network.blocked[slow.socket.address] = trio.Event()
        for number in range(OUTBOX_LIMIT + 2):
            room.broadcast(tina, f"m{number}", received_at=NOW)
            await trio.testing.wait_all_tasks_blocked()  # the fast member keeps up
        assert room.names() == ["tina", "fast"]
        assert "left slow" in recorder.lines
        assert len(await fast.received()) == OUTBOX_LIMIT + 2
        gate.set()
        got = await slow.received()
        assert got[-1].startswith("BYE Disconnected: you fell more than")
        stats = endpoint.statistics()
        assert (stats.evicted, stats.registered) == (1, 1)
        assert room.statistics().evictions == 1
        assert drain(tina_outbox) == []


async def test_shutdown_tells_datagram_members_and_waits_for_them() -> None:
    room = Room()
    counter = SessionCounter()
    async with serving(room, counter=counter) as (_, network):
        udp = DatagramPeer(network, 4001)
        await udp.send(b"GREETING")
        await trio.testing.wait_all_tasks_blocked()
        assert counter.active == 1
        room.close("Server shutting down")
        await counter.wait_idle()
        assert await udp.received() == ["BYE Server shutting down"]
        await udp.send(b"GREETING")  # nobody may join a closing room
        assert await udp.received() == ["ERROR Server is shutting down"]
        assert room.names() == []


async def test_registrations_are_bounded() -> None:
    room = Room()
    async with serving(room, max_registrations=2) as (endpoint, network):
        peers = [DatagramPeer(network, port) for port in (4001, 4002, 4003)]
        for peer in peers:
            await peer.send(b"GREETING")
        assert await peers[2].received() == ["ERROR Too many datagram members, try later"]
        assert room.names() == ["udp-4001", "udp-4002"]
        assert endpoint.statistics().refused == 1


async def test_one_address_holds_at_most_its_share_of_datagram_members() -> None:
    room = Room()
    limit = PerAddressLimit(2, exempt_loopback=False)
    async with serving(room, per_address=limit) as (endpoint, network):
        peers = [DatagramPeer(network, port) for port in (4001, 4002, 4003)]
        other = DatagramPeer(network, 4001, ip="10.0.0.3")
        for peer in [*peers, other]:
            await peer.send(b"GREETING")
        assert await peers[2].received() == ["ERROR Too many members from your address (limit 2)"]
        assert room.names() == ["udp-4001", "udp-4002", "udp-4001-2"]
        assert endpoint.statistics().refused_per_ip == 1
        await peers[0].send(b"LEAVE")  # its place is free again
        await peers[2].send(b"GREETING")
        await trio.testing.wait_all_tasks_blocked()
        assert room.names() == ["udp-4002", "udp-4001-2", "udp-4003"]


async def test_replies_to_strangers_are_bounded() -> None:
    room = Room()
    room.join(fake_tcp_member("taken")[0])
    async with serving(room) as (endpoint, network):
        stranger = DatagramPeer(network, 4001)
        server_socket = network.sockets[SERVER]
        floods = 3 * REPLY_QUEUE_LIMIT
        await trio.testing.wait_all_tasks_blocked()  # the reply task waits for work
        for _ in range(floods):  # all at once: the reply queue cannot drain in between
            endpoint.datagram_received(server_socket, b"GREETING taken", stranger.socket.address)
        replies = await stranger.received()
        # The queue's worth, plus the one the idle reply task took at once.
        assert replies == ["ERROR Nickname already in use"] * (REPLY_QUEUE_LIMIT + 1)
        stats = endpoint.statistics()
        assert (stats.refused, stats.replies_dropped) == (floods, floods - len(replies))


async def test_stopping_the_endpoint_removes_its_members() -> None:
    recorder = Recorder()
    room = Room(observer=recorder)
    async with serving(room) as (_, network):
        await DatagramPeer(network, 4001).send(b"GREETING")
        await trio.testing.wait_all_tasks_blocked()
        assert room.names() == ["udp-4001"]
    assert room.names() == []
    assert recorder.lines[-1] == "left udp-4001"


async def test_notices_to_datagram_members() -> None:
    room = Room()
    async with serving(room) as (_, network):
        udp = DatagramPeer(network, 4001)
        await udp.send(b"GREETING")
        await trio.testing.wait_all_tasks_blocked()
        member = room.find("udp-4001")
        assert member is not None
        room.tell(member, "Members: udp-4001")
        member.deliver_nowait(Delivery(Notice("careful", is_error=True)))
        assert await udp.received() == ["NOTICE Members: udp-4001", "ERROR careful"]


def test_an_endpoint_needs_a_socket() -> None:
    with pytest.raises(ValueError, match="at least one socket"):
        DatagramEndpoint(Room(), [])
