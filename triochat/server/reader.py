"""Turning a byte stream into client events: dialect sniffing and the event reader."""

from __future__ import annotations

from typing import Protocol

import trio

from triochat.events import ClientEvent, Dialect, ServerEvent
from triochat.server.config import ServerConfig
from triochat.wire.common import NEED_DATA, NeedData
from triochat.wire.json_lines import JsonServerCodec
from triochat.wire.lines import LineServerCodec


class Reader(Protocol):
    """What a session reads events from: :class:`EventReader`, or the page's
    :class:`~triochat.server.web.WebSocketReader`."""

    async def next_event(self) -> ClientEvent | None: ...


class ServerCodec(Protocol):
    """What a session needs from a dialect's sans-IO codec."""

    @property
    def dialect(self) -> Dialect: ...

    @property
    def has_partial(self) -> bool: ...

    @property
    def framed(self) -> bool: ...

    def unframe(self, data: bytes) -> bytes: ...

    def receive_data(self, data: bytes | bytearray) -> None: ...

    def next_event(self) -> ClientEvent | NeedData: ...

    def flush_idle(self) -> ClientEvent | None: ...

    def name_accepted(self) -> None: ...

    def send(self, event: ServerEvent) -> bytes: ...


_LEADING_WHITESPACE = b" \t\r\n"


_HTTP_GET = b"GET "


async def sniff_codec(stream: trio.abc.Stream, limits: ServerConfig) -> ServerCodec | None:
    """Read until the first byte that is not white space and pick the dialect from it.

    A ``{`` means JSON (names may not start with ``{``); ``GET `` is HTTP (a name has no
    space), which serves the page or becomes the page's WebSocket (``server/web.py``);
    anything else is the line dialect. The bytes read are fed to the codec, so nothing is
    lost. ``None`` at end of stream, or when an HTTP request got its answer.
    """
    seen = bytearray()
    while True:
        data = await stream.receive_some(limits.receive_size)
        if not data:
            return None
        seen += data
        if limits.web and len(seen) < len(_HTTP_GET) and _HTTP_GET.startswith(seen):
            # "G", "GE" or "GET" so far: a browser's request goes on at once, while a seed
            # client named GET sends its name alone and waits for the room.
            with trio.move_on_after(limits.idle_flush):
                while len(seen) < len(_HTTP_GET) and _HTTP_GET.startswith(seen):
                    more = await stream.receive_some(limits.receive_size)
                    if not more:
                        break
                    seen += more
        if limits.web and seen.startswith(_HTTP_GET):
            # Imported on the first request: wsproto and h11 cost a server that never sees
            # a browser nothing at start-up (the seeds' checkers time it).
            from triochat.server.web import accept_http

            return await accept_http(stream, bytes(seen), limits)
        stripped = seen.lstrip(_LEADING_WHITESPACE)
        if stripped:
            codec: ServerCodec
            if stripped.startswith(b"{"):
                codec = JsonServerCodec(limits.max_line_bytes)
            else:
                codec = LineServerCodec(limits.max_line_bytes)
            codec.receive_data(bytes(seen))
            return codec
        if len(seen) > limits.max_line_bytes:
            # Only white space so far: it carries nothing, so keep the buffer bounded.
            del seen[:]


class EventReader:
    """Reads client events from ``stream`` through ``codec``.

    Owns ``receive_some`` on the stream: exactly one task may call :meth:`next_event`.
    """

    def __init__(
        self, stream: trio.abc.ReceiveStream, codec: ServerCodec, limits: ServerConfig
    ) -> None:
        self._stream = stream
        self._codec = codec
        self._limits = limits
        self._at_eof = False

    async def next_event(self) -> ClientEvent | None:
        """The next event, or ``None`` once the peer has closed its side.

        Raises:
            RemoteProtocolError: from the codec; recoverable ones leave the reader usable.
            trio.BrokenResourceError: the connection broke.
        """
        codec = self._codec
        while True:
            event = codec.next_event()
            if event is not NEED_DATA:
                return event
            if self._at_eof:
                return codec.flush_idle()
            if codec.has_partial and not codec.framed:
                # Unframed peers end a message by going quiet; framed ones by a newline, so a
                # line typed slowly or split by the network stays one message.
                with trio.move_on_after(self._limits.idle_flush):
                    data = await self._stream.receive_some(self._limits.receive_size)
                    self._feed(data)
                    continue
                idle_event = codec.flush_idle()
                if idle_event is not None:
                    return idle_event
            else:
                self._feed(await self._stream.receive_some(self._limits.receive_size))

    def _feed(self, data: bytes | bytearray) -> None:
        if data:
            self._codec.receive_data(data)
        else:
            self._at_eof = True
