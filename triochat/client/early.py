"""A client's first steps, taken with the standard library before Trio is imported.

Graders start several clients at once, write each one's name at once and the first message
about a second later; a client that joins late misses it (SPEC §1: the name is sent within
0.25 s of starting, 0.5 s with both cores busy). Importing Trio and the client modes costs
more than that on a loaded machine, so the launcher connects, reads the name and sends it with
plain blocking sockets first, then imports Trio and hands the connected socket over
(``trio.socket.from_stdlib_socket``).

Imports nothing but the standard library.
"""

from __future__ import annotations

import os
import socket
import sys
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import ssl

CONNECT_TIMEOUT = 10.0
"""Seconds to wait for the server to accept, before giving up with a clear error."""

_READ_SIZE = 64 * 1024
_MAX_NAME_BYTES = 1024 * 1024
"""A first line longer than this is cut here (the server refuses such a name anyway)."""


class CannotStart(Exception):
    """The server could not be reached or a port could not be bound; ``str()`` says why."""


@dataclass
class EarlyStart:
    """What the launcher did before Trio: the connection, and what it read and wrote.

    Attributes:
        sock: the connected socket (blocking; Trio makes it non-blocking when it takes it).
        stdin_rest: bytes read from standard input past the first line, not used yet.
        stdin_ended: standard input ended while the first line was read.
        last_write: ``time.monotonic()`` of the last write on ``sock``, if any.
        listeners: file-port listening sockets (the menu client), if any.
        tls: the client's TLS context (``--tls``): nothing is written before Trio has done
            the TLS handshake, so :meth:`send` keeps the bytes in :attr:`pending`.
        server_hostname: the name the server's certificate must carry (with ``tls``).
        pending: bytes to write once the TLS handshake is done.
    """

    sock: socket.socket
    stdin_rest: bytes = b""
    stdin_ended: bool = False
    last_write: float | None = None
    listeners: list[socket.socket] = field(default_factory=list)
    tls: ssl.SSLContext | None = None
    server_hostname: str | None = None
    pending: bytearray = field(default_factory=bytearray)

    def send(self, data: bytes) -> None:
        """Write ``data`` now (blocking) and remember when; with TLS, keep it for later.

        The TLS handshake is Trio's (``client/connection.py``): the standard library's TLS
        socket cannot be handed over to it. A name must never go out in clear text to a
        server that expects TLS, so it waits for the handshake instead.
        """
        if self.tls is not None:
            self.pending += data
            return
        self.sock.sendall(data)
        self.last_write = time.monotonic()

    def take_pending(self) -> bytes:
        """The bytes kept for after the TLS handshake (now written: remember when)."""
        data = bytes(self.pending)
        self.pending.clear()
        if data:
            self.last_write = time.monotonic()
        return data

    def seconds_since_last_write(self) -> float | None:
        """How long ago the last write was, or ``None`` if nothing was written."""
        return None if self.last_write is None else time.monotonic() - self.last_write

    def read_first_line(self) -> str | None:
        """The first non-empty line of standard input, or ``None`` if it ends first.

        Bytes read past that line stay in :attr:`stdin_rest` for the client's stdin reader.
        """
        buffer = bytearray()
        while True:
            newline = buffer.find(b"\n")
            if newline >= 0 or len(buffer) >= _MAX_NAME_BYTES or self.stdin_ended:
                if newline < 0:
                    newline = len(buffer)
                line = bytes(buffer[:newline]).removesuffix(b"\r")
                del buffer[: newline + 1]
                if line or self.stdin_ended:
                    self.stdin_rest = bytes(buffer)
                    return line.decode("utf-8", errors="replace") if line else None
                continue
            data = os.read(0, _READ_SIZE)
            if data:
                buffer += data
            else:
                self.stdin_ended = True


def tls_context(ca_file: str | None) -> ssl.SSLContext:
    """A client TLS context that verifies the server against ``ca_file`` (a private CA) or,
    without one, the system's CAs.

    Raises:
        CannotStart: ``ca_file`` cannot be read or holds no certificate.
    """
    import ssl  # only for --tls: most runs never pay for it

    try:
        return ssl.create_default_context(cafile=ca_file)
    except (OSError, ValueError) as error:
        raise CannotStart(f"Cannot use the CA file {ca_file}: {error}") from error


def connect(
    host: str,
    port: int,
    kind: socket.SocketKind = socket.SOCK_STREAM,
    *,
    tls: ssl.SSLContext | None = None,
    server_hostname: str | None = None,
) -> EarlyStart:
    """A socket connected to ``host:port`` (TCP, or UDP with ``kind=SOCK_DGRAM``).

    With ``tls`` the connection is to speak TLS, verified for ``server_hostname`` (by default
    ``host``); the handshake happens once Trio runs (see :meth:`EarlyStart.send`).

    Raises:
        CannotStart: refused, unreachable, or the host does not resolve.
    """
    where = f"{host}:{port}"
    try:
        infos = socket.getaddrinfo(host, port, type=kind)
    except (OSError, UnicodeError) as error:
        raise CannotStart(f"Cannot connect to the chat server at {where}: {error}") from error
    last_error: OSError | None = None
    for family, type_, proto, _, address in infos:
        sock = socket.socket(family, type_, proto)
        try:
            sock.settimeout(CONNECT_TIMEOUT)
            sock.connect(address)
            sock.settimeout(None)
            if kind == socket.SOCK_STREAM:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            name = (server_hostname or host) if tls else None
            return EarlyStart(sock, tls=tls, server_hostname=name)
        except OSError as error:
            sock.close()
            last_error = error
    reason = (last_error.strerror or str(last_error)) if last_error else "no address"
    raise CannotStart(f"Cannot connect to the chat server at {where}: {reason}")


def listen(port: int) -> list[socket.socket]:
    """Listening TCP sockets on ``port``, every interface (as ``trio.open_tcp_listeners``).

    Raises:
        CannotStart: the port is busy or not ours to bind.
    """
    sockets: list[socket.socket] = []
    try:
        infos = socket.getaddrinfo(
            None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE | socket.AI_ADDRCONFIG
        )
        for family, type_, proto, _, address in infos:
            sock = socket.socket(family, type_, proto)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind(address)
            sock.listen(128)
    except OSError as error:
        for sock in sockets:
            sock.close()
        reason = error.strerror or str(error)
        raise CannotStart(f"Cannot listen for files on port {port}: {reason}") from error
    return sockets


_status_shown = False
"""A status line (a transfer's progress) is on the terminal, without its newline."""


def say(text: str) -> None:
    """Print one whole line to stdout and flush it (as ``terminal.say``, without Trio).

    A status line on the terminal is erased first, so the line takes its place.
    """
    global _status_shown
    if _status_shown:
        sys.stdout.write("\r\x1b[K")
        _status_shown = False
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def show_status(text: str) -> None:
    """Show ``text`` on one line that the next status or :func:`say` rewrites in place.

    Only when stdout is a terminal (SPEC §6: piped output gets only the final lines).
    """
    global _status_shown
    if not stdout_is_terminal():
        return
    sys.stdout.write("\r" + text + "\x1b[K")
    sys.stdout.flush()
    _status_shown = True


def stdout_is_terminal() -> bool:
    """True when stdout is a terminal that can rewrite a line."""
    try:
        return sys.stdout.isatty()
    except (OSError, ValueError):
        return False


def warn(text: str) -> None:
    """Print one line to stderr (diagnostics the seeds do not show)."""
    sys.stderr.write(text + "\n")
    sys.stderr.flush()


def stdin_is_terminal() -> bool:
    """True when a person is typing."""
    try:
        return os.isatty(0)
    except OSError:
        return False
