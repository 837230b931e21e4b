"""The cluster room: the room sessions see, whose order is one Redis stream's.

:class:`ClusterRoom` keeps the :class:`~triochat.room.Room` interface, so sessions, the UDP
endpoint and the file relay cannot tell it from the room in memory. What changes is where a
message goes: :meth:`ClusterRoom.broadcast` does not fan out, it hands the message to the
link (``link.py``), which appends it to the room's stream (XADD). Every node reads the stream
in order and calls :meth:`ClusterRoom.apply`, which fans out to that node's own members in
one synchronous loop, as the room in memory does. Every member of every node therefore sees
the stream's order; a message is accepted once Redis has it.

Names are claimed in Redis before a member joins (:meth:`ClusterRoom.reserve`, awaited by
registration); a datagram member, which registers synchronously, joins at once and is
claimed right after, and evicted in the rare case another node won the name meanwhile. The
names of other nodes' members are kept here from ``join``/``leave`` entries and each
heartbeat, so ``/who`` and :meth:`find` stay synchronous. A member of another node is
represented by a :class:`~triochat.room.Member` whose outbox forwards to its node.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

import trio

from triochat.cluster.records import (
    DIRECT,
    JOIN,
    LEAVE,
    MSG,
    BadRecord,
    DirectRecord,
    MemberRecord,
    MessageRecord,
    can_travel,
)
from triochat.events import ChatMessage, Dialect, MemberInfo, MemberJoined, MemberLeft, Presence
from triochat.history import History
from triochat.room import OUTBOX_LIMIT, Delivery, Member, NameTaken, Room, RoomObserver
from triochat.text import name_key

logger = logging.getLogger(__name__)

UNREACHABLE = "Cannot reach the chat cluster"
LOST_NOTICE = (
    "The chat cluster is unreachable: you stay connected, but messages cannot be sent "
    "until it is back"
)
BACK_NOTICE = "The chat cluster is reachable again: messages can be sent"
NOT_SENT = "Message not sent: the chat cluster is unreachable; send it again when it is back"
MAYBE_NOT_SENT = (
    "Message perhaps not sent: the connection to the chat cluster broke while sending it"
)
BUSY = "Message not sent: the chat cluster is too busy; send it again"


# --- what the room asks of the link -----------------------------------------------------------


@dataclass(frozen=True)
class PublishMessage:
    """Append an accepted message to the stream."""

    record: MessageRecord
    sender: Member


@dataclass(frozen=True)
class ClaimName:
    """Claim a name for a member already in this node's room (a datagram member)."""

    record: MemberRecord
    member: Member


@dataclass(frozen=True)
class ReleaseName:
    """Give up a name (the member left)."""

    record: MemberRecord


@dataclass(frozen=True)
class SendDirect:
    """Deliver an event to a member of another node."""

    record: DirectRecord


Operation = PublishMessage | ClaimName | ReleaseName | SendDirect


class LinkDown(Exception):
    """Redis cannot be reached now."""


class Link(Protocol):
    """The Redis side, as the room sees it (``link.py``)."""

    @property
    def up(self) -> bool:
        """True while Redis answers."""
        ...

    async def claim(self, record: MemberRecord) -> bool:
        """Claim ``record.name`` for ``record.node``: True if it won; raises LinkDown."""
        ...

    def submit(self, operation: Operation) -> None:
        """Queue ``operation`` for the link, in order; ``trio.WouldBlock`` when full."""
        ...


# --- members of other nodes -------------------------------------------------------------------


class _RemoteOutbox:
    """The outbox of a member of another node: deliveries travel to it through the stream."""

    def __init__(self, room: ClusterRoom, record: MemberRecord) -> None:
        self._room = room
        self._record = record

    def send_nowait(self, delivery: Delivery) -> None:
        event = delivery.event
        if not can_travel(event) or not self._room.link.up:
            raise trio.ClosedResourceError("cannot reach that member's node")
        record = DirectRecord(self._record.node, self._record.name, self._record.token, event)
        try:
            self._room.link.submit(SendDirect(record))
        except trio.WouldBlock:
            # Not this member's fault: it must not count as one that cannot keep up.
            raise trio.ClosedResourceError("the link to that member's node is busy") from None

    def statistics(self) -> trio.MemoryChannelStatistics:
        return _NO_OUTBOX_STATISTICS


_NO_OUTBOX_STATISTICS = trio.open_memory_channel[None](0)[0].statistics()
"""What a remote member's outbox reports: nothing queued here."""


def _ignore(reason: str) -> None:
    """Another node ends its own members' sessions."""


def remote_member(room: ClusterRoom, record: MemberRecord) -> Member:
    """A stand-in for a member of another node (the sender of a message, a file owner)."""
    return Member(
        name=record.name,
        ip=record.ip,
        port=record.port,
        outbox=_RemoteOutbox(room, record),
        on_evict=_ignore,
        client_id=record.client_id,
        file_port=record.file_port,
    )


# --- the room ---------------------------------------------------------------------------------


class ClusterRoom(Room):
    """A room shared by every node of a cluster; see the module docstring.

    Args:
        node: this node's id, unique in the cluster.
        link: the Redis side.
        observer: the console (it prints what this node sees).
        outbox_limit: deliveries queued per local member before it is evicted.
    """

    def __init__(
        self,
        node: str,
        link: Link,
        observer: RoomObserver | None = None,
        outbox_limit: int = OUTBOX_LIMIT,
        *,
        encode_once: bool = True,
        history: History | None = None,
    ) -> None:
        super().__init__(observer, outbox_limit, encode_once=encode_once, history=history)
        self.node = node
        self.link = link
        self._tokens: dict[str, str] = {}  # name key -> claim token, for local members
        self._reserved: dict[str, Member] = {}  # claimed (or being claimed), not yet joined
        self._remote: dict[str, MemberRecord] = {}  # other nodes' members, by name key
        # When the stream last changed each remote name (a count of joins and leaves seen),
        # so that a heartbeat's roster, taken before, cannot undo what the stream said since.
        self._roster_changes = 0
        self._changed_at: dict[str, int] = {}

    # --- names -------------------------------------------------------------------------------

    def names(self, limit: int | None = None) -> list[str]:
        """Names of this node's members, then of the other nodes' (the first ``limit``)."""
        names = itertools.chain(
            (member.name for member in self._members.values()),
            (record.name for record in self._remote.values()),
        )
        # islice, not a whole list cut short: a join asks for a few names of a large room.
        return list(names if limit is None else itertools.islice(names, limit))

    def check_available(self, name: str) -> None:
        """Raise InvalidName or NameTaken as far as this node knows (Redis decides last)."""
        super().check_available(name)
        key = name_key(name)
        if key in self._remote or key in self._reserved:
            raise NameTaken("Nickname already in use")

    def find(self, name: str) -> Member | None:
        """The member called ``name`` on any node (a stand-in for another node's)."""
        key = name_key(name)
        member = self._members.get(key)
        if member is not None:
            return member
        record = self._remote.get(key)
        return None if record is None else remote_member(self, record)

    def _record_of(self, member: Member, token: str) -> MemberRecord:
        return MemberRecord(
            name=member.name,
            node=self.node,
            token=token,
            ip=member.ip,
            port=member.port,
            client_id=member.client_id,
            file_port=member.file_port,
            dialect=member.dialect.value,
        )

    def presence(self, now: float) -> Presence:
        """This node's members with their dialect and idle time, then the other nodes'
        members with their dialect (their idle time is their own node's: shown as 0)."""
        local = super().presence(now).members
        remote = []
        for record in self._remote.values():
            try:
                dialect = Dialect(record.dialect)
            except ValueError:
                dialect = Dialect.LINE
            remote.append(MemberInfo(record.name, dialect, 0.0))
        return Presence(local + tuple(remote))

    def rename(self, member: Member, new_name: str) -> str:
        """Rename at once as far as this node knows, then claim the new name in Redis and
        give the old one back; if another node won the new name meanwhile, the member is
        told and disconnected (as a datagram member whose join lost its claim).

        Raises:
            InvalidName: the new name breaks the naming rules.
            NameTaken: someone on some node has it as far as this node knows, or Redis is
                unreachable.
        """
        old_key, new_key = name_key(member.name), name_key(new_name)
        if new_key != old_key:
            if new_key in self._remote or new_key in self._reserved:
                raise NameTaken("Nickname already in use")
            if not self.link.up:
                raise NameTaken(f"{UNREACHABLE}: try again shortly")
        old_record = self._record_of(member, self._tokens.get(old_key, ""))
        old = super().rename(member, new_name)
        token = secrets.token_hex(8)
        self._tokens.pop(old_key, None)
        self._tokens[new_key] = token
        try:
            self.link.submit(ClaimName(self._record_of(member, token), member))
            if new_key != old_key and old_record.token:
                self.link.submit(ReleaseName(old_record))
        except trio.WouldBlock:
            # The heartbeat claims the new name and sweeps the old one.
            logger.info("rename of %r left to the heartbeat", old)
        return old

    async def reserve(self, member: Member) -> None:
        """Claim ``member.name`` in Redis, so that :meth:`join` may follow at once.

        Raises:
            InvalidName: the name breaks the naming rules.
            NameTaken: someone on some node has it, or Redis cannot be reached to ask.
        """
        await trio.lowlevel.checkpoint()
        self.check_available(member.name)
        if self.closing:
            raise NameTaken("Server is shutting down")
        if not self.link.up:
            raise NameTaken(f"{UNREACHABLE}: try again shortly")
        key = name_key(member.name)
        token = secrets.token_hex(8)
        # Held from now on, so a second local claim of the name is refused here, and the
        # heartbeat does not sweep this claim away before the member has joined.
        self._reserved[key] = member
        self._tokens[key] = token
        won = False
        reason = "Nickname already in use"
        try:
            won = await self.link.claim(self._record_of(member, token))
        except LinkDown:
            reason = f"{UNREACHABLE}: try again shortly"
        finally:
            # Refused, unreachable, or cancelled (the registration timed out): the name is
            # not held here any more; a claim that reached Redis is swept by the heartbeat.
            if not won and self._reserved.get(key) is member:
                del self._reserved[key]
                self._tokens.pop(key, None)
        if not won:
            raise NameTaken(reason)

    def join(self, member: Member) -> None:
        """Add ``member``: at once if :meth:`reserve` claimed its name, else claim it now.

        Raises:
            InvalidName: the name breaks the naming rules.
            NameTaken: the name is taken as far as this node knows, or Redis is unreachable.
        """
        key = name_key(member.name)
        if self._reserved.get(key) is member:
            del self._reserved[key]
            if self.closing:
                # The heartbeat would sweep the claim anyway; the release is only sooner.
                with contextlib.suppress(trio.WouldBlock):
                    self.link.submit(ReleaseName(self._record_of(member, self._tokens.pop(key))))
                raise NameTaken("Server is shutting down")
        else:
            # A datagram member: registration cannot wait, so the claim follows the join.
            self.check_available(member.name)
            if self.closing:
                raise NameTaken("Server is shutting down")
            if not self.link.up:
                raise NameTaken(f"{UNREACHABLE}: try again shortly")
            token = secrets.token_hex(8)
            try:
                self.link.submit(ClaimName(self._record_of(member, token), member))
            except trio.WouldBlock:
                raise NameTaken(f"{UNREACHABLE}: try again shortly") from None
            self._tokens[key] = token
        self._admit(member)

    def leave(self, member: Member) -> None:
        """Remove ``member`` if it is here, and give its name back to the cluster."""
        key = name_key(member.name)
        if self._members.get(key) is not member:
            return
        super().leave(member)
        token = self._tokens.pop(key, None)
        if token is not None:
            try:
                self.link.submit(ReleaseName(self._record_of(member, token)))
            except trio.WouldBlock:
                # The next heartbeat sweeps claims of this node that no member holds.
                logger.info("release of %r left to the heartbeat", member.name)

    def claim_lost(self, record: MemberRecord) -> None:
        """Another node won the name of a member of this node (one that joined before its
        claim was made, or whose claim Redis lost): that member must go."""
        key = name_key(record.name)
        member = self._members.get(key)
        if member is not None and self._tokens.get(key) == record.token:
            del self._tokens[key]
            member.evict("Nickname already in use (on another node)")

    def local_claims(self) -> list[MemberRecord]:
        """The claims this node holds: its members and the names being claimed."""
        members = list(self._members.items()) + list(self._reserved.items())
        return [
            self._record_of(member, self._tokens[key])
            for key, member in members
            if key in self._tokens
        ]

    def roster_mark(self) -> int:
        """A mark to pass to :meth:`roster_refreshed` with the answer of a heartbeat sent now."""
        return self._roster_changes

    def roster_refreshed(self, claims: Iterable[MemberRecord], mark: int) -> list[MemberRecord]:
        """Every live claim, from a heartbeat sent at ``mark``: take the other nodes' ones,
        except for names whose ``join`` or ``leave`` this node read after ``mark`` (the stream
        is newer than the heartbeat's answer there).

        Returns the claims of this node's members that Redis no longer has (it restarted
        empty, or this node's lease ran out while it could not reach Redis): to make again.
        """
        remote: dict[str, MemberRecord] = {}
        held: set[str] = set()
        for record in claims:
            key = name_key(record.name)
            if record.node == self.node:
                held.add(key)
            elif self._changed_at.get(key, 0) <= mark:
                remote[key] = record
        for key, changed in self._changed_at.items():
            if changed > mark and key in self._remote:
                remote[key] = self._remote[key]
        # A node that died leaves no stream entries: its members go when their claims do.
        for key in self._remote.keys() - remote.keys():
            self._tell_watchers(MemberLeft(self._remote[key].name))
        for key in remote.keys() - self._remote.keys():
            self._tell_watchers(MemberJoined(remote[key].name))
        self._remote = remote
        self._changed_at = {k: v for k, v in self._changed_at.items() if v > mark}
        return [record for record in self.local_claims() if name_key(record.name) not in held]

    # --- messages ----------------------------------------------------------------------------

    def broadcast(
        self, sender: Member, text: str, timestamp: str | None = None, *, received_at: str
    ) -> ChatMessage:
        """Send ``text`` to the stream; members (the sender's node's too) get it from there.

        If Redis cannot be reached, the sender is told at once that the message was not sent.
        """
        message = self._message_from(sender, text, timestamp, received_at)
        if not self.link.up:
            self.tell(sender, NOT_SENT, is_error=True)
            return message
        record = MessageRecord(
            node=self.node,
            sender=sender.name,
            ip=sender.ip,
            port=sender.port,
            client_id=sender.client_id,
            text=message.text,
            timestamp=message.timestamp,
            display_time=message.display_time,
        )
        try:
            self.link.submit(PublishMessage(record, sender))
        except trio.WouldBlock:
            self.tell(sender, BUSY, is_error=True)
        return message

    def publish_failed(self, operation: Operation) -> None:
        """The link broke while ``operation`` was on its way."""
        if (
            isinstance(operation, PublishMessage)
            and self._members.get(name_key(operation.sender.name)) is operation.sender
        ):
            self.tell(operation.sender, MAYBE_NOT_SENT, is_error=True)

    def publish_dropped(self, operation: Operation) -> None:
        """``operation`` was still queued when the link broke, and will not be sent."""
        if (
            isinstance(operation, PublishMessage)
            and self._members.get(name_key(operation.sender.name)) is operation.sender
        ):
            self.tell(operation.sender, NOT_SENT, is_error=True)

    def apply(self, kind: str, data: str) -> None:
        """One stream entry, in stream order: fan a message out to this node's members, or
        follow another node's joins and leaves, or deliver a direct event."""
        try:
            if kind == MSG:
                self._fan_out_record(MessageRecord.loads(data))
            elif kind == JOIN:
                record = MemberRecord.loads(data)
                if record.node != self.node:
                    key = name_key(record.name)
                    if key not in self._remote:
                        self._tell_watchers(MemberJoined(record.name))
                    self._remote[key] = record
                    self._roster_changed(key)
            elif kind == LEAVE:
                record = MemberRecord.loads(data)
                key = name_key(record.name)
                known = self._remote.get(key)
                if known is not None and known.token == record.token:
                    del self._remote[key]
                    self._roster_changed(key)
                    self._tell_watchers(MemberLeft(record.name))
            elif kind == DIRECT:
                self._deliver_direct(DirectRecord.loads(data))
            else:
                logger.warning("stream entry of unknown kind %r skipped", kind)
        except BadRecord as error:
            logger.warning("stream entry skipped: %s", error)

    def preload_history(self, messages: Iterable[str]) -> None:
        """Start this node's history with the stream's last messages (JSON, oldest first)."""
        if self.history is None:
            return
        for data in messages:
            try:
                record = MessageRecord.loads(data)
            except BadRecord as error:
                logger.warning("history entry skipped: %s", error)
                continue
            self.history.record(_message_of(record))

    def _roster_changed(self, key: str) -> None:
        self._roster_changes += 1
        self._changed_at[key] = self._roster_changes

    def _fan_out_record(self, record: MessageRecord) -> None:
        message = _message_of(record)
        local = self._members.get(name_key(record.sender)) if record.node == self.node else None
        sender = local or remote_member(
            self,
            MemberRecord(record.sender, record.node, "", record.ip, record.port, record.client_id),
        )
        self._fan_out(message, sender)

    def _deliver_direct(self, record: DirectRecord) -> None:
        if record.node != self.node:
            return
        key = name_key(record.to)
        member = self._members.get(key)
        if member is not None and self._tokens.get(key) == record.token:
            member.deliver_nowait(Delivery(record.event))

    # --- the link's state --------------------------------------------------------------------

    def tell_everyone(self, text: str, *, is_error: bool = False) -> None:
        """A notice to every member of this node."""
        for member in list(self._members.values()):
            self.tell(member, text, is_error=is_error)


def _message_of(record: MessageRecord) -> ChatMessage:
    return ChatMessage(
        sender=record.sender,
        text=record.text,
        timestamp=record.timestamp,
        display_time=record.display_time,
        sender_ip=record.ip,
        sender_port=record.port,
    )
