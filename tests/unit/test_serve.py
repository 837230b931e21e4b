"""``serve_chat`` as a Trio service: started on port 0 with ``nursery.start``, observed through
the :class:`ChatService` it reports, shut down gracefully, then cancelled."""

from __future__ import annotations

import json
from functools import partial

import pytest
import trio

from triochat.room import Room
from triochat.server.config import ServerConfig
from triochat.server.serve import ChatService, open_chat_sockets, serve_chat, serve_port_tagged

from .helpers import Recorder

GUARD = 10.0


async def read_until(stream: trio.SocketStream, ending: bytes) -> bytes:
    """Bytes from ``stream`` until they end with ``ending`` (or the stream ends)."""
    data = b""
    with trio.fail_after(GUARD):
        while not data.endswith(ending):
            chunk = await stream.receive_some(65536)
            if not chunk:
                break
            data += chunk
    return data


async def test_serve_chat_on_port_0_chats_and_shuts_down() -> None:
    listeners, datagram_sockets = await open_chat_sockets(0, "127.0.0.1")
    watcher = Recorder()
    room = Room(observer=watcher)
    async with trio.open_nursery() as nursery:
        service: ChatService = await nursery.start(
            partial(serve_chat, listeners, room, ServerConfig(), datagram_sockets=datagram_sockets)
        )
        assert service.port == listeners[0].socket.getsockname()[1] != 0
        assert datagram_sockets[0].getsockname()[1] == service.port  # UDP on the same number
        alice = await trio.open_tcp_stream("127.0.0.1", service.port)
        bob = await trio.open_tcp_stream("127.0.0.1", service.port)
        async with alice, bob:
            await alice.send_all(b"alice\n")
            await bob.send_all(b'{"type": "nickname", "nickname": "bob"}\n')
            assert json.loads(await read_until(bob, b"\n"))["type"] == "welcome"
            with trio.fail_after(GUARD):
                await watcher.wait_for_joins(2)
            await alice.send_all(b"hello bob\n")
            broadcast = json.loads(await read_until(bob, b"\n"))
            assert (broadcast["nickname"], broadcast["message"]) == ("alice", "hello bob")
            assert service.gate.open == 2

            await service.shutdown()
            shutdown = await read_until(alice, b"Server shutting down\n")
            assert shutdown == b"*** Server shutting down\n"
            farewell = json.loads(await read_until(bob, b"\n"))
            assert (farewell["type"], farewell["message"]) == ("error", "Server shutting down")
            assert room.names() == []
            with pytest.raises(OSError):  # the listeners are closed: nobody new gets in
                await trio.open_tcp_stream("127.0.0.1", service.port)
        nursery.cancel_scope.cancel()
    for sock in datagram_sockets:
        sock.close()


async def test_serve_port_tagged_echoes_exit_to_an_unframed_peer() -> None:
    listeners, _ = await open_chat_sockets(0, "127.0.0.1", udp=False)
    watcher = Recorder()
    room = Room(observer=watcher)
    async with trio.open_nursery() as nursery:
        service: ChatService = await nursery.start(
            partial(serve_port_tagged, listeners, room, ServerConfig())
        )
        async with await trio.open_tcp_stream("127.0.0.1", service.port) as peer:
            with trio.fail_after(GUARD):
                await watcher.wait_for_joins(1)
            await peer.send_all(b"exit")
            assert await read_until(peer, b"exit") == b"exit"
            assert await peer.receive_some(1) == b""  # then the server closes
        nursery.cancel_scope.cancel()
