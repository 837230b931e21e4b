"""What a chatting member's events do: each becomes one room call, within the member's rate.

A :class:`Commands` serves one member of a TCP session. Only :meth:`Commands.handle` may wait,
and only to hold back a member that sends faster than ``message_rate`` allows: the reader
then stops reading, so TCP slows the sender down and nothing is dropped. Chat messages,
private messages and renames share the one rate (SPEC §11).
"""

from __future__ import annotations

from collections.abc import Callable

import trio

from triochat.clock import now_display
from triochat.events import (
    ClientEvent,
    FileRequest,
    Goodbye,
    Hello,
    HistoryRequest,
    Leave,
    PrivateSay,
    Rename,
    Say,
    ServerEvent,
    SetNotices,
    Who,
)
from triochat.room import Delivery, Member, NameTaken, NoSuchMember, Room
from triochat.server.config import ServerConfig
from triochat.server.ratelimit import TokenBucket
from triochat.text import InvalidName, name_key

RATED = (Say, PrivateSay, Rename)
"""Events that cost a token of the member's message rate."""


class Commands:
    """Carries out one member's events in the room.

    Args:
        room: the member's room.
        config: the message rate and burst.
        finish: ends the session with a last event (the ``Goodbye`` of a ``leave``).
        on_file_request: the file relay, if the server runs one.
    """

    __slots__ = ("_bucket", "_finish", "_on_file_request", "_room", "_throttled")

    def __init__(
        self,
        room: Room,
        config: ServerConfig,
        finish: Callable[[ServerEvent], None],
        on_file_request: Callable[[Member, FileRequest], None] | None = None,
    ) -> None:
        self._room = room
        self._finish = finish
        self._on_file_request = on_file_request
        self._bucket = (
            TokenBucket(config.message_rate, config.message_burst)
            if config.message_rate > 0
            else None
        )
        self._throttled = False

    async def handle(self, member: Member, event: ClientEvent) -> None:
        """Do what ``event`` asks; a message or rename may first wait for the member's rate."""
        if isinstance(event, RATED) and self._bucket is not None:
            await self._wait_for_token(member, self._bucket)
        # Any event counts as activity for /who, measured after the rate's wait.
        member.last_active = trio.current_time()
        self.dispatch(member, event)

    async def _wait_for_token(self, member: Member, bucket: TokenBucket) -> None:
        wait = bucket.delay(trio.current_time())
        if wait <= 0:
            self._throttled = False
            return
        if not self._throttled:
            # Said once per burst of delays, not once per delayed message.
            self._throttled = True
            self._room.tell(
                member,
                f"Slow down: at most {bucket.rate:g} messages per second; "
                "your messages are being delayed, none is lost",
            )
        await trio.sleep(wait)

    def dispatch(self, member: Member, event: ClientEvent) -> None:
        """Do what ``event`` asks, now (no rate limit)."""
        if isinstance(event, Say):
            if event.nickname is not None and name_key(event.nickname) != name_key(member.name):
                self._room.tell(
                    member,
                    f"Nickname {event.nickname!r} is not yours: you joined as {member.name!r}",
                    is_error=True,
                )
                return
            self._room.broadcast(member, event.text, event.timestamp, received_at=now_display())
        elif isinstance(event, PrivateSay):
            try:
                self._room.private(
                    member, event.to, event.text, event.timestamp, received_at=now_display()
                )
            except NoSuchMember as error:
                self._room.tell(member, str(error), is_error=True)
        elif isinstance(event, Rename):
            self._rename(member, event.name)
        elif isinstance(event, Leave):
            self._finish(Goodbye(member.name))
        elif isinstance(event, Who):
            member.deliver_nowait(Delivery(self._room.presence(trio.current_time())))
        elif isinstance(event, HistoryRequest):
            self._history(member, event.count)
        elif isinstance(event, SetNotices):
            member.wants_notices = event.on
            self._room.tell(member, f"Notices {'on' if event.on else 'off'}")
        elif isinstance(event, Hello):
            self._room.tell(member, f"You already joined as {member.name}", is_error=True)
        elif isinstance(event, FileRequest):
            if self._on_file_request is None:
                self._room.tell(member, "File transfer is not available here", is_error=True)
            else:
                self._on_file_request(member, event)

    def _rename(self, member: Member, new_name: str) -> None:
        try:
            self._room.rename(member, new_name)  # the room tells the member
        except (InvalidName, NameTaken) as error:
            self._room.tell(member, f"Cannot rename to {new_name!r}: {error}", is_error=True)

    def _history(self, member: Member, count: int | None) -> None:
        if self._room.history is None:
            self._room.tell(member, "History is off on this server", is_error=True)
        elif self._room.replay(member, count) == 0:
            self._room.tell(member, "No messages in history yet")
