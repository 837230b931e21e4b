"""How the §11 events (private messages, renames, presence, history) look in each dialect.

Kept apart from the codecs, which call these for the events they do not render themselves:
one place says what a feature looks like on every wire.
"""

from __future__ import annotations

from typing import Any

from triochat.events import (
    ChatMessage,
    HistoryReplay,
    MemberInfo,
    Presence,
    PrivateMessage,
    Renamed,
    ServerEvent,
)

FeatureEvent = PrivateMessage | Renamed | Presence | HistoryReplay


def format_idle(seconds: float) -> str:
    """``5s``, ``3m07s``, ``2h05m``, ``3d04h``: short, and exact enough for a glance."""
    whole = int(seconds)
    if whole < 60:
        return f"{whole}s"
    minutes, secs = divmod(whole, 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours}h{minutes:02d}m"
    days, hours = divmod(hours, 24)
    return f"{days}d{hours:02d}h"


def describe_member(info: MemberInfo) -> str:
    """``alice (line, idle 5s)``."""
    return f"{info.name} ({info.dialect.value}, idle {format_idle(info.idle_seconds)})"


def history_line(message: ChatMessage) -> str:
    """A remembered message, dated so that it does not read as a live one."""
    return f"[{message.display_time}] {message.sender}: {message.text}"


def feature_lines(event: ServerEvent, *, tagged: bool = False) -> list[str] | None:
    """The lines that show ``event`` to a line member (``None`` if it is no §11 event).

    ``tagged``: the port-tagged dialect (seed 004), which puts no space after the colon.
    Every line but a private message starts ``*** `` like any other server notice.
    """
    if isinstance(event, PrivateMessage):
        gap = "" if tagged else " "
        return [f"{event.sender} (private):{gap}{event.text}"]
    if isinstance(event, Renamed):
        return [f"*** {event.old} is now {event.new}"]
    if isinstance(event, Presence):
        # The first line is what /who always said; the details follow, one member a line.
        names = ", ".join(info.name for info in event.members)
        return [f"*** Members: {names}"] + [
            f"***   {describe_member(info)}" for info in event.members
        ]
    if isinstance(event, HistoryReplay):
        count = len(event.messages)
        return [
            f"*** History: the last {count} message{'s' if count != 1 else ''}",
            *(f"*** {history_line(message)}" for message in event.messages),
            "*** End of history",
        ]
    return None


def feature_objects(event: ServerEvent) -> list[dict[str, Any]] | None:
    """The JSON objects that show ``event`` to a JSON member (``None`` if it is no §11 event).

    Seed-003 clients ignore types they do not know, so none of these disturbs them.
    """
    if isinstance(event, PrivateMessage):
        return [
            {
                "type": "private",
                "nickname": event.sender,
                "to": event.recipient,
                "message": event.text,
                "timestamp": event.timestamp,
            }
        ]
    if isinstance(event, Renamed):
        return [{"type": "rename", "old": event.old, "nickname": event.new}]
    if isinstance(event, Presence):
        members = [
            {"nickname": i.name, "dialect": i.dialect.value, "idle": int(i.idle_seconds)}
            for i in event.members
        ]
        return [{"type": "members", "members": members}]
    if isinstance(event, HistoryReplay):
        # One object per message: a whole history in one object could pass a client's
        # line limit.
        return [
            {
                "type": "history",
                "nickname": message.sender,
                "message": message.text,
                "timestamp": message.timestamp,
            }
            for message in event.messages
        ]
    return None
