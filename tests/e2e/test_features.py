"""SPEC §11 end to end: private messages, renames, presence and history (across a restart
with ``--history-db``) between real client processes and raw peers of several dialects."""

from __future__ import annotations

import json
import signal
from pathlib import Path
from typing import Any

from .harness import (
    Harness,
    Program,
    RawPeer,
    join_line_client,
    join_raw_line,
    json_banner,
    rx,
    summary,
)


def obj(**fields: Any) -> bytes:
    """One JSON object and a newline (a framed JSON client)."""
    return json.dumps(fields).encode() + b"\n"


async def next_object(peer: RawPeer, *skipped: str) -> dict[str, Any]:
    """The next JSON object ``peer`` received whose type is not one of ``skipped``."""
    while True:
        value = json.loads(await peer.next_line())
        assert isinstance(value, dict)
        if value.get("type") not in skipped:
            return value


async def join_json(
    harness: Harness, server: Program, port: int, name: str, **extra: Any
) -> RawPeer:
    """A raw framed JSON peer joined as ``name``; its welcome consumed."""
    peer = await harness.connect(port, f"json {name}")
    await peer.send(obj(type="nickname", nickname=name, clientID="7", **extra))
    assert (await next_object(peer))["type"] == "welcome"
    await server.expect_line(rx(f"{{dt}} :: {name}: connected."))
    return peer


async def test_a_line_member_and_a_json_member_exchange_private_messages(
    harness: Harness,
) -> None:
    server, port = await harness.start_chat_server()
    lina = await join_line_client(harness, server, port, "lina")
    jay = await join_json(harness, server, port, "Jay")
    netty = await join_raw_line(harness, server, port, "netty")

    await lina.send_line("/msg jay just between us")
    got = await next_object(jay)
    assert got == {
        "type": "private",
        "nickname": "lina",
        "to": "Jay",
        "message": "just between us",
        "timestamp": got["timestamp"],
    }
    await server.expect_next("Private: lina -> Jay, Msg-Size:15")  # never the text

    await jay.send(obj(type="private", to="LINA", message="got it", timestamp="t"))
    await lina.expect_next("Jay (private): got it")
    await server.expect_next("Private: Jay -> lina, Msg-Size:6")

    await lina.send_line("/msg nobody hello?")
    await lina.expect_next("*** No member called 'nobody' here")

    # The third member heard none of it: its next line is the next public message.
    await lina.send_line("in public")
    await server.expect_next(rx("Received: {any}Client-Nickname:lina, {any}"))
    await server.expect_next("Broadcasted: Jay, netty")
    await netty.expect_next("lina: in public")
    assert "just between us" not in "\n".join(server.stdout.lines)
    assert "Traceback" not in server.stderr


async def test_a_rename_is_seen_by_a_json_member_and_by_line_members_who_asked(
    harness: Harness,
) -> None:
    server, port = await harness.start_chat_server()
    lina = await join_line_client(harness, server, port, "lina")
    jay = await join_json(harness, server, port, "jay")
    netty = await join_raw_line(harness, server, port, "netty")
    await netty.send(b"/notices on\n")
    await netty.expect_next("*** Notices on")

    await lina.send_line("/nick Lena")
    await lina.expect_next("*** lina is now Lena")
    assert await next_object(jay) == {"type": "rename", "old": "lina", "nickname": "Lena"}
    await netty.expect_next("*** lina is now Lena")
    await server.expect_next(rx("{dt} :: lina: renamed to Lena."))

    # The old name is free at once; the new one is taken, whatever its case.
    again = await join_raw_line(harness, server, port, "lina")
    await again.send(b"/nick LENA\n")
    await again.expect_next("*** Cannot rename to 'LENA': Nickname already in use")

    await lina.send_line("hello as Lena")
    await server.expect_next(rx("Received: {any}Client-Nickname:Lena, {any}"))
    await netty.expect_next("Lena: hello as Lena")
    got = await next_object(jay)
    assert (got["type"], got["nickname"]) == ("broadcast", "Lena")
    # A line member that did not ask saw no notice: its next line is the message.
    await again.expect_next("Lena: hello as Lena")


async def test_who_lists_members_with_dialect_and_idle_time(harness: Harness) -> None:
    server, port = await harness.start_chat_server()
    netty = await join_raw_line(harness, server, port, "netty")
    jay = await join_json(harness, server, port, "jay")
    await netty.send(b"/who\n")
    await netty.expect_next("*** Members: netty, jay")
    await netty.expect_next("***   netty (line, idle 0s)")
    await netty.expect_next(rx("***   jay (json, idle {any}s)"))
    await jay.send(obj(type="who"))
    members = (await next_object(jay))["members"]
    assert [(m["nickname"], m["dialect"]) for m in members] == [("netty", "line"), ("jay", "json")]


async def test_history_survives_a_restart_with_history_db(harness: Harness, tmp_path: Path) -> None:
    database = str(tmp_path / "history.db")
    server, port = await harness.start_chat_server("--history", "3", "--history-db", database)
    lina = await join_line_client(harness, server, port, "lina")
    netty = await join_raw_line(harness, server, port, "netty")
    for number in range(1, 5):
        await lina.send_line(f"message {number}")
        await netty.expect_next(f"lina: message {number}")
    await lina.send_line("/msg netty never in history")
    await netty.expect_next("lina (private): never in history")
    await netty.send(b"/history 2\n")
    await netty.expect_next("*** History: the last 2 messages")
    await netty.expect_next(rx("*** [{dt}] lina: message 3"))
    await netty.expect_next(rx("*** [{dt}] lina: message 4"))
    await netty.expect_next("*** End of history")
    server.send_signal(signal.SIGINT)
    assert await server.wait_exit() == 0

    server, port = await harness.start_chat_server("--history", "3", "--history-db", database)
    later = await join_raw_line(harness, server, port, "later")
    await later.send(b"/history\n")
    await later.expect_next("*** History: the last 3 messages")
    for number in (2, 3, 4):
        await later.expect_next(rx(f"*** [{{dt}}] lina: message {number}"))
    await later.expect_next("*** End of history")

    jay = await harness.connect(port, "json jay")
    await jay.send(obj(type="nickname", nickname="jay", clientID="7", history=2))
    assert (await next_object(jay))["type"] == "welcome"
    replayed = [await next_object(jay), await next_object(jay)]
    assert [(o["type"], o["nickname"], o["message"]) for o in replayed] == [
        ("history", "lina", "message 3"),
        ("history", "lina", "message 4"),
    ]
    # Our JSON client asks with --history N and shows what it gets, marked as history.
    client = await harness.start(
        "ChatClient.py", "127.0.0.1", str(port), "hist", "9", "--history", "2", label="hist"
    )
    await client.expect_next(json_banner(port, "hist", "9"))
    await client.expect_next(rx("[history] {dt} :: lina: message 3"))
    await client.expect_next(rx("[history] {dt} :: lina: message 4"))
    assert "Traceback" not in server.stderr


async def test_our_json_client_speaks_every_feature(harness: Harness) -> None:
    server, port = await harness.start_chat_server()
    lina = await join_line_client(harness, server, port, "lina")
    jay = await harness.start("ChatClient.py", "127.0.0.1", str(port), "Jay", "7", label="Jay")
    await jay.expect_next(json_banner(port, "Jay", "7"))
    await server.expect_line(rx("{dt} :: Jay: connected."))

    await jay.send_line("/msg lina hi from JSON")
    await lina.expect_next("Jay (private): hi from JSON")
    await server.expect_next("Private: Jay -> lina, Msg-Size:12")
    await lina.send_line("/msg jay hi back")
    await jay.expect_next(rx("{dt} :: lina (private): hi back"))

    await lina.send_line("/nick lena")
    await lina.expect_next("*** lina is now lena")
    await jay.expect_next("*** lina is now lena")
    await jay.send_line("/nick Jason")
    await jay.expect_next("*** Jay is now Jason")
    await jay.send_line("now as Jason")  # the client sends its new nickname along
    await server.expect_line(rx("Received: {any}Client-Nickname:Jason, ClientID:7, {any}"))
    await lina.expect_next("Jason: now as Jason")

    await jay.send_line("/who")
    await jay.expect_next("*** Members: lena, Jason")
    await jay.expect_next(rx("***   lena (line, idle {any}s)"))
    await jay.expect_next("***   Jason (json, idle 0s)")
    await jay.send_line("/history 1")
    await jay.expect_next(rx("[history] {dt} :: Jason: now as Jason"))
    await jay.send_line("/msg")
    await jay.send_line("//msg is text")
    await lina.expect_next("Jason: /msg is text")
    assert "Usage: /msg <name> <text>" in jay.stderr

    await jay.send_line("disconnect")
    # Private messages count as messages: 3 sent (one private), 1 received (private);
    # commands and history do not.
    await jay.expect_next(summary(3, 1, 12 + 12 + 12, 7))
    assert await jay.wait_exit() == 0


async def test_a_history_db_that_cannot_be_opened_is_a_clear_error(
    harness: Harness, tmp_path: Path
) -> None:
    missing = str(tmp_path / "no such directory" / "history.db")
    finished = await harness.run("ChatServer.py", "--port", "0", "--history-db", missing)
    assert finished.code == 1
    assert finished.stdout == [f"ERR - cannot open history database {missing}"]
