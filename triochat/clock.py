"""The wall clock: the one module that reads the current time.

The core (the room, events, codecs) is deterministic and takes its time from its callers; the
servers, clients and consoles ask here. A test enforces who may import it.
"""

from __future__ import annotations

from datetime import datetime

from triochat.timestamps import format_local


def now_display() -> str:
    """The current local time as ``YYYY-MM-DD HH:MM:SS``."""
    return format_local(datetime.now())
