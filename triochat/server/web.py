"""The chat port's web side: the page over HTTP, and the page's WebSocket as a member.

A connection whose first bytes are ``GET `` comes here from sniffing (``server/reader.py``).
:func:`accept_http` reads one request (``wire/http.py``): ``GET /`` gets the page, a WebSocket
upgrade on ``/ws`` gets the 101 response and a
:class:`~triochat.wire.websocket.WebSocketServerCodec`, and from then on the connection is a
member like any other: the same session, registration, commands and writer (fast path,
coalescing, the bounded outbox and eviction).

What the WebSocket adds is :class:`WebSocketReader`: the protocol's own replies (pongs, the
answer to a close) go through the member's outbox, so they never interleave with a frame the
writer is writing; and a peer silent for ``ws_ping_interval`` gets a ping, and one that still
sends nothing within ``ws_ping_timeout`` is cut off (a browser answers pings by itself).
"""

from __future__ import annotations

import contextlib
import logging
from functools import cache
from importlib import resources

import trio

from triochat.events import ClientEvent, Notice
from triochat.room import Delivery, Encoder, Outbox
from triochat.server.config import ServerConfig
from triochat.wire.common import NEED_DATA, RemoteProtocolError
from triochat.wire.http import HttpRequest, HttpServerCodec, WebSocketUpgrade, http_refusal
from triochat.wire.websocket import WEBSOCKET_PATH, WebSocketServerCodec

logger = logging.getLogger(__name__)

PAGE_RESOURCE = "chat.html"
"""The page, a file of this package (``triochat/server/chat.html``)."""


@cache
def page() -> bytes:
    """The chat page's bytes (read once)."""
    return resources.files("triochat.server").joinpath(PAGE_RESOURCE).read_bytes()


async def accept_http(
    stream: trio.abc.Stream, seen: bytes, config: ServerConfig
) -> WebSocketServerCodec | None:
    """Serve one HTTP request whose first bytes are ``seen``.

    Returns the WebSocket codec after a successful upgrade (the 101 response is written), or
    ``None`` when the request got its answer (the page, 404, ...) and the connection is done.
    The caller bounds the time this takes (the registration timeout).

    Raises:
        trio.BrokenResourceError: the connection broke.
    """
    http = HttpServerCodec()
    http.receive_data(seen)
    try:
        while (request := http.next_event()) is NEED_DATA:
            data = await stream.receive_some(config.receive_size)
            if not data:
                return None
            http.receive_data(data)
    except RemoteProtocolError as error:
        logger.debug("bad HTTP request: %s", error)
        await stream.send_all(http_refusal(400, "Bad request"))
        return None
    if isinstance(request, WebSocketUpgrade):
        path = request.target.split("?", 1)[0]
        if path != WEBSOCKET_PATH:
            await stream.send_all(http.respond(404, b"Not found\n"))
            return None
        try:
            codec = WebSocketServerCodec(request, config.max_line_bytes)
        except RemoteProtocolError as error:
            await stream.send_all(http.respond(400, f"{error}\n".encode()))
            return None
        await stream.send_all(codec.take_replies())
        return codec
    await stream.send_all(_answer(http, request))
    return None


def _answer(http: HttpServerCodec, request: HttpRequest) -> bytes:
    path = request.target.split("?", 1)[0]
    if request.method not in ("GET", "HEAD"):
        return http.respond(405, b"Only GET\n")
    head_only = request.method == "HEAD"
    if path in ("/", "/index.html"):
        return http.respond(200, page(), "text/html; charset=utf-8", head_only=head_only)
    return http.respond(404, b"Not found: the chat is at /\n", head_only=head_only)


class RawDelivery(Delivery):
    """Bytes the WebSocket protocol owes one member (a pong, a ping), queued like a delivery
    so that they leave between frames, in order."""

    __slots__ = ("data",)

    def __init__(self, data: bytes) -> None:
        super().__init__(Notice(""))
        self.data = data

    def encode_for(self, encoder: Encoder) -> bytes:
        """The bytes, already framed for this member."""
        return self.data


class WebSocketReader:
    """Reads a page's events (see the module docs); the same interface as ``EventReader``.

    Args:
        stream: the connection (after the upgrade).
        codec: the WebSocket codec.
        config: ping interval and timeout, receive size.
        outbox: the member's writer, for replies and pings.
    """

    def __init__(
        self,
        stream: trio.abc.ReceiveStream,
        codec: WebSocketServerCodec,
        config: ServerConfig,
        outbox: Outbox,
    ) -> None:
        self._stream = stream
        self._codec = codec
        self._config = config
        self._outbox = outbox
        self._at_eof = False

    async def next_event(self) -> ClientEvent | None:
        """The next event, or ``None`` once the peer has gone.

        Raises:
            RemoteProtocolError: from the codec, or (fatal) no answer to a ping in time.
            trio.BrokenResourceError: the connection broke.
        """
        codec = self._codec
        while True:
            try:
                event = codec.next_event()
            finally:
                self._reply(codec.take_replies())
            if event is not NEED_DATA:
                return event
            if self._at_eof:
                return None
            data = await self._receive()
            if data:
                codec.receive_data(data)
            else:
                self._at_eof = True

    async def _receive(self) -> bytes | bytearray:
        size = self._config.receive_size
        with trio.move_on_after(self._config.ws_ping_interval):
            return await self._stream.receive_some(size)
        self._reply(self._codec.ping())
        with trio.move_on_after(self._config.ws_ping_timeout):
            return await self._stream.receive_some(size)
        timeout = self._config.ws_ping_interval + self._config.ws_ping_timeout
        raise RemoteProtocolError(
            f"Disconnected: no answer to a ping within {timeout:g} s", recoverable=False
        )

    def _reply(self, data: bytes) -> None:
        if data:
            # A refusal means the member is being cut off already: nothing more is owed.
            with contextlib.suppress(
                trio.WouldBlock, trio.BrokenResourceError, trio.ClosedResourceError
            ):
                self._outbox.send_nowait(RawDelivery(data))
