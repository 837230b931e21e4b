"""Soak: mixed dialects, joins and leaves, chat and file transfers against one ChatServer.py.

For ``--seconds`` it keeps a room busy on 127.0.0.1 and then checks what a chat server must
never do: lose, duplicate or reorder a message for a member that stayed, fail a transfer, or
keep memory it no longer needs.

- Watchers (one line member, one JSON member, one UDP member) stay for the whole run and
  must receive every message any churner sent, in each sender's order.
- Churners join in a random dialect (line, JSON, UDP), send a few tokened messages, leave.
- Two menu clients swap a file back and forth; every transfer must end ``verified``.
- Bad input (garbage, invalid UTF-8, over-long lines, malformed JSON, resets) is mixed in.
- Server RSS is read at the start (after the watchers joined) and after everything left.

    python -m benchmarks.soak --seconds 60
    python -m benchmarks.soak --seconds 60 --results   # also into benchmarks/RESULTS.md

Writes a summary to stdout and, with ``--results``, into benchmarks/RESULTS.md between the
``<!-- soak:begin -->`` and ``<!-- soak:end -->`` markers. Exit status 1 when something was
lost, duplicated or reordered, or a transfer failed.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import socket
import struct
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import trio

from benchmarks import common
from benchmarks.common import BENCH_DIR, HOST, ROOT, free_port, status_kib

MAX_CHURNERS_AT_ONCE = 20
MESSAGES_PER_CHURNER = 5
FILE_BYTES = 3 * 1024 * 1024


@dataclass
class Tally:
    """What was sent and what each watcher saw."""

    sent: dict[str, int] = field(default_factory=dict)  # sender -> messages sent
    seen: dict[str, dict[str, list[int]]] = field(default_factory=dict)  # watcher -> sender -> seqs
    joins: int = 0
    bad_inputs: int = 0
    transfers_ok: int = 0
    transfers_failed: int = 0

    def record(self, watcher: str, text: str) -> None:
        """Note a received ``<sender>#<seq>`` token, behind any prefix."""
        token = text.rsplit(" ", 1)[-1]
        sender, _, seq = token.partition("#")
        if seq.isdigit() and sender.startswith("c"):
            self.seen.setdefault(watcher, defaultdict(list))[sender].append(int(seq))


async def read_lines(stream: trio.SocketStream, on_line: Callable[[str], None]) -> None:
    buffer = b""
    while data := await stream.receive_some(65536):
        buffer += data
        *lines, buffer = buffer.split(b"\n")
        for line in lines:
            on_line(line.decode("utf-8", "replace"))


async def line_watcher(port: int, tally: Tally, ready: trio.Event) -> None:
    stream = await trio.open_tcp_stream(HOST, port)
    await stream.send_all(b"wline\n")
    ready.set()
    await read_lines(stream, lambda line: tally.record("wline", line))


async def json_watcher(port: int, tally: Tally, ready: trio.Event) -> None:
    stream = await trio.open_tcp_stream(HOST, port)
    await stream.send_all(json.dumps({"type": "nickname", "nickname": "wjson"}).encode() + b"\n")
    ready.set()

    def on_line(line: str) -> None:
        obj = json.loads(line)
        if obj.get("type") == "broadcast":
            tally.record("wjson", obj["message"])

    await read_lines(stream, on_line)


async def udp_watcher(port: int, tally: Tally, ready: trio.Event) -> None:
    sock = trio.socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    await sock.bind((HOST, 0))
    await sock.sendto(b"GREETING wudp", (HOST, port))
    ready.set()
    while True:
        data, _ = await sock.recvfrom(65536)
        text = data.decode("utf-8", "replace")
        if text.startswith("INCOMING "):
            tally.record("wudp", text)


async def churner(port: int, name: str, tally: Tally) -> None:
    """Join in a random dialect, send tokened messages, leave."""
    dialect = random.choice(("line", "json", "udp"))
    tally.joins += 1
    texts = [f"soak message {name}#{seq}" for seq in range(MESSAGES_PER_CHURNER)]
    if dialect == "udp":
        sock = trio.socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        await sock.bind((HOST, 0))
        await sock.sendto(f"GREETING {name}".encode(), (HOST, port))
        await trio.sleep(0.05)  # a datagram has no handshake; give the greeting its turn
        for text in texts:
            await sock.sendto(f"MESSAGE {text}".encode(), (HOST, port))
        await sock.sendto(b"LEAVE", (HOST, port))
        sock.close()
    else:
        stream = await trio.open_tcp_stream(HOST, port)
        async with stream:
            if dialect == "line":
                await stream.send_all(
                    f"{name}\n".encode() + "".join(t + "\n" for t in texts).encode()
                )
            else:
                objects = [{"type": "nickname", "nickname": name, "clientID": name}] + [
                    {"type": "message", "nickname": name, "message": t} for t in texts
                ]
                # Back to back, no newlines: the way this assignment's clients send.
                await stream.send_all(b"".join(json.dumps(o).encode() for o in objects))
            await stream.send_eof()
            with trio.move_on_after(5):
                while await stream.receive_some(65536):
                    pass
    tally.sent[name] = MESSAGES_PER_CHURNER


async def bad_input(port: int, tally: Tally) -> None:
    """One connection of nonsense: garbage, invalid UTF-8, a huge line, broken JSON, a reset."""
    kind = random.choice(("garbage", "utf8", "huge", "json", "reset"))
    tally.bad_inputs += 1
    stream = await trio.open_tcp_stream(HOST, port)
    try:
        if kind == "garbage":
            await stream.send_all(os.urandom(4096))
        elif kind == "utf8":
            await stream.send_all(b"bad\xffname\n\xfe\xfe\n")
        elif kind == "huge":
            await stream.send_all(b"x" * 70_000 + b"\n")
        elif kind == "json":
            await stream.send_all(b'{"type": "nickname", "nickname": ')
        else:
            stream.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            await stream.send_all(b"resetter\nhalf a li")
    finally:
        await trio.aclose_forcefully(stream)


class MenuClient:
    """A real menu-client process, driven over stdin, its stdout read line by line."""

    def __init__(self, name: str, directory: Path, server_port: int) -> None:
        self.process = subprocess.Popen(
            [
                sys.executable,
                str(ROOT / "ChatClient.py"),
                "-l",
                str(free_port()),
                "-p",
                str(server_port),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            cwd=directory,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
            text=True,
        )
        self.send(name)

    def send(self, *lines: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write("".join(line + "\n" for line in lines))
        self.process.stdin.flush()

    async def wait_for(self, needle: str, within: float) -> str:
        assert self.process.stdout is not None
        stdout = self.process.stdout
        with trio.fail_after(within):
            while True:
                line = await trio.to_thread.run_sync(stdout.readline)
                if not line:
                    raise RuntimeError("menu client ended")
                if needle in line:
                    return line.strip()


async def transfers(port: int, scratch: Path, tally: Tally, stop: trio.Event) -> None:
    dirs = [scratch / "m1", scratch / "m2"]
    for directory in dirs:
        directory.mkdir()
    payload = os.urandom(FILE_BYTES)
    (dirs[0] / "soak.bin").write_bytes(payload)
    digest = hashlib.sha256(payload).hexdigest()
    clients = [MenuClient(f"menu{i}", d, port) for i, d in enumerate(dirs)]
    try:
        await trio.sleep(1)  # both joined (the server accepts well within this)
        holder = 0
        while not stop.is_set():
            requester = 1 - holder
            clients[requester].send("f", f"menu{holder}", "soak.bin")
            line = await clients[requester].wait_for("soak.bin", 60)
            copy = dirs[requester] / "soak.bin"
            if "verified" in line and hashlib.sha256(copy.read_bytes()).hexdigest() == digest:
                tally.transfers_ok += 1
                (dirs[holder] / "soak.bin").unlink()
                holder = requester
            else:
                tally.transfers_failed += 1
    finally:
        for client in clients:
            client.process.kill()
            client.process.wait()


def start_server(port: int) -> subprocess.Popen[bytes]:
    """ChatServer.py as a child process we own (stopped by its handle in the caller)."""
    return subprocess.Popen(
        [sys.executable, str(ROOT / "ChatServer.py"), str(port), "--host", HOST],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


async def soak(seconds: float) -> dict[str, object]:
    port = free_port()
    server = start_server(port)
    tally = Tally()
    try:
        await trio.sleep(0.5)
        with tempfile.TemporaryDirectory() as scratch:
            async with trio.open_nursery() as nursery:
                for watcher in (line_watcher, json_watcher, udp_watcher):
                    ready = trio.Event()
                    nursery.start_soon(watcher, port, tally, ready)
                    await ready.wait()
                await trio.sleep(0.5)
                baseline_kib = status_kib(server.pid, "VmRSS")
                stop = trio.Event()
                nursery.start_soon(transfers, port, Path(scratch), tally, stop)
                limiter = trio.CapacityLimiter(MAX_CHURNERS_AT_ONCE)
                deadline = trio.current_time() + seconds
                count = 0
                async with trio.open_nursery() as load:
                    while trio.current_time() < deadline:
                        count += 1
                        name = f"c{count}"

                        async def one(name: str = name) -> None:
                            async with limiter:
                                await churner(port, name, tally)

                        load.start_soon(one)
                        if count % 10 == 0:
                            load.start_soon(bad_input, port, tally)
                        await trio.sleep(0.01)
                stop.set()
                await trio.sleep(2)  # the last UDP datagrams and broadcasts settle
                peak_kib = status_kib(server.pid, "VmHWM")
                end_kib = status_kib(server.pid, "VmRSS")
                nursery.cancel_scope.cancel()
    finally:
        server.terminate()
        server.wait(5)
    problems: dict[str, int] = {"lost": 0, "duplicated": 0, "reordered": 0}
    for watcher_name in ("wline", "wjson", "wudp"):
        seen: dict[str, list[int]] = tally.seen.get(watcher_name) or {}
        for sender, count_sent in tally.sent.items():
            got = seen.get(sender, [])
            problems["lost"] += len(set(range(count_sent)) - set(got))
            problems["duplicated"] += len(got) - len(set(got))
            problems["reordered"] += int(got != sorted(got))
    return {
        "seconds": seconds,
        "joins": tally.joins,
        "messages": sum(tally.sent.values()),
        "deliveries_checked": 3 * sum(tally.sent.values()),
        "bad_inputs": tally.bad_inputs,
        "transfers_ok": tally.transfers_ok,
        "transfers_failed": tally.transfers_failed,
        "baseline_rss_mib": baseline_kib / 1024,
        "end_rss_mib": end_kib / 1024,
        "peak_rss_mib": peak_kib / 1024,
        **problems,
    }


def as_markdown(result: dict[str, object]) -> str:
    rows = "\n".join(
        f"| {key} | {value:.1f} |" if isinstance(value, float) else f"| {key} | {value} |"
        for key, value in result.items()
    )
    return (
        f"Command: `python -m benchmarks.soak --seconds {result['seconds']:.0f}` "
        f"({time.strftime('%Y-%m-%d')}, 2-core machine)\n\n| figure | value |\n|---|---|\n{rows}\n"
    )


def write_results(markdown: str) -> None:
    path = BENCH_DIR / "RESULTS.md"
    text = path.read_text() if path.exists() else "# Benchmark results\n"
    begin, end = "<!-- soak:begin -->", "<!-- soak:end -->"
    block = f"{begin}\n## Soak\n\n{markdown}{end}"
    if begin in text and end in text:
        text = text[: text.index(begin)] + block + text[text.index(end) + len(end) :]
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    path.write_text(text)


def main() -> None:
    parser = common.doc_parser("benchmarks.soak", __doc__)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--results", action="store_true", help="update benchmarks/RESULTS.md")
    args = parser.parse_args()
    result = trio.run(soak, args.seconds)
    markdown = as_markdown(result)
    print(markdown)
    if args.results:
        write_results(markdown)
    clean = result["lost"] == result["duplicated"] == result["reordered"] == 0
    sys.exit(0 if clean and result["transfers_failed"] == 0 else 1)


if __name__ == "__main__":
    main()
