"""Seed 004: ``mychatserver.py`` and ``mychatclient.py`` (members named by their port)."""

from __future__ import annotations

import trio

from .harness import Harness, Program, rx

WELCOME = "Connected to chat server. Type 'exit' to leave."


async def start_client(h: Harness, server: Program, port: int, label: str) -> tuple[Program, str]:
    """Start a seed-004 client; returns it and its port as the server names it."""
    client = await h.start("mychatclient.py", "--port", str(port), label=label)
    await client.expect_next(WELCOME)
    tag = (await server.expect_next(rx("New connection from : ('127.0.0.1', {port})"))).group(1)
    return client, tag


async def test_seed_004_three_clients_and_an_unframed_peer(harness: Harness) -> None:
    server, port = await harness.start_port_tagged_server()
    c1, p1 = await start_client(harness, server, port, "client1")
    c2, p2 = await start_client(harness, server, port, "client2")
    c3, p3 = await start_client(harness, server, port, "client3")
    assert len({p1, p2, p3}) == 3

    conversation = [
        (c1, p1, "Hi!"),
        (c2, p2, "Hello! "),  # the seed's trailing space is kept
        (c3, p3, "How are you guys doing?"),
        (c2, p2, "Good."),
        (c1, p1, "Good."),
    ]
    for sender, tag, text in conversation:
        await sender.send_line(text)
        await server.expect_next(f"{tag}:{text}")
        for other in (c1, c2, c3):
            if other is not sender:
                await other.expect_next(f"{tag}:{text}")

    # A raw peer that sends without any newline (one send() per message).
    raw = await harness.connect(port, "unframed", unframed=True)
    await server.expect_next(f"New connection from : ('127.0.0.1', {raw.local_port})")
    await raw.send(b"Hi!")
    await server.expect_next(f"{raw.local_port}:Hi!")
    for client in (c1, c2, c3):
        await client.expect_next(f"{raw.local_port}:Hi!")
    await c3.send_line("welcome, raw")
    await server.expect_next(f"{p3}:welcome, raw")
    await raw.expect_next(f"{p3}:welcome, raw")
    await c1.expect_next(f"{p3}:welcome, raw")
    await c2.expect_next(f"{p3}:welcome, raw")
    await raw.send(b"exit")
    await raw.expect_next("exit")  # exactly "exit", then the server closes
    await raw.log.expect_closed()
    await server.expect_next("Connection closed")
    raw.log.assert_consumed()

    for client in (c1, c2, c3):
        await client.send_line("exit")
        await client.expect_next("Disconnected from server")
        assert await client.wait_exit() == 0
        await server.expect_next("Connection closed")

    # Every client saw exactly the others' messages, in order, and nothing of its own.
    for client, tag in ((c1, p1), (c2, p2), (c3, p3)):
        seen = client.stdout.lines
        expected = [WELCOME]
        expected += [f"{t}:{text}" for sender, t, text in conversation if t != tag]
        expected.append(f"{raw.local_port}:Hi!")
        if tag != p3:
            expected.append(f"{p3}:welcome, raw")
        expected.append("Disconnected from server")
        assert seen == expected, f"{client.label} printed {seen!r}"
        client.assert_no_traceback()

    server.assert_consumed()
    assert server.returncode is None
    server.assert_no_traceback()


async def test_port_tagged_client_leaves_at_end_of_input(harness: Harness) -> None:
    server, port = await harness.start_port_tagged_server()
    listener, _ = await start_client(harness, server, port, "listener")
    piped, tag = await start_client(harness, server, port, "piped")
    await piped.send_bytes(b"quick one\n")
    leaving_at = trio.current_time()
    await piped.close_stdin()
    await listener.expect_next(f"{tag}:quick one")
    await piped.expect_next("Disconnected from server")
    assert await piped.wait_exit() == 0
    assert trio.current_time() - leaving_at < 1.5
    await server.expect_next(f"{tag}:quick one")
    await server.expect_next("Connection closed")
    piped.assert_consumed()
    piped.assert_no_traceback()
    listener.assert_consumed()
