"""Server limits set from the command line: connections and the per-member queue."""

from __future__ import annotations

import json

from .harness import Harness, rx


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
