"""The JSON client (seed 003), in-process (SPEC §4, §7): joining, refused nicknames, showing
broadcasts, the ``Summary:`` line and leaving.

The client runs on one end of a ``socketpair``; the test plays the server on the other end,
reading the client's objects (one per write, paced) and answering. Standard input is a
:class:`Typist`. The autojump clock makes every wait virtual.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
import trio
import trio.testing

from triochat.client import json_client
from triochat.client.connection import LEAVE_GRACE, WRITE_GAP
from triochat.client.json_client import (
    IMPLIED_WELCOME,
    JOIN_REPLY_WAIT,
    REFUSED_CLOSE_WAIT,
    ServerObjects,
    SessionStats,
    join_reply,
    run_json_client,
)
from triochat.events import ChatMessage, Notice, Welcome

from .helpers import Typist, client_start, json_line, next_object

DATE = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d"
STARTED = "2024-03-21 10:30:45"


class JsonClient:
    """``run_json_client`` joining as ``alice``; keeps its exit code and when it ended."""

    exit_code: int | None = None
    ended_at: float | None = None

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.typist = Typist()
        monkeypatch.setattr(json_client, "StdinLines", self.typist)
        monkeypatch.setattr(json_client, "stdin_is_terminal", lambda: False)
        self.start, self.server = client_start()

    async def run(self) -> None:
        self.exit_code = await run_json_client(self.start, "alice", "7", STARTED)
        self.ended_at = trio.current_time()


@asynccontextmanager
async def running(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[JsonClient]:
    """The client, running; on the way out, wait until it is done (then close our end)."""
    client = JsonClient(monkeypatch)
    async with client.server, trio.open_nursery() as nursery:
        nursery.start_soon(client.run)
        yield client


def summary(out: str) -> dict[str, str]:
    (line,) = [line for line in out.splitlines() if line.startswith("Summary: ")]
    fields = dict(part.split(":", 1) for part in line.removeprefix("Summary: ").split(", "))
    assert fields["start"] == STARTED
    assert re.fullmatch(DATE, fields["end"])
    return fields


# --- the client's parts -----------------------------------------------------------------------


def test_summary_line_is_exact() -> None:
    stats = SessionStats("2024-01-01 00:00:00", 2, 3, 10, 12)
    assert stats.summary("2024-01-01 00:05:00") == (
        "Summary: start:2024-01-01 00:00:00, end:2024-01-01 00:05:00, msg sent:2, msg rcv:3, "
        "char sent:10, char rcv:12"
    )


async def test_server_objects_parse_a_stream_of_concatenated_objects() -> None:
    ours, theirs = trio.testing.memory_stream_pair()
    objects = ServerObjects(theirs)
    await ours.send_all(b'{"type": "welcome"}{"type": "broadcast", "nickname": "bob", ')
    await ours.send_all(b'"message": "hi", "timestamp": "2024-01-02 03:04:05"}\n')
    assert await objects.next() == Welcome("", ())
    assert await objects.next() == ChatMessage("bob", "hi", "2024-01-02 03:04:05")
    await ours.aclose()
    assert await objects.next() is None
    assert objects.closed


async def test_server_objects_skip_a_bad_line_and_end_on_an_unframeable_stream(
    capsys: pytest.CaptureFixture[str],
) -> None:
    ours, theirs = trio.testing.memory_stream_pair()
    objects = ServerObjects(theirs)
    await ours.send_all(b'[1, 2]\n{"type": "notice", "message": "ok"}\n')
    assert await objects.next() == Notice("ok")
    assert "Bad data from the server" in capsys.readouterr().err


async def test_a_server_that_says_nothing_has_accepted_the_join(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Seed 003's server answers only a taken nickname."""
    _ours, theirs = trio.testing.memory_stream_pair()
    assert await join_reply(ServerObjects(theirs)) is IMPLIED_WELCOME
    assert trio.current_time() == pytest.approx(JOIN_REPLY_WAIT)


async def test_a_broadcast_before_the_answer_means_joined_and_is_kept_for_the_chat(
    autojump_clock: trio.testing.MockClock,
) -> None:
    ours, theirs = trio.testing.memory_stream_pair()
    objects = ServerObjects(theirs)
    await ours.send_all(
        json_line(type="notice", message="not for members yet")
        + json_line(type="broadcast", nickname="bob", message="first", timestamp="t")
    )
    assert await join_reply(objects) is IMPLIED_WELCOME
    assert await objects.next() == ChatMessage("bob", "first", "t")
    assert trio.current_time() == 0.0


# --- whole sessions ---------------------------------------------------------------------------


async def test_join_chat_and_disconnect_with_the_summary(
    autojump_clock: trio.testing.MockClock,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with running(monkeypatch) as client:
        server = client.server
        await server.send_all(json_line(type="welcome", message="Welcome, alice"))
        client.typist.type("hello there", "", "second")  # an empty line sends nothing
        first = await next_object(server)
        assert first["type"] == "message"
        assert (first["nickname"], first["message"]) == ("alice", "hello there")
        assert re.fullmatch(DATE, first["timestamp"])  # always sent (SPEC §4)
        sent_at = trio.current_time()
        assert (await next_object(server))["message"] == "second"
        assert trio.current_time() - sent_at == pytest.approx(WRITE_GAP)  # one object a write
        await server.send_all(
            json_line(
                type="broadcast",
                nickname="bob",
                message="hi alice",
                timestamp="2024-05-06T07:08:09",
            )
            + json_line(type="broadcast", nickname="carol", message="yo", timestamp="not a time")
            + json_line(type="something new", message="ignored")
        )
        await trio.testing.wait_all_tasks_blocked()
        client.typist.type(" disconnect ")
        assert await next_object(server) == {
            "type": "disconnect",
            "nickname": "alice",
            "clientID": "7",
        }
        await server.send_all(json_line(type="bye", message="Goodbye"))
        acknowledged_at = trio.current_time()
    assert client.exit_code == 0
    assert client.ended_at == acknowledged_at  # the acknowledgement ends it at once
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "2024-05-06 07:08:09 :: bob: hi alice"
    assert re.fullmatch(rf"{DATE} :: carol: yo", out[1])  # a bad time: shown as the receive time
    assert len(out) == 3
    assert summary(out[2]) | {"start": "", "end": ""} == {
        "start": "",
        "end": "",
        "msg sent": "2",
        "msg rcv": "2",
        "char sent": str(len("hello there") + len("second")),
        "char rcv": str(len("hi alice") + len("yo")),
    }


async def test_end_of_input_leaves_and_an_unacknowledged_leave_ends_after_the_grace(
    autojump_clock: trio.testing.MockClock,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with running(monkeypatch) as client:
        await client.server.send_all(json_line(type="welcome"))
        client.typist.end()
        assert (await next_object(client.server))["type"] == "disconnect"
        sent_at = trio.current_time()
    assert client.exit_code == 0
    assert client.ended_at is not None
    assert client.ended_at - sent_at == pytest.approx(LEAVE_GRACE)
    assert summary(capsys.readouterr().out)["msg sent"] == "0"


async def test_a_taken_nickname_asks_for_another_and_joins_under_it(
    autojump_clock: trio.testing.MockClock,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with running(monkeypatch) as client:
        server = client.server
        await server.send_all(json_line(type="error", message="Nickname already in use"))
        await trio.testing.wait_all_tasks_blocked()
        # The client first watches whether the server closes; only then does it ask.
        assert capsys.readouterr().out == "Nickname already in use\n"
        await trio.sleep(REFUSED_CLOSE_WAIT * 0.9)
        await trio.testing.wait_all_tasks_blocked()
        assert capsys.readouterr().out == ""
        await trio.sleep(REFUSED_CLOSE_WAIT * 0.2)
        await trio.testing.wait_all_tasks_blocked()
        assert capsys.readouterr().out == "Enter a different nickname:\n"
        client.typist.type(" alice2 ")
        retry = await next_object(server)
        assert (retry["type"], retry["nickname"], retry["clientID"]) == ("nickname", "alice2", "7")
        await server.send_all(json_line(type="welcome"))
        client.typist.type("now I am in")
        message = await next_object(server)
        assert (message["nickname"], message["message"]) == ("alice2", "now I am in")
        client.typist.end()
        assert await next_object(server) == {
            "type": "disconnect",
            "nickname": "alice2",
            "clientID": "7",
        }
        await server.send_all(json_line(type="bye"))
    assert client.exit_code == 0


@pytest.mark.parametrize("answer", ["disconnect", None])
async def test_leaving_at_the_nickname_prompt_shows_the_summary_and_exits_0(
    autojump_clock: trio.testing.MockClock,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    answer: str | None,
) -> None:
    async with running(monkeypatch) as client:
        await client.server.send_all(json_line(type="error", message="Nickname already in use"))
        if answer is None:
            client.typist.end()
        else:
            client.typist.type(answer)
    assert client.exit_code == 0
    out = capsys.readouterr().out.splitlines()
    assert out[:2] == ["Nickname already in use", "Enter a different nickname:"]
    assert summary(out[2])["msg sent"] == "0"


async def test_a_server_that_closes_after_refusing_is_noticed_before_asking_again(
    autojump_clock: trio.testing.MockClock,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with running(monkeypatch) as client:
        await client.server.send_all(json_line(type="error", message="Nickname already in use"))
        await client.server.aclose()
    assert client.exit_code == 1
    out, err = capsys.readouterr()
    assert "Enter a different nickname:" not in out
    assert out.startswith("Nickname already in use\nSummary: ")
    assert err == "Could not join the chat: the server closed the connection\n"
    assert client.ended_at is not None
    assert client.ended_at < REFUSED_CLOSE_WAIT  # it did not wait out the watch


async def test_a_silent_server_accepts_and_a_server_going_away_ends_with_exit_1(
    autojump_clock: trio.testing.MockClock,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with running(monkeypatch) as client:
        client.typist.type("anyone there?")
        message = await next_object(client.server)  # sent once the join counts as accepted
        assert message["message"] == "anyone there?"
        assert trio.current_time() == pytest.approx(JOIN_REPLY_WAIT)
        await client.server.send_all(json_line(type="error", message="Server shutting down"))
        await client.server.aclose()
    assert client.exit_code == 1
    out, err = capsys.readouterr()
    assert summary(out)["msg sent"] == "1"
    assert err == "Server: Server shutting down\nConnection closed by the server\n"
