"""The UDP client (seed 002), in-process (SPEC §5): what it sends, what it shows, how it learns
which server it talks to, and how it ends.

The client's socket is a :class:`FakeSocket` on the in-memory datagram network of
``helpers``, connected to :data:`SERVER`. There the server is either our real
:class:`DatagramEndpoint` or a bare socket the test drives as the seed's own server.
Standard input is a :class:`Typist`; the autojump clock makes refreshes and waits virtual.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import cast

import pytest
import trio
import trio.testing

from triochat.client import udp_client
from triochat.client.udp_client import ECHO_WAIT, UdpChat
from triochat.events import Hello
from triochat.room import Room
from triochat.server.udp import DatagramEndpoint
from triochat.wire.datagrams import DatagramClientCodec

from .helpers import SERVER, DatagramPeer, FakeNetwork, FakeSocket, Typist

CLIENT = ("10.0.0.2", 4001)
SEED_FROM = "From('10.0.0.2', 4001): "
"""How the seed's server tags what our client sent."""


class Udp:
    """A :class:`UdpChat` on the fake network; keeps its exit code and when it ended."""

    exit_code: int | None = None
    ended_at: float | None = None

    def __init__(
        self,
        network: FakeNetwork,
        monkeypatch: pytest.MonkeyPatch,
        *,
        show_sender: bool = False,
        name: str | None = None,
        refresh_interval: float = 60.0,
    ) -> None:
        self.typist = Typist()
        monkeypatch.setattr(udp_client, "StdinLines", self.typist)
        (self.greeting,) = DatagramClientCodec().send(Hello(name or ""))
        self.socket = network.socket(CLIENT, peer=SERVER)
        self.chat = UdpChat(
            cast(trio.socket.SocketType, self.socket),
            "10.0.0.1:5000",
            show_sender=show_sender,
            name=name,
            refresh_interval=refresh_interval,
        )

    async def run(self) -> None:
        await self.socket.send(self.greeting)  # what the launcher does first
        await self.chat.run()
        await self.chat.leave()
        self.exit_code = self.chat.exit_code
        self.ended_at = trio.current_time()


@asynccontextmanager
async def client_of_seed_server(
    monkeypatch: pytest.MonkeyPatch, **options: object
) -> AsyncIterator[tuple[Udp, FakeSocket]]:
    """The client, and the seed server's socket for the test to drive."""
    network = FakeNetwork()
    server = network.socket(SERVER)
    client = Udp(network, monkeypatch, **options)  # type: ignore[arg-type]
    async with trio.open_nursery() as nursery:
        nursery.start_soon(client.run)
        yield client, server


async def datagrams_to(sock: FakeSocket) -> list[str]:
    await trio.testing.wait_all_tasks_blocked()
    return sock.received_nowait()


# --- against triochat's own endpoint ----------------------------------------------------------


async def test_against_our_server_it_chats_sees_its_own_echo_and_leaves(
    autojump_clock: trio.testing.MockClock,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    room = Room()
    network = FakeNetwork()
    endpoint = DatagramEndpoint(room, [network.socket(SERVER)])
    bob = DatagramPeer(network, 4002)
    async with trio.open_nursery() as server_nursery:
        await server_nursery.start(endpoint.serve)
        await bob.send(b"GREETING bob")
        client = Udp(network, monkeypatch, name=None)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(client.run)
            await trio.testing.wait_all_tasks_blocked()
            assert len(room.names()) == 2
            client.typist.type("hello from udp")
            await trio.testing.wait_all_tasks_blocked()
            await bob.send(b"MESSAGE hi there")
            await trio.testing.wait_all_tasks_blocked()
            client.typist.type("sage advice")  # read as MESSAGE by our server if sent as MES
            await trio.testing.wait_all_tasks_blocked()
            client.typist.end()
        assert client.exit_code == 0
        await trio.testing.wait_all_tasks_blocked()
        assert room.names() == ["bob"]  # it said LEAVE: known to be triochat by then
        assert [line.split(": ", 1)[1] for line in await bob.received()] == [
            "hello from udp",
            "hi there",
            "sage advice",
        ]
        server_nursery.cancel_scope.cancel()
    assert capsys.readouterr() == ("hello from udp\nhi there\nsage advice\n", "")


async def test_show_sender_adds_the_name(
    autojump_clock: trio.testing.MockClock,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with client_of_seed_server(monkeypatch, show_sender=True) as (client, server):
        await server.sendto(b"INCOMING 10.0.0.3 4003 carol: hello", CLIENT)
        await server.sendto(b"From('10.0.0.4', 4004): seed text", CLIENT)
        await trio.testing.wait_all_tasks_blocked()
        client.typist.end()
    assert capsys.readouterr().out == "carol: hello\n10.0.0.4:4004: seed text\n"


# --- against the seed's own server ------------------------------------------------------------


async def test_against_the_seed_server_it_sends_mes_and_never_leave(
    autojump_clock: trio.testing.MockClock,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with client_of_seed_server(monkeypatch) as (client, server):
        assert await datagrams_to(server) == ["GREETING"]
        client.typist.type("first")
        assert await datagrams_to(server) == ["MESfirst"]  # nothing came back yet: MES
        await server.sendto(f"{SEED_FROM}first".encode(), CLIENT)
        await server.sendto(b"From('10.0.0.3', 4003): ", CLIENT)  # a seed client's empty line
        client.typist.type("sage advice")
        assert await datagrams_to(server) == ["MESsage advice"]  # still MES: the seed's server
        await server.sendto(f"{SEED_FROM}sage advice".encode(), CLIENT)
        client.typist.end()
    assert client.exit_code == 0
    assert await datagrams_to(server) == []  # no LEAVE: that server would relay it as chat
    assert capsys.readouterr() == ("first\nsage advice\n", "")


async def test_at_end_of_input_it_waits_for_its_echoes_but_not_forever(
    autojump_clock: trio.testing.MockClock,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with client_of_seed_server(monkeypatch) as (client, server):
        client.typist.type("one", "two")
        client.typist.end()
        await trio.sleep(0.5)
        await server.sendto(f"{SEED_FROM}one".encode(), CLIENT)  # late, but in time
        await trio.testing.wait_all_tasks_blocked()
        assert client.ended_at is None  # "two" is not back yet
    assert client.exit_code == 0
    assert client.ended_at == pytest.approx(ECHO_WAIT)  # "two" never came back
    assert capsys.readouterr().out == "one\n"


async def test_registration_is_refreshed_every_interval(
    autojump_clock: trio.testing.MockClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with client_of_seed_server(monkeypatch, refresh_interval=30.0, name="ann") as (
        client,
        server,
    ):
        assert await datagrams_to(server) == ["GREETING ann"]  # the launcher's
        await trio.sleep(30.0 * 3 + 1)
        assert await datagrams_to(server) == ["GREETING ann"] * 3
        client.typist.end()


# --- how it ends ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("datagram", "reason"),
    [
        (b"BYE you were idle too long", "Disconnected by the chat server: you were idle too long"),
        (b"ERROR Nickname already in use", "ERROR Nickname already in use"),
    ],
)
async def test_bye_or_error_from_the_server_ends_the_session_with_exit_1(
    autojump_clock: trio.testing.MockClock,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    datagram: bytes,
    reason: str,
) -> None:
    async with client_of_seed_server(monkeypatch) as (client, server):
        await server.sendto(b"NOTICE slow down", CLIENT)
        await server.sendto(datagram, CLIENT)
    assert client.exit_code == 1
    assert capsys.readouterr() == ("", f"NOTICE slow down\n{reason}\n")
    assert await datagrams_to(server) == ["GREETING"]  # no LEAVE once we are not a member


async def test_an_unreachable_server_ends_the_session_with_exit_1(
    autojump_clock: trio.testing.MockClock,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with client_of_seed_server(monkeypatch) as (client, _server):
        await trio.testing.wait_all_tasks_blocked()
        client.socket.deliver(ConnectionRefusedError())  # the kernel's ICMP "port unreachable"
    assert client.exit_code == 1
    assert capsys.readouterr().err == "The chat server at 10.0.0.1:5000 is not reachable\n"


async def test_garbage_and_other_errors_are_ignored(
    autojump_clock: trio.testing.MockClock,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with client_of_seed_server(monkeypatch) as (client, server):
        await server.sendto(b"\xff\x00 garbage", CLIENT)
        client.socket.deliver(OSError("a transient error"))
        await server.sendto(b"INCOMING 10.0.0.3 4003 carol: still here", CLIENT)
        await trio.testing.wait_all_tasks_blocked()
        client.typist.end()
    assert client.exit_code == 0
    assert capsys.readouterr() == ("still here\n", "")
