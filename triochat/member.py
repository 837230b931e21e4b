"""A member of the room, and the outbox its deliveries wait in.

The room knows a member only through :class:`Member`: a name, an address, a dialect, a
bounded outbox the room queues :class:`Delivery` objects into without waiting, and a way to
end its session (``evict``). How the bytes reach the peer is the member's writer's business
(``server/writer.py``).

Every outbox is bounded (:data:`OUTBOX_LIMIT`, the member's "SendQ" in IRC's words, Redis's
client output-buffer limit). A member whose outbox is full cannot keep up: it is evicted with
a reason instead of being allowed to slow the room down.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import trio

from triochat.events import Dialect, ServerEvent

OUTBOX_LIMIT = 1024
"""Messages queued for one member before it counts as unable to keep up and is evicted."""


class Encoder(Protocol):
    """What an outbox reader needs to turn an event into bytes: a server-role codec."""

    @property
    def dialect(self) -> Dialect: ...

    def send(self, event: ServerEvent) -> bytes: ...


class Delivery:
    """One event on its way to members, encoded at most once per dialect.

    The room puts the same :class:`Delivery` into every outbox, so a message to a thousand
    members of one dialect is encoded once, not a thousand times.
    """

    __slots__ = ("_encoded", "event")

    def __init__(self, event: ServerEvent) -> None:
        self.event = event
        # Keyed by the encoder's class: one class per dialect, and a class hashes in C, where
        # an Enum member's hash is Python code run once per delivery (9% of fan-out CPU).
        self._encoded: dict[type, bytes] = {}

    def encode_for(self, encoder: Encoder) -> bytes:
        """The bytes of this event in ``encoder``'s dialect."""
        key = type(encoder)
        data = self._encoded.get(key)
        if data is None:
            data = self._encoded[key] = encoder.send(self.event)
        return data


class EncodedPerMember(Delivery):
    """A delivery that encodes its event again for every member (no sharing between members
    of one dialect): only to measure what :class:`Delivery`'s sharing saves."""

    __slots__ = ()

    def encode_for(self, encoder: Encoder) -> bytes:
        """The bytes of this event in ``encoder``'s dialect, encoded afresh."""
        return encoder.send(self.event)


class Outbox(Protocol):
    """Where the room queues a member's deliveries: a bounded trio memory channel, or a
    member's writer (``server/writer.py``), which may write some at once instead."""

    def send_nowait(self, delivery: Delivery) -> None:
        """Queue ``delivery``; ``trio.WouldBlock`` when full, ``trio.ClosedResourceError``
        (or ``trio.BrokenResourceError``) when the member is gone."""
        ...

    def statistics(self) -> trio.MemoryChannelStatistics:
        """``max_buffer_size`` is the outbox's limit."""
        ...


@dataclass(eq=False)
class Member:
    """One participant, whatever its dialect.

    Attributes:
        name: the member's name, unique in the room ignoring case.
        ip: the peer's IP address.
        port: the peer's port.
        outbox: where the room queues deliveries (the member's writer drains it).
        on_evict: called with a reason when the member cannot keep up; it must end the
            member's session (cancel its scope) without blocking.
        client_id: what a JSON client calls its session ("-" for other dialects).
        receives_own: datagram members get their own messages back (seed 002).
        file_port: where the member serves and receives files (menu clients), if anywhere.
        dialect: how the member's bytes look (``/who`` shows it).
        last_active: when the member last sent anything, on the caller's clock (``/who``
            shows the idle time from it; the room reads no clock).
        wants_notices: the member is told about renames. Line members ask with ``/notices
            on``: the seeds' clients print every line they get.
        watches_presence: the member is told every join and leave (the page keeps a members
            list); the others are not, so joins cost nothing per silent member.
    """

    name: str
    ip: str
    port: int
    outbox: Outbox
    on_evict: Callable[[str], None]
    client_id: str = "-"
    receives_own: bool = False
    file_port: int | None = None
    dialect: Dialect = Dialect.LINE
    last_active: float = 0.0
    wants_notices: bool = False
    watches_presence: bool = False
    evicted_reason: str | None = field(default=None, init=False)

    def deliver_nowait(self, delivery: Delivery) -> bool:
        """Queue ``delivery``; False (and the member is evicted) if the outbox is full or gone."""
        if self.evicted_reason is not None:
            return False
        try:
            self.outbox.send_nowait(delivery)
        except (trio.WouldBlock, trio.BrokenResourceError, trio.ClosedResourceError) as error:
            self.refused(error)
            return False
        return True

    def refused(self, error: Exception) -> None:
        """The outbox refused a delivery with ``error``: evict the member, saying why."""
        if isinstance(error, trio.WouldBlock):
            limit = int(self.outbox.statistics().max_buffer_size)
            self.evict(f"Disconnected: you fell more than {limit} messages behind")
        else:
            self.evict("Disconnected")

    def evict(self, reason: str) -> None:
        """End this member's session with ``reason`` (first reason wins)."""
        if self.evicted_reason is None:
            self.evicted_reason = reason
            self.on_evict(reason)


def open_outbox(
    limit: int = OUTBOX_LIMIT,
) -> tuple[trio.MemorySendChannel[Delivery], trio.MemoryReceiveChannel[Delivery]]:
    """A new outbox for one member, holding at most ``limit`` deliveries."""
    return trio.open_memory_channel[Delivery](limit)
