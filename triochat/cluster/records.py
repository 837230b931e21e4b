"""What the cluster keeps in Redis, as JSON: name claims and stream entries (pure).

Every stream entry has two fields, ``kind`` and ``data`` (a JSON object):

- ``msg``: an accepted chat message (:class:`MessageRecord`).
- ``join`` / ``leave``: a member of some node took or gave up its name (:class:`MemberRecord`),
  so that every node's ``/who`` follows at once instead of at the next heartbeat.
- ``direct``: an event for one member of one node (:class:`DirectRecord`): the file relay's
  announcements to an owner on another node.

Names live in one hash, ``name key -> MemberRecord``; a claim belongs to a node while that
node's lease key exists. Nothing here knows Redis or trio.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import typing
from dataclasses import dataclass
from enum import Enum
from typing import Any

from triochat import events
from triochat.events import ServerEvent

MSG = "msg"
JOIN = "join"
LEAVE = "leave"
DIRECT = "direct"


class BadRecord(ValueError):
    """A stream entry or claim that this version cannot read (skipped, and logged)."""


def _object(data: str) -> dict[str, Any]:
    try:
        value = json.loads(data)
    except ValueError as error:
        raise BadRecord(f"not JSON: {data[:100]!r}") from error
    if not isinstance(value, dict):
        raise BadRecord(f"not an object: {data[:100]!r}")
    return value


def _dump(value: dict[str, Any]) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


@dataclass(frozen=True)
class MemberRecord:
    """A member as the whole cluster knows it: the value of its name claim.

    Attributes:
        name: its name as typed.
        node: the node it is connected to.
        token: this claim's own random token, so that a late release of an earlier claim
            of the same name never removes a later one.
        ip: its address as its node sees it.
        port: its port as its node sees it.
        client_id: what a JSON client calls its session.
        file_port: where it serves and receives files (menu clients), if anywhere.
        dialect: how it speaks (``/who`` shows it).
    """

    name: str
    node: str
    token: str
    ip: str
    port: int
    client_id: str = "-"
    file_port: int | None = None
    dialect: str = "line"

    def dumps(self) -> str:
        """As JSON."""
        return _dump(
            {
                "name": self.name,
                "node": self.node,
                "token": self.token,
                "ip": self.ip,
                "port": self.port,
                "client_id": self.client_id,
                "file_port": self.file_port,
                "dialect": self.dialect,
            }
        )

    @classmethod
    def loads(cls, data: str) -> MemberRecord:
        """From JSON; raises BadRecord."""
        value = _object(data)
        try:
            file_port = value.get("file_port")
            return cls(
                name=str(value["name"]),
                node=str(value["node"]),
                token=str(value["token"]),
                ip=str(value["ip"]),
                port=int(value["port"]),
                client_id=str(value.get("client_id", "-")),
                file_port=None if file_port is None else int(file_port),
                dialect=str(value.get("dialect", "line")),
            )
        except (KeyError, TypeError, ValueError) as error:
            raise BadRecord(f"bad member record: {data[:100]!r}") from error


@dataclass(frozen=True)
class MessageRecord:
    """An accepted chat message, with what every node's console shows of its sender."""

    node: str
    sender: str
    ip: str
    port: int
    client_id: str
    text: str
    timestamp: str
    display_time: str

    def dumps(self) -> str:
        """As JSON (by hand: ``dataclasses.asdict`` deep-copies, a third of a node's CPU)."""
        return _dump(
            {
                "node": self.node,
                "sender": self.sender,
                "ip": self.ip,
                "port": self.port,
                "client_id": self.client_id,
                "text": self.text,
                "timestamp": self.timestamp,
                "display_time": self.display_time,
            }
        )

    @classmethod
    def loads(cls, data: str) -> MessageRecord:
        """From JSON; raises BadRecord."""
        value = _object(data)
        try:
            return cls(
                node=str(value["node"]),
                sender=str(value["sender"]),
                ip=str(value["ip"]),
                port=int(value["port"]),
                client_id=str(value["client_id"]),
                text=str(value["text"]),
                timestamp=str(value["timestamp"]),
                display_time=str(value["display_time"]),
            )
        except (KeyError, TypeError, ValueError) as error:
            raise BadRecord(f"bad message record: {data[:100]!r}") from error


_FLAT = (str, int, float, bool, type(None))
_SERVER_EVENTS: dict[str, type[Any]] = {
    event_type.__name__: event_type for event_type in typing.get_args(events.ServerEvent)
}


def _is_flat(value: object) -> bool:
    return isinstance(value, _FLAT) or (isinstance(value, Enum) and isinstance(value.value, _FLAT))


def can_travel(event: ServerEvent) -> bool:
    """True if ``event`` can go to a member of another node: an event of
    :mod:`triochat.events` whose every field is a string, a number, a bool, None or an enum
    of those, which JSON carries exactly (a file announcement, a notice, and whatever flat
    events come)."""
    return all(_is_flat(getattr(event, f.name)) for f in dataclasses.fields(event))


def _event_fields(event: ServerEvent) -> dict[str, Any]:
    fields: dict[str, Any] = {"type": type(event).__name__}
    for field in dataclasses.fields(event):
        value = getattr(event, field.name)
        fields[field.name] = value.value if isinstance(value, Enum) else value
    return fields


@functools.cache
def _enum_fields(type_name: str) -> dict[str, type[Enum]]:
    """The fields of the event type called ``type_name`` that hold an enum, and its class:
    every node reads every direct entry, and resolving type hints each time costs more than
    the rest of the read."""
    return {
        name: hint
        for name, hint in typing.get_type_hints(_SERVER_EVENTS[type_name]).items()
        if isinstance(hint, type) and issubclass(hint, Enum)
    }


def _event_from(fields: dict[str, Any]) -> ServerEvent:
    """The event ``_event_fields`` described; enum fields back to their enum.

    Raises KeyError, TypeError or ValueError for anything else.
    """
    type_name = str(fields.pop("type"))
    event_type = _SERVER_EVENTS[type_name]
    for name, enum in _enum_fields(type_name).items():
        if name in fields:
            fields[name] = enum(fields[name])
    event: ServerEvent = event_type(**fields)
    if not can_travel(event):
        raise ValueError("not a flat event")
    return event


@dataclass(frozen=True)
class DirectRecord:
    """An event for the member called ``to`` on ``node``."""

    node: str
    to: str
    token: str
    event: ServerEvent

    def dumps(self) -> str:
        """As JSON; the event by its class name (one of ``triochat.events.ServerEvent``)."""
        event = _event_fields(self.event)
        return _dump({"node": self.node, "to": self.to, "token": self.token, "event": event})

    @classmethod
    def loads(cls, data: str) -> DirectRecord:
        """From JSON; raises BadRecord."""
        value = _object(data)
        try:
            event = _event_from(dict(value["event"]))
            return cls(str(value["node"]), str(value["to"]), str(value["token"]), event)
        except (KeyError, TypeError, ValueError) as error:
            raise BadRecord(f"bad direct record: {data[:100]!r}") from error
