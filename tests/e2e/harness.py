"""A small async harness for end-to-end tests: real programs as processes, raw TCP peers.

Everything waits for a condition (a line that matches, a process that exits) under a generous
deadline; nothing sleeps for a fixed time to wait for something. Every process the harness
starts is killed by its own PID when the test ends, whatever happened.

Patterns: a ``str`` must equal the whole line; a compiled pattern must ``fullmatch`` it.
:func:`rx` builds exact-line patterns with ``{dt}`` (a ``YYYY-MM-DD HH:MM:SS`` date/time),
``{port}`` (a port number) and ``{any}`` placeholders.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import trio

ROOT = Path(__file__).resolve().parents[2]
"""The repository root, where ChatServer.py and friends live."""

TIMEOUT = 10.0
"""Generous deadline for any single condition; a healthy run needs a fraction of it."""

DT = r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}"
"""A console date/time."""

LOCALHOST = "127.0.0.1"

Pattern = str | re.Pattern[str]

_PLACEHOLDERS = {"{dt}": f"({DT})", "{port}": r"(\d{1,5})", "{any}": "(.*)"}
_PLACEHOLDER_SPLIT = re.compile(r"(\{dt\}|\{port\}|\{any\})")


def rx(template: str) -> re.Pattern[str]:
    """An exact-line pattern; ``{dt}``, ``{port}`` and ``{any}`` become capture groups."""
    parts = _PLACEHOLDER_SPLIT.split(template)
    return re.compile("".join(_PLACEHOLDERS.get(part, re.escape(part)) for part in parts))


def _compile(pattern: Pattern) -> re.Pattern[str]:
    return pattern if isinstance(pattern, re.Pattern) else re.compile(re.escape(pattern))


def _describe(pattern: Pattern) -> str:
    text = pattern.pattern if isinstance(pattern, re.Pattern) else pattern
    return _shorten(repr(text), 300)


# --- console lines (SPEC §7) ------------------------------------------------------------------


def json_banner(port: int, nickname: str, client_id: str) -> re.Pattern[str]:
    """The JSON client's first line; group 1 is its start date/time."""
    return rx(
        f"ChatClient started with server IP: 127.0.0.1, port: {port}, nickname: {nickname}, "
        f"client ID: {client_id}, Date/Time: {{dt}}"
    )


def received_json(name: str, client_id: str, size: int) -> re.Pattern[str]:
    """The server's ``Received:`` line for a JSON member; groups: the port, the date/time."""
    return rx(
        f"Received: IP:127.0.0.1, Port:{{port}}, Client-Nickname:{name}, "
        f"ClientID:{client_id}, Date/Time:{{dt}}, Msg-Size:{size}"
    )


def summary(sent: int, rcv: int, chars_sent: int, chars_rcv: int) -> re.Pattern[str]:
    """The JSON client's ``Summary:`` line; groups 1 and 2 are start and end."""
    return rx(
        f"Summary: start:{{dt}}, end:{{dt}}, msg sent:{sent}, msg rcv:{rcv}, "
        f"char sent:{chars_sent}, char rcv:{chars_rcv}"
    )


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (callers retry if it is taken)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((LOCALHOST, 0))
        return int(probe.getsockname()[1])


def _shorten(line: str, limit: int = 300) -> str:
    return line if len(line) <= limit else f"{line[:limit]}... ({len(line)} chars)"


class LineLog:
    """Lines arriving from some source, a read cursor, and waiting for lines to come.

    A pump task appends lines and finally calls :meth:`close`. Tests consume lines with
    :meth:`expect_line` (the first matching line at or after the cursor) or :meth:`expect_next`
    (exactly the line at the cursor).
    """

    def __init__(
        self, label: str, *, strict_utf8: bool = False, one_entry_per_read: bool = False
    ) -> None:
        self.label = label
        self.one_entry_per_read = one_entry_per_read
        self.lines: list[str] = []
        self.cursor = 0
        self.closed = False
        self._strict_utf8 = strict_utf8
        self._partial = bytearray()
        self._changed = trio.Event()
        self.extra_context: Callable[[], str] | None = None

    # --- filling -----------------------------------------------------------------------------

    def feed(self, data: bytes | bytearray) -> None:
        """Add raw bytes; every complete ``\\n``-terminated line becomes an entry.

        With ``one_entry_per_read`` each read is one entry as it is, newlines included: what
        a seed's own client, which takes each ``recv()`` as one message, would show.
        """
        if self.one_entry_per_read:
            self.lines.append(self._decode(bytes(data)))
            self._notify()
            return
        self._partial += data
        while (newline := self._partial.find(b"\n")) >= 0:
            raw = bytes(self._partial[:newline])
            del self._partial[: newline + 1]
            self.lines.append(self._decode(raw))
        self._notify()

    def close(self) -> None:
        """The source ended; an unterminated last line still counts."""
        if self._partial:
            self.lines.append(self._decode(bytes(self._partial)) + " <<no newline>>")
            self._partial.clear()
        self.closed = True
        self._notify()

    def _decode(self, raw: bytes) -> str:
        if self._strict_utf8:
            try:
                return raw.decode("utf-8")
            except UnicodeDecodeError:
                return f"<<invalid UTF-8: {raw[:200]!r}>>"
        return raw.decode("utf-8", errors="replace")

    def _notify(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    # --- consuming ---------------------------------------------------------------------------

    def context(self) -> str:
        """Everything seen so far, with the cursor marked, for failure messages."""
        shown = [
            f"{'>>' if index == self.cursor else '  '} {index:3}: {_shorten(line)}"
            for index, line in enumerate(self.lines)
        ]
        if self.cursor >= len(self.lines):
            shown.append(">>  (end)" + (" [closed]" if self.closed else ""))
        text = f"--- {self.label} ---\n" + "\n".join(shown)
        if self.extra_context is not None:
            text += "\n" + self.extra_context()
        return text

    def _fail(self, message: str) -> AssertionError:
        return AssertionError(f"{self.label}: {message}\n{self.context()}")

    async def expect_line(self, pattern: Pattern, within: float = TIMEOUT) -> re.Match[str]:
        """Wait for the first line at or after the cursor that matches; move past it."""
        compiled = _compile(pattern)
        with trio.move_on_after(within):
            while True:
                for index in range(self.cursor, len(self.lines)):
                    match = compiled.fullmatch(self.lines[index])
                    if match is not None:
                        self.cursor = index + 1
                        return match
                if self.closed:
                    raise self._fail(f"ended without a line matching {_describe(pattern)}")
                await self._changed.wait()
        raise self._fail(f"no line matching {_describe(pattern)} within {within} s")

    async def expect_next(self, pattern: Pattern, within: float = TIMEOUT) -> re.Match[str]:
        """The very next line must match; move past it."""
        line = await self.next_line(within)
        match = _compile(pattern).fullmatch(line)
        if match is None:
            self.cursor -= 1
            raise self._fail(f"next line does not match {_describe(pattern)}")
        return match

    async def next_line(self, within: float = TIMEOUT) -> str:
        """The next line, whatever it is; move past it."""
        with trio.move_on_after(within):
            while self.cursor >= len(self.lines):
                if self.closed:
                    raise self._fail("ended; expected another line")
                await self._changed.wait()
            line = self.lines[self.cursor]
            self.cursor += 1
            return line
        raise self._fail(f"no further line within {within} s")

    async def expect_text(self, text: str, within: float = TIMEOUT) -> None:
        """The next lines, joined, must be exactly ``text``.

        For a client on the seeds' unframed wire (one message per write, no newline): on a
        loaded machine two messages may arrive in one read, or one in two, and the lines
        then fall differently; the text and its order are what must be exact.
        """
        start = self.cursor
        seen = ""
        while len(seen) < len(text):
            seen += await self.next_line(within)
        if seen != text:
            self.cursor = start
            raise self._fail(f"the next lines do not make {_shorten(text)!r}")

    async def expect_closed(self, within: float = TIMEOUT) -> None:
        """Wait until the source has ended."""
        with trio.move_on_after(within):
            while not self.closed:
                await self._changed.wait()
            return
        raise self._fail(f"still open after {within} s")

    def assert_consumed(self) -> None:
        """Every line so far has been expected: nothing unexpected arrived."""
        if self.cursor < len(self.lines):
            raise self._fail("unexpected extra lines")


async def _pump(stream: trio.abc.ReceiveStream, log: LineLog) -> None:
    try:
        while data := await stream.receive_some(65536):
            log.feed(data)
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        pass
    finally:
        log.close()


class Program:
    """One running program: its stdout as a :class:`LineLog`, its stderr, its stdin."""

    def __init__(self, label: str, process: trio.Process) -> None:
        self.label = label
        self.process = process
        self.stdout = LineLog(f"{label} stdout")
        self.stderr_log = LineLog(f"{label} stderr")
        self.stdout.extra_context = self._more_context

    def _more_context(self) -> str:
        return (
            f"--- {self.label} stderr ---\n{_shorten(self.stderr, 3000)}\n"
            f"--- {self.label} exit code: {self.process.poll()} (pid {self.pid}) ---"
        )

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def stderr(self) -> str:
        return "\n".join(self.stderr_log.lines)

    @property
    def returncode(self) -> int | None:
        return self.process.poll()

    async def expect_line(self, pattern: Pattern, within: float = TIMEOUT) -> re.Match[str]:
        """See :meth:`LineLog.expect_line` (stdout)."""
        return await self.stdout.expect_line(pattern, within)

    async def expect_next(self, pattern: Pattern, within: float = TIMEOUT) -> re.Match[str]:
        """See :meth:`LineLog.expect_next` (stdout)."""
        return await self.stdout.expect_next(pattern, within)

    async def next_line(self, within: float = TIMEOUT) -> str:
        """See :meth:`LineLog.next_line` (stdout)."""
        return await self.stdout.next_line(within)

    async def expect_text(self, text: str, within: float = TIMEOUT) -> None:
        """See :meth:`LineLog.expect_text` (stdout)."""
        await self.stdout.expect_text(text, within)

    def assert_consumed(self) -> None:
        """No stdout line arrived that the test did not expect."""
        self.stdout.assert_consumed()

    async def send_line(self, text: str) -> None:
        """Write ``text`` and a newline to stdin."""
        await self.send_bytes((text + "\n").encode())

    async def send_bytes(self, data: bytes) -> None:
        """Write raw bytes to stdin."""
        assert self.process.stdin is not None
        await self.process.stdin.send_all(data)

    async def close_stdin(self) -> None:
        """End of standard input."""
        assert self.process.stdin is not None
        await self.process.stdin.aclose()

    def send_signal(self, signum: signal.Signals) -> None:
        """Send ``signum`` to this process (by its PID)."""
        self.process.send_signal(signum)

    def kill(self) -> None:
        """SIGKILL this process (by its PID) if it is still running."""
        if self.process.poll() is None:
            self.process.kill()

    async def wait_exit(self, within: float = TIMEOUT) -> int:
        """Wait for the process to exit and for its output to be fully read; the exit code."""
        with trio.move_on_after(within):
            code = await self.process.wait()
            await self.stdout.expect_closed(within)
            await self.stderr_log.expect_closed(within)
            return code
        raise AssertionError(
            f"{self.label} did not exit within {within} s\n{self.stdout.context()}"
        )

    def assert_no_traceback(self) -> None:
        """Neither stream shows a Python traceback."""
        for log in (self.stdout, self.stderr_log):
            if any("Traceback" in line for line in log.lines):
                raise AssertionError(f"{self.label}: traceback printed\n{self.stdout.context()}")


class RawPeer:
    """A raw TCP connection from the test itself (netcat-style or a hand-written JSON client).

    Incoming bytes are decoded strictly: a line that is not valid UTF-8 shows up as an
    ``<<invalid UTF-8 ...>>`` entry, so tests can tell what the server really sent.
    """

    def __init__(self, label: str, stream: trio.SocketStream, *, unframed: bool = False) -> None:
        self.label = label
        self.stream = stream
        self.log = LineLog(
            f"{label} (raw peer) received", strict_utf8=True, one_entry_per_read=unframed
        )
        self.local_port = int(stream.socket.getsockname()[1])

    async def send(self, data: bytes) -> None:
        """One ``send_all`` of exactly these bytes."""
        await self.stream.send_all(data)

    async def send_eof(self) -> None:
        """Half-close: the server sees end of stream."""
        await self.stream.send_eof()

    async def aclose(self) -> None:
        """Close the connection."""
        await self.stream.aclose()

    async def expect_line(self, pattern: Pattern, within: float = TIMEOUT) -> re.Match[str]:
        """See :meth:`LineLog.expect_line`."""
        return await self.log.expect_line(pattern, within)

    async def expect_next(self, pattern: Pattern, within: float = TIMEOUT) -> re.Match[str]:
        """See :meth:`LineLog.expect_next`."""
        return await self.log.expect_next(pattern, within)

    async def next_line(self, within: float = TIMEOUT) -> str:
        """See :meth:`LineLog.next_line`."""
        return await self.log.next_line(within)


@dataclass
class Finished:
    """A program that has run to completion."""

    code: int
    stdout: list[str]
    stderr: str


class Harness:
    """Starts programs and raw peers for one test, and cleans all of them up afterwards."""

    def __init__(self, nursery: trio.Nursery, cwd: Path) -> None:
        self._nursery = nursery
        self._cwd = cwd
        self.programs: list[Program] = []
        self.peers: list[RawPeer] = []

    async def start(self, script: str, *args: str, label: str | None = None) -> Program:
        """Run ``python <repo>/<script> <args>`` with piped stdin, stdout and stderr."""
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        env.pop("PYTHONSTARTUP", None)
        process = await trio.lowlevel.open_process(
            [sys.executable, str(ROOT / script), *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=self._cwd,
            env=env,
        )
        program = Program(label or f"{script} {' '.join(args)}", process)
        self.programs.append(program)
        assert process.stdout is not None and process.stderr is not None
        self._nursery.start_soon(_pump, process.stdout, program.stdout)
        self._nursery.start_soon(_pump, process.stderr, program.stderr_log)
        return program

    async def run(self, script: str, *args: str, within: float = TIMEOUT) -> Finished:
        """Run a program with empty stdin to completion."""
        program = await self.start(script, *args)
        await program.close_stdin()
        code = await program.wait_exit(within)
        return Finished(code, list(program.stdout.lines), program.stderr)

    async def connect(
        self, port: int, label: str, *, unframed: bool = False, source: str | None = None
    ) -> RawPeer:
        """A raw TCP connection to 127.0.0.1:``port``.

        ``unframed``: a peer in the seeds' manner, which sends no newlines and takes each read
        as one message (its log has one entry per read). ``source``: the local address to
        connect from (another loopback address such as 127.0.0.2 is another peer address).
        """
        with trio.fail_after(TIMEOUT):
            stream = await trio.open_tcp_stream(LOCALHOST, port, local_address=source)
        peer = RawPeer(label, stream, unframed=unframed)
        self.peers.append(peer)
        self._nursery.start_soon(_pump, stream, peer.log)
        return peer

    async def start_chat_server(self, *options: str) -> tuple[Program, int]:
        """``ChatServer.py --port 0 --host 127.0.0.1 [options]``; the port its banner shows."""
        server = await self.start(
            "ChatServer.py", "--port", "0", "--host", LOCALHOST, *options, label="ChatServer"
        )
        banner = rx(f"ChatServer started with server IP: {LOCALHOST}, port: {{port}} ...")
        port = int((await server.expect_next(banner)).group(1))
        return server, port

    async def start_port_tagged_server(self) -> tuple[Program, int]:
        """``mychatserver.py --port 0``; the port its banner shows."""
        server = await self.start("mychatserver.py", "--port", "0", label="mychatserver")
        banner = rx(f"Server listening on {LOCALHOST}:{{port}}")
        port = int((await server.expect_next(banner)).group(1))
        return server, port

    async def aclose(self) -> None:
        """Kill every program still running (by PID) and close every pipe and socket."""
        with trio.CancelScope(shield=True):
            for peer in self.peers:
                with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
                    await trio.aclose_forcefully(peer.stream)
            for program in self.programs:
                program.kill()
            for program in self.programs:
                with trio.move_on_after(5):
                    await program.process.wait()
                with trio.move_on_after(5):
                    await program.stdout.expect_closed()
                    await program.stderr_log.expect_closed()
                process = program.process
                for pipe in (process.stdin, process.stdout, process.stderr):
                    if pipe is not None:
                        await trio.aclose_forcefully(pipe)


async def join_raw_line(harness: Harness, server: Program, port: int, name: str) -> RawPeer:
    """A netcat-style framed line peer named ``name``, in the room once the server says so."""
    peer = await harness.connect(port, name)
    await peer.send(f"{name}\n".encode())
    await server.expect_line(rx(f"{{dt}} :: {name}: connected."))
    return peer


async def join_line_client(harness: Harness, server: Program, port: int, name: str) -> Program:
    """Our line client (seed-000 mode) joined as ``name``, once the server says so."""
    client = await harness.start("ChatClient.py", str(port), label=f"line client {name}")
    await client.send_line(name)
    await server.expect_line(rx(f"{{dt}} :: {name}: connected."))
    return client
