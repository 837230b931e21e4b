"""What every codec shares: roles, the NEED_DATA sentinel and the typed error for bad input."""

from __future__ import annotations

from enum import Enum
from typing import Final, Literal


class Role(Enum):
    """Which end of a dialect a codec speaks for (h11's ``our_role``).

    The server role decodes client events and sends server events; the client role sends
    client events and decodes server events. Both use the same events
    (:mod:`triochat.events`), so one role's ``send`` feeds the other's ``receive_data``.
    """

    SERVER = "server"
    CLIENT = "client"


class NeedData(Enum):
    """Returned by ``next_event`` when the buffered bytes hold no complete event yet."""

    NEED_DATA = "NEED_DATA"


NEED_DATA: Final = NeedData.NEED_DATA
NeedDataType = Literal[NeedData.NEED_DATA]

MAX_LINE_BYTES = 64 * 1024
"""Longest line (or JSON object) a peer may send; longer ones are refused with an error."""

MAX_SERVER_LINE_BYTES = 1024 * 1024
"""Longest line or object clients accept from the server: a message the server accepted at
:data:`MAX_LINE_BYTES` grows with the sender's name, escaped control characters (up to six
bytes for one) and JSON quoting, and must still reach every client whole."""


class RemoteProtocolError(ValueError):
    """The peer sent something the protocol does not allow: it is the peer's fault.

    Attributes:
        recoverable: True when the codec has already skipped the bad bytes and the connection
            can go on (the session reports the error and keeps reading); False when the stream
            can no longer be framed and the connection must close.
    """

    def __init__(self, message: str, *, recoverable: bool = True) -> None:
        super().__init__(message)
        self.recoverable = recoverable
