"""Cluster: one node against two (SO_REUSEPORT, one port), both through Redis, and the room in
memory beside them, on the same load.

Each configuration starts fresh: a ``redis-server`` on a free port (no persistence) for the
cluster ones, then the nodes (``ChatServer.py <port> --no-udp --cluster redis://...``; with
two nodes both take ``--reuse-port`` and the kernel spreads the load generator's connections
over them). The load generator is ``benchmarks/loadgen.py``, as for ``benchmarks.fanout``:
every figure means what it means there, with the "server" being every node plus Redis:
deliveries/s, CPU microseconds per delivery (nodes + Redis, from /proc), one-way latency
p50/p99 (the broker hop is the difference from the in-memory row), lost / duplicated /
out-of-order deliveries.

    python -m benchmarks.cluster           # flood and paced, 3 runs each, about 3 minutes
    python -m benchmarks.cluster --quick   # 1 run each, about a minute

Needs ``redis-server`` (apt-get install redis-server) and coredis (pip install -e '.[cluster]').
Results: ``benchmarks/results/cluster.json``; the table goes to stderr (and docs/SCALING.md
by hand).
"""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO, Any

from benchmarks import common
from benchmarks.common import ServerSpec, say
from benchmarks.fanout import WINDOW, Scenario, _summarise, start_workers
from benchmarks.loadgen import WorkerProcess


@dataclass(frozen=True)
class Layout:
    """One way to run the room.

    Attributes:
        key: short id.
        label: what the table calls it.
        nodes: ChatServer processes.
        redis: through Redis (``--cluster``) or in memory.
    """

    key: str
    label: str
    nodes: int
    redis: bool


LAYOUTS = (
    Layout("memory", "1 process, room in memory", 1, False),
    Layout("cluster1", "1 node + Redis", 1, True),
    Layout("cluster2", "2 nodes (SO_REUSEPORT) + Redis", 2, True),
)


def scenarios(quick: bool, tiny: bool = False) -> list[Scenario]:
    """Fan-out with a window (latency under load), open-loop senders to few readers (how many
    messages per second one room's stream takes), and a paced load (the broker hop)."""
    if tiny:
        return [Scenario("flood", "N=4 K=2 M=20 flood", 4, 2, 20, workers=1, idle_timeout=1.5)]
    repeats = 1 if quick else 3
    return [
        Scenario(
            "flood",
            "N=100 K=10 M=300 pipelined (16 in flight)",
            100,
            10,
            300,
            window=WINDOW,
            repeats=repeats,
        ),
        Scenario("rate", "N=10 K=10 M=1000 open loop", 10, 10, 1000, repeats=repeats),
        Scenario(
            "paced",
            "N=100 K=4 x 50 msg/s for 4 s",
            100,
            4,
            200,
            rate=50,
            duration=4.0,
            repeats=repeats,
        ),
    ]


class Running:
    """The processes of one layout: Redis (if any) and the nodes, stopped by PID."""

    def __init__(self, layout: Layout, scratch: Path) -> None:
        self.layout = layout
        self.scratch = scratch
        self.port = common.free_port()
        self.processes: list[subprocess.Popen[bytes]] = []
        self.logs: list[IO[bytes]] = []
        url = None
        if layout.redis:
            redis_port = common.free_port()
            self._spawn(
                "redis",
                [
                    "redis-server",
                    "--port",
                    str(redis_port),
                    "--bind",
                    common.HOST,
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                    "--dir",
                    str(scratch),
                ],
            )
            common.wait_listening(redis_port, self.processes[-1])
            url = f"redis://{common.HOST}:{redis_port}/0"
        for index in range(layout.nodes):
            argv = [sys.executable, str(common.ROOT / "ChatServer.py"), str(self.port)]
            argv += ["--host", common.HOST, "--no-udp"]
            if url is not None:
                argv += ["--cluster", url]
            if layout.nodes > 1:
                argv.append("--reuse-port")
            out = self._spawn(f"node{index}", argv)
            self._wait_banner(out, self.processes[-1])

    def _spawn(self, name: str, argv: list[str]) -> Path:
        out = self.scratch / f"{name}.out"
        log = out.open("wb")
        self.logs.append(log)
        self.processes.append(
            subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log, cwd=self.scratch
            )
        )
        return out

    @staticmethod
    def _wait_banner(out: Path, process: subprocess.Popen[bytes]) -> None:
        """Until the node prints its banner (with SO_REUSEPORT a connection test cannot tell
        which node answered)."""
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if b"ChatServer started" in out.read_bytes():
                return
            if process.poll() is not None:
                raise RuntimeError(f"node exited: {out.read_text(errors='replace')[-500:]}")
            time.sleep(0.05)  # a file has no "line written" event to wait on
        raise RuntimeError(f"node did not start: {out.read_text(errors='replace')[-500:]}")

    def cpu_parts(self) -> list[float]:
        """CPU seconds so far of each process: Redis first (if any), then the nodes."""
        return [common.cpu_seconds(p.pid) if p.poll() is None else 0.0 for p in self.processes]

    def peak_rss_kib(self) -> int:
        return sum(common.status_kib(p.pid, "VmHWM") for p in self.processes)

    def stop(self) -> None:
        for process in reversed(self.processes):
            common.stop_process(process, grace=5)
        for log in self.logs:
            log.close()


def run_one(layout: Layout, scenario: Scenario, scratch: Path) -> dict[str, Any]:
    """One run of ``scenario`` on a fresh ``layout``; a row of figures."""
    spec = ServerSpec(layout.key, layout.label, "line", lambda port, _: [])
    running = Running(layout, scratch)
    workers: list[WorkerProcess] = []
    row: dict[str, Any] = {"layout": layout.key, "label": layout.label, "scenario": scenario.key}
    try:
        workers += start_workers(scenario, running.port, "line", scratch, layout.key)
        for worker in workers:
            worker.command("connect")
            worker.expect(("connected",), 120)
        ready = [w.expect(("ready", "not_ready"), 90) for w in workers]
        if any(r["event"] != "ready" for r in ready):
            row["not_ready"] = ready
        parts0 = running.cpu_parts()
        cpu0 = sum(parts0)
        gen0 = [common.cpu_seconds(w.process.pid) for w in workers]
        wall0 = time.monotonic()
        for worker in workers:
            worker.command("go")
        done = [w.expect(("done",), scenario.deadline + 60) for w in workers]
        wall1 = time.monotonic()
        parts1 = running.cpu_parts()
        cpu1 = sum(parts1)
        row["cpu_s_by_process"] = [b - a for a, b in zip(parts0, parts1, strict=True)]
        gen1 = [common.cpu_seconds(w.process.pid) for w in workers]
        row["peak_rss_kib"] = running.peak_rss_kib()
        row.update(
            _summarise(scenario, done, cpu1 - cpu0, gen0, gen1, wall1 - wall0, scratch, spec, 0.0)
        )
    finally:
        for worker in workers:
            worker.stop()
        running.stop()
    return row


def main(argv: list[str] | None = None) -> int:
    parser = common.doc_parser("benchmarks.cluster", __doc__)
    parser.add_argument("--quick", action="store_true", help="one run of each")
    parser.add_argument("--tiny", action="store_true", help="a seconds-long smoke test")
    parser.add_argument("--out-dir", type=Path, default=common.BENCH_DIR, help="where results/ go")
    args = parser.parse_args(argv)
    if shutil.which("redis-server") is None or importlib.util.find_spec("coredis") is None:
        say("needs redis-server (apt-get install redis-server) and coredis (pip install coredis)")
        return 1
    common.raise_nofile()
    chosen = scenarios(args.quick, args.tiny)
    results: dict[str, Any] = {
        "benchmark": "cluster",
        "command": "python -m benchmarks.cluster" + (" --quick" if args.quick else ""),
        "machine": common.machine_info(),
        "layouts": [asdict(layout) for layout in LAYOUTS],
        "scenarios": [asdict(s) for s in chosen],
        "rows": [],
    }
    started = time.monotonic()
    for scenario in chosen:
        for repeat in range(scenario.repeats):
            for layout in LAYOUTS:
                say(f"cluster {scenario.key:6s} {layout.label:32s} run {repeat + 1} ...")
                with tempfile.TemporaryDirectory(prefix="bench-cluster-") as tmp:
                    try:
                        row = run_one(layout, scenario, Path(tmp))
                    except Exception as error:  # one failed run must not lose the others
                        row = {
                            "layout": layout.key,
                            "scenario": scenario.key,
                            "failed": repr(error),
                        }
                row["repeat"] = repeat
                results["rows"].append(row)
                say("    " + describe(row))
    say(table(results["rows"]))
    common.finish_run(args.out_dir, "cluster", results, started, report=False)
    return 0


def describe(row: dict[str, Any]) -> str:
    if "failed" in row:
        return f"FAILED: {row['failed']}"
    return (
        f"{row['deliveries']}/{row['expected']} delivered, {row['deliveries_per_s']:.0f}/s, "
        f"{row['server_us_per_delivery']:.2f} us CPU/delivery (nodes + Redis), "
        f"p50 {row['latency_p50_ms']:.2f} ms p99 {row['latency_p99_ms']:.2f} ms, "
        f"lost {row['lost']} dup {row['duplicates']} ooo {row['out_of_order']}, "
        f"CPU s by process {[round(x, 2) for x in row['cpu_s_by_process']]}, "
        f"messages/s {row['sent'] / row['active_s'] if row['active_s'] else 0:.0f}"
    )


def table(rows: list[dict[str, Any]]) -> str:
    """Medians per scenario and layout, as a Markdown table."""
    lines = [
        "| scenario | layout | deliveries/s | CPU us/delivery | p50 ms | p99 ms | lost/dup/ooo |",
        "|---|---|---:|---:|---:|---:|---|",
    ]
    keys = sorted({(r["scenario"], r["layout"]) for r in rows}, key=lambda k: (k[0], k[1]))
    for scenario, layout in keys:
        runs = [r for r in rows if (r["scenario"], r["layout"]) == (scenario, layout)]
        good = [r for r in runs if "failed" not in r]
        if not good:
            lines.append(f"| {scenario} | {layout} | failed | | | | |")
            continue

        def median(key: str, good: list[dict[str, Any]] = good) -> float:
            values = sorted(float(r[key]) for r in good)
            return values[len(values) // 2]

        bad = "/".join(
            str(sum(int(r[k]) for r in good)) for k in ("lost", "duplicates", "out_of_order")
        )
        lines.append(
            f"| {scenario} | {layout} | {median('deliveries_per_s'):.0f} | "
            f"{median('server_us_per_delivery'):.2f} | {median('latency_p50_ms'):.2f} | "
            f"{median('latency_p99_ms'):.2f} | {bad} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
