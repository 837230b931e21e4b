"""The room's memory of recent messages: the last ``limit`` chat messages, oldest first.

Pure and synchronous, like the room: :meth:`History.record` is called inside the broadcast
loop's step, once per message (not per recipient), and costs one ``deque.append``. Keeping
history somewhere durable is a *sink*'s job (``server/history_db.py`` for SQLite): the room
hands it each message without waiting, and the sink writes in batches off the event loop.
Private messages never come here: only :meth:`Room.broadcast` records.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable

from triochat.events import ChatMessage

DEFAULT_HISTORY = 100
"""Messages a room keeps unless told otherwise (``--history N``)."""

HistorySink = Callable[[ChatMessage], None]
"""Takes each recorded message without blocking (a durable store's queue)."""


class History:
    """The last ``limit`` messages in the order the room accepted them.

    Args:
        limit: how many to keep (at least 1; a room without history has no ``History``).
        sink: also handed every recorded message, if given.
        initial: messages from before this process (a durable store), oldest first.
    """

    __slots__ = ("_messages", "_sink", "limit")

    def __init__(
        self,
        limit: int = DEFAULT_HISTORY,
        sink: HistorySink | None = None,
        initial: Iterable[ChatMessage] = (),
    ) -> None:
        if limit < 1:
            raise ValueError("a history keeps at least one message")
        self.limit = limit
        self._messages: deque[ChatMessage] = deque(initial, maxlen=limit)
        self._sink = sink

    def __len__(self) -> int:
        return len(self._messages)

    def record(self, message: ChatMessage) -> None:
        """Keep ``message``, forgetting the oldest one past the limit."""
        self._messages.append(message)
        if self._sink is not None:
            self._sink(message)

    def recent(self, count: int | None = None) -> tuple[ChatMessage, ...]:
        """The last ``count`` messages (all kept if ``None``), oldest first."""
        if count is None or count >= len(self._messages):
            return tuple(self._messages)
        if count <= 0:
            return ()
        return tuple(self._messages)[-count:]
