"""Seed 000: ``ChatServer.py <port>`` and the line client ``ChatClient.py <port>``."""

from __future__ import annotations

import trio

from .harness import Harness, Program, rx


def received(name: str, size: int, client_id: str = "-") -> str:
    """The template of the server's ``Received:`` line for a message from ``name``."""
    return (
        f"Received: IP:127.0.0.1, Port:{{port}}, Client-Nickname:{name}, "
        f"ClientID:{client_id}, Date/Time:{{dt}}, Msg-Size:{size}"
    )


async def join_line_client(h: Harness, server: Program, port: int, name: str) -> Program:
    """Start a seed-000 client, send its name, and wait until the server says it joined."""
    client = await h.start("ChatClient.py", str(port), label=f"line client {name}")
    await client.send_line(name)
    await server.expect_next(rx(f"{{dt}} :: {name}: connected."))
    return client


async def test_seed_000_three_line_clients(harness: Harness) -> None:
    server, port = await harness.start_chat_server()
    alice = await join_line_client(harness, server, port, "alice")
    bob = await join_line_client(harness, server, port, "bob")
    carol = await join_line_client(harness, server, port, "carol")

    await alice.send_line("hello from alice")
    alice_port = (await server.expect_next(rx(received("alice", 16)))).group(1)
    await server.expect_next("Broadcasted: bob, carol")
    await bob.expect_next("alice: hello from alice")
    await carol.expect_next("alice: hello from alice")

    await bob.send_line("hi alice")
    await server.expect_next(rx(received("bob", 8)))
    await server.expect_next("Broadcasted: alice, carol")
    # Strictly the next line: alice's own message never came back to her before this one.
    await alice.expect_next("bob: hi alice")
    await carol.expect_next("bob: hi alice")

    await carol.send_line("hey: there")
    await server.expect_next(rx(received("carol", 10)))
    await server.expect_next("Broadcasted: alice, bob")
    await alice.expect_next("carol: hey: there")
    await bob.expect_next("carol: hey: there")

    await alice.send_line("again")
    match = await server.expect_next(rx(received("alice", 5)))
    assert match.group(1) == alice_port, "one member's Port stays the same"
    await server.expect_next("Broadcasted: bob, carol")
    await bob.expect_next("alice: again")
    await carol.expect_next("alice: again")

    # End of stdin: alice leaves and exits 0 within about a second.
    leaving_at = trio.current_time()
    await alice.close_stdin()
    assert await alice.wait_exit() == 0
    assert trio.current_time() - leaving_at < 1.5
    await server.expect_next(rx("{dt} :: alice: disconnected."))
    alice.assert_consumed()  # nothing she sent came back to her
    alice.assert_no_traceback()

    # The others keep chatting.
    await bob.send_line("still here")
    await server.expect_next(rx(received("bob", 10)))
    await server.expect_next("Broadcasted: carol")
    await carol.expect_next("bob: still here")

    await carol.close_stdin()
    assert await carol.wait_exit() == 0
    await server.expect_next(rx("{dt} :: carol: disconnected."))

    await bob.send_line("anyone?")
    await server.expect_next(rx(received("bob", 7)))
    await server.expect_next("Broadcasted:")
    await bob.close_stdin()
    assert await bob.wait_exit() == 0
    await server.expect_next(rx("{dt} :: bob: disconnected."))

    for client in (bob, carol):
        client.assert_consumed()
        client.assert_no_traceback()
    assert server.returncode is None
    server.assert_consumed()

    # New clients can still join and chat.
    dave = await join_line_client(harness, server, port, "dave")
    erin = await join_line_client(harness, server, port, "erin")
    await dave.send_line("late hello")
    await server.expect_next(rx(received("dave", 10)))
    await server.expect_next("Broadcasted: erin")
    await erin.expect_next("dave: late hello")


async def test_line_dialect_taken_name_is_refused_then_retry_works(harness: Harness) -> None:
    server, port = await harness.start_chat_server()
    first = await join_line_client(harness, server, port, "Alice")

    second = await harness.start("ChatClient.py", str(port), label="line client 2")
    await second.send_line("alice")  # taken: names compare case-insensitively
    await second.expect_next("*** Nickname already in use")
    # Names that break the rules (SPEC §2) each get one "*** " line; the next line is a new try.
    for bad in ("bad name", "x" * 33, "col:on", "*star", "{brace", "/slash", "#hash"):
        await second.send_line(bad)
        await second.expect_next(rx("*** {any}"))
    await second.send_line("bob")  # the next line is a new try
    await server.expect_next(rx("{dt} :: bob: connected."))

    await second.send_line("hi")
    await server.expect_next(rx(received("bob", 2)))
    await server.expect_next("Broadcasted: Alice")
    await first.expect_next("bob: hi")

    await first.send_line("yo")
    await server.expect_next(rx(received("Alice", 2)))
    await server.expect_next("Broadcasted: bob")
    await second.expect_next("Alice: yo")

    # Uniqueness holds across dialects: a JSON client cannot take "ALICE" either.
    json_client = await harness.start(
        "ChatClient.py", "127.0.0.1", str(port), "ALICE", "7", label="json client"
    )
    await json_client.expect_next(
        rx(
            f"ChatClient started with server IP: 127.0.0.1, port: {port}, nickname: ALICE, "
            "client ID: 7, Date/Time: {dt}"
        )
    )
    await json_client.expect_next("Nickname already in use")
    await json_client.expect_next("Enter a different nickname:")
    await json_client.send_line("Alicia")
    await server.expect_next(rx("{dt} :: Alicia: connected."))
    await json_client.send_line("disconnect")
    assert await json_client.wait_exit() == 0
    await server.expect_next(rx("{dt} :: Alicia: disconnected."))
    json_client.assert_no_traceback()

    # Case-insensitive means casefold: "STRASSE" is taken once "Straße" is here.
    strasse = await harness.connect(port, "strasse")
    await strasse.send("Straße\n".encode())
    await server.expect_next(rx("{dt} :: Straße: connected."))
    shouty = await harness.connect(port, "shouty")
    await shouty.send(b"STRASSE\n")
    await shouty.expect_next("*** Nickname already in use")
    await shouty.aclose()
    await strasse.aclose()
    await server.expect_next(rx("{dt} :: Straße: disconnected."))

    for client, name in ((first, "Alice"), (second, "bob")):
        await client.close_stdin()
        assert await client.wait_exit() == 0
        await server.expect_next(rx(f"{{dt}} :: {name}: disconnected."))
        client.assert_consumed()
        client.assert_no_traceback()
    server.assert_consumed()  # no "connected." line for the refused names


async def test_piped_sessions_are_delivered_before_leaving(harness: Harness) -> None:
    """Everything piped in before end of input reaches the room; then each client exits 0."""
    server, port = await harness.start_chat_server()
    listener = await join_line_client(harness, server, port, "listener")

    line_client = await harness.start("ChatClient.py", str(port), label="piped line client")
    await line_client.send_bytes(b"zed\nquick one\nquick two\n")
    await line_client.close_stdin()
    await listener.expect_next("zed: quick one")
    await listener.expect_next("zed: quick two")
    assert await line_client.wait_exit() == 0
    await server.expect_line(rx("{dt} :: zed: disconnected."))

    json_client = await harness.start(
        "ChatClient.py", "127.0.0.1", str(port), "Yan", "9", label="piped json client"
    )
    await json_client.send_bytes(b"quick three\n")
    await json_client.close_stdin()
    await listener.expect_next("Yan: quick three")
    await json_client.expect_line(
        rx("Summary: start:{dt}, end:{dt}, msg sent:1, msg rcv:0, char sent:11, char rcv:0")
    )
    assert await json_client.wait_exit() == 0
    await server.expect_line(rx("{dt} :: Yan: disconnected."))

    for client in (line_client, json_client):
        client.assert_consumed()
        client.assert_no_traceback()
