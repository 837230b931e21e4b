"""The §11 chat features in our JSON client: typed commands out, feature events shown.

A typed line is chat unless it is one of the commands a triochat server answers (``/msg``,
``/nick``, ``/who``, ``/history``, ``/notices``); ``//text`` sends ``/text``. Any other line
starting with ``/`` is still chat, as it always was, so nothing changes for a user who does
not type these commands (against seed 003's server too).
"""

from __future__ import annotations

from triochat.events import (
    ClientEvent,
    HistoryReplay,
    Presence,
    PrivateMessage,
    PrivateSay,
    Renamed,
    Say,
    ServerEvent,
    Who,
)
from triochat.timestamps import display_time_of
from triochat.wire.features import feature_command, feature_lines


def typed_event(line: str, nickname: str, now: str) -> ClientEvent:
    """What a typed line asks for: a chat message, or a feature command.

    Raises:
        RemoteProtocolError: a feature command with missing or bad arguments (its usage).
    """
    stripped = line.strip()
    if line.startswith("//"):
        return Say(line[1:], nickname, now)
    if stripped.lower() == "/who":
        return Who()
    if stripped.startswith("/"):
        command = feature_command(line)
        if isinstance(command, PrivateSay):
            return PrivateSay(command.to, command.text, now)
        if command is not None:
            return command
    return Say(line, nickname, now)


def shown_lines(event: ServerEvent, now: str) -> list[str] | None:
    """The lines that show a §11 event (``None`` for any other event).

    A private message reads like a broadcast with ``(private)`` after the sender; history
    reads like broadcasts marked ``[history]``, so it never passes for a live message.
    """
    if isinstance(event, PrivateMessage):
        shown_time = display_time_of(event.timestamp, now)
        return [f"{shown_time} :: {event.sender} (private): {event.text}"]
    if isinstance(event, HistoryReplay):
        return [
            f"[history] {display_time_of(m.timestamp, now)} :: {m.sender}: {m.text}"
            for m in event.messages
        ]
    if isinstance(event, Renamed | Presence):
        return feature_lines(event)
    return None
