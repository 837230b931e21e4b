"""File-relay throughput: one file from an owner menu client through ChatServer.py to a requester.

Runs the real programs on 127.0.0.1, times from the request to the requester's
``... verified`` line, checks the copy byte for byte (SHA-256), and reads the server's peak
RSS (VmHWM) from /proc. In the same run the same bytes also go through socat
(``socat -b 262144 TCP-LISTEN:... TCP:...``, the reference relay) into a sink that hashes and
writes them to disk as the requester does, and over one direct loopback connection (the
ceiling: ``sendfile`` into a sink that discards).

    python -m benchmarks.file_relay                  # 64 MiB and 1 GiB, writes RESULTS.md
    python -m benchmarks.file_relay --quick          # 64 MiB only
    python -m benchmarks.file_relay --size-mib 1024  # one size (--sizes-mib 64,256: several)
    python -m benchmarks.file_relay --profile        # also profile the server relaying 256 MiB

Without socat (apt-get install socat) the socat comparison is skipped, as stderr says.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from benchmarks import common
from benchmarks.common import ROOT, cpu_seconds, free_port, say, status_kib

BLOCK = 1024 * 1024
SOCAT_BUFFER = 262144


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


def wait_for_line(process: subprocess.Popen[str], needle: str, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    assert process.stdout is not None
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            raise RuntimeError(f"process ended before printing {needle!r}")
        if needle in line:
            return line.rstrip("\n")
    raise TimeoutError(needle)


def direct_copy_mbps(path: Path) -> float:
    """Reference: the same bytes over one loopback TCP connection, no framing, no checks."""
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]

        def sink() -> None:
            connection, _ = server.accept()
            with connection:
                while connection.recv(BLOCK):
                    pass

        thread = threading.Thread(target=sink)
        thread.start()
        start = time.perf_counter()
        with socket.create_connection(("127.0.0.1", port)) as client, path.open("rb") as source:
            client.sendfile(source)
        thread.join()
        elapsed = time.perf_counter() - start
    return path.stat().st_size / elapsed / 1e6


class VerifyingSink:
    """Accepts one connection, hashes and writes what arrives, like the requester does."""

    def __init__(self, target: Path) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.listener.getsockname()[1])
        self.target = target
        self.digest = ""
        self.received = 0
        self.finished = 0.0
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        self.listener.settimeout(60)
        connection, _ = self.listener.accept()
        digest = hashlib.sha256()
        buffer = bytearray(BLOCK)
        view = memoryview(buffer)
        with connection, self.target.open("wb") as out:
            while True:
                count = connection.recv_into(buffer)
                if not count:
                    break
                digest.update(view[:count])
                out.write(view[:count])
                self.received += count
        self.digest = digest.hexdigest()
        self.finished = time.perf_counter()
        self.listener.close()


def run_socat(source: Path, expected: str, scratch: Path) -> dict[str, Any]:
    """The same bytes through ``socat -b 262144`` into a verifying sink."""
    why = common.missing("socat")
    if why:
        return {"skipped": why}
    sink = VerifyingSink(scratch / "socat-copy.bin")
    port = free_port()
    process = subprocess.Popen(
        [
            "socat",
            "-b",
            str(SOCAT_BUFFER),
            f"TCP-LISTEN:{port},bind=127.0.0.1,reuseaddr",
            f"TCP:127.0.0.1:{sink.port}",
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    peak = 0
    try:
        deadline = time.monotonic() + 10
        client = None
        while client is None:
            try:
                client = socket.create_connection(("127.0.0.1", port), timeout=1)
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.02)
        start = time.perf_counter()
        sender = threading.Thread(target=_send_file, args=(client, source), daemon=True)
        sender.start()
        while sink.thread.is_alive():
            peak = max(peak, peak_rss_kib(process.pid))
            sink.thread.join(timeout=0.05)
            if time.perf_counter() - start > 900:
                raise TimeoutError("socat relay took over 15 minutes")
        sender.join(timeout=10)
        elapsed = sink.finished - start
        cpu = _cpu_when_done(process)
    finally:
        common.stop_process(process)
    copy = scratch / "socat-copy.bin"
    verified = sink.digest == expected and sink.received == source.stat().st_size
    copy.unlink(missing_ok=True)
    return {
        "seconds": elapsed,
        "mb_s": source.stat().st_size / elapsed / 1e6,
        "peak_rss_kib": peak,
        "cpu_s": cpu,
        "verified": verified,
    }


def _send_file(client: socket.socket, source: Path) -> None:
    with client, source.open("rb") as data:
        client.sendfile(data)
        client.shutdown(socket.SHUT_WR)
        while client.recv(BLOCK):
            pass


def _cpu_when_done(process: subprocess.Popen[bytes]) -> float:
    """CPU seconds of a process that is about to exit (read before it is reaped)."""
    deadline = time.monotonic() + 5
    best = 0.0
    while time.monotonic() < deadline:
        try:
            best = cpu_seconds(process.pid)
        except (OSError, IndexError):
            break
        state = Path(f"/proc/{process.pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        if state == "Z":
            break
        time.sleep(0.05)
    return best


def run(
    size_mib: int,
    source: Path | None = None,
    expected: str | None = None,
    profile_to: Path | None = None,
) -> dict[str, Any]:
    """The file through triochat (owner -> server -> requester), verified end to end.

    With ``profile_to`` the server runs under pyinstrument, whose text report lands there.
    """
    with tempfile.TemporaryDirectory() as scratch:
        owner_dir, requester_dir = Path(scratch, "owner"), Path(scratch, "requester")
        owner_dir.mkdir()
        requester_dir.mkdir()
        payload = owner_dir / "payload.bin"
        if source is not None and expected is not None:
            if _same_fs(source, owner_dir):
                os.link(source, payload)
            else:
                shutil.copy(source, payload)
        else:
            expected = make_file(payload, size_mib)
        server_port, owner_port, requester_port = free_port(), free_port(), free_port()
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        profiler = ["-m", "pyinstrument", "-r", "text", "-o", str(profile_to)] if profile_to else []
        server = subprocess.Popen(
            [
                sys.executable,
                *profiler,
                str(ROOT / "ChatServer.py"),
                str(server_port),
                "--host",
                "127.0.0.1",
                "--no-udp",
            ],
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        clients: list[subprocess.Popen[str]] = []
        try:
            wait_for_line(server, "ChatServer started", 10)
            for name, directory, port in (
                ("owner", owner_dir, owner_port),
                ("requester", requester_dir, requester_port),
            ):
                client = subprocess.Popen(
                    [
                        sys.executable,
                        str(ROOT / "ChatClient.py"),
                        "-l",
                        str(port),
                        "-p",
                        str(server_port),
                    ],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    text=True,
                    cwd=directory,
                    env=env,
                )
                clients.append(client)
                assert client.stdin is not None
                client.stdin.write(f"{name}\n")
                client.stdin.flush()
                wait_for_line(server, f"{name}: connected.", 10)
            requester = clients[1]
            assert requester.stdin is not None
            before = [cpu_seconds(p.pid) for p in (server, *clients)]
            start = time.perf_counter()
            requester.stdin.write("f\nowner\npayload.bin\n")
            requester.stdin.flush()
            line = wait_for_line(requester, "payload.bin", 900)
            elapsed = time.perf_counter() - start
            if "verified" not in line:
                raise RuntimeError(line)
            copy = requester_dir / "payload.bin"
            if sha256_of(copy) != expected:
                raise RuntimeError("copy differs from the original")
            server_peak = peak_rss_kib(server.pid)
            after = [cpu_seconds(p.pid) for p in (server, *clients)]
            cpu = {
                f"{who}_cpu_s": b - a
                for who, a, b in zip(("server", "owner", "requester"), before, after, strict=True)
            }
            relay_mbps = size_mib * BLOCK / elapsed / 1e6
            direct = direct_copy_mbps(payload)
        finally:
            for process in clients:
                common.stop_process(process, grace=2)
            common.stop_process(server, grace=60 if profile_to else 5)
    return {
        "size_mib": size_mib,
        "seconds": elapsed,
        "relay_mb_s": relay_mbps,
        "direct_mb_s": direct,
        "server_peak_rss_mib": server_peak / 1024,
        **cpu,
    }


def _same_fs(path: Path, directory: Path) -> bool:
    return path.stat().st_dev == directory.stat().st_dev


def compare(size_mib: int) -> dict[str, Any]:
    """One size through triochat, socat and a direct copy, from one source file."""
    with tempfile.TemporaryDirectory(prefix="bench-relay-") as tmp:
        scratch = Path(tmp)
        source = scratch / "source.bin"
        expected = make_file(source, size_mib)
        triochat = run(size_mib, source, expected)
        socat = run_socat(source, expected, scratch)
    row: dict[str, Any] = {"size_mib": size_mib, "triochat": triochat, "socat": socat}
    if "mb_s" in socat:
        row["ratio_vs_socat"] = triochat["relay_mb_s"] / socat["mb_s"]
    row["ratio_vs_direct"] = triochat["relay_mb_s"] / triochat["direct_mb_s"]
    return row


def describe(row: dict[str, Any]) -> str:
    trio = row["triochat"]
    socat = row["socat"]
    text = (
        f"file relay {row['size_mib']} MiB: triochat {trio['relay_mb_s']:.0f} MB/s "
        f"({trio['seconds']:.2f} s, server peak RSS {trio['server_peak_rss_mib']:.1f} MiB, "
        f"server CPU {trio['server_cpu_s']:.2f} s), direct copy {trio['direct_mb_s']:.0f} MB/s"
    )
    if "mb_s" in socat:
        text += (
            f", socat {socat['mb_s']:.0f} MB/s (peak RSS {socat['peak_rss_kib'] / 1024:.1f} MiB, "
            f"CPU {socat['cpu_s']:.2f} s, verified {socat['verified']}); "
            f"triochat/socat {row['ratio_vs_socat']:.2f}"
        )
    else:
        text += f", socat skipped: {socat.get('skipped')}"
    return text


def main(argv: list[str] | None = None) -> int:
    parser = common.base_parser("benchmarks.file_relay", __doc__)
    parser.add_argument("--size-mib", type=int, help="one size (MiB) instead of 64 and 1024")
    parser.add_argument("--sizes-mib", help="comma-separated sizes in MiB")
    args = parser.parse_args(argv)
    if args.size_mib:
        sizes = [args.size_mib]
    elif args.sizes_mib:
        sizes = [int(x) for x in args.sizes_mib.split(",")]
    else:
        sizes = [64] if args.quick else [64, 1024]
    skipped = {}
    why = common.missing("socat")
    if why:
        skipped["socat"] = why
        say(f"skipping the socat comparison: {why}")
    results: dict[str, Any] = {
        "benchmark": "file_relay",
        "command": "python -m benchmarks.file_relay" + (" --quick" if args.quick else ""),
        "machine": common.machine_info(),
        "skipped": skipped,
        "rows": [],
    }
    started = time.monotonic()
    for size in sizes:
        say(f"file relay {size} MiB ...")
        row = compare(size)
        results["rows"].append(row)
        print(describe(row), flush=True)
    if args.profile and not common.pyinstrument_missing():
        report_path = common.results_dir(args.out_dir) / "profile_file_relay.txt"
        say("profiling the triochat server relaying 256 MiB with pyinstrument ...")
        profiled = run(256, profile_to=report_path)
        results["profile"] = {
            "size_mib": 256,
            "report": str(report_path.relative_to(args.out_dir)),
            "relay_mb_s_under_profiler": profiled["relay_mb_s"],
        }
    common.finish_run(args.out_dir, "file_relay", results, started, report=not args.no_report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
