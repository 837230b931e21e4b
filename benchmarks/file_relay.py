"""File-relay throughput: one file from an owner menu client through ChatServer.py to a requester.

Runs the real programs on 127.0.0.1, times from the request to the requester's
``... verified`` line, checks the copy byte for byte (SHA-256), and reads the server's peak
RSS (VmHWM) from /proc. A direct loopback copy of the same bytes in this script is the
reference the relay is measured against.

    python benchmarks/file_relay.py --size-mib 1024
"""

from __future__ import annotations

import argparse
import hashlib
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BLOCK = 1024 * 1024


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


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


def peak_rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


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


def run(size_mib: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as scratch:
        owner_dir, requester_dir = Path(scratch, "owner"), Path(scratch, "requester")
        owner_dir.mkdir()
        requester_dir.mkdir()
        source = owner_dir / "payload.bin"
        expected = make_file(source, size_mib)
        server_port, owner_port, requester_port = free_port(), free_port(), free_port()
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        server = subprocess.Popen(
            [sys.executable, str(ROOT / "ChatServer.py"), str(server_port)],
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
            start = time.perf_counter()
            requester.stdin.write("f\nowner\npayload.bin\n")
            requester.stdin.flush()
            line = wait_for_line(requester, "payload.bin", 600)
            elapsed = time.perf_counter() - start
            if "verified" not in line:
                raise RuntimeError(line)
            copy = requester_dir / "payload.bin"
            if sha256_of(copy) != expected:
                raise RuntimeError("copy differs from the original")
            server_peak = peak_rss_kib(server.pid)
            cpu = {
                "server_cpu_s": cpu_seconds(server.pid),
                "owner_cpu_s": cpu_seconds(clients[0].pid),
                "requester_cpu_s": cpu_seconds(clients[1].pid),
            }
            relay_mbps = size_mib * BLOCK / elapsed / 1e6
            direct = direct_copy_mbps(source)
        finally:
            for process in [*clients, server]:
                process.kill()
                process.wait()
    return {
        "size_mib": size_mib,
        "seconds": elapsed,
        "relay_mb_s": relay_mbps,
        "direct_mb_s": direct,
        "server_peak_rss_mib": server_peak / 1024,
        **cpu,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=64)
    args = parser.parse_args()
    result = run(args.size_mib)
    print(
        f"file relay {result['size_mib']} MiB: {result['seconds']:.2f} s, "
        f"{result['relay_mb_s']:.0f} MB/s through the relay (direct loopback copy "
        f"{result['direct_mb_s']:.0f} MB/s, "
        f"ratio {result['relay_mb_s'] / result['direct_mb_s']:.2f}); "
        f"server peak RSS {result['server_peak_rss_mib']:.1f} MiB; SHA-256 verified; "
        f"CPU s: server {result['server_cpu_s']:.2f}, owner {result['owner_cpu_s']:.2f}, "
        f"requester {result['requester_cpu_s']:.2f}"
    )


if __name__ == "__main__":
    main()
