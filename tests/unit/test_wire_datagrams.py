"""Byte-exact tests of the datagram dialect (SPEC §5): liberal parsing, exact encoding."""

from __future__ import annotations

import unicodedata

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from triochat.events import (
    ChatMessage,
    FileRequest,
    Goodbye,
    Hello,
    Leave,
    Notice,
    Say,
    Welcome,
    Who,
)
from triochat.text import check_name
from triochat.wire.datagrams import (
    LEAVE_DATAGRAM,
    MAX_DATAGRAM_BYTES,
    MAX_OUTGOING_BYTES,
    SEED_RECEIVE_BYTES,
    TRUNCATED_MARK,
    DatagramClientCodec,
    DatagramServerCodec,
    Farewell,
    Garbage,
    GarbageReason,
    Relayed,
)

PROPERTY = settings(max_examples=200, deadline=None)
SERVER = DatagramServerCodec()


def client_knowing(server_is_triochat: bool) -> DatagramClientCodec:
    """A client codec that has heard from a triochat server, or from the seed's own."""
    codec = DatagramClientCodec()
    codec.receive_datagram(b"NOTICE hi" if server_is_triochat else b"From('1.2.3.4', 5): hi")
    assert codec.server_is_triochat is server_is_triochat
    return codec


def incoming(ip: str, port: int, name: str, text: str) -> ChatMessage:
    """What the client role makes of ``INCOMING <ip> <port> <name>: <text>``."""
    return ChatMessage(name, text, "", sender_ip=ip, sender_port=port)


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
    assert SERVER.receive_datagram(data) == expected


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
    assert SERVER.receive_datagram(data) == Garbage(reason)


def test_the_size_limit_is_inclusive() -> None:
    data = b"MESSAGE " + b"x" * (MAX_DATAGRAM_BYTES - len(b"MESSAGE "))
    assert len(data) == MAX_DATAGRAM_BYTES
    assert SERVER.receive_datagram(data) == Say("x" * (MAX_DATAGRAM_BYTES - 8))
    assert SERVER.receive_datagram(data + b"x") == Garbage(GarbageReason.TOO_LONG)


@PROPERTY
@given(data=st.binary(max_size=MAX_DATAGRAM_BYTES + 16))
def test_random_bytes_never_raise(data: bytes) -> None:
    command = SERVER.receive_datagram(data)
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
    command = SERVER.receive_datagram(f"{keyword} {name}".encode())
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
    command = SERVER.receive_datagram((prefix + text).encode())
    if expected.strip():
        assert command == Say(expected)
    else:
        assert command == Garbage(GarbageReason.EMPTY)


# --- server -> client -------------------------------------------------------------------------


def test_chat_messages_are_incoming_datagrams() -> None:
    codec = DatagramServerCodec()
    assert codec.send(chat("How are you?")) == b"INCOMING 10.0.0.7 5555 alice: How are you?"
    assert codec.send(chat("ünï ✓", ip="::1", port=1)) == "INCOMING ::1 1 alice: ünï ✓".encode()


def test_notices_errors_and_silent_events() -> None:
    codec = DatagramServerCodec()
    assert codec.send(Notice("Server shutting down")) == b"NOTICE Server shutting down"
    error = Notice("Nickname already in use", is_error=True)
    assert codec.send(error) == b"ERROR Nickname already in use"
    assert codec.send(Welcome("alice", ("bob",))) == b""
    assert codec.send(Goodbye("alice")) == b""
    assert codec.send(Farewell("Registration expired")) == b"BYE Registration expired"


def test_an_over_long_message_is_cut_at_a_character_and_marked() -> None:
    text = "é" * MAX_OUTGOING_BYTES  # two bytes each: far too long for one datagram
    data = DatagramServerCodec().send(chat(text))
    assert len(data) <= MAX_OUTGOING_BYTES
    decoded = data.decode()  # never split inside a character
    assert decoded.startswith("INCOMING 10.0.0.7 5555 alice: éé")
    assert decoded.endswith(TRUNCATED_MARK)


def test_client_datagrams() -> None:
    codec = DatagramClientCodec()
    assert codec.send(Hello("")) == [b"GREETING"]
    assert codec.send(Hello("alice")) == [b"GREETING alice"]
    # The seed's server would relay LEAVE as chat: only a known triochat server hears it.
    assert codec.send(Leave()) == []
    assert client_knowing(False).send(Leave()) == []
    assert client_knowing(True).send(Leave()) == [LEAVE_DATAGRAM] == [b"LEAVE"]
    for event in (Who(), FileRequest("a", "b")):
        with pytest.raises(TypeError):
            codec.send(event)
    for known in (True, False):
        assert client_knowing(known).send(Say("")) == []
        assert client_knowing(known).send(Say("   ")) == []


def test_messages_to_triochat_say_message() -> None:
    assert client_knowing(True).send(Say("hi there")) == [b"MESSAGE hi there"]
    # Exact for every text, including those MES<text> would lose characters of.
    for text in ("SAGE hi", "sagebrush", " leading space", "  two", "MES", "GREETINGS"):
        (data,) = client_knowing(True).send(Say(text))
        assert data == b"MESSAGE " + text.encode()
        assert SERVER.receive_datagram(data) == Say(text)


def seed_server_shows(data: bytes) -> str:
    """What the seed's own server relays for a message datagram: all but the first 3 bytes."""
    return data[3:].decode(errors="replace")


@pytest.mark.parametrize(
    "text", ["How are you?", "SAGE hi", "sage", " leading", "MESSAGE x", "LEAVE", "a): b", "é✓"]
)
def test_messages_before_triochat_is_known_are_mes_text(text: str) -> None:
    # A server that strips exactly three bytes shows exactly the text typed (never "SAGE ...").
    (data,) = client_knowing(False).send(Say(text))
    assert data == b"MES" + text.encode()
    assert seed_server_shows(data) == text


@pytest.mark.parametrize(
    ("text", "ours_show"),
    [
        ("How are you?", "How are you?"),
        ("MESSAGE x", "MESSAGE x"),
        ("GREETING", "GREETING"),
        ("LEAVE", "LEAVE"),
        # The documented edge cases of MES<text> on our server:
        ("SAGE hi", "hi"),
        ("sagebrush", "brush"),
        (" leading", "leading"),
    ],
)
def test_what_our_server_makes_of_mes_text(text: str, ours_show: str) -> None:
    (data,) = client_knowing(False).send(Say(text))
    assert SERVER.receive_datagram(data) == Say(ours_show)


@PROPERTY
@given(
    text=st.text(min_size=1, max_size=250).filter(  # at most 1,000 bytes: one datagram
        # the documented edge cases: what our server reads as "MESSAGE", or a separating space
        lambda t: t.strip() and not t.startswith(" ") and ("MES" + t)[:7].upper() != "MESSAGE"
    )
)
def test_mes_text_shows_the_same_text_on_both_servers(text: str) -> None:
    (data,) = client_knowing(False).send(Say(text))
    assert seed_server_shows(data) == text
    expected = text.removesuffix("\n").removesuffix("\r")  # our server drops a line ending
    assert SERVER.receive_datagram(data) == (
        Say(expected) if expected.strip() else Garbage(GarbageReason.EMPTY)
    )


@PROPERTY
@given(
    text=st.text(min_size=1, max_size=3 * MAX_DATAGRAM_BYTES // 2).filter(str.strip),
    known=st.booleans(),
)
def test_long_lines_are_split_losslessly_into_acceptable_datagrams(text: str, known: bool) -> None:
    prefix, limit = (b"MESSAGE ", MAX_DATAGRAM_BYTES) if known else (b"MES", SEED_RECEIVE_BYTES)
    datagrams = client_knowing(known).send(Say(text))
    pieces = []
    for data in datagrams:
        assert len(data) <= limit
        assert data.startswith(prefix)
        piece = data[len(prefix) :].decode()  # each piece is whole characters
        assert piece.strip()  # a blank piece is not sent: the server would ignore it
        pieces.append(piece)
    # Nothing but whitespace that would have made up whole blank pieces is lost.
    assert "".join(pieces) == text or "".join(pieces).split() == text.split()


def test_a_very_long_line_is_split() -> None:
    text = "✓" * MAX_DATAGRAM_BYTES  # three bytes each
    datagrams = client_knowing(True).send(Say(text))
    assert len(datagrams) == 4
    assert all(len(data) <= MAX_DATAGRAM_BYTES for data in datagrams)
    # The seed's server reads 1,024 bytes at most: until triochat is known, pieces fit that.
    datagrams = client_knowing(False).send(Say(text))
    assert len(datagrams) == 3 * MAX_DATAGRAM_BYTES // (SEED_RECEIVE_BYTES - 4) + 1
    assert all(len(data) <= SEED_RECEIVE_BYTES for data in datagrams)
    assert b"".join(data[3:] for data in datagrams).decode() == text


def test_a_blank_piece_of_a_long_line_is_not_sent() -> None:
    # 1,021 bytes of text per MES datagram: the middle piece is only spaces.
    text = "x" * 1000 + " " * 2000 + "y"
    assert client_knowing(False).send(Say(text)) == [
        b"MES" + b"x" * 1000 + b" " * 21,
        b"MES" + b" " * (2000 - 21 - 1021) + b"y",
    ]


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"INCOMING 127.0.0.1 4242 bob: hi", incoming("127.0.0.1", 4242, "bob", "hi")),
        (b"INCOMING ::1 1 bob: a: b: c\n", incoming("::1", 1, "bob", "a: b: c")),
        (b"INCOMING 1.2.3.4 5 bob: ", incoming("1.2.3.4", 5, "bob", "")),
        (b"INCOMING 1.2.3.4 5 bob: \x1b[2J", incoming("1.2.3.4", 5, "bob", "\\x1b[2J")),
        (b"ERROR Nickname already in use", Notice("Nickname already in use", is_error=True)),
        (b"NOTICE hello", Notice("hello")),
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
    assert DatagramClientCodec().receive_datagram(data) == expected


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        # The seed's own server: f"From{addr}: {text}" with its address tuple's repr.
        (b"From('127.0.0.1', 41406): How are you?", Relayed("127.0.0.1", 41406, "How are you?")),
        (b"From('10.0.0.7', 1): hi\n", Relayed("10.0.0.7", 1, "hi")),
        (b"From('::1', 5000, 0, 0): hi", Relayed("::1", 5000, "hi")),
        (b"From('fe80::1%eth0', 5000, 0, 2): hi", Relayed("fe80::1%eth0", 5000, "hi")),
        (b"From('127.0.0.1', 5): a): b: c", Relayed("127.0.0.1", 5, "a): b: c")),
        (
            b"From('127.0.0.1', 5): From('6.6.6.6', 6): x",
            Relayed("127.0.0.1", 5, "From('6.6.6.6', 6): x"),
        ),
        (
            b"From('127.0.0.1', 5): INCOMING 1.2.3.4 5 x: y",
            Relayed("127.0.0.1", 5, "INCOMING 1.2.3.4 5 x: y"),
        ),
        (b"From('127.0.0.1', 5): ", Relayed("127.0.0.1", 5, "")),  # a seed client's empty line
        (b"From('127.0.0.1', 5):  spaced ", Relayed("127.0.0.1", 5, " spaced ")),
        (b"From('127.0.0.1', 5): SAGE hi", Relayed("127.0.0.1", 5, "SAGE hi")),
        (b"From('127.0.0.1', 5): \x1b[2J", Relayed("127.0.0.1", 5, "\\x1b[2J")),
        (b"From('127.0.0.1', 5): a\nb", Relayed("127.0.0.1", 5, "a\\x0ab")),
        ("From('127.0.0.1', 5): héllo ✓".encode(), Relayed("127.0.0.1", 5, "héllo ✓")),
        (b"From('127.0.0.1', 5): \xff", Relayed("127.0.0.1", 5, "\ufffd")),
        # Garbage: not what that server sends.
        (b"From", None),
        (b"From(", None),
        (b"From('127.0.0.1', 5)", None),
        (b"From('127.0.0.1', 5):", None),
        (b"From('127.0.0.1', 5):hi", None),
        (b"From('127.0.0.1', 5) hi", None),
        (b"From(127.0.0.1, 5): hi", None),
        (b"From('127.0.0.1' 5): hi", None),
        (b"From('127.0.0.1', port): hi", None),
        (b"From('127.0.0.1', 123456): hi", None),
        (b"From('127.0.0.1', -5): hi", None),
        (b"From('127.0.0.1', 5, 0): hi", None),
        (b"From('', 5): hi", None),
        (b"From('a'b', 5): hi", None),
        (b"From ('127.0.0.1', 5): hi", None),
        (b"from('127.0.0.1', 5): hi", None),
        (b" From('127.0.0.1', 5): hi", None),
    ],
)
def test_the_client_reads_the_seed_servers_relays(data: bytes, expected: object) -> None:
    assert DatagramClientCodec().receive_datagram(data) == expected


@pytest.mark.parametrize(
    ("ip", "sender"),
    [
        ("127.0.0.1", "127.0.0.1:41406"),
        ("::1", "[::1]:41406"),
        ("fe80::1%eth0", "[fe80::1%eth0]:41406"),
    ],
)
def test_a_seed_relay_names_its_sender_by_address(ip: str, sender: str) -> None:
    assert Relayed(ip, 41406, "hi").sender == sender


@PROPERTY
@given(
    address=st.one_of(
        st.tuples(st.ip_addresses(v=4).map(str), st.integers(1, 65535)),
        st.tuples(
            st.ip_addresses(v=6).map(str),
            st.integers(1, 65535),
            st.integers(0, 2**20),
            st.integers(0, 9),
        ),
    ),
    text=st.text(max_size=300).filter(str.isprintable),
)
def test_what_the_seed_server_sends_the_client_reads_back(
    address: tuple[str, int] | tuple[str, int, int, int], text: str
) -> None:
    data = f"From{address}: {text}".encode()  # exactly the seed's f-string
    assert DatagramClientCodec().receive_datagram(data) == Relayed(address[0], address[1], text)


@PROPERTY
@given(data=st.binary(max_size=300))
def test_the_client_parser_never_raises(data: bytes) -> None:
    parsed = DatagramClientCodec().receive_datagram(data)
    if isinstance(parsed, ChatMessage):
        shown = parsed.sender_ip + parsed.sender + parsed.text
        assert all(ch == "\t" or unicodedata.category(ch) not in ("Cc", "Zl", "Zp") for ch in shown)


@PROPERTY
@given(
    sender=st.from_regex(r"[A-Za-z0-9_.-]{1,32}", fullmatch=True),
    text=st.text(max_size=300).filter(str.isprintable),
    port=st.integers(min_value=1, max_value=65535),
)
def test_what_the_server_encodes_the_client_reads_back(sender: str, text: str, port: int) -> None:
    data = DatagramServerCodec().send(chat(text, sender=sender, ip="192.168.1.20", port=port))
    assert DatagramClientCodec().receive_datagram(data) == incoming(
        "192.168.1.20", port, sender, text
    )


def test_the_client_learns_which_server_it_talks_to() -> None:
    codec = DatagramClientCodec()
    assert codec.server_is_triochat is None
    codec.receive_datagram(b"nonsense")
    assert codec.server_is_triochat is None  # only a datagram it understands tells
    assert codec.send(Say("hi")) == [b"MEShi"]
    codec.receive_datagram(b"INCOMING 1.2.3.4 5 bob: hi")
    assert codec.server_is_triochat is True
    assert codec.send(Say("hi")) == [b"MESSAGE hi"]
    codec.receive_datagram(b"From('1.2.3.4', 5): hi")
    assert codec.server_is_triochat is False  # a From(...) relay settles it for good
    codec.receive_datagram(b"NOTICE hi")
    assert codec.server_is_triochat is False


@PROPERTY
@given(
    name=st.one_of(st.just(""), st.from_regex(r"[A-Za-z0-9_.-]{1,32}", fullmatch=True)),
    text=st.text(min_size=1, max_size=300).filter(
        lambda t: t.strip() and t == t.removesuffix("\n").removesuffix("\r")
    ),
)
def test_round_trip_client_to_server(name: str, text: str) -> None:
    client = client_knowing(True)
    sent: list[Hello | Say | Leave] = [Hello(name), Say(text), Leave()]
    got = [SERVER.receive_datagram(data) for event in sent for data in client.send(event)]
    assert got == sent


@PROPERTY
@given(
    sender=st.from_regex(r"[A-Za-z0-9_.-]{1,32}", fullmatch=True),
    text=st.text(max_size=300).filter(str.isprintable),
    is_error=st.booleans(),
)
def test_round_trip_server_to_client(sender: str, text: str, is_error: bool) -> None:
    client = DatagramClientCodec()
    sent: list[ChatMessage | Notice | Farewell] = [
        incoming("10.0.0.1", 4242, sender, text),
        Notice(text, is_error=is_error),
        Farewell(text),
    ]
    assert [client.receive_datagram(SERVER.send(event)) for event in sent] == sent
