"""Frozen events that every dialect speaks.

Codecs in :mod:`triochat.wire` come in two roles over the same events (h11's way): the server
role decodes *client events* and sends *server events*, the client role sends client events
and decodes server events. The room and the sessions only ever see these objects. A client
learns only what its dialect carries: fields its wire has no room for keep their defaults.
This module is pure: no I/O, no trio.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class Dialect(Enum):
    """How a member's bytes look on the wire."""

    LINE = "line"
    PORT_TAGGED = "port-tagged"
    JSON = "json"
    DATAGRAM = "datagram"
    WEB = "web"


# --- client -> server -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Hello:
    """A request to join under ``name`` (the first line, or a JSON ``nickname`` object)."""

    name: str
    client_id: str | None = None
    timestamp: str | None = None
    file_port: int | None = None
    history: int | None = None
    """Recent messages to replay right after joining (a JSON ``"history": n``), if any."""


@dataclass(frozen=True, slots=True)
class Say:
    """A chat message; ``nickname`` is what a JSON sender claims to be, checked by the session."""

    text: str
    nickname: str | None = None
    timestamp: str | None = None


@dataclass(frozen=True, slots=True)
class Leave:
    """The member wants to go (``disconnect``, ``/quit``, ``exit``).

    ``nickname`` and ``client_id`` are what a JSON ``disconnect`` carries (seed 003 sends
    them); the server goes by the connection, not by them.
    """

    nickname: str | None = None
    client_id: str | None = None


@dataclass(frozen=True, slots=True)
class Who:
    """The member asks who is in the room (``/who``)."""


@dataclass(frozen=True, slots=True)
class FileRequest:
    """A request to fetch ``filename`` from the member called ``owner``."""

    owner: str
    filename: str


@dataclass(frozen=True, slots=True)
class PrivateSay:
    """A private message for the one member called ``to`` (``/msg``, JSON ``private``)."""

    to: str
    text: str
    timestamp: str | None = None


@dataclass(frozen=True, slots=True)
class Rename:
    """The member wants to be called ``name`` from now on (``/nick``, JSON ``rename``)."""

    name: str


@dataclass(frozen=True, slots=True)
class HistoryRequest:
    """The member asks for the last ``count`` messages (all the room keeps if ``None``)."""

    count: int | None = None


@dataclass(frozen=True, slots=True)
class SetNotices:
    """The member turns room notices (renames) on or off (``/notices on|off``)."""

    on: bool


ClientEvent = (
    Hello | Say | Leave | Who | FileRequest | PrivateSay | Rename | HistoryRequest | SetNotices
)


# --- server -> client -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ChatMessage:
    """A message the room accepted, as every recipient sees it.

    Attributes:
        sender: the sender's name in the room.
        text: the message text, already free of control characters.
        timestamp: the timestamp to forward (the sender's own, or the server's receive time;
            ``""`` when a client's server sent none).
        display_time: ``timestamp`` as ``YYYY-MM-DD HH:MM:SS`` local time, for consoles
            (``""`` on a client: no dialect carries it).
        sender_ip: the sender's IP address (datagram members show it in ``INCOMING``;
            ``""`` where a client's dialect does not carry it).
        sender_port: the sender's port (``0`` where a client's dialect does not carry it).
    """

    sender: str
    text: str
    timestamp: str
    display_time: str = ""
    sender_ip: str = ""
    sender_port: int = 0


@dataclass(frozen=True, slots=True)
class Welcome:
    """The name was accepted; ``members`` are the others already in the room."""

    name: str
    members: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Notice:
    """Something the server tells one member: an error, an answer, or why it is cut off.

    Attributes:
        text: what to tell.
        is_error: something went wrong (a refusal, a bad input, the reason for a cut-off).
        recoverable: the member's session goes on after this error. Dialects whose clients
            end their session on any error (seed 003's ``error``, the datagram ``ERROR``)
            show such a notice in a milder form.
    """

    text: str
    is_error: bool = False
    recoverable: bool = False


@dataclass(frozen=True, slots=True)
class Goodbye:
    """The acknowledgement of a ``Leave``; the connection closes after it."""

    name: str


class TransferRole(Enum):
    """A member's part in one file transfer."""

    FETCH = "fetch"
    """The member owns the file and serves it when the relay connects."""
    DELIVER = "deliver"
    """The member asked for the file and receives it when the relay connects."""


@dataclass(frozen=True, slots=True)
class FileAnnouncement:
    """The server will open a file connection to this member presenting ``token``.

    ``role`` says whether the member serves ``filename`` or receives it; ``peer`` is the
    other end (the requester when fetching, the owner when delivering).
    """

    role: TransferRole
    token: str
    filename: str
    peer: str


@dataclass(frozen=True, slots=True)
class FileFailed:
    """A transfer this member asked for ended before any byte reached it, and why."""

    token: str
    filename: str
    owner: str
    reason: str

    @property
    def text(self) -> str:
        """The line the requester is shown (SPEC §6)."""
        return file_failed_text(self.filename, self.owner, self.reason)


def file_failed_text(filename: str, owner: str, reason: str) -> str:
    """The line a requester is shown when a transfer of ``filename`` from ``owner`` failed."""
    return f"File {filename} from {owner} failed: {reason}"


@dataclass(frozen=True, slots=True)
class PrivateMessage:
    """A private message as its one recipient sees it.

    Attributes:
        sender: the sender's name.
        recipient: the recipient's name.
        text: the text, already free of control characters.
        timestamp: the sender's own timestamp, or the server's receive time.
        display_time: ``timestamp`` as ``YYYY-MM-DD HH:MM:SS`` local time.
        sender_ip: the sender's IP address (datagram members show it in ``INCOMING``).
        sender_port: the sender's port.
    """

    sender: str
    recipient: str
    text: str
    timestamp: str
    display_time: str
    sender_ip: str
    sender_port: int


@dataclass(frozen=True, slots=True)
class Renamed:
    """The member called ``old`` is now called ``new`` (told to members who want notices)."""

    old: str
    new: str


@dataclass(frozen=True, slots=True)
class MemberInfo:
    """One line of ``/who``: a member, its dialect and how long it has been silent."""

    name: str
    dialect: Dialect
    idle_seconds: float


@dataclass(frozen=True, slots=True)
class Presence:
    """The answer to ``/who``: the members in join order."""

    members: tuple[MemberInfo, ...]


@dataclass(frozen=True, slots=True)
class HistoryReplay:
    """Recent room messages for one member, oldest first (``/history``, or on joining)."""

    messages: tuple[ChatMessage, ...]


@dataclass(frozen=True, slots=True)
class MemberJoined:
    """``name`` joined the room (told only to members that keep a members list: the page)."""

    name: str


@dataclass(frozen=True, slots=True)
class MemberLeft:
    """``name`` left the room (told only to members that keep a members list: the page)."""

    name: str


ServerEvent = (
    ChatMessage
    | Welcome
    | Notice
    | Goodbye
    | FileAnnouncement
    | FileFailed
    | PrivateMessage
    | Renamed
    | Presence
    | HistoryReplay
    | MemberJoined
    | MemberLeft
)
