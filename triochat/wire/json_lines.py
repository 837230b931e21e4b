"""The JSON dialect (seed 003 and the menu client): a stream of JSON objects, newline or not.

Clients of this assignment write objects back to back with no separator, several may arrive in
one read and one may arrive in pieces, so framing does not rely on newlines: a small scanner
finds where each top-level object ends (tracking strings and escapes), then ``json`` parses it.
The server writes one object per line.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from triochat.events import (
    ChatMessage,
    ClientEvent,
    Dialect,
    FileAnnouncement,
    FileFailed,
    FileRequest,
    Goodbye,
    Hello,
    Leave,
    Notice,
    Say,
    ServerEvent,
    Welcome,
)
from triochat.wire.common import MAX_LINE_BYTES, NEED_DATA, NeedData, RemoteProtocolError

MAX_NESTING = 32
"""Deeper objects are refused: no chat object needs them, and ``json`` recursion is finite."""

_WHITESPACE = b" \t\r\n"
_STRUCTURAL = re.compile(rb'["{}\\]')
_IN_STRING = re.compile(rb'["\\]')


class JsonObjectFramer:
    """Finds complete top-level JSON objects in a byte stream and parses them.

    Garbage between objects (anything that does not start with ``{``) is skipped up to the next
    newline or ``{`` and reported once as a recoverable error. An object larger than
    ``max_object_bytes`` or nested deeper than ``MAX_NESTING`` cannot be skipped safely and is
    a fatal error.

    :attr:`framed` turns True (for good) at the first newline after a complete object: the
    peer ends its objects in newlines (our clients do; the seed's own send each object bare).
    """

    def __init__(self, max_object_bytes: int = MAX_LINE_BYTES) -> None:
        self._buffer = bytearray()
        self._objects_seen = False
        self.framed = False
        self._max_object_bytes = max_object_bytes
        # Scanner state for the object at the start of the buffer, kept across reads so each
        # byte is scanned once however the object is split.
        self._pos = 0
        self._depth = 0
        self._in_string = False
        self._skipping_garbage = False

    def receive_data(self, data: bytes | bytearray) -> None:
        """Add bytes from the peer."""
        self._buffer += data

    def next_object(self) -> dict[str, Any] | NeedData:
        """The next complete object, or ``NEED_DATA``.

        Raises:
            RemoteProtocolError: recoverable for garbage or an object that is not valid JSON
                (already skipped); fatal for an over-large or over-deep object.
        """
        while True:
            at_object_start = self._depth == 0 and not self._in_string
            if at_object_start and not self._skip_to_object_start():
                return NEED_DATA
            end = self._scan()
            if end < 0:
                if len(self._buffer) > self._max_object_bytes:
                    raise RemoteProtocolError(
                        f"JSON object too large (limit {self._max_object_bytes} bytes)",
                        recoverable=False,
                    )
                return NEED_DATA
            if end > self._max_object_bytes:
                raise RemoteProtocolError(
                    f"JSON object too large (limit {self._max_object_bytes} bytes)",
                    recoverable=False,
                )
            raw = bytes(self._buffer[:end])
            del self._buffer[:end]
            self._pos = 0
            self._objects_seen = True
            return _parse_object(raw)

    def _skip_to_object_start(self) -> bool:
        """Drop white space and garbage before the next ``{``; False if none is buffered."""
        buffer = self._buffer
        start = 0
        length = len(buffer)
        while start < length:
            byte = buffer[start]
            if byte == 0x7B:  # "{"
                break
            if byte in _WHITESPACE:
                if byte == 0x0A:
                    self._skipping_garbage = False
                    self.framed = self.framed or self._objects_seen
                start += 1
                continue
            # Garbage: report it once, then skip to the next newline or "{".
            was_skipping = self._skipping_garbage
            self._skipping_garbage = True
            stop = _find_any(buffer, start, (b"\n", b"{"))
            del buffer[: stop if stop >= 0 else length]
            if not was_skipping:
                raise RemoteProtocolError("Malformed JSON: expected an object starting with '{'")
            return self._skip_to_object_start()
        del buffer[:start]
        self._pos = 0
        if buffer:
            # Only an object start ends a garbage run (or a newline, above): a run that spans
            # several reads is still reported once.
            self._skipping_garbage = False
        return bool(buffer)

    def _scan(self) -> int:
        """Advance over the buffered object; its end offset once complete, else -1."""
        buffer = self._buffer
        pos = self._pos
        while True:
            if self._in_string:
                match = _IN_STRING.search(buffer, pos)
                if match is None:
                    self._pos = len(buffer)
                    return -1
                pos = match.start()
                if buffer[pos] == 0x5C:  # backslash: skip the escaped byte
                    if pos + 1 >= len(buffer):
                        self._pos = pos
                        return -1
                    pos += 2
                    continue
                self._in_string = False
                pos += 1
                continue
            match = _STRUCTURAL.search(buffer, pos)
            if match is None:
                self._pos = len(buffer)
                return -1
            pos = match.start()
            byte = buffer[pos]
            pos += 1
            if byte == 0x22:  # '"'
                self._in_string = True
            elif byte == 0x7B:  # "{"
                self._depth += 1
                if self._depth > MAX_NESTING:
                    raise RemoteProtocolError(
                        f"JSON nested too deeply (limit {MAX_NESTING})", recoverable=False
                    )
            elif byte == 0x7D:  # "}"
                self._depth -= 1
                if self._depth == 0:
                    return pos
            # A backslash outside a string is invalid JSON; json.loads will say so.


def _find_any(buffer: bytearray, start: int, needles: tuple[bytes, ...]) -> int:
    found = [index for needle in needles if (index := buffer.find(needle, start)) >= 0]
    return min(found) if found else -1


def _parse_object(raw: bytes) -> dict[str, Any]:
    try:
        value = json.loads(raw)
    except UnicodeDecodeError as error:
        raise RemoteProtocolError("Malformed JSON: not valid UTF-8") from error
    except (ValueError, RecursionError) as error:
        raise RemoteProtocolError(f"Malformed JSON: {error}") from error
    if not isinstance(value, dict):
        raise RemoteProtocolError("Malformed JSON: expected an object")
    return value


def _text_field(obj: dict[str, Any], key: str, *, required: bool = True) -> str | None:
    value = obj.get(key)
    if value is None:
        if required:
            raise RemoteProtocolError(f"Missing field '{key}' in {obj.get('type')!r} object")
        return None
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise RemoteProtocolError(f"Field '{key}' must be a string")
    return str(value)


def _timestamp_field(obj: dict[str, Any]) -> str | None:
    # "timstamp" is seed 003's own spelling in its nickname object.
    value = obj.get("timestamp", obj.get("timstamp"))
    if value is None or isinstance(value, bool) or not isinstance(value, str | int | float):
        return None
    return str(value)


def _port_field(obj: dict[str, Any], key: str) -> int | None:
    value = obj.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65535:
        raise RemoteProtocolError(f"Field '{key}' must be a port number 1-65535")
    return value


def object_to_event(obj: dict[str, Any]) -> ClientEvent:
    """Turn one client object into an event.

    Raises:
        RemoteProtocolError: (recoverable) unknown ``type`` or a missing/ill-typed field.
    """
    kind = obj.get("type")
    if kind == "message":
        text = _text_field(obj, "message")
        assert text is not None
        return Say(text, _text_field(obj, "nickname", required=False), _timestamp_field(obj))
    if kind == "nickname":
        name = _text_field(obj, "nickname")
        assert name is not None
        return Hello(
            name,
            _text_field(obj, "clientID", required=False),
            _timestamp_field(obj),
            _port_field(obj, "file_port"),
        )
    if kind == "disconnect":
        return Leave()
    if kind == "file_request":
        owner = _text_field(obj, "owner")
        filename = _text_field(obj, "filename")
        assert owner is not None and filename is not None
        return FileRequest(owner, filename)
    shown = repr(kind) if len(repr(kind)) <= 40 else repr(kind)[:37] + "..."
    raise RemoteProtocolError(f"Unknown message type {shown}")


def _dump(obj: dict[str, Any]) -> bytes:
    return (json.dumps(obj, ensure_ascii=False) + "\n").encode()


class JsonCodec:
    """Server side of the JSON dialect: client objects in, one server object per line out."""

    dialect = Dialect.JSON
    has_partial = False  # objects are framed by their braces, never by a quiet time

    def __init__(self, max_object_bytes: int = MAX_LINE_BYTES) -> None:
        self._framer = JsonObjectFramer(max_object_bytes)

    def receive_data(self, data: bytes | bytearray) -> None:
        """Add bytes from the peer."""
        self._framer.receive_data(data)

    def name_accepted(self) -> None:
        """Nothing to do: every object says what it is."""

    @property
    def framed(self) -> bool:
        """True once the peer has ended an object with a newline."""
        return self._framer.framed

    @staticmethod
    def unframe(data: bytes) -> bytes:
        """``data`` as one write to an unframed peer: unchanged (a newline after an object is
        harmless to ``json.loads``, and each object goes alone in its write)."""
        return data

    def next_event(self) -> ClientEvent | NeedData:
        """The next event, or ``NEED_DATA``.

        Raises:
            RemoteProtocolError: see :meth:`JsonObjectFramer.next_object` and
                :func:`object_to_event`.
        """
        obj = self._framer.next_object()
        if obj is NEED_DATA:
            return NEED_DATA
        return object_to_event(obj)

    def flush_idle(self) -> ClientEvent | None:
        """Never anything: a half-received object stays buffered until it completes."""
        return None

    def send(self, event: ServerEvent) -> bytes:
        """One JSON object and a newline for ``event``."""
        if isinstance(event, ChatMessage):
            return _dump(
                {
                    "type": "broadcast",
                    "nickname": event.sender,
                    "message": event.text,
                    "timestamp": event.timestamp,
                }
            )
        if isinstance(event, Notice):
            if event.is_error and not event.recoverable:
                # Seed-003 clients end their session on any "error": only for what refuses
                # a name or really ends the session.
                return _dump({"type": "error", "message": event.text})
            if event.is_error:
                return _dump({"type": "notice", "level": "error", "message": event.text})
            return _dump({"type": "notice", "message": event.text})
        if isinstance(event, Welcome):
            return _dump({"type": "welcome", "nickname": event.name, "members": event.members})
        if isinstance(event, Goodbye):
            # Not "disconnect": seed-003 clients take a server's "disconnect" for a shutdown.
            return _dump({"type": "bye", "nickname": event.name, "message": "Goodbye"})
        if isinstance(event, FileAnnouncement):
            if event.role == "fetch":
                kind, peer_key = "file_fetch", "requester"
            else:
                kind, peer_key = "file_incoming", "owner"
            return _dump(
                {
                    "type": kind,
                    "token": event.token,
                    "filename": event.filename,
                    peer_key: event.peer,
                }
            )
        if isinstance(event, FileFailed):
            return _dump(
                {
                    "type": "file_failed",
                    "token": event.token,
                    "filename": event.filename,
                    "owner": event.owner,
                    "message": event.reason,
                }
            )
        raise TypeError(f"cannot send {event!r}")


# --- client side ------------------------------------------------------------------------------

MENU_CLIENT_ID = "menu"
"""The client ID the menu client (seed 001) joins with: its command line names none."""


@dataclass(frozen=True, slots=True)
class Broadcast:
    """A chat message as a JSON client receives it."""

    nickname: str
    message: str
    timestamp: str | None


@dataclass(frozen=True, slots=True)
class ServerReply:
    """Any other object from the server: ``welcome``, ``error``, ``notice``, ``disconnect``."""

    type: str
    message: str
    fields: dict[str, Any]


class JsonClientCodec:
    """Client side of the JSON dialect: server objects in, client objects out."""

    def __init__(self, max_object_bytes: int = MAX_LINE_BYTES) -> None:
        self._framer = JsonObjectFramer(max_object_bytes)

    def receive_data(self, data: bytes | bytearray) -> None:
        """Add bytes from the server."""
        self._framer.receive_data(data)

    def next_event(self) -> Broadcast | ServerReply | NeedData:
        """The next server object as an event, or ``NEED_DATA``.

        Raises:
            RemoteProtocolError: the server sent something that is not a JSON object.
        """
        obj = self._framer.next_object()
        if obj is NEED_DATA:
            return NEED_DATA
        kind = str(obj.get("type", ""))
        if kind == "broadcast":
            return Broadcast(
                nickname=str(obj.get("nickname", "")),
                message=str(obj.get("message", "")),
                timestamp=_timestamp_field(obj),
            )
        return ServerReply(type=kind, message=str(obj.get("message", "")), fields=obj)

    @staticmethod
    def nickname(
        nickname: str, client_id: str, timestamp: str, file_port: int | None = None
    ) -> bytes:
        """The join request; ``file_port`` tells the server where this client serves files."""
        obj: dict[str, Any] = {
            "type": "nickname",
            "nickname": nickname,
            "clientID": client_id,
            "timestamp": timestamp,
        }
        if file_port is not None:
            obj["file_port"] = file_port
        return _dump(obj)

    @staticmethod
    def message(nickname: str, text: str, timestamp: str) -> bytes:
        """A chat message."""
        return _dump(
            {"type": "message", "nickname": nickname, "message": text, "timestamp": timestamp}
        )

    @staticmethod
    def disconnect(nickname: str, client_id: str) -> bytes:
        """The request to leave."""
        return _dump({"type": "disconnect", "nickname": nickname, "clientID": client_id})

    @staticmethod
    def file_request(owner: str, filename: str) -> bytes:
        """A request for ``filename`` from ``owner``."""
        return _dump({"type": "file_request", "owner": owner, "filename": filename})
