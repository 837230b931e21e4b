"""The datagram dialect (seed 002): one UDP datagram is one command or one event.

Client to server: ``GREETING [name]``, ``MESSAGE <text>``, ``LEAVE`` (our extension).
Server to client: ``INCOMING <ip> <port> <name>: <text>``, ``NOTICE <text>``, ``ERROR <text>``
(a greeting was refused) and ``BYE <reason>`` (our extension: the registration has ended, by
eviction, expiry or server shutdown).

Parsing is liberal, as SPEC §5 asks, because the seed's own client sends ``GREETINGS`` and
``MES<text>``: anything starting with ``GRE`` greets, and a message's text follows ``MESSAGE``
or ``MES``. Keywords ignore case and one trailing line ending is dropped (netcat sends one).
Whatever is not a command comes back as :class:`Garbage` with a reason, never as an exception:
the endpoint reads datagrams from anybody on the Internet and only counts what it ignores.

Pure: no sockets, no trio, no clock. The time constants here are part of the protocol (how long
a registration lives, how often clients refresh it), shared by the server and the client.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from triochat.events import (
    ChatMessage,
    Dialect,
    Goodbye,
    Hello,
    Leave,
    Notice,
    Say,
    ServerEvent,
    Welcome,
)
from triochat.text import InvalidName, check_name, escape_controls

MAX_DATAGRAM_BYTES = 8 * 1024
"""Largest datagram the server accepts; longer ones are ignored (and counted)."""

MAX_OUTGOING_BYTES = 65_000
"""Largest datagram the server sends: below UDP's 65,507-byte limit. TCP members may send
longer lines than a datagram can carry; such a message is cut and marked, never dropped."""

TRUNCATED_MARK = " [truncated]"

REGISTRATION_TTL = 300.0
"""Seconds a registration lives without any datagram from its address."""

REFRESH_INTERVAL = 60.0
"""Seconds between a client's refreshing ``GREETING``s: five tries before the TTL runs out."""

LEAVE_DATAGRAM = b"LEAVE"

_MESSAGE_PREFIX = "MESSAGE "


class GarbageReason(Enum):
    """Why a datagram is not a command."""

    TOO_LONG = "too long"
    NOT_UTF8 = "not UTF-8"
    EMPTY = "empty message"
    UNKNOWN = "unknown command"


@dataclass(frozen=True, slots=True)
class Garbage:
    """A datagram that is ignored, and why."""

    reason: GarbageReason


DatagramCommand = Hello | Say | Leave | Garbage


def parse_datagram(data: bytes) -> DatagramCommand:
    """What a datagram from a client asks for; never raises.

    Returns:
        :class:`~triochat.events.Hello` for a greeting (``name`` is ``""`` when the greeting
        carries no valid name: the server picks one), :class:`~triochat.events.Say` for a
        message with some text, :class:`~triochat.events.Leave` for ``LEAVE``, otherwise
        :class:`Garbage`.
    """
    if len(data) > MAX_DATAGRAM_BYTES:
        return Garbage(GarbageReason.TOO_LONG)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return Garbage(GarbageReason.NOT_UTF8)
    text = text.removesuffix("\n").removesuffix("\r")
    if text[:3].upper() == "GRE":
        return Hello(_greeting_name(text))
    if text[:3].upper() == "MES":
        # "MESSAGE hi", "MESSAGEhi" and the seed's "MEShi" all say "hi"; one separating
        # space is dropped ("MES hi" too), the rest of the text is kept as sent.
        body = text[7:] if text[:7].upper() == "MESSAGE" else text[3:]
        body = body.removeprefix(" ")
        if not body.strip():
            return Garbage(GarbageReason.EMPTY)
        return Say(body)
    if text.strip().upper() == "LEAVE":
        return Leave()
    return Garbage(GarbageReason.UNKNOWN)


def _greeting_name(text: str) -> str:
    """The name after the greeting word if it is a valid name, else ``""``."""
    words = text.split(None, 1)
    if len(words) < 2:
        return ""
    try:
        return check_name(words[1].strip())
    except InvalidName:
        return ""


class DatagramCodec:
    """Server events as datagram payloads; one event is one datagram (no coalescing)."""

    dialect = Dialect.DATAGRAM

    def encode(self, event: ServerEvent) -> bytes:
        """The datagram that shows ``event``; ``b""`` means send nothing."""
        if isinstance(event, ChatMessage):
            head = f"INCOMING {event.sender_ip} {event.sender_port} {event.sender}: "
            return _fit(head, event.text)
        if isinstance(event, Notice):
            return _fit("ERROR " if event.is_error else "NOTICE ", event.text)
        if isinstance(event, Welcome | Goodbye):
            # Seed-002 clients know no acknowledgements: joining and leaving stay silent.
            return b""
        raise TypeError(f"cannot encode {event!r}")

    def farewell(self, reason: str) -> bytes:
        """``BYE <reason>``: the server ended this address's registration."""
        return _fit("BYE ", reason)


def _fit(head: str, text: str) -> bytes:
    """``head + text`` encoded, with ``text`` cut (and marked) to fit one datagram."""
    data = (head + text).encode()
    if len(data) <= MAX_OUTGOING_BYTES:
        return data
    room = MAX_OUTGOING_BYTES - len(head.encode()) - len(TRUNCATED_MARK)
    return head.encode() + _cut_utf8(text.encode(), room) + TRUNCATED_MARK.encode()


def _cut_utf8(data: bytes, limit: int) -> bytes:
    """The longest prefix of UTF-8 ``data`` of at most ``limit`` bytes that ends on a char."""
    if len(data) <= limit:
        return data
    end = max(limit, 0)
    while end > 0 and data[end] & 0xC0 == 0x80:  # do not split a multi-byte character
        end -= 1
    return data[:end]


# --- the client's side ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Incoming:
    """A chat message relayed by the server: who sent it from where, and its text."""

    ip: str
    port: int
    name: str
    text: str


@dataclass(frozen=True, slots=True)
class ServerNote:
    """A ``NOTICE`` or ``ERROR`` datagram from the server."""

    text: str
    is_error: bool


@dataclass(frozen=True, slots=True)
class Farewell:
    """A ``BYE`` datagram: the server no longer counts us as a member, and says why."""

    reason: str


def greeting(name: str | None = None) -> bytes:
    """The ``GREETING`` datagram, naming the sender when ``name`` is given."""
    return f"GREETING {name}".encode() if name else b"GREETING"


def message_datagrams(text: str) -> list[bytes]:
    """``MESSAGE`` datagrams carrying ``text``: more than one when it is too long for one.

    Nothing is dropped: a long line is split at character boundaries into pieces the server
    accepts. A blank line gives no datagram (the server would ignore it).
    """
    if not text.strip():
        return []
    prefix = _MESSAGE_PREFIX.encode()
    room = MAX_DATAGRAM_BYTES - len(prefix)
    data = text.encode()
    out: list[bytes] = []
    while data:
        piece = _cut_utf8(data, room)
        out.append(prefix + piece)
        data = data[len(piece) :]
    return out


def parse_server_datagram(data: bytes) -> Incoming | ServerNote | Farewell | None:
    """What a datagram from the server says; ``None`` for anything unexpected. Never raises.

    Text is made safe to print (control characters escaped) whatever the server sent.
    """
    text = data.decode("utf-8", errors="replace").removesuffix("\n").removesuffix("\r")
    keyword, _, rest = text.partition(" ")
    if keyword == "INCOMING":
        fields = rest.split(" ", 2)
        if len(fields) != 3 or not _is_port(fields[1]):
            return None
        ip, port, tail = fields
        name, separator, body = tail.partition(": ")
        if not separator or not name:
            return None
        return Incoming(
            escape_controls(ip), int(port), escape_controls(name), escape_controls(body)
        )
    if keyword in ("ERROR", "NOTICE"):
        return ServerNote(escape_controls(rest), is_error=keyword == "ERROR")
    if keyword == "BYE":
        return Farewell(escape_controls(rest))
    return None


def _is_port(text: str) -> bool:
    return 0 < len(text) <= 5 and text.isascii() and text.isdecimal()


__all__ = [
    "LEAVE_DATAGRAM",
    "MAX_DATAGRAM_BYTES",
    "MAX_OUTGOING_BYTES",
    "REFRESH_INTERVAL",
    "REGISTRATION_TTL",
    "DatagramCodec",
    "DatagramCommand",
    "Farewell",
    "Garbage",
    "GarbageReason",
    "Incoming",
    "ServerNote",
    "greeting",
    "message_datagrams",
    "parse_datagram",
    "parse_server_datagram",
]
