"""Command lines of the servers: ``ChatServer.py`` and ``mychatserver.py``.

Arguments -> :class:`ServerConfig`; binding with the exact ``ERR - ...`` lines; the banner once
the server accepts; Ctrl-C and SIGTERM as a graceful shutdown; exit codes. The serving itself
is ``triochat.server.serve``.
"""

from __future__ import annotations

import argparse
import errno
import logging
import signal
import socket
import sqlite3
import ssl
from collections.abc import Sequence
from functools import partial

import trio

from triochat.cli import CHAT_COMMANDS, ArgumentError, configure_logging, parse_port, run_program
from triochat.client.early import say
from triochat.cluster.address import ClusterAddress, parse_cluster_address
from triochat.history import History
from triochat.room import Room
from triochat.server.config import ServerConfig
from triochat.server.console import ChatConsole, PortTaggedConsole
from triochat.server.history_db import SqliteHistory
from triochat.server.serve import (
    ChatService,
    open_chat_sockets,
    serve_chat,
    serve_port_tagged,
)
from triochat.wire.common import MAX_SERVER_LINE_BYTES

logger = logging.getLogger("triochat")


def display_ip(host: str | None) -> str:
    """The IP address the banner shows: the bound host, else this machine's address."""
    if host:
        return host
    try:
        return socket.gethostbyname(socket.gethostname())
    except OSError:
        return "127.0.0.1"


async def wait_for_signal_then_shutdown(service: ChatService, nursery: trio.Nursery) -> None:
    """Serve until SIGINT/SIGTERM, then shut down gracefully and cancel ``nursery``."""
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for signum in signals:
            logger.info("signal %s: shutting down", signum)
            break
    await service.shutdown()
    nursery.cancel_scope.cancel()


async def run_chat_server(
    port: int,
    host: str | None = None,
    config: ServerConfig | None = None,
    *,
    udp: bool = True,
    cluster: ClusterAddress | None = None,
    reuse_port: bool = False,
) -> int:
    """``ChatServer.py``: every dialect in one room (UDP too unless ``udp=False``).

    With ``cluster``, the room is shared with every server using the same Redis (SPEC §10).
    Returns the exit code.
    """
    config = config or ServerConfig()
    console = ChatConsole(log_messages=config.log_messages)
    try:
        listeners, datagram_sockets = await open_chat_sockets(
            port, host, udp=udp, reuse_port=reuse_port
        )
    except OSError as error:
        logger.debug("bind failed: %r", error)
        console.line(f"ERR - cannot create ChatServer socket using port number {port}")
        return 1
    store: SqliteHistory | None = None
    if config.history_db and not config.history:
        logger.warning(
            "--history-db %s is not used: --history 0 turns history off", config.history_db
        )
    if config.history and config.history_db:
        try:
            store = await SqliteHistory.open(config.history_db, config.history)
        except (sqlite3.Error, OSError) as error:
            logger.error("cannot open history database %s: %s", config.history_db, error)
            console.line(f"ERR - cannot open history database {config.history_db}")
            for sock in datagram_sockets:
                sock.close()
            for listener in listeners:
                await listener.aclose()
            return 1
    history = None
    if config.history:
        history = (
            History(config.history, sink=store.enqueue, initial=store.initial)
            if store is not None
            else History(config.history)
        )
    try:
        async with trio.open_nursery() as nursery:
            if store is not None:
                # Cancelled with the rest after shutdown has closed the room: its last batch
                # (written in its finally block) holds every message the room accepted.
                await nursery.start(store.serve)
            if cluster is None:
                room = Room(
                    observer=console,
                    outbox_limit=config.outbox_limit,
                    encode_once=config.encode_once,
                    history=history,
                )
            else:
                joined = await join_cluster(nursery, cluster, console, config, history)
                if joined is None:
                    nursery.cancel_scope.cancel()
                    return 1
                room = joined
            service: ChatService = await nursery.start(
                partial(
                    serve_chat,
                    listeners,
                    room,
                    config,
                    datagram_sockets=datagram_sockets,
                    transfer_observer=console,
                )
            )
            console.started(display_ip(host), service.port)
            await wait_for_signal_then_shutdown(service, nursery)
    finally:
        for sock in datagram_sockets:
            sock.close()
    return 0


async def run_port_tagged_server(
    port: int = 12000, host: str = "127.0.0.1", config: ServerConfig | None = None
) -> int:
    """``mychatserver.py`` (seed 004): members named by their port. Returns the exit code."""
    config = config or ServerConfig()
    console = PortTaggedConsole()
    try:
        listeners, _ = await open_chat_sockets(port, host, udp=False)
    except OSError as error:
        reason = "port is busy" if error.errno == errno.EADDRINUSE else str(error)
        logger.error("cannot listen on %s:%s: %s", host, port, reason)
        console.line(f"ERR - cannot listen on {host}:{port}")
        return 1
    room = Room(observer=console, outbox_limit=config.outbox_limit, encode_once=config.encode_once)
    async with trio.open_nursery() as nursery:
        service: ChatService = await nursery.start(
            partial(serve_port_tagged, listeners, room, config)
        )
        console.started(host, service.port)
        await wait_for_signal_then_shutdown(service, nursery)
    return 0


def server_tls_context(cert: str | None, key: str | None) -> ssl.SSLContext:
    """The server's TLS context from PEM files (TLS 1.2 or newer).

    Raises:
        ValueError: one of the two files is missing from the command line.
        OSError: a file cannot be read, or does not hold a matching certificate and key.
    """
    if not cert or not key:
        raise ValueError("--tls-cert and --tls-key go together")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert, key)
    return context


async def join_cluster(
    nursery: trio.Nursery,
    address: ClusterAddress,
    console: ChatConsole,
    config: ServerConfig,
    history: History | None,
) -> Room | None:
    """Start this node's share of the cluster room in ``nursery``; None (after an ``ERR``
    line) if coredis is missing or Redis does not answer."""
    try:
        # Imported only here: the default server needs neither coredis nor the cluster code.
        from triochat.cluster.link import ClusterUnavailable, serve_cluster_room
    except ImportError as error:
        logger.debug("cluster import failed: %r", error)
        console.line("ERR - --cluster needs coredis: pip install 'triochat[cluster]'")
        return None
    failure: BaseException | None = None
    try:
        room: Room = await nursery.start(
            partial(
                serve_cluster_room,
                address,
                console,
                config.outbox_limit,
                encode_once=config.encode_once,
                history=history,
            )
        )
    except* ClusterUnavailable as group:  # raised through the cluster's own nursery
        failure = group.exceptions[0]
    if failure is not None:
        logger.error("%s", failure)
        console.line(f"ERR - cannot reach the cluster's Redis at {address}")
        return None
    return room


def raise_open_file_limit() -> None:
    """Let the server hold as many connections as the hard limit allows (thousands, not 1,024)."""
    try:
        import resource
    except ImportError:  # not on this platform
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 65536)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError):
            logger.info("could not raise the open file limit above %s", soft)


def server_main(argv: Sequence[str] | None = None) -> int:
    """``python ChatServer.py <port> [--host HOST] [-v]``."""
    parser = argparse.ArgumentParser(
        prog="ChatServer.py",
        description="triochat server: line, JSON, datagram and browser (http://host:port/) "
        "chat in one room.",
        epilog=CHAT_COMMANDS
        + "JSON members use objects instead: private, rename, who, history (docs/PROTOCOL.md).",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("port", nargs="?", help="TCP (and UDP) port to listen on, 1-65535")
    # Extra words are an argument error like any other (ERR - arg 2), not argparse's usage.
    parser.add_argument("extra", nargs="*", help=argparse.SUPPRESS)
    parser.add_argument(
        "--port",
        dest="port_option",
        type=int,
        default=None,
        help="the port as an option; 0 picks a free one, which the banner shows (for tests "
        "and scripts: the seeds' checkers want the positional port 1-65535)",
    )
    parser.add_argument("--host", default=None, help="address to bind (default: all interfaces)")
    parser.add_argument(
        "--no-udp", action="store_true", help="no UDP endpoint (datagram dialect) on the port"
    )
    defaults = ServerConfig()
    parser.add_argument(
        "--max-connections",
        type=int,
        default=defaults.max_connections,
        help="TCP connections at once; more are refused with a notice (default %(default)s)",
    )
    parser.add_argument(
        "--max-per-ip",
        type=int,
        default=None,
        metavar="N",
        help=f"TCP connections at once from one IP address; more are refused with a notice in "
        f"the peer's dialect (default {defaults.max_per_ip}, loopback exempt; when given, N "
        "applies to every address, loopback included; 0: no limit)",
    )
    parser.add_argument(
        "--history",
        type=int,
        default=defaults.history,
        metavar="N",
        help="chat messages the room keeps for /history and for JSON members that ask on "
        "joining (default %(default)s; 0: off)",
    )
    parser.add_argument(
        "--history-db",
        default=None,
        metavar="FILE",
        help="keep history in this SQLite file (WAL), so it survives a restart",
    )
    parser.add_argument(
        "--outbox-limit",
        type=int,
        default=defaults.outbox_limit,
        help="messages queued for a member before it is disconnected as too slow "
        "(default %(default)s)",
    )
    parser.add_argument(
        "--registration-timeout",
        type=float,
        default=defaults.registration_timeout,
        help="seconds a new connection has to send its name (default %(default)s)",
    )
    parser.add_argument(
        "--max-line-bytes",
        type=int,
        default=defaults.max_line_bytes,
        help="longest line or JSON object accepted (default %(default)s)",
    )
    parser.add_argument(
        "--max-rate",
        type=float,
        default=defaults.message_rate,
        help=f"messages per second one member may send, bursts of {defaults.message_burst} "
        "allowed; faster senders are slowed, never dropped (default 0: no limit)",
    )
    parser.add_argument(
        "--idle-timeout",
        type=float,
        default=defaults.idle_timeout,
        help="disconnect members silent this many seconds (default 0: never)",
    )
    parser.add_argument(
        "--max-file-bytes",
        type=int,
        default=defaults.max_file_bytes,
        help="largest file the relay carries (default %(default)s)",
    )
    parser.add_argument(
        "--no-web",
        action="store_true",
        help="no chat page: the TCP port does not answer HTTP or WebSocket requests",
    )
    parser.add_argument(
        "--tls-cert",
        metavar="FILE",
        help="PEM certificate (chain): the port speaks TLS as well, for every dialect and the "
        "page (https, wss); needs --tls-key",
    )
    parser.add_argument("--tls-key", metavar="FILE", help="PEM private key for --tls-cert")
    parser.add_argument(
        "--cluster",
        type=cluster_address,
        default=None,
        metavar="redis://HOST:PORT[/DB]",
        help="share one room with every server started with the same Redis (7.0 or newer; "
        "pip install 'triochat[cluster]')",
    )
    parser.add_argument(
        "--reuse-port",
        action="store_true",
        help="let several servers on this machine listen on the same port (SO_REUSEPORT), "
        "e.g. nodes of one cluster, one per core",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log details to stderr")
    args = parser.parse_args(argv)
    configure_logging(args.verbose)
    tls = None
    if args.tls_cert or args.tls_key:
        try:
            tls = server_tls_context(args.tls_cert, args.tls_key)
        except (OSError, ValueError) as error:
            say(f"ERR - cannot use the TLS certificate and key: {error}")
            return 1
    config = ServerConfig(
        web=not args.no_web,
        tls=tls,
        message_rate=max(0.0, args.max_rate),
        idle_timeout=max(0.0, args.idle_timeout),
        max_file_bytes=max(0, args.max_file_bytes),
        max_connections=max(1, args.max_connections),
        max_per_ip=defaults.max_per_ip if args.max_per_ip is None else max(0, args.max_per_ip),
        per_ip_exempt_loopback=args.max_per_ip is None,
        history=max(0, args.history),
        history_db=args.history_db,
        outbox_limit=max(1, args.outbox_limit),
        registration_timeout=max(0.1, args.registration_timeout),
        # Clients accept 1 MiB from the server; an escaped message may grow sixfold.
        max_line_bytes=min(max(64, args.max_line_bytes), MAX_SERVER_LINE_BYTES // 8),
    )
    try:
        if args.port_option is not None and args.port is None and 0 <= args.port_option < 65536:
            port = args.port_option
        else:
            port = parse_port(args.port, 1)
        if args.extra or (args.port is not None and args.port_option is not None):
            raise ArgumentError(2)
    except ArgumentError as error:
        say(str(error))
        return 1
    raise_open_file_limit()
    return run_program(
        partial(
            run_chat_server,
            port,
            args.host,
            config,
            udp=not args.no_udp,
            cluster=args.cluster,
            reuse_port=args.reuse_port,
        ),
        verbose=args.verbose,
        is_server=True,
    )


def cluster_address(text: str) -> ClusterAddress:
    """``--cluster``'s argument, or argparse's error."""
    try:
        return parse_cluster_address(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def port_tagged_server_main(argv: Sequence[str] | None = None) -> int:
    """``python mychatserver.py [--host HOST] [--port PORT]`` (seed 004)."""
    parser = argparse.ArgumentParser(
        prog="mychatserver.py", description="Port-tagged chat server (seed 004)."
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=12000, help="0 picks a free port")
    parser.add_argument("-v", "--verbose", action="store_true", help="log details to stderr")
    args = parser.parse_args(argv)
    configure_logging(args.verbose)
    return run_program(
        partial(run_port_tagged_server, args.port, args.host),
        verbose=args.verbose,
        is_server=True,
    )
