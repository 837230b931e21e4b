"""The member's writer: coalescing, the fast path over a real socket, unframed pacing, close.

The fast path needs a file descriptor, so those tests use ``socket.socketpair()``; pacing
uses memory streams and the autojump clock (no real sleeps).
"""

from __future__ import annotations

import itertools
import socket

import pytest
import trio
import trio.testing

from triochat.events import ChatMessage, Notice
from triochat.room import Delivery
from triochat.server.config import ServerConfig
from triochat.server.writer import Flusher, MemberWriter
from triochat.wire.common import NEED_DATA
from triochat.wire.lines import LineServerCodec

CONFIG = ServerConfig(outbox_limit=64, close_grace=1.0)


def message(text: str, sender: str = "alice") -> Delivery:
    return Delivery(ChatMessage(sender, text, "t", "2024-03-21 10:30:45", "127.0.0.1", 1))


def framed_codec() -> LineServerCodec:
    codec = LineServerCodec()
    codec.receive_data(b"bob\n")  # a newline: the peer is framed
    assert codec.next_event() is not None and codec.framed
    return codec


class Failures:
    def __init__(self) -> None:
        self.reasons: list[str] = []

    def __call__(self, reason: str) -> None:
        self.reasons.append(reason)


def recv_all_now(sock: socket.socket) -> bytes:
    """Everything the socket holds right now (non-blocking)."""
    data = b""
    while True:
        try:
            chunk = sock.recv(1 << 20)
        except BlockingIOError:
            return data
        if not chunk:
            return data
        data += chunk


async def test_fast_path_writes_the_first_delivery_of_a_turn_and_stages_the_rest() -> None:
    ours, theirs = socket.socketpair()
    theirs.setblocking(False)
    flusher = Flusher()
    stream = trio.SocketStream(trio.socket.from_stdlib_socket(ours))
    writer = MemberWriter(
        stream,
        framed_codec(),
        CONFIG,
        Failures(),
        flusher,
    )
    async with trio.open_nursery() as nursery:
        await nursery.start(flusher.serve)
        nursery.start_soon(writer.serve)
        await trio.testing.wait_all_tasks_blocked()
        writer.send_nowait(message("one"))
        # In the socket already, within the room's call: no task ran for it.
        assert recv_all_now(theirs) == b"alice: one\n"
        for text in ("two", "three"):
            writer.send_nowait(message(text))
        # The same turn: staged for the flusher, not queued for the writer task.
        assert recv_all_now(theirs) == b""
        assert writer.statistics().current_buffer_used == 0
        await trio.testing.wait_all_tasks_blocked()
        assert recv_all_now(theirs) == b"alice: two\nalice: three\n"
        # A later turn: straight through again.
        writer.send_nowait(message("four"))
        assert recv_all_now(theirs) == b"alice: four\n"
        writer.close()
        nursery.cancel_scope.cancel()  # the flusher serves until cancelled
    await stream.aclose()
    theirs.close()


async def test_fast_path_hands_what_the_socket_refuses_to_the_writer_in_order() -> None:
    ours, theirs = socket.socketpair()
    ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    theirs.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    theirs.setblocking(False)
    flusher = Flusher()
    failures = Failures()
    stream = trio.SocketStream(trio.socket.from_stdlib_socket(ours))
    writer = MemberWriter(
        stream,
        framed_codec(),
        CONFIG,
        failures,
        flusher,
    )
    texts = [f"{number:03} " + "x" * 2000 for number in range(40)]
    expected = b"".join(f"alice: {text}\n".encode() for text in texts)
    async with trio.open_nursery() as nursery:
        await nursery.start(flusher.serve)
        nursery.start_soon(writer.serve)
        await trio.testing.wait_all_tasks_blocked()
        for text in texts:
            writer.send_nowait(message(text))
        received = b""
        with trio.fail_after(10):
            while len(received) < len(expected):
                await trio.lowlevel.wait_readable(theirs)
                received += recv_all_now(theirs)
        assert received == expected
        assert failures.reasons == []
        writer.close()
        nursery.cancel_scope.cancel()
    await stream.aclose()
    theirs.close()


async def test_framed_writes_coalesce_what_is_queued() -> None:
    client, server = trio.testing.memory_stream_pair()
    writer = MemberWriter(server, framed_codec(), CONFIG, Failures())
    for text in ("a", "b", "c"):
        writer.send_nowait(message(text))
    async with trio.open_nursery() as nursery:
        nursery.start_soon(writer.serve)
        assert await client.receive_some() == b"alice: a\nalice: b\nalice: c\n"
        writer.close()


async def test_unframed_peer_gets_one_message_per_write_paced_without_newline(
    autojump_clock: trio.testing.MockClock,
) -> None:
    client, server = trio.testing.memory_stream_pair()
    writer = MemberWriter(server, LineServerCodec(), CONFIG, Failures())
    for text in ("a", "b"):
        writer.send_nowait(message(text))
    writer.send_nowait(Delivery(Notice("note")))
    async with trio.open_nursery() as nursery:
        nursery.start_soon(writer.serve)
        reads = []
        times = []
        for _ in range(3):
            reads.append(await client.receive_some())
            times.append(trio.current_time())
        assert reads == [b"alice: a", b"alice: b", b"*** note"]
        gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
        assert all(gap >= CONFIG.unframed_write_gap for gap in gaps), gaps
        writer.close()


async def test_close_flushes_the_queue_then_the_farewell_and_refuses_more() -> None:
    client, server = trio.testing.memory_stream_pair()
    writer = MemberWriter(server, framed_codec(), CONFIG, Failures())
    writer.send_nowait(message("last words"))
    writer.close(Notice("Server shutting down", is_error=True))
    writer.close(Notice("ignored: the first close wins"))
    with pytest.raises(trio.ClosedResourceError):
        writer.send_nowait(message("too late"))
    async with trio.open_nursery() as nursery:
        nursery.start_soon(writer.serve)
        received = b""
        while not received.endswith(b"shutting down\n"):
            received += await client.receive_some()
        assert received == b"alice: last words\n*** Server shutting down\n"


async def test_a_writer_whose_peer_never_reads_stops_after_the_close_grace(
    autojump_clock: trio.testing.MockClock,
) -> None:
    _client, server = trio.testing.lockstep_stream_pair()  # a write waits for a read: never
    writer = MemberWriter(server, framed_codec(), CONFIG, Failures())
    writer.send_nowait(message("stuck"))
    async with trio.open_nursery() as nursery:
        nursery.start_soon(writer.serve)
        await trio.testing.wait_all_tasks_blocked()
        start = trio.current_time()
        writer.close()
    assert trio.current_time() - start == pytest.approx(CONFIG.close_grace)


async def test_a_delivery_queued_for_the_task_is_not_overtaken_by_the_fast_path() -> None:
    ours, theirs = socket.socketpair()
    theirs.setblocking(False)
    flusher = Flusher()
    codec = LineServerCodec()
    codec.receive_data(b"bob")  # no newline yet: an unframed peer, served by the task
    assert codec.next_event() is NEED_DATA and not codec.framed
    stream = trio.SocketStream(trio.socket.from_stdlib_socket(ours))
    writer = MemberWriter(stream, codec, CONFIG, Failures(), flusher)
    async with trio.open_nursery() as nursery:
        await nursery.start(flusher.serve)
        nursery.start_soon(writer.serve)
        await trio.testing.wait_all_tasks_blocked()
        writer.send_nowait(message("first"))  # handed to the waiting task, not yet written
        codec.receive_data(b"\n")  # the peer turns out to be framed...
        assert codec.next_event() is not None and codec.framed
        writer.send_nowait(message("second"))  # ...which must not let this one go first
        await trio.testing.wait_all_tasks_blocked()
        assert recv_all_now(theirs) == b"alice: first\nalice: second\n"
        writer.close()
        nursery.cancel_scope.cancel()
    await stream.aclose()
    theirs.close()
