"""Turns ``results/*.json`` into ``RESULTS.md`` (tables, targets, ratios) and PNG plots.

Every benchmark command calls :func:`write_report` when it finishes, so ``RESULTS.md`` always
shows the latest result of each benchmark; ``python -m benchmarks.run_all`` runs all of them.
The results are not in git: a benchmark whose ``results/<name>.json`` is missing gets a line
saying so (and how to make it) instead of its section. Plots need matplotlib (the ``bench``
extra); without it RESULTS.md is written without them.

    python -m benchmarks.report            # rebuild benchmarks/RESULTS.md and plots/
    python -m benchmarks.report OUT_DIR    # the same from OUT_DIR/results (--out-dir runs)
"""

from __future__ import annotations

import math
import re
import statistics
import sys
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from benchmarks import common

SERVER_ORDER = ["triochat", "naive", "ncat", "ngircd"]
LEVERS = [
    "trio-nofastpath",
    "trio-nocoalesce",
    "trio-noencodecache",
    "trio-quietconsole",
    "trio-nohistory",
    "trio-historydb",
]
MEDIAN_FIELDS = (
    "deliveries_per_s",
    "server_us_per_delivery",
    "latency_p50_ms",
    "latency_p99_ms",
    "latency_max_ms",
    "peak_rss_kib",
    "server_busy",
    "cpu_pressure",
    "active_s",
)
SUM_FIELDS = (
    "expected",
    "deliveries",
    "lost",
    "duplicates",
    "out_of_order",
    "readers",
    "complete_readers",
    "closed_readers",
    "closed_senders",
)


# --- formatting -------------------------------------------------------------------------------


def num(value: Any, digits: int = 2) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, int):
        return f"{value:,}"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.{digits}f}"


def pct(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{100 * value:.0f}%"


def table(headers: list[str], rows: Iterable[list[str]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def status(met: bool | None, detail: str) -> str:
    if met is None:
        return f"not measured ({detail})"
    return ("**met** — " if met else "**not met** — ") + detail


# --- fan-out ----------------------------------------------------------------------------------


def aggregate(rows: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    """Rows grouped by (scenario, server): medians of rates and times, sums of counts."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault((row["scenario"], row["server"]), []).append(row)
    result: dict[tuple[str, str], dict[str, Any]] = {}
    for key, members in groups.items():
        good = [r for r in members if "failed" not in r]
        agg: dict[str, Any] = {
            "runs": len(good),
            "failed": [r["failed"] for r in members if "failed" in r],
            "label": members[0].get("label", key[1]),
        }
        for name in MEDIAN_FIELDS:
            values = [r[name] for r in good if isinstance(r.get(name), int | float)]
            values = [v for v in values if not math.isnan(v)]
            agg[name] = statistics.median(values) if values else float("nan")
        for name in SUM_FIELDS:
            agg[name] = sum(int(r.get(name, 0)) for r in good)
        agg["generator_busy"] = max(
            (max(r.get("generator_busy", [0]) or [0]) for r in good), default=float("nan")
        )
        bounds = Counter(r.get("bound", "?") for r in good)
        agg["bound"] = bounds.most_common(1)[0][0] if bounds else "?"
        reasons: Counter[str] = Counter()
        logs: Counter[str] = Counter()
        for r in good:
            reasons.update(r.get("close_reasons", {}))
            logs.update(r.get("server_log_notes", {}))
        agg["close_reasons"] = dict(reasons)
        agg["server_log_notes"] = dict(logs)
        agg["drain"] = next((r["drain"] for r in good if r.get("drain")), [])
        agg["all_us"] = [r["server_us_per_delivery"] for r in good]
        result[key] = agg
    return result


def server_keys(agg: dict[tuple[str, str], dict[str, Any]], scenario: str) -> list[str]:
    present = [s for (sc, s) in agg if sc == scenario]
    ordered = [s for s in SERVER_ORDER if s in present]
    return ordered + [s for s in present if s not in ordered]


def fanout_table(agg: dict[tuple[str, str], dict[str, Any]], scenario: str) -> str:
    base = agg.get((scenario, "triochat"))
    rows = []
    for server in server_keys(agg, scenario):
        a = agg[(scenario, server)]
        if not a["runs"]:
            rows.append([a["label"], "failed: " + "; ".join(a["failed"])[:120]] + [""] * 10)
            continue
        ratio = (
            a["server_us_per_delivery"] / base["server_us_per_delivery"]
            if base and base["runs"] and base["server_us_per_delivery"]
            else float("nan")
        )
        rows.append(
            [
                a["label"] + (f" ({a['runs']} runs)" if a["runs"] > 1 else ""),
                num(a["deliveries_per_s"], 0),
                num(a["server_us_per_delivery"], 2),
                num(ratio, 2) + ("x" if math.isfinite(ratio) else ""),
                num(a["latency_p50_ms"]),
                num(a["latency_p99_ms"]),
                f"{num(a['lost'])} / {num(a['duplicates'])} / {num(a['out_of_order'])}",
                f"{a['closed_readers']}",
                num(a["peak_rss_kib"] / 1024, 1),
                f"{pct(a['server_busy'])} / {pct(a['generator_busy'])}",
                a["bound"],
            ]
        )
    return table(
        [
            "server",
            "deliveries/s",
            "server CPU µs/delivery",
            "CPU vs triochat",
            "p50 ms",
            "p99 ms",
            "lost / dup / out-of-order",
            "receivers cut off",
            "peak RSS MiB",
            "server / generator busy",
            "bottleneck",
        ],
        rows,
    )


def slow_table(agg: dict[tuple[str, str], dict[str, Any]]) -> str:
    rows = []
    for server in server_keys(agg, "slow"):
        a = agg[("slow", server)]
        control = agg.get(("slow-control", server))
        if not a["runs"]:
            rows.append([a["label"], "failed"] + [""] * 5)
            continue
        drain = a["drain"][0] if a["drain"] else {}
        ended = drain.get("ended", "")
        evicted = "yes" if ended else "no"
        how = drain.get("last_notice", "") or ended
        if not ended and a["lost"]:
            how = "kept it: blocked writing to it, so everyone else stalled"
        speed = (
            a["deliveries_per_s"] / control["deliveries_per_s"]
            if control and control.get("deliveries_per_s")
            else float("nan")
        )
        share = a["deliveries"] / a["expected"] if a["expected"] else float("nan")
        rows.append(
            [
                a["label"],
                f"{pct(share)} ({a['complete_readers']}/{a['readers']} complete)",
                num(a["deliveries_per_s"], 0),
                num(speed, 2) + "x",
                evicted,
                how.replace("|", "/")[:90],
                num(a["server_us_per_delivery"], 2),
            ]
        )
    return table(
        [
            "server",
            "others received",
            "deliveries/s",
            "speed vs control",
            "never-reader cut off",
            "how",
            "CPU µs/delivery",
        ],
        rows,
    )


def lever_table(agg: dict[tuple[str, str], dict[str, Any]]) -> str:
    base = agg.get(("n100w", "triochat"))
    if not base or not base["runs"]:
        return ""
    rows = [
        [
            "triochat (all levers on)",
            num(base["server_us_per_delivery"]),
            "1.00x",
            num(base["latency_p99_ms"]),
            "",
        ]
    ]
    meaning = {
        "trio-nofastpath": "the flusher fast path bought",
        "trio-nocoalesce": "write coalescing (fast path included) bought",
        "trio-noencodecache": "encode once per dialect bought",
        "trio-quietconsole": "console lines cost",
        "trio-nohistory": "history (the last 100 messages, on by default) cost",
        "trio-historydb": "history in SQLite (--history-db) cost on top",
    }
    for key in LEVERS:
        a = agg.get(("n100w", key))
        if not a or not a["runs"]:
            continue
        ratio = a["server_us_per_delivery"] / base["server_us_per_delivery"]
        delta = a["server_us_per_delivery"] - base["server_us_per_delivery"]
        if 0.8 < ratio < 1.2:
            effect = f"{meaning[key]}: nothing measurable (within the ±20% run-to-run noise)"
        elif key in ("trio-quietconsole", "trio-nohistory"):
            effect = f"{meaning[key]}: {-delta:.2f} µs/delivery, {1 - ratio:.0%} of triochat's CPU"
        else:
            effect = f"{meaning[key]}: {delta:.2f} µs/delivery ({ratio:.2f}x the CPU without it)"
        rows.append(
            [
                a["label"],
                num(a["server_us_per_delivery"]),
                num(ratio, 2) + "x",
                num(a["latency_p99_ms"]),
                effect,
            ]
        )
    return table(
        ["variant (N=100 pipelined)", "CPU µs/delivery", "vs triochat", "p99 ms", "effect"], rows
    )


# --- targets ----------------------------------------------------------------------------------


def fanout_targets(fanout: dict[str, Any]) -> list[list[str]]:
    agg = aggregate(fanout["rows"])
    lines: list[list[str]] = []
    for key, title in (("n100", "open-loop flood"), ("n100w", "pipelined flood")):
        trio = agg.get((key, "triochat"))
        ngircd = agg.get((key, "ngircd"))
        naive = agg.get((key, "naive"))
        if not trio or not trio["runs"]:
            continue
        us = trio["server_us_per_delivery"]
        if ngircd and ngircd["runs"]:
            ratio = us / ngircd["server_us_per_delivery"]
            lines.append(
                [
                    f"N=100 {title}: server CPU per delivery ≤ ngIRCd's",
                    status(
                        ratio <= 1,
                        f"triochat {us:.2f} µs vs ngIRCd {ngircd['server_us_per_delivery']:.2f} "
                        f"µs: {ratio:.1f}x ngIRCd's",
                    ),
                ]
            )
        if naive and naive["runs"]:
            half = naive["server_us_per_delivery"] / 2
            lines.append(
                [
                    f"N=100 {title}: ≤ half the naive threaded server's",
                    status(
                        us <= half,
                        f"triochat {us:.2f} µs vs naive {naive['server_us_per_delivery']:.2f} µs "
                        f"(half: {half:.2f}): {us / naive['server_us_per_delivery']:.2f}x naive",
                    ),
                ]
            )
    problems = []
    checked = 0
    for (scenario, server), a in agg.items():
        if server != "triochat" or not a["runs"]:
            continue
        checked += 1
        bad = a["lost"] + a["duplicates"] + a["out_of_order"]
        if bad and scenario != "slow":
            problems.append(
                f"{scenario}: {a['lost']} lost, {a['duplicates']} dup, {a['out_of_order']} ooo"
            )
        elif scenario == "slow" and (a["duplicates"] or a["out_of_order"] or a["lost"]):
            problems.append(
                f"slow: {a['lost']} lost, {a['duplicates']} dup, {a['out_of_order']} ooo"
            )
    if checked:
        lines.append(
            [
                "triochat: zero lost, duplicated, out-of-order deliveries",
                status(
                    not problems,
                    "; ".join(problems) if problems else f"0 / 0 / 0 in all {checked} scenarios",
                ),
            ]
        )
    paced = agg.get(("paced", "triochat"))
    if paced and paced["runs"]:
        p99 = paced["latency_p99_ms"]
        lines.append(
            [
                "paced N=100, 10 x 40 msg/s: p99 < 2 ms",
                status(
                    p99 < 2.0,
                    f"p99 {p99:.2f} ms, p50 {paced['latency_p50_ms']:.2f} ms"
                    + ("" if p99 < 2.0 else f" ({p99 / 2:.2f}x the target)"),
                ),
            ]
        )
    slow = agg.get(("slow", "triochat"))
    control = agg.get(("slow-control", "triochat"))
    if slow and slow["runs"]:
        drain = slow["drain"][0] if slow["drain"] else {}
        evicted = bool(drain.get("ended"))
        full = slow["lost"] == 0 and slow["complete_readers"] == slow["readers"]
        speed = (
            slow["deliveries_per_s"] / control["deliveries_per_s"]
            if control and control["runs"] and control["deliveries_per_s"]
            else float("nan")
        )
        lines.append(
            [
                "never-reading client evicted, everyone else 100% at full speed",
                status(
                    evicted and full and speed >= 0.8,
                    f"evicted: {'yes' if evicted else 'no'}"
                    + (f" ({drain.get('last_notice') or drain.get('ended')})" if evicted else "")
                    + f"; others got {slow['deliveries']:,}/{slow['expected']:,}; "
                    f"others' deliveries/s {speed:.2f}x the run without it (wall clock; "
                    "0.8x or more counts as full speed, runs vary by about 20%)",
                ),
            ]
        )
    return lines


def idle_targets(idle: dict[str, Any]) -> list[list[str]]:
    rows = [r for r in idle["rows"] if r["server"] == "triochat" and "failed" not in r]
    if not rows:
        return []
    biggest = max(rows, key=lambda r: r["connections"])
    kib = biggest["kib_per_connection"]
    return [
        [
            f"idle RSS ≤ 8 KiB per connection at {biggest['connections']:,}",
            status(kib <= 8, f"{kib:.1f} KiB/conn ({kib / 8:.1f}x the target)"),
        ]
    ]


def relay_targets(relay: dict[str, Any]) -> list[list[str]]:
    """The file relay's targets as ``benchmarks.file_relay`` judged them in its run."""
    if relay.get("format") != 2:
        return []
    return [
        [f"file relay {found['target']}", status(found["met"], found["detail"])]
        for found in relay.get("targets", [])
    ]


# --- plots ------------------------------------------------------------------------------------


def make_plots(
    out_dir: Path,
    fanout: dict[str, Any] | None,
    idle: dict[str, Any] | None,
    relay: dict[str, Any] | None,
) -> dict[str, str]:
    """PNG plots beside the tables; returns name -> path relative to ``out_dir``."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        common.say("plots not drawn: matplotlib is not installed (pip install -e '.[bench]')")
        return {}
    plots_dir = out_dir / "plots"
    plots_dir.mkdir(parents=True, exist_ok=True)
    made: dict[str, str] = {}

    def bars(
        name: str,
        groups: list[str],
        series: dict[str, list[float]],
        ylabel: str,
        title: str,
        *,
        size: tuple[float, float] = (8, 4),
        log: bool = False,
        target: float | None = None,
    ) -> None:
        """One grouped bar chart: a bar per series in each group."""
        figure, axes = plt.subplots(figsize=size)
        width = 0.8 / max(1, len(series))
        for index, (label, values) in enumerate(series.items()):
            axes.bar([i + index * width for i in range(len(groups))], values, width, label=label)
        if target is not None:
            axes.axhline(target, color="red", linestyle="--", label=f"target {target:g} KiB")
        axes.set_xticks([i + 0.4 - width / 2 for i in range(len(groups))])
        axes.set_xticklabels(groups)
        if log:
            axes.set_yscale("log")
        axes.set_ylabel(ylabel)
        axes.legend()
        axes.set_title(title)
        figure.tight_layout()
        path = plots_dir / f"{name}.png"
        figure.savefig(path, dpi=90)
        plt.close(figure)
        made[name] = str(path.relative_to(out_dir))

    nan = float("nan")
    if fanout and fanout.get("rows"):
        agg = aggregate(fanout["rows"])
        keys = [s["key"] for s in fanout["scenarios"] if not s.get("servers")]
        servers = [s for s in SERVER_ORDER if any(k[1] == s for k in agg)]
        for metric, name, ylabel in (
            ("server_us_per_delivery", "fanout_cpu", "server CPU µs per delivery"),
            ("latency_p99_ms", "fanout_p99", "one-way latency p99 (ms)"),
            ("deliveries_per_s", "fanout_rate", "deliveries per second"),
        ):
            title = (
                f"fan-out: {ylabel} (lower is better)"
                if metric != "deliveries_per_s"
                else "fan-out: deliveries per second (wall clock, shared machine)"
            )
            series = {
                server: [agg.get((key, server), {}).get(metric, nan) for key in keys]
                for server in servers
            }
            bars(name, keys, series, ylabel, title, size=(10, 4.5), log=True)
    if idle and idle.get("rows"):
        rows = [r for r in idle["rows"] if "failed" not in r]
        sizes = sorted({r["connections"] for r in rows})
        per_label: dict[str, dict[int, float]] = {}
        for r in rows:
            per_label.setdefault(r["label"], {}).setdefault(
                r["connections"], r["kib_per_connection"]
            )
        bars(
            "idle_rss",
            [f"{s:,} connections" for s in sizes],
            {label: [values.get(s, nan) for s in sizes] for label, values in per_label.items()},
            "server RSS KiB per idle connection",
            "idle connections: memory per connection (lower is better)",
            target=8,
        )
    if relay and relay.get("format") == 2:
        rows = [r for r in relay["rows"] if "triochat" in r]
        together = relay.get("concurrent", {})
        groups = [f"{r['size_mib']:,} MiB" for r in rows]
        series = {
            "triochat (verified end to end)": [r["triochat"]["relay_mb_s"] for r in rows],
            "socat chain (sender, relay, sink)": [r["socat"].get("mb_s", nan) for r in rows],
            "direct loopback copy": [r["direct"]["mb_s"] for r in rows],
        }
        if "triochat" in together:
            groups.append(f"{together['transfers']} x {together['size_mib']:,} MiB at once")
            series["triochat (verified end to end)"].append(together["triochat"]["relay_mb_s"])
            series["socat chain (sender, relay, sink)"].append(together["socat"].get("mb_s", nan))
            series["direct loopback copy"].append(nan)
        if groups:
            bars(
                "file_relay",
                groups,
                series,
                "MB/s",
                "file relay throughput (higher is better)",
            )
    return made


# --- the document -----------------------------------------------------------------------------


def profile_section(
    out_dir: Path, profile: dict[str, Any], title: str, note: str = "", lines: int = 60
) -> list[str]:
    """A pyinstrument report's heading, where it is, and its first ``lines`` lines."""
    if profile.get("skipped"):
        return [f"Profile skipped: {profile['skipped']}", ""]
    if not profile.get("report"):
        return []
    path = out_dir / profile["report"]
    if path.exists():
        text = path.read_text(errors="replace").splitlines()
        body = [line for line in text if line.strip()][:lines]
        excerpt = "```text\n" + "\n".join(body) + "\n```"
    else:
        common.say(f"report: {path} is missing; its excerpt is left out")
        excerpt = f"(The profile report `{profile['report']}` is missing.)"
    return [f"### {title}", "", f"Full report: `{profile['report']}`{note}.", "", excerpt, ""]


def machine_lines(data: dict[str, Any]) -> str:
    machine = data.get("machine", {})
    git = machine.get("git", {})
    versions = ", ".join(f"{k} {v}" for k, v in machine.get("versions", {}).items())
    return (
        f"{data['benchmark']}: {machine.get('date', '?')}, {machine.get('cpus', '?')} CPUs, "
        f"kernel {machine.get('kernel', '?')}, load average at start "
        f"{machine.get('loadavg_at_start', '?')}, git {git.get('commit', '?')} "
        f"(triochat/ modified: {git.get('triochat_dirty', '?')}), "
        f"took {data.get('elapsed_s', 0):.0f} s; {versions}"
    )


def render(
    out_dir: Path,
    fanout: dict[str, Any] | None,
    idle: dict[str, Any] | None,
    relay: dict[str, Any] | None,
    plots: dict[str, str],
) -> str:
    parts: list[str] = ["# triochat benchmarks: results", ""]
    parts.append(
        "Generated by `python -m benchmarks.report` from `benchmarks/results/*.json` (not in "
        "git; this file and `plots/` are). Every figure below was measured on this machine "
        "with triochat and the references started side by side, on free 127.0.0.1 ports, "
        "under the same load, in the same run; ratios compare figures of that one run."
    )
    parts += [
        "",
        "## Reproduce",
        "",
        "```sh",
        'python -m pip install -e ".[bench]"      # matplotlib (+ pyinstrument for --profile)',
        "python -m benchmarks.run_all             # everything: about 7 min here; --quick ~4",
        "python -m benchmarks.fanout [--quick] [--profile] [--before DIR]",
        "python -m benchmarks.idle [--quick] [--profile] [--before DIR]",
        "python -m benchmarks.file_relay [--quick] [--profile]",
        "python -m benchmarks.report              # rebuild this file from results/*.json",
        "```",
        "",
        "The references are Debian/Ubuntu packages: `apt-get install ncat ngircd socat`. The "
        "benchmarks never install anything; a reference that is missing is skipped, with what "
        "to install on stderr and a note here.",
        "",
        "Runs:",
        "",
    ]
    for name, results in (("fanout", fanout), ("idle", idle), ("file_relay", relay)):
        parts.append(f"- {machine_lines(results) if results else name + ': ' + missing_note(name)}")
    parts += [
        "",
        "**A shared machine.** Two CPUs, and other people's tests run at the same time. Wall-"
        "clock figures (deliveries/s, latency, MB/s) move with their load; the *server CPU "
        "time per delivery* (utime + stime from `/proc/<pid>/stat` over the active phase) "
        "barely does, so it is the headline figure. Each fan-out row also shows how busy the "
        "server and the busiest load-generator process were, and which one was the bottleneck; "
        "the JSON has the machine's CPU pressure (PSI) per run.",
        "",
    ]
    targets: list[list[str]] = []
    if fanout:
        targets += fanout_targets(fanout)
    if idle:
        targets += idle_targets(idle)
    if relay:
        targets += relay_targets(relay)
    if targets:
        parts += ["## Targets", "", table(["target", "where we stand"], targets), ""]
    for title, name, results, section in (
        ("Fan-out", "fanout", fanout, render_fanout),
        ("Idle connections", "idle", idle, render_idle),
        ("File relay", "file_relay", relay, render_relay),
    ):
        if results:
            parts += section(out_dir, results, plots)
        else:
            parts += [f"## {title}", "", missing_note(name).capitalize() + ".", ""]
    if not plots:
        parts += ["(No plots: matplotlib is not installed where this file was written.)", ""]
    return "\n".join(parts) + "\n"


def render_fanout(out_dir: Path, fanout: dict[str, Any], plots: dict[str, str]) -> list[str]:
    agg = aggregate(fanout["rows"])
    parts = [
        "## Fan-out",
        "",
        f"Command: `{fanout['command']}` (size: {fanout['size']}).",
        "",
        "Load generator: `benchmarks/loadgen.py` worker processes (two per run, plain "
        "non-blocking sockets and one `selectors` loop each) connect N clients, wait until "
        "every client has received a probe (so every one is a registered member), then K "
        "senders send M messages of S = 100 bytes. Each message carries a token "
        "`@@sender.seq.send-ns@@` (CLOCK_MONOTONIC) that receivers find behind whatever prefix "
        "the server adds (`c7: `, `<user#7> `, `:c7!~c7@127.0.0.1 PRIVMSG #bench :`), so they "
        "count lost, duplicated and out-of-order deliveries per sender and the one-way "
        "latency of every delivery. *Flood* sends as fast as TCP accepts; *pipelined* keeps "
        "at most 16 messages per sender in flight (sent but not yet seen by one receiver), "
        "like a pipelining benchmark, so queues stay short and latency means something.",
        "",
        "Servers: "
        + "; ".join(f"**{v['label']}**: {v['note']}" for v in fanout["servers"].values())
        + ".",
        "",
    ]
    if fanout.get("skipped"):
        parts += [
            "Skipped: " + "; ".join(f"{k}: {v}" for k, v in fanout["skipped"].items()),
            "",
        ]
    for name in ("fanout_cpu", "fanout_p99", "fanout_rate"):
        if name in plots:
            parts += [f"![{name}]({plots[name]})", ""]
    for scenario in fanout["scenarios"]:
        key = scenario["key"]
        if not any(k[0] == key for k in agg):
            continue
        parts += [f"### {scenario['title']}", "", fanout_table(agg, key), ""]
        notes = []
        for server in server_keys(agg, key):
            a = agg[(key, server)]
            if a["close_reasons"]:
                reasons = "; ".join(f"{n}x {r}" for r, n in a["close_reasons"].items())
                notes.append(f"{a['label']}: {reasons}")
            if a["server_log_notes"]:
                logs = ", ".join(f"{n}x “{r}”" for r, n in a["server_log_notes"].items())
                notes.append(f"{a['label']} log: {logs}")
        if notes:
            parts += ["Connections cut off: " + " — ".join(notes)[:1500], ""]
    if any(k[0] == "slow" for k in agg):
        parts += [
            "### The client that never reads",
            "",
            "One extra client registers, shrinks its receive buffer to 4 KiB and never reads. "
            "The kernel still buffers about 2.8 MB on the server's side of that socket, so the "
            "run sends ~6 MB to it (S = 400 bytes). Afterwards the benchmark drains that "
            "client to see whether the server had cut it off (end of stream after the "
            "buffered bytes) or was still holding it. *Speed vs control* compares the "
            "others' deliveries/s with the same run without the never-reader (for a server "
            "that stalled: its rate until it stalled).",
            "",
            slow_table(agg),
            "",
        ]
    parts += [hand_written("references"), ""]
    levers = lever_table(agg)
    if levers:
        parts += [
            "### What each lever buys (triochat variants, N=100 pipelined)",
            "",
            "`python -m benchmarks.triochat_variant` starts the same server with one "
            "`ServerConfig` lever switched off: `--no-fast-path` (`fast_path=False`) makes "
            "every delivery wake the member's writer task; `--no-coalesce` also sets "
            "`coalesce_bytes = 1`, one `send_all` per message; `--no-encode-cache` "
            "(`encode_once=False`) encodes every message once per member; `--quiet-console` "
            "(`log_messages=False`) drops the two console lines per message. Medians of the "
            "runs; the spread between runs on this machine is about ±20%, so smaller "
            "differences are noise.",
            "",
            levers,
            "",
        ]
    profile = fanout.get("profile", {})
    row = profile.get("row", {})
    parts += profile_section(
        out_dir,
        profile,
        "Where triochat's CPU goes (pyinstrument, N=100 pipelined)",
        f" (under the profiler the run delivered {row.get('deliveries', 0):,} messages at "
        f"{row.get('server_us_per_delivery', float('nan')):.2f} µs CPU each)",
    )
    return parts


def render_idle(out_dir: Path, idle: dict[str, Any], plots: dict[str, str]) -> list[str]:
    parts = [
        "## Idle connections",
        "",
        f"Command: `{idle['command']}`. One load-generator process opens N connections "
        f"(open-file limit raised to {idle.get('fd_limit')}), registers each with a name "
        "(ncat has no names: a connection is a member) and waits until every one has received "
        "one probe message; after the server is quiet for a second, (VmRSS after - VmRSS "
        "before) / N.",
        "",
    ]
    if "idle_rss" in plots:
        parts += [f"![idle_rss]({plots['idle_rss']})", ""]
    rows = []
    for row in idle["rows"]:
        if "failed" in row:
            rows.append(
                [row["label"], f"{row['connections']:,}", "failed: " + row["failed"][:100]]
                + [""] * 5
            )
            continue
        note = ""
        if not row.get("alive", True):
            note = f"the server exited after {row['connected']:,} connections:"
        elif row["registered"] < row["connections"]:
            failures = "; ".join(row.get("connect_failures", [])[:2])
            note = f"only {row['registered']:,} registered; {failures}"[:160]
        if row.get("log_tail"):
            note += " " + row["log_tail"].replace("\n", " ")[:120]
        rows.append(
            [
                row["label"],
                f"{row['connections']:,}",
                f"{row['registered']:,}",
                num(row["rss_before_kib"] / 1024, 1),
                num(row["rss_after_kib"] / 1024, 1),
                num(row["kib_per_connection"], 2),
                str(row["threads"]),
                note.replace("|", "/"),
            ]
        )
    parts += [
        table(
            [
                "server",
                "connections",
                "registered",
                "RSS before MiB",
                "RSS after MiB",
                "KiB per connection",
                "threads",
                "note",
            ],
            rows,
        ),
        "",
    ]
    parts += [hand_written("idle-memory"), ""]
    profile = idle.get("profile", {})
    parts += profile_section(
        out_dir,
        profile,
        f"Where triochat's CPU goes while {profile.get('connections', 0):,} clients join "
        "(pyinstrument)",
        lines=45,
    )
    if idle.get("skipped"):
        parts += ["Skipped: " + "; ".join(f"{k}: {v}" for k, v in idle["skipped"].items()), ""]
    return parts


def render_relay(out_dir: Path, relay: dict[str, Any], plots: dict[str, str]) -> list[str]:
    if relay.get("format") != 2:
        return [
            "## File relay",
            "",
            "(`results/file_relay.json` was written by an older version of the benchmark: "
            "run `python -m benchmarks.file_relay` again.)",
            "",
        ]
    parts = [
        "## File relay",
        "",
        f"Command: `{relay['command']}`. triochat: an owner menu client serves the file, the "
        "server relays it in checksummed chunks to the requester menu client, which checks "
        "every chunk and the whole-file digest, fsyncs and renames the file into place; timed "
        "from the request to the requester's `verified` line, and every copy is hashed again. "
        "socat chain: `socat -b 262144 -u FILE:src TCP:relay` into `socat -b 262144 TCP-LISTEN "
        "TCP:sink` into `socat -b 262144 -u TCP-LISTEN CREATE:dst` (no fsync), timed from "
        "starting the sender until the sink has exited with the whole file (then hashed); "
        "before each timed run the disk is synced and the source read through once, for every "
        "contender alike; the relay's CPU time comes from "
        "`wait4`, its peak RSS from `VmHWM`. Direct: `sendfile` over one loopback connection "
        "into a sink that discards (the ceiling).",
        "",
    ]
    if "file_relay" in plots:
        parts += [f"![file_relay]({plots['file_relay']})", ""]
    parts += relay_single_table(relay)
    parts += relay_concurrent_table(relay.get("concurrent"))
    parts += relay_large_table(relay.get("large"))
    targets = relay_targets(relay)
    if targets:
        parts += ["### Targets", "", table(["target", "where we stand"], targets), ""]
    profile = relay.get("profile", {})
    parts += profile_section(
        out_dir,
        profile,
        f"Where the relay server's time goes (pyinstrument, {profile.get('size_mib')} MiB)",
        lines=40,
    )
    return parts


def with_spread(figures: dict[str, Any], key: str, digits: int = 0) -> str:
    """A median and, when the runs differed, their min-max."""
    low, high = figures.get("spread", {}).get(key, [None, None])
    text = num(figures.get(key), digits)
    if low is not None and len(figures.get("runs", [])) > 1:
        text += f" ({num(low, digits)} to {num(high, digits)})"
    return text


def relay_single_table(relay: dict[str, Any]) -> list[str]:
    """One transfer at a time: triochat, the socat chain and the direct copy at each size."""
    rows: list[list[str]] = []
    for row in relay["rows"]:
        size = f"{row['size_mib']:,} MiB"
        if "skipped" in row:
            rows.append([size, f"skipped: {row['skipped']}", "", "", "", ""])
            continue
        trio, socat = row["triochat"], row["socat"]
        rows.append(
            [
                f"triochat, {size}",
                with_spread(trio, "relay_mb_s"),
                with_spread(trio, "server_cpu_s_per_gib", 2),
                with_spread(trio, "owner_cpu_s_per_gib", 2),
                with_spread(trio, "requester_cpu_s_per_gib", 2),
                with_spread(trio, "server_peak_rss_mib", 1),
            ]
        )
        if "mb_s" in socat:
            rows.append(
                [
                    f"socat chain, {size} (the relay)",
                    with_spread(socat, "mb_s"),
                    with_spread(socat, "relay_cpu_s_per_gib", 2),
                    "-",
                    "-",
                    with_spread(socat, "relay_peak_rss_mib", 1),
                ]
            )
        else:
            rows.append(
                [f"socat chain, {size}", f"skipped: {socat.get('skipped')}", "", "", "", ""]
            )
        rows.append([f"direct copy, {size}", with_spread(row["direct"], "mb_s"), "", "", "", ""])
    return [
        f"### One transfer at a time (median of {relay.get('repeats', '?')} runs, min to max in "
        "brackets)",
        "",
        "triochat's MB/s is end to end: three Python processes (owner, server, requester) "
        "share two CPUs; the clients' CPU time per GiB is beside the server's. For the socat "
        "chain the CPU and memory are the relay's (the sender and the sink do the owner's and "
        "requester's work without checks).",
        "",
        table(
            [
                "",
                "MB/s",
                "server CPU s/GiB",
                "owner CPU s/GiB",
                "requester CPU s/GiB",
                "server peak RSS MiB",
            ],
            rows,
        ),
        "",
    ]


def relay_concurrent_table(together: dict[str, Any] | None) -> list[str]:
    """Several transfers at once: one triochat server against as many socat chains."""
    if not together:
        return []
    title = f"### {together['transfers']} transfers of {together['size_mib']:,} MiB at once"
    if "skipped" in together:
        return [title, "", f"Skipped: {together['skipped']}", ""]
    rows = []
    for label, figures, mb_s, cpu, rss in (
        (
            "triochat (one server)",
            together["triochat"],
            "relay_mb_s",
            "server_cpu_s_per_gib",
            "server_peak_rss_mib",
        ),
        (
            "socat chains (the relays)",
            together["socat"],
            "mb_s",
            "relay_cpu_s_per_gib",
            "relay_peak_rss_mib",
        ),
    ):
        if mb_s not in figures:
            rows.append([label, f"skipped: {figures.get('skipped')}", "", "", "", ""])
            continue
        each = figures["transfer_mb_s"]
        runs = figures.get("aggregate_mb_s_runs", [figures[mb_s]])
        spread = f" ({num(min(runs), 0)} to {num(max(runs), 0)})" if len(runs) > 1 else ""
        rows.append(
            [
                label,
                num(figures[mb_s], 0) + spread,
                f"{num(min(each), 0)} / {num(statistics.median(each), 0)} / {num(max(each), 0)}",
                num(figures[cpu]),
                num(figures[rss], 1),
                "yes" if figures.get("verified") else "no",
            ]
        )
    return [
        title,
        "",
        "Every request is sent at once; timed until the last copy is complete. Each row is its "
        "run of median aggregate MB/s (the range of every run's in brackets). Per transfer: "
        "its size over its own time (fairness). The socat chains' memory is the largest relay's.",
        "",
        table(
            [
                "",
                "aggregate MB/s",
                "per transfer MB/s: min / median / max",
                "server CPU s/GiB",
                "server peak RSS MiB",
                "all copies verified",
            ],
            rows,
        ),
        "",
    ]


def relay_large_table(big: dict[str, Any] | None) -> list[str]:
    """The server's memory along one large transfer: flat, or not."""
    if not big:
        return []
    title = f"### Memory over one {big['size_mib']:,} MiB transfer"
    if "skipped" in big:
        return [title, "", f"Skipped: {big['skipped']}", ""]
    trio = big["triochat"]
    at = trio.get("server_rss_at_mib", {})
    return [
        title,
        "",
        f"The server's RSS sampled every 100 ms ({len(trio.get('rss_samples', []))} samples, "
        f"in the JSON); triochat relayed it at {num(trio['relay_mb_s'], 0)} MB/s. Peak RSS: "
        f"owner {num(trio['owner_peak_rss_mib'], 1)} MiB, requester "
        f"{num(trio['requester_peak_rss_mib'], 1)} MiB.",
        "",
        table(
            ["RSS MiB at", *[f"{key} of the time" for key in at], "peak (VmHWM)"],
            [
                [
                    "server",
                    *[num(value, 1) for value in at.values()],
                    num(trio["server_peak_rss_mib"], 1),
                ]
            ],
        ),
        "",
    ]


RESULT_FILES = {
    "fanout": "python -m benchmarks.fanout",
    "idle": "python -m benchmarks.idle",
    "file_relay": "python -m benchmarks.file_relay",
}
"""Each results file the report reads, and the command that writes it."""


def missing_note(name: str) -> str:
    return f"not measured in this run (no `results/{name}.json`; `{RESULT_FILES[name]}` writes it)"


def hand_written(name: str) -> str:
    """The place of a hand-written section: a rebuild puts back what stood between these
    markers in the old RESULTS.md (what the references do, where an idle member's memory
    goes: analysis of the committed run, not figures of this one)."""
    return f"<!-- {name}:begin -->\n<!-- {name}:end -->"


def write_report(out_dir: Path = common.BENCH_DIR) -> Path | None:
    """Rebuild ``RESULTS.md`` and the plots under ``out_dir`` from its saved results.

    Returns ``None`` (and leaves RESULTS.md as it is) when there are no results at all.
    """
    fanout = common.load_json(out_dir, "fanout")
    idle = common.load_json(out_dir, "idle")
    relay = common.load_json(out_dir, "file_relay")
    if not (fanout or idle or relay):
        common.say(
            f"report: no results in {out_dir / 'results'}: RESULTS.md left as it is "
            "(run python -m benchmarks.run_all first)"
        )
        return None
    for name in RESULT_FILES:
        if common.load_json(out_dir, name) is None:
            common.say(f"report: {name}: {missing_note(name)}")
    plots = make_plots(out_dir, fanout, idle, relay)
    path = out_dir / "RESULTS.md"
    text = render(out_dir, fanout, idle, relay, plots)
    # Every section between markers in the old file is kept: in its place when the report has
    # one (hand_written), else at the end: the soak (benchmarks.soak --results) and the
    # before/after comparisons of a change (written by hand from --before runs).
    old = path.read_text() if path.exists() else ""
    for name in re.findall(r"<!-- ([\w-]+):begin -->", old):
        begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
        if end not in old:
            continue
        kept = old[old.index(begin) : old.index(end) + len(end)]
        if begin in text:
            text = text[: text.index(begin)] + kept + text[text.index(end) + len(end) :]
        else:
            text = text.rstrip("\n") + "\n\n" + kept + "\n"
    path.write_text(text)
    common.say(f"wrote {path}")
    return path


def main(argv: list[str] | None = None) -> int:
    parser = common.doc_parser("benchmarks.report", __doc__)
    parser.add_argument(
        "out_dir", nargs="?", type=Path, default=common.BENCH_DIR, help="holds results/"
    )
    args = parser.parse_args(argv)
    return 0 if write_report(args.out_dir) else 1


if __name__ == "__main__":
    sys.exit(main())
