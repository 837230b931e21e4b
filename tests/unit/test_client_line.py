"""The line client (seed 000) and the port-tagged client (seed 004), in-process (SPEC §3, §7).

Each client runs on one end of a ``socketpair`` (the clients adopt a real socket); the test
plays the server on the other end. Standard input is a :class:`Typist` put in place of the
client's ``StdinLines``, or the launcher's leftovers in ``EarlyStart``. The autojump clock
makes every pacing gap and grace period virtual.
"""

from __future__ import annotations

from types import ModuleType

import pytest
import trio
import trio.testing

from triochat.client import line_client, port_tagged_client
from triochat.client.connection import LEAVE_GRACE, QUIET_FLUSH, WRITE_GAP
from triochat.client.early import EarlyStart
from triochat.client.line_client import run_line_client
from triochat.client.port_tagged_client import run_port_tagged_client

from .helpers import Typist, client_start


async def writes_until_eof(stream: trio.SocketStream) -> list[tuple[float, bytes]]:
    """Every read (one paced write each) with its virtual time, until the client's EOF."""
    reads: list[tuple[float, bytes]] = []
    while data := await stream.receive_some(65536):
        reads.append((trio.current_time(), bytes(data)))
    return reads


def typed(monkeypatch: pytest.MonkeyPatch, module: ModuleType, *lines: str) -> Typist:
    typist = Typist(*lines)
    monkeypatch.setattr(module, "StdinLines", typist)
    return typist


class Client:
    """Runs a client to the end in the background; keeps its exit code and when it ended."""

    exit_code: int | None = None
    ended_at: float | None = None

    def __init__(self, nursery: trio.Nursery, run: object, start: EarlyStart) -> None:
        assert callable(run)

        async def main() -> None:
            self.exit_code = await run(start)
            self.ended_at = trio.current_time()

        nursery.start_soon(main)


# --- the line client --------------------------------------------------------------------------


async def test_line_client_sends_each_line_alone_paced_then_leaves_by_closing(
    autojump_clock: trio.testing.MockClock, capsys: pytest.CaptureFixture[str]
) -> None:
    # The launcher read the name and sent it; the rest of piped stdin is left for the client.
    start, server = client_start(stdin_rest=b"hello\r\n\nworld\n", stdin_ended=True)
    async with server, trio.open_nursery() as nursery:
        client = Client(nursery, run_line_client, start)
        reads = await writes_until_eof(server)
        # Each message in its own write, without a newline; the empty line sends nothing.
        assert [data for _, data in reads] == [b"hello", b"world"]
        assert reads[1][0] - reads[0][0] == pytest.approx(WRITE_GAP)
        left_at = trio.current_time()
        # Leaving: the client waits for the server to confirm by closing; what arrives first
        # is still shown.
        await server.send_all(b"bob: bye alice\n")
        await trio.testing.wait_all_tasks_blocked()
        await server.aclose()
        closed_at = trio.current_time()
    assert client.exit_code == 0
    assert client.ended_at == closed_at < left_at + LEAVE_GRACE  # the close ended it at once
    assert capsys.readouterr() == ("bob: bye alice\n", "")


async def test_line_client_shows_server_lines_and_unterminated_chunks_as_lines(
    autojump_clock: trio.testing.MockClock,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    typist = typed(monkeypatch, line_client)
    start, server = client_start()
    async with server, trio.open_nursery() as nursery:
        client = Client(nursery, run_line_client, start)
        await server.send_all(b"*** Nickname already in use\n")
        await trio.sleep(1)
        await server.send_all(b"alice: unterminated, as a seed server sends it")
        await trio.sleep(1)
        await server.send_all(b"bob: one\nbob: two\n")
        await trio.sleep(1)
        typist.type("second try")  # a refused name: the next line is the new try
        assert await server.receive_some(65536) == b"second try"
        typist.end()
        assert await server.receive_some(65536) == b""
    assert client.exit_code == 0
    assert capsys.readouterr().out.splitlines() == [
        "*** Nickname already in use",
        "alice: unterminated, as a seed server sends it",
        "bob: one",
        "bob: two",
    ]


async def test_line_client_gives_up_waiting_for_the_close_after_the_leave_grace(
    autojump_clock: trio.testing.MockClock,
) -> None:
    start, server = client_start(stdin_rest=b"", stdin_ended=True)
    async with server, trio.open_nursery() as nursery:
        client = Client(nursery, run_line_client, start)
        assert await server.receive_some(65536) == b""  # EOF: the client is leaving
        left_at = trio.current_time()
        # The server never closes: the client stops waiting after the grace, and exits 0.
    assert client.exit_code == 0
    assert client.ended_at is not None
    assert client.ended_at - left_at == pytest.approx(LEAVE_GRACE)


async def test_line_client_whose_server_goes_away_says_so_and_exits_1(
    autojump_clock: trio.testing.MockClock,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    typed(monkeypatch, line_client)  # the user is still there, typing nothing
    start, server = client_start()
    async with trio.open_nursery() as nursery:
        client = Client(nursery, run_line_client, start)
        await server.send_all(b"*** Server shutting down")
        await server.aclose()
    assert client.exit_code == 1
    assert capsys.readouterr() == (
        "*** Server shutting down\n",
        "Connection closed by the server\n",
    )


# --- the port-tagged client -------------------------------------------------------------------


async def test_port_tagged_client_chats_and_leaves_with_exit_that_the_server_echoes(
    autojump_clock: trio.testing.MockClock,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    typist = typed(monkeypatch, port_tagged_client, "hello", "how are you")
    start, server = client_start()
    async with server, trio.open_nursery() as nursery:
        client = Client(nursery, run_port_tagged_client, start)
        assert await server.receive_some(65536) == b"hello"
        assert await server.receive_some(65536) == b"how are you"
        await server.send_all(b"5002:fine")  # a seed-004 server: no newline
        await trio.sleep(QUIET_FLUSH * 2)
        typist.type(" exit ")
        assert await server.receive_some(65536) == b"exit"  # exactly the four bytes
        await server.send_all(b"exit")  # the echo is the goodbye, not a message
        echoed_at = trio.current_time()
    assert client.exit_code == 0
    # Unterminated, the echo is a line after the quiet time; then the client is done.
    assert client.ended_at is not None
    assert client.ended_at - echoed_at == pytest.approx(QUIET_FLUSH)
    assert capsys.readouterr() == ("5002:fine\nDisconnected from server\n", "")


async def test_port_tagged_client_end_of_input_is_exit_and_needs_no_echo(
    autojump_clock: trio.testing.MockClock,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    typed(monkeypatch, port_tagged_client, "last words").end()
    start, server = client_start()
    async with server, trio.open_nursery() as nursery:
        client = Client(nursery, run_port_tagged_client, start)
        assert await server.receive_some(65536) == b"last words"
        assert await server.receive_some(65536) == b"exit"
        sent_at = trio.current_time()
        # A server that never echoes: the client waits its grace, says goodbye once, exits.
    assert client.exit_code == 0
    assert capsys.readouterr() == ("Disconnected from server\n", "")
    assert client.ended_at is not None
    assert client.ended_at - sent_at == pytest.approx(LEAVE_GRACE)


async def test_port_tagged_client_shows_exit_from_others_until_it_leaves(
    autojump_clock: trio.testing.MockClock,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    typed(monkeypatch, port_tagged_client)
    start, server = client_start()
    async with trio.open_nursery() as nursery:
        client = Client(nursery, run_port_tagged_client, start)
        await server.send_all(b"exit\n")  # only the echo of our own exit is a goodbye
        await trio.sleep(1)
        await server.aclose()
    assert client.exit_code == 1
    assert capsys.readouterr() == ("exit\n", "Connection closed by the server\n")
