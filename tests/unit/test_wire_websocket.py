"""The page's wire: one HTTP request (h11), then the WebSocket dialect's two roles (wsproto),
piped into each other without a socket."""

from __future__ import annotations

import json

import pytest

from triochat.events import (
    ChatMessage,
    Goodbye,
    Hello,
    HistoryReplay,
    Leave,
    MemberJoined,
    MemberLeft,
    Notice,
    PrivateMessage,
    Say,
    ServerEvent,
    Welcome,
    Who,
)
from triochat.wire.common import NEED_DATA, RemoteProtocolError
from triochat.wire.http import HttpRequest, HttpServerCodec, WebSocketUpgrade
from triochat.wire.websocket import PAGE_HISTORY, WebSocketClientCodec, WebSocketServerCodec

MESSAGE = ChatMessage("alice", "hi <b>", "2026-01-02 03:04:05", "2026-01-02 03:04:05", "1", 2)
"""A message without a time of its own: the room's receive time is both timestamps."""


def connect(max_message_bytes: int = 1000) -> tuple[WebSocketClientCodec, WebSocketServerCodec]:
    """A client and a server codec after the handshake."""
    client = WebSocketClientCodec("127.0.0.1:5000")
    http = HttpServerCodec()
    http.receive_data(client.start())
    upgrade = http.next_event()
    assert isinstance(upgrade, WebSocketUpgrade)
    server = WebSocketServerCodec(upgrade, max_message_bytes)
    client.receive_data(server.take_replies())
    assert client.next_event() is NEED_DATA
    assert client.open
    return client, server


def server_events(server: WebSocketServerCodec, data: bytes) -> list[object]:
    server.receive_data(data)
    events: list[object] = []
    while (event := server.next_event()) is not NEED_DATA:
        events.append(event)
    return events


def client_events(client: WebSocketClientCodec, data: bytes) -> list[ServerEvent]:
    client.receive_data(data)
    events: list[ServerEvent] = []
    while (event := client.next_event()) is not NEED_DATA:
        events.append(event)
    return events


def test_a_plain_get_is_a_request_to_answer_once() -> None:
    http = HttpServerCodec()
    http.receive_data(b"GET /?name=x HTTP/1.1\r\nHo")
    assert http.next_event() is NEED_DATA
    http.receive_data(b"st: a\r\n\r\n")
    assert http.next_event() == HttpRequest("GET", "/?name=x")
    response = http.respond(200, b"<p>page</p>", "text/html")
    assert response.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"Content-Length: 11" in response
    assert response.endswith(b"<p>page</p>")


def test_a_request_head_past_the_limit_is_refused() -> None:
    http = HttpServerCodec(max_header_bytes=100)
    http.receive_data(b"GET / HTTP/1.1\r\nX: " + b"a" * 200)
    with pytest.raises(RemoteProtocolError) as caught:
        http.next_event()
    assert not caught.value.recoverable


def test_the_page_side_joins_chats_and_leaves_as_a_line_member() -> None:
    client, server = connect()
    # The page asks for the room's recent messages as it joins.
    assert server_events(server, client.send(Hello("webby"))) == [
        Hello("webby", history=PAGE_HISTORY)
    ]
    server.name_accepted()
    data = client.send(Say("hello")) + client.send(Who()) + client.send(Say("/not a command"))
    assert server_events(server, data) == [Say("hello"), Who(), Say("/not a command")]
    assert server_events(server, client.send(Leave())) == [Leave()]
    # The Goodbye carries the answering close frame; the client sees the server's close.
    assert client_events(client, server.send(Goodbye("webby"))) == [
        Goodbye("webby"),
        Goodbye("Goodbye"),
    ]


def test_messages_split_anywhere_arrive_whole() -> None:
    client, server = connect()
    data = client.send(Hello("webby"))
    events: list[object] = []
    for byte in data:
        events += server_events(server, bytes([byte]))
    assert events == [Hello("webby", history=PAGE_HISTORY)]


def test_every_server_event_is_one_json_text_frame() -> None:
    client, server = connect()
    events: list[ServerEvent] = [
        MESSAGE,
        Welcome("webby", ("alice", "webby")),
        MemberJoined("bob"),
        MemberLeft("bob"),
        Notice("Members: alice", recoverable=True),
        Notice("Nickname already in use", is_error=True),
    ]
    received = client_events(client, b"".join(server.send(event) for event in events))
    assert received == [
        ChatMessage("alice", "hi <b>", "", "", "", 0),
        Welcome("webby", ("alice", "webby")),
        MemberJoined("bob"),
        MemberLeft("bob"),
        Notice("Members: alice"),
        Notice("Nickname already in use", is_error=True),
    ]


def test_a_shared_message_frames_the_same_for_every_member() -> None:
    # Server frames are unmasked and uncompressed: the room encodes a message once for all.
    first = connect()[1].send(MESSAGE)
    second = connect()[1].send(MESSAGE)
    assert first == second
    # The line dialect's own line in a frame: the page shows when it arrived.
    assert first == b"\x81\x0e" + b"alice: hi <b>\n"


def test_a_message_with_a_time_of_its_own_carries_it() -> None:
    client, server = connect()
    own = ChatMessage("j", "x", "1700000000", "2023-11-14 22:13:20", "1", 2)
    assert json.loads(server.send(own)[2:]) == {
        "type": "broadcast",
        "nickname": "j",
        "message": "x",
        "time": "2023-11-14 22:13:20",
    }
    [received] = client_events(client, server.send(own))
    assert received == ChatMessage("j", "x", "2023-11-14 22:13:20", "2023-11-14 22:13:20", "", 0)


def test_pings_are_answered_through_the_replies() -> None:
    client, server = connect()
    ping = server.ping()
    assert client_events(client, ping) == []
    pong = client.take_replies()
    assert pong
    assert server_events(server, pong) == []


def test_an_over_long_message_is_dropped_and_the_next_one_counts() -> None:
    client, server = connect(max_message_bytes=10)
    server_events(server, client.send(Hello("webby")))
    server.name_accepted()
    server.receive_data(client.send(Say("x" * 11)) + client.send(Say("short")))
    with pytest.raises(RemoteProtocolError) as caught:
        server.next_event()
    assert caught.value.recoverable
    assert server.next_event() == Say("short")


def test_binary_messages_are_refused_recoverably() -> None:
    from wsproto.events import BytesMessage

    client, server = connect()
    server.receive_data(client._ws.send(BytesMessage(data=b"\x00\x01")))
    with pytest.raises(RemoteProtocolError) as caught:
        server.next_event()
    assert caught.value.recoverable


def test_a_broken_frame_is_fatal() -> None:
    _, server = connect()
    server.receive_data(b"\x81\x05hello")  # a client frame must be masked
    with pytest.raises(RemoteProtocolError) as caught:
        server.next_event()
    assert not caught.value.recoverable


def test_a_last_error_after_joining_closes_the_websocket() -> None:
    client, server = connect()
    server_events(server, client.send(Hello("webby")))
    server.name_accepted()
    data = server.send(Notice("Disconnected: too slow", is_error=True))
    assert client_events(client, data) == [
        Notice("Disconnected: too slow", is_error=True),
        Goodbye("Disconnected: too slow"),
    ]
    assert server.closed


def test_a_bad_upgrade_is_refused() -> None:
    upgrade = WebSocketUpgrade("/ws", ((b"host", b"x"), (b"upgrade", b"websocket")), b"")
    with pytest.raises(RemoteProtocolError):
        WebSocketServerCodec(upgrade)


def test_history_and_private_messages_carry_the_time_the_page_shows() -> None:
    _, server = connect()
    old = ChatMessage("bob", "earlier", "1700000000", "2023-11-14 22:13:20", "", 0)
    data = server.send(HistoryReplay((old, MESSAGE)))
    assert [json.loads(frame) for frame in split_frames(data)] == [
        {"type": "history", "nickname": "bob", "message": "earlier", "time": old.display_time},
        {"type": "history", "nickname": "alice", "message": "hi <b>", "time": MESSAGE.timestamp},
    ]
    private = PrivateMessage("bob", "webby", "psst", "t", "2026-01-02 03:04:05", "", 0)
    assert json.loads(server.send(private)[2:]) == {
        "type": "private",
        "nickname": "bob",
        "to": "webby",
        "message": "psst",
        "time": "2026-01-02 03:04:05",
    }


def split_frames(data: bytes) -> list[bytes]:
    """The payloads of short unmasked server frames."""
    frames = []
    while data:
        size = data[1]
        frames.append(data[2 : 2 + size])
        data = data[2 + size :]
    return frames
