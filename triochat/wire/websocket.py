"""The WebSocket dialect (the chat page, SPEC §9): each text message from the page is one
line; each server event is one text message, a chat message as the line dialect's line and
everything else a JSON object.

Both roles have the codecs' one shape (``receive_data``, ``next_event``, ``send(event) ->
bytes``); ``wsproto`` (python-hyper, sans-IO, pure Python) does the framing, masking, UTF-8
checks, control frames and the closing handshake. What is ours:

- **Inbound, the line dialect.** A text message from the page is a line typed in its one text
  box, so it goes through the line dialect's server codec: the first is the name, then
  messages and the same slash commands as netcat's (``/who``, ``/quit``, ``//text``, and any
  the line dialect learns). A message longer than ``max_message_bytes`` is dropped (a
  recoverable error), and the rest of it skipped as it arrives: memory stays bounded.
- **Outbound**: a chat message as the line dialect's ``sender: text`` (the frame every
  member gets for every message, kept as short as a line member's); everything else a JSON
  object (the JSON dialect's types, plus ``join`` and ``leave``), one per frame. Server
  frames are not masked and no extension is negotiated, so a frame's bytes are the same for
  every member: a message to a thousand browsers is framed once, like any other dialect's
  (``room.Delivery``), and nothing in :meth:`WebSocketServerCodec.send` for a shared event
  touches the connection's state.
- **Replies the protocol owes** (the 101 response, pongs, the answer to a close) collect in
  the codec; the server writes them through the member's outbox
  (:meth:`WebSocketServerCodec.take_replies`). Keep-alive pings are :meth:`ping`.
"""

from __future__ import annotations

import json
from collections import deque
from dataclasses import replace
from typing import Any, ClassVar

from wsproto import ConnectionType, WSConnection
from wsproto.connection import Connection, ConnectionState
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Event,
    Message,
    Ping,
    Pong,
    RejectConnection,
    Request,
    TextMessage,
)
from wsproto.frame_protocol import CloseReason, FrameProtocol
from wsproto.utilities import LocalProtocolError
from wsproto.utilities import RemoteProtocolError as WsRemoteProtocolError

from triochat.events import (
    ChatMessage,
    ClientEvent,
    Dialect,
    FileAnnouncement,
    FileFailed,
    Goodbye,
    Hello,
    HistoryReplay,
    Leave,
    MemberJoined,
    MemberLeft,
    Notice,
    PrivateMessage,
    Say,
    ServerEvent,
    Welcome,
    Who,
)
from triochat.wire.common import MAX_LINE_BYTES, NEED_DATA, NeedData, RemoteProtocolError, Role
from triochat.wire.http import WebSocketUpgrade
from triochat.wire.json_lines import JsonServerCodec
from triochat.wire.lines import LineServerCodec

PAGE_HISTORY = 100
"""Recent messages the page asks for when it joins (the room keeps 100 by default)."""

WEBSOCKET_PATH = "/ws"
"""Where the page opens its WebSocket."""

MAX_SERVER_MESSAGE_BYTES = 1024 * 1024
"""Largest message the client role takes from the server (as ``MAX_SERVER_LINE_BYTES``)."""

# Server frames are unmasked and carry no extension, so one serializer frames every shared
# event; with fin=True (always, here) it keeps no state between calls.
_FRAMES = FrameProtocol(client=False, extensions=[])


_BROKEN = frozenset(
    {
        CloseReason.PROTOCOL_ERROR,
        CloseReason.UNSUPPORTED_DATA,
        CloseReason.INVALID_FRAME_PAYLOAD_DATA,
        CloseReason.MESSAGE_TOO_BIG,
    }
)
"""Close codes wsproto gives a peer's frames it cannot parse."""


def _text_frame(obj: dict[str, Any]) -> bytes:
    return bytes(_FRAMES.send_data(json.dumps(obj, ensure_ascii=False, separators=(",", ":"))))


def _message_frame(message: ChatMessage) -> bytes:
    """A chat message: the line dialect's own line, ``sender: text\\n``, in a text frame; as
    a ``broadcast`` object only when the message carries a time of its own.

    The one frame every member gets for every message, so its bytes are most of what fan-out
    costs: as the line it is one frame header longer than a line member's delivery, where a
    ``broadcast`` object with its time was 70 % longer and measurably dearer per delivery.
    It cannot be mistaken for an object: names never start with ``{`` and never hold ``:``
    (SPEC §2), so the first ``": "`` ends the name. Without a time of its own (the room's
    receive time: ``timestamp`` equals ``display_time``) the page shows when it arrived; a
    sender's own timestamp in another form (ISO 8601, epoch seconds) comes as ``time``.
    """
    if message.timestamp == message.display_time:
        return bytes(_FRAMES.send_data(f"{message.sender}: {message.text}\n"))
    return _text_frame(
        {
            "type": "broadcast",
            "nickname": message.sender,
            "message": message.text,
            "time": message.display_time,
        }
    )


class WebSocketServerCodec:
    """The server's side of one page's WebSocket, from the accepted upgrade on.

    Args:
        upgrade: the request that asked for the WebSocket (``wire/http.py``).
        max_message_bytes: the longest text message (one typed line) accepted.

    Raises:
        RemoteProtocolError: (fatal) the upgrade request is not a valid WebSocket handshake.
    """

    role: ClassVar[Role] = Role.SERVER
    dialect = Dialect.WEB
    framed = True
    """Every event is a frame of its own: the writer may join any number into one write."""
    has_partial = False
    """A message in pieces waits for its last frame; no quiet time ever ends one."""

    def __init__(self, upgrade: WebSocketUpgrade, max_message_bytes: int = MAX_LINE_BYTES) -> None:
        handshake = WSConnection(ConnectionType.SERVER)
        self._replies = bytearray()
        try:
            handshake.initiate_upgrade_connection(list(upgrade.headers), upgrade.target)
            request = next(handshake.events(), None)
            if not isinstance(request, Request):
                raise RemoteProtocolError("Bad WebSocket handshake", recoverable=False)
            # No extensions: permessage-deflate would make each member's frames its own.
            self._replies += handshake.send(AcceptConnection())
            # From here on only the frame-level connection: the handshake's HTTP state
            # (h11) would stay with every idle member for nothing.
            connection = handshake.connection
            if connection is None:
                raise RemoteProtocolError("Bad WebSocket handshake", recoverable=False)
            self._ws: Connection = connection
            self._ws.receive_data(upgrade.trailing)
        except (WsRemoteProtocolError, LocalProtocolError) as error:
            raise RemoteProtocolError(
                f"Bad WebSocket handshake: {error}", recoverable=False
            ) from None
        self._lines = LineServerCodec(max_message_bytes)
        self._pending: deque[Event] = deque()
        self._fresh = True  # bytes fed since wsproto's events were last taken
        self._max_message_bytes = max_message_bytes
        self._parts: list[str] = []
        self._size = 0
        self._skipping = False
        self._joined = False

    # --- inbound ------------------------------------------------------------------------------

    def receive_data(self, data: bytes | bytearray) -> None:
        """Add bytes from the peer (ignored once the connection is closed)."""
        if self._ws.state is not ConnectionState.CLOSED:
            self._ws.receive_data(bytes(data))
            self._fresh = True

    def next_event(self) -> ClientEvent | NeedData:
        """The next event, or ``NEED_DATA``; a close from the peer is a ``Leave``.

        Raises:
            RemoteProtocolError: recoverable for an over-long or binary message (skipped) and
                what the line dialect refuses; fatal for a broken frame.
        """
        pending = self._pending
        while True:
            event = self._lines.next_event()
            if isinstance(event, Hello):
                # The page shows the room's recent messages on joining (SPEC §11).
                return replace(event, history=PAGE_HISTORY)
            if event is not NEED_DATA:
                return event
            if not pending:
                if not self._fresh:
                    return NEED_DATA
                # wsproto's events() builds a stack of generators on every call: take all
                # that one read holds in one call, not one call per message (a tenth of the
                # cost of a message from a page).
                self._fresh = False
                pending.extend(self._ws.events())
                if not pending:
                    return NEED_DATA
            ws_event = pending.popleft()
            if isinstance(ws_event, TextMessage):
                self._text(ws_event)
            elif isinstance(ws_event, BytesMessage):
                if ws_event.message_finished:
                    raise RemoteProtocolError("Binary messages are not chat; send text")
            elif isinstance(ws_event, Ping):
                self._replies += self._ws.send(ws_event.response())
            elif isinstance(ws_event, CloseConnection):
                # The answering close frame goes with the Goodbye (or the last error) that
                # this leads to: see send().
                if ws_event.code in _BROKEN:
                    # wsproto reports a frame it could not parse as a close with its reason.
                    raise RemoteProtocolError(
                        f"WebSocket closed: {ws_event.reason or ws_event.code}",
                        recoverable=False,
                    )
                return Leave()
            # A Pong needs nothing: the reader counts any bytes as a sign of life.

    def _text(self, message: TextMessage) -> None:
        if not self._skipping:
            self._size += len(message.data)
            if self._size > self._max_message_bytes:
                self._parts.clear()
                self._skipping = True
            else:
                self._parts.append(message.data)
        if not message.message_finished:
            return
        self._size = 0
        if self._skipping:
            self._skipping = False
            raise RemoteProtocolError(
                f"Message too long (limit {self._max_message_bytes} bytes); it was dropped"
            )
        text = "".join(self._parts)
        self._parts.clear()
        # One message is one typed line; a pasted message with line breaks is several lines.
        self._lines.receive_data(text.encode() + b"\n")

    def flush_idle(self) -> ClientEvent | None:
        """Nothing: messages end with their last frame, never with a quiet time."""
        return None

    def name_accepted(self) -> None:
        """The room took the name: from now on every message is a message or a command."""
        self._lines.name_accepted()
        self._joined = True

    @staticmethod
    def unframe(data: bytes) -> bytes:
        """Frames are framed for every peer: ``data`` unchanged."""
        return data

    # --- outbound -----------------------------------------------------------------------------

    def take_replies(self) -> bytes:
        """Bytes the protocol owes the peer (the 101 response, pongs, a close), then none."""
        data = bytes(self._replies)
        self._replies.clear()
        return data

    def ping(self, payload: bytes = b"triochat") -> bytes:
        """A ping frame (keep-alive), or nothing once the connection is closing."""
        if self._ws.state is not ConnectionState.OPEN:
            return b""
        return self._ws.send(Ping(payload))

    @property
    def closed(self) -> bool:
        """True once a close frame has been received or sent."""
        return self._ws.state is not ConnectionState.OPEN

    def send(self, event: ServerEvent) -> bytes:
        """Bytes that show ``event`` to the page: a JSON text frame (and a close frame for
        ``Goodbye`` and a member's last error)."""
        if isinstance(event, ChatMessage):
            return _message_frame(event)
        if isinstance(event, MemberJoined):
            return _text_frame({"type": "join", "nickname": event.name})
        if isinstance(event, MemberLeft):
            return _text_frame({"type": "leave", "nickname": event.name})
        if isinstance(event, Notice):
            kind = "error" if event.is_error else "notice"
            data = _text_frame({"type": kind, "message": event.text})
            if event.is_error and not event.recoverable and self._joined:
                # After joining, only a member's last word is an unrecoverable error (evicted,
                # idle, shutdown): end the WebSocket properly, so the page knows it was cut off.
                data += self._close(CloseReason.GOING_AWAY, event.text)
            return data
        if isinstance(event, Welcome):
            return _text_frame(
                {"type": "welcome", "nickname": event.name, "members": list(event.members)}
            )
        if isinstance(event, Goodbye):
            data = _text_frame({"type": "bye", "nickname": event.name})
            return data + self._close(CloseReason.NORMAL_CLOSURE, "Goodbye")
        if isinstance(event, FileFailed):
            text = event.text
            return _text_frame({"type": "error", "message": text})
        if isinstance(event, FileAnnouncement):
            return b""  # the page has no file port
        if isinstance(event, HistoryReplay):
            # One frame per message (a whole history in one frame could pass the page's
            # limit), with the time the page shows.
            return b"".join(
                _text_frame(
                    {
                        "type": "history",
                        "nickname": message.sender,
                        "message": message.text,
                        "time": message.display_time,
                    }
                )
                for message in event.messages
            )
        if isinstance(event, PrivateMessage):
            return _text_frame(
                {
                    "type": "private",
                    "nickname": event.sender,
                    "to": event.recipient,
                    "message": event.text,
                    "time": event.display_time,
                }
            )
        # Anything else (renames, /who's presence) is shown as the JSON dialect shows it, one
        # object per frame.
        lines = JsonServerCodec().send(event).splitlines()
        return b"".join(bytes(_FRAMES.send_data(line.decode())) for line in lines if line)

    def _close(self, code: int, reason: str) -> bytes:
        if self._ws.state not in (ConnectionState.OPEN, ConnectionState.REMOTE_CLOSING):
            return b""
        # A close frame's reason is at most 123 bytes; wsproto cuts it at a character.
        return self._ws.send(CloseConnection(code=code, reason=reason))


def _server_event(obj: dict[str, Any]) -> ServerEvent:
    """The event a JSON object from the server shows (client role)."""
    kind = obj.get("type")
    text = str(obj.get("message", ""))
    name = str(obj.get("nickname", ""))
    if kind == "broadcast":
        return ChatMessage(
            sender=name,
            text=text,
            timestamp=str(obj.get("time", "")),
            display_time=str(obj.get("time", "")),
            sender_ip="",
            sender_port=0,
        )
    if kind == "welcome":
        members = obj.get("members")
        names = tuple(str(m) for m in members) if isinstance(members, list) else ()
        return Welcome(name, names)
    if kind == "join":
        return MemberJoined(name)
    if kind == "leave":
        return MemberLeft(name)
    if kind == "bye":
        return Goodbye(name)
    if kind == "error":
        return Notice(text, is_error=True)
    if kind == "notice":
        return Notice(text)
    return Notice(json.dumps(obj, ensure_ascii=False))


def _frame_event(text: str) -> ServerEvent:
    """The event one text frame from the server shows (client role)."""
    if not text.startswith("{"):
        # A chat message as the line dialect writes it (see _message_frame).
        sender, _, message = text.removesuffix("\n").partition(": ")
        return ChatMessage(sender, message, "", "", "", 0)
    try:
        obj = json.loads(text)
    except ValueError:
        return Notice(text)
    return _server_event(obj) if isinstance(obj, dict) else Notice(text)


class WebSocketClientCodec:
    """The page's side of the dialect, for tests, tools and the benchmark's browser members.

    :meth:`start` gives the upgrade request; then ``send`` frames (masked, as a client must)
    and ``next_event`` gives the server's events.

    Args:
        host: the ``Host`` header (``127.0.0.1:<port>``).
        target: the WebSocket's path.
        max_message_bytes: the longest message taken from the server.
    """

    role: ClassVar[Role] = Role.CLIENT

    def __init__(
        self,
        host: str,
        target: str = WEBSOCKET_PATH,
        max_message_bytes: int = MAX_SERVER_MESSAGE_BYTES,
    ) -> None:
        self._ws = WSConnection(ConnectionType.CLIENT)
        self._request = self._ws.send(Request(host=host, target=target))
        self._replies = bytearray()
        self._parts: list[str] = []
        self._size = 0
        self._max_message_bytes = max_message_bytes
        self.open = False
        """True once the server accepted the upgrade."""

    def start(self) -> bytes:
        """The upgrade request, to be written first."""
        return self._request

    def receive_data(self, data: bytes | bytearray) -> None:
        """Add bytes from the server (ignored once the connection is closed)."""
        if self._ws.state is not ConnectionState.CLOSED:
            self._ws.receive_data(bytes(data))

    def next_event(self) -> ServerEvent | NeedData:
        """The next server event, or ``NEED_DATA``; the server's close is a ``Goodbye``.

        Raises:
            RemoteProtocolError: (fatal) the server refused the upgrade or broke the protocol.
        """
        while True:
            try:
                ws_event = next(self._ws.events(), None)
            except WsRemoteProtocolError as error:
                raise RemoteProtocolError(
                    f"Bad WebSocket reply: {error}", recoverable=False
                ) from None
            if ws_event is None:
                return NEED_DATA
            if isinstance(ws_event, AcceptConnection):
                self.open = True
            elif isinstance(ws_event, RejectConnection):
                raise RemoteProtocolError(
                    f"WebSocket refused ({ws_event.status_code})", recoverable=False
                )
            elif isinstance(ws_event, TextMessage):
                self._size += len(ws_event.data)
                if self._size > self._max_message_bytes:
                    raise RemoteProtocolError("Message from the server too long", recoverable=False)
                self._parts.append(ws_event.data)
                if ws_event.message_finished:
                    text = "".join(self._parts)
                    self._parts.clear()
                    self._size = 0
                    return _frame_event(text)
            elif isinstance(ws_event, Ping):
                self._replies += self._ws.send(ws_event.response())
            elif isinstance(ws_event, CloseConnection):
                if self._ws.state is ConnectionState.REMOTE_CLOSING:
                    self._replies += self._ws.send(ws_event.response())
                return Goodbye(ws_event.reason or "")
            elif isinstance(ws_event, Message | Pong):
                continue

    def take_replies(self) -> bytes:
        """Bytes the protocol owes the server (pongs, the answer to a close), then none."""
        data = bytes(self._replies)
        self._replies.clear()
        return data

    def send(self, event: ClientEvent) -> bytes:
        """The bytes of ``event``: a text frame with the line the page would send.

        Raises:
            TypeError: the event has no form in this dialect (``FileRequest``).
        """
        if isinstance(event, Leave):
            if self._ws.state is not ConnectionState.OPEN:
                return b""
            return self._ws.send(CloseConnection(code=CloseReason.NORMAL_CLOSURE))
        if isinstance(event, Hello):
            line = event.name
        elif isinstance(event, Say):
            line = "/" + event.text if event.text.startswith("/") else event.text
        elif isinstance(event, Who):
            line = "/who"
        else:
            raise TypeError(f"cannot send {event!r} over the WebSocket dialect")
        return self._ws.send(TextMessage(data=line))
