"""The JSON dialect (seed 003 and the menu client): a stream of JSON objects, newline or not.

Clients of this assignment write objects back to back with no separator, several may arrive in
one read and one may arrive in pieces, so framing does not rely on newlines: a small scanner
finds where each top-level object ends (tracking strings and escapes), then ``json`` parses it.
The server writes one object per line.

Two codecs over the same events: :class:`JsonServerCodec` (client objects in, server objects
out) and :class:`JsonClientCodec` (server objects in, client objects out).
"""

from __future__ import annotations

import json
import re
from typing import Any, ClassVar

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
    TransferRole,
    Welcome,
)
from triochat.wire.common import MAX_LINE_BYTES, NEED_DATA, NeedData, RemoteProtocolError, Role
from triochat.wire.features import (
    client_feature_object,
    feature_object,
    feature_objects,
    feature_server_event,
    json_history_count,
)

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


def _optional_text(obj: dict[str, Any], key: str) -> str | None:
    """``key`` as text if it is a string or a number; ``None`` otherwise (never refused)."""
    value = obj.get(key)
    if value is None or isinstance(value, bool) or not isinstance(value, str | int | float):
        return None
    return str(value)


def _loose_text(obj: dict[str, Any], key: str) -> str:
    """``key`` as text however the server typed it: clients take what they are given."""
    return str(obj.get(key, ""))


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
            json_history_count(obj, "history"),
        )
    if kind == "disconnect":
        # Leaving never fails over what the object says about who leaves.
        return Leave(_optional_text(obj, "nickname"), _optional_text(obj, "clientID"))
    if kind == "file_request":
        owner = _text_field(obj, "owner")
        filename = _text_field(obj, "filename")
        assert owner is not None and filename is not None
        return FileRequest(owner, filename)
    event = feature_object(obj)
    if event is not None:
        return event
    shown = repr(kind) if len(repr(kind)) <= 40 else repr(kind)[:37] + "..."
    raise RemoteProtocolError(f"Unknown message type {shown}")


def object_to_server_event(obj: dict[str, Any]) -> ServerEvent | None:
    """Turn one server object into an event; ``None`` for a type a client does not know.

    The §11 types (``private``, ``rename``, ``members``, ``history``) are read by
    :func:`~triochat.wire.features.feature_server_event`.

    Liberal: seed 003's server and other servers of the assignment are read too, so a missing
    field is empty rather than an error, and unknown types are ignored (as the seed's clients
    do).
    """
    kind = obj.get("type")
    if kind == "broadcast":
        return ChatMessage(
            sender=_loose_text(obj, "nickname"),
            text=_loose_text(obj, "message"),
            timestamp=_timestamp_field(obj) or "",
        )
    if kind == "error":
        return Notice(_loose_text(obj, "message"), is_error=True)
    if kind == "notice":
        is_error = obj.get("level") == "error"
        return Notice(_loose_text(obj, "message"), is_error=is_error, recoverable=is_error)
    if kind == "welcome":
        members = obj.get("members")
        listed = tuple(str(m) for m in members) if isinstance(members, list) else ()
        return Welcome(_loose_text(obj, "nickname"), listed)
    if kind in ("bye", "disconnect"):
        # "bye" is triochat's acknowledgement of a leave; a seed server answers "disconnect".
        return Goodbye(_loose_text(obj, "nickname"))
    if kind in ("file_fetch", "file_incoming"):
        fetch = kind == "file_fetch"
        return FileAnnouncement(
            TransferRole.FETCH if fetch else TransferRole.DELIVER,
            _loose_text(obj, "token"),
            _loose_text(obj, "filename"),
            _loose_text(obj, "requester" if fetch else "owner"),
        )
    if kind == "file_failed":
        return FileFailed(
            _loose_text(obj, "token"),
            _loose_text(obj, "filename"),
            _loose_text(obj, "owner"),
            _loose_text(obj, "message"),
        )
    return feature_server_event(obj)


def _dump(obj: dict[str, Any]) -> bytes:
    return (json.dumps(obj, ensure_ascii=False) + "\n").encode()


def _with_optional(obj: dict[str, Any], **fields: object) -> dict[str, Any]:
    """``obj`` with each of ``fields`` that is not ``None``, in order."""
    obj.update((key, value) for key, value in fields.items() if value is not None)
    return obj


class _JsonStream:
    """What both roles share: the object framer."""

    dialect = Dialect.JSON

    def __init__(self, max_object_bytes: int = MAX_LINE_BYTES) -> None:
        self._framer = JsonObjectFramer(max_object_bytes)

    def receive_data(self, data: bytes | bytearray) -> None:
        """Add bytes from the peer."""
        self._framer.receive_data(data)

    @property
    def framed(self) -> bool:
        """True once the peer has ended an object with a newline."""
        return self._framer.framed


class JsonServerCodec(_JsonStream):
    """The server role: client objects in, one server object per line out."""

    role: ClassVar[Role] = Role.SERVER
    has_partial = False  # objects are framed by their braces, never by a quiet time

    def name_accepted(self) -> None:
        """Nothing to do: every object says what it is."""

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
            if event.role is TransferRole.FETCH:
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
        objects = feature_objects(event)
        if objects is not None:
            return b"".join(_dump(obj) for obj in objects)
        raise TypeError(f"cannot send {event!r}")


MENU_CLIENT_ID = "menu"
"""The client ID the menu client (seed 001) joins with: its command line names none."""


class JsonClientCodec(_JsonStream):
    """The client role: server objects in, one client object per line out."""

    role: ClassVar[Role] = Role.CLIENT

    def next_event(self) -> ServerEvent | NeedData:
        """The next server object as an event, or ``NEED_DATA``; unknown types are skipped.

        Raises:
            RemoteProtocolError: the server sent something that is not a JSON object.
        """
        while True:
            obj = self._framer.next_object()
            if obj is NEED_DATA:
                return NEED_DATA
            event = object_to_server_event(obj)
            if event is not None:
                return event

    def send(self, event: ClientEvent) -> bytes:
        """One JSON object and a newline for ``event``; fields that are ``None`` are left out.

        Raises:
            TypeError: the JSON dialect has no object for ``event`` (``Who``).
        """
        if isinstance(event, Say):
            return _dump(
                _with_optional(
                    {"type": "message"},
                    nickname=event.nickname,
                    message=event.text,
                    timestamp=event.timestamp,
                )
            )
        if isinstance(event, Hello):
            return _dump(
                _with_optional(
                    {"type": "nickname", "nickname": event.name},
                    clientID=event.client_id,
                    timestamp=event.timestamp,
                    file_port=event.file_port,
                    history=event.history,
                )
            )
        if isinstance(event, Leave):
            return _dump(
                _with_optional(
                    {"type": "disconnect"}, nickname=event.nickname, clientID=event.client_id
                )
            )
        if isinstance(event, FileRequest):
            return _dump({"type": "file_request", "owner": event.owner, "filename": event.filename})
        feature = client_feature_object(event)
        if feature is not None:
            return _dump(feature)
        raise TypeError(f"cannot send {event!r} in the JSON dialect")
