"""Fuzzing every codec: random bytes in random splits raise nothing but RemoteProtocolError.

SPEC §8: bad input never takes the server down. Every sans-IO codec (and the session's event
reader on top of them) is fed random bytes, and noise made of the pieces each dialect is built
from, cut at random points. The contract checked here:

* the only exception is :class:`RemoteProtocolError`; the file framing's errors are all fatal,
  the line dialects' all recoverable, the JSON dialect's either;
* draining always ends (no event is produced without consuming input);
* after a recoverable error the codec is still usable: what follows a resynchronisation point
  (a newline for lines, a newline and an object for JSON) is parsed exactly as if nothing bad
  had come before it, and no good object next to a bad one is lost;
* the chunk framing detects what ``test_wire_chunks.py`` does not try: every single-byte
  deletion and insertion, dropped, duplicated and swapped frames, and every truncation of a
  whole file connection (handshake line included), also through the relay's two-hop pipeline.
"""

from __future__ import annotations

import itertools
import json
import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pytest
import trio
import trio.testing
import xxhash
from hypothesis import example, given, settings
from hypothesis import strategies as st

from triochat.events import ChatMessage, ClientEvent, Hello, Leave, Notice, Say
from triochat.server.config import ServerConfig
from triochat.server.reader import EventReader, sniff_codec
from triochat.text import check_name
from triochat.timestamps import display_time_of, parse_timestamp
from triochat.wire.chunks import (
    AgentHandshake,
    ChunkDecoder,
    DataChunk,
    EndOfFile,
    RelayHandshake,
    SenderFailed,
    TransferAccepted,
    TransferRequest,
    encode_data,
    encode_end,
    encode_error,
    encode_frame,
)
from triochat.wire.common import NEED_DATA, RemoteProtocolError
from triochat.wire.datagrams import (
    MAX_DATAGRAM_BYTES,
    DatagramClientCodec,
    DatagramServerCodec,
    Farewell,
    Garbage,
)
from triochat.wire.json_lines import JsonClientCodec, JsonObjectFramer, JsonServerCodec
from triochat.wire.lines import LineFramer, LineServerCodec, PortTaggedServerCodec

from .helpers import split

FUZZ = settings(max_examples=300, deadline=None)

# --- inputs -----------------------------------------------------------------------------------

FRAGMENTS = [
    # lines
    *(b"\n", b"\r\n", b"\r", b" ", b"\t", b"a", b"name", b"/", b"//x", b"/quit", b"/who"),
    *(b"/nope", b"exit", b"x" * 40, b"\x00", b"\x1b[2J", "✓".encode(), b"\xc3", b"\xff"),
    # JSON
    *(b"{", b"}", b'"', b"\\", b"[", b"]", b":", b",", b"{}", b'{"type":"message"}'),
    *(b'{"type":"message","message":"hi","nickname":"n"}', b'{"type":"nickname","nickname":"n"}'),
    *(b'{"type":"disconnect"}', b'"\\', b'{"a":"}"}', b"{" * 40, b"}" * 3, b"null"),
    # file framing
    *(b"D", b"E", b"X", b"\x00\x00\x00\x05", b"\xff\xff\xff\xff", b"\x00\x00\x00\x28"),
    encode_data(b"abc"),
    encode_data(b""),
    encode_end(3, xxhash.xxh3_128_digest(b"abc")),
    encode_error("nope"),
    RelayHandshake().send(TransferRequest("t", 3)),
    AgentHandshake().send(TransferAccepted(0)),
    b'{"status": "error"}\n',
]

noise = st.lists(st.sampled_from(FRAGMENTS), max_size=40).map(b"".join)
garbage_bytes = st.one_of(st.binary(max_size=400), noise, st.lists(noise, max_size=3).map(b"".join))


cut_lists = st.lists(st.integers(min_value=0, max_value=10_000), max_size=25)


# --- every stream codec -----------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """One stream codec: how to make it, pull an event from it, and end its stream."""

    name: str
    make: Callable[[], Any]
    pull: Callable[[Any], object]
    finish: Callable[[Any], object]
    errors: str  # "fatal", "recoverable" or "either"


def _named_line_codec(limit: int) -> LineServerCodec:
    codec = LineServerCodec(limit)
    codec.name_accepted()
    return codec


def _nothing(_: Any) -> None:
    return None


LIMIT = 48
"""Small limits, so over-long lines and objects happen often."""

TARGETS = [
    Target(
        "line framer",
        lambda: LineFramer(LIMIT),
        LineFramer.next_line,
        LineFramer.flush_partial,
        "recoverable",
    ),
    Target(
        "line (naming)",
        lambda: LineServerCodec(LIMIT),
        LineServerCodec.next_event,
        LineServerCodec.flush_idle,
        "recoverable",
    ),
    Target(
        "line (named)",
        lambda: _named_line_codec(LIMIT),
        LineServerCodec.next_event,
        LineServerCodec.flush_idle,
        "recoverable",
    ),
    Target(
        "port-tagged",
        lambda: PortTaggedServerCodec(LIMIT),
        PortTaggedServerCodec.next_event,
        PortTaggedServerCodec.flush_idle,
        "recoverable",
    ),
    Target(
        "json framer",
        lambda: JsonObjectFramer(LIMIT * 4),
        JsonObjectFramer.next_object,
        _nothing,
        "either",
    ),
    Target(
        "json server",
        lambda: JsonServerCodec(LIMIT * 4),
        JsonServerCodec.next_event,
        JsonServerCodec.flush_idle,
        "either",
    ),
    Target(
        "json client",
        lambda: JsonClientCodec(LIMIT * 4),
        JsonClientCodec.next_event,
        _nothing,
        "either",
    ),
    Target(
        "chunks (receiver)",
        ChunkDecoder,
        ChunkDecoder.next_event,
        ChunkDecoder.end_of_stream,
        "fatal",
    ),
    Target(
        "chunks (relay)",
        lambda: ChunkDecoder(check_digest=False),
        ChunkDecoder.next_event,
        ChunkDecoder.end_of_stream,
        "fatal",
    ),
    Target("file request", AgentHandshake, AgentHandshake.next_event, _nothing, "fatal"),
    Target("file reply", RelayHandshake, RelayHandshake.next_event, _nothing, "fatal"),
]


class Fatal(Exception):
    """The codec raised a fatal RemoteProtocolError: its stream is over."""


def check_error(target: Target, error: RemoteProtocolError) -> None:
    assert str(error), f"{target.name}: an error must say what was wrong"
    if target.errors == "fatal":
        assert not error.recoverable, f"{target.name}: {error}"
    elif target.errors == "recoverable":
        assert error.recoverable, f"{target.name}: {error}"


def check_event(target: Target, event: object) -> None:
    """Line dialects never hand over text with a line break in it, nor longer than the limit.

    (A JSON string may hold a newline; the room escapes it before anybody sees it.)
    """
    if not target.name.startswith(("line", "port")):
        return
    if isinstance(event, Say | Hello):
        event = event.text if isinstance(event, Say) else event.name
    if isinstance(event, str):
        assert "\n" not in event, (target.name, event)
        assert len(event) <= LIMIT, (target.name, event)


def drain(target: Target, codec: Any, fed: int) -> tuple[list[object], int]:
    """Pull until NEED_DATA; (events, recoverable errors). Raises Fatal after a fatal error."""
    events: list[object] = []
    errors = 0
    for _ in range(fed + 3):  # every event or error consumes input: this bound is never hit
        try:
            event = target.pull(codec)
        except RemoteProtocolError as error:
            check_error(target, error)
            if not error.recoverable:
                raise Fatal from error
            errors += 1
            continue
        if event is NEED_DATA:
            return events, errors
        check_event(target, event)
        events.append(event)
    raise AssertionError(f"{target.name}: drain did not end after {fed + 3} pulls")


def run_target(target: Target, chunks: list[bytes]) -> list[object]:
    """Feed ``chunks`` one by one, draining after each; then end the stream."""
    codec = target.make()
    fed = 0
    events: list[object] = []
    try:
        for chunk in chunks:
            codec.receive_data(chunk)
            fed += len(chunk)
            got, _ = drain(target, codec, fed)
            events += got
        try:
            last = target.finish(codec)
        except RemoteProtocolError as error:
            check_error(target, error)
        else:
            if last is not None:
                check_event(target, last)
                events.append(last)
    except Fatal:
        pass
    return events


@FUZZ
@given(data=garbage_bytes, cuts=cut_lists)
def test_random_bytes_in_random_splits_raise_only_typed_errors(
    data: bytes, cuts: list[int]
) -> None:
    for target in TARGETS:
        run_target(target, split(data, cuts))


@FUZZ
@given(data=garbage_bytes, cuts=cut_lists)
def test_how_bytes_are_split_never_changes_what_line_codecs_accept(
    data: bytes, cuts: list[int]
) -> None:
    """Line framing is deterministic in the bytes, whatever the reads (quiet times aside)."""
    for target in TARGETS[:4]:
        assert run_target(target, split(data, cuts)) == run_target(target, [data]), target.name


# --- usable after a recoverable error ---------------------------------------------------------


@FUZZ
@given(junk=garbage_bytes, cuts=cut_lists, probe=st.text(min_size=1, max_size=30))
def test_line_codecs_resynchronise_at_the_next_newline(
    junk: bytes, cuts: list[int], probe: str
) -> None:
    probe = "p" + probe.replace("\n", " ").replace("\r", " ")  # never a command or "exit"
    encoded = probe.encode()
    if len(encoded) > LIMIT:
        encoded = encoded[:LIMIT].decode("utf-8", errors="ignore").encode()
    expected_text = encoded.decode()
    stream = junk + b"\n" + encoded + b"\n"
    for target in TARGETS[:4]:
        codec = target.make()
        events: list[object] = []
        for chunk in split(stream, cuts):
            codec.receive_data(chunk)
            events += drain(target, codec, len(stream))[0]
        if target.name == "line framer":
            assert events[-1] == expected_text
        elif target.name == "line (naming)":
            assert events[-1] == Hello(expected_text.strip())
        else:
            assert events[-1] == Say(expected_text), (target.name, events[-3:])
        assert target.pull(codec) is NEED_DATA


json_text = st.text(max_size=30)
valid_messages = st.builds(
    lambda text, nick, stamp: (
        json.dumps({"type": "message", "nickname": nick, "message": text, "timestamp": stamp}),
        Say(text, nick, stamp),
    ),
    json_text,
    st.text(min_size=1, max_size=10),
    st.text(min_size=1, max_size=10),
).map(lambda pair: (pair[0].encode(), pair[1]))
valid_broadcasts = st.builds(
    lambda text, nick, stamp, ascii_only: (
        json.dumps(
            {"type": "broadcast", "nickname": nick, "message": text, "timestamp": stamp},
            ensure_ascii=ascii_only,
        ).encode(),
        ChatMessage(nick, text, stamp),
    ),
    json_text,
    st.text(max_size=10),
    st.text(min_size=1, max_size=10),
    st.booleans(),
)

# Bad input that the JSON framer can skip safely (no unbalanced "{" or unterminated string).
skippable_garbage = st.binary(min_size=1, max_size=40).filter(
    lambda data: b"{" not in data and data.strip(b" \t\r\n") != b""
)
_NO_STRUCTURE = st.binary(max_size=30).map(lambda data: bytes(b for b in data if b not in b'{}"\\'))
bad_objects = st.one_of(
    _NO_STRUCTURE.map(lambda inner: b"{" + inner + b"}"),  # not JSON, or {} with no type
    st.sampled_from(
        [
            b'{"type": "warp"}',
            b'{"type": "message"}',
            b'{"type": "message", "message": [1, 2]}',
            b'{"type": "message", "message": "\xff\xfe"}',
            b'{"type": "nickname", "nickname": {"deep": true}}',
            b'{"type": "file_request", "owner": "o"}',
            b'{"type": "nickname", "nickname": "n", "file_port": 70000}',
            b'{"a": 1,}',
            b'{"a": "unterminated \\u12"}',
        ]
    ),
)
separators = st.sampled_from([b"", b"\n", b"\r\n", b" ", b"\n\n"])


def json_segments(valid: st.SearchStrategy[tuple[bytes, object]]) -> st.SearchStrategy[Any]:
    good = valid.map(lambda pair: ("good", pair[0], pair[1]))
    bad = st.one_of(bad_objects.map(lambda raw: ("bad object", raw, None)))
    junk = skippable_garbage.map(lambda raw: ("garbage", raw, None))
    return st.lists(st.tuples(st.one_of(good, bad, junk), separators), max_size=12)


def run_segments(
    codec: JsonServerCodec | JsonClientCodec, segments: list[Any], cuts: list[int]
) -> tuple[list[object], int]:
    stream = b"".join(raw + sep for (_, raw, _), sep in segments)
    events: list[object] = []
    errors = 0
    target = Target("json", lambda: codec, type(codec).next_event, _nothing, "recoverable")
    for chunk in split(stream, cuts):
        codec.receive_data(chunk)
        got, bad = drain(target, codec, len(stream))
        events += got
        errors += bad
    return events, errors


@FUZZ
@given(segments=json_segments(valid_messages), cuts=cut_lists)
def test_json_server_codec_loses_no_good_object_next_to_bad_ones(
    segments: list[Any], cuts: list[int]
) -> None:
    events, errors = run_segments(JsonServerCodec(), segments, cuts)
    assert events == [expected for (kind, _, expected), _ in segments if kind == "good"]
    bad_objects_sent = sum(kind == "bad object" for (kind, _, _), _ in segments)
    assert errors >= bad_objects_sent
    if any(kind != "good" for (kind, _, _), _ in segments):
        assert errors >= 1


@FUZZ
@given(segments=json_segments(valid_broadcasts), cuts=cut_lists)
def test_json_client_codec_loses_no_good_object_next_to_bad_ones(
    segments: list[Any], cuts: list[int]
) -> None:
    # The client takes any object as a reply; only what is not JSON at all is an error.
    events, _ = run_segments(JsonClientCodec(), segments, cuts)
    broadcasts = [event for event in events if isinstance(event, ChatMessage)]
    assert broadcasts == [expected for (kind, _, expected), _ in segments if kind == "good"]


@FUZZ
@given(junk=garbage_bytes, cuts=cut_lists)
def test_json_over_limit_or_too_deep_is_fatal_and_everything_else_recoverable(
    junk: bytes, cuts: list[int]
) -> None:
    codec = JsonServerCodec(64)
    target = Target("json", lambda: codec, JsonServerCodec.next_event, _nothing, "either")
    for chunk in split(junk, cuts):
        codec.receive_data(chunk)
        try:
            drain(target, codec, len(junk))
        except Fatal as fatal:
            message = str(fatal.__cause__)
            assert "too large" in message or "nested too deeply" in message, message
            return


# --- the session's event reader over a real (in-memory) stream --------------------------------

READER_LIMITS = ServerConfig(
    registration_timeout=5.0, idle_flush=0.1, max_line_bytes=LIMIT, receive_size=16
)


async def _read_all(chunks: list[bytes], pauses: list[bool], eof: bool) -> list[ClientEvent]:
    client, server = trio.testing.memory_stream_pair()
    events: list[ClientEvent] = []

    async def send() -> None:
        for chunk, pause in zip(chunks, itertools.cycle(pauses or [False]), strict=False):
            await client.send_all(chunk)
            if pause:
                # A quiet time, so the idle flush runs: virtual (trio.run gets a MockClock).
                await trio.sleep(READER_LIMITS.idle_flush * 2)
        if eof:
            await client.send_eof()

    async def receive() -> None:
        codec = await sniff_codec(server, READER_LIMITS)
        if codec is None:
            return
        reader = EventReader(server, codec, READER_LIMITS)
        for _ in range(sum(map(len, chunks)) + 3):
            try:
                event = await reader.next_event()
            except RemoteProtocolError as error:
                if not error.recoverable:
                    return
                continue
            if event is None:
                return
            if isinstance(event, Hello):
                codec.name_accepted()
            events.append(event)
        raise AssertionError("the reader never reached the end of the stream")

    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(send)
            if eof:
                await receive()
            else:
                with trio.move_on_after(READER_LIMITS.idle_flush * 10 * (len(chunks) + 1)):
                    await receive()
            nursery.cancel_scope.cancel()
    return events


@settings(FUZZ, max_examples=150)
@given(
    data=garbage_bytes,
    cuts=cut_lists,
    pauses=st.lists(st.booleans(), max_size=5),
    eof=st.booleans(),
)
def test_event_reader_over_random_bytes_raises_only_typed_errors(
    data: bytes, cuts: list[int], pauses: list[bool], eof: bool
) -> None:
    chunks = split(data, cuts)
    events = trio.run(
        _read_all, chunks, pauses, eof, clock=trio.testing.MockClock(autojump_threshold=0)
    )
    for event in events:
        if isinstance(event, Say):
            assert "\n" not in event.text or data.lstrip(b" \t\r\n").startswith(b"{")


# --- datagrams --------------------------------------------------------------------------------

datagram_prefixes = st.sampled_from(
    [b"", b"GRE", b"GREETING ", b"GREETINGS", b"MES", b"MESSAGE ", b"mEs", b"LEAVE", b"leave\n"]
)


@FUZZ
@given(prefix=datagram_prefixes, body=st.one_of(st.binary(max_size=300), noise))
def test_datagram_parser_never_raises_and_keeps_its_promises(prefix: bytes, body: bytes) -> None:
    command = DatagramServerCodec.receive_datagram(prefix + body)
    if isinstance(command, Hello):
        if command.name:
            check_name(command.name)  # a greeting's name is valid, or empty (server picks)
    elif isinstance(command, Say):
        assert command.text.strip()
    else:
        assert isinstance(command, Leave | Garbage)


def test_oversized_datagrams_are_garbage_whatever_they_say() -> None:
    for prefix in (b"MESSAGE ", b"GREETING x", b"LEAVE"):
        command = DatagramServerCodec.receive_datagram(prefix + b"x" * MAX_DATAGRAM_BYTES)
        assert isinstance(command, Garbage)


def _shows_no_controls(text: str) -> bool:
    return all(ch == "\t" or unicodedata.category(ch) not in ("Cc", "Zl", "Zp") for ch in text)


server_prefixes = st.sampled_from(
    [
        b"",
        b"INCOMING ",
        b"INCOMING 1.2.3.4 ",
        b"INCOMING 1.2.3.4 5 ",
        b"NOTICE ",
        b"ERROR ",
        b"BYE ",
    ]
)


@FUZZ
@given(prefix=server_prefixes, body=st.one_of(st.binary(max_size=300), noise))
def test_client_datagram_parser_never_raises_and_shows_no_controls(
    prefix: bytes, body: bytes
) -> None:
    parsed = DatagramClientCodec().receive_datagram(prefix + body)
    if isinstance(parsed, ChatMessage):
        assert 0 < parsed.sender_port < 100_000
        assert parsed.sender
        assert _shows_no_controls(parsed.sender_ip + parsed.sender + parsed.text)
    elif isinstance(parsed, Notice | Farewell):
        assert _shows_no_controls(parsed.text if isinstance(parsed, Notice) else parsed.reason)
    else:
        assert parsed is None


# --- chunk framing: what test_wire_chunks.py does not try ------------------------------------

CHUNKS = [b"ab", b"", bytes(range(5)), b"\xff" * 3]
ORIGINAL = b"".join(CHUNKS)


def frames_of(chunks: list[bytes]) -> list[bytes]:
    data = b"".join(chunks)
    return [encode_data(chunk) for chunk in chunks] + [
        encode_end(len(data), xxhash.xxh3_128_digest(data))
    ]


STREAM = b"".join(frames_of(CHUNKS))


@dataclass
class Received:
    """What a receiver made of a stream: its data, and whether it kept the file."""

    payload: bytes
    completed: bool
    failed: bool


def receive(stream: bytes, *, check_digest: bool = True, cuts: list[int] | None = None) -> Received:
    decoder = ChunkDecoder(check_digest=check_digest)
    payload = bytearray()
    completed = failed = False
    try:
        for chunk in split(stream, cuts or []):
            decoder.receive_data(chunk)
            while (event := decoder.next_event()) is not NEED_DATA:
                if isinstance(event, DataChunk):
                    payload += event.payload
                elif isinstance(event, EndOfFile):
                    completed = True
                elif isinstance(event, SenderFailed):
                    failed = True
        decoder.end_of_stream()
    except RemoteProtocolError as error:
        assert not error.recoverable
        return Received(bytes(payload), False, True)
    return Received(bytes(payload), completed and not failed, failed)


def assert_detected(stream: bytes, *, check_digest: bool, cuts: list[int] | None = None) -> None:
    got = receive(stream, check_digest=check_digest, cuts=cuts)
    assert not (got.completed and got.payload != ORIGINAL), "corrupt file kept"
    assert got.failed or not got.completed, "corruption not noticed"
    assert not got.completed


def test_the_reference_stream_is_received_whole() -> None:
    for check_digest in (True, False):
        got = receive(STREAM, check_digest=check_digest, cuts=[3, 17, 40])
        assert got == Received(ORIGINAL, True, False)


@pytest.mark.parametrize("check_digest", [True, False])
def test_every_single_byte_deletion_is_detected(check_digest: bool) -> None:
    for index in range(len(STREAM)):
        corrupt = STREAM[:index] + STREAM[index + 1 :]
        for cuts in ([], [index], [1, index + 2, len(corrupt) - 1]):
            assert_detected(corrupt, check_digest=check_digest, cuts=cuts)


@pytest.mark.parametrize("check_digest", [True, False])
def test_every_single_byte_insertion_is_detected(check_digest: bool) -> None:
    for index in range(len(STREAM) + 1):
        for value in range(256):
            corrupt = STREAM[:index] + bytes([value]) + STREAM[index:]
            assert_detected(corrupt, check_digest=check_digest, cuts=[index])


@pytest.mark.parametrize("check_digest", [True, False])
def test_every_duplicated_or_dropped_frame_is_detected(check_digest: bool) -> None:
    frames = frames_of([b"one", b"two", b"three"])
    for index in range(len(frames)):
        dropped = frames[:index] + frames[index + 1 :]
        duplicated = frames[: index + 1] + frames[index:]
        for corrupt in (dropped, duplicated):
            got = receive(b"".join(corrupt), check_digest=check_digest)
            assert not got.completed, (index, check_digest)


def test_every_reordering_of_frames_is_detected_by_the_receiver() -> None:
    """Same-size chunks swapped pass each CRC and the size: the whole-file digest catches it."""
    chunks = [b"aaa", b"bbb", b"ccc"]
    data = b"".join(chunks)
    end = encode_end(len(data), xxhash.xxh3_128_digest(data))
    for order in itertools.permutations(chunks):
        stream = b"".join(encode_data(chunk) for chunk in order) + end
        got = receive(stream, check_digest=True)
        assert got.completed == (list(order) == chunks)


def test_an_error_frame_in_place_of_any_frame_fails_the_transfer() -> None:
    frames = frames_of(CHUNKS)
    for index in range(len(frames)):
        stream = b"".join(frames[:index]) + encode_error("owner vanished")
        got = receive(stream)
        assert got.failed and not got.completed


def receive_connection(connection: bytes, cuts: list[int]) -> Received:
    """A requester's whole file connection: the handshake line, then the frames."""
    headers = AgentHandshake()
    rest: bytes | None = None
    pieces = split(connection, cuts)
    for position, piece in enumerate(pieces):
        headers.receive_data(piece)
        try:
            header = headers.next_event()
        except RemoteProtocolError:
            return Received(b"", False, True)
        if header is not NEED_DATA:
            rest = headers.take_rest() + b"".join(pieces[position + 1 :])
            break
    if rest is None:
        return Received(b"", False, True)  # the connection ended inside the header
    return receive(rest, cuts=[len(rest) // 2])


def test_every_truncation_of_a_whole_file_connection_is_detected() -> None:
    connection = RelayHandshake().send(TransferRequest("0" * 32, len(ORIGINAL))) + STREAM
    assert receive_connection(connection, []).completed
    for length in range(len(connection)):
        for cuts in ([], [length // 2], [1, 2, 3, length - 1]):
            got = receive_connection(connection[:length], cuts)
            assert not got.completed, (length, cuts)


def relay_then_receive(stream: bytes, cuts: list[int]) -> Received:
    """The relay checks each frame's CRC and forwards it; the requester checks everything."""
    relay = ChunkDecoder(check_digest=False)
    forwarded = bytearray()
    try:
        for chunk in split(stream, cuts):
            relay.receive_data(chunk)
            while (event := relay.next_event()) is not NEED_DATA:
                forwarded += event.frame
        relay.end_of_stream()
    except RemoteProtocolError:
        # The relay stops and sends an error frame instead of the rest.
        forwarded += encode_error("relay: bad frame")
    return receive(bytes(forwarded), cuts=[len(forwarded) // 3])


@FUZZ
@given(
    kind=st.sampled_from(["flip", "delete", "insert", "truncate"]),
    where=st.integers(min_value=0),
    value=st.integers(min_value=1, max_value=255),
    cuts=cut_lists,
)
def test_no_corruption_survives_relay_and_receiver(
    kind: str, where: int, value: int, cuts: list[int]
) -> None:
    index = where % len(STREAM)
    if kind == "flip":
        corrupt = bytearray(STREAM)
        corrupt[index] ^= value
        stream = bytes(corrupt)
    elif kind == "delete":
        stream = STREAM[:index] + STREAM[index + 1 :]
    elif kind == "insert":
        stream = STREAM[:index] + bytes([value]) + STREAM[index:]
    else:
        stream = STREAM[:index]
    got = relay_then_receive(stream, cuts)
    assert not got.completed
    assert ORIGINAL.startswith(got.payload) or got.failed


def test_relay_forwards_a_clean_stream_byte_for_byte() -> None:
    assert relay_then_receive(STREAM, [5, 6, 50]) == Received(ORIGINAL, True, False)


def test_unknown_frame_kinds_are_fatal_whatever_follows() -> None:
    for kind in range(256):
        if bytes([kind]) in (b"D", b"E", b"X"):
            continue
        got = receive(encode_frame(bytes([kind]), b"") + STREAM)
        assert got.failed and not got.completed


# --- timestamps sent by clients -----------------------------------------------------------------

DISPLAY = re.compile(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}")

iso_timestamps = st.builds(
    lambda moment, minutes, sep: (
        moment.isoformat(sep=sep)
        + (
            "Z"
            if minutes == 0
            else f"{'+' if minutes > 0 else '-'}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"
        )
    ),
    st.datetimes(min_value=datetime(1000, 1, 1), max_value=datetime(9999, 12, 31, 23, 59, 59)),
    st.integers(min_value=-(24 * 60 - 1), max_value=24 * 60 - 1),
    st.sampled_from(["T", " "]),
)
client_timestamps = st.one_of(
    iso_timestamps,
    st.text(max_size=70),
    st.integers().map(str),
    st.floats().map(str),
    st.integers(),
    st.floats(),
)


@FUZZ
@example(value="9999-12-31T23:59:59-23:59", fallback="2024-01-02 03:04:05")
@example(value="1000-01-01T00:00:00+23:59", fallback="2024-01-02 03:04:05")
@given(value=client_timestamps, fallback=st.just("2024-01-02 03:04:05"))
def test_any_client_timestamp_is_shown_in_the_display_format_or_replaced(
    value: object, fallback: str
) -> None:
    shown = display_time_of(value, fallback)
    assert DISPLAY.fullmatch(shown), (value, shown)


@FUZZ
@given(value=client_timestamps)
def test_parse_timestamp_never_raises(value: object) -> None:
    parsed = parse_timestamp(value)
    assert parsed is None or parsed.year >= 1000
