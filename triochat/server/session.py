"""One TCP member's session from first byte to last: register, chat, finish.

Registration (the dialect and the name) is ``server/registration.py``. While chatting, a
reader and a writer run in one nursery. The reader owns ``receive_some`` and hands each event
to the member's :class:`~triochat.server.commands.Commands`; it runs in the nursery's body.
The writer is the member's
:class:`~triochat.server.writer.MemberWriter`, which owns everything between the outbox and
the socket (coalescing, the fast path, pacing to unframed peers). Ending a session is one
synchronous call, :meth:`ChatSession.finish`: the member leaves the room at once, the writer
closes (it flushes what was queued and a last line saying why, within a short grace), and the
reader is cancelled.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import trio

from triochat.events import ClientEvent, Dialect, FileRequest, Notice, ServerEvent
from triochat.room import Member, Room
from triochat.server.commands import Commands
from triochat.server.config import ServerConfig
from triochat.server.reader import Reader, ServerCodec
from triochat.server.registration import register
from triochat.server.writer import Flusher, MemberWriter
from triochat.wire.common import RemoteProtocolError
from triochat.wire.lines import LineServerCodec

logger = logging.getLogger(__name__)

EVENTS_PER_TURN = 16
"""Events a reader handles before it yields to other tasks (the writers above all).

Writers woken during a scheduler batch run in the next one, so in the worst case every
flooding sender adds this many messages to each outbox before any writer drains it: with the
default outbox of 1,024 that is 64 senders flooding in the very same instant."""


class SessionCounter:
    """How many sessions are chatting, and a way to wait until none is (for shutdown)."""

    def __init__(self) -> None:
        self.active = 0
        self._idle = trio.Event()
        self._idle.set()

    def opened(self) -> None:
        """A session started."""
        self.active += 1
        if self._idle.is_set():
            self._idle = trio.Event()

    def closed(self) -> None:
        """A session ended."""
        self.active -= 1
        if self.active == 0:
            self._idle.set()

    async def wait_idle(self) -> None:
        """Return once no session is running."""
        await self._idle.wait()


class ChatSession:
    """A TCP member from its first byte to its last.

    Args:
        stream: the connection; closed by :meth:`run` when the session ends.
        codec: the dialect's codec, or ``None`` to tell the dialect from the first byte.
        room: the room to join.
        peer: the peer's (ip, port).
        limits: timeouts and sizes.
        fixed_name: join under this name without asking (port-tagged members).
        on_file_request: called for ``file_request`` events (the file relay), if any.
        counter: counts this session while it is chatting, so shutdown can wait for it.
        on_finish: called once, right after the member has left (or the session ended
            without joining), before the last bytes are flushed.
    """

    def __init__(
        self,
        stream: trio.abc.Stream,
        codec: ServerCodec | None,
        room: Room,
        peer: tuple[str, int],
        limits: ServerConfig,
        *,
        fixed_name: str | None = None,
        on_file_request: Callable[[Member, FileRequest], None] | None = None,
        counter: SessionCounter | None = None,
        on_finish: Callable[[], None] | None = None,
        flusher: Flusher | None = None,
    ) -> None:
        self._stream = stream
        self._initial_codec = codec
        self._room = room
        self._peer = peer
        self._limits = limits
        self._fixed_name = fixed_name
        self._counter = counter or SessionCounter()
        self._on_finish = on_finish
        # The line codec stands in until registration knows the dialect.
        self._writer = MemberWriter(stream, LineServerCodec(), limits, self._writer_failed, flusher)
        self._commands = Commands(room, limits, self.finish, on_file_request)
        self._member: Member | None = None
        self._finishing = False
        self._reader_scope = trio.CancelScope()

    async def run(self) -> None:
        """Serve the connection until the member leaves, is evicted, or the peer goes away."""
        try:
            registered = await register(
                self._stream,
                self._initial_codec,
                self._writer,
                self._room,
                self._limits,
                self._new_member,
                fixed_name=self._fixed_name,
            )
            if registered is not None:
                self._member, reader = registered
                await self._chat(self._member, reader)
        except (trio.BrokenResourceError, trio.ClosedResourceError) as error:
            logger.debug("connection %s ended: %r", self._peer, error)
        finally:
            self.finish(None)
            await trio.aclose_forcefully(self._stream)

    def _new_member(self, name: str, client_id: str | None, file_port: int | None) -> Member:
        ip, port = self._peer
        return Member(
            name=name,
            ip=ip,
            port=port,
            outbox=self._writer,
            on_evict=self._evicted,
            client_id=client_id or "-",
            file_port=file_port,
            dialect=self._writer.codec.dialect,
            last_active=trio.current_time(),
            # Seed-003 clients ignore object types they do not know, so JSON members hear
            # of renames without asking, and so does the page (its members list); line
            # members' clients print every line they get.
            wants_notices=self._writer.codec.dialect in (Dialect.JSON, Dialect.WEB),
            # The page keeps a members list; other dialects have nowhere to show joins.
            watches_presence=self._writer.codec.dialect is Dialect.WEB,
        )

    # --- chatting ----------------------------------------------------------------------------

    async def _chat(self, member: Member, reader: Reader) -> None:
        self._counter.opened()
        try:
            # The reader runs in the nursery's own body rather than a third task: the same
            # supervision (either ending cancels the other through finish) for about 2 KiB
            # less per idle connection.
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._write_loop)
                await self._read_loop(member, reader)
        finally:
            self._counter.closed()

    async def _read_loop(self, member: Member, reader: Reader) -> None:
        dispatched = 0
        with self._reader_scope:
            try:
                while True:
                    if dispatched >= EVENTS_PER_TURN:
                        # One read can hold thousands of messages: let the writers drain the
                        # outboxes before the next few, or a burst would evict readers that
                        # keep up perfectly well.
                        dispatched = 0
                        await trio.lowlevel.checkpoint()
                    try:
                        event = await self._next_event(reader)
                    except RemoteProtocolError as error:
                        if not error.recoverable:
                            self.finish(Notice(str(error), is_error=True))
                            return
                        self._room.tell(member, str(error), is_error=True)
                        continue
                    except trio.TooSlowError:
                        timeout = self._limits.idle_timeout
                        self.finish(Notice(f"Disconnected: idle for {timeout:g} s", is_error=True))
                        return
                    if event is None:
                        self.finish(None)
                        return
                    await self._commands.handle(member, event)
                    dispatched += 1
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                self.finish(None)

    async def _next_event(self, reader: Reader) -> ClientEvent | None:
        """The next event, within the idle timeout if there is one (TooSlowError past it)."""
        if not self._limits.idle_timeout:
            return await reader.next_event()
        with trio.fail_after(self._limits.idle_timeout):
            return await reader.next_event()

    async def _write_loop(self) -> None:
        await self._writer.serve()
        # The writer stops when closed and flushed, or when the connection broke.
        self.finish(None)
        self._reader_scope.cancel()

    # --- ending ------------------------------------------------------------------------------

    def _writer_failed(self, reason: str) -> None:
        if self._member is not None:
            self._member.evict(reason)
        else:
            self.finish(None)

    def _evicted(self, reason: str) -> None:
        logger.info("evicting %s: %s", self._peer, reason)
        self.finish(Notice(reason, is_error=True))

    def finish(self, final: ServerEvent | None) -> None:
        """End the session: leave the room now, flush the queue and ``final``, then close.

        Synchronous and idempotent (the first call's ``final`` wins), so the room may call it
        from inside a broadcast and every exit path may call it again.
        """
        if self._finishing:
            return
        self._finishing = True
        if self._member is not None:
            self._room.leave(self._member)
        if self._on_finish is not None:
            self._on_finish()
        self._writer.close(final)
        self._reader_scope.cancel()
