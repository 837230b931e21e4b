"""What history costs the room itself: ``Room.broadcast`` CPU per delivery with history off,
on (the default 100 messages, in memory) and on with the SQLite store's queue, in one process
and one run (no sockets, no load generator: the figure the fan-out benchmark's noise hides).

    python -m benchmarks.room_history                  # 100 members, 4,000 messages, 15 runs
    python -m benchmarks.room_history --members 500 --messages 1000 --repeats 25

The variants run interleaved, run by run, each on a fresh room; only the ``broadcast`` calls
are timed (``time.perf_counter_ns``), not the draining of the outboxes between them. On a
shared machine other programs only ever add time, so the fastest run of each variant is the
figure compared (the median is reported too). The
SQLite variant times what the room pays (``SqliteHistory.enqueue``, the sink): the writes
themselves run in a worker thread, which ``python -m benchmarks.fanout --levers
trio-historydb`` measures with everything else.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import trio

from benchmarks import common
from benchmarks.common import say
from triochat.history import DEFAULT_HISTORY, History
from triochat.room import Delivery, Member, Room, open_outbox
from triochat.server.history_db import SqliteHistory

DRAIN_EVERY = 256
"""Messages between two drains of every outbox (below the outbox limit, so nobody is evicted)."""

Variant = Callable[[], Room]


def timed_run(room: Room, members: int, messages: int) -> float:
    """Nanoseconds per delivery of ``messages`` broadcasts to ``members`` members."""
    boxes: list[trio.MemoryReceiveChannel[Delivery]] = []
    for number in range(members):
        send, receive = open_outbox()
        room.join(Member(f"m{number}", "127.0.0.1", 1000 + number, send, lambda _: None))
        boxes.append(receive)
    sender = next(iter(room))
    elapsed = 0
    for number in range(messages):
        started = time.perf_counter_ns()
        room.broadcast(sender, f"message {number}", received_at="2026-11-29 14:00:00")
        elapsed += time.perf_counter_ns() - started
        if number % DRAIN_EVERY == DRAIN_EVERY - 1:
            for box in boxes:
                while True:
                    try:
                        box.receive_nowait()
                    except trio.WouldBlock:
                        break
    return elapsed / (messages * (members - 1))


async def measure(members: int, messages: int, repeats: int, scratch: Path) -> dict[str, Any]:
    # A store of its own for each repeat (nothing drains the queue here): the queue then
    # never passes MAX_PENDING, where every message would also drop the oldest.
    store = await SqliteHistory.open(str(scratch / "history.db"), DEFAULT_HISTORY)
    variants: dict[str, Variant] = {
        "history off": lambda: Room(),
        f"history {DEFAULT_HISTORY} (default)": lambda: Room(history=History(DEFAULT_HISTORY)),
        f"history {DEFAULT_HISTORY} + SQLite queue": lambda: Room(
            history=History(DEFAULT_HISTORY, sink=store.enqueue)
        ),
    }
    runs: dict[str, list[float]] = {name: [] for name in variants}
    for repeat in range(repeats):
        if repeat:
            await store.aclose()
            store = await SqliteHistory.open(str(scratch / "history.db"), DEFAULT_HISTORY)
        for name, make in variants.items():
            runs[name].append(timed_run(make(), members, messages))
        say(
            f"run {repeat + 1}/{repeats}: "
            + ", ".join(f"{n} {v[-1]:.1f} ns" for n, v in runs.items())
        )
    await store.aclose()
    base = min(runs["history off"])
    return {
        name: {
            "ns_per_delivery_min": round(min(values), 2),
            "ns_per_delivery_median": round(statistics.median(values), 2),
            "ns_per_delivery_runs": [round(v, 2) for v in values],
            "ratio_to_history_off": round(min(values) / base, 3),
        }
        for name, values in runs.items()
    }


def main(argv: list[str] | None = None) -> int:
    parser = common.base_parser("benchmarks.room_history", __doc__)
    parser.add_argument("--members", type=int, default=100)
    parser.add_argument("--messages", type=int, default=4_000)
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args(argv)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="bench-room-history-") as tmp:
        figures = trio.run(measure, max(2, args.members), args.messages, args.repeats, Path(tmp))
    for name, figure in figures.items():
        say(
            f"{name:28s} fastest {figure['ns_per_delivery_min']:6.1f} ns/delivery "
            f"(x{figure['ratio_to_history_off']:.3f} of history off), "
            f"median {figure['ns_per_delivery_median']:6.1f}"
        )
    results = {
        "benchmark": "room_history",
        "command": "python -m benchmarks.room_history " + " ".join(argv or sys.argv[1:]),
        "machine": common.machine_info(),
        "members": args.members,
        "messages": args.messages,
        "repeats": args.repeats,
        "variants": figures,
    }
    common.finish_run(args.out_dir, "room_history", results, started, report=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
