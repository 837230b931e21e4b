"""Client start-up: launch-to-name-received time of every client mode, idle and on busy cores.

SPEC §1: a client has sent its name within 0.25 s of starting on an idle machine and within
0.5 s while other programs keep both CPU cores busy. This script measures exactly that, from
the outside, for every client mode of ``ChatClient.py`` / ``mychatclient.py``, side by side
with a ten-line plain stdlib-socket reference client in the same run (the floor: what
starting Python and connecting costs on this machine).

One run of one mode: a fake server (a stdlib socket in this process, bound to 127.0.0.1 port
0) listens; t0 is taken (``time.perf_counter``) just before the client is spawned with
``sys.executable`` from the repository root, stdin a pipe, stdout and stderr to /dev/null,
the caller's environment plus ``PYTHONDONTWRITEBYTECODE=1`` (as on the graders' machines);
the name line, if the mode reads one, is written to stdin right after the spawn (stdin stays
open, so the client never sees end of input). t1 is the moment the fake server has received
the client's name:

    line         ``ChatClient.py <port>``, stdin ``alice``: the first bytes on the connection
    json         ``ChatClient.py 127.0.0.1 <port> alice 001``: bytes containing ``"nickname"``
                 (the fake server then says nothing, as a seed-003 server does)
    menu         ``ChatClient.py -l <free port> -p <port>``, stdin ``alice``: ``"nickname"``
    udp          ``ChatClient.py --udp 127.0.0.1 <port>``: the first datagram starting ``GRE``
    port-tagged  ``mychatclient.py --port <port>``: the connection is accepted (it sends no
                 name, so this row is connect time)
    reference    ``python -c <ten lines>``: reads ``alice`` from stdin, connects, sends it

Then the client is killed by its PID and reaped. Each mode runs ``--runs`` times per
condition (after ``--warmup`` untimed runs), the modes interleaved. The busy condition starts
two ``python -c`` loops that spin until this script is gone (or a deadline passes), before
the timed runs, and kills them by PID afterwards, always. Every wait is bounded
(``--timeout``, 10 s by default); a mode that fails twice in one condition is not run again
in it, and the whole run stops at ``--budget`` seconds. A run that never received the name
is repeated once untimed with stderr captured, to show why.

Only 127.0.0.1 traffic. The Markdown table goes to stdout, progress to stderr; ``--json``
writes every sample. Exit status 1 when some run never received the name.

    python -m benchmarks.startup                    # 10 runs per mode and condition
    python -m benchmarks.startup --runs 3 --modes line,reference
    python -m benchmarks.startup --conditions idle --json /tmp/startup.json
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import select
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from benchmarks import common
from benchmarks.common import HOST, ROOT, say
from benchmarks.common import free_port as free_tcp_port

NAME = "alice"
TARGET_MS = {"idle": 250.0, "busy": 500.0}
CONDITIONS = ("idle", "busy")
MAX_FAILURES = 2
BUSY_SETTLE_S = 0.3
STDERR_TAIL = 2000

REFERENCE_CLIENT = """\
import socket
import sys

name = sys.stdin.readline().strip()
sock = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
sock.sendall(name.encode())
while sock.recv(4096):
    pass
sock.close()
"""

# Spins until its parent (this script) is gone or the deadline passes: it can never outlive us.
BUSY_LOOP = """\
import os, sys, time
parent, deadline = int(sys.argv[1]), time.monotonic() + float(sys.argv[2])
while os.getppid() == parent and time.monotonic() < deadline:
    pass
"""


def client_env() -> dict[str, str]:
    """The user's environment, with bytecode writing off as on the graders' machines."""
    env = dict(os.environ)
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


# --- the fake servers -------------------------------------------------------------------------


class FakeServer:
    """A listening socket that decides when the client's name has arrived."""

    def __init__(self) -> None:
        self.sock = self._bind()
        self.port = int(self.sock.getsockname()[1])

    def _bind(self) -> socket.socket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((HOST, 0))
        sock.listen(8)
        return sock

    def wait(self, proc: subprocess.Popen[bytes], timeout: float) -> tuple[float | None, str]:
        """perf_counter() when the name arrived (None if never) and a word on what happened."""
        raise NotImplementedError

    def close(self) -> None:
        self.sock.close()


class TcpServer(FakeServer):
    """Accepts one connection; done when ``done(received bytes)`` holds (at once if None)."""

    def __init__(self, done: Callable[[bytes], bool] | None) -> None:
        super().__init__()
        self.done = done
        self.conn: socket.socket | None = None

    def wait(self, proc: subprocess.Popen[bytes], timeout: float) -> tuple[float | None, str]:
        deadline = time.monotonic() + timeout
        done = self.done
        received = b""
        poller = select.poll()
        poller.register(self.sock, select.POLLIN)
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                state = "connected" if self.conn is not None else "never connected"
                return None, f"timeout after {timeout:g} s ({state}, {len(received)} bytes)"
            # Short slices, so that a client that died is noticed at once.
            events = poller.poll(min(left, 0.05) * 1000)
            now = time.perf_counter()
            if not events:
                if proc.poll() is not None:
                    return None, f"client exited with status {proc.returncode}"
                continue
            if self.conn is None:
                self.conn, _ = self.sock.accept()
                if done is None:
                    return now, "connected"
                poller.unregister(self.sock)
                poller.register(self.conn, select.POLLIN)
                continue
            try:
                chunk = self.conn.recv(65536)
            except ConnectionError as exc:
                return None, f"connection error: {exc}"
            if not chunk:
                return None, f"connection closed after {len(received)} bytes"
            received += chunk
            if done is not None and done(received):
                return now, "name received"

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
        super().close()


class UdpServer(FakeServer):
    """Done at the first datagram that starts with ``GRE``."""

    def _bind(self) -> socket.socket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind((HOST, 0))
        return sock

    def wait(self, proc: subprocess.Popen[bytes], timeout: float) -> tuple[float | None, str]:
        deadline = time.monotonic() + timeout
        poller = select.poll()
        poller.register(self.sock, select.POLLIN)
        others = 0
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return None, f"timeout after {timeout:g} s ({others} other datagrams)"
            events = poller.poll(min(left, 0.05) * 1000)
            now = time.perf_counter()
            if not events:
                if proc.poll() is not None:
                    return None, f"client exited with status {proc.returncode}"
                continue
            with contextlib.suppress(ConnectionError):
                data = self.sock.recv(65536)
                if data.startswith(b"GRE"):
                    return now, "greeting received"
                others += 1


# --- the modes --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Mode:
    """How to start one client and what counts as its name arriving."""

    name: str
    label: str
    argv: Callable[[int], list[str]]
    server: Callable[[], FakeServer]
    stdin: bytes = b""


def has_nickname(data: bytes) -> bool:
    return b'"nickname"' in data


def any_bytes(data: bytes) -> bool:
    return len(data) > 0


def python(*args: str) -> list[str]:
    return [sys.executable, *args]


MODES: dict[str, Mode] = {
    mode.name: mode
    for mode in (
        Mode(
            "line",
            "line (seed 000)",
            lambda port: python("ChatClient.py", str(port)),
            lambda: TcpServer(any_bytes),
            stdin=f"{NAME}\n".encode(),
        ),
        Mode(
            "json",
            "JSON (seed 003)",
            lambda port: python("ChatClient.py", HOST, str(port), NAME, "001"),
            lambda: TcpServer(has_nickname),
        ),
        Mode(
            "menu",
            "menu (seed 001)",
            lambda port: python("ChatClient.py", "-l", str(free_tcp_port()), "-p", str(port)),
            lambda: TcpServer(has_nickname),
            stdin=f"{NAME}\n".encode(),
        ),
        Mode(
            "udp",
            "UDP (seed 002)",
            lambda port: python("ChatClient.py", "--udp", HOST, str(port)),
            UdpServer,
        ),
        Mode(
            "port-tagged",
            "port-tagged (seed 004), connect",
            lambda port: python("mychatclient.py", "--port", str(port)),
            lambda: TcpServer(None),
        ),
        Mode(
            "reference",
            "reference: 10-line stdlib client",
            lambda port: python("-c", REFERENCE_CLIENT, str(port)),
            lambda: TcpServer(any_bytes),
            stdin=f"{NAME}\n".encode(),
        ),
    )
}


# --- one run ----------------------------------------------------------------------------------


@dataclass
class Outcome:
    ms: float | None
    detail: str
    stderr: str = ""


def reap(proc: subprocess.Popen[bytes]) -> None:
    """Kill our own client by its PID (if still running) and collect it."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        say(f"  warning: client {proc.pid} did not exit 5 s after SIGKILL")
    if proc.stdin is not None:
        with contextlib.suppress(OSError):
            proc.stdin.close()


def run_once(mode: Mode, timeout: float, capture_stderr: bool = False) -> Outcome:
    """Start the client once; milliseconds from spawn to name received (None: never)."""
    with contextlib.ExitStack() as stack:
        server = mode.server()
        stack.callback(server.close)
        stderr_file: IO[bytes] | None = None
        if capture_stderr:
            # A temporary file, not a pipe: a chatty client can never block on it.
            stderr_file = stack.enter_context(tempfile.TemporaryFile())
        argv = mode.argv(server.port)
        t0 = time.perf_counter()
        proc = subprocess.Popen(
            argv,
            cwd=ROOT,
            env=client_env(),
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=stderr_file if stderr_file is not None else subprocess.DEVNULL,
        )
        stack.callback(reap, proc)  # runs before server.close: kill the client first
        if mode.stdin and proc.stdin is not None:
            with contextlib.suppress(BrokenPipeError):
                proc.stdin.write(mode.stdin)
                proc.stdin.flush()
        t1, detail = server.wait(proc, timeout)
        stderr = ""
        if stderr_file is not None:
            reap(proc)  # everything it wrote is in the file now
            stderr_file.seek(0)
            stderr = stderr_file.read().decode(errors="replace")[-STDERR_TAIL:]
    return Outcome(None if t1 is None else (t1 - t0) * 1000.0, detail, stderr)


# --- busy processes ---------------------------------------------------------------------------


@contextlib.contextmanager
def busy_cores(count: int, limit_s: float) -> Iterator[list[int]]:
    """``count`` spinning processes for the duration of the block; killed by PID, always."""
    procs: list[subprocess.Popen[bytes]] = []
    try:
        for _ in range(count):
            procs.append(
                subprocess.Popen(
                    python("-c", BUSY_LOOP, str(os.getpid()), f"{limit_s:.0f}"),
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                    env=client_env(),
                )
            )
        time.sleep(BUSY_SETTLE_S)  # let them start and reach their loop
        for proc in procs:
            if proc.poll() is not None:
                raise RuntimeError(f"busy process {proc.pid} exited at once ({proc.returncode})")
        yield [proc.pid for proc in procs]
    finally:
        for proc in procs:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
        for proc in procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=5)


# --- the whole benchmark ----------------------------------------------------------------------


@dataclass
class Series:
    """The samples of one mode in one condition."""

    samples_ms: list[float] = field(default_factory=list)
    failures: list[dict[str, str]] = field(default_factory=list)
    skipped: int = 0
    stopped: str = ""

    def as_json(self) -> dict[str, Any]:
        return {
            "samples_ms": [round(v, 3) for v in self.samples_ms],
            "summary_ms": self.summary(),
            "failures": self.failures,
            "skipped": self.skipped,
            "stopped": self.stopped,
        }

    def timed_failures(self) -> int:
        return sum(1 for failure in self.failures if failure["run"] == "timed")

    def total(self) -> int:
        """Timed runs: measured, failed or skipped."""
        return len(self.samples_ms) + self.timed_failures() + self.skipped

    def summary(self) -> dict[str, float] | None:
        if not self.samples_ms:
            return None
        ordered = sorted(self.samples_ms)
        return {
            "median": statistics.median(ordered),
            "p90": ordered[max(0, math.ceil(0.9 * len(ordered)) - 1)],
            "max": ordered[-1],
            "min": ordered[0],
        }


@dataclass
class Budget:
    deadline: float

    def left(self) -> float:
        return self.deadline - time.monotonic()


def run_condition(
    condition: str,
    modes: Sequence[Mode],
    runs: int,
    warmup: int,
    timeout: float,
    budget: Budget,
) -> dict[str, Series]:
    """Warm-up, then ``runs`` rounds of every mode in turn."""
    series = {mode.name: Series() for mode in modes}

    def measure(mode: Mode, timed: bool) -> None:
        one = series[mode.name]
        if one.stopped:
            one.skipped += int(timed)
            return
        if budget.left() <= 0:
            one.stopped = "time budget used up"
            one.skipped += int(timed)
            return
        outcome = run_once(mode, min(timeout, max(budget.left(), 1.0)))
        if outcome.ms is not None:
            if timed:
                one.samples_ms.append(outcome.ms)
            return
        failure = {"run": "timed" if timed else "warm-up", "detail": outcome.detail}
        if len(one.failures) == 0:
            # Once per mode and condition: again, untimed, with stderr captured, to show why.
            again = run_once(mode, timeout, capture_stderr=True)
            failure["rerun"] = again.detail
            failure["stderr"] = again.stderr
        one.failures.append(failure)
        say(f"  {condition} {mode.name}: no name ({outcome.detail})")
        if len(one.failures) >= MAX_FAILURES:
            one.stopped = f"{len(one.failures)} failures"

    for _ in range(warmup):
        for mode in modes:
            measure(mode, timed=False)
    for number in range(runs):
        for mode in modes:
            measure(mode, timed=True)
        say(f"  {condition}: round {number + 1}/{runs} done")
    return series


def fmt_ms(value: float | None) -> str:
    return "—" if value is None else f"{value:.0f}"


def verdict(series: Series, condition: str, key: str) -> str:
    summary = series.summary()
    if summary is None:
        return "n/a"
    complete = len(series.samples_ms) == series.total()
    ok = summary[key] <= TARGET_MS[condition] and complete
    return "yes" if ok else "no"


def markdown(
    modes: Sequence[Mode], results: dict[str, dict[str, Series]], conditions: Sequence[str]
) -> str:
    """The table: rows are modes, columns median / p90 / max per condition and the targets."""
    head = ["mode"]
    for condition in conditions:
        head += [f"{condition} median", f"{condition} p90", f"{condition} max"]
    targets = " / ".join(f"{c} ≤ {TARGET_MS[c]:.0f}" for c in conditions)
    head += [f"target met by median ({targets})", "… by max", "runs ok"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for mode in modes:
        row = [mode.label]
        counts = []
        for condition in conditions:
            one = results[condition][mode.name]
            summary = one.summary() or {}
            row += [fmt_ms(summary.get(k)) for k in ("median", "p90", "max")]
            counts.append(f"{len(one.samples_ms)}/{one.total()}")
        row.append(" / ".join(verdict(results[c][mode.name], c, "median") for c in conditions))
        row.append(" / ".join(verdict(results[c][mode.name], c, "max") for c in conditions))
        row.append(" / ".join(counts))
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def failure_notes(
    modes: Sequence[Mode], results: dict[str, dict[str, Series]], conditions: Sequence[str]
) -> list[str]:
    """A Markdown list item per failed run, with the diagnostic rerun's stderr; [] if none."""
    notes: list[str] = []
    for condition in conditions:
        for mode in modes:
            one = results[condition][mode.name]
            for failure in one.failures:
                notes.append(
                    f"- {condition}, {mode.name}, {failure['run']} run: {failure['detail']}"
                )
                if "rerun" in failure:
                    notes.append(f"  - again with stderr captured: {failure['rerun']}; stderr:")
                    tail = failure["stderr"].splitlines()[-20:] or ["(empty)"]
                    notes.extend(f"        {line}" for line in tail)
            if one.stopped:
                notes.append(
                    f"- {condition}, {mode.name}: stopped after {one.stopped}, "
                    f"{one.skipped} timed runs skipped"
                )
    return notes


def bytecode_note() -> str:
    """Whether triochat's modules have cached bytecode (a fresh checkout has none)."""
    sources = [p for p in (ROOT / "triochat").rglob("*.py") if "__pycache__" not in p.parts]
    tag = sys.implementation.cache_tag
    cached = sum(1 for p in sources if (p.parent / "__pycache__" / f"{p.stem}.{tag}.pyc").exists())
    return f"{cached} of {len(sources)} triochat modules have cached bytecode ({tag})"


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = common.doc_parser("benchmarks.startup", __doc__)
    parser.add_argument("--runs", type=int, default=10, help="timed runs per mode and condition")
    parser.add_argument(
        "--modes",
        default=",".join(MODES),
        help=f"comma-separated, from: {', '.join(MODES)} (default: all)",
    )
    parser.add_argument(
        "--conditions", default=",".join(CONDITIONS), help="idle, busy or both (default)"
    )
    parser.add_argument("--warmup", type=int, default=1, help="untimed runs per mode first")
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds to wait per run")
    parser.add_argument("--busy-procs", type=int, default=2, help="spinning processes when busy")
    parser.add_argument(
        "--budget", type=float, default=110.0, help="stop starting runs after this many seconds"
    )
    parser.add_argument("--json", type=Path, help="write every sample to this file")
    args = parser.parse_args(argv)
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    unknown = [m for m in modes if m not in MODES]
    if unknown or not modes:
        parser.error(f"unknown mode(s) {', '.join(unknown) or '(none)'}; known: {', '.join(MODES)}")
    conditions = [c.strip() for c in args.conditions.split(",") if c.strip()]
    if not conditions or any(c not in CONDITIONS for c in conditions):
        parser.error("--conditions: idle, busy or idle,busy")
    if args.runs < 1 or args.warmup < 0 or args.timeout <= 0 or args.busy_procs < 1:
        parser.error("--runs, --busy-procs >= 1, --warmup >= 0, --timeout > 0")
    args.modes = modes
    args.conditions = conditions
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    modes = [MODES[name] for name in args.modes]
    started = time.monotonic()
    budget = Budget(started + args.budget)
    results: dict[str, dict[str, Series]] = {}
    busy_pids: list[int] = []
    say(f"startup: {len(modes)} modes x {args.runs} runs, {', '.join(args.conditions)}")
    for condition in args.conditions:
        say(f"{condition}:")
        if condition == "busy":
            # Generous bound; they also stop as soon as this process is gone.
            limit_s = args.budget + 2 * args.timeout + 60
            with busy_cores(args.busy_procs, limit_s) as pids:
                busy_pids = pids
                results[condition] = run_condition(
                    condition, modes, args.runs, args.warmup, args.timeout, budget
                )
        else:
            results[condition] = run_condition(
                condition, modes, args.runs, args.warmup, args.timeout, budget
            )
    elapsed = time.monotonic() - started

    print(f"## Client start-up: launch to name received, ms ({args.runs} runs per cell)\n")
    print(markdown(modes, results, args.conditions))
    print()
    print(
        f"Python {platform.python_version()}, {os.cpu_count()} CPUs, "
        + (f"busy = {args.busy_procs} spinning processes, " if busy_pids else "")
        + "PYTHONDONTWRITEBYTECODE=1, "
        f"{bytecode_note()}; {elapsed:.0f} s in all. Port-tagged has no name: connect time."
    )
    notes = failure_notes(modes, results, args.conditions)
    if notes:
        print("\nRuns that never received the name:\n")
        print("\n".join(notes))

    if args.json is not None:
        data: dict[str, Any] = {
            "benchmark": "startup",
            "python": platform.python_version(),
            "executable": sys.executable,
            "cpus": os.cpu_count(),
            "runs": args.runs,
            "warmup": args.warmup,
            "busy_procs": args.busy_procs,
            "busy_pids": busy_pids,
            "targets_ms": TARGET_MS,
            "bytecode": bytecode_note(),
            "elapsed_s": round(elapsed, 2),
            "modes": {
                mode.name: {
                    "label": mode.label,
                    **{c: results[c][mode.name].as_json() for c in args.conditions},
                }
                for mode in modes
            },
        }
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(data, indent=2) + "\n")
    return 1 if notes else 0


if __name__ == "__main__":
    sys.exit(main())
