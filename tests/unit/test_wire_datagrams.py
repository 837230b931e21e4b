"""Byte-exact tests of the datagram dialect (SPEC §5): liberal parsing, exact encoding."""

from __future__ import annotations

import unicodedata

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from triochat.events import ChatMessage, Goodbye, Hello, Leave, Notice, Say, Welcome
from triochat.text import check_name
from triochat.wire.datagrams import (
    LEAVE_DATAGRAM,
    MAX_DATAGRAM_BYTES,
    MAX_OUTGOING_BYTES,
    TRUNCATED_MARK,
    DatagramCodec,
    Farewell,
    Garbage,
    GarbageReason,
    Incoming,
    ServerNote,
    greeting,
    message_datagrams,
    parse_datagram,
    parse_server_datagram,
)

PROPERTY = settings(max_examples=200, deadline=None)


def chat(text: str, sender: str = "alice", ip: str = "10.0.0.7", port: int = 5555) -> ChatMessage:
    return ChatMessage(
        sender=sender,
        text=text,
        timestamp="2024-03-21 10:30:45",
        display_time="2024-03-21 10:30:45",
        sender_ip=ip,
        sender_port=port,
    )


# --- client -> server -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"GREETING", Hello("")),
        (b"GREETINGS", Hello("")),  # the seed's own client
        (b"GRE", Hello("")),
        (b"greeting", Hello("")),
        (b"GREETING alice", Hello("alice")),
        (b"GREETING  alice \r\n", Hello("alice")),
        (b"GREETING\talice", Hello("alice")),
        (b"GREETINGS bob\n", Hello("bob")),
        (b"GREETING two words", Hello("")),  # not a valid name: the server picks one
        (b"GREETING bad:name", Hello("")),
        (b"GREETING /slash", Hello("")),
        (b"GREETING " + b"x" * 33, Hello("")),
        (b"MESSAGE hello", Say("hello")),
        (b"MESSAGE hello world\n", Say("hello world")),
        (b"MESSAGE hello\r\n", Say("hello")),
        (b"MESSAGE  two leading spaces", Say(" two leading spaces")),
        (b"MEShello", Say("hello")),  # the seed's own client
        (b"MES hello", Say("hello")),
        (b"MESSAGEhello", Say("hello")),
        (b"message lower case", Say("lower case")),
        ("MESSAGE héllo wörld ✓".encode(), Say("héllo wörld ✓")),
        (b"MESSAGE a\nb", Say("a\nb")),  # the room escapes it before anyone sees it
        (b"LEAVE", Leave()),
        (b"leave\n", Leave()),
        (b" LEAVE ", Leave()),
    ],
)
def test_commands_are_matched_liberally(data: bytes, expected: object) -> None:
    assert parse_datagram(data) == expected


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", GarbageReason.UNKNOWN),
        (b"\n", GarbageReason.UNKNOWN),
        (b"HELLO", GarbageReason.UNKNOWN),
        (b"INCOMING 1.2.3.4 5 x: y", GarbageReason.UNKNOWN),
        (b"LEAVE now", GarbageReason.UNKNOWN),
        (b"GR", GarbageReason.UNKNOWN),
        (b"ME", GarbageReason.UNKNOWN),
        (b"MESSAGE", GarbageReason.EMPTY),
        (b"MESSAGE ", GarbageReason.EMPTY),
        (b"MESSAGE    \r\n", GarbageReason.EMPTY),
        (b"MES", GarbageReason.EMPTY),
        (b"MESSAGE \xff\xfe", GarbageReason.NOT_UTF8),
        (b"\xc3", GarbageReason.NOT_UTF8),
        (b"MESSAGE " + b"x" * MAX_DATAGRAM_BYTES, GarbageReason.TOO_LONG),
    ],
)
def test_everything_else_is_garbage_with_a_reason(data: bytes, reason: GarbageReason) -> None:
    assert parse_datagram(data) == Garbage(reason)


def test_the_size_limit_is_inclusive() -> None:
    data = b"MESSAGE " + b"x" * (MAX_DATAGRAM_BYTES - len(b"MESSAGE "))
    assert len(data) == MAX_DATAGRAM_BYTES
    assert parse_datagram(data) == Say("x" * (MAX_DATAGRAM_BYTES - 8))
    assert parse_datagram(data + b"x") == Garbage(GarbageReason.TOO_LONG)


@PROPERTY
@given(data=st.binary(max_size=MAX_DATAGRAM_BYTES + 16))
def test_random_bytes_never_raise(data: bytes) -> None:
    command = parse_datagram(data)
    assert isinstance(command, Hello | Say | Leave | Garbage)
    if isinstance(command, Hello) and command.name:
        assert check_name(command.name) == command.name
    if isinstance(command, Say):
        assert command.text.strip()


@PROPERTY
@given(
    keyword=st.sampled_from(["GREETING", "GREETINGS", "GRE", "Greeting", "gReEtInG"]),
    name=st.text(min_size=1, max_size=40),
)
def test_any_greeting_word_greets_and_names_are_valid_or_empty(keyword: str, name: str) -> None:
    command = parse_datagram(f"{keyword} {name}".encode())
    assert isinstance(command, Hello)
    if command.name:
        assert check_name(command.name) == command.name
        assert command.name == name.strip()


@PROPERTY
@given(
    prefix=st.sampled_from(["MESSAGE ", "MES", "MES ", "MESSAGE", "message ", "Mes"]),
    text=st.text(min_size=1, max_size=200).filter(
        lambda t: t.strip() and not t.startswith(" ") and not t.upper().startswith("SAGE")
    ),
)
def test_the_text_after_the_message_word_is_kept(prefix: str, text: str) -> None:
    expected = text.removesuffix("\n").removesuffix("\r")
    command = parse_datagram((prefix + text).encode())
    if expected.strip():
        assert command == Say(expected)
    else:
        assert command == Garbage(GarbageReason.EMPTY)


# --- server -> client -------------------------------------------------------------------------


def test_chat_messages_are_incoming_datagrams() -> None:
    codec = DatagramCodec()
    assert codec.encode(chat("How are you?")) == b"INCOMING 10.0.0.7 5555 alice: How are you?"
    assert codec.encode(chat("ünï ✓", ip="::1", port=1)) == "INCOMING ::1 1 alice: ünï ✓".encode()


def test_notices_errors_and_silent_events() -> None:
    codec = DatagramCodec()
    assert codec.encode(Notice("Server shutting down")) == b"NOTICE Server shutting down"
    error = Notice("Nickname already in use", is_error=True)
    assert codec.encode(error) == b"ERROR Nickname already in use"
    assert codec.encode(Welcome("alice", ("bob",))) == b""
    assert codec.encode(Goodbye("alice")) == b""
    assert codec.farewell("Registration expired") == b"BYE Registration expired"


def test_an_over_long_message_is_cut_at_a_character_and_marked() -> None:
    text = "é" * MAX_OUTGOING_BYTES  # two bytes each: far too long for one datagram
    data = DatagramCodec().encode(chat(text))
    assert len(data) <= MAX_OUTGOING_BYTES
    decoded = data.decode()  # never split inside a character
    assert decoded.startswith("INCOMING 10.0.0.7 5555 alice: éé")
    assert decoded.endswith(TRUNCATED_MARK)


def test_client_datagrams() -> None:
    assert greeting() == b"GREETING"
    assert greeting("alice") == b"GREETING alice"
    assert LEAVE_DATAGRAM == b"LEAVE"
    assert message_datagrams("hi there") == [b"MESSAGE hi there"]
    assert message_datagrams("") == []
    assert message_datagrams("   ") == []


@PROPERTY
@given(text=st.text(min_size=1, max_size=3 * MAX_DATAGRAM_BYTES // 2).filter(str.strip))
def test_long_lines_are_split_losslessly_into_acceptable_datagrams(text: str) -> None:
    datagrams = message_datagrams(text)
    pieces = []
    for data in datagrams:
        assert len(data) <= MAX_DATAGRAM_BYTES
        assert data.startswith(b"MESSAGE ")
        pieces.append(data[len(b"MESSAGE ") :].decode())  # each piece is whole characters
    assert "".join(pieces) == text


def test_a_very_long_line_is_split() -> None:
    text = "✓" * MAX_DATAGRAM_BYTES  # three bytes each
    datagrams = message_datagrams(text)
    assert len(datagrams) == 4
    assert all(len(data) <= MAX_DATAGRAM_BYTES for data in datagrams)


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"INCOMING 127.0.0.1 4242 bob: hi", Incoming("127.0.0.1", 4242, "bob", "hi")),
        (b"INCOMING ::1 1 bob: a: b: c\n", Incoming("::1", 1, "bob", "a: b: c")),
        (b"INCOMING 1.2.3.4 5 bob: ", Incoming("1.2.3.4", 5, "bob", "")),
        (b"INCOMING 1.2.3.4 5 bob: \x1b[2J", Incoming("1.2.3.4", 5, "bob", "\\x1b[2J")),
        (b"ERROR Nickname already in use", ServerNote("Nickname already in use", True)),
        (b"NOTICE hello", ServerNote("hello", False)),
        (b"BYE Server shutting down", Farewell("Server shutting down")),
        (b"BYE", Farewell("")),
        (b"INCOMING 1.2.3.4 port bob: hi", None),
        (b"INCOMING 1.2.3.4 123456 bob: hi", None),
        (b"INCOMING 1.2.3.4 5 bob hi", None),
        (b"INCOMING 1.2.3.4 5 : hi", None),
        (b"INCOMING", None),
        (b"hello", None),
        (b"", None),
    ],
)
def test_the_client_reads_server_datagrams(data: bytes, expected: object) -> None:
    assert parse_server_datagram(data) == expected


@PROPERTY
@given(data=st.binary(max_size=300))
def test_the_client_parser_never_raises(data: bytes) -> None:
    parsed = parse_server_datagram(data)
    if isinstance(parsed, Incoming):
        shown = parsed.ip + parsed.name + parsed.text
        assert all(ch == "\t" or unicodedata.category(ch) not in ("Cc", "Zl", "Zp") for ch in shown)


@PROPERTY
@given(
    sender=st.from_regex(r"[A-Za-z0-9_.-]{1,32}", fullmatch=True),
    text=st.text(max_size=300).filter(str.isprintable),
    port=st.integers(min_value=1, max_value=65535),
)
def test_what_the_server_encodes_the_client_reads_back(sender: str, text: str, port: int) -> None:
    data = DatagramCodec().encode(chat(text, sender=sender, ip="192.168.1.20", port=port))
    assert parse_server_datagram(data) == Incoming("192.168.1.20", port, sender, text)
