"""Idle connections: server memory per registered, idle connection at 1,000 and 10,000.

For each server a fresh process starts; after a short settle its resident set (VmRSS) is the
baseline. One load-generator worker then connects N clients, registers each (name line; ncat
has none), and waits until every client has received a probe message (so every one of them
is a registered member that has been written to once). After a one-second settle the server's
VmRSS again: (RSS after - baseline) / N is the figure. The fd limit is raised first.

    python -m benchmarks.idle                       # 1,000 and 10,000 connections
    python -m benchmarks.idle --quick               # 1,000 and 5,000
    python -m benchmarks.idle --sizes 200 --servers triochat,naive
    python -m benchmarks.idle --before /tmp/before  # also triochat from an earlier checkout
    python -m benchmarks.idle --profile             # also profile triochat's joins (pyinstrument)

A reference that is not installed (ncat) is skipped, with what to install on stderr.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks import common
from benchmarks.common import ServerSpec, say
from benchmarks.loadgen import WorkerProcess

SETTLE_S = 1.0


def wait_quiet(pid: int, limit_s: float = 30.0) -> float:
    """Wait until the server uses (almost) no CPU for a second; the seconds it took."""
    started = time.monotonic()
    last = common.cpu_seconds(pid)
    while time.monotonic() - started < limit_s:
        time.sleep(SETTLE_S)
        try:
            now = common.cpu_seconds(pid)
        except OSError:
            break
        if now - last <= 0.02:
            break
        last = now
    return time.monotonic() - started


def server_specs() -> list[ServerSpec]:
    return [common.triochat_spec(), common.naive_spec(), common.ncat_spec()]


def run_one(spec: ServerSpec, count: int, scratch: Path) -> dict[str, Any]:
    """Connect ``count`` idle clients to a fresh ``spec`` server and measure its RSS growth."""
    server = common.start_server(spec)
    row: dict[str, Any] = {"server": spec.key, "label": spec.label, "connections": count}
    worker: WorkerProcess | None = None
    try:
        time.sleep(SETTLE_S)
        before = server.rss_kib()
        sockets_before = common.socket_count(server.pid)
        started = time.monotonic()
        config = {
            "worker": 0,
            "workers": 1,
            "host": common.HOST,
            "port": server.port,
            "dialect": spec.dialect,
            "clients": [{"id": i, "sender": False, "reads": True} for i in range(count)],
            "senders": [],
            "messages": 0,
            "connect_timeout": 3.0,
            "connect_deadline": 60.0,
            "ready_timeout": 60.0,
            # ncat has no registration: a connection is a member. Its join announcements go
            # to everyone (O(N^2) lines), so instead of probing we wait for it to go quiet.
            "probe": spec.dialect != "ncat",
            # One probe is a broadcast to everyone: space them out as the room grows.
            "probe_interval": max(0.3, count / 4000),
        }
        worker = WorkerProcess(0, config, scratch / f"idle-{spec.key}-{count}.log")
        worker.command("connect")
        connected = worker.expect(("connected",), 200)
        ready = worker.expect(("ready", "not_ready"), 90)
        worker.command("go")  # stop probing: there is nothing to send
        elapsed = time.monotonic() - started
        quiet = wait_quiet(server.pid)
        after = server.rss_kib()
        alive = server.alive()
        server_side = common.socket_count(server.pid) - sockets_before
        failed = int(connected.get("failed", count)) if connected["event"] == "connected" else count
        # ncat has no registration: its members are the connections it holds.
        members = server_side if spec.dialect == "ncat" else int(ready.get("ready", 0))
        if not alive:
            members = 0
        open_now = int(ready.get("of", 0))
        row.update(
            {
                "alive": alive,
                "server_side_connections": server_side,
                "connected": count - failed,
                "registered": members,
                "open_at_measurement": open_now,
                "connect_failures": connected.get("failures", []),
                "ready_event": ready["event"],
                "rss_before_kib": before,
                "rss_after_kib": after,
                "peak_rss_kib": server.peak_rss_kib(),
                "threads": common.thread_count(server.pid),
                "kib_per_connection": (after - before) / members if members else float("nan"),
                "setup_s": elapsed,
                "quiet_after_s": quiet,
                "log_tail": server.log_tail(3) if spec.dialect != "line" else "",
            }
        )
    finally:
        if worker is not None:
            worker.stop()
        server.stop()
    return row


def run_profile(out_dir: Path, count: int, scratch: Path) -> dict[str, Any]:
    """Connect ``count`` clients to triochat running under pyinstrument; save the report."""
    why = common.pyinstrument_missing()
    if why:
        return {"skipped": why}
    report = common.results_dir(out_dir) / "profile_idle_joins.txt"
    say(f"profiling triochat while {count:,} clients join, with pyinstrument ...")
    row = run_one(common.profiled(common.triochat_spec(), report), count, scratch)
    return {"row": row, "report": str(report.relative_to(out_dir)), "connections": count}


def describe(row: dict[str, Any]) -> str:
    if "failed" in row:
        return f"FAILED: {row['failed']}"
    if not row["alive"]:
        return f"server EXITED after {row['connected']} connections: {row['log_tail']}"
    return (
        f"{row['registered']}/{row['connections']} registered "
        f"({row['connected']} connected, {row['server_side_connections']} held by the server), "
        f"RSS {row['rss_before_kib'] / 1024:.1f} -> "
        f"{row['rss_after_kib'] / 1024:.1f} MiB = {row['kib_per_connection']:.2f} KiB/conn, "
        f"{row['threads']} threads, setup {row['setup_s']:.1f} s"
    )


def main(argv: list[str] | None = None) -> int:
    parser = common.base_parser(
        "benchmarks.idle", __doc__, servers="triochat,naive,ncat", before=True
    )
    parser.add_argument("--sizes", help="comma-separated connection counts")
    args = parser.parse_args(argv)
    limit = common.raise_nofile(65536)
    if args.sizes:
        sizes = [int(x) for x in args.sizes.split(",")]
    else:
        sizes = [1000, 5000] if args.quick else [1000, 10000]
    runnable, skipped = common.chosen_servers(server_specs(), args)
    results: dict[str, Any] = {
        "benchmark": "idle",
        "command": "python -m benchmarks.idle" + (" --quick" if args.quick else ""),
        "machine": common.machine_info(),
        "fd_limit": limit,
        "sizes": sizes,
        "servers": {s.key: {"label": s.label, "note": s.note} for s in runnable},
        "skipped": skipped,
        "rows": [],
    }
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="bench-idle-") as tmp:
        for count in sizes:
            for spec in runnable:
                if count + 64 > limit:
                    row: dict[str, Any] = {
                        "server": spec.key,
                        "label": spec.label,
                        "connections": count,
                        "failed": f"open-file limit {limit} is below {count} connections",
                    }
                else:
                    say(f"idle {count:6d} connections {spec.label} ...")
                    try:
                        row = run_one(spec, count, Path(tmp))
                    except Exception as error:
                        row = {
                            "server": spec.key,
                            "label": spec.label,
                            "connections": count,
                            "failed": repr(error),
                        }
                results["rows"].append(row)
                say("    " + describe(row))
        if args.profile:
            results["profile"] = run_profile(args.out_dir, max(sizes), Path(tmp))
    common.finish_run(args.out_dir, "idle", results, started, report=not args.no_report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
