"""Server limits set from the command line, with real server processes and raw TCP peers:
connections overall and per address (SPEC §11), and the per-member queue."""

from __future__ import annotations

import json

import trio

from .harness import Harness, RawPeer, rx


async def open_many(harness: Harness, port: int, count: int, source: str) -> list[RawPeer]:
    """``count`` line members from ``source``, each joined (the server said so)."""
    peers: list[RawPeer] = []

    async def open_one(number: int) -> None:
        peer = await harness.connect(port, f"p{number}", source=source)
        await peer.send(f"p{number}\n".encode())
        peers.append(peer)

    async with trio.open_nursery() as nursery:
        for number in range(count):
            nursery.start_soon(open_one, number)
    return peers


async def test_the_65th_connection_from_one_address_is_refused_another_gets_in(
    harness: Harness,
) -> None:
    server, port = await harness.start_chat_server("--max-per-ip", "64")
    with trio.fail_after(30):
        await open_many(harness, port, 64, "127.0.0.1")
        for _ in range(64):
            await server.expect_line(rx("{dt} :: p{any}: connected."))
    refused = await harness.connect(port, "65th", source="127.0.0.1")
    await refused.send(b"sixty-fifth\n")
    await refused.expect_next(
        "*** Too many connections from your address (limit 64); try again later"
    )
    await refused.log.expect_closed()
    json_refused = await harness.connect(port, "65th json", source="127.0.0.1")
    await json_refused.send(b'{"type": "nickname", "nickname": "j", "clientID": "1"}\n')
    await json_refused.expect_next(
        rx(
            '{"type": "error", "message": "Too many connections from your address (limit 64); '
            'try again later"}'
        )
    )
    other = await harness.connect(port, "other address", source="127.0.0.2")
    await other.send(b"elsewhere\n")
    await server.expect_line(rx("{dt} :: elsewhere: connected."))
    await other.send(b"/who\n")
    await other.expect_next(rx("*** Members: {any}"))
    assert "Traceback" not in server.stderr


async def test_without_the_option_300_loopback_connections_all_get_in(harness: Harness) -> None:
    server, port = await harness.start_chat_server()
    with trio.fail_after(40):
        peers = await open_many(harness, port, 300, "127.0.0.1")
        for _ in range(300):
            await server.expect_line(rx("{dt} :: p{any}: connected."))
    speaker = peers[0]
    await speaker.send(b"all of you\n")
    await server.expect_line(rx("Received: {any}"))
    broadcast = await server.expect_next(rx("Broadcasted: {any}"))
    assert len(broadcast.group(1).split(", ")) == 299


async def test_connections_over_the_limit_are_refused_politely_in_their_dialect(
    harness: Harness,
) -> None:
    server, port = await harness.start_chat_server("--max-connections", "2")
    first = await harness.connect(port, "first")
    await first.send(b"first\n")
    await server.expect_next(rx("{dt} :: first: connected."))
    second = await harness.connect(port, "second")
    await second.send(b"second\n")
    await server.expect_next(rx("{dt} :: second: connected."))

    refused_line = await harness.connect(port, "refused line")
    await refused_line.send(b"third\n")
    await refused_line.expect_next("*** Server full (2 connections); try again later")
    await refused_line.log.expect_closed()

    refused_json = await harness.connect(port, "refused json")
    await refused_json.send(b'{"type":"nickname","nickname":"j","clientID":"1"}')
    reply = json.loads(await refused_json.next_line())
    assert reply == {"type": "error", "message": "Server full (2 connections); try again later"}

    # A place frees up: the next connection is served, and the room never noticed the others.
    await first.aclose()
    await server.expect_next(rx("{dt} :: first: disconnected."))
    fourth = await harness.connect(port, "fourth")
    await fourth.send(b"fourth\nhello\n")
    await server.expect_next(rx("{dt} :: fourth: connected."))
    await second.expect_next("fourth: hello")


async def test_a_small_outbox_limit_keeps_a_member_that_reads(harness: Harness) -> None:
    server, port = await harness.start_chat_server("--outbox-limit", "4")
    watcher = await harness.connect(port, "watcher")
    await watcher.send(b"watcher\n")
    await server.expect_next(rx("{dt} :: watcher: connected."))
    talker = await harness.connect(port, "talker")
    await talker.send(b"talker\n")
    await server.expect_next(rx("{dt} :: talker: connected."))
    # The watcher reads everything; with four slots a burst of replies still fits each time.
    for number in range(20):
        await talker.send(f"m{number}\n".encode())
        await watcher.expect_next(f"talker: m{number}")
    assert "disconnected" not in "\n".join(server.stdout.lines)
