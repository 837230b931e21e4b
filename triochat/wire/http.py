"""HTTP on the chat port, sans-IO: one request per connection, parsed by ``h11``.

The server's TCP port serves the chat page and WebSocket upgrades (SPEC §9). A connection
whose first bytes are ``GET `` is handed to :class:`HttpServerCodec`: it parses exactly one
request (headers bounded by ``max_header_bytes``) and reports either a WebSocket upgrade,
which :mod:`triochat.wire.websocket` takes over, or a plain request, which gets one response
and the connection closes. ``h11`` (python-hyper) does the parsing: it is small, pure Python,
sans-IO like every codec here, and it is what ``wsproto`` builds its own handshake on.
"""

from __future__ import annotations

from dataclasses import dataclass

import h11

from triochat.wire.common import NEED_DATA, NeedData, RemoteProtocolError

MAX_HEADER_BYTES = 16 * 1024
"""Largest request head (request line and headers) accepted; browsers send about 1 KiB."""


@dataclass(frozen=True, slots=True)
class HttpRequest:
    """A request that is not a WebSocket upgrade: answer it once, then close."""

    method: str
    target: str


@dataclass(frozen=True, slots=True)
class WebSocketUpgrade:
    """A request to open a WebSocket: the handshake goes on in the WebSocket codec.

    Attributes:
        target: the request target (path and query).
        headers: the request's headers, as ``h11`` normalised them.
        trailing: bytes the client sent after the request (WebSocket frames already).
    """

    target: str
    headers: tuple[tuple[bytes, bytes], ...]
    trailing: bytes


HttpEvent = HttpRequest | WebSocketUpgrade


class HttpServerCodec:
    """The server's side of one HTTP request (see the module docs).

    Args:
        max_header_bytes: the largest request head; a longer one is a fatal error.
    """

    def __init__(self, max_header_bytes: int = MAX_HEADER_BYTES) -> None:
        self._h11 = h11.Connection(h11.SERVER, max_incomplete_event_size=max_header_bytes)

    def receive_data(self, data: bytes | bytearray) -> None:
        """Add bytes from the peer."""
        self._h11.receive_data(bytes(data))

    def next_event(self) -> HttpEvent | NeedData:
        """The request once its head is complete, or ``NEED_DATA``.

        Raises:
            RemoteProtocolError: (fatal) not HTTP/1.1 that ``h11`` accepts, or too long.
        """
        try:
            event = self._h11.next_event()
        except h11.RemoteProtocolError as error:
            raise RemoteProtocolError(f"Bad HTTP request: {error}", recoverable=False) from None
        if event is h11.NEED_DATA:
            return NEED_DATA
        if not isinstance(event, h11.Request):
            raise RemoteProtocolError("Bad HTTP request", recoverable=False)
        method = event.method.decode("ascii", "replace")
        target = event.target.decode("ascii", "replace")
        headers = tuple((name, value) for name, value in event.headers)
        if method == "GET" and _is_websocket_upgrade(headers):
            # h11 pauses after a request that asks to switch protocols: what follows the
            # head is the new protocol's, and is handed over as it is.
            trailing, _ = self._h11.trailing_data
            return WebSocketUpgrade(target, headers, bytes(trailing))
        return HttpRequest(method, target)

    def respond(
        self,
        status: int,
        body: bytes,
        content_type: str = "text/plain; charset=utf-8",
        *,
        head_only: bool = False,
    ) -> bytes:
        """The whole response to the request: status, headers and ``body``; then close.

        The page is all there is to fetch, so no keep-alive: one request, one response.
        """
        headers = [
            ("Content-Type", content_type),
            ("Content-Length", str(len(body))),
            ("Cache-Control", "no-store"),
            # Nothing on the page comes from elsewhere; say so to the browser too.
            (
                "Content-Security-Policy",
                "default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; "
                "connect-src 'self'; img-src data:",
            ),
            ("X-Content-Type-Options", "nosniff"),
            ("Connection", "close"),
        ]
        reason = _REASONS.get(status, b"")
        data = self._h11.send(h11.Response(status_code=status, headers=headers, reason=reason))
        data = data or b""
        if body and not head_only:
            data += self._h11.send(h11.Data(data=body)) or b""
        data += self._h11.send(h11.EndOfMessage()) or b""
        return data


def http_refusal(status: int, text: str) -> bytes:
    """A whole response refusing a request not parsed (the server is full, say), then close.

    ``h11`` answers only requests it has read, so this one is written out: a status line,
    three headers and the text.
    """
    body = f"{text}\n".encode()
    reason = _REASONS.get(status, b"").decode()
    head = (
        f"HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain; charset=utf-8\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    return head.encode() + body


_REASONS = {
    200: b"OK",
    400: b"Bad Request",
    404: b"Not Found",
    405: b"Method Not Allowed",
    503: b"Service Unavailable",
}


def _is_websocket_upgrade(headers: tuple[tuple[bytes, bytes], ...]) -> bool:
    return any(name == b"upgrade" and b"websocket" in value.lower() for name, value in headers)
