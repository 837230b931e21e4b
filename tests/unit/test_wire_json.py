"""Byte-exact tests of the JSON dialect: framing, parsing, encoding, client codec (SPEC §4, §8)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from triochat.events import (
    ChatMessage,
    ClientEvent,
    FileRequest,
    Goodbye,
    Hello,
    Leave,
    Notice,
    Say,
    Welcome,
)
from triochat.wire.common import MAX_LINE_BYTES, NEED_DATA, RemoteProtocolError
from triochat.wire.json_lines import (
    MAX_NESTING,
    Broadcast,
    JsonClientCodec,
    JsonCodec,
    JsonObjectFramer,
    ServerReply,
    object_to_event,
)

from .helpers import Err, split

PROPERTY = settings(max_examples=200, deadline=None)

MESSAGE = b'{"type": "message", "nickname": "alice", "message": "hi", "timestamp": "t1"}'
DISCONNECT = b'{"type": "disconnect", "nickname": "alice", "clientID": "7"}'


def events_of(codec: JsonCodec) -> list[ClientEvent | Err]:
    """Every event (and error) the codec holds now; stops after a fatal error."""
    out: list[ClientEvent | Err] = []
    while True:
        try:
            event = codec.next_event()
        except RemoteProtocolError as error:
            out.append(Err(error.recoverable))
            if not error.recoverable:
                return out
            continue
        if event is NEED_DATA:
            return out
        out.append(event)


def feed(data: bytes, max_object_bytes: int = MAX_LINE_BYTES) -> list[ClientEvent | Err]:
    codec = JsonCodec(max_object_bytes)
    codec.receive_data(data)
    return events_of(codec)


def fatal_after(codec: JsonCodec) -> bool:
    """True when draining the codec ends in a fatal error."""
    got = events_of(codec)
    return bool(got) and got[-1] == Err(False)


def chat(sender: str, text: str, timestamp: str = "2024-01-02 03:04:05") -> ChatMessage:
    return ChatMessage(
        sender=sender,
        text=text,
        timestamp=timestamp,
        display_time="2024-01-02 03:04:05",
        sender_ip="127.0.0.1",
        sender_port=50123,
    )


# --- framing ----------------------------------------------------------------------------------


def test_one_object_per_line() -> None:
    assert feed(MESSAGE + b"\n" + DISCONNECT + b"\n") == [Say("hi", "alice", "t1"), Leave()]


def test_concatenated_objects_without_newlines_in_one_read() -> None:
    assert feed(MESSAGE + MESSAGE + DISCONNECT) == [
        Say("hi", "alice", "t1"),
        Say("hi", "alice", "t1"),
        Leave(),
    ]


def test_white_space_between_objects_is_ignored() -> None:
    assert feed(b"  \r\n\t" + MESSAGE + b" \r\n " + DISCONNECT + b"\n\n") == [
        Say("hi", "alice", "t1"),
        Leave(),
    ]


def test_one_object_split_byte_by_byte() -> None:
    codec = JsonCodec()
    for byte in MESSAGE[:-1]:
        codec.receive_data(bytes([byte]))
        assert codec.next_event() is NEED_DATA
    codec.receive_data(MESSAGE[-1:])
    assert codec.next_event() == Say("hi", "alice", "t1")
    assert codec.next_event() is NEED_DATA


def test_framer_returns_the_parsed_dict() -> None:
    framer = JsonObjectFramer()
    framer.receive_data(b'{"a": {"b": [1, 2]}, "c": null}{"d": 1')
    assert framer.next_object() == {"a": {"b": [1, 2]}, "c": None}
    assert framer.next_object() is NEED_DATA
    framer.receive_data(b"}")
    assert framer.next_object() == {"d": 1}


def test_braces_and_escaped_quotes_inside_strings() -> None:
    text = 'a } b { c \\" d \\\\ "} {'
    obj = {"type": "message", "message": text, "nickname": "x{y}"}
    raw = json.dumps(obj).encode()
    assert b'\\"' in raw and b"\\\\" in raw
    assert feed(raw + raw) == [Say(text, "x{y}"), Say(text, "x{y}")]


def test_escape_split_across_reads() -> None:
    raw = b'{"type": "message", "message": "q\\"}"}'
    cut = raw.index(b"\\") + 1  # the read ends right after the backslash
    codec = JsonCodec()
    codec.receive_data(raw[:cut])
    assert codec.next_event() is NEED_DATA
    codec.receive_data(raw[cut:])
    assert codec.next_event() == Say('q"}')


def test_non_ascii_text() -> None:
    raw = '{"type": "message", "message": "héllo ✓ 日本"}'.encode()
    assert feed(raw) == [Say("héllo ✓ 日本")]


def test_unicode_escape() -> None:
    assert feed(b'{"type": "message", "message": "\\u00e9\\n"}') == [Say("é\n")]


# --- client objects to events -----------------------------------------------------------------


def test_nickname_object() -> None:
    raw = b'{"type": "nickname", "nickname": "bob", "clientID": "42", "timestamp": "t"}'
    assert feed(raw) == [Hello("bob", "42", "t")]


def test_timstamp_spelling_accepted() -> None:
    raw = b'{"type": "nickname", "nickname": "bob", "clientID": "1", "timstamp": "2024"}'
    assert feed(raw) == [Hello("bob", "1", "2024")]


def test_client_id_as_int_accepted() -> None:
    assert feed(b'{"type": "nickname", "nickname": "bob", "clientID": 5}') == [
        Hello("bob", "5", None)
    ]


def test_numeric_timestamp_kept_as_text() -> None:
    raw = b'{"type": "message", "message": "m", "timestamp": 1700000000}'
    assert feed(raw) == [Say("m", None, "1700000000")]


def test_ill_typed_timestamp_is_dropped() -> None:
    assert object_to_event({"type": "message", "message": "m", "timestamp": True}) == Say("m")
    assert object_to_event({"type": "message", "message": "m", "timestamp": [1]}) == Say("m")


def test_disconnect_and_file_request() -> None:
    assert object_to_event({"type": "disconnect"}) == Leave()
    assert object_to_event(
        {"type": "file_request", "owner": "alice", "filename": "notes.txt"}
    ) == FileRequest("alice", "notes.txt")


@pytest.mark.parametrize(
    "obj",
    [
        {"type": "bogus"},
        {"nickname": "no type"},
        {"type": None},
        {"type": "message"},
        {"type": "message", "message": None},
        {"type": "message", "message": ["x"]},
        {"type": "message", "message": True},
        {"type": "nickname"},
        {"type": "nickname", "nickname": {"a": 1}},
        {"type": "file_request", "owner": "alice"},
    ],
)
def test_bad_objects_are_recoverable_errors(obj: dict[str, Any]) -> None:
    with pytest.raises(RemoteProtocolError) as caught:
        object_to_event(obj)
    assert caught.value.recoverable is True


def test_unknown_type_through_the_codec_then_next_object() -> None:
    assert feed(b'{"type": "shout", "message": "x"}' + DISCONNECT) == [Err(True), Leave()]


# --- bad input --------------------------------------------------------------------------------


def test_garbage_between_objects_one_error_then_next_object() -> None:
    assert feed(MESSAGE + b"hello there!\n" + DISCONNECT) == [
        Say("hi", "alice", "t1"),
        Err(True),
        Leave(),
    ]


def test_garbage_right_before_an_object_without_newline() -> None:
    assert feed(b"xyz" + DISCONNECT) == [Err(True), Leave()]


def test_garbage_over_many_reads_before_the_newline_is_one_error_when_drained_once() -> None:
    codec = JsonCodec()
    codec.receive_data(b"garbage ")
    codec.receive_data(b"more garbage\n" + DISCONNECT)
    assert events_of(codec) == [Err(True), Leave()]


def test_garbage_split_across_drained_reads_is_still_one_error() -> None:
    codec = JsonCodec()
    codec.receive_data(b"xy")
    got = events_of(codec)
    codec.receive_data(b"z\n" + DISCONNECT)
    got += events_of(codec)
    assert got == [Err(True), Leave()]


def test_two_garbage_lines_are_two_errors() -> None:
    assert feed(b"one\ntwo\n" + DISCONNECT) == [Err(True), Err(True), Leave()]


def test_malformed_object_is_recoverable_and_skipped() -> None:
    got = feed(b'{"type": "message", "message": }' + DISCONNECT)
    assert got == [Err(True), Leave()]


def test_malformed_object_error_message() -> None:
    codec = JsonCodec()
    codec.receive_data(b"{'single': 'quotes'}")
    with pytest.raises(RemoteProtocolError, match="Malformed JSON") as caught:
        codec.next_event()
    assert caught.value.recoverable is True
    assert codec.next_event() is NEED_DATA


@pytest.mark.parametrize("raw", [b"[1, 2]\n", b"42\n", b'"text"\n', b"null\n", b"true\n"])
def test_non_object_json_is_an_error(raw: bytes) -> None:
    codec = JsonCodec()
    codec.receive_data(raw + DISCONNECT)
    with pytest.raises(RemoteProtocolError) as caught:
        codec.next_event()
    assert caught.value.recoverable is True
    assert codec.next_event() == Leave()


def test_invalid_utf8_inside_an_object_is_recoverable() -> None:
    codec = JsonCodec()
    codec.receive_data(b'{"type": "message", "message": "bad \xff\xfe"}' + DISCONNECT)
    with pytest.raises(RemoteProtocolError, match="UTF-8") as caught:
        codec.next_event()
    assert caught.value.recoverable is True
    assert codec.next_event() == Leave()


def test_too_large_object_is_fatal() -> None:
    codec = JsonCodec(max_object_bytes=64)
    codec.receive_data(b'{"type": "message", "message": "')
    assert codec.next_event() is NEED_DATA
    codec.receive_data(b"a" * 64)
    with pytest.raises(RemoteProtocolError, match="too large") as caught:
        codec.next_event()
    assert caught.value.recoverable is False


def test_default_object_limit_is_64_kib() -> None:
    codec = JsonCodec()
    codec.receive_data(b'{"message": "' + b"a" * MAX_LINE_BYTES)
    assert fatal_after(codec)


def test_too_large_object_in_one_read_is_fatal_too() -> None:
    codec = JsonCodec(max_object_bytes=64)
    codec.receive_data(b'{"type": "message", "message": "' + b"a" * 200 + b'"}')
    assert fatal_after(codec)


def test_nesting_deeper_than_the_limit_is_fatal() -> None:
    deep = b'{"a":' * (MAX_NESTING + 1)
    codec = JsonCodec()
    codec.receive_data(deep)
    with pytest.raises(RemoteProtocolError, match="nested") as caught:
        codec.next_event()
    assert caught.value.recoverable is False


def test_nesting_at_the_limit_is_parsed() -> None:
    nested = b'{"a":' * (MAX_NESTING - 1) + b"{}" + b"}" * (MAX_NESTING - 1)
    framer = JsonObjectFramer()
    framer.receive_data(nested)
    obj = framer.next_object()
    depth = 0
    while isinstance(obj, dict) and obj:
        obj = obj["a"]
        depth += 1
    assert depth == MAX_NESTING - 1


@pytest.mark.parametrize("key", [b"type", b"message"])
def test_deep_arrays_inside_an_object_do_not_crash(key: bytes) -> None:
    levels = 30_000  # far past the interpreter's recursion limit, still under 64 KiB
    raw = b'{"type": "message", "' + key + b'": ' + b"[" * levels + b"]" * levels + b"}"
    assert len(raw) < MAX_LINE_BYTES
    codec = JsonCodec()
    codec.receive_data(raw + DISCONNECT)
    with pytest.raises(RemoteProtocolError) as caught:
        codec.next_event()
    assert caught.value.recoverable is True
    assert codec.next_event() == Leave()


# --- encoding ---------------------------------------------------------------------------------


def test_encode_chat_message_exact_bytes() -> None:
    assert JsonCodec().send(chat("alice", "hi", "2024-01-02 03:04:05")) == (
        b'{"type": "broadcast", "nickname": "alice", "message": "hi", '
        b'"timestamp": "2024-01-02 03:04:05"}\n'
    )


def test_encode_keeps_non_ascii_and_escapes_controls() -> None:
    encoded = JsonCodec().send(chat("José", "a\nb ✓", "t"))
    expected = '{"type": "broadcast", "nickname": "José", "message": "a\\nb ✓", "timestamp": "t"}'
    assert encoded == expected.encode() + b"\n"
    assert encoded.count(b"\n") == 1  # one object per line, whatever the text holds


def test_encode_notices_welcome_goodbye_exact_bytes() -> None:
    codec = JsonCodec()
    assert codec.send(Notice("Nickname already in use", is_error=True)) == (
        b'{"type": "error", "message": "Nickname already in use"}\n'
    )
    assert codec.send(Notice("server closing")) == (
        b'{"type": "notice", "message": "server closing"}\n'
    )
    assert codec.send(Welcome("bob", ("alice", "carol"))) == (
        b'{"type": "welcome", "nickname": "bob", "members": ["alice", "carol"]}\n'
    )
    assert codec.send(Goodbye("bob")) == (
        b'{"type": "bye", "nickname": "bob", "message": "Goodbye"}\n'
    )


def test_encode_refuses_client_events() -> None:
    with pytest.raises(TypeError):
        JsonCodec().send(Leave())  # type: ignore[arg-type]


def test_json_codec_never_flushes_idle() -> None:
    codec = JsonCodec()
    codec.receive_data(b'{"type": "disconnect"')
    assert codec.next_event() is NEED_DATA
    assert codec.has_partial is False
    assert codec.flush_idle() is None
    codec.receive_data(b"}")
    assert codec.next_event() == Leave()


# --- client codec: pipe one codec's bytes into the other --------------------------------------


def test_client_encoders_into_server_codec() -> None:
    server = JsonCodec()
    server.receive_data(JsonClientCodec.nickname("bob", "9", "2024-01-02 03:04:05"))
    server.receive_data(JsonClientCodec.message("bob", "hi {there}", "2024-01-02 03:04:06"))
    server.receive_data(JsonClientCodec.file_request("alice", "a b.txt"))
    server.receive_data(JsonClientCodec.disconnect("bob", "9"))
    assert events_of(server) == [
        Hello("bob", "9", "2024-01-02 03:04:05"),
        Say("hi {there}", "bob", "2024-01-02 03:04:06"),
        FileRequest("alice", "a b.txt"),
        Leave(),
    ]


def test_client_encoders_exact_bytes() -> None:
    assert JsonClientCodec.nickname("bob", "9", "t") == (
        b'{"type": "nickname", "nickname": "bob", "clientID": "9", "timestamp": "t"}\n'
    )
    assert JsonClientCodec.message("bob", "hi", "t") == (
        b'{"type": "message", "nickname": "bob", "message": "hi", "timestamp": "t"}\n'
    )
    assert JsonClientCodec.disconnect("bob", "9") == (
        b'{"type": "disconnect", "nickname": "bob", "clientID": "9"}\n'
    )


def test_server_encoder_into_client_codec() -> None:
    server = JsonCodec()
    client = JsonClientCodec()
    for event in (
        chat("alice", "hi\nthere", "t1"),
        Notice("Nickname already in use", is_error=True),
        Welcome("bob", ("alice",)),
        Goodbye("bob"),
    ):
        client.receive_data(server.send(event))
    assert client.next_event() == Broadcast("alice", "hi\nthere", "t1")
    assert client.next_event() == ServerReply(
        "error", "Nickname already in use", {"type": "error", "message": "Nickname already in use"}
    )
    welcome = client.next_event()
    assert isinstance(welcome, ServerReply)
    assert (welcome.type, welcome.fields["members"]) == ("welcome", ["alice"])
    goodbye = client.next_event()
    assert isinstance(goodbye, ServerReply)
    assert (goodbye.type, goodbye.message) == ("bye", "Goodbye")
    assert client.next_event() is NEED_DATA


def test_client_codec_reads_seed_style_server_objects() -> None:
    client = JsonClientCodec()
    client.receive_data(b'{"type":"broadcast","nickname":"a","message":"m","timstamp":"x"}')
    client.receive_data(b'{"message": "no type"}')
    assert client.next_event() == Broadcast("a", "m", "x")
    assert client.next_event() == ServerReply("", "no type", {"message": "no type"})


def test_client_codec_garbage_is_recoverable() -> None:
    client = JsonClientCodec()
    client.receive_data(b"oops\n" + b'{"type": "notice", "message": "ok"}')
    with pytest.raises(RemoteProtocolError) as caught:
        client.next_event()
    assert caught.value.recoverable is True
    reply = client.next_event()
    assert isinstance(reply, ServerReply)
    assert reply.message == "ok"


# --- properties -------------------------------------------------------------------------------

TEXT = st.text(max_size=20)
CLIENT_OBJECTS = st.one_of(
    st.builds(JsonClientCodec.nickname, TEXT, TEXT, TEXT),
    st.builds(JsonClientCodec.message, TEXT, TEXT, TEXT),
    st.builds(JsonClientCodec.disconnect, TEXT, TEXT),
    st.builds(JsonClientCodec.file_request, TEXT, TEXT),
    st.builds(lambda obj: json.dumps(obj).encode(), st.dictionaries(TEXT, TEXT, max_size=3)),
)
SEPARATORS = st.sampled_from([b"", b"", b"\n", b"\r\n", b" ", b"\n\n\t"])
VALID_STREAMS = st.lists(st.tuples(CLIENT_OBJECTS, SEPARATORS), max_size=8).map(
    lambda parts: b"".join(obj.rstrip(b"\n") + sep for obj, sep in parts)
)
NOISE = st.sampled_from([b"x", b"[1]", b"}", b"\n", b'"', b"\\", b"\xff", b"{", b"{}", b" "])
NOISY_STREAMS = st.lists(st.one_of(CLIENT_OBJECTS, NOISE), max_size=12).map(b"".join)
RANDOM_STREAMS = st.one_of(st.binary(max_size=300), NOISY_STREAMS)


def split_events(data: st.DataObject, stream: bytes) -> list[ClientEvent | Err]:
    cuts = data.draw(st.lists(st.integers(min_value=0, max_value=len(stream)), max_size=20))
    codec = JsonCodec()
    got: list[ClientEvent | Err] = []
    for chunk in split(stream, cuts):
        codec.receive_data(chunk)
        got += events_of(codec)
        if got and got[-1] == Err(False):
            break
    return got


@PROPERTY
@given(data=st.data(), stream=VALID_STREAMS)
def test_any_split_of_valid_objects_gives_the_same_events(
    data: st.DataObject, stream: bytes
) -> None:
    assert split_events(data, stream) == feed(stream)


@PROPERTY
@given(data=st.data(), stream=NOISY_STREAMS)
def test_any_split_of_noisy_stream_gives_the_same_accepted_events(
    data: st.DataObject, stream: bytes
) -> None:
    # Garbage inside a would-be object may be reported at different points depending on the
    # reads; which objects are accepted, and in what order, must not.
    def accepted(events: list[ClientEvent | Err]) -> list[ClientEvent]:
        return [event for event in events if not isinstance(event, Err)]

    assert accepted(split_events(data, stream)) == accepted(feed(stream))


@PROPERTY
@given(chunks=st.lists(RANDOM_STREAMS, max_size=10))
def test_random_bytes_only_raise_remote_protocol_errors(chunks: list[bytes]) -> None:
    server = JsonCodec(max_object_bytes=256)
    client = JsonClientCodec(max_object_bytes=256)
    server_done = client_done = False
    for chunk in chunks:
        if not server_done:
            server.receive_data(chunk)
            server_done = fatal_after(server)
        if not client_done:
            client.receive_data(chunk)
            while True:
                try:
                    if client.next_event() is NEED_DATA:
                        break
                except RemoteProtocolError as error:
                    if not error.recoverable:
                        client_done = True
                        break
