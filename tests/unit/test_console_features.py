"""The server console's §11 lines: private messages without their text, renames."""

from __future__ import annotations

import io
import re

from triochat.events import PrivateMessage
from triochat.server.console import ChatConsole, PortTaggedConsole

from .helpers import NOW, make_member

PRIVATE = PrivateMessage("bob", "alice", "see you at 5", NOW, NOW, "127.0.0.1", 4000)


def test_a_private_message_is_logged_without_its_text() -> None:
    out = io.StringIO()
    ChatConsole(out).private_sent(PRIVATE)
    assert out.getvalue() == "Private: bob -> alice, Msg-Size:12\n"
    quiet = io.StringIO()
    ChatConsole(quiet, log_messages=False).private_sent(PRIVATE)
    assert quiet.getvalue() == ""


def test_a_rename_is_logged_with_the_date() -> None:
    out = io.StringIO()
    member, _ = make_member("Alicia")
    ChatConsole(out).member_renamed(member, "alice")
    assert re.fullmatch(
        r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d :: alice: renamed to Alicia\.\n", out.getvalue()
    )


def test_the_port_tagged_console_stays_as_seed_004_prints_it() -> None:
    out = io.StringIO()
    console = PortTaggedConsole(out)
    console.private_sent(PRIVATE)
    console.member_renamed(make_member("x")[0], "y")
    assert out.getvalue() == ""
