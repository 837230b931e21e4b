"""The room: who is here, and total-order fan-out of every accepted message.

Fan-out is synchronous. :meth:`Room.broadcast` calls ``send_nowait`` on each member's bounded
outbox in one loop; Trio runs one task at a time, so the loop is atomic and every member sees
every message in one and the same order, the order in which the room accepted them.

Every outbox is bounded (see ``member.py``): a member whose outbox is full cannot keep up and
is evicted with a reason instead of being allowed to slow the room down, and counted in
:meth:`Room.statistics`. Nobody ever waits for the slowest member.

Besides fan-out the room carries the chat features that need its registry of names (SPEC
§11): private messages to one member, atomic renames, presence, and replays of its history.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol

import trio

from triochat.events import (
    ChatMessage,
    HistoryReplay,
    MemberInfo,
    MemberJoined,
    MemberLeft,
    Notice,
    Presence,
    PrivateMessage,
    Renamed,
    ServerEvent,
)
from triochat.history import History
from triochat.member import (
    OUTBOX_LIMIT,
    Delivery,
    EncodedPerMember,
    Encoder,
    Member,
    Outbox,
    open_outbox,
)
from triochat.text import InvalidName, check_name, escape_controls, name_key
from triochat.timestamps import display_time_of


class NameTaken(ValueError):
    """The name is already in use in the room (case-insensitively)."""


class NoSuchMember(LookupError):
    """Nobody in the room has that name."""


class RoomObserver(Protocol):
    """Hears about joins, leaves and messages: the server console is one."""

    def member_joined(self, member: Member) -> None: ...

    def member_left(self, member: Member) -> None: ...

    def message_accepted(
        self, message: ChatMessage, sender: Member, recipients: list[str]
    ) -> None: ...

    def private_sent(self, message: PrivateMessage) -> None: ...

    def member_renamed(self, member: Member, old: str) -> None: ...


class SilentObserver:
    """An observer that records nothing."""

    def member_joined(self, member: Member) -> None:
        """Ignore."""

    def member_left(self, member: Member) -> None:
        """Ignore."""

    def message_accepted(self, message: ChatMessage, sender: Member, recipients: list[str]) -> None:
        """Ignore."""

    def private_sent(self, message: PrivateMessage) -> None:
        """Ignore."""

    def member_renamed(self, member: Member, old: str) -> None:
        """Ignore."""


@dataclass(frozen=True)
class RoomStatistics:
    """Counters for monitoring and benchmarks."""

    members: int
    joined: int
    left: int
    messages: int
    deliveries: int
    evictions: int
    private_messages: int = 0
    renames: int = 0


class Room:
    """Members by name, and total-order fan-out into their bounded outboxes.

    All methods are synchronous: nothing here ever waits, so nothing here can be stalled by a
    member. Sessions do the waiting, each on its own member's socket.
    """

    def __init__(
        self,
        observer: RoomObserver | None = None,
        outbox_limit: int = OUTBOX_LIMIT,
        *,
        encode_once: bool = True,
        history: History | None = None,
    ) -> None:
        self.outbox_limit = outbox_limit
        self.history = history
        self._private = 0
        self._renames = 0
        self._delivery = Delivery if encode_once else EncodedPerMember
        self._members: dict[str, Member] = {}
        # Members told of joins and leaves, kept apart so a join costs one delivery per
        # watcher, not a test per member.
        self._watchers: dict[str, Member] = {}
        self._observer: RoomObserver = observer or SilentObserver()
        self._joined = 0
        self._left = 0
        self._messages = 0
        self._deliveries = 0
        self._evictions = 0
        self._closing = False

    def __len__(self) -> int:
        return len(self._members)

    def __iter__(self) -> Iterator[Member]:
        return iter(list(self._members.values()))

    def open_outbox(
        self,
    ) -> tuple[trio.MemorySendChannel[Delivery], trio.MemoryReceiveChannel[Delivery]]:
        """A new outbox for a member of this room, bounded by :attr:`outbox_limit`."""
        return open_outbox(self.outbox_limit)

    def names(self, limit: int | None = None) -> list[str]:
        """Members' names in join order (the first ``limit`` of them, if given)."""
        names = (member.name for member in self._members.values())
        return list(names if limit is None else itertools.islice(names, limit))

    def check_available(self, name: str) -> None:
        """Raise if ``name`` could not join now.

        Raises:
            InvalidName: the name breaks the naming rules.
            NameTaken: someone in the room already has it (ignoring case).
        """
        check_name(name)
        if name_key(name) in self._members:
            raise NameTaken("Nickname already in use")

    async def reserve(self, member: Member) -> None:
        """Make sure ``member`` may join under its name; :meth:`join` follows at once.

        A checkpoint. In memory this only checks; a room shared by several processes
        (``triochat.cluster``) claims the name there, which takes a round trip.

        Raises:
            InvalidName: the name breaks the naming rules.
            NameTaken: someone in the room already has it (ignoring case).
        """
        await trio.lowlevel.checkpoint()
        self.check_available(member.name)

    def join(self, member: Member) -> None:
        """Add ``member`` to the room.

        Raises:
            InvalidName: the name breaks the naming rules.
            NameTaken: someone in the room already has it (ignoring case).
        """
        self.check_available(member.name)
        if self._closing:
            raise NameTaken("Server is shutting down")
        self._admit(member)

    def _admit(self, member: Member) -> None:
        """Seat ``member``, whose name is free: the members, the count, the console, and the
        members that watch presence (the pages)."""
        key = name_key(member.name)
        self._members[key] = member
        self._joined += 1
        self._observer.member_joined(member)
        self._tell_watchers(MemberJoined(member.name))
        if member.watches_presence:
            self._watchers[key] = member

    def leave(self, member: Member) -> None:
        """Remove ``member`` if it is here (calling it twice is harmless)."""
        key = name_key(member.name)
        if self._members.get(key) is member:
            del self._members[key]
            self._watchers.pop(key, None)
            self._left += 1
            if member.evicted_reason is not None and not self._closing:
                self._evictions += 1
            self._observer.member_left(member)
            if not self._closing:
                self._tell_watchers(MemberLeft(member.name))

    def _tell_watchers(self, event: ServerEvent) -> None:
        if self._watchers:
            delivery = self._delivery(event)
            for watcher in list(self._watchers.values()):
                watcher.deliver_nowait(delivery)

    def find(self, name: str) -> Member | None:
        """The member called ``name`` (ignoring case), if any."""
        return self._members.get(name_key(name))

    def broadcast(
        self, sender: Member, text: str, timestamp: str | None = None, *, received_at: str
    ) -> ChatMessage:
        """Accept ``text`` from ``sender`` and queue it for every member, in one atomic loop.

        Control characters are escaped here, once, so no dialect can forge lines for another.

        Args:
            sender: the member who sent it.
            text: the message.
            timestamp: the sender's own timestamp, kept as sent, if any.
            received_at: the caller's clock (``YYYY-MM-DD HH:MM:SS``): it stands in for a
                timestamp that is missing or unreadable. The room reads no clock itself.

        Returns:
            The accepted message as recipients see it.
        """
        message = self._message_from(sender, text, timestamp, received_at)
        self._fan_out(message, sender)
        return message

    @staticmethod
    def _message_from(
        sender: Member, text: str, timestamp: str | None, received_at: str
    ) -> ChatMessage:
        """The message as recipients see it (see :meth:`broadcast`)."""
        display_time = display_time_of(timestamp, received_at) if timestamp else received_at
        return ChatMessage(
            sender=sender.name,
            text=escape_controls(text),
            timestamp=timestamp if timestamp else received_at,
            display_time=display_time,
            sender_ip=sender.ip,
            sender_port=sender.port,
        )

    def _fan_out(self, message: ChatMessage, sender: Member) -> None:
        """Queue ``message`` for every member but its sender, in one loop; tell the observer.

        A room shared by several processes (``triochat.cluster``) calls this for each message
        in the shared order, with a stand-in for a sender of another process.
        """
        delivery = self._delivery(message)
        recipients: list[str] = []
        # Member.deliver_nowait, inline: this loop runs once per member for every message.
        for member in list(self._members.values()):
            if (member is sender and not member.receives_own) or member.evicted_reason is not None:
                continue
            try:
                member.outbox.send_nowait(delivery)
            except (trio.WouldBlock, trio.BrokenResourceError, trio.ClosedResourceError) as error:
                member.refused(error)
                continue
            recipients.append(member.name)  # a datagram sender is its own recipient
        self._messages += 1
        self._deliveries += len(recipients)
        if self.history is not None:
            self.history.record(message)
        self._observer.message_accepted(message, sender, recipients)

    def private(
        self, sender: Member, to: str, text: str, timestamp: str | None = None, *, received_at: str
    ) -> PrivateMessage:
        """Queue ``text`` for the one member called ``to``; it never enters history.

        Args: as :meth:`broadcast`, with ``to`` the recipient's name (ignoring case).

        Raises:
            NoSuchMember: nobody here is called ``to``.
        """
        recipient = self.find(to)
        if recipient is None:
            raise NoSuchMember(f"No member called {to!r} here")
        public = self._message_from(sender, text, timestamp, received_at)
        message = PrivateMessage(
            sender=public.sender,
            recipient=recipient.name,
            text=public.text,
            timestamp=public.timestamp,
            display_time=public.display_time,
            sender_ip=public.sender_ip,
            sender_port=public.sender_port,
        )
        recipient.deliver_nowait(Delivery(message))
        self._private += 1
        self._observer.private_sent(message)
        return message

    def rename(self, member: Member, new_name: str) -> str:
        """Call ``member`` ``new_name`` from now on, in one synchronous step.

        Nothing can run between freeing the old name and taking the new one, so there is no
        moment when both or neither is taken. The member and those who want notices are
        told. A change of case only is allowed (the key stays the same).

        Returns:
            The old name.

        Raises:
            InvalidName: the new name breaks the naming rules.
            NameTaken: someone else has it (ignoring case).
        """
        old = member.name
        old_key, new_key = name_key(old), name_key(new_name)
        if self._members.get(old_key) is not member:
            raise NameTaken("You are not in the room")
        check_name(new_name)
        if new_key != old_key and new_key in self._members:
            raise NameTaken("Nickname already in use")
        member.name = new_name
        if new_key != old_key:
            # Rebuilt rather than moved to the end, so the member keeps its place in join
            # order (/who, Broadcasted:). Renames are rare and rate-limited: O(members) is fine.
            self._members = {
                (new_key if key == old_key else key): value for key, value in self._members.items()
            }
            if self._watchers.pop(old_key, None) is not None:
                self._watchers[new_key] = member
        self._renames += 1
        self._observer.member_renamed(member, old)
        notice = Delivery(Renamed(old, new_name))
        # The member itself is always told: it is the confirmation (a JSON client learns
        # the nickname its messages must now carry).
        for other in list(self._members.values()):
            if other is member or other.wants_notices:
                other.deliver_nowait(notice)
        return old

    def presence(self, now: float) -> Presence:
        """Every member with its dialect and idle time at ``now`` (the caller's clock)."""
        return Presence(
            tuple(
                MemberInfo(member.name, member.dialect, max(0.0, now - member.last_active))
                for member in self._members.values()
            )
        )

    def replay(self, member: Member, count: int | None = None) -> int:
        """Queue the last ``count`` messages for ``member``; how many (0 without history)."""
        if self.history is None:
            return 0
        messages = self.history.recent(count)
        if messages:
            member.deliver_nowait(Delivery(HistoryReplay(messages)))
        return len(messages)

    def tell(self, member: Member, text: str, *, is_error: bool = False) -> None:
        """Queue a notice for one member, behind everything already queued for it.

        The member stays in the room, so an error told this way is recoverable.
        """
        member.deliver_nowait(Delivery(Notice(text, is_error=is_error, recoverable=True)))

    def close(self, reason: str) -> None:
        """End every member's session with ``reason`` (server shutdown); nobody may join."""
        self._closing = True
        for member in list(self._members.values()):
            member.evict(reason)

    @property
    def closing(self) -> bool:
        """True once :meth:`close` was called."""
        return self._closing

    def statistics(self) -> RoomStatistics:
        """Current counters."""
        return RoomStatistics(
            members=len(self._members),
            joined=self._joined,
            left=self._left,
            messages=self._messages,
            deliveries=self._deliveries,
            evictions=self._evictions,
            private_messages=self._private,
            renames=self._renames,
        )


__all__ = [
    "OUTBOX_LIMIT",
    "Delivery",
    "EncodedPerMember",
    "Encoder",
    "InvalidName",
    "Member",
    "NameTaken",
    "NoSuchMember",
    "Outbox",
    "Room",
    "RoomObserver",
    "RoomStatistics",
    "open_outbox",
]
