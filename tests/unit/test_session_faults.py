"""Faults on in-memory connections: resets, half-closes, stuck readers, floods, timeouts.

SPEC §8: bad input and broken peers never take the server down or disturb other members;
fan-out never waits on one member; nothing accepted is lost silently. Each test here breaks
one connection in one way while other members chat, then checks that those members received
everything, in order, and that the room still works for a newcomer.

Streams are ``trio.testing`` memory streams (infinite buffering: a reader that keeps up),
lockstep streams (a write completes only when the peer reads: a peer that stops reading),
and :class:`ResettableStream`, whose ``receive_some``/``send_all`` raise
``BrokenResourceError`` once the peer "resets" (after a byte budget, or on demand).
Tests that involve time run on the autojump clock: virtual time passes only when every task
is blocked, so "no virtual time passed" means "nobody waited for a timeout".
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
import trio
import trio.lowlevel
import trio.testing

from triochat.room import OUTBOX_LIMIT, Room
from triochat.server.config import ServerConfig
from triochat.server.session import ChatSession

from .helpers import GUARD, Peer, Recorder, Server
from .helpers import running as running_with

LIMITS = ServerConfig(
    registration_timeout=5.0, idle_flush=0.1, close_grace=1.0, max_line_bytes=1024
)


class ResettableStream(trio.abc.HalfCloseableStream):
    """The server's end of a connection that the peer can reset abruptly.

    After ``receive_budget`` bytes have been received (or once :meth:`reset` is called),
    ``receive_some`` and ``send_all`` raise ``BrokenResourceError``, as a socket does after an
    RST. ``send_budget`` does the same for bytes sent.
    """

    def __init__(
        self,
        inner: trio.abc.HalfCloseableStream,
        *,
        receive_budget: int | None = None,
        send_budget: int | None = None,
    ) -> None:
        self.inner = inner
        self.receive_budget = receive_budget
        self.send_budget = send_budget
        self.broken = False

    def reset(self) -> None:
        self.broken = True

    def _raise_if_broken(self) -> None:
        if self.broken:
            raise trio.BrokenResourceError("connection reset by peer")

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        await trio.lowlevel.checkpoint()
        self._raise_if_broken()
        if self.receive_budget is not None:
            if self.receive_budget <= 0:
                self.broken = True
                self._raise_if_broken()
            max_bytes = min(max_bytes or 65536, self.receive_budget)
        data = await self.inner.receive_some(max_bytes)
        self._raise_if_broken()
        if self.receive_budget is not None:
            self.receive_budget -= len(data)
        return data

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await trio.lowlevel.checkpoint()
        self._raise_if_broken()
        if self.send_budget is not None:
            if len(data) > self.send_budget:
                await self.inner.send_all(bytes(data[: self.send_budget]))
                self.send_budget = 0
                self.broken = True
                self._raise_if_broken()
            self.send_budget -= len(data)
        await self.inner.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self.inner.wait_send_all_might_not_block()

    async def send_eof(self) -> None:
        await self.inner.send_eof()

    async def aclose(self) -> None:
        await self.inner.aclose()


@asynccontextmanager
async def running(room: Room | None = None) -> AsyncIterator[Server]:
    async with running_with(room, limits=LIMITS) as server:
        yield server


# --- abrupt resets ----------------------------------------------------------------------------

JSON_HELLO = b'{"type": "nickname", "nickname": "victim", "clientID": "v"}'
JSON_MESSAGE = b'{"type": "message", "nickname": "victim", "message": "never half of this"}'


async def test_reset_at_every_byte_of_a_json_message_delivers_nothing_of_it(
    autojump_clock: trio.testing.MockClock,
) -> None:
    recorder = Recorder()
    async with running(Room(recorder)) as server:
        alice = await server.join("alice")
        bob = await server.join("bob")
        for cut in range(len(JSON_MESSAGE)):
            client, inner = trio.testing.memory_stream_pair()
            server.serve(ResettableStream(inner, receive_budget=len(JSON_HELLO) + cut))
            victim = Peer(client, "victim")
            before = server.room.statistics()
            await victim.send(JSON_HELLO + JSON_MESSAGE)
            # It joins (the name was whole), then the reset ends it: a reset breaks both
            # directions, so it may not even get its welcome.
            await server.wait_until(
                lambda before=before: server.room.statistics().left == before.left + 1
            )
            assert server.room.statistics().joined == before.joined + 1
            await victim.lines_until_eof(1)
            # The room goes on; nobody heard any part of the message that was cut.
            await alice.send(f"after cut {cut}\n".encode())
            assert await bob.line() == f"alice: after cut {cut}"
            await client.aclose()
        assert server.room.names() == ["alice", "bob"]
        assert [sender for sender, _ in recorder.accepted] == ["alice"] * len(JSON_MESSAGE)
        await server.assert_room_works([alice, bob], "json resets")


async def test_reset_inside_a_line_leaves_no_forged_or_garbled_line(
    autojump_clock: trio.testing.MockClock,
) -> None:
    message = "a line that is cut by a reset"
    async with running() as server:
        alice = await server.join("alice")
        bob = await server.join("bob")
        for cut in range(1, len(message)):
            left_before = server.room.statistics().left
            client, inner = trio.testing.memory_stream_pair()
            hello = f"cut{cut}\n".encode()
            server.serve(ResettableStream(inner, receive_budget=len(hello) + cut))
            await client.send_all(hello + message.encode() + b"\n")
            await server.wait_until(
                lambda before=left_before: server.room.statistics().left == before + 1
            )
            await alice.send(f"after cut {cut}\n".encode())
            # At most what really arrived, as one line under the sender's name; never more.
            line = await bob.line()
            if line != f"alice: after cut {cut}":
                assert line == f"cut{cut}: {message[:cut]}", line
                assert await bob.line() == f"alice: after cut {cut}"
            await client.aclose()
        assert server.room.names() == ["alice", "bob"]
        await server.assert_room_works([alice, bob], "line resets")


async def test_reset_while_the_server_writes_a_backlog_ends_only_that_member(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with running() as server:
        alice = await server.join("alice")
        bob = await server.join("bob")
        client, inner = trio.testing.memory_stream_pair()
        victim_stream = ResettableStream(inner, send_budget=1000)
        server.serve(victim_stream)
        await client.send_all(b"victim\n")
        await server.wait_until(lambda: "victim" in server.room.names())
        for number in range(200):
            await alice.send(f"message {number}\n".encode())
        for number in range(200):
            assert await bob.line() == f"alice: message {number}"
        await server.wait_until(lambda: "victim" not in server.room.names())
        assert victim_stream.broken
        # The victim got a clean prefix of what was sent before the reset, then the end.
        received = bytearray()
        with trio.fail_after(GUARD):
            while data := await client.receive_some(65536):
                received += data
        everything = b"".join(f"alice: message {n}\n".encode() for n in range(200))
        assert bytes(received) == everything[:1000]
        assert server.room.statistics().evictions == 0
        await server.assert_room_works([alice, bob], "write reset")


async def test_reset_on_demand_while_idle_and_while_registering(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with running() as server:
        alice = await server.join("alice")
        # A member that is idle when its connection resets.
        client, inner = trio.testing.memory_stream_pair()
        idle = ResettableStream(inner)
        server.serve(idle)
        await client.send_all(b"idle\n")
        await server.wait_until(lambda: "idle" in server.room.names())
        idle.reset()
        await client.aclose()  # wakes the pending receive, which now raises
        await server.wait_until(lambda: "idle" not in server.room.names())
        # A connection that resets before it has a name.
        client, inner = trio.testing.memory_stream_pair()
        half_named = ResettableStream(inner, receive_budget=3)
        server.serve(half_named)
        await client.send_all(b"registering\n")
        await trio.testing.wait_all_tasks_blocked()
        assert server.room.names() == ["alice"]
        await server.assert_room_works([alice], "idle resets")
        assert server.room.statistics().evictions == 0


# --- half-closed clients ----------------------------------------------------------------------


@pytest.mark.parametrize("dialect", ["line", "json"])
async def test_half_closed_member_still_receives_everything_queued_before_close(
    autojump_clock: trio.testing.MockClock, dialect: str
) -> None:
    async with running() as server:
        alice = await server.join("alice")
        # Lockstep: the server's writes to bob wait until bob reads, so alice's messages
        # pile up in bob's outbox before bob half-closes.
        client, inner = trio.testing.lockstep_stream_pair()
        server.serve(inner)
        bob = Peer(client, "bob")
        if dialect == "line":
            await bob.send(b"bob\n")
        else:
            # Framed (a newline after the object): the writer coalesces, as for the line peer.
            await bob.send(json.dumps({"type": "nickname", "nickname": "bob"}).encode() + b"\n")
        await server.wait_until(lambda: "bob" in server.room.names())
        total = 300
        for number in range(total):
            await alice.send(f"queued {number}\n".encode())
        await trio.testing.wait_all_tasks_blocked()
        # Bob's last words (unterminated in the line dialect), then end of stream.
        if dialect == "line":
            await bob.send(b"last words")
        else:
            await bob.send(json.dumps({"type": "message", "message": "last words"}).encode())
        await bob.stream.send_eof()
        assert await alice.line() == "bob: last words"
        lines = await bob.lines_until_eof(total + 10)
        if dialect == "json":
            objects = [json.loads(line) for line in lines]
            assert objects[0]["type"] == "welcome"
            lines = [f"{o['nickname']}: {o['message']}" for o in objects[1:]]
        assert lines == [f"alice: queued {number}" for number in range(total)]
        await server.wait_until(lambda: "bob" not in server.room.names())
        assert server.room.statistics().evictions == 0
        await server.assert_room_works([alice], f"{dialect} half-close")


async def test_half_close_before_the_name_line_ends_the_connection_quietly(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with running() as server:
        alice = await server.join("alice")
        peer = server.connect("silent")
        await peer.stream.send_eof()
        assert await peer.closed()
        peer2 = server.connect("unframed name")
        await peer2.send(b"quick")  # a name without newline, then end of stream
        await peer2.stream.send_eof()
        assert await peer2.closed()
        await trio.testing.wait_all_tasks_blocked()
        assert "quick" not in server.room.names()
        await server.assert_room_works([alice], "early eof")


# --- a member that stops reading; a flooding member --------------------------------------------


async def test_member_that_stops_reading_is_evicted_while_others_get_everything_at_full_speed(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with running() as server:
        readers = [await server.join(f"reader{index}") for index in range(3)]
        client, inner = trio.testing.lockstep_stream_pair()
        server.serve(inner)
        stuck = Peer(client, "stuck")
        await stuck.send(b"stuck\n")
        await server.wait_until(lambda: "stuck" in server.room.names())
        talker = await server.join("talker")
        total = OUTBOX_LIMIT + 300
        received: dict[str, list[str]] = {reader.name: [] for reader in readers}
        start = trio.current_time()

        async def read_all(reader: Peer) -> None:
            for _ in range(total):
                received[reader.name].append(await reader.line())

        async with trio.open_nursery() as nursery:
            for reader in readers:
                nursery.start_soon(read_all, reader)
            for first in range(0, total, 50):
                burst = "".join(f"m{n}\n" for n in range(first, min(first + 50, total)))
                await talker.send(burst.encode())
        elapsed = trio.current_time() - start
        expected = [f"talker: m{n}" for n in range(total)]
        for reader in readers:
            assert received[reader.name] == expected, reader.name
        # Nobody waited for the stuck member: no timer had to fire for the flood to get through.
        assert elapsed < LIMITS.idle_flush, elapsed
        assert "stuck" not in server.room.names()
        stats = server.room.statistics()
        assert stats.evictions == 1
        # The stuck member reads now, within its grace: a clean prefix, then why it was cut off.
        lines = await stuck.lines_until_eof(total + 10)
        assert lines[-1] == f"*** Disconnected: you fell more than {OUTBOX_LIMIT} messages behind"
        prefix = lines[:-1]
        assert prefix == expected[: len(prefix)]
        assert len(prefix) >= OUTBOX_LIMIT
        await server.assert_room_works(readers, "stuck reader")


async def test_flood_from_one_member_delays_others_only_by_bounded_work() -> None:
    recorder = Recorder()
    async with running(Room(recorder)) as server:
        watcher = await server.join("watcher")
        other = await server.join("other")
        flooder = await server.join("flooder")
        flood = 16 * OUTBOX_LIMIT
        watched: list[str] = []
        heard_by_other: list[str] = []
        ping_sent_after: list[int] = []

        async def watch() -> None:
            for _ in range(flood + 1):
                watched.append(await watcher.line())

        async def other_listens() -> None:
            for _ in range(flood):
                heard_by_other.append(await other.line())

        async def ping_once_the_flood_flows() -> None:
            with trio.fail_after(GUARD):
                await recorder.first_message_from["flooder"].wait()
            ping_sent_after.append(len(recorder.accepted))
            await other.send(b"ping\n")

        async with trio.open_nursery() as nursery:
            nursery.start_soon(watch)
            nursery.start_soon(other_listens)
            nursery.start_soon(ping_once_the_flood_flows)
            # The whole flood in four writes: each read holds thousands of messages.
            payload = "".join(f"f{n}\n" for n in range(flood)).encode()
            quarter = len(payload) // 4
            for start in range(0, len(payload), quarter):
                await flooder.send(payload[start : start + quarter])

        accepted_at = recorder.accepted.index(("other", "ping"))
        flood_in_between = accepted_at - ping_sent_after[0]
        # The ping overtook almost all of the flood: only a bounded amount of work came first.
        print(f"flood messages accepted between ping sent and ping accepted: {flood_in_between}")
        assert flood_in_between <= OUTBOX_LIMIT // 4, flood_in_between
        assert flood_in_between < flood // 2
        # And the watcher, who keeps up, got every message of both, each sender in order.
        assert [line for line in watched if line.startswith("flooder: ")] == [
            f"flooder: f{n}" for n in range(flood)
        ]
        assert "other: ping" in watched
        assert heard_by_other == [f"flooder: f{n}" for n in range(flood)]
        assert server.room.statistics().evictions == 0
        await server.assert_room_works([watcher, other], "flood")


# --- registration timeouts ----------------------------------------------------------------------


async def test_connections_that_never_finish_registering_time_out_while_others_chat(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with running() as server:
        alice = await server.join("alice")
        bob = await server.join("bob")
        start = trio.current_time()

        trickler = server.connect("trickler")  # white space only, one byte a second
        half_json = server.connect("half json")  # an object that never ends
        await half_json.send(b'{"type": "nickname", "nickname": "ha')
        retrier = server.connect("retrier")  # keeps asking for a taken name
        silent = server.connect("silent")  # says nothing at all
        outcomes: dict[str, float] = {}

        async def trickle() -> None:
            for _ in range(int(LIMITS.registration_timeout * 4)):
                try:
                    await trickler.send(b" ")
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    break
                await trio.sleep(1)

        async def retry() -> None:
            for _ in range(int(LIMITS.registration_timeout * 4)):
                try:
                    await retrier.send(b"Alice\n")
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    break
                await trio.sleep(1)

        async def outcome(peer: Peer) -> None:
            lines = await peer.lines_until_eof(100)
            outcomes[peer.name] = trio.current_time() - start
            last = lines[-1]
            if last.startswith("{"):
                assert json.loads(last) == {
                    "type": "error",
                    "message": "Timed out waiting for a nickname",
                }
            else:
                assert last == "*** Timed out waiting for a nickname", (peer.name, lines)

        async def chat() -> None:
            for number in range(int(LIMITS.registration_timeout * 2)):
                await alice.send(f"tick {number}\n".encode())
                assert await bob.line() == f"alice: tick {number}"
                await trio.sleep(1)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(trickle)
            nursery.start_soon(retry)
            nursery.start_soon(chat)
            for peer in (trickler, half_json, retrier, silent):
                nursery.start_soon(outcome, peer)

        for name, elapsed in outcomes.items():
            # The whole registration is bounded, however busy the peer keeps itself.
            assert LIMITS.registration_timeout <= elapsed
            assert elapsed <= LIMITS.registration_timeout + LIMITS.close_grace + 1, name
        assert set(outcomes) == {"trickler", "half json", "retrier", "silent"}
        assert server.room.names() == ["alice", "bob"]
        await server.assert_room_works([alice, bob], "timeouts")


# --- oversized and malformed JSON ---------------------------------------------------------------


def big_object(size: int) -> bytes:
    head = b'{"type": "message", "message": "'
    return head + b"y" * (size - len(head) - 2) + b'"}'


async def test_json_object_over_the_limit_closes_only_that_connection(
    autojump_clock: trio.testing.MockClock,
) -> None:
    limit = LIMITS.max_line_bytes
    async with running() as server:
        watcher = await server.join("watcher")
        jason = await server.join_json("jason")
        big = await server.join_json("big")
        exact = big_object(limit)
        assert len(exact) == limit
        await big.send(exact)  # exactly at the limit: accepted
        assert await watcher.line() == "big: " + "y" * (limit - 34)
        assert (await jason.json())["message"] == "y" * (limit - 34)
        await big.send(big_object(limit + 1) + b'{"type": "message", "message": "after"}')
        reply = await big.json()
        assert reply["type"] == "error"
        assert "too large" in str(reply["message"])
        assert await big.closed()
        await server.wait_until(lambda: "big" not in server.room.names())
        # Only that connection: jason still talks, the watcher heard nothing more from big.
        await jason.send(b'{"type": "message", "message": "still here"}')
        assert await watcher.line() == "jason: still here"
        await server.assert_room_works([watcher], "big object")
        assert server.room.names() == ["watcher", "jason"]


@pytest.mark.parametrize(
    "first_object",
    [
        big_object(LIMITS.max_line_bytes + 1),
        b"{" * 40 + b"}" * 40,
        b'{"type": "nickname", "nickname": "' + b"n" * 2000,
    ],
    ids=["too large", "too deep", "unterminated and too large"],
)
async def test_oversized_first_object_never_joins(
    autojump_clock: trio.testing.MockClock, first_object: bytes
) -> None:
    async with running() as server:
        watcher = await server.join("watcher")
        peer = server.connect("oversized")
        await peer.send(first_object)
        reply = await peer.json()
        assert reply["type"] == "error"
        assert await peer.closed()
        assert server.room.names() == ["watcher"]
        await server.assert_room_works([watcher], "oversized first object")


async def test_garbage_storm_then_good_messages_in_every_dialect(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Recoverable errors leave the connection usable: the next good message goes through."""
    async with running() as server:
        watcher = await server.join("watcher")
        liner = await server.join("liner")
        jason = await server.join_json("jason")
        await liner.send(b"x" * 5000 + b"\n\xff\xfe\x00\n/bogus\nline ok\n")
        assert await watcher.line() == "liner: \ufffd\ufffd\\x00"
        assert await watcher.line() == "liner: line ok"
        assert (await liner.line()).startswith("*** Line too long")
        assert (await liner.line()).startswith("*** Unknown command /bogus")
        for text in ("\ufffd\ufffd\\x00", "line ok"):
            broadcast = await jason.json()
            assert (broadcast["type"], broadcast["nickname"], broadcast["message"]) == (
                "broadcast",
                "liner",
                text,
            )
        await jason.send(
            b'garbage\n{"type": "warp"}{not json}{"type": "message", "message": [1]}'
            b'{"type": "message", "message": "json ok"}'
        )
        assert await watcher.line() == "jason: json ok"
        assert await liner.line() == "jason: json ok"
        errors = [await jason.json() for _ in range(4)]
        # Recoverable: notices, since a seed-003 client ends its session on any "error".
        assert all((e["type"], e["level"]) == ("notice", "error") for e in errors), errors
        await server.assert_room_works([watcher, liner], "garbage")
        assert server.room.names() == ["watcher", "liner", "jason"]


# --- timestamps at the edges of time --------------------------------------------------------

DISPLAY = re.compile(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}")


@pytest.mark.parametrize(
    "timestamp",
    [
        "2024-03-21 10:30:45",
        "2024-03-21T10:30:45.123+05:30",
        "1711017045",
        "253402300799",  # 9999-12-31 23:59:59 UTC
        "9999-12-31 23:59:59",
        "1000-01-01 00:00:00",
        "0999-12-31 23:59:59",
        "-1e300",
        "nan",
        "not a time at all",
        pytest.param(
            "9999-12-31T23:59:59-23:59",
            id="year-9999-negative-offset",
        ),
        pytest.param(
            "1000-01-01T00:00:00+23:59",
            id="year-1000-positive-offset",
        ),
    ],
)
async def test_any_timestamp_a_json_member_sends_is_accepted_and_shown_in_the_display_format(
    timestamp: str, autojump_clock: trio.testing.MockClock
) -> None:
    recorder = Recorder()
    room = Room(recorder)
    crashes: list[BaseException] = []
    async with trio.open_nursery() as nursery:
        server = Server(room, nursery, LIMITS)

        async def run_guarded(session: ChatSession) -> None:
            # Like the server's handler: one session's exception is recorded, not propagated.
            try:
                await session.run()
            except Exception as error:
                crashes.append(error)

        watcher = await server.join("watcher")
        client, inner = trio.testing.memory_stream_pair()
        nursery.start_soon(run_guarded, ChatSession(inner, None, room, ("127.0.0.1", 4242), LIMITS))
        sender = Peer(client, "sender")
        await sender.send(b'{"type": "nickname", "nickname": "sender"}')
        assert (await sender.json())["type"] == "welcome"
        message = {"type": "message", "message": "hello", "timestamp": timestamp}
        await sender.send(json.dumps(message).encode())
        await sender.send(b'{"type": "message", "message": "and again"}')
        await server.wait_until(lambda: len(recorder.accepted) == 2 or bool(crashes))
        assert crashes == []
        assert await watcher.line() == "sender: hello"
        assert await watcher.line() == "sender: and again"
        assert "sender" in room.names()
        room.close("test over")
        nursery.cancel_scope.cancel()
    for shown in recorder.display_times:
        assert DISPLAY.fullmatch(shown), shown
