"""The §11 features on each wire: slash commands and JSON objects in, events out as lines,
JSON objects and datagrams (sans-IO, no sockets)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from triochat.client.chat_commands import shown_lines, typed_event
from triochat.events import (
    ChatMessage,
    ClientEvent,
    Dialect,
    Hello,
    HistoryReplay,
    HistoryRequest,
    MemberInfo,
    Presence,
    PrivateMessage,
    PrivateSay,
    Rename,
    Renamed,
    Say,
    ServerEvent,
    SetNotices,
    Who,
)
from triochat.wire.common import NeedData, RemoteProtocolError
from triochat.wire.datagrams import DatagramServerCodec
from triochat.wire.features import feature_lines, feature_server_event, format_idle
from triochat.wire.json_lines import JsonClientCodec, JsonServerCodec
from triochat.wire.lines import LineServerCodec, PortTaggedServerCodec

NOW = "2026-11-29 13:00:00"
MESSAGE = ChatMessage("ann", "hello", NOW, NOW, "127.0.0.1", 4000)
PRIVATE = PrivateMessage("ann", "bob", "psst", NOW, NOW, "127.0.0.1", 4000)
PRESENCE = Presence((MemberInfo("ann", Dialect.LINE, 4.7), MemberInfo("jay", Dialect.JSON, 3725.0)))


def parse_line(line: str) -> ClientEvent:
    codec = LineServerCodec()
    codec.name_accepted()
    codec.receive_data(line.encode() + b"\n")
    event = codec.next_event()
    assert not isinstance(event, NeedData)
    return event


@pytest.mark.parametrize(
    ("line", "event"),
    [
        ("/msg bob hi there", PrivateSay("bob", "hi there")),
        ("/MSG bob  two  spaces", PrivateSay("bob", "two  spaces")),
        ("/nick anna", Rename("anna")),
        ("/history", HistoryRequest(None)),
        ("/history 5", HistoryRequest(5)),
        ("/notices on", SetNotices(True)),
        ("/notices OFF", SetNotices(False)),
        ("/who", Who()),
    ],
)
def test_slash_commands_of_the_features(line: str, event: ClientEvent) -> None:
    assert parse_line(line) == event


@pytest.mark.parametrize(
    ("line", "usage"),
    [
        ("/msg", "Usage: /msg"),
        ("/msg bob", "Usage: /msg"),
        ("/msg bob   ", "Usage: /msg"),
        ("/nick", "Usage: /nick"),
        ("/nick two words", "Usage: /nick"),
        ("/history many", "Usage: /history"),
        ("/history -1", "Usage: /history"),
        ("/notices maybe", "Usage: /notices"),
    ],
)
def test_bad_feature_commands_say_how_to_use_them(line: str, usage: str) -> None:
    with pytest.raises(RemoteProtocolError, match=usage) as caught:
        parse_line(line)
    assert caught.value.recoverable


def test_the_unknown_command_help_lists_every_command() -> None:
    with pytest.raises(RemoteProtocolError, match="/msg <name> <text>, /nick <name>"):
        parse_line("/away")


def test_line_members_see_each_feature_event() -> None:
    codec = LineServerCodec()
    assert codec.send(PRIVATE) == b"ann (private): psst\n"
    assert codec.send(Renamed("ann", "anna")) == b"*** ann is now anna\n"
    assert codec.send(PRESENCE).decode().splitlines() == [
        "*** Members: ann, jay",
        "***   ann (line, idle 4s)",
        "***   jay (json, idle 1h02m)",
    ]
    assert codec.send(HistoryReplay((MESSAGE,))).decode().splitlines() == [
        "*** History: the last 1 message",
        f"*** [{NOW}] ann: hello",
        "*** End of history",
    ]
    assert PortTaggedServerCodec().send(PRIVATE) == b"ann (private):psst\n"


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [(0, "0s"), (59.9, "59s"), (60, "1m00s"), (3599, "59m59s"), (3600, "1h00m"), (90000, "1d01h")],
)
def test_idle_times_read_at_a_glance(seconds: float, shown: str) -> None:
    assert format_idle(seconds) == shown


def parse_json(obj: dict[str, Any]) -> ClientEvent:
    codec = JsonServerCodec()
    codec.receive_data(json.dumps(obj).encode())
    event = codec.next_event()
    assert not isinstance(event, NeedData)
    return event


@pytest.mark.parametrize(
    ("obj", "event"),
    [
        (
            {"type": "private", "to": "bob", "message": "hi", "timestamp": NOW},
            PrivateSay("bob", "hi", NOW),
        ),
        ({"type": "private", "to": "bob", "message": "hi"}, PrivateSay("bob", "hi")),
        ({"type": "rename", "nickname": "anna"}, Rename("anna")),
        ({"type": "who"}, Who()),
        ({"type": "history"}, HistoryRequest(None)),
        ({"type": "history", "count": 3}, HistoryRequest(3)),
        ({"type": "notices", "on": False}, SetNotices(False)),
        (
            {"type": "nickname", "nickname": "jay", "clientID": "7", "history": 20},
            Hello("jay", "7", None, None, 20),
        ),
    ],
)
def test_json_objects_of_the_features(obj: dict[str, Any], event: ClientEvent) -> None:
    assert parse_json(obj) == event


@pytest.mark.parametrize(
    "obj",
    [
        {"type": "private", "message": "to nobody"},
        {"type": "private", "to": "bob", "message": ["x"]},
        {"type": "rename"},
        {"type": "history", "count": -2},
        {"type": "nickname", "nickname": "jay", "history": "all"},
    ],
)
def test_bad_json_feature_objects_are_recoverable_errors(obj: dict[str, Any]) -> None:
    with pytest.raises(RemoteProtocolError) as caught:
        parse_json(obj)
    assert caught.value.recoverable


def objects(data: bytes) -> list[dict[str, Any]]:
    return [json.loads(line) for line in data.decode().splitlines()]


def test_json_members_see_each_feature_event_as_typed_objects() -> None:
    codec = JsonServerCodec()
    assert objects(codec.send(PRIVATE)) == [
        {"type": "private", "nickname": "ann", "to": "bob", "message": "psst", "timestamp": NOW}
    ]
    assert objects(codec.send(Renamed("ann", "anna"))) == [
        {"type": "rename", "old": "ann", "nickname": "anna"}
    ]
    assert objects(codec.send(PRESENCE)) == [
        {
            "type": "members",
            "members": [
                {"nickname": "ann", "dialect": "line", "idle": 4},
                {"nickname": "jay", "dialect": "json", "idle": 3725},
            ],
        }
    ]
    assert (
        objects(codec.send(HistoryReplay((MESSAGE, MESSAGE))))
        == [{"type": "history", "nickname": "ann", "message": "hello", "timestamp": NOW}] * 2
    )


def test_datagram_members_get_private_messages_as_incoming() -> None:
    codec = DatagramServerCodec()
    assert codec.send(PRIVATE) == b"INCOMING 127.0.0.1 4000 ann (private): psst"
    assert codec.send(Renamed("ann", "anna")) == b"NOTICE ann is now anna"


def test_feature_lines_leave_other_events_to_the_codec() -> None:
    assert feature_lines(MESSAGE) is None


@pytest.mark.parametrize(
    "event",
    [
        PrivateSay("bob", "hi", NOW),
        PrivateSay("bob", "no time"),
        Rename("anna"),
        Who(),
        HistoryRequest(None),
        HistoryRequest(7),
        SetNotices(True),
    ],
)
def test_what_the_client_sends_the_server_reads_back(event: ClientEvent) -> None:
    server = JsonServerCodec()
    server.receive_data(JsonClientCodec().send(event))
    assert server.next_event() == event


@pytest.mark.parametrize("event", [PRIVATE, Renamed("ann", "anna"), PRESENCE])
def test_what_the_server_sends_the_client_reads_back(event: ServerEvent) -> None:
    [obj] = objects(JsonServerCodec().send(event))
    decoded = feature_server_event(obj)
    if isinstance(event, PrivateMessage):
        assert isinstance(decoded, PrivateMessage)
        assert (decoded.sender, decoded.recipient, decoded.text, decoded.timestamp) == (
            "ann",
            "bob",
            "psst",
            NOW,
        )
    elif isinstance(event, Presence):
        assert isinstance(decoded, Presence)
        assert [(m.name, m.dialect, m.idle_seconds) for m in decoded.members] == [
            ("ann", Dialect.LINE, 4.0),
            ("jay", Dialect.JSON, 3725.0),
        ]
    else:
        assert decoded == event


def test_the_client_reads_history_one_message_per_object_and_ignores_the_unknown() -> None:
    [obj] = objects(JsonServerCodec().send(HistoryReplay((MESSAGE,))))
    replay = feature_server_event(obj)
    assert isinstance(replay, HistoryReplay)
    assert [(m.sender, m.text, m.timestamp) for m in replay.messages] == [("ann", "hello", NOW)]
    assert feature_server_event({"type": "broadcast"}) is None
    odd = feature_server_event({"type": "members", "members": [{"dialect": "martian"}, 3]})
    assert odd == Presence((MemberInfo("", Dialect.LINE, 0.0),))


@pytest.mark.parametrize(
    ("line", "event"),
    [
        ("hello", Say("hello", "me", NOW)),
        ("/away now", Say("/away now", "me", NOW)),  # not a command: chat, as it always was
        ("//msg x y", Say("/msg x y", "me", NOW)),
        ("/msg bob hi", PrivateSay("bob", "hi", NOW)),
        ("/who", Who()),
        ("/nick anna", Rename("anna")),
        ("/history 2", HistoryRequest(2)),
    ],
)
def test_what_a_json_client_user_types(line: str, event: ClientEvent) -> None:
    assert typed_event(line, "me", NOW) == event


def test_how_the_json_client_shows_feature_events() -> None:
    assert shown_lines(PRIVATE, NOW) == [f"{NOW} :: ann (private): psst"]
    assert shown_lines(HistoryReplay((MESSAGE,)), NOW) == [f"[history] {NOW} :: ann: hello"]
    assert shown_lines(Renamed("a", "b"), NOW) == ["*** a is now b"]
    assert shown_lines(MESSAGE, NOW) is None
