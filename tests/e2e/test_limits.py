"""Per-address connection limits (SPEC §11): real server processes, raw TCP peers."""

from __future__ import annotations

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
    assert "Too many" not in server.stderr
