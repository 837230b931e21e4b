"""Shared benchmark plumbing: free ports, /proc figures, the servers under test, result files,
the command-line options every benchmark has.

Every server is started by us on a free 127.0.0.1 port and stopped by its PID only. Figures
that survive a busy two-core machine are preferred: CPU time (utime + stime from
``/proc/<pid>/stat``), peak and current RSS (``VmHWM``/``VmRSS``), and ratios measured in one run.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import os
import platform
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import IO, Any

ROOT = Path(__file__).resolve().parent.parent
BENCH_DIR = ROOT / "benchmarks"
NAIVE_SERVER = BENCH_DIR / "baselines" / "naive_chat_server.py"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
HOST = "127.0.0.1"


# --- ports and processes ----------------------------------------------------------------------


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nobody listens on right now."""
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds the process (all its threads) has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def status_kib(pid: int, key: str) -> int:
    """A ``/proc/<pid>/status`` figure in KiB (``VmHWM``, ``VmRSS``), 0 when unknown."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    for line in text.splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return 0


def socket_count(pid: int) -> int:
    """Open sockets of the process (listening ones included); 0 when it is gone."""
    count = 0
    try:
        entries = list(Path(f"/proc/{pid}/fd").iterdir())
    except OSError:
        return 0
    for entry in entries:
        try:
            if os.readlink(entry).startswith("socket:"):
                count += 1
        except OSError:
            continue
    return count


def thread_count(pid: int) -> int:
    """Threads of the process."""
    return status_kib(pid, "Threads")


def cpu_pressure_us() -> int | None:
    """Microseconds some task on this machine waited for a CPU (PSI ``some`` total), if known.

    Its growth over a run divided by the run's wall time is the share of time the machine
    was short of CPU: how much other people's work (and our own) got in the way.
    """
    try:
        first = Path("/proc/pressure/cpu").read_text().splitlines()[0]
    except (OSError, IndexError):
        return None
    for part in first.split():
        if part.startswith("total="):
            return int(part.split("=", 1)[1])
    return None


def raise_nofile(target: int = 65536) -> int:
    """Raise this process's open-file soft limit as far as allowed (children inherit it)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = target if hard == resource.RLIM_INFINITY else min(target, hard)
    if wanted > soft:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
            soft = wanted
        except (ValueError, OSError):
            pass
    return soft


def wait_listening(port: int, process: subprocess.Popen[bytes], timeout: float = 15.0) -> None:
    """Return once something accepts TCP connections on ``port``.

    Raises:
        RuntimeError: the process ended first, or nothing listened within ``timeout``.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode} before listening")
        try:
            with socket.create_connection((HOST, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listened on port {port} within {timeout} s")


def stop_process(
    process: subprocess.Popen[Any], sig: int = signal.SIGTERM, grace: float = 3.0
) -> None:
    """Stop one process we started, by its PID: ``sig``, then SIGKILL after ``grace`` seconds."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(process.pid, sig)
        try:
            process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=grace)


# --- the servers under test -------------------------------------------------------------------


@dataclass
class ServerSpec:
    """How to start one chat server for a benchmark.

    Attributes:
        key: short name used in tables (``triochat``, ``naive``, ``ncat``, ``ngircd``).
        label: what the tables call it.
        dialect: the load generator's dialect (``line``, ``ncat``, ``irc``; ``ws``, ``ws-all``:
            triochat's WebSocket, for readers or for everyone).
        argv: the command line for a port and a scratch directory.
        needs: programs that must be on PATH.
        note: a remark for the results (how it was configured).
        prepare: writes what the server needs into its scratch directory (a config file).
        stop_grace: seconds between SIGTERM and SIGKILL (a profiler needs long to write).
        env: extra environment variables.
    """

    key: str
    label: str
    dialect: str
    argv: Callable[[int, Path], list[str]]
    needs: tuple[str, ...] = ()
    note: str = ""
    prepare: Callable[[int, Path], None] | None = None
    stop_grace: float = 5.0
    env: dict[str, str] = field(default_factory=dict)


NGIRCD_CONF = """\
[Global]
	Name = bench.local
	Info = triochat benchmark reference
	AdminInfo1 = benchmark
	AdminInfo2 = benchmark
	AdminEMail = bench@localhost
	Listen = 127.0.0.1
	Ports = {port}
	MotdPhrase = "bench"
	PidFile = {scratch}/ngircd.pid
[Limits]
	MaxConnections = 0
	MaxConnectionsIP = 0
	MaxJoins = 0
	MaxPenaltyTime = 0
	MaxNickLength = 16
	PingTimeout = 600
	PongTimeout = 120
[Options]
	DNS = no
	Ident = no
	PAM = no
	NoticeBeforeRegistration = no
	IncludeDir = {scratch}/conf.d
[Channel]
	Name = #bench
	Modes = n
"""


def chat_server_argv(tree: Path, port: int) -> list[str]:
    """``ChatServer.py <port> --host 127.0.0.1 --no-udp`` from the checkout ``tree``."""
    return [sys.executable, str(tree / "ChatServer.py"), str(port), "--host", HOST, "--no-udp"]


def triochat_spec(tree: Path | None = None) -> ServerSpec:
    """triochat as users run it; with ``tree``, from another checkout (``git worktree add
    /tmp/before <commit>``) run the same way: before/after figures from one run, one machine."""
    if tree is None:
        return ServerSpec(
            "triochat",
            "triochat",
            "line",
            lambda port, _: chat_server_argv(ROOT, port),
            note="ChatServer.py --host 127.0.0.1 --no-udp; console lines to /dev/null",
        )
    return ServerSpec(
        "triochat-before",
        "triochat (before)",
        "line",
        lambda port, _: chat_server_argv(tree, port),
        note=f"{tree}/ChatServer.py (the script's own directory comes first on sys.path)",
    )


def triochat_web_spec(*, all_members: bool = False) -> ServerSpec:
    """triochat with browser members: the page's WebSocket (same server, same command line
    as ``triochat``; only the clients' dialect differs). Readers join over the WebSocket and
    senders as line members, so the figure is fan-out to browsers; ``all_members``: the
    senders too (adds wsproto's parsing of every message they send)."""
    if all_members:
        return ServerSpec(
            "triochat-web-all",
            "triochat, all WebSocket",
            "ws-all",
            lambda port, _: chat_server_argv(ROOT, port),
            note="as triochat, every client (senders too) over the page's WebSocket (/ws)",
        )
    return ServerSpec(
        "triochat-web",
        "triochat, to WebSocket",
        "ws",
        lambda port, _: chat_server_argv(ROOT, port),
        note="as triochat; readers over the page's WebSocket (/ws), senders as line members",
    )


def variant_spec(key: str, label: str, *flags: str) -> ServerSpec:
    """triochat with one lever switched off (see ``benchmarks/triochat_variant.py``)."""
    return ServerSpec(
        key,
        label,
        "line",
        lambda port, _: [sys.executable, "-m", "benchmarks.triochat_variant", str(port), *flags],
        note="python -m benchmarks.triochat_variant " + " ".join(flags),
        env={"PYTHONPATH": str(ROOT)},
    )


def profiled(spec: ServerSpec, report: Path) -> ServerSpec:
    """``spec`` (a Python server) run under pyinstrument, which writes a text report."""

    def argv(port: int, scratch: Path) -> list[str]:
        command = spec.argv(port, scratch)
        return [sys.executable, "-m", "pyinstrument", "-r", "text", "-o", str(report), *command[1:]]

    return replace(
        spec,
        key="triochat-profiled",
        label="triochat under pyinstrument",
        argv=argv,
        stop_grace=120.0,
    )


def pyinstrument_missing() -> str | None:
    """Why a ``--profile`` run cannot happen here, or ``None`` (also said on stderr)."""
    if importlib.util.find_spec("pyinstrument") is not None:
        return None
    why = "pyinstrument is not installed (pip install pyinstrument, or the bench extra)"
    say(f"skipping the profile: {why}")
    return why


def naive_spec() -> ServerSpec:
    """The thread-per-client baseline in ``baselines/naive_chat_server.py``."""
    return ServerSpec(
        "naive",
        "naive threads",
        "line",
        lambda port, _: [sys.executable, str(NAIVE_SERVER), str(port)],
        note="one thread per client, sendall under one lock",
    )


def ncat_spec() -> ServerSpec:
    """``ncat --chat`` (nmap's netcat), which prefixes messages with ``<user#N> ``."""
    return ServerSpec(
        "ncat",
        "ncat --chat",
        "ncat",
        lambda port, _: ["ncat", "--chat", "-l", HOST, str(port), "--max-conns", "60000"],
        needs=("ncat",),
        note="ncat --chat -l 127.0.0.1 PORT --max-conns 60000 (no name line)",
    )


def ngircd_spec(penalties: bool = False) -> ServerSpec:
    """ngIRCd with a generated config, 127.0.0.1 only: flood penalties off (MaxPenaltyTime = 0)
    or, with ``penalties``, at their default (to show what turning them off changes)."""

    def write_config(port: int, scratch: Path) -> None:
        (scratch / "conf.d").mkdir(exist_ok=True)
        text = NGIRCD_CONF.format(port=port, scratch=scratch)
        if penalties:
            text = text.replace("\tMaxPenaltyTime = 0\n", "")
        (scratch / "ngircd.conf").write_text(text)

    return ServerSpec(
        "ngircd-penalties" if penalties else "ngircd",
        "ngIRCd, default penalties" if penalties else "ngIRCd",
        "irc",
        lambda port, scratch: ["ngircd", "--nodaemon", "-f", str(scratch / "ngircd.conf")],
        needs=("ngircd",),
        note="as ngIRCd but without MaxPenaltyTime = 0"
        if penalties
        else "ngircd -n, Listen 127.0.0.1, MaxPenaltyTime 0, DNS/Ident/PAM off",
        prepare=write_config,
    )


@dataclass
class RunningServer:
    """A server process we started, and its port."""

    spec: ServerSpec
    process: subprocess.Popen[bytes]
    port: int
    scratch: Path
    log: IO[bytes]

    @property
    def pid(self) -> int:
        return self.process.pid

    def cpu(self) -> float:
        """CPU seconds used so far."""
        return cpu_seconds(self.pid)

    def peak_rss_kib(self) -> int:
        """Peak resident set size so far (VmHWM)."""
        return status_kib(self.pid, "VmHWM")

    def rss_kib(self) -> int:
        """Current resident set size (VmRSS)."""
        return status_kib(self.pid, "VmRSS")

    def alive(self) -> bool:
        return self.process.poll() is None

    def log_text(self) -> str:
        """What the server wrote to stderr (and stdout, for the references)."""
        self.log.flush()
        try:
            return Path(self.log.name).read_text(errors="replace")
        except OSError:
            return ""

    def log_tail(self, lines: int = 20) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    def stop(self) -> None:
        """Stop it by PID (SIGTERM, then SIGKILL) and remove its scratch directory."""
        stop_process(self.process, grace=self.spec.stop_grace)
        self.log.close()
        shutil.rmtree(self.scratch, ignore_errors=True)


def start_server(spec: ServerSpec, quiet_stdout: bool = True) -> RunningServer:
    """Start ``spec`` on a free port and wait until it accepts connections.

    Console output goes to /dev/null for triochat and the naive server (so it never blocks)
    and to a log file for the references, whose logs explain evictions.
    """
    scratch = Path(tempfile.mkdtemp(prefix=f"bench-{spec.key}-"))
    port = free_port()
    if spec.prepare is not None:
        spec.prepare(port, scratch)
    log = (scratch / "server.log").open("wb")
    stdout: int | IO[bytes] = subprocess.DEVNULL if quiet_stdout and spec.dialect == "line" else log
    process = subprocess.Popen(
        spec.argv(port, scratch),
        stdin=subprocess.DEVNULL,
        stdout=stdout,
        stderr=log,
        cwd=scratch,
        env={**os.environ, "PYTHONUNBUFFERED": "1", **spec.env},
    )
    server = RunningServer(spec, process, port, scratch, log)
    try:
        wait_listening(port, process)
    except Exception:
        server.stop()
        raise
    time.sleep(0.2)  # settle before anything is measured
    return server


PACKAGES = {"ncat": "ncat", "ngircd": "ngircd", "socat": "socat"}
"""The Debian/Ubuntu package of each reference program (the benchmarks never install them)."""


def missing(*programs: str) -> str | None:
    """``None`` when every program is on PATH, else what is missing and what to install."""
    absent = [program for program in programs if shutil.which(program) is None]
    if not absent:
        return None
    packages = " ".join(PACKAGES.get(program, program) for program in absent)
    return f"{', '.join(absent)} not installed (install it: apt-get install {packages})"


def runnable_servers(specs: Sequence[ServerSpec]) -> tuple[list[ServerSpec], dict[str, str]]:
    """The servers that can run here, and why each of the others is skipped (said on stderr)."""
    skipped: dict[str, str] = {}
    runnable = []
    for spec in specs:
        reason = missing(*spec.needs)
        if reason:
            skipped[spec.key] = reason
            say(f"skipping {spec.label}: {reason}")
        else:
            runnable.append(spec)
    return runnable, skipped


def chosen_servers(
    specs: list[ServerSpec], args: argparse.Namespace
) -> tuple[list[ServerSpec], dict[str, str]]:
    """The ``--servers`` subset of ``specs``, with ``--before`` second, that can run here."""
    if args.servers:
        specs = [s for s in specs if s.key in args.servers.split(",")]
    if getattr(args, "before", None) is not None:
        specs.insert(1, triochat_spec(args.before.resolve()))
    return runnable_servers(specs)


# --- the command line -------------------------------------------------------------------------


def doc_parser(module: str, doc: str | None) -> argparse.ArgumentParser:
    """A parser for ``python -m <module>`` whose ``--help`` is the module's docstring."""
    first, _, rest = (doc or "").partition("\n\n")
    return argparse.ArgumentParser(
        prog=f"python -m {module}",
        description=first,
        epilog=rest,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


def base_parser(
    module: str, doc: str | None, servers: str = "", before: bool = False
) -> argparse.ArgumentParser:
    """The options every benchmark that writes ``results/<name>.json`` has."""
    parser = doc_parser(module, doc)
    parser.add_argument("--quick", action="store_true", help="smaller sizes")
    parser.add_argument("--profile", action="store_true", help="also profile triochat")
    parser.add_argument("--out-dir", type=Path, default=BENCH_DIR, help="where results/ go")
    parser.add_argument("--no-report", action="store_true", help="do not rewrite RESULTS.md")
    # Kept so that older command lines still work: nothing is ever installed now.
    parser.add_argument("--no-install", action="store_true", help=argparse.SUPPRESS)
    if servers:
        parser.add_argument("--servers", help=f"comma-separated: {servers}")
    if before:
        parser.add_argument(
            "--before",
            type=Path,
            help="also run triochat from this checkout of an earlier commit (before/after)",
        )
    return parser


# --- results ----------------------------------------------------------------------------------


def machine_info() -> dict[str, Any]:
    """What the figures were measured on, and how busy the machine was."""
    load = os.getloadavg()
    versions: dict[str, str] = {"python": platform.python_version()}
    for program, args in (
        ("ncat", ["--version"]),
        ("ngircd", ["--version"]),
        ("socat", ["-V"]),
    ):
        if shutil.which(program):
            out = subprocess.run([program, *args], capture_output=True, text=True, timeout=10)
            text = (out.stdout + out.stderr).strip().splitlines()
            versions[program] = next((line for line in text if line.strip()), "?")[:80]
    git: dict[str, str] = {}
    if shutil.which("git"):
        head = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
        )
        dirty = subprocess.run(
            ["git", "-C", str(ROOT), "status", "--porcelain", "--", "triochat"],
            capture_output=True,
            text=True,
            timeout=10,
        )
        git = {
            "commit": head.stdout.strip(),
            "triochat_dirty": "yes" if dirty.stdout.strip() else "no",
        }
    return {
        "git": git,
        "cpus": os.cpu_count(),
        "kernel": platform.release(),
        "loadavg_at_start": [round(x, 2) for x in load],
        "versions": versions,
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
    }


def results_dir(out_dir: Path) -> Path:
    path = out_dir / "results"
    path.mkdir(parents=True, exist_ok=True)
    return path


def save_json(out_dir: Path, name: str, data: dict[str, Any]) -> Path:
    """Write ``results/<name>.json`` under ``out_dir``."""
    path = results_dir(out_dir) / f"{name}.json"
    path.write_text(json.dumps(data, indent=1, sort_keys=False))
    return path


def finish_run(
    out_dir: Path, name: str, results: dict[str, Any], started: float, *, report: bool
) -> None:
    """Record the run's duration, save ``results/<name>.json`` and, if asked, rebuild
    RESULTS.md from every results file."""
    results["elapsed_s"] = time.monotonic() - started
    say(f"wrote {save_json(out_dir, name, results)}")
    if report:
        from benchmarks import report as report_module

        report_module.write_report(out_dir)


def load_json(out_dir: Path, name: str) -> dict[str, Any] | None:
    path = out_dir / "results" / f"{name}.json"
    if not path.exists():
        return None
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def percentile(sorted_values: Sequence[int] | Sequence[float], fraction: float) -> float:
    """The ``fraction`` quantile (nearest rank) of already sorted values; NaN when empty."""
    if not sorted_values:
        return float("nan")
    index = min(len(sorted_values) - 1, max(0, round(fraction * (len(sorted_values) - 1))))
    return float(sorted_values[index])


def say(text: str) -> None:
    """Progress line on stderr, flushed."""
    sys.stderr.write(text + "\n")
    sys.stderr.flush()
