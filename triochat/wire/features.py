"""How the §11 features (private messages, renames, presence, history) look on each wire.

Kept apart from the codecs, which call these for the events and commands they do not handle
themselves: one place says what a feature looks like in every dialect, both ways.
"""

from __future__ import annotations

from typing import Any

from triochat.events import (
    ChatMessage,
    ClientEvent,
    Dialect,
    HistoryReplay,
    HistoryRequest,
    MemberInfo,
    Presence,
    PrivateMessage,
    PrivateSay,
    Rename,
    Renamed,
    ServerEvent,
    SetNotices,
    Who,
)
from triochat.wire.common import RemoteProtocolError

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


# --- client -> server -------------------------------------------------------------------------

LINE_COMMANDS = "/msg <name> <text>, /nick <name>, /who, /history [n], /notices on|off, /quit"
"""The slash commands of the line dialect, for the help a bad command gets."""

MAX_HISTORY_REQUEST = 1_000_000
"""Largest count a client may ask for (the room caps it at what it keeps anyway)."""


def _count(word: str) -> int:
    try:
        count = int(word)
    except ValueError:
        count = -1
    if not 0 <= count <= MAX_HISTORY_REQUEST:
        raise RemoteProtocolError("Usage: /history [n], n a whole number (default: all kept)")
    return count


def feature_command(line: str) -> ClientEvent | None:
    """The event of a §11 slash command (``/msg``, ``/nick``, ``/history``, ``/notices``),
    ``None`` for any other line.

    Raises:
        RemoteProtocolError: (recoverable) the command's arguments are missing or bad.
    """
    command, _, rest = line.strip().partition(" ")
    command = command.lower()
    rest = rest.strip()
    if command == "/msg":
        to, _, text = rest.partition(" ")
        if not to or not text.strip():
            raise RemoteProtocolError("Usage: /msg <name> <text>")
        return PrivateSay(to, text.lstrip(" "))
    if command == "/nick":
        if not rest or " " in rest:
            raise RemoteProtocolError("Usage: /nick <new name> (no spaces)")
        return Rename(rest)
    if command == "/history":
        return HistoryRequest(_count(rest) if rest else None)
    if command == "/notices":
        if rest.lower() not in ("on", "off"):
            raise RemoteProtocolError("Usage: /notices on|off")
        return SetNotices(rest.lower() == "on")
    return None


def _json_text(obj: dict[str, Any], key: str) -> str:
    value = obj.get(key)
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise RemoteProtocolError(f"Field '{key}' of a {obj.get('type')!r} object must be a string")
    return str(value)


def json_history_count(obj: dict[str, Any], key: str) -> int | None:
    """An optional history count field (``"history": n`` when joining, ``"count"``)."""
    value = obj.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise RemoteProtocolError(f"Field '{key}' must be a whole number 0 or more")
    return min(value, MAX_HISTORY_REQUEST)


def feature_object(obj: dict[str, Any]) -> ClientEvent | None:
    """The event of a §11 JSON object (``private``, ``rename``, ``who``, ``history``,
    ``notices``), ``None`` for any other type.

    Raises:
        RemoteProtocolError: (recoverable) a field is missing or of the wrong type.
    """
    kind = obj.get("type")
    if kind == "private":
        timestamp = obj.get("timestamp")
        return PrivateSay(
            _json_text(obj, "to"),
            _json_text(obj, "message"),
            str(timestamp) if isinstance(timestamp, str | int | float) else None,
        )
    if kind == "rename":
        return Rename(_json_text(obj, "nickname"))
    if kind == "who":
        return Who()
    if kind == "history":
        return HistoryRequest(json_history_count(obj, "count"))
    if kind == "notices":
        return SetNotices(bool(obj.get("on", True)))
    return None


# --- the client role --------------------------------------------------------------------------


def client_feature_object(event: ClientEvent) -> dict[str, Any] | None:
    """The JSON object a client sends for a §11 event (``None`` for any other event)."""
    if isinstance(event, PrivateSay):
        obj: dict[str, Any] = {"type": "private", "to": event.to, "message": event.text}
        if event.timestamp is not None:
            obj["timestamp"] = event.timestamp
        return obj
    if isinstance(event, Rename):
        return {"type": "rename", "nickname": event.name}
    if isinstance(event, Who):
        return {"type": "who"}
    if isinstance(event, HistoryRequest):
        return (
            {"type": "history"}
            if event.count is None
            else {"type": "history", "count": event.count}
        )
    if isinstance(event, SetNotices):
        return {"type": "notices", "on": event.on}
    return None


def _loose(obj: dict[str, Any], key: str) -> str:
    value = obj.get(key)
    return "" if value is None else str(value)


def _idle(value: object) -> float:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0.0


def _dialect(value: object) -> Dialect:
    try:
        return Dialect(value)
    except ValueError:
        return Dialect.LINE


def feature_server_event(obj: dict[str, Any]) -> ServerEvent | None:
    """The event of a §11 object from the server, read liberally (a missing field is empty);
    ``None`` for any other type. Each ``history`` object is a replay of one message."""
    kind = obj.get("type")
    if kind == "private":
        timestamp = _loose(obj, "timestamp")
        return PrivateMessage(
            _loose(obj, "nickname"), _loose(obj, "to"), _loose(obj, "message"), timestamp, "", "", 0
        )
    if kind == "rename":
        return Renamed(_loose(obj, "old"), _loose(obj, "nickname"))
    if kind == "members":
        listed = obj.get("members")
        entries = listed if isinstance(listed, list) else []
        return Presence(
            tuple(
                MemberInfo(_loose(e, "nickname"), _dialect(e.get("dialect")), _idle(e.get("idle")))
                for e in entries
                if isinstance(e, dict)
            )
        )
    if kind == "history":
        timestamp = _loose(obj, "timestamp")
        message = ChatMessage(_loose(obj, "nickname"), _loose(obj, "message"), timestamp, "", "", 0)
        return HistoryReplay((message,))
    return None
