"""Command lines: which program the arguments ask for, exact ``ERR - arg x`` lines, Ctrl-C.

Every ``ERR - ...`` line goes to stdout (the seeds' checkers read it there) and exits 1.
Diagnostics go to stderr; no program ever ends in a traceback (``-v`` shows them in the log).

Clients take their first steps before Trio is even imported (see ``client/early.py``): this
module imports only the standard library and Trio-free parts of the package at the top, and
each program's modules when it is chosen.
"""

from __future__ import annotations

import argparse
import logging
import socket
import sys
from collections.abc import Awaitable, Callable, Sequence
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

from triochat.client import early
from triochat.clock import now_display
from triochat.events import Hello
from triochat.startup import EXIT_INTERRUPTED, defer_ctrl_c, hand_ctrl_c_to_trio
from triochat.text import InvalidName, check_name
from triochat.wire.datagrams import DatagramClientCodec
from triochat.wire.json_lines import MENU_CLIENT_ID, JsonClientCodec
from triochat.wire.lines import LineClientCodec

if TYPE_CHECKING:
    import ssl

logger = logging.getLogger("triochat")


class ArgumentError(Exception):
    """Argument ``number`` is missing or bad: the program prints ``ERR - arg <number>``."""

    def __init__(self, number: int) -> None:
        super().__init__(f"ERR - arg {number}")
        self.number = number


def parse_port(text: str | None, number: int) -> int:
    """``text`` as a TCP/UDP port 1–65535, else :class:`ArgumentError` for argument ``number``."""
    if text is None or not text.strip().isdigit():
        raise ArgumentError(number)
    port = int(text)
    if not 1 <= port <= 65535:
        raise ArgumentError(number)
    return port


def resolve_host(host: str, number: int) -> str:
    """The IP address ``host`` names, else :class:`ArgumentError` for argument ``number``."""
    try:
        infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        raise ArgumentError(number) from None
    if not infos:
        raise ArgumentError(number)
    return str(infos[0][4][0])


def run_program(
    main: Callable[[], Awaitable[int]], *, verbose: bool = False, is_server: bool = False
) -> int:
    """Run ``main`` under Trio; Ctrl-C and unexpected errors end quietly with an exit code.

    Clients get Ctrl-C as ``KeyboardInterrupt`` from Trio, which unwinds them cleanly (a menu
    client removes its temporary files). Servers keep the launcher's exit-at-once handler
    until their signal receiver takes over, right before they accept anyone.
    """
    import trio

    if not is_server:
        hand_ctrl_c_to_trio()
    interrupted = False
    try:
        return trio.run(main)
    except* KeyboardInterrupt:
        interrupted = True
    except* early.CannotStart as group:
        # Found once Trio runs (a TLS handshake that failed): said as before it would be.
        early.warn(str(group.exceptions[0]))
    except* BrokenPipeError:
        return_code = 1  # stdout went away: nobody is left to tell
        del return_code
    except* Exception as group:
        logger.error("triochat stopped on an internal error: %r", group.exceptions[0])
        if verbose:
            logger.exception("details")
    return EXIT_INTERRUPTED if interrupted else 1


class QuietAcceptErrors(logging.Filter):
    """Trio logs every failed accept (EMFILE and friends) with a traceback, ten times a second.

    Without ``-v`` that is one short line at most every :attr:`interval` seconds instead: the
    condition is worth knowing, a traceback flood on stderr is not.
    """

    interval = 10.0

    def __init__(self) -> None:
        super().__init__()
        self._last = -self.interval

    def filter(self, record: logging.LogRecord) -> bool:
        if record.created - self._last < self.interval:
            return False
        self._last = record.created
        record.exc_info = None
        record.exc_text = None
        return True


def configure_logging(verbose: bool) -> None:
    """Logs go to stderr; stdout carries only the console lines people compare."""
    logging.basicConfig(
        stream=sys.stderr,
        level=logging.INFO if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if not verbose:
        logging.getLogger("trio.serve_listeners").addFilter(QuietAcceptErrors())


# --- ChatClient.py ----------------------------------------------------------------------------


CHAT_COMMANDS = """\
chat commands (line and JSON chat; a triochat server answers them):
  /msg <name> <text>  a private message to one member
  /nick <name>        rename yourself
  /who                who is here, with their dialect and idle time
  /history [n]        the last n messages (default: all the server keeps)
  /notices on|off     be told of renames (off by default)
  /quit               leave
  //text              sends /text
"""

CLIENT_USAGE = """\
usage:
  ChatClient.py <port> [--host HOST]                      line chat (seed 000)
  ChatClient.py <host-or-ip> <port> <nickname> <clientID> [--history N]
                                                          JSON chat (seed 003); --history: the
                                                          last N messages on joining
  ChatClient.py -l <listen port> -p <server port> [--share-dir DIR]
                                                          menu chat with files (seed 001)
  ChatClient.py --udp <host-or-ip> <port> [<nickname>] [--show-sender]
                                                          UDP chat (seed 002)
options: -v/--verbose logs to stderr; --help shows this text; in the TCP modes --tls speaks
TLS to the server (verified against the system's CAs) and --ca FILE verifies it against a
private CA instead (implies --tls).
"""


class _TLS:
    """The TLS context of ``--tls``/``--ca``, if given (one client per process)."""

    context: ssl.SSLContext | None = None


def _connect(host: str, port: int, server_name: str | None = None) -> early.EarlyStart:
    """The TCP connection to the server, in TLS with ``--tls`` (the certificate verified for
    ``server_name``, by default ``host``)."""
    return early.connect(host, port, tls=_TLS.context, server_hostname=server_name)


Launch = Callable[[], Callable[[], Awaitable[int]]]
"""A client's first steps before Trio (connect, send the name); returns what Trio then runs.
Raises :class:`early.CannotStart` when the server or a port cannot be had."""


def client_main(argv: Sequence[str] | None = None) -> int:
    """``python ChatClient.py ...``: the mode follows from the shape of the arguments."""
    args = list(sys.argv[1:] if argv is None else argv)
    if "-h" in args or "--help" in args:
        sys.stdout.write(CLIENT_USAGE + CHAT_COMMANDS)
        return 0
    verbose = _take_flag(args, "-v", "--verbose")
    configure_logging(verbose)
    host = _take_option(args, "--host")
    history = _take_option(args, "--history")
    if history is not None and not (history.isdigit() and history.isascii()):
        early.say("ERR - --history needs a whole number (messages to replay on joining)")
        return 1
    ca_file = _take_option(args, "--ca")
    use_tls = _take_flag(args, "--tls") or ca_file is not None
    try:
        launch = _choose_client(args, host, int(history) if history is not None else None)
    except ArgumentError as error:
        early.say(str(error))
        return 1
    if use_tls:
        if "--udp" in args:
            early.warn("--tls is for the TCP modes: UDP has no TLS")
            return 1
        try:
            _TLS.context = early.tls_context(ca_file)
        except early.CannotStart as error:
            early.warn(str(error))
            return 1
    try:
        main = launch()
    except early.CannotStart as error:
        early.warn(str(error))
        return 1
    return run_program(main, verbose=verbose)


def _choose_client(args: list[str], host: str | None, history: int | None = None) -> Launch:
    if "--udp" in args:
        return _udp_client(args)
    if "-l" in args or "-p" in args:
        return _menu_client(args, host)
    if not args:
        raise ArgumentError(1)
    if len(args) == 1:
        return partial(_start_line_client, host or "127.0.0.1", parse_port(args[0], 1))
    if len(args) > 4:
        raise ArgumentError(5)
    ip = resolve_host(args[0], 1)
    port = parse_port(args[1], 2)
    if len(args) < 3:
        raise ArgumentError(3)
    try:
        nickname = check_name(args[2])
    except InvalidName:
        raise ArgumentError(3) from None
    if len(args) < 4:
        raise ArgumentError(4)
    client_id = args[3]
    if not client_id or not client_id.isprintable() or any(ch.isspace() for ch in client_id):
        raise ArgumentError(4)
    return partial(_start_json_client, ip, port, nickname, client_id, history, args[0])


def _start_line_client(host: str, port: int) -> Callable[[], Awaitable[int]]:
    """Connect, then send the first stdin line as the name, alone and without a newline."""
    start = _connect(host, port)
    if early.stdin_is_terminal():
        early.say("Enter your name:")
    name = start.read_first_line()
    if name is not None:
        start.send(LineClientCodec().send(Hello(name)))
    from triochat.client.line_client import run_line_client

    return partial(run_line_client, start)


def _start_json_client(
    ip: str,
    port: int,
    nickname: str,
    client_id: str,
    history: int | None = None,
    server_name: str | None = None,
) -> Callable[[], Awaitable[int]]:
    """Connect, print the banner and send the join request (asking for the last ``history``
    messages on joining, if given: a triochat server replays them). With ``--tls`` the
    certificate is checked for ``server_name``, the host as given."""
    start = _connect(ip, port, server_name)
    # From here on the client is (about to be) a member: Ctrl-C leaves with the Summary.
    defer_ctrl_c()
    started = now_display()
    early.say(
        f"ChatClient started with server IP: {ip}, port: {port}, nickname: {nickname}, "
        f"client ID: {client_id}, Date/Time: {started}"
    )
    start.send(JsonClientCodec().send(Hello(nickname, client_id, started, history=history)))
    from triochat.client.json_client import run_json_client

    return partial(run_json_client, start, nickname, client_id, started)


def _menu_client(args: list[str], host: str | None) -> Launch:
    """``-l <listen port> -p <server port> [--share-dir DIR]``: bad values name their position."""
    share_dir = Path(_take_option(args, "--share-dir") or ".")
    listen = _take_option(args, "-l")
    server = _take_option(args, "-p")
    listen_port = parse_port(listen, 2)
    server_port = parse_port(server, 4)
    if args:
        raise ArgumentError(5)
    if not share_dir.is_dir():
        raise ArgumentError(6)
    return partial(_start_menu_client, host or "127.0.0.1", server_port, listen_port, share_dir)


def _start_menu_client(
    host: str, server_port: int, listen_port: int, share_dir: Path
) -> Callable[[], Awaitable[int]]:
    """Listen on the file port, connect, read the name and ask to join with it."""
    listeners = early.listen(listen_port)
    try:
        start = _connect(host, server_port)
    except early.CannotStart:
        for sock in listeners:
            sock.close()
        raise
    start.listeners = listeners
    if early.stdin_is_terminal():
        early.say("Enter your name:")
    name = start.read_first_line()
    if name is not None:
        name = name.strip()
        hello = Hello(name, MENU_CLIENT_ID, now_display(), listen_port)
        start.send(JsonClientCodec().send(hello))
    from triochat.client.menu_client import run_menu_client

    return partial(run_menu_client, start, name, listen_port, share_dir)


def _udp_client(args: list[str]) -> Launch:
    """``--udp <host-or-ip> <port> [<nickname>] [--show-sender]`` (seed 002).

    Without a nickname the server names the client ``udp-<its port>``.
    """
    _take_flag(args, "--udp")
    show_sender = _take_flag(args, "--show-sender")
    if not args:
        raise ArgumentError(1)
    ip = resolve_host(args[0], 1)
    port = parse_port(args[1] if len(args) > 1 else None, 2)
    if len(args) > 3:
        raise ArgumentError(4)
    name: str | None = None
    if len(args) == 3:
        try:
            name = check_name(args[2])
        except InvalidName:
            raise ArgumentError(3) from None
    return partial(_start_udp_client, ip, port, show_sender, name)


UDP_WELCOME = ("Welcome to the chat room!", "Type your message and press Enter to send it")


def _start_udp_client(
    ip: str, port: int, show_sender: bool, name: str | None
) -> Callable[[], Awaitable[int]]:
    """Greet the server and print the seed's welcome."""
    start = early.connect(ip, port, socket.SOCK_DGRAM)
    (greeting,) = DatagramClientCodec().send(Hello(name or ""))
    start.send(greeting)
    for line in UDP_WELCOME:
        early.say(line)
    from triochat.client.udp_client import run_udp_client

    server = f"{ip}:{port}"
    return partial(run_udp_client, start, server, show_sender=show_sender, name=name)


def _take_flag(args: list[str], *names: str) -> bool:
    found = False
    for name in names:
        while name in args:
            args.remove(name)
            found = True
    return found


def _take_option(args: list[str], name: str) -> str | None:
    if name not in args:
        return None
    index = args.index(name)
    if index + 1 >= len(args):
        del args[index]
        return None
    value = args[index + 1]
    del args[index : index + 2]
    return value


def port_tagged_client_main(argv: Sequence[str] | None = None) -> int:
    """``python mychatclient.py [--host HOST] [--port PORT]`` (seed 004)."""
    parser = argparse.ArgumentParser(
        prog="mychatclient.py", description="Port-tagged chat client (seed 004)."
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=12000)
    parser.add_argument("-v", "--verbose", action="store_true", help="log details to stderr")
    args = parser.parse_args(argv)
    configure_logging(args.verbose)
    try:
        start = early.connect(args.host, args.port)
    except early.CannotStart as error:
        early.warn(str(error))
        return 1
    early.say("Connected to chat server. Type 'exit' to leave.")
    from triochat.client.port_tagged_client import run_port_tagged_client

    return run_program(partial(run_port_tagged_client, start), verbose=args.verbose)
