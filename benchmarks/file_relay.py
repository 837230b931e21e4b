"""File-relay throughput, CPU and memory: triochat beside a plain socat chain, from one run.

triochat: an owner menu client (``ChatClient.py -l PORT``) serves a file, ``ChatServer.py``
relays it, a requester menu client writes and verifies it; timed from the request to the
requester's ``... verified`` line, and every copy is hashed again (SHA-256). The reference is
the same file through three socat processes, the middle one a relay like the server::

    socat -b 262144 -u FILE:src TCP:127.0.0.1:RELAY                              (sender)
    socat -b 262144 TCP-LISTEN:RELAY,bind=127.0.0.1,reuseaddr TCP:127.0.0.1:SINK (relay)
    socat -b 262144 -u TCP-LISTEN:SINK,bind=127.0.0.1,reuseaddr CREATE:dst       (sink)

timed from starting the sender until the sink has exited with the whole file (then hashed);
every one with 256 KiB buffers (socat's default of 8 KiB makes the sink alone cost 1.7 CPU
s/GiB and the chain 580-620 MB/s here instead of 1,450-1,570: too easy a reference). The
sink does not fsync: the copy is in the page cache, not on disk, when it is timed;
the relay's CPU time comes from ``wait4``, its peak RSS from ``VmHWM``. A direct loopback
copy (``sendfile`` into a sink that discards) is the ceiling. In one run:

- single transfers at each size, ``--repeats`` times each (triochat, socat, direct copy
  interleaved so that the shared machine's load hits them alike): medians, with min-max;
  MB/s, CPU seconds per GiB of the server, owner and requester (socat: the relay) and peak
  RSS (``VmHWM``);
- ``--concurrent`` transfers at once (8 owners, 8 requesters, one server; each owner serves
  its own hard link of one file), ``--repeats`` times: aggregate and per-transfer MB/s, the
  CPU per GiB and peak RSS of the run with the median aggregate, every run's aggregate beside
  it; the same number of socat chains at once beside it;
- one ``--large-mib`` transfer with the server's RSS sampled every 100 ms: is memory flat?
- the targets, met or not, with the figures (also in RESULTS.md).

    python -m benchmarks.file_relay                  # 1 GiB x3, 8 x 256 MiB, 4 GiB
    python -m benchmarks.file_relay --quick          # 64 MiB x3, 8 x 16 MiB, no large
    python -m benchmarks.file_relay --size-mib 256   # one size (--sizes-mib 64,256: several)
    python -m benchmarks.file_relay --large-mib 0    # the full run without the large file
    python -m benchmarks.file_relay --profile        # also profile the server relaying 256 MiB

The full run includes the 4 GiB transfer: a few minutes in all at triochat's ~200 MB/s (an
estimate; it was never run on the shared development machine). It needs 8 GiB free under the
temp directory; a part without room is skipped, as stderr says. Requests are sent once the
server and clients are idle (not while they start up). ``--size-mib``/``--sizes-mib`` runs have no
large transfer unless ``--large-mib`` asks for one, and ``--concurrent-mib`` defaults to a
quarter of the largest single size (256 MiB for 1 GiB), so the concurrent transfers move
twice the single one's bytes. ``--concurrent 0`` skips them. Without socat
(apt-get install socat) the socat figures are skipped, as stderr says. Linux only (/proc).
"""

from __future__ import annotations

import hashlib
import os
import queue
import select
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import IO, Any

from benchmarks import common
from benchmarks.common import HOST, ROOT, cpu_seconds, say, status_kib

BLOCK = 1024 * 1024
MIB = 1024 * 1024
GIB = 1024 * MIB
SOCAT_BUFFER = 262144
RSS_LIMIT_MIB = 64
CPU_FACTOR = 1.5
SAMPLE_EVERY = 0.1
WATCH_EVERY = 0.02
SETTLE = 0.3
FRACTIONS = (0.25, 0.5, 0.75, 1.0)
FILE_NAME = "payload.bin"


# --- files ------------------------------------------------------------------------------------


def peak_rss_kib(pid: int) -> int:
    return status_kib(pid, "VmHWM")


def make_file(path: Path, size_mib: int) -> str:
    """A file of random-looking blocks (fast to make, not compressible); its SHA-256."""
    digest = hashlib.sha256()
    seed = os.urandom(BLOCK)
    with path.open("wb") as out:
        for index in range(size_mib):
            block = seed[index % BLOCK :] + seed[: index % BLOCK]
            out.write(block)
            digest.update(block)
    return digest.hexdigest()


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as source:
        while block := source.read(BLOCK):
            digest.update(block)
    return digest.hexdigest()


def link_or_copy(source: Path, target: Path) -> None:
    """A hard link of ``source`` (no extra disk), or a copy on another file system."""
    if source.stat().st_dev == target.parent.stat().st_dev:
        os.link(source, target)
    else:
        shutil.copy(source, target)


def room_for(directory: Path, needed: int, what: str) -> str | None:
    """``None`` when ``directory`` has ``needed`` bytes free, else why ``what`` is skipped."""
    free = shutil.disk_usage(directory).free
    if free >= needed:
        return None
    why = (
        f"{what} needs {needed / GIB:.1f} GiB free in {directory}, only {free / GIB:.1f} GiB there"
    )
    say(f"skipping {what}: {why}")
    return why


def transfer_timeout(total_bytes: int) -> float:
    """How long a transfer may take before we give up: a minute plus 2 MB/s."""
    return 60 + total_bytes / 2e6


# --- processes --------------------------------------------------------------------------------


class LineReader:
    """Reads a child's stdout in a thread, so waits have timeouts and its pipe never fills.

    Lines land in ``lines`` as ``(tag, perf_counter time, line)``; ``""`` means end of output.
    """

    def __init__(
        self, stream: IO[str], tag: str, lines: queue.Queue[tuple[str, float, str]] | None = None
    ) -> None:
        self.tag = tag
        self.lines: queue.Queue[tuple[str, float, str]] = lines or queue.Queue()
        self._stream = stream
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self) -> None:
        try:
            for line in self._stream:
                self.lines.put((self.tag, time.perf_counter(), line))
        except (OSError, ValueError):
            pass  # the pipe was closed under us: the process is being stopped
        self.lines.put((self.tag, time.perf_counter(), ""))

    def wait_for(self, needles: Sequence[str], timeout: float) -> None:
        """Return once every needle was in some line (in any order)."""
        waiting = set(needles)
        deadline = time.monotonic() + timeout
        while waiting:
            try:
                _, _, line = self.lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise TimeoutError(f"{self.tag}: no {sorted(waiting)} within {timeout} s") from None
            if not line:
                raise RuntimeError(f"{self.tag} ended before printing {sorted(waiting)}")
            waiting = {needle for needle in waiting if needle not in line}


def listening(port: int) -> bool:
    """Whether a socket listens on 127.0.0.1:port, read from /proc/net/tcp.

    Probing with a connection would not do: socat without ``fork`` serves exactly one
    connection, and the probe would be it.
    """
    local = f"0100007F:{port:04X}"
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[1] == local and fields[3] == "0A":  # 0A: TCP_LISTEN
            return True
    return False


def wait_listening(port: int, process: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not listening(port):
        if process.poll() is not None:
            raise RuntimeError(
                f"{process.args!r} exited with {process.returncode} before listening"
            )
        if time.monotonic() > deadline:
            raise TimeoutError(f"nothing listened on port {port} within {timeout} s")
        time.sleep(0.01)


def exit_times(
    processes: Sequence[subprocess.Popen[bytes]],
    timeout: float,
    meanwhile: Callable[[], None] | None = None,
) -> list[float]:
    """The perf_counter time at which each process exited, within a millisecond.

    Waits on pidfds (Popen.wait with a timeout polls, up to 50 ms late); the processes are
    not reaped. ``meanwhile`` is called every :data:`WATCH_EVERY` seconds while waiting.
    """
    times = [float("nan")] * len(processes)
    poller = select.poll()
    descriptors: dict[int, int] = {}
    try:
        for index, process in enumerate(processes):
            descriptor = os.pidfd_open(process.pid)
            descriptors[descriptor] = index
            poller.register(descriptor, select.POLLIN)
        deadline = time.monotonic() + timeout
        left = len(processes)
        while left:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"{left} of {len(processes)} processes still running")
            if meanwhile is not None:
                meanwhile()
            for descriptor, _ in poller.poll(min(remaining, WATCH_EVERY) * 1000):
                times[descriptors[descriptor]] = time.perf_counter()
                poller.unregister(descriptor)
                left -= 1
    finally:
        for descriptor in descriptors:
            os.close(descriptor)
    return times


def reap_cpu_seconds(process: subprocess.Popen[bytes], timeout: float) -> float:
    """Reap a child that is ending: its CPU seconds (user + system) over its whole life.

    ``wait4`` counts up to the exit, which /proc cannot promise; Popen is told the exit code
    so that it does not wait again. (Its ``ru_maxrss`` is no use for peak RSS: exec keeps the
    high-water mark of the Python process that forked the child.)
    """
    deadline = time.monotonic() + timeout
    while True:
        pid, status, usage = os.wait4(process.pid, os.WNOHANG)
        if pid:
            process.returncode = os.waitstatus_to_exitcode(status)
            return usage.ru_utime + usage.ru_stime
        if time.monotonic() > deadline:
            raise TimeoutError(f"{process.args!r} still running after {timeout} s")
        time.sleep(0.005)


class PeakWatch:
    """The highest VmHWM seen of each process, read while it runs (an exited one has none)."""

    def __init__(self, processes: Sequence[subprocess.Popen[bytes]]) -> None:
        self.peaks = {process.pid: 0 for process in processes}
        self.sample()

    def sample(self) -> None:
        for pid, peak in self.peaks.items():
            self.peaks[pid] = max(peak, peak_rss_kib(pid))

    def peak_kib(self) -> int:
        """The largest peak of any of the processes."""
        return max(self.peaks.values())


def wait_idle(
    processes: Sequence[subprocess.Popen[Any]], quiet: float = SETTLE, timeout: float = 30.0
) -> None:
    """Return once the processes used no CPU for ``quiet`` seconds (at most ``timeout``)."""
    deadline = time.monotonic() + timeout
    last = -1.0
    since = time.monotonic()
    while time.monotonic() < deadline:
        used = sum(cpu_seconds(process.pid) for process in processes)
        if used != last:
            last, since = used, time.monotonic()
        elif time.monotonic() - since >= quiet:
            return
        time.sleep(0.05)
    say(f"  the clients were still busy after {timeout} s; measuring anyway")


def distinct_ports(count: int) -> list[int]:
    """``count`` free ports on 127.0.0.1, no two alike: bound all at once, then let go."""
    with ExitStack() as stack:
        probes = [stack.enter_context(socket.socket()) for _ in range(count)]
        for probe in probes:
            probe.bind((HOST, 0))
        return [int(probe.getsockname()[1]) for probe in probes]


# --- figures ----------------------------------------------------------------------------------


def settle_disk(source: Path) -> None:
    """Put every contender's timed run on the same footing: nothing left to write, and the
    source file in the page cache.

    The socat sink and ``make_file`` leave up to a GiB unwritten; a requester's fsync before
    its rename would then wait for ext4 to commit that too (data=ordered). And on this
    project's VM, DAMON pages out memory left idle for about a second (``pageout`` scheme,
    ``/sys/kernel/mm/damon``): while triochat's clients start, the source would go back to
    disk, and the owner would read it from there (1.5 CPU s/GiB) where socat, quicker to
    start, reads it from memory. So: sync, then read the source through once.
    """
    os.sync()
    with source.open("rb", buffering=0) as warm:
        buffer = memoryview(bytearray(BLOCK))
        while warm.readinto(buffer):
            pass


def per_gib(cpu_s: float, nbytes: int) -> float:
    return cpu_s / (nbytes / GIB)


def summarise(runs: list[dict[str, Any]], keys: Sequence[str]) -> dict[str, Any]:
    """Medians of ``keys`` over the runs, their min-max in ``spread``, and the runs."""
    summary: dict[str, Any] = {}
    spread: dict[str, list[float]] = {}
    for key in keys:
        values = [run[key] for run in runs if key in run]
        if values:
            summary[key] = statistics.median(values)
            spread[key] = [min(values), max(values)]
    summary["spread"] = spread
    summary["runs"] = runs
    return summary


def rss_at_fractions(
    samples: Sequence[tuple[float, int]], elapsed: float, fractions: Sequence[float] = FRACTIONS
) -> dict[str, float]:
    """RSS (MiB) of the sample nearest each fraction of the transfer's time, keyed ``"25%"``."""
    if not samples:
        return {}
    at: dict[str, float] = {}
    for fraction in fractions:
        when = fraction * elapsed
        _, kib = min(samples, key=lambda sample: abs(sample[0] - when))
        at[f"{fraction:.0%}"] = kib / 1024
    return at


# --- triochat ---------------------------------------------------------------------------------


class TriochatRoom:
    """One ChatServer.py and ``count`` owner/requester pairs of menu clients, on 127.0.0.1.

    Owner ``i`` serves its own link of the source as ``payload.bin``; requester ``i`` asks
    owner ``i`` for it.
    """

    def __init__(
        self, source: Path, scratch: Path, count: int, profile_to: Path | None = None
    ) -> None:
        self.source = source
        self.scratch = scratch
        self.count = count
        self.profile_to = profile_to
        self.env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.requester_lines: queue.Queue[tuple[str, float, str]] = queue.Queue()
        self.owners: list[subprocess.Popen[str]] = []
        self.requesters: list[subprocess.Popen[str]] = []
        self.requester_dirs: list[Path] = []

    def start(self, stack: ExitStack) -> None:
        """Start the server, then every client, and wait until all have joined."""
        ports = distinct_ports(1 + 2 * self.count)
        self.server_port = ports.pop()
        argv = common.chat_server_argv(ROOT, self.server_port)
        if self.profile_to:  # python -m pyinstrument ... ChatServer.py ...
            argv[1:1] = ["-m", "pyinstrument", "-r", "text", "-o", str(self.profile_to)]
        self.server = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            text=True,
            env=self.env,
        )
        # A profiled server needs long to write its report after SIGTERM.
        grace = 60 if self.profile_to else 5
        stack.callback(common.stop_process, self.server, grace=grace)
        assert self.server.stdout is not None
        self.server_output = LineReader(self.server.stdout, "server")
        self.server_output.wait_for(["ChatServer started"], 20)
        names = []
        for index in range(self.count):
            owner_dir = self.scratch / f"owner{index}"
            requester_dir = self.scratch / f"requester{index}"
            owner_dir.mkdir()
            requester_dir.mkdir()
            link_or_copy(self.source, owner_dir / FILE_NAME)
            self.requester_dirs.append(requester_dir)
            self.owners.append(self._client(stack, f"owner{index}", owner_dir, ports.pop()))
            self.requesters.append(
                self._client(
                    stack, f"requester{index}", requester_dir, ports.pop(), self.requester_lines
                )
            )
            names += [f"owner{index}", f"requester{index}"]
        # Python's start-up on a shared two-core machine: allow a few seconds per client.
        self.server_output.wait_for(
            [f":: {name}: connected." for name in names], 30 + 3 * len(names)
        )
        # A menu client writes to the server at least WRITE_GAP (0.15 s) after its last write,
        # and one just joined may still be importing: a request sent at once would be timed
        # with both.
        wait_idle([self.server, *self.owners, *self.requesters])

    def _client(
        self,
        stack: ExitStack,
        name: str,
        directory: Path,
        file_port: int,
        lines: queue.Queue[tuple[str, float, str]] | None = None,
    ) -> subprocess.Popen[str]:
        """A menu client joined as ``name``, sharing ``directory``; its output goes to
        ``lines`` (the requesters', which the transfer waits on) or is drained."""
        client = subprocess.Popen(
            [
                sys.executable,
                str(ROOT / "ChatClient.py"),
                *("-l", str(file_port), "-p", str(self.server_port)),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=directory,
            env=self.env,
        )
        stack.callback(common.stop_process, client, grace=2)
        assert client.stdin is not None and client.stdout is not None
        LineReader(client.stdout, name, lines)
        client.stdin.write(f"{name}\n")
        client.stdin.flush()
        return client

    def transfer(self, expected: str, sample_rss: bool = False) -> dict[str, Any]:
        """Every requester asks its owner for the file at once; figures once all verified."""
        size = self.source.stat().st_size
        total = size * self.count
        processes = [self.server, *self.owners, *self.requesters]
        settle_disk(self.source)
        before = [cpu_seconds(process.pid) for process in processes]
        samples: list[tuple[float, int]] = []
        started: dict[str, float] = {}
        start = time.perf_counter()
        for index, requester in enumerate(self.requesters):
            assert requester.stdin is not None
            started[f"requester{index}"] = time.perf_counter()
            requester.stdin.write(f"f\nowner{index}\n{FILE_NAME}\n")
            requester.stdin.flush()
        done = self._wait_verified(start, transfer_timeout(total), samples if sample_rss else None)
        elapsed = max(done.values()) - start
        after = [cpu_seconds(process.pid) for process in processes]
        used = [b - a for a, b in zip(before, after, strict=True)]
        server_cpu = used[0]
        owner_cpu = sum(used[1 : 1 + self.count])
        requester_cpu = sum(used[1 + self.count :])
        result: dict[str, Any] = {
            "transfers": self.count,
            "size_mib": size / MIB,
            "seconds": elapsed,
            "relay_mb_s": total / elapsed / 1e6,
            "transfer_mb_s": sorted(size / (done[tag] - started[tag]) / 1e6 for tag in done),
            "server_cpu_s": server_cpu,
            "owner_cpu_s": owner_cpu,
            "requester_cpu_s": requester_cpu,
            "server_cpu_s_per_gib": per_gib(server_cpu, total),
            "owner_cpu_s_per_gib": per_gib(owner_cpu, total),
            "requester_cpu_s_per_gib": per_gib(requester_cpu, total),
            "server_peak_rss_mib": peak_rss_kib(self.server.pid) / 1024,
            "owner_peak_rss_mib": max(peak_rss_kib(p.pid) for p in self.owners) / 1024,
            "requester_peak_rss_mib": max(peak_rss_kib(p.pid) for p in self.requesters) / 1024,
        }
        if sample_rss:
            result["rss_samples"] = [[round(t, 3), kib] for t, kib in samples]
            result["server_rss_at_mib"] = rss_at_fractions(samples, elapsed)
        self._verify_copies(expected)
        result["verified"] = True
        return result

    def _wait_verified(
        self, start: float, timeout: float, samples: list[tuple[float, int]] | None
    ) -> dict[str, float]:
        """When each requester printed its ``verified`` line; samples the server's RSS meanwhile."""
        done: dict[str, float] = {}
        deadline = time.monotonic() + timeout
        next_sample = 0.0
        while len(done) < self.count:
            now = time.perf_counter()
            if samples is not None and now >= next_sample:
                samples.append((now - start, status_kib(self.server.pid, "VmRSS")))
                next_sample = now + SAMPLE_EVERY
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"{self.count - len(done)} transfers unfinished after {timeout} s"
                )
            try:
                tag, when, line = self.requester_lines.get(timeout=SAMPLE_EVERY)
            except queue.Empty:
                continue
            if not line:
                raise RuntimeError(f"{tag} ended before its file arrived")
            if FILE_NAME not in line:
                continue
            if "verified" not in line:
                raise RuntimeError(f"{tag}: {line.strip()}")
            done[tag] = when
        if samples is not None:
            samples.append((time.perf_counter() - start, status_kib(self.server.pid, "VmRSS")))
        return done

    def _verify_copies(self, expected: str) -> None:
        """Hash every copy again (outside the timing) and delete it: disk is freed as we go."""
        for directory in self.requester_dirs:
            copy = directory / FILE_NAME
            if sha256_of(copy) != expected:
                raise RuntimeError(f"{copy} differs from the original")
            copy.unlink()


def run_triochat(
    source: Path,
    expected: str,
    count: int = 1,
    *,
    sample_rss: bool = False,
    profile_to: Path | None = None,
) -> dict[str, Any]:
    """``count`` copies of ``source`` through triochat at once, each verified byte for byte.

    With ``profile_to`` the server runs under pyinstrument, whose text report lands there.
    """
    with (
        tempfile.TemporaryDirectory(prefix="triochat-", dir=source.parent) as scratch,
        ExitStack() as stack,
    ):
        room = TriochatRoom(source, Path(scratch), count, profile_to)
        room.start(stack)
        return room.transfer(expected, sample_rss)


# --- socat ------------------------------------------------------------------------------------


def run_socat_chains(source: Path, expected: str, count: int = 1) -> dict[str, Any]:
    """``count`` copies of ``source`` at once, each through sender -> relay -> sink socat.

    Each sink and relay is started and listening before any sender starts; timed from the
    first sender's start until every sink has exited with its whole file.
    """
    size = source.stat().st_size
    total = size * count
    with (
        tempfile.TemporaryDirectory(prefix="socat-", dir=source.parent) as tmp,
        ExitStack() as stack,
    ):
        scratch = Path(tmp)
        log = stack.enter_context((scratch / "socat.log").open("wb"))

        def spawn(*argv: str) -> subprocess.Popen[bytes]:
            process = subprocess.Popen(
                ["socat", *argv], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log
            )
            stack.callback(common.stop_process, process)
            return process

        ports = distinct_ports(2 * count)
        copies = [scratch / f"copy{index}.bin" for index in range(count)]
        sinks, relays, relay_ports = [], [], []
        for copy in copies:
            sink_port, relay_port = ports.pop(), ports.pop()
            listen = f",bind={HOST},reuseaddr"
            sinks.append(
                spawn(
                    *("-b", str(SOCAT_BUFFER), "-u"),
                    f"TCP-LISTEN:{sink_port}{listen}",
                    f"CREATE:{copy}",
                )
            )
            wait_listening(sink_port, sinks[-1])
            relays.append(
                spawn(
                    *("-b", str(SOCAT_BUFFER)),
                    f"TCP-LISTEN:{relay_port}{listen}",
                    f"TCP:{HOST}:{sink_port}",
                )
            )
            wait_listening(relay_port, relays[-1])
            relay_ports.append(relay_port)
        peaks = PeakWatch(relays)
        settle_disk(source)
        start = time.perf_counter()
        senders = [
            spawn(*("-b", str(SOCAT_BUFFER), "-u"), f"FILE:{source}", f"TCP:{HOST}:{port}")
            for port in relay_ports
        ]
        try:
            ends = exit_times(sinks, transfer_timeout(total), peaks.sample)
        except TimeoutError as error:
            raise TimeoutError(f"socat chains: {error}; {_tail(scratch / 'socat.log')}") from None
        relay_cpu = sum(reap_cpu_seconds(relay, 10) for relay in relays)
        codes = [process.wait(timeout=10) for process in (*sinks, *senders)]
        codes += [relay.returncode for relay in relays]
        if any(codes):
            raise RuntimeError(f"socat exited with {codes}; {_tail(scratch / 'socat.log')}")
        elapsed = max(ends) - start
        verified = True
        for copy in copies:
            verified = verified and copy.stat().st_size == size and sha256_of(copy) == expected
            copy.unlink()
    return {
        "transfers": count,
        "seconds": elapsed,
        "mb_s": total / elapsed / 1e6,
        "transfer_mb_s": sorted(size / (end - start) / 1e6 for end in ends),
        "relay_cpu_s": relay_cpu,
        "relay_cpu_s_per_gib": per_gib(relay_cpu, total),
        "relay_peak_rss_mib": peaks.peak_kib() / 1024,
        "verified": verified,
    }


def _tail(log: Path) -> str:
    text = log.read_text(errors="replace").strip() if log.exists() else ""
    return "socat said: " + " | ".join(text.splitlines()[-5:]) if text else "socat said nothing"


# --- direct copy ------------------------------------------------------------------------------


def direct_copy_mbps(path: Path) -> float:
    """Reference: the same bytes over one loopback TCP connection, no framing, no checks."""
    timeout = transfer_timeout(path.stat().st_size)
    with socket.create_server((HOST, 0)) as server:
        server.settimeout(10)
        port = server.getsockname()[1]

        def sink() -> None:
            connection, _ = server.accept()
            with connection:
                connection.settimeout(timeout)
                while connection.recv(BLOCK):
                    pass

        thread = threading.Thread(target=sink, daemon=True)
        thread.start()
        settle_disk(path)
        start = time.perf_counter()
        with (
            socket.create_connection((HOST, port), timeout=timeout) as client,
            path.open("rb") as source,
        ):
            client.sendfile(source)
        thread.join(timeout)
        elapsed = time.perf_counter() - start
        if thread.is_alive():
            raise TimeoutError("direct copy unfinished")
    return path.stat().st_size / elapsed / 1e6


# --- the parts of a run -----------------------------------------------------------------------

TRIOCHAT_KEYS = (
    "seconds",
    "relay_mb_s",
    "server_cpu_s_per_gib",
    "owner_cpu_s_per_gib",
    "requester_cpu_s_per_gib",
    "server_peak_rss_mib",
    "owner_peak_rss_mib",
    "requester_peak_rss_mib",
)
SOCAT_KEYS = ("seconds", "mb_s", "relay_cpu_s_per_gib", "relay_peak_rss_mib")


@contextmanager
def source_file(size_mib: int, copies: int, what: str) -> Iterator[tuple[Path, str] | str]:
    """A scratch directory holding a fresh source file of ``size_mib``, and its SHA-256; or,
    when there is no room for it and ``copies`` copies at once, why ``what`` is skipped."""
    with tempfile.TemporaryDirectory(prefix="bench-relay-") as tmp:
        scratch = Path(tmp)
        why = room_for(scratch, (1 + copies) * size_mib * MIB, what)
        if why:
            yield why
            return
        source = scratch / "source.bin"
        yield source, make_file(source, size_mib)


def single(size_mib: int, repeats: int, socat: bool) -> dict[str, Any]:
    """One file at a time, ``repeats`` times each through triochat, socat and a direct copy."""
    row: dict[str, Any] = {"size_mib": size_mib, "repeats": repeats}
    with source_file(size_mib, 1, f"the {size_mib} MiB transfers") as made:
        if isinstance(made, str):
            return {**row, "skipped": made}
        source, expected = made
        triochat, socats, direct = [], [], []
        for attempt in range(1, repeats + 1):
            say(f"  {size_mib} MiB, run {attempt} of {repeats}: triochat, socat chain, direct")
            # Interleaved: a burst of someone else's load hits every contender alike.
            run = run_triochat(source, expected)
            triochat.append({k: v for k, v in run.items() if k in TRIOCHAT_KEYS})
            if socat:
                run = run_socat_chains(source, expected)
                socats.append({k: v for k, v in run.items() if k in (*SOCAT_KEYS, "verified")})
            direct.append({"mb_s": direct_copy_mbps(source)})
    row["triochat"] = {**summarise(triochat, TRIOCHAT_KEYS), "verified": True}
    row["socat"] = (
        {**summarise(socats, SOCAT_KEYS), "verified": all(r["verified"] for r in socats)}
        if socat
        else {"skipped": common.missing("socat")}
    )
    row["direct"] = summarise(direct, ("mb_s",))
    if socat:
        row["ratio_vs_socat"] = row["triochat"]["relay_mb_s"] / row["socat"]["mb_s"]
    row["ratio_vs_direct"] = row["triochat"]["relay_mb_s"] / row["direct"]["mb_s"]
    return row


def concurrent(count: int, size_mib: int, socat: bool, repeats: int = 1) -> dict[str, Any]:
    """``count`` transfers at once through one triochat server, and through socat chains,
    ``repeats`` times each (interleaved); each keeps its run of median aggregate MB/s, with
    every run's aggregate beside it (``aggregate_mb_s_runs``)."""
    part: dict[str, Any] = {"transfers": count, "size_mib": size_mib, "repeats": repeats}
    with source_file(size_mib, count, f"the {count} concurrent transfers") as made:
        if isinstance(made, str):
            return {**part, "skipped": made}
        source, expected = made
        triochat_runs: list[dict[str, Any]] = []
        socat_runs: list[dict[str, Any]] = []
        for attempt in range(1, repeats + 1):
            say(f"  {count} x {size_mib} MiB at once, run {attempt} of {repeats}: triochat")
            triochat_runs.append(run_triochat(source, expected, count))
            if socat:
                say(f"  {count} x {size_mib} MiB at once, run {attempt} of {repeats}: socat")
                socat_runs.append(run_socat_chains(source, expected, count))
        part["triochat"] = median_run(triochat_runs, "relay_mb_s")
        part["socat"] = (
            median_run(socat_runs, "mb_s") if socat else {"skipped": common.missing("socat")}
        )
    return part


def median_run(runs: list[dict[str, Any]], key: str) -> dict[str, Any]:
    """The run whose ``key`` is the median (the lower middle one of an even number), with
    every run's ``key`` in ``aggregate_mb_s_runs``: its figures stay those of one run."""
    ordered = sorted(runs, key=lambda run: float(run[key]))
    chosen = dict(ordered[(len(ordered) - 1) // 2])
    chosen["aggregate_mb_s_runs"] = [run[key] for run in runs]
    return chosen


def large(size_mib: int) -> dict[str, Any]:
    """One big transfer with the server's RSS sampled along the way."""
    part: dict[str, Any] = {"size_mib": size_mib}
    with source_file(size_mib, 1, f"the {size_mib} MiB transfer") as made:
        if isinstance(made, str):
            return {**part, "skipped": made}
        source, expected = made
        say(f"  {size_mib} MiB through triochat, sampling the server's RSS")
        part["triochat"] = run_triochat(source, expected, sample_rss=True)
    return part


def profile(size_mib: int, report_path: Path) -> dict[str, Any]:
    """The server under pyinstrument relaying one file."""
    with source_file(size_mib, 1, "the profile") as made:
        if isinstance(made, str):
            return {"skipped": made}
        source, expected = made
        profiled = run_triochat(source, expected, profile_to=report_path)
    return {"size_mib": size_mib, "relay_mb_s_under_profiler": profiled["relay_mb_s"]}


# --- targets ----------------------------------------------------------------------------------


def target(name: str, met: bool | None, detail: str) -> dict[str, Any]:
    return {"target": name, "met": met, "detail": detail}


def check_targets(
    rows: list[dict[str, Any]], together: dict[str, Any] | None, big: dict[str, Any] | None
) -> list[dict[str, Any]]:
    """The issue's targets, each met, not met or not measured (``None``), with the figures.

    Single-transfer targets use the largest size measured; ratios are of this run's figures.
    """
    found: list[dict[str, Any]] = []
    measured = [row for row in rows if "triochat" in row]
    best = max(measured, key=lambda row: row["size_mib"]) if measured else None
    label = f"{best['size_mib']:,} MiB" if best else "single"
    trio = best["triochat"] if best else {}
    socat = best.get("socat", {}) if best else {}
    if best and "mb_s" in socat:
        ratio = trio["relay_mb_s"] / socat["mb_s"]
        found.append(
            target(
                f"{label}: triochat MB/s ≥ socat chain's",
                ratio >= 1,
                f"{trio['relay_mb_s']:.0f} vs {socat['mb_s']:.0f} MB/s ({ratio:.2f}x)",
            )
        )
        limit = CPU_FACTOR * socat["relay_cpu_s_per_gib"]
        cpu = trio["server_cpu_s_per_gib"]
        found.append(
            target(
                f"{label}: server CPU s/GiB ≤ {CPU_FACTOR:g} x socat relay's",
                cpu <= limit,
                f"{cpu:.2f} vs {socat['relay_cpu_s_per_gib']:.2f} s/GiB "
                f"({cpu / socat['relay_cpu_s_per_gib']:.2f}x)"
                if socat["relay_cpu_s_per_gib"]
                else f"{cpu:.2f} vs 0 s/GiB",
            )
        )
    else:
        why = "no socat figures" if best else "no single transfer"
        found.append(target(f"{label}: triochat MB/s ≥ socat chain's", None, why))
        found.append(
            target(f"{label}: server CPU s/GiB ≤ {CPU_FACTOR:g} x socat relay's", None, why)
        )
    for name, figures in (
        (label, trio),
        (_together_label(together), (together or {}).get("triochat", {})),
        (f"{big['size_mib']:,} MiB" if big else "large file", (big or {}).get("triochat", {})),
    ):
        rss = figures.get("server_peak_rss_mib")
        found.append(
            target(
                f"{name}: server peak RSS < {RSS_LIMIT_MIB} MiB",
                None if rss is None else rss < RSS_LIMIT_MIB,
                "not run" if rss is None else f"{rss:.1f} MiB",
            )
        )
    aggregate = (together or {}).get("triochat", {}).get("relay_mb_s")
    name = f"{_together_label(together)}: aggregate MB/s ≥ {label} single"
    if aggregate is None or not best:
        found.append(target(name, None, "not run"))
    else:
        found.append(
            target(
                name,
                aggregate >= trio["relay_mb_s"],
                f"{aggregate:.0f} vs {trio['relay_mb_s']:.0f} MB/s "
                f"({aggregate / trio['relay_mb_s']:.2f}x)",
            )
        )
    return found


def _together_label(together: dict[str, Any] | None) -> str:
    if not together:
        return "concurrent"
    return f"{together['transfers']} x {together['size_mib']:,} MiB at once"


# --- output -----------------------------------------------------------------------------------


def describe_single(row: dict[str, Any]) -> str:
    if "skipped" in row:
        return f"file relay {row['size_mib']} MiB: skipped ({row['skipped']})"
    trio, socat = row["triochat"], row["socat"]
    text = (
        f"file relay {row['size_mib']} MiB (median of {row['repeats']}): triochat "
        f"{trio['relay_mb_s']:.0f} MB/s (CPU s/GiB server {trio['server_cpu_s_per_gib']:.2f}, "
        f"owner {trio['owner_cpu_s_per_gib']:.2f}, requester "
        f"{trio['requester_cpu_s_per_gib']:.2f}; server peak RSS "
        f"{trio['server_peak_rss_mib']:.1f} MiB)"
    )
    if "mb_s" in socat:
        text += (
            f"; socat chain {socat['mb_s']:.0f} MB/s (relay CPU "
            f"{socat['relay_cpu_s_per_gib']:.2f} s/GiB, peak RSS "
            f"{socat['relay_peak_rss_mib']:.1f} MiB, verified {socat['verified']}); "
            f"triochat/socat {row['ratio_vs_socat']:.2f}"
        )
    else:
        text += f"; socat skipped: {socat.get('skipped')}"
    return text + f"; direct copy {row['direct']['mb_s']:.0f} MB/s"


def describe_concurrent(part: dict[str, Any]) -> str:
    label = _together_label(part)
    if "skipped" in part:
        return f"file relay {label}: skipped ({part['skipped']})"
    trio, socat = part["triochat"], part["socat"]
    each = trio["transfer_mb_s"]
    runs = trio.get("aggregate_mb_s_runs", [trio["relay_mb_s"]])
    text = (
        f"file relay {label} (median of {len(runs)}, {min(runs):.0f} to {max(runs):.0f}): "
        f"triochat {trio['relay_mb_s']:.0f} MB/s aggregate, each "
        f"{min(each):.0f}/{statistics.median(each):.0f}/{max(each):.0f} MB/s (min/median/max), "
        f"server CPU {trio['server_cpu_s_per_gib']:.2f} s/GiB, server peak RSS "
        f"{trio['server_peak_rss_mib']:.1f} MiB"
    )
    if "mb_s" in socat:
        text += f"; socat chains {socat['mb_s']:.0f} MB/s aggregate (verified {socat['verified']})"
    return text


def describe_large(part: dict[str, Any]) -> str:
    if "skipped" in part:
        return f"file relay {part['size_mib']} MiB: skipped ({part['skipped']})"
    trio = part["triochat"]
    at = ", ".join(f"{k} {v:.1f}" for k, v in trio["server_rss_at_mib"].items())
    return (
        f"file relay {part['size_mib']} MiB: triochat {trio['relay_mb_s']:.0f} MB/s, server RSS "
        f"MiB at {at} of the time, peak {trio['server_peak_rss_mib']:.1f}; owner peak "
        f"{trio['owner_peak_rss_mib']:.1f}, requester peak {trio['requester_peak_rss_mib']:.1f} MiB"
    )


def describe_target(found: dict[str, Any]) -> str:
    verdict = {True: "met", False: "not met", None: "not measured"}[found["met"]]
    return f"target {found['target']}: {verdict}: {found['detail']}"


# --- the command ------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = common.base_parser("benchmarks.file_relay", __doc__)
    parser.add_argument("--size-mib", type=int, help="one single-transfer size (MiB)")
    parser.add_argument("--sizes-mib", help="comma-separated single-transfer sizes in MiB")
    parser.add_argument("--repeats", type=int, default=3, help="runs per single size (median)")
    parser.add_argument("--concurrent", type=int, default=8, help="transfers at once (0: none)")
    parser.add_argument(
        "--concurrent-mib", type=int, help="size of each (default: a quarter of the largest size)"
    )
    parser.add_argument(
        "--large-mib", type=int, help="one transfer this big, RSS sampled (0: none; full run 4096)"
    )
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    if args.size_mib:
        sizes = [args.size_mib]
    elif args.sizes_mib:
        sizes = [int(x) for x in args.sizes_mib.split(",")]
    else:
        sizes = [64] if args.quick else [1024]
    full_run = not (args.quick or args.size_mib or args.sizes_mib)
    large_mib = args.large_mib if args.large_mib is not None else (4096 if full_run else 0)
    concurrent_mib = args.concurrent_mib or max(1, max(sizes) // 4)
    skipped = {}
    why = common.missing("socat")
    if why:
        skipped["socat"] = why
        say(f"skipping the socat chains: {why}")
    given = sys.argv[1:] if argv is None else argv
    results: dict[str, Any] = {
        "benchmark": "file_relay",
        "format": 2,
        "command": " ".join(["python -m benchmarks.file_relay", *given]),
        "machine": common.machine_info(),
        "skipped": skipped,
        "repeats": args.repeats,
        "rows": [],
    }
    started = time.monotonic()
    for size in sizes:
        say(f"file relay {size} MiB x {args.repeats} ...")
        row = single(size, args.repeats, socat=not why)
        results["rows"].append(row)
        print(describe_single(row), flush=True)
    if args.concurrent > 0:
        say(f"file relay {args.concurrent} x {concurrent_mib} MiB at once ...")
        results["concurrent"] = concurrent(
            args.concurrent, concurrent_mib, socat=not why, repeats=args.repeats
        )
        print(describe_concurrent(results["concurrent"]), flush=True)
    if large_mib > 0:
        say(f"file relay {large_mib} MiB, memory sampled ...")
        results["large"] = large(large_mib)
        print(describe_large(results["large"]), flush=True)
    results["targets"] = check_targets(
        results["rows"], results.get("concurrent"), results.get("large")
    )
    for found in results["targets"]:
        print(describe_target(found), flush=True)
    if args.profile and not common.pyinstrument_missing():
        report_path = common.results_dir(args.out_dir) / "profile_file_relay.txt"
        size = min(256, max(sizes))
        say(f"profiling the triochat server relaying {size} MiB with pyinstrument ...")
        results["profile"] = {
            **profile(size, report_path),
            "report": str(report_path.relative_to(args.out_dir)),
        }
    common.finish_run(args.out_dir, "file_relay", results, started, report=not args.no_report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
