"""The datagram dialect (seed 002): one UDP datagram is one command or one event.

Client to server: ``GREETING [name]``, ``MESSAGE <text>``, ``LEAVE`` (our extension).
Server to client: ``INCOMING <ip> <port> <name>: <text>``, ``NOTICE <text>``, ``ERROR <text>``
(a greeting was refused) and ``BYE <reason>`` (our extension: the registration has ended, by
eviction, expiry or server shutdown).

Our client also talks to the seed's own server (SPEC §5), which registers any datagram that
starts with ``GRE``, takes a message's text as everything after its first three bytes, and
relays ``From('<ip>', <port>): <text>`` (Python's ``repr`` of its address tuple: IPv6 gives
``('::1', 5000, 0, 0)``), read here as :class:`Relayed`. So until the client codec knows it
talks to triochat (:attr:`DatagramClientCodec.server_is_triochat`), it sends a message as
``MES<text>`` (both servers show the text), cut to fit the seed's 1,024-byte reads; once it
knows, ``MESSAGE <text>``, which is exact for every text. What ``MES<text>`` cannot carry
intact to our server is a text that starts with ``sage`` (any case: our server reads
``MESSAGE``) or with a space (our server drops one separating space): such a message, sent
before any datagram came back (normally only the first one), loses those characters there.

Two codecs, one per role, one call per datagram: :class:`DatagramServerCodec` (client
datagrams in with ``receive_datagram``, one datagram out per ``send``) and
:class:`DatagramClientCodec` (server datagrams in, ``send`` gives a list: a long message takes
several datagrams). Both speak the events of :mod:`triochat.events`, plus what only this
dialect has: :class:`Garbage`, :class:`Farewell` and the seed server's :class:`Relayed`.

Parsing is liberal, as SPEC §5 asks, because the seed's own client sends ``GREETINGS`` and
``MES<text>``: anything starting with ``GRE`` greets, and a message's text follows ``MESSAGE``
or ``MES``. Keywords ignore case and one trailing line ending is dropped (netcat sends one).
Whatever is not a command comes back as :class:`Garbage` with a reason, never as an exception:
the endpoint reads datagrams from anybody on the Internet and only counts what it ignores.

Pure: no sockets, no trio, no clock. The time constants here are part of the protocol (how long
a registration lives, how often clients refresh it), shared by the server and the client.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum
from typing import ClassVar

from triochat.events import (
    ChatMessage,
    ClientEvent,
    Dialect,
    Goodbye,
    Hello,
    HistoryReplay,
    Leave,
    Notice,
    Presence,
    PrivateMessage,
    Renamed,
    Say,
    ServerEvent,
    Welcome,
)
from triochat.text import InvalidName, check_name, escape_controls
from triochat.wire.common import Role
from triochat.wire.features import feature_lines

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

SEED_RECEIVE_BYTES = 1024
"""The seed's own server reads each datagram with ``recvfrom(1024)`` and silently loses the
rest: until the client knows its server is triochat, no message datagram is longer."""

LEAVE_DATAGRAM = b"LEAVE"
"""Sent only to a server known to be triochat: the seed's server would relay it as ``VE``."""

_MESSAGE_PREFIX = b"MESSAGE "
_SEED_MESSAGE_PREFIX = b"MES"


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


@dataclass(frozen=True, slots=True)
class Farewell:
    """``BYE <reason>``: the server no longer counts the address as a member, and says why.

    Only the datagram dialect needs it: a TCP member learns the same from its connection
    closing.
    """

    reason: str


@dataclass(frozen=True, slots=True)
class Relayed:
    """A chat message relayed by the seed's own server, ``From('<ip>', <port>): <text>``.

    The seed's server knows no names: the sender is only its address.
    """

    ip: str
    port: int
    text: str

    @property
    def sender(self) -> str:
        """``<ip>:<port>``, or ``[<ip>]:<port>`` for an IPv6 address."""
        return f"[{self.ip}]:{self.port}" if ":" in self.ip else f"{self.ip}:{self.port}"


DatagramCommand = Hello | Say | Leave | Garbage
"""What the server role makes of a datagram from a client."""

ServerDatagram = ChatMessage | Notice | Farewell | Relayed
"""What the client role makes of a datagram it understands. Every kind but :class:`Relayed`
comes only from triochat; :class:`Relayed` comes only from the seed's server."""


def _parse_client_datagram(data: bytes) -> DatagramCommand:
    """See :meth:`DatagramServerCodec.receive_datagram`."""
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


class DatagramServerCodec:
    """The server role: client datagrams in, one datagram per server event out (no
    coalescing). Stateless: one codec serves every address."""

    dialect = Dialect.DATAGRAM
    role: ClassVar[Role] = Role.SERVER

    @staticmethod
    def receive_datagram(data: bytes) -> DatagramCommand:
        """What a datagram from a client asks for; never raises.

        Returns:
            :class:`~triochat.events.Hello` for a greeting (``name`` is ``""`` when the
            greeting carries no valid name: the server picks one), :class:`~triochat.events.Say`
            for a message with some text, :class:`~triochat.events.Leave` for ``LEAVE``,
            otherwise :class:`Garbage`.
        """
        return _parse_client_datagram(data)

    def send(self, event: ServerEvent | Farewell) -> bytes:
        """The datagram that shows ``event``; ``b""`` means send nothing."""
        if isinstance(event, ChatMessage):
            head = f"INCOMING {event.sender_ip} {event.sender_port} {event.sender}: "
            return _fit(head, event.text)
        if isinstance(event, Notice):
            # ERROR ends a client's session; an error it can go on from is only a NOTICE.
            fatal = event.is_error and not event.recoverable
            return _fit("ERROR " if fatal else "NOTICE ", event.text)
        if isinstance(event, Farewell):
            return _fit("BYE ", event.reason)
        if isinstance(event, Welcome | Goodbye):
            # Seed-002 clients know no acknowledgements: joining and leaving stay silent.
            return b""
        if isinstance(event, PrivateMessage):
            # The seed's client prints the text after the name: "(private)" shows there.
            head = f"INCOMING {event.sender_ip} {event.sender_port} {event.sender} (private): "
            return _fit(head, event.text)
        if isinstance(event, Renamed | Presence | HistoryReplay):
            # Datagram members cannot ask for these; one that is told anyway sees a notice.
            lines = feature_lines(event) or []
            return _fit("NOTICE ", " | ".join(line.removeprefix("*** ") for line in lines))
        raise TypeError(f"cannot send {event!r}")


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


def _message_datagrams(text: str, *, server_is_triochat: bool) -> list[bytes]:
    """The datagrams that carry the chat line ``text``: more than one when it is too long.

    To a server known to be triochat: ``MESSAGE <text>``, each at most
    :data:`MAX_DATAGRAM_BYTES`. Otherwise (the seed's server, or not known yet): ``MES<text>``,
    each at most :data:`SEED_RECEIVE_BYTES`, so that a server that strips exactly three bytes
    shows exactly the text (see the module docstring for the texts our server reads
    differently). Nothing is lost: a long line is split at character boundaries. A blank line,
    or a piece of one that is only whitespace, gives no datagram (our server ignores them, and
    the client would wait for their echo in vain).
    """
    if server_is_triochat:
        prefix, limit = _MESSAGE_PREFIX, MAX_DATAGRAM_BYTES
    else:
        prefix, limit = _SEED_MESSAGE_PREFIX, SEED_RECEIVE_BYTES
    room = limit - len(prefix)
    data = text.encode()
    out: list[bytes] = []
    while data:
        piece = _cut_utf8(data, room)
        if piece.decode().strip():
            out.append(prefix + piece)
        data = data[len(piece) :]
    return out


_SEED_RELAY = re.compile(
    r"From\('(?P<ip>[^'\\]+)', (?P<port>[0-9]+)(?:, [0-9]+, [0-9]+)?\): (?P<text>.*)",
    re.DOTALL,
)
"""``f"From{addr}: {text}"`` with ``addr`` an IPv4 ``(ip, port)`` or IPv6
``(ip, port, flowinfo, scope_id)`` tuple. Addresses contain no ``)``, so the first ``): ``
ends the address and whatever follows, more ``): `` included, is the text."""


class DatagramClientCodec:
    """The client role: server datagrams in, client events out as datagrams.

    It learns from what comes back which server it talks to (see the module docstring), and
    sends accordingly.

    Attributes:
        server_is_triochat: ``None`` until a datagram it understands came back; then whether
            it came from triochat (a ``From(...)`` relay settles it for good as ``False``).
    """

    dialect = Dialect.DATAGRAM
    role: ClassVar[Role] = Role.CLIENT

    def __init__(self) -> None:
        self.server_is_triochat: bool | None = None

    def receive_datagram(self, data: bytes) -> ServerDatagram | None:
        """What a datagram from the server says; ``None`` for anything unexpected. Never raises.

        Text is made safe to print (control characters escaped) whatever the server sent.
        """
        event = _parse_server_datagram(data)
        if isinstance(event, Relayed):
            self.server_is_triochat = False
        elif event is not None and self.server_is_triochat is None:
            self.server_is_triochat = True
        return event

    def send(self, event: ClientEvent) -> list[bytes]:
        """The datagrams for ``event``, in order; none when there is nothing to send.

        ``Hello`` is one ``GREETING`` (naming the sender unless the name is ``""``); ``Say``
        one or more message datagrams (none for a blank text: our server ignores it, and the
        client would wait for its echo in vain); ``Leave`` is ``LEAVE`` to a server known to be
        triochat and nothing otherwise (the seed's server would relay it as chat).

        Raises:
            TypeError: the datagram dialect has no command for ``event``.
        """
        if isinstance(event, Say):
            return _message_datagrams(
                event.text, server_is_triochat=self.server_is_triochat is True
            )
        if isinstance(event, Hello):
            return [f"GREETING {event.name}".encode() if event.name else b"GREETING"]
        if isinstance(event, Leave):
            return [LEAVE_DATAGRAM] if self.server_is_triochat else []
        raise TypeError(f"cannot send {event!r} in the datagram dialect")


def _parse_server_datagram(data: bytes) -> ServerDatagram | None:
    text = data.decode("utf-8", errors="replace").removesuffix("\n").removesuffix("\r")
    if text.startswith("From("):
        return _parse_seed_relay(text)
    keyword, _, rest = text.partition(" ")
    if keyword == "INCOMING":
        fields = rest.split(" ", 2)
        if len(fields) != 3 or not _is_port(fields[1]):
            return None
        ip, port, tail = fields
        name, separator, body = tail.partition(": ")
        if not separator or not name:
            return None
        return ChatMessage(
            sender=escape_controls(name),
            text=escape_controls(body),
            timestamp="",
            sender_ip=escape_controls(ip),
            sender_port=int(port),
        )
    if keyword in ("ERROR", "NOTICE"):
        return Notice(escape_controls(rest), is_error=keyword == "ERROR")
    if keyword == "BYE":
        return Farewell(escape_controls(rest))
    return None


def _parse_seed_relay(text: str) -> Relayed | None:
    match = _SEED_RELAY.fullmatch(text)
    if match is None or not _is_port(match["port"]):
        return None
    return Relayed(escape_controls(match["ip"]), int(match["port"]), escape_controls(match["text"]))


def _is_port(text: str) -> bool:
    return 0 < len(text) <= 5 and text.isascii() and text.isdecimal()


__all__ = [
    "LEAVE_DATAGRAM",
    "MAX_DATAGRAM_BYTES",
    "MAX_OUTGOING_BYTES",
    "REFRESH_INTERVAL",
    "REGISTRATION_TTL",
    "SEED_RECEIVE_BYTES",
    "DatagramClientCodec",
    "DatagramCommand",
    "DatagramServerCodec",
    "Farewell",
    "Garbage",
    "GarbageReason",
    "Relayed",
    "ServerDatagram",
]
