"""A member's writer: everything between its outbox and its socket.

:class:`MemberWriter` is the member's outbox (the room calls :meth:`MemberWriter.send_nowait`)
and runs the member's writer task (:meth:`MemberWriter.serve`). It decides how bytes leave:

- **Framing follows the peer** (SPEC §3). To a framed peer everything already queued goes out
  in one write (coalescing, up to ``config.coalesce_bytes``). To an unframed peer (a seed's
  own client, which takes each ``recv()`` as one message) each message goes alone, without
  the line dialects' newline, ``config.unframed_write_gap`` after the previous write.
- **The fast path.** Waking a writer task for every message is most of the cost of fan-out.
  While the task waits on an empty outbox nothing else is being written, so the room's call
  may write itself. A member's first delivery in a scheduler turn goes straight into the
  socket with one non-blocking ``os.write`` (a chat room at human pace sends one message per
  turn: one system call per delivery, like the simplest threaded server). Later deliveries of
  the same turn are *staged*: the server's :class:`Flusher` task writes each member's staged
  bytes in one ``os.write`` after every reader has had its turn (Redis does the same before
  it sleeps), so a flood costs at most two writes per member per turn. Whatever the socket
  does not take goes back to the writer task, ahead of anything queued later, so order is
  kept. Only framed members on a real socket take the fast path; in-memory streams in tests
  always go through the task.
- **The end.** :meth:`MemberWriter.close` is synchronous and idempotent: no more deliveries,
  flush what is queued and a last event (the farewell) within a grace period, then stop.

Checkpoint policy: :meth:`MemberWriter.serve` checkpoints whenever its outbox is empty (it
waits on it) or the socket is full (``send_all`` waits for room); a write the kernel takes
whole costs no trip through the scheduler. That never starves anyone: nothing can be queued
while the task runs, so it drains at most what was queued before it woke (at most
``config.outbox_limit`` deliveries) and then waits again. Unframed peers are paced with
``trio.sleep_until``, a checkpoint per message. :meth:`MemberWriter.send_direct` is a full
checkpoint.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable

import trio

from triochat.events import ServerEvent
from triochat.room import Delivery
from triochat.server.config import ServerConfig
from triochat.server.reader import ServerCodec


class LeftOver:
    """Bytes the fast path could not write, queued for the writer task like a delivery."""

    __slots__ = ("data",)

    def __init__(self, data: bytes) -> None:
        self.data = data

    def encode_for(self, encoder: object) -> bytes:
        """The bytes, already encoded for this member."""
        return self.data


Outgoing = Delivery | LeftOver
"""What the writer task takes from its queue (both encode the same way: no type checks on the
hot path)."""


class Flusher:
    """Writes staged deliveries of idle writers, once per scheduler turn (see module docs)."""

    def __init__(self) -> None:
        self._dirty: list[MemberWriter] = []
        self._wanted = trio.Event()
        self.active = False
        self.turn = 0
        """Counts the turns in which a writer wrote or staged: the flusher ends each one."""
        self.ending = False
        """Whether this turn's end is already due (a writer wrote or staged in it)."""

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Flush staged writers until cancelled; then flush the rest once more."""
        self.active = True
        task_status.started()
        try:
            while True:
                await self._wanted.wait()
                self._wanted = trio.Event()
                self.ending = False
                self.turn += 1
                dirty, self._dirty = self._dirty, []
                for writer in dirty:
                    writer.flush_staged()
        finally:
            self.active = False
            for writer in self._dirty:
                writer.flush_staged()

    def mark_dirty(self, writer: MemberWriter) -> None:
        """``writer`` has staged bytes: flush them this turn."""
        if not self.ending:
            self.end_turn_later()
        self._dirty.append(writer)

    def end_turn_later(self) -> None:
        """A writer wrote or staged in this turn: run at its end, so :attr:`turn` moves on."""
        self.ending = True
        self._wanted.set()


class MemberWriter:
    """One member's outbox and writer task.

    Args:
        stream: the connection; a ``trio.SocketStream`` enables the fast path.
        codec: the member's dialect (replaceable until :meth:`serve` starts: the dialect is
            known only after the first bytes).
        config: limits: outbox size, coalescing, pacing, grace.
        on_failure: called with a reason when a delivery cannot be queued any more (the
            session evicts the member).
        flusher: the server's flusher; ``None`` disables the fast path.
    """

    # Thousands of idle members each hold one: slots keep them small.
    __slots__ = (
        "_closing",
        "_config",
        "_fd",
        "_final",
        "_flusher",
        "_framed",
        "_idle",
        "_last_unframed_write",
        "_on_failure",
        "_queue_in",
        "_queue_out",
        "_scope",
        "_staged",
        "_stream",
        "_turn",
        "codec",
    )

    def __init__(
        self,
        stream: trio.abc.SendStream,
        codec: ServerCodec,
        config: ServerConfig,
        on_failure: Callable[[str], None],
        flusher: Flusher | None = None,
    ) -> None:
        self.codec = codec
        self._stream = stream
        self._config = config
        self._on_failure = on_failure
        self._flusher = flusher
        self._queue_in, self._queue_out = trio.open_memory_channel[Outgoing](config.outbox_limit)
        self._scope = trio.CancelScope()
        self._final: ServerEvent | None = None
        self._closing = False
        self._idle = False
        self._staged: list[bytes] = []
        self._framed = False  # known framed (it never goes back): saves asking the codec
        self._turn = -1  # the flusher's turn of this writer's last write straight through
        self._last_unframed_write = -math.inf
        # -1: no file descriptor (an in-memory stream), so no fast path.
        self._fd = stream.socket.fileno() if isinstance(stream, trio.SocketStream) else -1
        if self._fd < 0:
            self._flusher = None

    # --- the outbox (what the room sees) ------------------------------------------------------

    def send_nowait(self, delivery: Delivery) -> None:
        """Write, stage or queue ``delivery`` (see the fast path in the module docs).

        Raises:
            trio.WouldBlock: the outbox is full.
            trio.ClosedResourceError: the writer is closed.
        """
        # Once per member for every message: the common case is inline, in as few attribute
        # lookups as will do. Under load the writer task is busy and this is one test.
        if self._idle:
            flusher = self._flusher
            if (
                flusher is not None
                and flusher.active
                and not self._closing
                and (self._framed or self._now_framed())
            ):
                if not self._staged and self._turn != flusher.turn:
                    # This member's first delivery this turn: straight into the socket.
                    self._turn = flusher.turn
                    if not flusher.ending:
                        flusher.end_turn_later()
                    self._write_now(delivery.encode_for(self.codec))
                    return
                if self._stage(delivery, flusher):
                    return
        self._queue_in.send_nowait(delivery)
        # The task has work now, though it may not run before the next delivery: nothing may
        # overtake this one on the fast path (say, once the peer has become framed).
        self._idle = False

    def _now_framed(self) -> bool:
        """Whether the peer is framed by now (it never goes back, so that is remembered)."""
        # An unframed peer gets one paced write per message: only the writer task does that.
        self._framed = self.codec.framed
        return self._framed

    def statistics(self) -> trio.MemoryChannelStatistics:
        """The outbox's statistics (``max_buffer_size`` is its limit)."""
        return self._queue_in.statistics()

    # --- writing ------------------------------------------------------------------------------

    async def send_direct(self, event: ServerEvent) -> None:
        """Write one event now, before :meth:`serve` runs (registration replies)."""
        data = self.codec.send(event)
        if data:
            await self._write_message(data)
        else:
            await trio.lowlevel.checkpoint()

    async def serve(self) -> None:
        """Write what is queued until :meth:`close` (or the connection breaks); then return.

        Raises:
            nothing: a broken connection just ends the task.
        """
        codec = self.codec
        queue = self._queue_out
        framed = False
        with self._scope:
            try:
                while True:
                    # receive_nowait first: trio's receive() yields even when an item is
                    # ready, and a yield per delivery is most of the cost of fan-out.
                    try:
                        item: Outgoing | None = queue.receive_nowait()
                    except trio.WouldBlock:
                        item = None
                    except trio.EndOfChannel:
                        break
                    if item is None:
                        # Waiting outside the except clause, holding nothing: an idle member
                        # must not keep the WouldBlock, its traceback or its last delivery
                        # alive (thousands of idle members: about 400 bytes each).
                        data = b""
                        self._idle = True  # from now on the flusher may write for us
                        try:
                            item = await queue.receive()
                        except trio.EndOfChannel:
                            break
                        finally:
                            self._idle = False
                    data = item.encode_for(codec)
                    # Once framed, a peer stays framed: after that one local test per batch.
                    if framed or (framed := codec.framed):
                        await self._write(self._coalesce(data))
                    elif data:
                        await self._write_unframed(codec.unframe(data))
                if self._final is not None:
                    data = codec.send(self._final)
                    if data:
                        await self._write_message(data)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                pass

    def _coalesce(self, first: bytes) -> bytes:
        """``first`` and whatever else is queued, up to the coalescing limit, as one write."""
        # Locals: this loop runs once per delivery under load.
        receive_nowait = self._queue_out.receive_nowait
        codec = self.codec
        limit = self._config.coalesce_bytes
        batch = [first]
        size = len(first)
        while size < limit:
            try:
                data = receive_nowait().encode_for(codec)
            except (trio.WouldBlock, trio.EndOfChannel):
                break
            batch.append(data)
            size += len(data)
        return b"".join(batch) if len(batch) > 1 else first

    async def _write_message(self, data: bytes) -> None:
        if self.codec.framed:
            await self._write(data)
        else:
            await self._write_unframed(self.codec.unframe(data))

    async def _write_unframed(self, data: bytes) -> None:
        """One message in one write, no sooner than the gap after the previous one."""
        await trio.sleep_until(self._last_unframed_write + self._config.unframed_write_gap)
        await self._write(data)
        self._last_unframed_write = trio.current_time()

    async def _write(self, data: bytes) -> None:
        """Write ``data``: straight into the socket when it has room, else wait for room."""
        if not data:
            return
        if self._fd >= 0:
            try:
                written = os.write(self._fd, data)
            except BlockingIOError:
                written = 0
            except OSError as error:
                raise trio.BrokenResourceError(str(error)) from error
            if written == len(data):
                return
            data = data[written:]
        await self._stream.send_all(data)

    # --- the fast path ------------------------------------------------------------------------

    def _stage(self, delivery: Delivery, flusher: Flusher) -> bool:
        """Stage ``delivery`` for the flusher (False: the writer task must take it)."""
        staged = self._staged
        if not staged:
            flusher.mark_dirty(self)
        elif len(staged) >= self._config.outbox_limit:
            self.flush_staged()  # may hand the rest to the writer, which is then not idle
            if not self._idle:
                return False
            flusher.mark_dirty(self)
        staged.append(delivery.encode_for(self.codec))
        return True

    def flush_staged(self) -> None:
        """Write what was staged with one non-blocking call; the writer task sends any rest."""
        if not self._staged:
            return
        data = b"".join(self._staged) if len(self._staged) > 1 else self._staged[0]
        self._staged.clear()
        if self._closing:
            self._handover(data)
        else:
            self._write_now(data)

    def _write_now(self, data: bytes) -> None:
        """One non-blocking write; what the socket does not take goes to the writer task."""
        try:
            written = os.write(self._fd, data)
        except OSError:
            written = 0  # the writer task meets the same error and ends the session
        if written < len(data):
            self._handover(data[written:])

    def _handover(self, data: bytes) -> None:
        """Queue bytes for the writer task ahead of anything staged later."""
        self._idle = False
        try:
            self._queue_in.send_nowait(LeftOver(data))
        except (trio.WouldBlock, trio.BrokenResourceError, trio.ClosedResourceError):
            self._on_failure("Disconnected")

    # --- the end ------------------------------------------------------------------------------

    def close(self, final: ServerEvent | None = None) -> None:
        """No more deliveries; flush what is queued and ``final`` within the close grace.

        Synchronous and idempotent (the first call's ``final`` wins).
        """
        if self._closing:
            return
        if self._staged:
            # Staged bytes go first, through the writer task that now flushes everything.
            data = b"".join(self._staged)
            self._staged.clear()
            self._handover(data)
        self._closing = True
        self._final = final
        self._queue_in.close()
        if self._scope.deadline == math.inf:
            self._scope.deadline = trio.current_time() + self._config.close_grace
