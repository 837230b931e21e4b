"""``ChatClient.py --udp <host> <port>`` (seed 002): chat over UDP datagrams.

The client greets the server, sends each stdin line as a message, prints the text of every
relayed message (its own included, as the seed shows) and re-greets every
:data:`~triochat.wire.datagrams.REFRESH_INTERVAL` seconds so its registration never expires.
Ctrl-C (the seed's way to leave) leaves and exits 0 at once. At end of input the client first
waits, at most :data:`ECHO_WAIT` seconds, for the server to echo the messages it sent, so a
piped session prints its own last lines as the seed shows; then it leaves.

It talks to our server and to the seed's own server alike (SPEC §5), and learns which one it
has from the first datagram that comes back:

- ``INCOMING``, ``NOTICE``, ``ERROR`` or ``BYE``: triochat. Messages then go out as
  ``MESSAGE <text>``, and leaving sends ``LEAVE``.
- ``From('<ip>', <port>): <text>``: the seed's server. It shows each text alone, like
  ``INCOMING`` (``--show-sender`` shows ``<ip>:<port>: <text>``, ``[<ip>]:<port>`` for IPv6:
  that server knows no names); a blank text (a seed client's empty line) is not shown. Leaving
  sends nothing, since that server would relay any non-``GRE`` datagram as chat (``LEAVE`` as
  ``VE``); the re-greetings are harmless to it (any ``GRE...`` datagram just registers again).
- Until then, messages go out as ``MES<text>``, which both servers show as the text typed, cut
  into datagrams the seed's server reads whole (1,024 bytes). Two edge cases remain, both only
  for messages sent before anything came back (normally just the first, since each message is
  echoed): on our server a text starting with ``sage`` (any case) loses it, being read as
  ``MESSAGE``, and a text starting with a space loses that space; and a client that leaves
  before anything came back sends no ``LEAVE``, so our server keeps its registration until it
  expires (:data:`~triochat.wire.datagrams.REGISTRATION_TTL`).

Like a TCP client whose connection is closed, it exits 1 with the reason on stderr when it is
no longer a member: ``BYE <reason>`` (evicted, expired, server shutdown), ``ERROR <reason>``
(its greeting was refused, e.g. a taken name), or an ICMP "port unreachable", which the kernel
reports as ``ConnectionRefusedError`` because the socket is connected (that also makes the
kernel drop datagrams from anyone but the server). ``NOTICE`` lines go to stderr.
"""

from __future__ import annotations

import logging
import signal

import trio

from triochat.client.early import EarlyStart
from triochat.client.terminal import StdinLines, say, warn
from triochat.events import ChatMessage, Hello, Leave, Say
from triochat.wire.datagrams import (
    MAX_OUTGOING_BYTES,
    REFRESH_INTERVAL,
    DatagramClientCodec,
    Farewell,
    Relayed,
)

logger = logging.getLogger(__name__)

RECEIVE_SIZE = MAX_OUTGOING_BYTES + 1
"""Big enough for the largest datagram the server sends."""

ECHO_WAIT = 2.0
"""Most seconds at end of input to wait for the echoes of our own messages. They are normally
back within milliseconds; the bound only matters when UDP lost one (or the server echoes
nothing), so it is generous enough for a loaded machine."""


class UdpChat:
    """One client's socket and what it prints; :meth:`run` chats until told to stop."""

    def __init__(
        self,
        sock: trio.socket.SocketType,
        server: str,
        *,
        show_sender: bool = False,
        name: str | None = None,
        refresh_interval: float = REFRESH_INTERVAL,
    ) -> None:
        self._socket = sock
        self._server = server
        self._show_sender = show_sender
        self._codec = DatagramClientCodec()
        (self._greeting,) = self._codec.send(Hello(name or ""))
        self._refresh_interval = refresh_interval
        self._local_port = int(sock.getsockname()[1])
        self._unechoed = 0
        self._echo_seen = trio.Event()
        self.exit_code = 0

    async def run(self) -> None:
        """Chat until stdin ends, a signal arrives, or the server is unreachable.

        The launcher has greeted the server and printed the welcome already (see ``early``).
        """
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._print_incoming, nursery)
                nursery.start_soon(self._refresh, nursery)
                nursery.start_soon(self._send_stdin_lines, nursery)
                async for _signum in signals:
                    break  # Ctrl-C: leave, as the seed does
                nursery.cancel_scope.cancel()

    async def leave(self) -> None:
        """Tell the server we are gone (best effort: it expires us anyway).

        Only a server known to be triochat is told: to the seed's server any datagram that
        does not start with ``GRE`` is chat.
        """
        if self.exit_code != 0:
            return
        for data in self._codec.send(Leave()):
            try:
                await self._socket.send(data)
            except OSError as error:
                logger.debug("LEAVE: %r", error)

    async def _send(self, data: bytes, nursery: trio.Nursery) -> bool:
        try:
            await self._socket.send(data)
        except ConnectionRefusedError:
            self._gone(nursery)
            return False
        except OSError as error:
            warn(f"Cannot send to the chat server at {self._server}: {error.strerror or error}")
        return True

    def _gone(self, nursery: trio.Nursery) -> None:
        self._stop(nursery, f"The chat server at {self._server} is not reachable")

    def _stop(self, nursery: trio.Nursery, reason: str) -> None:
        """We are not a member any more: say why, exit 1."""
        if self.exit_code == 0:
            self.exit_code = 1
            warn(reason)
        nursery.cancel_scope.cancel()

    async def _print_incoming(self, nursery: trio.Nursery) -> None:
        while True:
            try:
                data = await self._socket.recv(RECEIVE_SIZE)
            except ConnectionRefusedError:
                self._gone(nursery)
                return
            except OSError as error:
                logger.debug("recv: %r", error)
                await trio.lowlevel.checkpoint()
                continue
            knew = self._codec.server_is_triochat
            event = self._codec.receive_datagram(data)
            if event is None:
                logger.debug("ignored datagram %r", data[:80])
                continue
            if self._codec.server_is_triochat is not knew:
                logger.debug(
                    "the server speaks triochat's datagram dialect"
                    if self._codec.server_is_triochat
                    else "the server relays From(...): the seed's own server"
                )
            if isinstance(event, ChatMessage | Relayed):
                self._show(event)
            elif isinstance(event, Farewell):
                self._stop(nursery, f"Disconnected by the chat server: {event.reason}")
                return
            elif event.is_error:
                self._stop(nursery, f"ERROR {event.text}")
                return
            else:
                warn(f"NOTICE {event.text}")

    def _show(self, event: ChatMessage | Relayed) -> None:
        if isinstance(event, Relayed) and not event.text.strip():
            return  # the seed's server relays a seed client's empty line; we never send one
        if not self._show_sender:
            say(event.text)
        else:
            say(f"{event.sender}: {event.text}")
        # Our own messages come back tagged with the address the server saw: ours.
        port = event.sender_port if isinstance(event, ChatMessage) else event.port
        if port == self._local_port and self._unechoed:
            self._unechoed -= 1
            self._echo_seen.set()
            self._echo_seen = trio.Event()

    async def _refresh(self, nursery: trio.Nursery) -> None:
        while True:
            await trio.sleep(self._refresh_interval)
            if not await self._send(self._greeting, nursery):
                return

    async def _send_stdin_lines(self, nursery: trio.Nursery) -> None:
        stdin = StdinLines()
        while (line := await stdin.readline()) is not None:
            for data in self._codec.send(Say(line)):
                self._unechoed += 1
                if not await self._send(data, nursery):
                    return
        with trio.move_on_after(ECHO_WAIT):
            while self._unechoed:
                await self._echo_seen.wait()
        nursery.cancel_scope.cancel()


async def run_udp_client(
    start: EarlyStart, server: str, *, show_sender: bool = False, name: str | None = None
) -> int:
    """Chat until stdin ends or Ctrl-C (exit 0), or the server is unreachable (exit 1).

    Args:
        start: the socket, connected to the server; the launcher has greeted it.
        server: ``host:port``, for messages.
        show_sender: show who sent each message.
        name: the name greeted with, if any (re-sent with every refresh).
    """
    with trio.socket.from_stdlib_socket(start.sock) as sock:
        chat = UdpChat(sock, server, show_sender=show_sender, name=name)
        await chat.run()
        await chat.leave()
    return chat.exit_code
