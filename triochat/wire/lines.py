"""Line framing and the two line dialects: named lines (seed 000) and port-tagged (seed 004).

Each dialect has a server role (:class:`LineServerCodec`, :class:`PortTaggedServerCodec`) and a
client role (:class:`LineClientCodec`, :class:`PortTaggedClientCodec`). The client roles are
thin on purpose: what the server sends in these dialects is text for people, shown as it comes
(our clients also talk to the seeds' servers, whose lines follow no grammar), so they decode
:class:`ServerText`, not events; and they send the seeds' wire, a message or a name alone in
its write without a newline (SPEC §3).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from triochat.events import (
    ChatMessage,
    ClientEvent,
    Dialect,
    FileAnnouncement,
    FileFailed,
    Goodbye,
    Hello,
    Leave,
    Notice,
    Say,
    ServerEvent,
    Welcome,
    Who,
)
from triochat.wire.common import MAX_LINE_BYTES, NEED_DATA, NeedData, RemoteProtocolError, Role
from triochat.wire.features import LINE_COMMANDS, feature_command, feature_lines


class LineFramer:
    """Splits a byte stream into text lines, with a bound on line length.

    ``\\n`` ends a line and a ``\\r`` before it is dropped. Invalid UTF-8 is replaced (U+FFFD)
    rather than refused, so a mis-encoded byte never costs the user the whole line. A line
    longer than ``max_line_bytes`` is refused once with a recoverable error and the rest of it
    is skipped up to its newline, so the buffer never grows past the limit.

    ``flush_partial()`` hands over bytes that sit unterminated: the session calls it after a
    short quiet time, which is how peers that ``send()`` a message without a newline work.
    """

    def __init__(self, max_line_bytes: int = MAX_LINE_BYTES) -> None:
        self._buffer = bytearray()
        self._scanned = 0  # bytes of _buffer already known to hold no newline
        self._max_line_bytes = max_line_bytes
        self._skipping_long_line = False
        self.framed = False

    def receive_data(self, data: bytes | bytearray) -> None:
        """Add bytes from the peer."""
        self._buffer += data

    @property
    def has_partial(self) -> bool:
        """True when unterminated bytes are buffered, or an over-long line is being skipped.

        Either way a quiet time ends the line (see :meth:`flush_partial`): a peer that never
        sends newlines must not lose every message after one over-long one.
        """
        return bool(self._buffer) or self._skipping_long_line

    def next_line(self) -> str | NeedData:
        """The next complete line without its line ending, or ``NEED_DATA``.

        Raises:
            RemoteProtocolError: (recoverable) a line exceeded the limit; it was skipped.
        """
        newline = self._buffer.find(b"\n", self._scanned)
        if newline < 0:
            self._scanned = len(self._buffer)
            if len(self._buffer) > self._max_line_bytes:
                del self._buffer[:]
                self._scanned = 0
                if not self._skipping_long_line:
                    self._skipping_long_line = True
                    raise RemoteProtocolError(
                        f"Line too long (limit {self._max_line_bytes} bytes); it was dropped"
                    )
            return NEED_DATA
        raw = bytes(self._buffer[:newline])
        del self._buffer[: newline + 1]
        self._scanned = 0
        self.framed = True
        if self._skipping_long_line:
            self._skipping_long_line = False
            return self.next_line()
        if len(raw) > self._max_line_bytes:
            raise RemoteProtocolError(
                f"Line too long (limit {self._max_line_bytes} bytes); it was dropped"
            )
        return _decode_line(raw)

    def flush_partial(self) -> str | None:
        """Take the unterminated bytes as one complete line (``None`` if there are none)."""
        if self._skipping_long_line:
            # The quiet time ends the over-long line too: drop its tail, start afresh.
            self._skipping_long_line = False
            del self._buffer[:]
            self._scanned = 0
            return None
        if not self._buffer:
            return None
        raw = bytes(self._buffer)
        del self._buffer[:]
        self._scanned = 0
        return _decode_line(raw)


def _decode_line(raw: bytes) -> str:
    if raw.endswith(b"\r"):
        raw = raw[:-1]
    return raw.decode("utf-8", errors="replace")


class _LineDialect:
    """What both line dialects' server roles share: framing, the idle flush, blank lines."""

    role: ClassVar[Role] = Role.SERVER

    def __init__(self, max_line_bytes: int = MAX_LINE_BYTES) -> None:
        self._framer = LineFramer(max_line_bytes)

    def receive_data(self, data: bytes | bytearray) -> None:
        """Add bytes from the peer."""
        self._framer.receive_data(data)

    @property
    def has_partial(self) -> bool:
        """True when an unterminated line is buffered."""
        return self._framer.has_partial

    @property
    def framed(self) -> bool:
        """True once the peer has ended a line with a newline (netcat, our framed clients)."""
        return self._framer.framed

    @staticmethod
    def unframe(data: bytes) -> bytes:
        """``data`` as one write to an unframed peer: without the line's newline.

        The seeds' own servers add none, and their clients add their own when they print.
        """
        return data[:-1] if data.endswith(b"\n") else data

    def next_event(self) -> ClientEvent | NeedData:
        """The next event, or ``NEED_DATA``; lines that carry nothing are skipped.

        Raises:
            RemoteProtocolError: (recoverable) an over-long line or an unknown command.
        """
        while True:
            line = self._framer.next_line()
            if line is NEED_DATA:
                return NEED_DATA
            event = self._line_to_event(line)
            if event is not None:
                return event

    def flush_idle(self) -> ClientEvent | None:
        """The event carried by bytes that sat unterminated for the quiet time, if any."""
        line = self._framer.flush_partial()
        return None if line is None else self._line_to_event(line)

    def _line_to_event(self, line: str) -> ClientEvent | None:
        raise NotImplementedError


class LineServerCodec(_LineDialect):
    """The named line dialect: first line is the name, then one message per line.

    Also netcat/telnet. Slash commands: ``/quit``, ``/who``, and the §11 ones of
    :func:`~triochat.wire.features.feature_command`; ``//text`` sends ``/text``.
    """

    dialect = Dialect.LINE

    def __init__(self, max_line_bytes: int = MAX_LINE_BYTES) -> None:
        super().__init__(max_line_bytes)
        self._awaiting_name = True

    def name_accepted(self) -> None:
        """The room took the name: from now on every line is a message or a command."""
        self._awaiting_name = False

    def _line_to_event(self, line: str) -> ClientEvent | None:
        if self._awaiting_name:
            return Hello(line.strip())
        if not line.strip():
            return None
        if line.startswith("//"):
            return Say(line[1:])
        if line.startswith("/"):
            command = line.strip().lower()
            if command == "/quit":
                return Leave()
            if command == "/who":
                return Who()
            event = feature_command(line)
            if event is not None:
                return event
            raise RemoteProtocolError(
                f"Unknown command {line.split()[0]} (commands: {LINE_COMMANDS}; "
                "start a line with // to send a '/')"
            )
        return Say(line)

    def send(self, event: ServerEvent) -> bytes:
        """Bytes that show ``event`` to a line member (empty when it shows nothing)."""
        if isinstance(event, ChatMessage):
            return f"{event.sender}: {event.text}\n".encode()
        if isinstance(event, Notice):
            return f"*** {event.text}\n".encode()
        if isinstance(event, FileFailed):
            return f"*** {event.text}\n".encode()
        if isinstance(event, Welcome | Goodbye | FileAnnouncement):
            # Seed-000 clients print every line they get: joining and leaving stay silent,
            # and line members have no file port to announce anything to.
            return b""
        lines = feature_lines(event)
        if lines is not None:
            return "".join(line + "\n" for line in lines).encode()
        raise TypeError(f"cannot send {event!r}")


class PortTaggedServerCodec(_LineDialect):
    """Seed 004: no name line; messages show as ``<port>:<message>``; ``exit`` is echoed."""

    dialect = Dialect.PORT_TAGGED

    def name_accepted(self) -> None:
        """Nothing to do: port-tagged members are named by their port."""

    def _line_to_event(self, line: str) -> ClientEvent | None:
        if line.strip() == "exit":
            return Leave()
        if not line.strip():
            return None
        return Say(line)

    def send(self, event: ServerEvent) -> bytes:
        """Bytes that show ``event`` to a port-tagged member."""
        if isinstance(event, ChatMessage):
            return f"{event.sender}:{event.text}\n".encode()
        if isinstance(event, Notice):
            return f"*** {event.text}\n".encode()
        if isinstance(event, Goodbye):
            return b"exit\n"
        if isinstance(event, FileFailed):
            return f"*** {event.text}\n".encode()
        if isinstance(event, Welcome | FileAnnouncement):
            return b""
        lines = feature_lines(event, tagged=True)
        if lines is not None:
            return "".join(line + "\n" for line in lines).encode()
        raise TypeError(f"cannot send {event!r}")


# --- the client roles -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ServerText:
    """One line from the server, without its line ending, to be shown as it is."""

    text: str


class _LineClient:
    """What both client roles share: the server's lines, an unterminated one after a quiet time.

    Args:
        max_line_bytes: the longest line taken from the server; longer ones are dropped with a
            recoverable error.
    """

    role: ClassVar[Role] = Role.CLIENT

    def __init__(self, max_line_bytes: int = MAX_LINE_BYTES) -> None:
        self._framer = LineFramer(max_line_bytes)

    def receive_data(self, data: bytes | bytearray) -> None:
        """Add bytes from the server."""
        self._framer.receive_data(data)

    @property
    def has_partial(self) -> bool:
        """True when an unterminated line is buffered (see :meth:`flush_idle`)."""
        return self._framer.has_partial

    def next_event(self) -> ServerText | NeedData:
        """The next complete line, or ``NEED_DATA``.

        Raises:
            RemoteProtocolError: (recoverable) a line exceeded the limit; it was dropped.
        """
        line = self._framer.next_line()
        return NEED_DATA if line is NEED_DATA else ServerText(line)

    def flush_idle(self) -> ServerText | None:
        """The unterminated bytes as one line, once the server has gone quiet (or closed).

        Servers that write to an unframed peer, the seeds' and ours, end nothing in a newline.
        """
        line = self._framer.flush_partial()
        return None if line is None else ServerText(line)


class LineClientCodec(_LineClient):
    """The client role of the named line dialect (seed 000).

    A ``Say`` goes as its text, so a text that starts with ``/`` is read by a triochat server
    as the command it spells: that is how a user of this client types commands, and the seed's
    server relays it as chat. The client leaves by closing the connection, never by a command
    a seed server would relay as chat: ``Leave`` has no bytes.
    """

    def send(self, event: ClientEvent) -> bytes:
        """The bytes of ``event``: one write of its own, without a newline (SPEC §3).

        Raises:
            TypeError: the event has no form this client sends (``Who``, ``FileRequest``).
        """
        if isinstance(event, Hello):
            return event.name.encode()
        if isinstance(event, Say):
            return event.text.encode()
        if isinstance(event, Leave):
            return b""
        raise TypeError(f"cannot send {event!r} in the line dialect")


class PortTaggedClientCodec(_LineClient):
    """The client role of the port-tagged dialect (seed 004): no name, ``exit`` to leave."""

    EXIT: ClassVar[str] = "exit"
    """What ``Leave`` sends and what the server echoes back before it closes."""

    def send(self, event: ClientEvent) -> bytes:
        """The bytes of ``event``: one write of its own, without a newline (SPEC §3).

        Raises:
            TypeError: the event has no form in this dialect (``Hello``, ``Who``,
                ``FileRequest``).
        """
        if isinstance(event, Say):
            return event.text.encode()
        if isinstance(event, Leave):
            return self.EXIT.encode()
        raise TypeError(f"cannot send {event!r} in the port-tagged dialect")
