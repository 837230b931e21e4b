"""Seed 003: ``ChatServer.py <port>`` and ``ChatClient.py <host> <port> <nickname> <id>``."""

from __future__ import annotations

import json

import pytest
import trio

from .harness import LOCALHOST, Harness, Program, json_banner, received_json, rx, summary


async def start_json_client(
    h: Harness, port: int, nickname: str, client_id: str
) -> tuple[Program, str]:
    """Start a JSON client; returns it and the start time its banner shows."""
    client = await h.start(
        "ChatClient.py", "127.0.0.1", str(port), nickname, client_id, label=f"json {nickname}"
    )
    start = (await client.expect_next(json_banner(port, nickname, client_id))).group(1)
    return client, start


async def test_seed_003_three_json_clients(harness: Harness) -> None:
    server, port = await harness.start_chat_server()
    alice, alice_start = await start_json_client(harness, port, "Alice", "001")
    await server.expect_next(rx("{dt} :: Alice: connected."))
    bob, bob_start = await start_json_client(harness, port, "Bob", "002")
    await server.expect_next(rx("{dt} :: Bob: connected."))

    # A taken nickname (compared case-insensitively): the client asks for another on stdin.
    carol, carol_start = await start_json_client(harness, port, "alice", "003")
    await carol.expect_next("Nickname already in use")
    await carol.expect_next("Enter a different nickname:")
    await carol.send_line("Carol")
    await server.expect_next(rx("{dt} :: Carol: connected."))

    await alice.send_line("Hello, everyone!")
    sent_at = (await server.expect_next(received_json("Alice", "001", 16))).group(2)
    await server.expect_next("Broadcasted: Bob, Carol")
    # Receivers show the sender's own timestamp, the one the server reports too.
    await bob.expect_next(f"{sent_at} :: Alice: Hello, everyone!")
    await carol.expect_next(f"{sent_at} :: Alice: Hello, everyone!")

    await bob.send_line("Hi Alice, welcome!")
    sent_at = (await server.expect_next(received_json("Bob", "002", 18))).group(2)
    await server.expect_next("Broadcasted: Alice, Carol")
    await alice.expect_next(f"{sent_at} :: Bob: Hi Alice, welcome!")
    await carol.expect_next(f"{sent_at} :: Bob: Hi Alice, welcome!")

    await carol.send_line("Hey!")
    sent_at = (await server.expect_next(received_json("Carol", "003", 4))).group(2)
    await server.expect_next("Broadcasted: Alice, Bob")
    await alice.expect_next(f"{sent_at} :: Carol: Hey!")
    await bob.expect_next(f"{sent_at} :: Carol: Hey!")

    # "disconnect" leaves with a summary; characters count message text only.
    await alice.send_line("disconnect")
    match = await alice.expect_next(summary(sent=1, rcv=2, chars_sent=16, chars_rcv=22))
    assert match.group(1) == alice_start
    assert match.group(2) >= alice_start
    assert await alice.wait_exit() == 0
    await server.expect_next(rx("{dt} :: Alice: disconnected."))

    # The others keep chatting.
    await bob.send_line("Bye Alice")
    sent_at = (await server.expect_next(received_json("Bob", "002", 9))).group(2)
    await server.expect_next("Broadcasted: Carol")
    await carol.expect_next(f"{sent_at} :: Bob: Bye Alice")

    # End of stdin leaves like "disconnect", within about a second.
    leaving_at = trio.current_time()
    await bob.close_stdin()
    match = await bob.expect_next(summary(sent=2, rcv=2, chars_sent=27, chars_rcv=20))
    assert match.group(1) == bob_start
    assert await bob.wait_exit() == 0
    assert trio.current_time() - leaving_at < 1.5
    await server.expect_next(rx("{dt} :: Bob: disconnected."))

    await carol.send_line("disconnect")
    match = await carol.expect_next(summary(sent=1, rcv=3, chars_sent=4, chars_rcv=43))
    assert match.group(1) == carol_start
    assert await carol.wait_exit() == 0
    await server.expect_next(rx("{dt} :: Carol: disconnected."))

    for client in (alice, bob, carol):
        client.assert_consumed()
        client.assert_no_traceback()
    server.assert_consumed()
    assert server.returncode is None


class SeedStyleServer:
    """One accepted connection of a server that, like seed 003's, never acknowledges a join."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self._buffer = b""

    async def next_object(self) -> dict[str, object]:
        with trio.fail_after(10):
            while b"\n" not in self._buffer:
                data = await self.stream.receive_some(65536)
                assert data, f"client closed; unread: {self._buffer!r}"
                self._buffer += data
        line, _, self._buffer = self._buffer.partition(b"\n")
        parsed: dict[str, object] = json.loads(line)
        return parsed

    async def broadcast(self, nickname: str, message: str) -> None:
        data = {
            "type": "broadcast",
            "nickname": nickname,
            "message": message,
            "timestamp": "2024-03-21 10:30:45",
        }
        await self.stream.send_all((json.dumps(data) + "\n").encode())


@pytest.mark.parametrize("first_word", ["silence", "a broadcast"])
async def test_json_client_chats_with_a_server_that_never_acknowledges_the_join(
    harness: Harness, first_word: str
) -> None:
    # Seed 003's server answers a join only when the nickname is taken: silence (or a
    # broadcast, which only members get) means the client is in.
    (listener,) = await trio.open_tcp_listeners(0, host=LOCALHOST)
    port = listener.socket.getsockname()[1]
    async with listener:
        client = await harness.start(
            "ChatClient.py", LOCALHOST, str(port), "Ann", "7", label="json client Ann"
        )
        server = SeedStyleServer(await listener.accept())
        async with server.stream:
            assert (await server.next_object())["type"] == "nickname"
            if first_word == "a broadcast":
                await server.broadcast("Bob", "welcome, Ann")
            await client.send_line("Hello, everyone!")
            said = await server.next_object()
            assert (said["type"], said["message"]) == ("message", "Hello, everyone!")
            if first_word == "silence":
                await server.broadcast("Bob", "welcome, Ann")
            await client.expect_line("2024-03-21 10:30:45 :: Bob: welcome, Ann")
            await client.close_stdin()
            assert (await server.next_object())["type"] == "disconnect"
    assert await client.wait_exit() == 0
    await client.expect_line(summary(1, 1, 16, 12))
    client.assert_no_traceback()
