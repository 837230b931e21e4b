"""Sessions over in-memory streams: registration, dialects, timeouts, eviction, coalescing."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
import trio
import trio.testing

from triochat.room import OUTBOX_LIMIT, Room
from triochat.server.config import ServerConfig
from triochat.server.reader import sniff_codec
from triochat.server.session import ChatSession
from triochat.wire.json_lines import JsonServerCodec
from triochat.wire.lines import LineServerCodec, PortTaggedServerCodec

from .helpers import NOW, Peer

LIMITS = ServerConfig(registration_timeout=5.0, idle_flush=0.1, close_grace=1.0)


@asynccontextmanager
async def serving(room: Room, *, port: int = 40000) -> AsyncIterator[tuple[trio.Nursery, Peer]]:
    """Run a sniffing session for one in-memory client."""
    async with trio.open_nursery() as nursery:
        client_stream, server_stream = trio.testing.memory_stream_pair()

        async def serve() -> None:
            await ChatSession(server_stream, None, room, ("127.0.0.1", port), LIMITS).run()

        nursery.start_soon(serve)
        yield nursery, Peer(client_stream)


async def test_line_members_chat_and_never_hear_themselves() -> None:
    room = Room()
    async with serving(room, port=1) as (_, alice), serving(room, port=2) as (_, bob):
        await alice.send(b"alice\n")
        await trio.testing.wait_all_tasks_blocked()
        await bob.send(b"bob\r\nhello there\r\n")
        assert await alice.line() == "bob: hello there"
        await alice.send(b"hi bob\n")
        assert await bob.line() == "alice: hi bob"
        await alice.send(b"/quit\n")
        assert await alice.closed()
        await bob.stream.aclose()
    assert room.names() == []


async def test_taken_name_gets_a_reason_and_the_next_line_is_a_new_try() -> None:
    room = Room()
    async with serving(room) as (_, first), serving(room) as (_, second):
        await first.send(b"Alice\n")
        await trio.testing.wait_all_tasks_blocked()
        await second.send(b"aLiCe\n")
        assert await second.line() == "*** Nickname already in use"
        await second.send(b"bad name\n")
        assert await second.line() == "*** Name must not contain white space"
        await second.send(b"carol\n")
        await trio.testing.wait_all_tasks_blocked()
        assert room.names() == ["Alice", "carol"]
        await first.stream.aclose()
        await second.stream.aclose()


async def test_json_objects_without_newlines_and_trickled_bytes(
    autojump_clock: trio.testing.MockClock,
) -> None:
    room = Room()
    async with serving(room) as (_, listener):
        await listener.send(b"listener\n")
        client_stream, server_stream = trio.testing.lockstep_stream_pair()
        async with trio.open_nursery() as nursery:

            async def serve() -> None:
                await ChatSession(server_stream, None, room, ("127.0.0.1", 9), LIMITS).run()

            nursery.start_soon(serve)
            payload = (
                b'{"type":"nickname","nickname":"j","clientID":7,"timstamp":"x"}'
                b'{"type":"message","nickname":"j","message":"a {\\"b\\"} c",'
                b'"timestamp":"2024-03-21 10:30:45"}'
            )
            # One byte per send: the framer must reassemble everything.
            for index in range(len(payload)):
                await client_stream.send_all(payload[index : index + 1])
            json_peer = Peer(client_stream)
            welcome = json.loads(await json_peer.line())
            assert welcome["type"] == "welcome"
            assert await listener.line() == 'j: a {"b"} c'
            await client_stream.send_all(b'{"type":"disconnect","nickname":"j","clientID":7}')
            goodbye = json.loads(await json_peer.line())
            # Not "disconnect": a seed-003 client takes that for a server shutdown.
            assert goodbye["type"] == "bye"
        await listener.stream.aclose()


async def test_json_message_under_someone_elses_nickname_is_refused() -> None:
    room = Room()
    async with serving(room) as (_, victim), serving(room) as (_, forger):
        await victim.send(b"victim\n")
        await forger.send(b'{"type":"nickname","nickname":"forger","clientID":"1"}\n')
        assert json.loads(await forger.line())["type"] == "welcome"
        await forger.send(b'{"type":"message","nickname":"victim","message":"fake"}\n')
        error = json.loads(await forger.line())
        # The session goes on: a notice, since a seed-003 client ends on any "error".
        assert (error["type"], error["level"]) == ("notice", "error")
        assert "not yours" in error["message"]
        await forger.send(b'{"type":"message","nickname":"forger","message":"real"}\n')
        assert await victim.line() == "forger: real"
        await victim.stream.aclose()
        await forger.stream.aclose()


async def test_bad_json_gets_an_error_and_the_connection_goes_on() -> None:
    room = Room()
    async with serving(room) as (_, peer):
        await peer.send(b'{"type":"nickname","nickname":"p"}\n')
        assert json.loads(await peer.line())["type"] == "welcome"
        await peer.send(b"{not json}\n")
        assert json.loads(await peer.line())["level"] == "error"
        await peer.send(b'{"type":"warp"}\n')
        assert json.loads(await peer.line())["message"] == "Unknown message type 'warp'"
        await peer.send(b'{"type":"disconnect"}')
        assert json.loads(await peer.line())["type"] == "bye"
        assert await peer.closed()


async def test_silent_connection_times_out(autojump_clock: trio.testing.MockClock) -> None:
    room = Room()
    async with serving(room) as (_, peer):
        await peer.send(b"\n")  # white space only: still no dialect, no name
        start = trio.current_time()
        # Not known to be framed: the notice comes as one write without a newline.
        assert await peer.rest() == b"*** Timed out waiting for a nickname"
        assert trio.current_time() - start >= LIMITS.registration_timeout
        assert room.names() == []


async def test_line_member_that_never_names_itself_times_out(
    autojump_clock: trio.testing.MockClock,
) -> None:
    room = Room()
    async with serving(room) as (_, peer):
        await peer.send(b"bad name\n")
        assert await peer.line() == "*** Name must not contain white space"
        assert await peer.line() == "*** Timed out waiting for a nickname"
        assert await peer.closed()
        assert trio.current_time() >= LIMITS.registration_timeout


async def test_unterminated_bytes_count_as_a_line_after_a_quiet_time(
    autojump_clock: trio.testing.MockClock,
) -> None:
    room = Room()
    async with serving(room) as (_, listener), serving(room) as (_, unframed):
        await listener.send(b"listener\n")
        await unframed.send(b"unframed")
        await trio.testing.wait_all_tasks_blocked()
        assert room.names() == ["listener"]  # not yet: the name might still be arriving
        await trio.sleep(LIMITS.idle_flush * 2)
        assert room.names() == ["listener", "unframed"]
        await unframed.send(b"no newline here")
        assert await listener.line() == "unframed: no newline here"
        await listener.stream.aclose()
        await unframed.stream.aclose()


async def test_port_tagged_members_and_exit_echo(
    autojump_clock: trio.testing.MockClock,
) -> None:
    room = Room()
    async with trio.open_nursery() as nursery:
        peers = []
        for port in (5001, 5002):
            client_stream, server_stream = trio.testing.memory_stream_pair()
            session = ChatSession(
                server_stream,
                PortTaggedServerCodec(),
                room,
                ("127.0.0.1", port),
                LIMITS,
                fixed_name=str(port),
            )
            nursery.start_soon(session.run)
            peers.append(Peer(client_stream))
        await trio.testing.wait_all_tasks_blocked()
        # peers[1] never sent a newline: it gets what the seed's server sends, exactly.
        await peers[0].send(b"Hi!\n")
        assert await peers[1].receive() == b"5001:Hi!"
        await peers[1].send(b"Hello!")
        assert await peers[0].line() == "5002:Hello!"
        await peers[1].send(b"exit")
        assert await peers[1].rest() == b"exit"
        # A framed peer gets the echo as a line.
        await peers[0].send(b"exit\n")
        assert await peers[0].line() == "exit"
        assert await peers[0].closed()


async def test_writer_coalesces_everything_queued_into_one_write() -> None:
    room = Room()
    async with serving(room) as (_, reader), serving(room) as (_, writer):
        await reader.send(b"reader\n")
        await writer.send(b"writer\n")
        await trio.testing.wait_all_tasks_blocked()
        sender = room.find("writer")
        assert sender is not None
        for number in range(3):
            room.broadcast(sender, f"m{number}", received_at=NOW)
        data = await reader.stream.receive_some(65536)
        assert data == b"writer: m0\nwriter: m1\nwriter: m2\n"
        await reader.stream.aclose()
        await writer.stream.aclose()


async def test_member_that_never_reads_is_evicted_and_others_keep_up(
    autojump_clock: trio.testing.MockClock,
) -> None:
    room = Room()
    async with trio.open_nursery() as nursery:
        # The lockstep pair lets a write finish only when the peer reads: this peer never does.
        stuck_client, stuck_server = trio.testing.lockstep_stream_pair()
        nursery.start_soon(
            ChatSession(stuck_server, LineServerCodec(), room, ("127.0.0.1", 1), LIMITS).run
        )
        await stuck_client.send_all(b"stuck\n")
        async with serving(room, port=2) as (_, fast), serving(room, port=3) as (_, talker):
            await fast.send(b"fast\n")
            await talker.send(b"talker\n")
            await trio.testing.wait_all_tasks_blocked()
            total = OUTBOX_LIMIT + 50
            for number in range(total):
                await talker.send(f"{number}\n".encode())
                assert await fast.line() == f"talker: {number}"
            assert "stuck" not in room.names()
            assert room.statistics().evictions == 1
            await fast.stream.aclose()
            await talker.stream.aclose()
        await stuck_client.aclose()


@pytest.mark.parametrize("first_bytes", [b"  \r\n{", b"{"])
async def test_sniffing_picks_json_after_leading_white_space(first_bytes: bytes) -> None:
    client, server = trio.testing.memory_stream_pair()
    await client.send_all(first_bytes)
    codec = await sniff_codec(server, LIMITS)
    assert isinstance(codec, JsonServerCodec)


async def test_sniffing_picks_lines_otherwise_and_keeps_the_bytes() -> None:
    client, server = trio.testing.memory_stream_pair()
    await client.send_all(b"alice\n")
    codec = await sniff_codec(server, LIMITS)
    assert isinstance(codec, LineServerCodec)
    event = codec.next_event()
    assert getattr(event, "name", None) == "alice"


async def test_a_burst_larger_than_an_outbox_in_one_read_evicts_nobody() -> None:
    """Thousands of tiny messages in one read must not overflow readers that keep up."""
    room = Room()
    async with serving(room, port=1) as (_, reader), serving(room, port=2) as (_, flooder):
        await reader.send(b"reader\n")
        await flooder.send(b"flooder\n")
        await trio.testing.wait_all_tasks_blocked()
        burst = OUTBOX_LIMIT * 4
        await flooder.send(b"".join(f"{n}\n".encode() for n in range(burst)))
        for number in range(burst):
            assert await reader.line() == f"flooder: {number}"
        assert room.statistics().evictions == 0
        await reader.stream.aclose()
        await flooder.stream.aclose()


async def test_rate_limit_slows_a_flooder_and_loses_nothing(
    autojump_clock: trio.testing.MockClock,
) -> None:
    limits = ServerConfig(message_rate=10.0, message_burst=5)
    room = Room()
    async with trio.open_nursery() as nursery:
        peers = []
        for port in (1, 2):
            client_stream, server_stream = trio.testing.memory_stream_pair()
            session = ChatSession(server_stream, None, room, ("127.0.0.1", port), limits)
            nursery.start_soon(session.run)
            peers.append(Peer(client_stream))
        listener, flooder = peers
        await listener.send(b"listener\n")
        await flooder.send(b"flooder\n")
        await trio.testing.wait_all_tasks_blocked()
        start = trio.current_time()
        await flooder.send(b"".join(f"{n}\n".encode() for n in range(25)))
        for number in range(25):
            assert await listener.line() == f"flooder: {number}"
        # Five at once, then twenty more at ten per second.
        assert trio.current_time() - start == pytest.approx(2.0, abs=0.01)
        assert await flooder.line() == (
            "*** Slow down: at most 10 messages per second; "
            "your messages are being delayed, none is lost"
        )
        assert room.statistics().messages == 25
        nursery.cancel_scope.cancel()


async def test_idle_timeout_disconnects_a_silent_member(
    autojump_clock: trio.testing.MockClock,
) -> None:
    limits = ServerConfig(idle_timeout=60.0)
    room = Room()
    client_stream, server_stream = trio.testing.memory_stream_pair()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(ChatSession(server_stream, None, room, ("127.0.0.1", 1), limits).run)
        peer = Peer(client_stream)
        await peer.send(b"sleepy\n")
        await trio.sleep(59)
        await peer.send(b"still here\n")  # any traffic resets the clock
        await trio.sleep(59)
        assert room.names() == ["sleepy"]
        with trio.fail_after(120):  # without the timeout nothing would ever arrive
            assert await peer.line() == "*** Disconnected: idle for 60 s"
        assert await peer.closed()
        assert trio.current_time() >= 59 + 60
        assert room.names() == []


async def test_on_finish_runs_when_the_member_leaves_not_after_the_last_flush(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # The connection gate frees a place through on_finish: a newcomer must get it as soon as
    # the console has said "disconnected", even while the leaver's last bytes are stuck.
    room = Room()
    finished_at: list[float] = []
    session_ended = trio.Event()
    async with trio.open_nursery() as nursery:
        stuck_client, stuck_server = trio.testing.lockstep_stream_pair()
        session = ChatSession(
            stuck_server,
            LineServerCodec(),
            room,
            ("127.0.0.1", 1),
            LIMITS,
            on_finish=lambda: finished_at.append(trio.current_time()),
        )

        async def run_session() -> None:
            await session.run()
            session_ended.set()

        nursery.start_soon(run_session)
        await stuck_client.send_all(b"stuck\n")
        async with serving(room, port=2) as (_, talker):
            await talker.send(b"talker\nyou there?\n")
            await trio.testing.wait_all_tasks_blocked()  # stuck's writer is blocked on it
            await stuck_client.send_all(b"/quit\n")
            await trio.testing.wait_all_tasks_blocked()
            assert room.names() == ["talker"]
            assert len(finished_at) == 1
            assert not session_ended.is_set()  # still trying to flush, within close_grace
            await session_ended.wait()
            assert len(finished_at) == 1
            await talker.stream.aclose()
        await stuck_client.aclose()
