"""Seed 003: ``ChatServer.py <port>`` and ``ChatClient.py <host> <port> <nickname> <id>``."""

from __future__ import annotations

import re

import pytest
import trio

from .harness import Harness, Program, rx

pytestmark = pytest.mark.e2e


def banner(port: int, nickname: str, client_id: str) -> re.Pattern[str]:
    """The JSON client's first line; group 1 is its start date/time."""
    return rx(
        f"ChatClient started with server IP: 127.0.0.1, port: {port}, nickname: {nickname}, "
        f"client ID: {client_id}, Date/Time: {{dt}}"
    )


def received(name: str, client_id: str, size: int) -> re.Pattern[str]:
    """The server's ``Received:`` line; group 1 is the port, group 2 the date/time."""
    return rx(
        f"Received: IP:127.0.0.1, Port:{{port}}, Client-Nickname:{name}, "
        f"ClientID:{client_id}, Date/Time:{{dt}}, Msg-Size:{size}"
    )


def summary(sent: int, rcv: int, chars_sent: int, chars_rcv: int) -> re.Pattern[str]:
    """The ``Summary:`` line; groups 1 and 2 are start and end."""
    return rx(
        f"Summary: start:{{dt}}, end:{{dt}}, msg sent:{sent}, msg rcv:{rcv}, "
        f"char sent:{chars_sent}, char rcv:{chars_rcv}"
    )


async def start_json_client(
    h: Harness, port: int, nickname: str, client_id: str
) -> tuple[Program, str]:
    """Start a JSON client; returns it and the start time its banner shows."""
    client = await h.start(
        "ChatClient.py", "127.0.0.1", str(port), nickname, client_id, label=f"json {nickname}"
    )
    start = (await client.expect_next(banner(port, nickname, client_id))).group(1)
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
    sent_at = (await server.expect_next(received("Alice", "001", 16))).group(2)
    await server.expect_next("Broadcasted: Bob, Carol")
    # Receivers show the sender's own timestamp, the one the server reports too.
    await bob.expect_next(f"{sent_at} :: Alice: Hello, everyone!")
    await carol.expect_next(f"{sent_at} :: Alice: Hello, everyone!")

    await bob.send_line("Hi Alice, welcome!")
    sent_at = (await server.expect_next(received("Bob", "002", 18))).group(2)
    await server.expect_next("Broadcasted: Alice, Carol")
    await alice.expect_next(f"{sent_at} :: Bob: Hi Alice, welcome!")
    await carol.expect_next(f"{sent_at} :: Bob: Hi Alice, welcome!")

    await carol.send_line("Hey!")
    sent_at = (await server.expect_next(received("Carol", "003", 4))).group(2)
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
    sent_at = (await server.expect_next(received("Bob", "002", 9))).group(2)
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
