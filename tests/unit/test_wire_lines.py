"""Byte-exact tests of the line framer and the two line dialects (SPEC §3, §8)."""

from __future__ import annotations

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
    Who,
)
from triochat.wire.common import MAX_LINE_BYTES, NEED_DATA, RemoteProtocolError
from triochat.wire.lines import (
    LineClientCodec,
    LineFramer,
    LineServerCodec,
    PortTaggedClientCodec,
    PortTaggedServerCodec,
    ServerText,
)

from .helpers import Err, split

PROPERTY = settings(max_examples=200, deadline=None)


def lines_of(framer: LineFramer) -> list[str | Err]:
    """Every complete line (and every error) the framer holds right now."""
    out: list[str | Err] = []
    while True:
        try:
            line = framer.next_line()
        except RemoteProtocolError as error:
            out.append(Err(error.recoverable))
            continue
        if line is NEED_DATA:
            return out
        out.append(line)


def events_of(codec: LineServerCodec | PortTaggedServerCodec) -> list[ClientEvent | Err]:
    """Every event (and every error) the codec holds right now; names are accepted at once."""
    out: list[ClientEvent | Err] = []
    while True:
        try:
            event = codec.next_event()
        except RemoteProtocolError as error:
            out.append(Err(error.recoverable))
            continue
        if event is NEED_DATA:
            return out
        if isinstance(event, Hello):
            codec.name_accepted()
        out.append(event)


def flushed(codec: LineServerCodec | PortTaggedServerCodec) -> ClientEvent | Err | None:
    """What the idle flush gives: an event, nothing, or an error (``/unknown`` unterminated)."""
    try:
        return codec.flush_idle()
    except RemoteProtocolError as error:
        return Err(error.recoverable)


def named_codec(max_line_bytes: int = MAX_LINE_BYTES) -> LineServerCodec:
    codec = LineServerCodec(max_line_bytes)
    codec.name_accepted()
    return codec


def chat(sender: str, text: str) -> ChatMessage:
    return ChatMessage(
        sender=sender,
        text=text,
        timestamp="2024-01-02 03:04:05",
        display_time="2024-01-02 03:04:05",
        sender_ip="127.0.0.1",
        sender_port=50123,
    )


# --- LineFramer -------------------------------------------------------------------------------


def test_framer_splits_lines_and_tolerates_crlf() -> None:
    framer = LineFramer()
    framer.receive_data(b"one\r\ntwo\nthree\r\n")
    assert lines_of(framer) == ["one", "two", "three"]
    assert not framer.has_partial


def test_framer_drops_only_the_cr_right_before_the_newline() -> None:
    framer = LineFramer()
    framer.receive_data(b"a\rb\nc\r\r\n")
    assert lines_of(framer) == ["a\rb", "c\r"]


def test_framer_crlf_split_between_reads() -> None:
    framer = LineFramer()
    framer.receive_data(b"hello\r")
    assert framer.next_line() is NEED_DATA
    framer.receive_data(b"\nworld\n")
    assert lines_of(framer) == ["hello", "world"]


def test_framer_needs_data_without_newline() -> None:
    framer = LineFramer()
    assert framer.next_line() is NEED_DATA
    assert not framer.has_partial
    framer.receive_data(b"par")
    assert framer.next_line() is NEED_DATA
    assert framer.has_partial
    framer.receive_data(b"tial\n")
    assert framer.next_line() == "partial"
    assert framer.next_line() is NEED_DATA


def test_framer_replaces_invalid_utf8() -> None:
    framer = LineFramer()
    framer.receive_data(b"caf\xc3\n\xff\xfe ok\n")
    assert lines_of(framer) == ["caf\ufffd", "\ufffd\ufffd ok"]


def test_framer_keeps_utf8_split_across_reads() -> None:
    framer = LineFramer()
    encoded = "héllo ✓\n".encode()
    for byte in encoded:
        framer.receive_data(bytes([byte]))
    assert lines_of(framer) == ["héllo ✓"]


def test_framer_line_of_exactly_the_limit_is_accepted() -> None:
    framer = LineFramer(max_line_bytes=8)
    framer.receive_data(b"12345678\n")
    assert lines_of(framer) == ["12345678"]


def test_framer_default_limit_is_64_kib() -> None:
    assert MAX_LINE_BYTES == 64 * 1024
    framer = LineFramer()
    framer.receive_data(b"a" * MAX_LINE_BYTES + b"\n" + b"b" * (MAX_LINE_BYTES + 1) + b"\nok\n")
    assert lines_of(framer) == ["a" * MAX_LINE_BYTES, Err(True), "ok"]


def test_framer_over_long_line_in_one_read_is_refused_and_next_line_parsed() -> None:
    framer = LineFramer(max_line_bytes=8)
    framer.receive_data(b"x" * 20 + b"\nnext\n")
    with pytest.raises(RemoteProtocolError, match="too long") as caught:
        framer.next_line()
    assert caught.value.recoverable is True
    assert framer.next_line() == "next"
    assert framer.next_line() is NEED_DATA


def test_framer_over_long_line_over_many_reads_errors_once_and_skips_its_rest() -> None:
    framer = LineFramer(max_line_bytes=8)
    framer.receive_data(b"x" * 9)
    with pytest.raises(RemoteProtocolError) as caught:
        framer.next_line()
    assert caught.value.recoverable is True
    # The rest of the long line is being skipped; a quiet time would end it (has_partial).
    assert framer.has_partial
    for _ in range(5):
        framer.receive_data(b"y" * 9)
        assert framer.next_line() is NEED_DATA  # no second error for the same line
    framer.receive_data(b"tail\nnext\n")
    assert lines_of(framer) == ["next"]


def test_framer_buffer_stays_bounded_by_the_limit() -> None:
    framer = LineFramer(max_line_bytes=16)
    errors = 0
    for _ in range(100):
        framer.receive_data(b"z" * 7)
        try:
            assert framer.next_line() is NEED_DATA
        except RemoteProtocolError:
            errors += 1
        assert len(framer._buffer) <= 16
    assert errors == 1


def test_framer_flush_partial_hands_over_unterminated_bytes() -> None:
    framer = LineFramer()
    assert framer.flush_partial() is None
    framer.receive_data(b"no newline\r")
    assert framer.next_line() is NEED_DATA
    assert framer.has_partial
    assert framer.flush_partial() == "no newline"
    assert not framer.has_partial
    assert framer.flush_partial() is None
    framer.receive_data(b"after\n")
    assert lines_of(framer) == ["after"]


def test_framer_flush_partial_replaces_invalid_utf8() -> None:
    framer = LineFramer()
    framer.receive_data(b"\xe2\x9c")  # a truncated three-byte sequence
    assert framer.next_line() is NEED_DATA
    assert framer.flush_partial() == "\ufffd"


def test_idle_flush_ends_an_over_long_unterminated_message() -> None:
    codec = named_codec(max_line_bytes=16)
    codec.receive_data(b"x" * 40)  # an unframed peer's over-long message
    assert events_of(codec) == [Err(True)]
    codec.flush_idle()  # the quiet time: that message is over
    codec.receive_data(b"hello")  # the peer's next message, again without a newline
    assert codec.next_event() is NEED_DATA
    assert codec.has_partial
    assert codec.flush_idle() == Say("hello")


# --- LineServerCodec -------------------------------------------------------------------------


def test_first_line_is_hello_then_messages() -> None:
    codec = LineServerCodec()
    codec.receive_data(b"  alice \r\nhello there\n")
    assert codec.next_event() == Hello("alice")
    # Until the room accepts the name, every line is another try at a name.
    assert codec.next_event() == Hello("hello there")
    codec.receive_data(b"hi all\n")
    codec.name_accepted()
    assert codec.next_event() == Say("hi all")
    assert codec.next_event() is NEED_DATA


def test_line_text_is_kept_verbatim() -> None:
    codec = named_codec()
    codec.receive_data(b"  spaced  out \t\n")
    assert codec.next_event() == Say("  spaced  out \t")


def test_blank_lines_are_skipped_once_named() -> None:
    codec = named_codec()
    codec.receive_data(b"\n\r\n   \n\t\nreal\n\n")
    assert events_of(codec) == [Say("real")]


@pytest.mark.parametrize(
    ("line", "event"),
    [
        (b"/quit\n", Leave()),
        (b"/QUIT\r\n", Leave()),
        (b"/quit  \n", Leave()),
        (b"/who\n", Who()),
        (b"/Who\n", Who()),
        (b"//x\n", Say("/x")),
        (b"//\n", Say("/")),
        (b"// spaced\n", Say("/ spaced")),
        (b"x /quit\n", Say("x /quit")),
        (b" /quit\n", Say(" /quit")),
    ],
)
def test_slash_commands(line: bytes, event: ClientEvent) -> None:
    codec = named_codec()
    codec.receive_data(line)
    assert codec.next_event() == event
    assert codec.next_event() is NEED_DATA


@pytest.mark.parametrize("line", [b"/nickname bob\n", b"/\n", b"/quitnow\n", b"/who?\n"])
def test_unknown_command_is_a_recoverable_error(line: bytes) -> None:
    codec = named_codec()
    codec.receive_data(line + b"after\n")
    with pytest.raises(RemoteProtocolError, match="Unknown command") as caught:
        codec.next_event()
    assert caught.value.recoverable is True
    assert line.split()[0].decode() in str(caught.value)
    assert codec.next_event() == Say("after")


def test_over_long_line_in_codec_is_recoverable() -> None:
    codec = named_codec(max_line_bytes=8)
    codec.receive_data(b"a" * 9)
    codec.receive_data(b"b" * 9 + b"\nshort\n")
    assert events_of(codec) == [Err(True), Say("short")]


def test_codec_flush_idle() -> None:
    codec = LineServerCodec()
    assert codec.flush_idle() is None
    codec.receive_data(b"bob")
    assert codec.next_event() is NEED_DATA
    assert codec.has_partial
    assert codec.flush_idle() == Hello("bob")
    codec.name_accepted()
    codec.receive_data(b"no newline")
    assert codec.next_event() is NEED_DATA
    assert codec.flush_idle() == Say("no newline")
    assert not codec.has_partial
    assert codec.flush_idle() is None
    codec.receive_data(b"   ")
    assert codec.flush_idle() is None  # blank, skipped
    codec.receive_data(b"/who")
    assert codec.flush_idle() == Who()


def test_codec_invalid_utf8_replaced() -> None:
    codec = named_codec()
    codec.receive_data(b"bad \xc0\xaf byte\n")
    assert codec.next_event() == Say("bad \ufffd\ufffd byte")


def test_line_encode_exact_bytes() -> None:
    codec = LineServerCodec()
    assert codec.send(chat("alice", "hello")) == b"alice: hello\n"
    assert codec.send(chat("José", "ça va ✓")) == "José: ça va ✓\n".encode()
    assert codec.send(Notice("Name taken")) == b"*** Name taken\n"
    assert codec.send(Notice("bad", is_error=True)) == b"*** bad\n"
    assert codec.send(Welcome("alice", ("bob",))) == b""
    assert codec.send(Goodbye("alice")) == b""


def test_line_encode_refuses_client_events() -> None:
    with pytest.raises(TypeError):
        LineServerCodec().send(Say("x"))  # type: ignore[arg-type]


# --- PortTaggedServerCodec -------------------------------------------------------------------


def test_port_tagged_has_no_name_line() -> None:
    codec = PortTaggedServerCodec()
    codec.receive_data(b"first\r\n\n  \nsecond\n/who\n")
    assert events_of(codec) == [Say("first"), Say("second"), Say("/who")]


@pytest.mark.parametrize("line", [b"exit\n", b"exit\r\n", b"  exit \n"])
def test_port_tagged_exit_leaves(line: bytes) -> None:
    codec = PortTaggedServerCodec()
    codec.receive_data(line)
    assert codec.next_event() == Leave()


def test_port_tagged_exit_must_be_the_whole_line() -> None:
    codec = PortTaggedServerCodec()
    codec.receive_data(b"exit now\nEXIT\n")
    assert events_of(codec) == [Say("exit now"), Say("EXIT")]


def test_port_tagged_flush_idle() -> None:
    codec = PortTaggedServerCodec()
    codec.receive_data(b"exit")
    assert codec.next_event() is NEED_DATA
    assert codec.has_partial
    assert codec.flush_idle() == Leave()
    codec.receive_data(b"hi")
    assert codec.flush_idle() == Say("hi")
    assert codec.flush_idle() is None


def test_port_tagged_over_long_line() -> None:
    codec = PortTaggedServerCodec(max_line_bytes=4)
    codec.receive_data(b"toolong\nok\n")
    assert events_of(codec) == [Err(True), Say("ok")]


def test_port_tagged_encode_exact_bytes() -> None:
    codec = PortTaggedServerCodec()
    assert codec.send(chat("50123", "hello")) == b"50123:hello\n"
    assert codec.send(chat("50123", " spaced")) == b"50123: spaced\n"
    assert codec.send(Goodbye("50123")) == b"exit\n"
    assert codec.send(Notice("server closing")) == b"*** server closing\n"
    assert codec.send(Welcome("50123", ())) == b""


# --- properties -------------------------------------------------------------------------------

LINE_PIECES = st.sampled_from(
    [
        *(b"a", b"bc", b" ", b"\n", b"\r", b"\r\n", b"/", b"//", b"/quit", b"/who", b"exit"),
        *(b"\xff", b"\xc3", b"\xa9", "✓".encode(), b"\x00", b"\t", b"x" * 5),
    ]
)
STREAMS = st.one_of(st.binary(max_size=200), st.lists(LINE_PIECES, max_size=60).map(b"".join))


def cut_points(data: bytes) -> st.SearchStrategy[list[int]]:
    return st.lists(st.integers(min_value=0, max_value=len(data)), max_size=20)


@PROPERTY
@given(data=st.data(), stream=STREAMS, limit=st.integers(min_value=1, max_value=12))
def test_framer_any_split_gives_the_same_lines(
    data: st.DataObject, stream: bytes, limit: int
) -> None:
    whole = LineFramer(limit)
    whole.receive_data(stream)
    expected = lines_of(whole)
    expected_rest = whole.flush_partial()

    pieces = LineFramer(limit)
    got: list[str | Err] = []
    for chunk in split(stream, data.draw(cut_points(stream))):
        pieces.receive_data(chunk)
        got += lines_of(pieces)
    assert got == expected
    assert pieces.flush_partial() == expected_rest


@PROPERTY
@given(data=st.data(), stream=STREAMS, port_tagged=st.booleans())
def test_codec_any_split_gives_the_same_events(
    data: st.DataObject, stream: bytes, port_tagged: bool
) -> None:
    def make() -> LineServerCodec | PortTaggedServerCodec:
        return PortTaggedServerCodec(10) if port_tagged else LineServerCodec(10)

    whole = make()
    whole.receive_data(stream)
    expected = events_of(whole)
    expected_rest = flushed(whole)

    pieces = make()
    got: list[ClientEvent | Err] = []
    for chunk in split(stream, data.draw(cut_points(stream))):
        pieces.receive_data(chunk)
        got += events_of(pieces)
    assert got == expected
    assert flushed(pieces) == expected_rest


@PROPERTY
@given(chunks=st.lists(st.binary(max_size=40), max_size=30), limit=st.integers(1, 32))
def test_random_bytes_only_raise_recoverable_errors_and_buffer_stays_bounded(
    chunks: list[bytes], limit: int
) -> None:
    framer = LineFramer(limit)
    codec = named_codec(limit)
    port_tagged = PortTaggedServerCodec(limit)
    for chunk in chunks:
        framer.receive_data(chunk)
        for item in lines_of(framer):
            assert not isinstance(item, Err) or item.recoverable
        assert len(framer._buffer) <= limit
        for target in (codec, port_tagged):
            target.receive_data(chunk)
            for event in events_of(target):
                assert not isinstance(event, Err) or event.recoverable
    rest = framer.flush_partial()
    assert rest is None or len(rest) <= limit
    for target in (codec, port_tagged):
        last = flushed(target)
        assert last is None or isinstance(last, Say | Leave | Who) or last == Err(True)


# --- the client roles -------------------------------------------------------------------------


def test_line_client_sends_the_seed_wire() -> None:
    client = LineClientCodec()
    assert client.send(Hello("alice")) == b"alice"  # alone, no newline: the seed's name recv()
    assert client.send(Say("hi there")) == b"hi there"
    assert client.send(Say("")) == b""
    assert client.send(Leave()) == b""  # leaving is closing the connection
    for event in (Who(), FileRequest("a", "b")):
        with pytest.raises(TypeError):
            client.send(event)


def test_port_tagged_client_sends_the_seed_wire() -> None:
    client = PortTaggedClientCodec()
    assert client.send(Say("hi")) == b"hi"
    assert client.send(Leave()) == b"exit"
    for event in (Hello("alice"), Who(), FileRequest("a", "b")):
        with pytest.raises(TypeError):
            client.send(event)


@pytest.mark.parametrize("client_type", [LineClientCodec, PortTaggedClientCodec])
def test_client_shows_server_lines_as_they_come(
    client_type: type[LineClientCodec | PortTaggedClientCodec],
) -> None:
    client = client_type()
    client.receive_data(b"alice: hi\r\n*** Name taken\nbob: un")
    assert client.next_event() == ServerText("alice: hi")
    assert client.next_event() == ServerText("*** Name taken")
    assert client.next_event() is NEED_DATA
    assert client.has_partial
    # An unframed server ends nothing in a newline: the quiet time ends the line.
    assert client.flush_idle() == ServerText("bob: un")
    assert client.flush_idle() is None
    assert not client.has_partial


PEER_TEXT = st.text(
    alphabet=st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=40
).filter(lambda text: text.strip() and not text.startswith("/"))


@PROPERTY
@given(name=st.from_regex(r"[A-Za-z0-9_.-]{1,32}", fullmatch=True), texts=st.lists(PEER_TEXT))
def test_line_round_trip_client_to_server(name: str, texts: list[str]) -> None:
    # Each write stands alone (unframed): the server's quiet-time flush ends each one.
    client, server = LineClientCodec(), LineServerCodec()
    server.receive_data(client.send(Hello(name)))
    assert server.next_event() is NEED_DATA
    assert server.flush_idle() == Hello(name)
    server.name_accepted()
    for text in texts:
        server.receive_data(client.send(Say(text)))
        assert server.flush_idle() == Say(text)


@PROPERTY
@given(texts=st.lists(PEER_TEXT.filter(lambda text: text.strip() != "exit")))
def test_port_tagged_round_trip_client_to_server(texts: list[str]) -> None:
    client, server = PortTaggedClientCodec(), PortTaggedServerCodec()
    for text in texts:
        server.receive_data(client.send(Say(text)))
        assert server.flush_idle() == Say(text)
    server.receive_data(client.send(Leave()))
    assert server.flush_idle() == Leave()


@PROPERTY
@given(
    sender=st.from_regex(r"[A-Za-z0-9_.-]{1,32}", fullmatch=True),
    text=st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc")), max_size=40),
)
def test_round_trip_server_to_client(sender: str, text: str) -> None:
    # The client shows exactly what the server wrote, framed or not.
    for server, client in (
        (LineServerCodec(), LineClientCodec()),
        (PortTaggedServerCodec(), PortTaggedClientCodec()),
    ):
        for event in (chat(sender, text), Notice(text)):
            data = server.send(event)
            client.receive_data(data)
            assert client.next_event() == ServerText(data.decode().removesuffix("\n"))
            client.receive_data(server.unframe(data))
            assert client.next_event() is NEED_DATA
            assert client.flush_idle() == ServerText(data.decode().removesuffix("\n"))
