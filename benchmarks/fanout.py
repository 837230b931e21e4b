"""Fan-out: N chat clients, K of them sending, every server on the same load in one run.

For each scenario and each server (triochat, the naive threaded baseline, ``ncat --chat``,
ngIRCd) a fresh server starts on a free 127.0.0.1 port; load-generator worker processes
(``benchmarks/loadgen.py``) connect the clients, wait until every one is registered, then
the senders send. Reported: deliveries/s, the server's CPU microseconds per delivery (utime +
stime from /proc over the active phase: the least noisy figure on a shared machine), one-way
latency p50/p99, lost / duplicated / out-of-order deliveries, the server's peak RSS, and how
busy the server and the load generator were (so a generator-bound run says so).

    python -m benchmarks.fanout                      # every scenario, about 6 minutes
    python -m benchmarks.fanout --quick              # smaller sizes, about 3 minutes
    python -m benchmarks.fanout --profile            # also profile triochat at N=100 (pyinstrument)
    python -m benchmarks.fanout --before /tmp/before # also triochat from an earlier checkout
    python -m benchmarks.fanout --servers triochat,naive --scenarios n100,paced
    python -m benchmarks.fanout --quick --servers triochat --scenarios n100w \
        --levers trio-nohistory,trio-historydb --repeats 3   # what history costs, as ratios
    python -m benchmarks.fanout --servers triochat,triochat-web,triochat-web-all \
        --scenarios n100,n500 --no-levers            # fan-out to line vs browser members

A reference that is not installed (ncat, ngircd) is skipped, with what to install on stderr.
"""

from __future__ import annotations

import sys
import tempfile
import time
from array import array
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from benchmarks import common
from benchmarks.common import RunningServer, ServerSpec, say
from benchmarks.loadgen import WorkerProcess

WINDOW = 16
"""Messages per sender in flight in the pipelined scenarios (sent, not yet seen by a receiver)."""


@dataclass
class Scenario:
    """One load shape.

    Attributes:
        key: short id.
        title: what the table calls it.
        clients: N, the clients that read (senders read too).
        senders: K, how many of the clients send.
        messages: M, messages per sender (paced: rate x duration).
        size: S, bytes per message text.
        window: most messages per sender in flight (sent, not yet seen by one receiver of
            the same worker); 0 = open loop, send as fast as TCP accepts.
        rate: messages/s per sender, 0 = as fast as the window allows.
        duration: seconds of paced sending.
        slow: extra clients that never read.
        workers: load-generator processes.
        idle_timeout: seconds without progress that end the run.
        deadline: seconds the active phase may last at most.
        repeats: runs per server (interleaved across servers); tables show the median.
        servers: restrict to these server keys.
    """

    key: str
    title: str
    clients: int
    senders: int
    messages: int
    size: int = 100
    window: int = 0
    rate: float = 0.0
    duration: float = 0.0
    slow: int = 0
    workers: int = 2
    idle_timeout: float = 3.0
    deadline: float = 120.0
    repeats: int = 1
    servers: tuple[str, ...] | None = None


def scenarios(size: str) -> list[Scenario]:
    """The scenario list for ``full``, ``quick`` or ``tiny`` runs."""
    if size == "tiny":
        return [
            Scenario("n10", "N=4 K=2 M=20 flood", 4, 2, 20, workers=1, idle_timeout=1.5),
            Scenario(
                "paced",
                "N=4 K=2 paced 20 msg/s",
                4,
                2,
                10,
                rate=20,
                duration=0.5,
                workers=1,
                idle_timeout=1.5,
            ),
            Scenario(
                "slow",
                "N=3 K=2 M=20 + 1 never reads",
                3,
                2,
                20,
                window=WINDOW,
                slow=1,
                workers=1,
                idle_timeout=1.5,
            ),
        ]
    full = size == "full"
    scale = 1 if full else 4
    repeats = 5 if full else 1
    paced_seconds = 10.0 if full else 3.0
    slow_messages = 1500 if full else 1000
    floods = [
        ("n10", 10, 10, 2000 // scale, 1),
        ("n100", 100, 10, 500 // scale, repeats),
        ("n500", 500, 5, 200 // scale, 1),
    ]
    chosen = [
        Scenario(key, f"N={n} K={k} M={m} flood", n, k, m, repeats=r) for key, n, k, m, r in floods
    ]
    chosen += [
        Scenario(
            key + "w",
            f"N={n} K={k} M={m} pipelined ({WINDOW} in flight)",
            n,
            k,
            m,
            window=WINDOW,
            repeats=r,
        )
        for key, n, k, m, r in floods
    ]
    chosen += [
        Scenario(
            "paced",
            f"N=100, 10 senders x 40 msg/s for {paced_seconds:g} s",
            100,
            10,
            int(40 * paced_seconds),
            rate=40,
            duration=paced_seconds,
            repeats=3 if full else 1,
        ),
        Scenario(
            "slow",
            f"N=20 K=10 M={slow_messages} S=400 pipelined + 1 client that never reads",
            20,
            10,
            slow_messages,
            size=400,
            window=WINDOW,
            slow=1,
        ),
        Scenario(
            "penalty",
            "N=10 K=2 M=100 pipelined, ngIRCd with and without its flood penalties",
            10,
            2,
            100,
            window=WINDOW,
            deadline=8.0,
            idle_timeout=3.0,
            servers=("ngircd", "ngircd-penalties"),
        ),
        Scenario(
            "slow-control",
            f"N=20 K=10 M={slow_messages} S=400 pipelined, everyone reads (control)",
            20,
            10,
            slow_messages,
            size=400,
            window=WINDOW,
        ),
    ]
    return chosen


def lever_variants() -> list[ServerSpec]:
    """triochat with one lever off each (``benchmarks/triochat_variant.py``), on N=100 pipelined."""
    return [
        common.variant_spec("trio-nofastpath", "triochat, no flusher fast path", "--no-fast-path"),
        common.variant_spec("trio-nocoalesce", "triochat, one write per message", "--no-coalesce"),
        common.variant_spec(
            "trio-noencodecache", "triochat, encode per member", "--no-encode-cache"
        ),
        common.variant_spec("trio-quietconsole", "triochat, no console lines", "--quiet-console"),
        common.variant_spec("trio-nohistory", "triochat, history off", "--no-history"),
        history_db_spec(),
    ]


def history_db_spec() -> ServerSpec:
    """triochat with its history also in SQLite (``--history-db``, a file in the scratch
    directory, fresh for every run)."""
    spec = common.variant_spec("trio-historydb", "triochat, history in SQLite")

    def argv(port: int, scratch: Path) -> list[str]:
        database = scratch / f"history-{port}.db"
        return [*spec.argv(port, scratch), "--history-db", str(database)]

    return replace(spec, argv=argv, note=spec.note + "--history-db <scratch>/history-<port>.db")


def lever_ratios(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each lever's server CPU per delivery as a ratio to triochat's own, scenario by
    scenario, from the medians of the runs of one benchmark run (same machine, same load)."""

    def median_cpu(key: str, scenario: str) -> float | None:
        values = sorted(
            row["server_us_per_delivery"]
            for row in rows
            if row.get("server") == key and row.get("scenario") == scenario and "failed" not in row
        )
        return values[len(values) // 2] if values else None

    ratios = []
    for scenario, key in sorted({(r["scenario"], r["server"]) for r in rows if r.get("lever")}):
        base, lever = median_cpu("triochat", scenario), median_cpu(key, scenario)
        if base and lever:
            ratios.append(
                {
                    "scenario": scenario,
                    "lever": key,
                    "us_per_delivery": round(lever, 3),
                    "triochat_us_per_delivery": round(base, 3),
                    "ratio_to_triochat": round(lever / base, 3),
                }
            )
    return ratios


# --- one run ----------------------------------------------------------------------------------


def start_workers(
    scenario: Scenario, port: int, dialect: str, scratch: Path, key: str
) -> list[WorkerProcess]:
    """The load-generator worker processes for one run of ``scenario`` against ``port``.

    If one cannot start, those already started are stopped: the caller has none to stop.
    """
    plans = _plan_clients(scenario)
    senders = [c["id"] for plan in plans for c in plan if c["sender"]]
    workers: list[WorkerProcess] = []
    try:
        for index, plan in enumerate(plans):
            config = {
                "worker": index,
                "workers": len(plans),
                "host": common.HOST,
                "port": port,
                "dialect": dialect,
                "clients": plan,
                "senders": senders,
                "messages": scenario.messages,
                "size": scenario.size,
                "window": scenario.window,
                "rate": scenario.rate,
                "duration": scenario.duration,
                "idle_timeout": scenario.idle_timeout,
                "deadline": scenario.deadline,
                "latency_file": str(scratch / f"lat-{key}-{scenario.key}-{index}.bin"),
                "ready_timeout": 60.0,
            }
            log_path = scratch / f"worker-{key}-{scenario.key}-{index}.log"
            workers.append(WorkerProcess(index, config, log_path))
    except BaseException:
        for worker in workers:
            worker.stop()
        raise
    return workers


def _plan_clients(scenario: Scenario) -> list[list[dict[str, Any]]]:
    """Clients per worker: slow ones first in worker 0, readers spread round robin."""
    plans: list[list[dict[str, Any]]] = [[] for _ in range(scenario.workers)]
    next_id = 0
    for _ in range(scenario.slow):
        plans[0].append({"id": next_id, "sender": False, "reads": False})
        next_id += 1
    for index in range(scenario.clients):
        plans[index % scenario.workers].append(
            {"id": next_id, "sender": index < scenario.senders, "reads": True}
        )
        next_id += 1
    return plans


def run_one(spec: ServerSpec, scenario: Scenario, scratch: Path) -> dict[str, Any]:
    """Run ``scenario`` against a fresh ``spec`` server; every figure for one table row."""
    phases: dict[str, float] = {}
    mark = time.monotonic()

    def phase(name: str) -> None:
        nonlocal mark
        now = time.monotonic()
        phases[name] = round(now - mark, 2)
        mark = now

    server: RunningServer = common.start_server(spec)
    phase("server start")
    workers: list[WorkerProcess] = []
    row: dict[str, Any] = {"server": spec.key, "label": spec.label, "scenario": scenario.key}
    try:
        workers += start_workers(scenario, server.port, spec.dialect, scratch, spec.key)
        connected = []
        for worker in workers:
            worker.command("connect")
            connected.append(worker.expect(("connected",), 180))
        phase("connect")
        row["connect_failures"] = sum(int(r.get("failed", 0)) for r in connected)
        ready = [w.expect(("ready", "not_ready"), 90) for w in workers]
        phase("register")
        if any(r["event"] != "ready" for r in ready):
            row["not_ready"] = ready
        idle_rss = server.rss_kib()
        pressure0 = common.cpu_pressure_us()
        cpu0 = server.cpu()
        gen0 = [common.cpu_seconds(w.process.pid) for w in workers]
        wall0 = time.monotonic()
        for worker in workers:
            worker.command("go")
        budget = scenario.deadline + scenario.idle_timeout + 60
        done = [w.expect(("done",), budget) for w in workers]
        phase("active")
        wall1 = time.monotonic()
        cpu1 = server.cpu() if server.alive() else cpu0
        pressure1 = common.cpu_pressure_us()
        if pressure0 is not None and pressure1 is not None:
            row["cpu_pressure"] = (pressure1 - pressure0) / 1e6 / (wall1 - wall0)
        gen1 = [
            common.cpu_seconds(w.process.pid) if w.process.poll() is None else g
            for w, g in zip(workers, gen0, strict=True)
        ]
        row["server_alive"] = server.alive()
        row["peak_rss_kib"] = server.peak_rss_kib()
        row["rss_before_kib"] = idle_rss
        if scenario.slow:
            drained = workers[0]
            drained.command("drain")
            row["drain"] = drained.expect(("drained",), 60).get("slow", [])
        row.update(
            _summarise(
                scenario,
                done,
                cpu1 - cpu0,
                gen0,
                gen1,
                wall1 - wall0,
                scratch,
                spec,
                row.get("cpu_pressure", 0.0),
            )
        )
        row["server_log_notes"] = _server_log_notes(server)
    finally:
        phase("measure")
        for worker in workers:
            worker.stop()
        phase("stop clients")
        server.stop()
        phase("stop server")
        row["phases_s"] = phases
    return row


def _server_log_notes(server: RunningServer) -> dict[str, int]:
    """Counts of the references' own eviction messages in their logs."""
    text = server.log_text()
    notes = {}
    for needle in (
        "Write buffer space exhausted",
        "Receive buffer space exhausted",
        "Excess Flood",
        "too many connections",
    ):
        count = text.count(needle)
        if count:
            notes[needle] = count
    return notes


def _summarise(
    scenario: Scenario,
    done: list[dict[str, Any]],
    server_cpu: float,
    gen0: list[float],
    gen1: list[float],
    wall: float,
    scratch: Path,
    spec: ServerSpec,
    pressure: float,
) -> dict[str, Any]:
    bad = [d for d in done if d["event"] != "done"]
    finished = [d for d in done if d["event"] == "done"]
    expected = sum(d["expected"] for d in finished)
    received = sum(d["received"] for d in finished)
    duplicates = sum(d["duplicates"] for d in finished)
    out_of_order = sum(d["out_of_order"] for d in finished)
    go = min((d["go_ns"] for d in finished if d["go_ns"]), default=0)
    first = min((d["first_send_ns"] for d in finished if d["first_send_ns"]), default=go)
    last = max((d["last_recv_ns"] for d in finished), default=0)
    active = (last - first) / 1e9 if last > first else 0.0
    latencies = array("q")
    for index in range(len(done)):
        path = scratch / f"lat-{spec.key}-{scenario.key}-{index}.bin"
        if path.exists():
            latencies.frombytes(path.read_bytes())
            path.unlink()
    ordered = sorted(latencies)
    reasons: dict[str, int] = {}
    for d in finished:
        for reason, count in d.get("close_reasons", {}).items():
            reasons[reason] = reasons.get(reason, 0) + count
    gen_busy = [(b - a) / active if active else 0.0 for a, b in zip(gen0, gen1, strict=True)]
    server_busy = server_cpu / active if active else 0.0
    if max(gen_busy, default=0) > 0.85 and server_busy < 0.85:
        bound = "load generator"
    elif server_busy > 0.85:
        bound = "server"
    elif pressure > 0.25:
        bound = f"shared CPUs ({pressure:.0%} pressure)"
    else:
        bound = "neither (window/latency)"
    readers = sum(d["readers"] for d in finished)
    return {
        "errors": bad,
        "end_reasons": sorted({d["end_reason"] for d in finished}),
        "expected": expected,
        "deliveries": received,
        "lost": expected - received,
        "duplicates": duplicates,
        "echoed": sum(d.get("echoed", 0) for d in finished),
        "invalid": sum(d.get("invalid", 0) for d in finished),
        "out_of_order": out_of_order,
        "sent": sum(d["sent"] for d in finished),
        "readers": readers,
        "complete_readers": sum(d["complete_readers"] for d in finished),
        "closed_readers": sum(d["closed_readers"] for d in finished),
        "closed_senders": sum(d["closed_senders"] for d in finished),
        "close_reasons": reasons,
        "active_s": active,
        "wall_s": wall,
        "deliveries_per_s": received / active if active else 0.0,
        "server_cpu_s": server_cpu,
        "server_us_per_delivery": server_cpu / received * 1e6 if received else float("nan"),
        "latency_p50_ms": common.percentile(ordered, 0.50) / 1e6,
        "latency_p99_ms": common.percentile(ordered, 0.99) / 1e6,
        "latency_max_ms": (ordered[-1] / 1e6) if ordered else float("nan"),
        "server_busy": server_busy,
        "generator_busy": gen_busy,
        "bound": bound,
        "window": scenario.window,
    }


# --- the whole benchmark ----------------------------------------------------------------------


def server_specs() -> list[ServerSpec]:
    return [
        common.triochat_spec(),
        common.triochat_web_spec(),
        common.triochat_web_spec(all_members=True),
        common.naive_spec(),
        common.ncat_spec(),
        common.ngircd_spec(),
        common.ngircd_spec(penalties=True),
    ]


def run_profile(out_dir: Path, scenario: Scenario, scratch: Path) -> dict[str, Any]:
    """Profile triochat's server on ``scenario`` with pyinstrument; save the text report."""
    why = common.pyinstrument_missing()
    if why:
        return {"skipped": why}
    report = common.results_dir(out_dir) / "profile_fanout_n100.txt"
    row = run_one(common.profiled(common.triochat_spec(), report), scenario, scratch)
    return {"row": row, "report": str(report.relative_to(out_dir))}


def main(argv: list[str] | None = None) -> int:
    parser = common.base_parser(
        "benchmarks.fanout", __doc__, servers="triochat,naive,ncat,ngircd", before=True
    )
    parser.add_argument("--tiny", action="store_true", help="seconds-long smoke-test sizes")
    parser.add_argument("--scenarios", help="comma-separated scenario keys")
    parser.add_argument("--no-levers", action="store_true", help="skip the triochat lever runs")
    parser.add_argument(
        "--levers",
        help="comma-separated lever keys to run on N=100 pipelined (default: all): "
        + ",".join(spec.key for spec in lever_variants()),
    )
    parser.add_argument(
        "--repeats", type=int, default=None, help="runs per server and scenario (interleaved)"
    )
    args = parser.parse_args(argv)
    common.raise_nofile()
    size = "tiny" if args.tiny else "quick" if args.quick else "full"
    runnable, skipped = common.chosen_servers(server_specs(), args)
    chosen = scenarios(size)
    if args.scenarios:
        keys = args.scenarios.split(",")
        chosen = [s for s in chosen if s.key in keys]
    if args.repeats:
        chosen = [replace(s, repeats=max(1, args.repeats)) for s in chosen]
    levers = [] if args.no_levers else lever_variants()
    if args.levers:
        wanted = args.levers.split(",")
        levers = [spec for spec in levers if spec.key in wanted]
    results: dict[str, Any] = {
        "benchmark": "fanout",
        "size": size,
        "command": "python -m benchmarks.fanout" + (" --quick" if args.quick else ""),
        "machine": common.machine_info(),
        "servers": {s.key: {"label": s.label, "note": s.note} for s in runnable},
        "skipped": skipped,
        "scenarios": [asdict(s) for s in chosen],
        "rows": [],
    }
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="bench-fanout-") as tmp:
        scratch = Path(tmp)
        for scenario in chosen:
            # Levers run interleaved with the servers, repeat by repeat, so that a drift in
            # the machine's load touches both sides of a ratio alike.
            scenario_levers = levers if scenario.key == "n100w" else []
            for repeat in range(scenario.repeats):
                for spec in runnable:
                    if scenario.servers and spec.key not in scenario.servers:
                        continue
                    if not scenario.servers and spec.key == "ngircd-penalties":
                        continue
                    results["rows"].append(_run_logged(spec, scenario, scratch, repeat))
                for spec in scenario_levers:
                    row = _run_logged(spec, scenario, scratch, repeat)
                    row["lever"] = True
                    results["rows"].append(row)
        results["lever_ratios"] = lever_ratios(results["rows"])
        for ratio in results["lever_ratios"]:
            say(
                f"lever {ratio['lever']} on {ratio['scenario']}: "
                f"{ratio['us_per_delivery']:.2f} us CPU/delivery vs triochat's "
                f"{ratio['triochat_us_per_delivery']:.2f}: ratio {ratio['ratio_to_triochat']:.3f}"
            )
        if args.profile:
            target = next((s for s in chosen if s.key == "n100w"), None)
            target = target or next(s for s in scenarios(size) if s.key == "n100w")
            say("profiling triochat on " + target.title + " with pyinstrument ...")
            results["profile"] = run_profile(args.out_dir, target, scratch)
    common.finish_run(args.out_dir, "fanout", results, started, report=not args.no_report)
    return 0


def _run_logged(spec: ServerSpec, scenario: Scenario, scratch: Path, repeat: int) -> dict[str, Any]:
    """``run_one`` with a progress line; a failure becomes a row that says why."""
    say(f"fan-out {scenario.key:13s} {spec.label:14s} run {repeat + 1} ...")
    try:
        row = run_one(spec, scenario, scratch)
    except Exception as error:  # one failed reference must not lose the others
        row = {
            "server": spec.key,
            "label": spec.label,
            "scenario": scenario.key,
            "failed": repr(error),
        }
    row["repeat"] = repeat
    say("    " + describe(row))
    return row


def describe(row: dict[str, Any]) -> str:
    """One progress line for a finished run."""
    if "failed" in row:
        return f"FAILED: {row['failed']}"
    return (
        f"{row['deliveries']}/{row['expected']} delivered, {row['deliveries_per_s']:.0f}/s, "
        f"{row['server_us_per_delivery']:.2f} us CPU/delivery, "
        f"p50 {row['latency_p50_ms']:.2f} ms p99 {row['latency_p99_ms']:.2f} ms, "
        f"dup {row['duplicates']} ooo {row['out_of_order']}, closed {row['closed_readers']}, "
        f"peak RSS {row['peak_rss_kib'] / 1024:.1f} MiB, bound: {row['bound']} "
        f"(server {row['server_busy']:.0%}, gen "
        + "/".join(f"{b:.0%}" for b in row["generator_busy"])
        + ")"
    )


if __name__ == "__main__":
    sys.exit(main())
