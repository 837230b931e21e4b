"""Name rules and safe display of text (SPEC §2, §8), and lenient timestamp parsing (SPEC §7)."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from triochat.text import MAX_NAME_LENGTH, InvalidName, check_name, escape_controls, name_key
from triochat.timestamps import (
    DISPLAY_FORMAT,
    display_time_of,
    format_local,
    parse_timestamp,
)

PROPERTY = settings(max_examples=200, deadline=None)

# --- names ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    ["alice", "a", "a" * 32, "é" * 32, "José", "日本語", "bob_2", "x#", "a*b/c{d}", "50123", "🙂"],
)
def test_valid_names(name: str) -> None:
    assert MAX_NAME_LENGTH == 32
    assert check_name(name) == name


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("", "empty"),
        ("a" * 33, "at most 32"),
        ("a b", "white space"),
        ("a\tb", "white space"),
        ("a\nb", "white space"),
        ("a\u00a0b", "white space"),  # no-break space
        ("a\u3000b", "white space"),  # ideographic space
        (" alice", "white space"),
        ("a:b", ":"),
        (":", ":"),
        ("{a", "start"),
        ("/a", "start"),
        ("*a", "start"),
        ("#a", "start"),
        ("a\x00", "printable"),
        ("a\x1b[31m", "printable"),
        ("a\x7f", "printable"),
        ("a\x85", "white space"),  # NEL is both white space and a C1 control
        ("a\x9b", "printable"),
        ("a\u202eb", "printable"),  # bidi override
        ("a\u200bb", "printable"),  # zero-width space
    ],
)
def test_invalid_names(name: str, why: str) -> None:
    with pytest.raises(InvalidName, match=why):
        check_name(name)


def test_invalid_name_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="empty"):
        check_name("")


def test_name_key_casefolds() -> None:
    assert name_key("Alice") == name_key("ALICE") == name_key("alice") == "alice"
    assert name_key("Straße") == name_key("STRASSE") == "strasse"
    assert name_key("ΣΊΣΥΦΟΣ") == name_key("σίσυφος")
    assert name_key("bob") != name_key("bob2")


# --- escape_controls --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("a\nb", "a\\x0ab"),
        ("a\r\nb", "a\\x0d\\x0ab"),
        ("\x1b[2J", "\\x1b[2J"),
        ("del\x7f", "del\\x7f"),
        ("nul\x00", "nul\\x00"),
        ("c1\x85\x9b", "c1\\x85\\x9b"),
        ("ls\u2028ps\u2029", "ls\\u2028ps\\u2029"),
    ],
)
def test_escape_controls_makes_controls_visible(raw: str, shown: str) -> None:
    assert escape_controls(raw) == shown


@pytest.mark.parametrize("text", ["", "plain", "tab\there", "héllo ✓ 日本 🙂", "a\\x0a literal"])
def test_escape_controls_keeps_ordinary_text(text: str) -> None:
    assert escape_controls(text) == text


@PROPERTY
@given(st.text(max_size=50))
def test_escaped_text_has_no_line_breaks_or_controls(text: str) -> None:
    shown = escape_controls(text)
    assert len(shown.splitlines()) <= 1
    assert all(ch == "\t" or not (ord(ch) < 0x20 or 0x7F <= ord(ch) <= 0x9F) for ch in shown)
    assert escape_controls(shown) == shown  # escaping twice changes nothing more


# --- timestamps -------------------------------------------------------------------------------


def test_parse_display_format() -> None:
    assert parse_timestamp("2024-01-02 03:04:05") == datetime(2024, 1, 2, 3, 4, 5)
    assert parse_timestamp("  '2024-01-02 03:04:05' ") == datetime(2024, 1, 2, 3, 4, 5)
    assert parse_timestamp('"2024-01-02 03:04:05"') == datetime(2024, 1, 2, 3, 4, 5)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2024-01-02T03:04:05", datetime(2024, 1, 2, 3, 4, 5)),
        ("2024-01-02T03:04:05.250000", datetime(2024, 1, 2, 3, 4, 5, 250000)),
        ("2024-01-02T03:04:05Z", datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)),
        (
            "2024-01-02T03:04:05+02:00",
            datetime(2024, 1, 2, 3, 4, 5, tzinfo=timezone(timedelta(hours=2))),
        ),
        ("2024-01-02 03:04:05.5", datetime(2024, 1, 2, 3, 4, 5, 500000)),
    ],
)
def test_parse_iso(text: str, expected: datetime) -> None:
    # Offsets are converted to local time once, at parsing, so display never has to.
    local = expected.astimezone().replace(tzinfo=None) if expected.tzinfo else expected
    parsed = parse_timestamp(text)
    assert parsed == local
    assert parsed is not None and parsed.tzinfo is None


@pytest.mark.parametrize("value", [1_700_000_000, 1_700_000_000.5, "1700000000", "1700000000.5"])
def test_parse_epoch(value: object) -> None:
    assert parse_timestamp(value) == datetime.fromtimestamp(float(str(value)))


def test_parse_epoch_zero() -> None:
    assert parse_timestamp(0) == datetime.fromtimestamp(0)


@pytest.mark.parametrize(
    "value",
    [
        None,
        "",
        "   ",
        "hello",
        "2024-13-01 00:00:00",
        "2024-01-02 25:00:00",
        "1" * 65,
        True,
        False,
        math.nan,
        math.inf,
        -math.inf,
        "nan",
        "inf",
        1e300,
        10**20,
        "1e300",
        [1_700_000_000],
        {"t": 1},
        b"2024-01-02 03:04:05",
    ],
)
def test_unreadable_timestamps_are_none(value: object) -> None:
    assert parse_timestamp(value) is None


def test_int_too_large_for_a_float_is_none() -> None:
    assert parse_timestamp(10**400) is None


def test_display_time_of() -> None:
    assert display_time_of("2024-01-02 03:04:05", "fallback") == "2024-01-02 03:04:05"
    assert display_time_of("2024-01-02T03:04:05", "fallback") == "2024-01-02 03:04:05"
    assert display_time_of(0, "fallback") == datetime.fromtimestamp(0).strftime(DISPLAY_FORMAT)
    aware = datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert display_time_of("2024-01-02T03:04:05Z", "x") == aware.astimezone().strftime(
        DISPLAY_FORMAT
    )


@pytest.mark.parametrize("value", [None, "garbage", True, math.nan, "1" * 100])
def test_display_time_of_falls_back(value: object) -> None:
    assert display_time_of(value, "2000-01-01 00:00:00") == "2000-01-01 00:00:00"


def test_format_local() -> None:
    assert format_local(datetime(2024, 1, 2, 3, 4, 5, 999999)) == "2024-01-02 03:04:05"
    aware = datetime(2024, 6, 1, 12, 0, 0, tzinfo=UTC)
    assert format_local(aware) == aware.astimezone().strftime("%Y-%m-%d %H:%M:%S")


@PROPERTY
@given(st.one_of(st.text(max_size=80), st.integers(), st.floats(), st.booleans(), st.none()))
def test_parse_timestamp_never_raises_for_sane_input(value: object) -> None:
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > 10**300:
        return  # the OverflowError bug above
    parsed = parse_timestamp(value)
    assert parsed is None or isinstance(parsed, datetime)
    shown = display_time_of(value, "fallback")
    assert shown == "fallback" or datetime.strptime(shown, DISPLAY_FORMAT)
