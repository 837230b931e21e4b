"""Where an idle member's memory goes: Python allocations per connection, by source file.

Runs the real :class:`~triochat.server.session.ChatSession` in this process over N socket
pairs (no load generator, no console), registers every member, lets the room settle, and
compares two ``tracemalloc`` snapshots. The figure is Python heap only (no allocator slack),
so it sits a little under the RSS per connection that ``benchmarks.idle`` measures; it says which
parts of the stack the memory belongs to, which RSS cannot.

    python -m benchmarks.idle_breakdown            # 2,000 members, top 15 files
    python -m benchmarks.idle_breakdown --members 500 --by lineno
"""

from __future__ import annotations

import gc
import tracemalloc
from pathlib import Path

import trio

from benchmarks import common
from triochat.room import Room
from triochat.server.config import ServerConfig
from triochat.server.session import ChatSession, SessionCounter
from triochat.server.writer import Flusher

SETTLE_ROUNDS = 50
"""Scheduler rounds of waiting for the room to fill (each sleeps 10 ms; bounded)."""


async def measure(members: int, group_by: str, top: int) -> None:
    room = Room()
    limits = ServerConfig()
    counter = SessionCounter()
    client_ends: list[trio.SocketStream] = []
    async with trio.open_nursery() as nursery:
        flusher = Flusher()
        await nursery.start(flusher.serve)
        gc.collect()
        tracemalloc.start(1)
        before = tracemalloc.take_snapshot()
        for number in range(members):
            client_socket, server_socket = trio.socket.socketpair()
            client_end = trio.SocketStream(client_socket)
            client_ends.append(client_end)
            session = ChatSession(
                trio.SocketStream(server_socket),
                None,
                room,
                ("127.0.0.1", number),
                limits,
                counter=counter,
                flusher=flusher,
            )
            nursery.start_soon(session.run)
            await client_end.send_all(f"member{number}\n".encode())
        for _ in range(SETTLE_ROUNDS * 100):
            if len(room.names()) >= members:
                break
            await trio.sleep(0.01)
        gc.collect()
        after = tracemalloc.take_snapshot()
        tracemalloc.stop()
        stats = after.compare_to(before, group_by)
        total = sum(stat.size_diff for stat in stats)
        # Both ends of each socket pair are counted; the client end is a trio socket too.
        print(f"{len(room.names()):,} members: {total / members:,.0f} B of Python heap each")
        for stat in stats[:top]:
            where = str(stat.traceback).replace(str(Path(trio.__file__).parent.parent), "")
            print(
                f"{stat.size_diff / members:8,.0f} B {stat.count_diff / members:6.2f} objects"
                f"  {where}"
            )
        nursery.cancel_scope.cancel()


def main() -> None:
    parser = common.doc_parser("benchmarks.idle_breakdown", __doc__)
    parser.add_argument("--members", type=int, default=2000)
    parser.add_argument("--by", choices=["filename", "lineno"], default="filename")
    parser.add_argument("--top", type=int, default=15)
    args = parser.parse_args()
    trio.run(measure, args.members, args.by, args.top)


if __name__ == "__main__":
    main()
