"""History that survives a restart: an SQLite file in WAL mode, written in batches off the
event loop.

The room never waits for the disk. :meth:`SqliteHistory.enqueue` (the room's history sink)
only appends to a bounded in-memory queue; one task, :meth:`SqliteHistory.serve`, takes
everything queued and writes it in one transaction in a worker thread
(``trio.to_thread.run_sync``), so a flood of messages costs one commit per batch, not one
per message. Reads never touch the file while serving: the room answers ``/history`` from
its own memory, which :meth:`SqliteHistory.open` fills from the file once at start-up. The
file keeps only the last ``limit`` messages (older rows are pruned with each batch), so it
stays as small as the history it serves.

The connection is used by one thread at a time (the serving task awaits each write), but
not always the same worker thread, hence ``check_same_thread=False``.
"""

from __future__ import annotations

import collections
import logging
import sqlite3
from dataclasses import dataclass

import trio

from triochat.events import ChatMessage

logger = logging.getLogger(__name__)

MAX_PENDING = 100_000
"""Messages queued for the disk at most; past it the oldest queued are dropped (and counted):
a disk that stalls must not grow the server's memory without bound."""

MAX_BATCH = 5_000
"""Messages written in one transaction at most."""

BATCH_WINDOW = 0.05
"""Seconds the writer waits, once woken, for more messages before it writes: a flood arrives
a few messages per scheduler turn, and one transaction (one thread hop, one commit) for all
that came in 50 ms costs far less than one per turn. A crash loses at most that much."""

FLUSH_GRACE = 3.0
"""Seconds the last batch gets at shutdown."""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS messages (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    sender TEXT NOT NULL,
    text TEXT NOT NULL,
    timestamp TEXT NOT NULL,
    display_time TEXT NOT NULL
)
"""
_INSERT = "INSERT INTO messages (sender, text, timestamp, display_time) VALUES (?, ?, ?, ?)"
_PRUNE = "DELETE FROM messages WHERE id <= (SELECT MAX(id) FROM messages) - ?"
_LOAD = "SELECT sender, text, timestamp, display_time FROM messages ORDER BY id DESC LIMIT ?"


@dataclass
class HistoryDbStatistics:
    """Counters of the store.

    Attributes:
        loaded: messages read from the file at start-up.
        written: messages committed to the file.
        batches: transactions committed.
        dropped: messages dropped from a full queue before they reached the disk.
        pending: messages queued now.
    """

    loaded: int = 0
    written: int = 0
    batches: int = 0
    dropped: int = 0
    pending: int = 0


def _connect(path: str) -> sqlite3.Connection:
    connection = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
    try:
        # WAL: readers never block the writer, and a commit is an append, not a rewrite.
        connection.execute("PRAGMA journal_mode=WAL")
        # In WAL mode NORMAL survives a crash of the process (not of the machine) without
        # an fsync per commit.
        connection.execute("PRAGMA synchronous=NORMAL")
        connection.execute(_SCHEMA)
    except sqlite3.Error:
        connection.close()
        raise
    return connection


def _load(connection: sqlite3.Connection, limit: int) -> list[ChatMessage]:
    rows = connection.execute(_LOAD, (limit,)).fetchall()
    # No addresses on disk: a replay goes only to TCP members, whose dialects show none.
    return [
        ChatMessage(sender, text, timestamp, display_time, sender_ip="", sender_port=0)
        for sender, text, timestamp, display_time in reversed(rows)
    ]


class SqliteHistory:
    """The SQLite file behind a room's history; make one with :meth:`open`.

    Attributes:
        initial: the last messages found in the file at start-up, oldest first.
    """

    def __init__(
        self,
        connection: sqlite3.Connection,
        limit: int,
        initial: list[ChatMessage],
        batch_window: float = BATCH_WINDOW,
    ) -> None:
        self._connection: sqlite3.Connection | None = connection
        self._limit = limit
        self._batch_window = batch_window
        self.initial = initial
        # A deque: the room's fan-out calls enqueue, and dropping the oldest of a full queue
        # must not shift 100,000 entries per message.
        self._pending: collections.deque[ChatMessage] = collections.deque()
        self._wakeup = trio.Event()
        self._stats = HistoryDbStatistics(loaded=len(initial))

    @classmethod
    async def open(
        cls, path: str, limit: int, *, batch_window: float = BATCH_WINDOW
    ) -> SqliteHistory:
        """Open (or create) the file at ``path`` and read its last ``limit`` messages;
        ``batch_window`` is :data:`BATCH_WINDOW` (0 writes as soon as woken).

        Raises:
            sqlite3.Error, OSError: the file cannot be opened or is not a history database.
        """

        def open_and_load() -> tuple[sqlite3.Connection, list[ChatMessage]]:
            connection = _connect(path)
            try:
                return connection, _load(connection, limit)
            except sqlite3.Error:
                connection.close()
                raise

        connection, initial = await trio.to_thread.run_sync(open_and_load)
        return cls(connection, limit, initial, batch_window)

    def enqueue(self, message: ChatMessage) -> None:
        """Queue ``message`` for the file (the room's history sink; never waits)."""
        pending = self._pending
        pending.append(message)
        if len(pending) > MAX_PENDING:
            pending.popleft()
            self._stats.dropped += 1
        self._wakeup.set()

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Write what is queued, batch after batch, until cancelled; then write the rest
        (within :data:`FLUSH_GRACE`) and close the file."""
        task_status.started()
        try:
            while True:
                await self._wakeup.wait()
                if self._batch_window > 0 and len(self._pending) < MAX_BATCH:
                    await trio.sleep(self._batch_window)
                self._wakeup = trio.Event()
                await self._write_pending()
        finally:
            with trio.CancelScope(shield=True), trio.move_on_after(FLUSH_GRACE):
                await self._write_pending()
                await self.aclose()

    async def _write_pending(self) -> None:
        while self._pending:
            pending = self._pending
            batch = [pending.popleft() for _ in range(min(MAX_BATCH, len(pending)))]
            try:
                await trio.to_thread.run_sync(self._write, batch)
            except trio.Cancelled:
                # Cancelled before the thread started (once started, it is waited for): the
                # batch is unwritten, so it goes back for the final flush.
                self._pending.extendleft(reversed(batch))
                raise
            except sqlite3.Error as error:
                # The chat goes on without the disk: these messages stay in memory only.
                logger.error("history database: %d messages not written: %s", len(batch), error)
                continue
            self._stats.written += len(batch)
            self._stats.batches += 1

    def _write(self, batch: list[ChatMessage]) -> None:
        connection = self._connection
        if connection is None:
            raise sqlite3.ProgrammingError("the history database is closed")
        rows = [(m.sender, m.text, m.timestamp, m.display_time) for m in batch]
        connection.execute("BEGIN")
        try:
            connection.executemany(_INSERT, rows)
            connection.execute(_PRUNE, (self._limit,))
        except BaseException:
            connection.execute("ROLLBACK")
            raise
        connection.execute("COMMIT")

    async def aclose(self) -> None:
        """Close the file (what is still queued is not written)."""
        connection, self._connection = self._connection, None
        if connection is not None:
            await trio.to_thread.run_sync(connection.close)

    def statistics(self) -> HistoryDbStatistics:
        """Current counters."""
        return HistoryDbStatistics(
            loaded=self._stats.loaded,
            written=self._stats.written,
            batches=self._stats.batches,
            dropped=self._stats.dropped,
            pending=len(self._pending),
        )
