"""The one date/time format every console line uses, and lenient parsing of sent timestamps.

Pure: the current time comes from ``triochat.clock``, never from here.
"""

from __future__ import annotations

from datetime import datetime

DISPLAY_FORMAT = "%Y-%m-%d %H:%M:%S"


def format_local(moment: datetime) -> str:
    """``moment`` as ``YYYY-MM-DD HH:MM:SS`` in local time."""
    if moment.tzinfo is not None:
        moment = moment.astimezone()
    return moment.strftime(DISPLAY_FORMAT)


MIN_YEAR = 1000
"""Earlier years do not print as four digits, so they cannot be shown in the display format."""


def parse_timestamp(value: object) -> datetime | None:
    """Like :func:`_parse_timestamp`, in local time, and only dates the display format can show.

    The conversion to local time happens here, once: a date near either end of the calendar
    with an offset would otherwise overflow (or lose a digit) when it is displayed.
    """
    parsed = _parse_timestamp(value)
    if parsed is None:
        return None
    if parsed.tzinfo is not None:
        try:
            parsed = parsed.astimezone().replace(tzinfo=None)
        except (OverflowError, ValueError, OSError):
            return None
    return parsed if parsed.year >= MIN_YEAR else None


def _parse_timestamp(value: object) -> datetime | None:
    """Read a timestamp that some client sent, or ``None`` when it is missing or unreadable.

    Accepted: our display format, ISO 8601 (with ``T``, fractions or an offset), and Unix
    epoch seconds as a number or a numeric string. Clients of this assignment send all three.
    """
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        try:
            return _from_epoch(float(value))
        except OverflowError:
            return None
    if not isinstance(value, str):
        return None
    text = value.strip().strip("'\"")
    if not text or len(text) > 64:
        return None
    try:
        return datetime.strptime(text, DISPLAY_FORMAT)
    except ValueError:
        pass
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        pass
    try:
        return _from_epoch(float(text))
    except ValueError:
        return None


def _from_epoch(seconds: float) -> datetime | None:
    try:
        return datetime.fromtimestamp(seconds)
    except (OverflowError, OSError, ValueError):
        return None


def display_time_of(value: object, fallback: str) -> str:
    """``value`` shown as ``YYYY-MM-DD HH:MM:SS``, or ``fallback`` when it cannot be read."""
    parsed = parse_timestamp(value)
    return format_local(parsed) if parsed is not None else fallback
