"""The menu client (seed 001), in-process (SPEC §6, §7): the seed's menu and prompts to the
letter, chat shown as ``<sender>: <message>``, file requests, and the server's file
announcements handed to the client's file agent.

The client runs on one end of a ``socketpair`` with a real listener for its file port; the
test plays the server on the other end. Standard input is a :class:`Typist`.
"""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import trio
import trio.testing

from triochat.client import menu_client
from triochat.client.connection import LEAVE_GRACE
from triochat.client.menu_client import GOODBYE, MENU, run_menu_client
from triochat.wire.chunks import RelayHandshake, TransferRequest
from triochat.wire.json_lines import MENU_CLIENT_ID

from .file_transfer_helpers import TOKEN, parse_reply, read_to_end
from .helpers import GUARD, Typist, client_start, json_line, next_object

MENU_LINES = list(MENU)


class MenuClient:
    """``run_menu_client`` for ``alice`` (``None``: stdin ended before a name)."""

    exit_code: int | None = None
    ended_at: float | None = None

    def __init__(self, monkeypatch: pytest.MonkeyPatch, share: Path, name: str | None) -> None:
        self.typist = Typist()
        monkeypatch.setattr(menu_client, "StdinLines", self.typist)
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        self.file_port = int(listener.getsockname()[1])
        self.start, self.server = client_start(listeners=[listener])
        self.share = share
        self.name = name

    async def run(self) -> None:
        self.exit_code = await run_menu_client(self.start, self.name, self.file_port, self.share)
        self.ended_at = trio.current_time()


@asynccontextmanager
async def running(
    monkeypatch: pytest.MonkeyPatch, share: Path, name: str | None = "alice"
) -> AsyncIterator[MenuClient]:
    """The client, running; on the way out, wait until it is done (then close our end)."""
    client = MenuClient(monkeypatch, share, name)
    with trio.fail_after(GUARD):
        async with client.server, trio.open_nursery() as nursery:
            nursery.start_soon(client.run)
            yield client


async def test_menu_message_file_request_and_exit_as_the_seed_shows_them(
    tmp_path: Path,
    autojump_clock: trio.testing.MockClock,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with running(monkeypatch, tmp_path) as client:
        server = client.server
        await server.send_all(json_line(type="welcome"))
        client.typist.type("m", "hello all")
        message = await next_object(server)
        assert (message["type"], message["nickname"], message["message"]) == (
            "message",
            "alice",
            "hello all",
        )
        await server.send_all(
            json_line(type="broadcast", nickname="bob", message="hi", timestamp="t")
        )
        await trio.testing.wait_all_tasks_blocked()
        client.typist.type(" F ", " bob ", " notes.txt ")  # options in any case, names stripped
        assert await next_object(server) == {
            "type": "file_request",
            "owner": "bob",
            "filename": "notes.txt",
        }
        await server.send_all(
            json_line(
                type="file_failed",
                token="t1",
                filename="notes.txt",
                owner="bob",
                message="no such file",
            )
        )
        await trio.testing.wait_all_tasks_blocked()
        client.typist.type("?", "x")  # an unknown option shows the menu again
        assert await next_object(server) == {
            "type": "disconnect",
            "nickname": "alice",
            "clientID": MENU_CLIENT_ID,
        }
        await server.send_all(json_line(type="bye"))
        acknowledged_at = trio.current_time()
    assert client.exit_code == 0
    assert client.ended_at == acknowledged_at
    assert capsys.readouterr() == (
        "\n".join(
            [
                *MENU_LINES,
                "Enter your message:",
                *MENU_LINES,
                "bob: hi",
                "Who owns the file?",
                "Which file do you want?",
                *MENU_LINES,
                "File notes.txt from bob failed: no such file",
                *MENU_LINES,
                GOODBYE,
            ]
        )
        + "\n",
        "",
    )


async def test_a_refused_name_takes_the_next_line_and_end_of_input_says_goodbye(
    tmp_path: Path,
    autojump_clock: trio.testing.MockClock,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with running(monkeypatch, tmp_path) as client:
        server = client.server
        await server.send_all(json_line(type="error", message="Nickname already in use"))
        client.typist.type(" alice2 ")
        retry = await next_object(server)
        assert (retry["type"], retry["nickname"], retry["clientID"], retry["file_port"]) == (
            "nickname",
            "alice2",
            MENU_CLIENT_ID,
            client.file_port,  # the server must know where to fetch from
        )
        await server.send_all(json_line(type="welcome"))
        client.typist.type("m")
        client.typist.end()  # mid-prompt: leave
        assert (await next_object(server))["nickname"] == "alice2"
        left_at = trio.current_time()
    assert client.exit_code == 0
    assert client.ended_at == pytest.approx(left_at + LEAVE_GRACE)  # nobody acknowledged
    out = capsys.readouterr().out.splitlines()
    assert out == ["*** Nickname already in use", *MENU_LINES, "Enter your message:", GOODBYE]


async def test_no_name_at_all_is_a_plain_goodbye(
    tmp_path: Path,
    autojump_clock: trio.testing.MockClock,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with running(monkeypatch, tmp_path, name=None) as client:
        pass
    assert client.exit_code == 0
    assert capsys.readouterr() == (GOODBYE + "\n", "")


async def test_a_server_that_closes_while_joining_or_later_means_exit_1(
    tmp_path: Path,
    autojump_clock: trio.testing.MockClock,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with running(monkeypatch, tmp_path) as refused:
        await refused.server.aclose()
    assert refused.exit_code == 1
    assert capsys.readouterr() == (GOODBYE + "\n", "")

    async with running(monkeypatch, tmp_path) as dropped:
        await dropped.server.send_all(json_line(type="welcome"))
        await trio.testing.wait_all_tasks_blocked()
        await dropped.server.aclose()
    assert dropped.exit_code == 1
    assert capsys.readouterr() == (
        "\n".join(MENU_LINES) + "\n",
        "Connection closed by the server\n",
    )


async def test_a_fetch_announced_over_chat_is_served_on_the_file_port(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Real clock: the agent reads the file in worker threads, which the autojump clock
    would take for idleness. Nothing here waits for time."""
    (tmp_path / "a.txt").write_bytes(b"shared bytes")
    async with running(monkeypatch, tmp_path) as client:
        await client.server.send_all(json_line(type="welcome"))
        await client.server.send_all(
            json_line(type="file_fetch", token=TOKEN, filename="a.txt", requester="bob")
        )
        await trio.testing.wait_all_tasks_blocked()
        async with await trio.open_tcp_stream("127.0.0.1", client.file_port) as relay:
            await relay.send_all(RelayHandshake().send(TransferRequest(TOKEN)))
            reply = parse_reply(await read_to_end(relay))
        client.typist.end()
        await client.server.send_all(json_line(type="bye"))
    assert reply.header == {"status": "ok", "size": len(b"shared bytes")}
    assert reply.decoded()[0] == b"shared bytes"
    assert client.exit_code == 0
