"""The server's console lines (SPEC §7): seed 003's format, and seed 004's port-tagged one.

Console lines go to stdout, flushed line by line, because people check these programs by
comparing their output; diagnostics go to the ``logging`` module (stderr).
"""

from __future__ import annotations

import sys
from typing import TextIO

from triochat.clock import now_display
from triochat.events import ChatMessage, PrivateMessage
from triochat.room import Member


class Console:
    """Writes whole lines to a text stream and flushes each one."""

    def __init__(self, out: TextIO | None = None) -> None:
        self._out = out if out is not None else sys.stdout

    def line(self, text: str) -> None:
        """Write ``text`` as one line, flushed at once."""
        self._out.write(text + "\n")
        self._out.flush()


class ChatConsole(Console):
    """Seed 003's server lines, for members of every dialect.

    ``log_messages=False`` leaves out the two lines per message: only to measure their cost.
    """

    def __init__(self, out: TextIO | None = None, *, log_messages: bool = True) -> None:
        super().__init__(out)
        self._log_messages = log_messages

    def started(self, ip: str, port: int) -> None:
        """The banner once the listeners are up."""
        self.line(f"ChatServer started with server IP: {ip}, port: {port} ...")

    def member_joined(self, member: Member) -> None:
        """``<date/time> :: <nickname>: connected.``"""
        self.line(f"{now_display()} :: {member.name}: connected.")

    def member_left(self, member: Member) -> None:
        """``<date/time> :: <nickname>: disconnected.``"""
        self.line(f"{now_display()} :: {member.name}: disconnected.")

    def message_accepted(self, message: ChatMessage, sender: Member, recipients: list[str]) -> None:
        """The ``Received:`` line and the ``Broadcasted:`` line."""
        if not self._log_messages:
            return
        self.line(
            f"Received: IP:{sender.ip}, Port:{sender.port}, Client-Nickname:{sender.name}, "
            f"ClientID:{sender.client_id}, Date/Time:{message.display_time}, "
            f"Msg-Size:{len(message.text)}"
        )
        self.line(f"Broadcasted: {', '.join(recipients)}".rstrip())

    def private_sent(self, message: PrivateMessage) -> None:
        """``Private: <from> -> <to>, Msg-Size:<n>``: who and how much, never the text."""
        if self._log_messages:
            self.line(
                f"Private: {message.sender} -> {message.recipient}, Msg-Size:{len(message.text)}"
            )

    def member_renamed(self, member: Member, old: str) -> None:
        """``<date/time> :: <old>: renamed to <new>.``"""
        self.line(f"{now_display()} :: {old}: renamed to {member.name}.")

    def transfer_finished(self, filename: str, owner: str, requester: str, size: int) -> None:
        """A file reached its requester, every chunk and the digest verified."""
        self.line(
            f"{now_display()} :: File {filename}: {owner} -> {requester}, {size} bytes, verified."
        )

    def transfer_failed(self, filename: str, owner: str, requester: str, reason: str) -> None:
        """A transfer ended early, and why."""
        self.line(f"{now_display()} :: File {filename}: {owner} -> {requester} failed: {reason}.")


class PortTaggedConsole(Console):
    """Seed 004's server lines."""

    def started(self, ip: str, port: int) -> None:
        """The banner once the listener is up."""
        self.line(f"Server listening on {ip}:{port}")

    def member_joined(self, member: Member) -> None:
        """``New connection from : ('<ip>', <port>)``"""
        self.line(f"New connection from : {(member.ip, member.port)!r}")

    def member_left(self, member: Member) -> None:
        """``Connection closed``"""
        self.line("Connection closed")

    def message_accepted(self, message: ChatMessage, sender: Member, recipients: list[str]) -> None:
        """``<port>:<message>``"""
        self.line(f"{sender.name}:{message.text}")

    def private_sent(self, message: PrivateMessage) -> None:
        """Nothing: seed 004's members have no private messages."""

    def member_renamed(self, member: Member, old: str) -> None:
        """Nothing: seed 004's members are named by their port."""
