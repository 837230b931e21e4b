"""Text rules shared by every dialect: names, and making untrusted text safe to display."""

from __future__ import annotations

import unicodedata

MAX_NAME_LENGTH = 32
_FORBIDDEN_NAME_STARTS = ("{", "/", "*", "#")


class InvalidName(ValueError):
    """A name breaks the naming rules; ``str(error)`` says which one, for the user."""


def check_name(name: str) -> str:
    """Return ``name`` if it is a valid member name.

    Rules (SPEC §2): 1–32 printable characters, no white space, no ``:``, not starting with
    ``{``, ``/``, ``*`` or ``#``. ``str.isprintable`` already refuses control and format
    characters (bidi overrides included), so names cannot forge or reorder lines.

    Raises:
        InvalidName: with a message that tells the user what to change.
    """
    if not name:
        raise InvalidName("Name must not be empty")
    if len(name) > MAX_NAME_LENGTH:
        raise InvalidName(f"Name must be at most {MAX_NAME_LENGTH} characters")
    if any(ch.isspace() for ch in name):
        raise InvalidName("Name must not contain white space")
    if not name.isprintable():
        raise InvalidName("Name must contain only printable characters")
    if ":" in name:
        raise InvalidName("Name must not contain ':'")
    if name.startswith(_FORBIDDEN_NAME_STARTS):
        raise InvalidName("Name must not start with '{', '/', '*' or '#'")
    return name


def name_key(name: str) -> str:
    """The key under which names are unique: case-insensitive across all dialects."""
    return name.casefold()


def escape_controls(text: str) -> str:
    """Make ``text`` safe to show on another member's terminal, losing nothing.

    Control characters (C0, C1, DEL) and Unicode line/paragraph separators would let a sender
    forge lines or drive terminals with escape sequences, so each becomes a visible ``\\xNN``
    or ``\\uNNNN``. A tab is harmless and kept.
    """
    if text.isprintable():
        return text
    out: list[str] = []
    for ch in text:
        if ch == "\t" or ch.isprintable() or unicodedata.category(ch) not in ("Cc", "Zl", "Zp"):
            out.append(ch)
        elif ord(ch) <= 0xFF:
            out.append(f"\\x{ord(ch):02x}")
        else:
            out.append(f"\\u{ord(ch):04x}")
    return "".join(out)
