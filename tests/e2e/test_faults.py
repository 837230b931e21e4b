"""Fault injection against the real server process (SPEC §8, issue 6).

Abrupt resets (RST, via SO_LINGER 0) in the middle of a line and of a JSON object while others
chat; a member that stops reading while another floods; 2,000 concurrent connections; Ctrl-C
under load; running out of file descriptors (EMFILE) and recovering. Everything waits for a
condition (a line, a close, an exit); deadlines are generous guards, never the thing waited
for. Every loop is bounded.
"""

from __future__ import annotations

import json
import re
import resource
import signal
import socket
import struct
from pathlib import Path

import pytest
import trio

from .harness import LOCALHOST, ROOT, Harness, LineLog, Program, RawPeer, join_raw_line, rx

SHUTDOWN_LINE = "*** Server shutting down"
SHUTDOWN_JSON = {"type": "error", "message": "Server shutting down"}


# --- helpers ----------------------------------------------------------------------------------


async def join_json(harness: Harness, server: Program, port: int, name: str) -> RawPeer:
    """A raw JSON member called ``name``, welcomed when this returns.

    Framed (a newline after each object, as our JSON client writes): the server may coalesce
    what it sends, so a flood reaches it at full speed.
    """
    peer = await harness.connect(port, name)
    hello = {"type": "nickname", "nickname": name, "clientID": "f", "timestamp": "now"}
    await peer.send(json.dumps(hello).encode() + b"\n")
    await peer.expect_line(
        re.compile(re.escape(f'{{"type": "welcome", "nickname": "{name}"') + ".*")
    )
    await server.expect_line(rx(f"{{dt}} :: {name}: connected."))
    return peer


async def reset(peer: RawPeer) -> None:
    """Close with an RST instead of a FIN (SO_LINGER on, zero seconds)."""
    peer.stream.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    await trio.aclose_forcefully(peer.stream)


async def open_stuck_member(server: Program, port: int, name: str) -> trio.SocketStream:
    """A member with a tiny receive buffer that never reads."""
    sock = trio.socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    await sock.connect((LOCALHOST, port))
    stream = trio.SocketStream(sock)
    await stream.send_all(f"{name}\n".encode())
    await server.expect_line(rx(f"{{dt}} :: {name}: connected."))
    return stream


async def count_lines(log: LineLog, pattern: re.Pattern[str], count: int, within: float) -> None:
    """Consume ``count`` lines matching ``pattern`` (in any interleaving with other lines)."""
    with trio.fail_after(within):
        for _ in range(count):
            await log.expect_line(pattern, within)


def raise_own_fd_limit(needed: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= needed:
        return
    if hard != resource.RLIM_INFINITY and hard < needed:
        pytest.skip(f"needs {needed} open files, hard limit is {hard}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))


# --- abrupt resets ----------------------------------------------------------------------------


async def test_resets_mid_line_and_mid_json_object_while_others_chat(harness: Harness) -> None:
    server, port = await harness.start_chat_server()
    watcher = await join_raw_line(harness, server, port, "watcher")
    pacer = await join_raw_line(harness, server, port, "pacer")
    chatter = await join_json(harness, server, port, "chatter")
    sent: list[str] = []
    stop = trio.Event()

    async def chat() -> None:
        # Keeps talking all along; each message is paced by its arrival at the pacer.
        for number in range(10_000):
            if stop.is_set():
                return
            text = f"chat {number}"
            await chatter.send(json.dumps({"type": "message", "message": text}).encode())
            sent.append(text)
            await pacer.expect_line(f"chatter: {text}")

    rounds = 8
    async with trio.open_nursery() as nursery:
        nursery.start_soon(chat)
        for number in range(rounds):
            line_victim = await join_raw_line(harness, server, port, f"rl{number}")
            await line_victim.send(b"half a li")
            await reset(line_victim)
            await server.expect_line(rx(f"{{dt}} :: rl{number}: disconnected."))
            json_victim = await join_json(harness, server, port, f"rj{number}")
            await json_victim.send(b'{"type": "message", "message": "half an obj')
            await reset(json_victim)
            await server.expect_line(rx(f"{{dt}} :: rj{number}: disconnected."))
        stop.set()

    assert len(sent) >= 1
    print(f"resets: {len(sent)} chat messages during {rounds} rounds")
    await chatter.send(json.dumps({"type": "message", "message": "the end"}).encode())
    await watcher.expect_line("chatter: the end")
    lines = watcher.log.lines
    assert [line for line in lines if line.startswith("chatter: ")] == [
        f"chatter: {text}" for text in [*sent, "the end"]
    ]
    # Nothing of a cut JSON object ever arrives; a cut line at most as the bytes that came.
    others = [line for line in lines if not line.startswith("chatter: ")]
    assert all(re.fullmatch(r"rl\d+: half a li", line) for line in others), others
    assert server.returncode is None
    server.assert_no_traceback()
    assert "Traceback" not in server.stderr
    late = await join_raw_line(harness, server, port, "late")
    await late.send(b"still fine\n")
    await watcher.expect_line("late: still fine")


async def test_half_closed_sockets_deliver_what_they_sent_and_get_what_was_queued(
    harness: Harness,
) -> None:
    server, port = await harness.start_chat_server()
    watcher = await join_raw_line(harness, server, port, "watcher")
    # A line member that says its piece and half-closes (like `echo ... | nc -N`), an
    # unterminated last line included; and a JSON member that does the same.
    liner = await join_raw_line(harness, server, port, "liner")
    await liner.send(b"one\ntwo, unterminated")
    await liner.send_eof()
    await watcher.expect_next("liner: one")
    await watcher.expect_next("liner: two, unterminated")
    await server.expect_line(rx("{dt} :: liner: disconnected."))
    await liner.log.expect_closed()
    jason = await join_json(harness, server, port, "jason")
    await watcher.send(b"for jason\n")
    await jason.expect_line(
        re.compile(re.escape('{"type": "broadcast", "nickname": "watcher"') + ".*")
    )
    await jason.send(json.dumps({"type": "message", "message": "bye for now"}).encode())
    await jason.send_eof()
    await watcher.expect_next("jason: bye for now")
    await server.expect_line(rx("{dt} :: jason: disconnected."))
    await jason.log.expect_closed()
    # A connection that half-closes before it has a name is just closed.
    nameless = await harness.connect(port, "nameless")
    await nameless.send_eof()
    await nameless.log.expect_closed()
    assert nameless.log.lines == []
    late = await join_raw_line(harness, server, port, "late")
    await late.send(b"still fine\n")
    await watcher.expect_next("late: still fine")
    assert server.returncode is None
    assert "Traceback" not in server.stderr


# --- a member that stops reading while another floods ----------------------------------------

FLOOD_LIMIT = 5_000
BATCH = 50
PAYLOAD = "x" * 2000


def flood_line(number: int) -> str:
    return f"{number:05d} {PAYLOAD}"


async def test_member_that_stops_reading_is_cut_off_while_a_flood_reaches_everyone_else(
    harness: Harness,
) -> None:
    server, port = await harness.start_chat_server()
    watcher = await join_raw_line(harness, server, port, "watcher")
    flooder = await join_raw_line(harness, server, port, "flooder")
    stuck = await open_stuck_member(server, port, "stuck")
    try:
        disconnected = rx("{dt} :: stuck: disconnected.")
        scanned = 0
        sent = 0
        with trio.fail_after(45):
            while sent < FLOOD_LIMIT:
                batch = [flood_line(n) for n in range(sent, min(sent + BATCH, FLOOD_LIMIT))]
                await flooder.send("".join(f"{line}\n" for line in batch).encode())
                sent += len(batch)
                # The watcher keeps up: it has the whole batch before the next one goes out.
                await watcher.expect_line(f"flooder: {batch[-1]}")
                lines = server.stdout.lines
                if any(disconnected.fullmatch(line) for line in lines[scanned:]):
                    break
                scanned = len(lines)
        assert sent < FLOOD_LIMIT or any(disconnected.fullmatch(x) for x in server.stdout.lines), (
            f"the stuck member was still connected after {FLOOD_LIMIT} messages"
        )
        assert [line for line in watcher.log.lines if line.startswith("flooder: ")] == [
            f"flooder: {flood_line(n)}" for n in range(sent)
        ]

        # What the stuck member gets when it finally reads: a clean prefix of the flood, then
        # perhaps the reason, then the end.
        received = bytearray()
        with trio.fail_after(30):
            try:
                while data := await stuck.receive_some(1 << 20):
                    received += data
                    assert len(received) < 64 << 20
            except trio.BrokenResourceError:
                pass
        *complete, partial = bytes(received).split(b"\n")
        texts = [line.decode() for line in complete]
        notice = "*** Disconnected: you fell more than 1024 messages behind"
        told = bool(texts) and texts[-1].startswith("*** ")
        if told:
            assert texts.pop() == notice
            assert partial == b""
        expected = [f"flooder: {flood_line(n)}" for n in range(len(texts))]
        assert texts == expected
        assert f"flooder: {flood_line(len(texts))}".encode().startswith(partial)
        assert len(texts) < sent
        print(f"flood: {sent} sent; the stuck member got {len(texts)}; told why: {told}")
    finally:
        await trio.aclose_forcefully(stuck)

    # Everyone else carries on.
    await flooder.send(b"done\n")
    await watcher.expect_line("flooder: done")
    assert server.returncode is None
    assert "Traceback" not in server.stderr


# --- thousands of connections -----------------------------------------------------------------

CONNECTIONS = 2_000


async def test_two_thousand_concurrent_connections(harness: Harness) -> None:
    raise_own_fd_limit(CONNECTIONS + 500)
    server, port = await harness.start_chat_server()
    watcher = await join_raw_line(harness, server, port, "watcher")
    members: list[RawPeer] = []

    async def open_one(number: int) -> None:
        peer = await harness.connect(port, f"m{number}")
        await peer.send(f"m{number}\n".encode())
        members.append(peer)

    with trio.fail_after(40):
        for first in range(0, CONNECTIONS, 200):
            async with trio.open_nursery() as nursery:
                for number in range(first, min(first + 200, CONNECTIONS)):
                    nursery.start_soon(open_one, number)
        await count_lines(server.stdout, rx("{dt} :: m{any}: connected."), CONNECTIONS, 30)

        await watcher.send(b"hello, two thousand\n")
        for peer in members:
            await peer.expect_line("watcher: hello, two thousand")
        await server.expect_line(rx("Received: {any}Client-Nickname:watcher, {any}"))
        broadcast = await server.expect_next(rx("Broadcasted: {any}"))
        assert len(broadcast.group(1).split(", ")) == CONNECTIONS

        for peer in members:
            await peer.aclose()
        await count_lines(server.stdout, rx("{dt} :: m{any}: disconnected."), CONNECTIONS, 30)

    assert server.returncode is None
    late = await join_raw_line(harness, server, port, "late")
    await late.send(b"/who\n")
    await late.expect_next("*** Members: watcher, late")
    await late.send(b"after the crowd\n")
    await watcher.expect_line("late: after the crowd")
    assert "Traceback" not in server.stderr


# --- Ctrl-C under load ------------------------------------------------------------------------


async def test_ctrl_c_under_load_tells_every_member_and_exits_within_two_seconds(
    harness: Harness,
) -> None:
    server, port = await harness.start_chat_server()
    line_members = [await join_raw_line(harness, server, port, f"l{n}") for n in range(40)]
    json_members = [await join_json(harness, server, port, f"j{n}") for n in range(10)]
    # One member that has stopped reading (its writer is blocked at Ctrl-C), and one
    # connection that has not sent its name yet: neither may hold up the exit.
    stuck = await open_stuck_member(server, port, "stuck")
    registering = await harness.connect(port, "registering")
    flooder = await join_raw_line(harness, server, port, "flooder")
    pacer = line_members[0]
    flowing = trio.Event()
    padding = "x" * 1000

    async def flood() -> None:
        # Paced by one member's reading, so nobody is cut off for being slow before Ctrl-C.
        for first in range(0, 1_000_000, 20):
            batch = "".join(f"load {n} {padding}\n" for n in range(first, first + 20))
            await flooder.send(batch.encode())
            await pacer.expect_line(f"flooder: load {first + 19} {padding}")
            if first >= 300:
                flowing.set()

    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(flood)
            with trio.fail_after(20):
                await flowing.wait()
            signalled_at = trio.current_time()
            server.send_signal(signal.SIGINT)
            nursery.cancel_scope.cancel()  # the flood stops sending; what is in flight stays
        with trio.fail_after(10):
            code = await server.process.wait()
        exit_time = trio.current_time() - signalled_at
    finally:
        await trio.aclose_forcefully(stuck)

    assert code == 0, server.stderr
    assert exit_time < 2.0, exit_time
    print(f"Ctrl-C under load: exit 0 after {exit_time:.2f} s")
    for peer in [*line_members, flooder]:
        await peer.expect_line(SHUTDOWN_LINE)
        await peer.log.expect_closed()
        assert peer.log.lines[-1] == SHUTDOWN_LINE
    for peer in json_members:
        await peer.log.expect_closed()
        assert json.loads(peer.log.lines[-1]) == SHUTDOWN_JSON, peer.log.lines[-3:]
    await registering.log.expect_closed()
    await server.wait_exit()
    server.assert_no_traceback()
    assert "Traceback" not in server.stderr


# --- running out of file descriptors ---------------------------------------------------------

FD_LIMIT = 64
EXTRA = 90
"""More connections than the server has file descriptors for."""

WRAPPER = """\
import resource
import sys

sys.path.insert(0, {root!r})
# Both limits: the server raises its soft limit to the hard one when it starts.
resource.setrlimit(resource.RLIMIT_NOFILE, ({limit}, {limit}))
from triochat.cli_server import server_main

sys.exit(server_main(sys.argv[1:]))
"""


async def start_fd_limited_server(harness: Harness, tmp_path: Path) -> tuple[Program, int]:
    wrapper = tmp_path / "fd_limited_server.py"
    wrapper.write_text(WRAPPER.format(root=str(ROOT), limit=FD_LIMIT))
    server = await harness.start(
        str(wrapper), "--port", "0", "--host", LOCALHOST, label="fd-limited ChatServer"
    )
    banner = rx(f"ChatServer started with server IP: {LOCALHOST}, port: {{port}} ...")
    return server, int((await server.expect_next(banner)).group(1))


async def test_fd_exhaustion_keeps_existing_members_and_recovers(
    harness: Harness, tmp_path: Path
) -> None:
    raise_own_fd_limit(1024)
    server, port = await start_fd_limited_server(harness, tmp_path)
    watcher = await join_raw_line(harness, server, port, "watcher")
    talker = await join_raw_line(harness, server, port, "talker")

    # Far more connections than the server can hold: some join, the rest wait in the backlog.
    crowd: list[RawPeer] = []
    for number in range(EXTRA):
        peer = await harness.connect(port, f"c{number}")
        await peer.send(json.dumps({"type": "nickname", "nickname": f"c{number}"}).encode())
        crowd.append(peer)
    await server.stderr_log.expect_line(re.compile(r".*accept returned EMFILE.*"), within=15)

    # The server is out of descriptors, and still serves the members it has.
    await talker.send(b"while full\n")
    await watcher.expect_line("talker: while full")

    def welcomed(peer: RawPeer) -> bool:
        return any(line.startswith('{"type": "welcome"') for line in peer.log.lines)

    joined = [peer for peer in crowd if welcomed(peer)]
    assert 0 < len(joined) < EXTRA, len(joined)
    print(f"fd limit {FD_LIMIT}: {len(joined)} of {EXTRA} joined before EMFILE")

    # Those members leave; every connection that waited is accepted and joins in its turn.
    for peer in joined:
        await peer.aclose()
    waiting = [peer for peer in crowd if peer not in joined]
    with trio.fail_after(30):
        for peer in waiting:
            await peer.expect_line(re.compile(r'\{"type": "welcome".*'), 30)
    await talker.send(b"after the storm\n")
    await watcher.expect_line("talker: after the storm")
    storm = re.compile(
        re.escape('{"type": "broadcast", "nickname": "talker", "message": "after the storm"') + ".*"
    )
    for peer in waiting:
        await peer.expect_line(storm)
    assert server.returncode is None

    # And it still shuts down cleanly.
    server.send_signal(signal.SIGINT)
    assert await server.wait_exit() == 0
    await watcher.expect_line(SHUTDOWN_LINE)


async def test_fd_exhaustion_is_reported_without_a_traceback_flood(
    harness: Harness, tmp_path: Path
) -> None:
    raise_own_fd_limit(1024)
    server, port = await start_fd_limited_server(harness, tmp_path)
    for number in range(EXTRA):
        peer = await harness.connect(port, f"c{number}")
        await peer.send(f"c{number}\n".encode())
    await server.stderr_log.expect_line(re.compile(r".*EMFILE.*"), within=15)
    server.send_signal(signal.SIGINT)
    assert await server.wait_exit() == 0
    assert "Traceback" not in server.stderr, server.stderr[:2000]


async def test_json_timestamp_at_the_end_of_time_is_accepted(harness: Harness) -> None:
    server, port = await harness.start_chat_server()
    watcher = await join_raw_line(harness, server, port, "watcher")
    sender = await join_json(harness, server, port, "sender")
    message = {"type": "message", "message": "hi", "timestamp": "9999-12-31T23:59:59-23:59"}
    await sender.send(json.dumps(message).encode())
    await sender.send(json.dumps({"type": "message", "message": "and again"}).encode())
    # Whichever comes first: the second message reaches the watcher, or the sender is gone.
    async with trio.open_nursery() as race:

        async def delivered() -> None:
            await watcher.expect_line("sender: and again")
            race.cancel_scope.cancel()

        async def dropped() -> None:
            await server.expect_line(rx("{dt} :: sender: disconnected."))
            race.cancel_scope.cancel()

        race.start_soon(delivered)
        race.start_soon(dropped)
    assert watcher.log.lines[-2:] == ["sender: hi", "sender: and again"]
    dropped_line = rx("{dt} :: sender: disconnected.")
    assert not any(dropped_line.fullmatch(line) for line in server.stdout.lines)
    assert "Traceback" not in server.stderr
