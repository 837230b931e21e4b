"""Fan-out per dialect, in one process: the server's CPU per delivery to line members and to
browser (WebSocket) members, through the real room and writers, without a load generator.

N members, each a ``MemberWriter`` on one end of a socket pair with the server's flusher (the
fast path on), join one room; one sender broadcasts M messages of S bytes. The other ends are
read in the same process between batches, and that reading is taken out of the figures, so
what is left is the server's own work per delivery: the room's loop, the writers, the
``write()`` calls. Runs alternate between the dialects so both see the same machine.

    python -m benchmarks.fanout_dialects                 # N=100, M=3000, 5 runs each
    python -m benchmarks.fanout_dialects --members 500 --messages 1000

The end-to-end comparison with a separate load generator is ``benchmarks.fanout`` with
``--servers triochat,triochat-web,triochat-web-all``.
"""

from __future__ import annotations

import resource
import socket
import statistics
import sys
from collections.abc import Callable

import trio
import trio.testing

from benchmarks.common import doc_parser
from triochat.room import Member, Room
from triochat.server.config import ServerConfig
from triochat.server.reader import ServerCodec
from triochat.server.writer import Flusher, MemberWriter
from triochat.wire.http import HttpServerCodec, WebSocketUpgrade
from triochat.wire.lines import LineServerCodec
from triochat.wire.websocket import WebSocketClientCodec, WebSocketServerCodec

BATCH = 10
"""Messages between two drains of the members' sockets."""


def line_codec() -> ServerCodec:
    """A framed line member's codec (it has sent its name and a newline)."""
    codec = LineServerCodec()
    codec.receive_data(b"name\n")
    codec.next_event()
    codec.name_accepted()
    return codec


def web_codec() -> ServerCodec:
    """A browser member's codec, after the upgrade."""
    http = HttpServerCodec()
    http.receive_data(WebSocketClientCodec("bench").start())
    upgrade = http.next_event()
    assert isinstance(upgrade, WebSocketUpgrade)
    codec = WebSocketServerCodec(upgrade)
    codec.name_accepted()
    return codec


def cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def one_run(
    make_codec: Callable[[], ServerCodec], members: int, messages: int, size: int
) -> float:
    """CPU microseconds per delivery for one run."""
    config = ServerConfig(outbox_limit=messages + 16)
    room = Room(outbox_limit=config.outbox_limit)
    flusher = Flusher()
    readers: list[socket.socket] = []
    async with trio.open_nursery() as nursery:
        await nursery.start(flusher.serve)
        for index in range(members):
            ours, theirs = socket.socketpair()
            theirs.setblocking(False)
            readers.append(theirs)
            stream = trio.SocketStream(trio.socket.from_stdlib_socket(ours))
            writer = MemberWriter(stream, make_codec(), config, lambda _: None, flusher)
            nursery.start_soon(writer.serve)
            room.join(Member(f"m{index}", "127.0.0.1", index, writer, lambda _: None))
        silent, _ = trio.testing.memory_stream_pair()
        sender_writer = MemberWriter(silent, line_codec(), config, lambda _: None)
        sender = Member("sender", "127.0.0.1", 1, sender_writer, lambda _: None)
        room.join(sender)

        def drain() -> None:
            for reader in readers:
                try:
                    while reader.recv(1 << 20):
                        pass
                except BlockingIOError:
                    pass

        await trio.testing.wait_all_tasks_blocked()
        drain()
        text = "x" * size
        spent = 0.0
        for start in range(0, messages, BATCH):
            began = cpu()
            for _ in range(min(BATCH, messages - start)):
                room.broadcast(sender, text, received_at="2026-01-01 00:00:00")
            await trio.testing.wait_all_tasks_blocked()
            spent += cpu() - began
            drain()  # the members' reading is theirs, not the server's
        nursery.cancel_scope.cancel()
    for reader in readers:
        reader.close()
    return spent / (members * messages) * 1e6


def main(argv: list[str] | None = None) -> int:
    parser = doc_parser("benchmarks.fanout_dialects", __doc__)
    parser.add_argument("--members", type=int, default=100, help="N (default %(default)s)")
    parser.add_argument("--messages", type=int, default=3000, help="M (default %(default)s)")
    parser.add_argument("--size", type=int, default=100, help="S, bytes (default %(default)s)")
    parser.add_argument(
        "--runs", type=int, default=5, help="runs per dialect (default %(default)s)"
    )
    args = parser.parse_args(argv)
    dialects = {"line": line_codec, "web": web_codec}
    figures: dict[str, list[float]] = {name: [] for name in dialects}
    for _ in range(args.runs):
        for name, make in dialects.items():
            figures[name].append(trio.run(one_run, make, args.members, args.messages, args.size))
    for name, values in figures.items():
        runs = ", ".join(f"{value:.3f}" for value in values)
        print(f"{name:4s} median {statistics.median(values):.3f} us CPU/delivery ({runs})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
