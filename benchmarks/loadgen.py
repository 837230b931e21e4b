"""Load generator worker: many chat clients in one process, on plain non-blocking sockets.

Started as ``python -m benchmarks.loadgen`` by ``benchmarks.fanout`` and ``benchmarks.idle``
(one or more workers per run); not a benchmark of its own. One ``selectors`` loop drives all
of this worker's clients. The orchestrator talks to it in lines:

    stdin (orchestrator -> worker)     stdout (worker -> orchestrator, one JSON object a line)
    1. the JSON config
    2. connect                         {"event": "connected", ...}, then "ready" / "not_ready"
    3. go                              {"event": "done", ...} with every count of the run
    4. drain (runs with slow clients)  {"event": "drained", "slow": [...]}
    5. quit (or end of input)          the worker exits

Every chat message carries a token ``@@<sender>.<seq>.<send ns>@@`` (CLOCK_MONOTONIC, shared by
all processes on the machine) that receivers find behind any prefix a server adds (``c7: ``,
``<user#7> ``, ``:c7!~c7@127.0.0.1 PRIVMSG #bench :``). Receivers count distinct, duplicated,
out-of-order and missing tokens per sender and keep every one-way latency.

Phases:
1. on ``connect``: connect every client and register it (name line, IRC NICK/USER/JOIN,
   or nothing for ncat);
2. probe: each worker's first client sends a probe token every 0.3 s until every client of
   this worker has seen a probe from every worker (so every member is registered); report
   ``ready``;
3. on ``go``: senders flood (at most ``window`` messages in flight, i.e. sent but not yet seen
   by one receiver of this worker) or send at a fixed rate; report ``done`` when every open
   receiver has everything, or nothing arrived for ``idle_timeout`` s, or at ``deadline``;
4. on ``drain``: read what never-reading clients were sent, to see whether the server cut them
   off (end of stream) or kept them.
"""

from __future__ import annotations

import errno
import json
import os
import queue
import re
import resource
import selectors
import socket
import subprocess
import sys
import threading
import time
from array import array
from pathlib import Path
from typing import Any

from benchmarks import common

TOKEN = re.compile(rb"@@(\d+)\.(\d+)\.(\d+)@@")
PROBE = re.compile(rb"@@P(\d+)@@")
RECV_SIZE = 256 * 1024
BUILD_BATCH = 64
OUTBUF_LOW = 16 * 1024
PROBE_INTERVAL = 0.3
RETRY_CONNECT_S = 0.1
CHECK_INTERVAL = 0.01
"""Least seconds between the O(clients) checks (everyone ready? everything received?); the
interval grows with the number of clients so the checks stay a small share of the work."""
IRC_CHANNEL = b"#bench"


def now_ns() -> int:
    return time.monotonic_ns()


def emit(event: str, **fields: Any) -> None:
    """One JSON report line on stdout."""
    sys.stdout.write(json.dumps({"event": event, **fields}) + "\n")
    sys.stdout.flush()


WS_PING = b"\x89\x08triochat"
"""The keep-alive ping triochat sends a quiet page (``WebSocketServerCodec.ping``)."""
WS_PONG = b"\x8a\x88\x00\x00\x00\x00triochat"
"""Its answer, masked with the all-zero key."""


def ws_frame(payload: bytes) -> bytes:
    """A client text frame. Clients must mask; the all-zero key is a valid one and leaves the
    payload as it is, so the generator pays nothing for masking (the server still unmasks)."""
    size = len(payload)
    if size < 126:
        header = bytes((0x81, 0x80 | size))
    elif size < 1 << 16:
        header = bytes((0x81, 0x80 | 126)) + size.to_bytes(2, "big")
    else:
        header = bytes((0x81, 0x80 | 127)) + size.to_bytes(8, "big")
    return header + b"\x00\x00\x00\x00" + payload


class Dialect:
    """How one kind of server wants clients to register and to send a message.

    ``ws`` is triochat's page over its WebSocket: an upgrade request, then one text frame per
    line. The server sends each chat message as the line dialect's line in a text frame, so
    receivers cut the stream after the last newline as for lines (a frame header byte that
    happens to be a newline lies between frames: the tokens before it are whole).
    """

    def __init__(self, kind: str) -> None:
        if kind not in ("line", "ncat", "irc", "ws"):
            raise ValueError(kind)
        self.kind = kind
        self.end = b"\n"

    @staticmethod
    def for_run(kind: str) -> tuple[Dialect, Dialect]:
        """The (readers', senders') dialects of a run of ``kind``.

        ``ws``: readers join over the WebSocket and senders as line members, so the server's
        CPU per delivery is the cost of fan-out to browsers and not of parsing the senders'
        frames (wsproto, per message); ``ws-all``: everyone over the WebSocket.
        """
        if kind == "ws":
            return Dialect("ws"), Dialect("line")
        if kind == "ws-all":
            return Dialect("ws"), Dialect("ws")
        return Dialect(kind), Dialect(kind)

    def register(self, name: str) -> bytes:
        if self.kind == "line":
            return name.encode() + b"\n"
        if self.kind == "ws":
            return (
                b"GET /ws HTTP/1.1\r\nHost: bench\r\nUpgrade: websocket\r\n"
                b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                b"Sec-WebSocket-Version: 13\r\n\r\n" + ws_frame(name.encode())
            )
        if self.kind == "irc":
            return (
                f"NICK {name}\r\nUSER {name} 0 * :bench\r\n".encode()
                + b"JOIN "
                + IRC_CHANNEL
                + b"\r\n"
            )
        return b""

    def message(self, payload: bytes) -> bytes:
        if self.kind == "ws":
            return ws_frame(payload)
        if self.kind == "irc":
            return b"PRIVMSG " + IRC_CHANNEL + b" :" + payload + b"\r\n"
        return payload + b"\n"


class Client:
    """One connection: what it sent, what it received, and how that compares to the plan."""

    __slots__ = (
        "cid",
        "closed",
        "closed_reason",
        "dialect",
        "distinct",
        "events",
        "expected",
        "last_seen",
        "maxseq",
        "name",
        "outbuf",
        "probe_mask",
        "reads",
        "sender",
        "sent",
        "sock",
        "tail",
        "text_tail",
    )

    def __init__(self, cid: int, sender: bool, reads: bool) -> None:
        self.cid = cid
        self.name = f"c{cid}"
        self.sender = sender
        self.reads = reads
        self.sock: socket.socket | None = None
        self.outbuf = bytearray()
        self.tail = b""
        self.text_tail = b""
        self.sent = 0
        self.closed = False
        self.closed_reason = ""
        self.dialect: Dialect | None = None
        self.probe_mask = 0
        self.last_seen: dict[int, bytearray] = {}
        self.maxseq: dict[int, int] = {}
        self.expected = 0
        self.distinct = 0
        self.events = 0


class Worker:
    """All of one worker's clients and the statistics they collect."""

    def __init__(self, config: dict[str, Any], commands: Commands) -> None:
        self.config = config
        self.commands = commands
        self.index: int = config["worker"]
        self.workers: int = config["workers"]
        self.address = (config["host"], int(config["port"]))
        self.dialect, self.sender_dialect = Dialect.for_run(config["dialect"])
        self.messages: int = int(config.get("messages", 0))
        self.size: int = int(config.get("size", 100))
        self.window: int = int(config.get("window", 0))
        self.rate: float = float(config.get("rate", 0.0))
        self.idle_timeout: float = float(config.get("idle_timeout", 3.0))
        self.deadline: float = float(config.get("deadline", 120.0))
        self.all_senders: list[int] = list(config.get("senders", []))
        self.sender_phase: dict[int, float] = {
            sid: i / max(1, len(self.all_senders)) for i, sid in enumerate(self.all_senders)
        }
        self.clients = [
            Client(c["id"], bool(c["sender"]), bool(c["reads"])) for c in config["clients"]
        ]
        self.local_senders = [c for c in self.clients if c.sender]
        for client in self.clients:
            client.dialect = self.sender_dialect if client.sender else self.dialect
        self.by_fd: dict[int, Client] = {}
        self.selector = selectors.DefaultSelector()
        self.latencies = array("q")
        self.duplicates = 0
        self.out_of_order = 0
        self.invalid = 0
        self.echoed = 0
        self.first_send_ns = 0
        self.last_recv_ns = 0
        self.last_progress = time.monotonic()
        self.acked: dict[int, int] = {}
        self.ack_client: dict[int, Client | None] = {}
        self.prober: Client | None = None
        self.probing = False
        self.probe_seq = 0
        self.next_probe = 0.0
        self.probe_interval = float(config.get("probe_interval", PROBE_INTERVAL))
        self.active = False
        self.go_ns = 0
        self.go_time = 0.0
        self.end_reason = "?"
        self.failed_connects: list[str] = []
        self.connect_retries = 0
        self.filler = b"x" * max(0, self.size)

    # --- connecting ---------------------------------------------------------------------------

    def connect_all(self) -> None:
        """Connect and register every client, a bounded number at a time.

        Connections already made are read meanwhile (ncat announces every join to everyone,
        and a server that blocks on a full client buffer would stall the whole setup). A
        connect still unanswered after ``RETRY_CONNECT_S`` starts again: servers with a
        listen backlog of 10 (ncat, ngIRCd) see SYNs dropped on this kernel now and then,
        and the kernel would wait a whole second before sending the SYN again.
        """
        timeout = float(self.config.get("connect_timeout", 10.0))
        slow_rcvbuf = int(self.config.get("slow_rcvbuf", 4096))
        deadline = time.monotonic() + float(self.config.get("connect_deadline", 120.0))
        give_up_after = int(self.config.get("max_consecutive_failures", 20))
        default_parallel = 32 if self.dialect.kind == "line" else 4
        parallel = int(self.config.get("parallel_connects", default_parallel))
        waiting = list(reversed(self.clients))
        first_try: dict[int, float] = {}
        connecting: dict[int, tuple[Client, float]] = {}
        consecutive = 0
        while waiting or connecting:
            now = time.monotonic()
            while waiting and len(connecting) < parallel:
                client = waiting.pop()
                started = first_try.setdefault(client.cid, now)
                if now > deadline or consecutive >= give_up_after:
                    why = "deadline" if consecutive < give_up_after else "too many failures"
                    self._never_connected(client, f"connect phase {why}")
                    continue
                if now - started > timeout:
                    self._never_connected(client, "connect timed out")
                    consecutive += 1
                    continue
                sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                if not client.reads:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, slow_rcvbuf)
                sock.setblocking(False)
                error = sock.connect_ex(self.address)
                if error not in (0, errno.EINPROGRESS):
                    sock.close()
                    self._never_connected(client, os.strerror(error))
                    consecutive += 1
                    continue
                client.sock = sock
                connecting[sock.fileno()] = (client, now)
                self.selector.register(sock, selectors.EVENT_WRITE, client)
                client.events = selectors.EVENT_WRITE
            for key, mask in self.selector.select(0.01 if connecting else 0.05):
                client = key.data
                fd = key.fd
                if fd in connecting:
                    del connecting[fd]
                    if self._finish_connect(client):
                        consecutive = 0
                    else:
                        consecutive += 1
                elif mask & selectors.EVENT_READ:
                    self._on_readable(client, now_ns())
                elif mask & selectors.EVENT_WRITE:
                    self._flush(client)
            now = time.monotonic()
            for fd, (client, attempt_started) in list(connecting.items()):
                if now - attempt_started > RETRY_CONNECT_S:
                    del connecting[fd]
                    self._drop(client)
                    self.connect_retries += 1
                    waiting.append(client)

    def _finish_connect(self, client: Client) -> bool:
        sock = client.sock
        assert sock is not None
        error = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if error:
            self._drop(client)
            self._never_connected(client, os.strerror(error))
            return False
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.by_fd[sock.fileno()] = client
        assert client.dialect is not None
        client.outbuf += client.dialect.register(client.name)
        self._flush(client)
        return True

    def _drop(self, client: Client) -> None:
        if client.sock is not None:
            if client.events:
                self.selector.unregister(client.sock)
                client.events = 0
            client.sock.close()
            client.sock = None

    def _never_connected(self, client: Client, why: str) -> None:
        self.failed_connects.append(f"{client.name}: {why}")
        client.closed = True
        client.closed_reason = "never connected"

    def _plan(self) -> None:
        for client in self.clients:
            if client.reads and not client.closed:
                self.prober = client
                break
        for client in self.clients:
            if client.reads:
                client.expected = sum(
                    self.messages for sid in self.all_senders if sid != client.cid
                )
        for client in self.clients:
            if client.sender:
                self.acked[client.cid] = -1
                self.ack_client[client.cid] = self._pick_ack(client)

    def _pick_ack(self, sender: Client) -> Client | None:
        for client in self.clients:
            if client.reads and not client.closed and client is not sender:
                return client
        return None

    # --- the loop -----------------------------------------------------------------------------

    def run(self) -> None:
        # Workers connect one after another (the orchestrator says when): servers with a
        # short listen backlog drop SYNs when several processes connect at once.
        if self.commands.next_line() != "connect":
            return
        self.connect_all()
        self._plan()
        emit(
            "connected",
            worker=self.index,
            clients=len(self.clients),
            failed=len(self.failed_connects),
            retries=self.connect_retries,
            failures=self.failed_connects[:3] + self.failed_connects[-2:],
        )
        self.selector.register(sys.stdin.fileno(), selectors.EVENT_READ, None)
        probe = bool(self.config.get("probe", True))
        ready_timeout = float(self.config.get("ready_timeout", 60.0))
        self.probing = probe
        ready_reported = not probe
        if not probe:
            emit("ready", worker=self.index, ready=0, of=0)
        ready_deadline = time.monotonic() + ready_timeout
        hard_deadline = time.monotonic() + ready_timeout + self.deadline + 600
        next_check = 0.0
        check_interval = max(CHECK_INTERVAL, len(self.clients) * 20e-6)
        while True:
            if time.monotonic() > hard_deadline:
                emit("error", worker=self.index, reason="hard deadline")
                return
            events = self.selector.select(0.002 if self.active and self.rate > 0 else 0.05)
            stamp = now_ns()
            for key, mask in events:
                client = key.data
                if client is None:
                    for command in self.commands.available():
                        if command == "quit":
                            return
                        if command == "go":
                            self._start()
                        elif command == "drain":
                            self.drain()
                    continue
                if mask & selectors.EVENT_READ:
                    self._on_readable(client, stamp)
                if mask & selectors.EVENT_WRITE and not client.closed:
                    self._flush(client)
            tick = time.monotonic()
            checking = tick >= next_check
            if checking:
                next_check = tick + check_interval
            if self.probing:
                self._probe()
                if not ready_reported and checking:
                    ready, of = self._ready_count()
                    if ready == of:
                        ready_reported = True
                        emit("ready", worker=self.index, ready=ready, of=of)
                    elif time.monotonic() > ready_deadline:
                        ready_reported = True
                        emit("not_ready", worker=self.index, ready=ready, of=of)
            if self.active:
                self._send_more()
                if checking and self._finished():
                    self.active = False
                    self._report()

    # --- probing ------------------------------------------------------------------------------

    def _needed_mask(self, client: Client) -> int:
        mask = (1 << self.workers) - 1
        if client is self.prober:
            mask &= ~(1 << self.index)
        return mask

    def _ready_count(self) -> tuple[int, int]:
        ready = of = 0
        for client in self.clients:
            if not client.reads or client.closed:
                continue
            of += 1
            needed = self._needed_mask(client)
            if client.probe_mask & needed == needed:
                ready += 1
        return ready, of

    def _probe(self) -> None:
        now = time.monotonic()
        if self.prober is None or self.prober.closed or now < self.next_probe:
            return
        self.next_probe = now + self.probe_interval
        self.probe_seq += 1
        payload = b"@@P%d@@ probe %d" % (self.index, self.probe_seq)
        assert self.prober.dialect is not None
        self._queue(self.prober, self.prober.dialect.message(payload))

    # --- sending ------------------------------------------------------------------------------

    def _start(self) -> None:
        self.probing = False
        self.active = True
        self.go_ns = now_ns()
        self.go_time = time.monotonic()
        self.last_progress = self.go_time

    def _queue(self, client: Client, data: bytes) -> None:
        if client.closed or client.sock is None:
            return
        client.outbuf += data
        self._flush(client)

    def _flush(self, client: Client) -> None:
        sock = client.sock
        if sock is None:
            return
        if client.outbuf:
            try:
                sent = sock.send(client.outbuf)
            except BlockingIOError:
                sent = 0
            except OSError as error:
                self._close(client, f"send failed: {error!r}")
                return
            if sent:
                del client.outbuf[:sent]
                self.last_progress = time.monotonic()
        self._set_events(client)

    def _set_events(self, client: Client) -> None:
        """Register the socket for reading (readers) and for writing (while output waits)."""
        sock = client.sock
        if sock is None:
            return
        wanted = (selectors.EVENT_READ if client.reads else 0) | (
            selectors.EVENT_WRITE if client.outbuf else 0
        )
        if wanted == client.events:
            return
        if client.events == 0:
            self.selector.register(sock, wanted, client)
        elif wanted == 0:
            self.selector.unregister(sock)
        else:
            self.selector.modify(sock, wanted, client)
        client.events = wanted

    def _build(self, client: Client, count: int) -> None:
        stamp = now_ns()
        if not self.first_send_ns:
            self.first_send_ns = stamp
        assert client.dialect is not None
        message = client.dialect.message
        out = client.outbuf
        cid = client.cid
        size = self.size
        for seq in range(client.sent, client.sent + count):
            token = b"@@%d.%d.%d@@" % (cid, seq, stamp)
            out += message(token + self.filler[: max(0, size - len(token))])
        client.sent += count

    def _send_more(self) -> None:
        if self.rate > 0:
            self._send_paced()
            return
        for client in self.local_senders:
            if client.closed or client.sent >= self.messages:
                continue
            if len(client.outbuf) >= OUTBUF_LOW:
                continue
            room = BUILD_BATCH
            if self.window:
                ack = self.ack_client.get(client.cid)
                if ack is not None and ack.closed:
                    ack = self.ack_client[client.cid] = self._pick_ack(client)
                if ack is not None:
                    in_flight = client.sent - (self.acked[client.cid] + 1)
                    room = min(room, self.window - in_flight)
            count = min(room, self.messages - client.sent)
            if count > 0:
                self._build(client, count)
                self._flush(client)

    def _send_paced(self) -> None:
        now = time.monotonic()
        elapsed = now - self.go_time
        for client in self.local_senders:
            if client.closed or client.sent >= self.messages:
                continue
            phase = self.sender_phase.get(client.cid, 0.0) / self.rate
            if elapsed < phase:
                continue
            due = min(int((elapsed - phase) * self.rate) + 1, self.messages)
            if due > client.sent:
                self._build(client, due - client.sent)
                self._flush(client)

    # --- receiving ----------------------------------------------------------------------------

    def _on_readable(self, client: Client, stamp: int) -> None:
        sock = client.sock
        if sock is None:
            return
        try:
            data = sock.recv(RECV_SIZE)
        except BlockingIOError:
            return
        except OSError as error:
            self._close(client, f"receive failed: {error!r}")
            return
        if not data:
            self._close(client, "closed by server")
            return
        if client.tail:
            data = client.tail + data
        dialect = client.dialect
        assert dialect is not None
        cut = data.rfind(dialect.end) + 1
        client.tail = data[cut:]
        if cut == 0:
            return
        client.text_tail = data[max(0, cut - 300) : cut]
        if self.probing or not self.active:
            for match in PROBE.findall(data, 0, cut):
                client.probe_mask |= 1 << int(match)
        if self.dialect.kind == "irc" and b"PING" in data:
            self._pong(client, data[:cut])
        if dialect.kind == "ws" and WS_PING in data:
            self._queue(client, WS_PONG)
        found = TOKEN.findall(data, 0, cut)
        if not found:
            return
        self.last_recv_ns = stamp
        self.last_progress = time.monotonic()
        latencies = self.latencies
        last_seen = client.last_seen
        maxseq = client.maxseq
        messages = self.messages
        acked = self.acked
        ack_for = [sid for sid, ack in self.ack_client.items() if ack is client]
        distinct = 0
        own = client.cid
        for sid_b, seq_b, ts_b in found:
            sid = int(sid_b)
            seq = int(seq_b)
            if sid == own:
                self.echoed += 1
                continue
            if seq >= messages:
                self.invalid += 1
                continue
            seen = last_seen.get(sid)
            if seen is None:
                seen = last_seen[sid] = bytearray(messages)
                maxseq[sid] = -1
            if seen[seq]:
                self.duplicates += 1
                continue
            seen[seq] = 1
            distinct += 1
            latencies.append(stamp - int(ts_b))
            if seq < maxseq[sid]:
                self.out_of_order += 1
            else:
                maxseq[sid] = seq
        client.distinct += distinct
        for sid in ack_for:
            top = maxseq.get(sid, -1)
            if top > acked[sid]:
                acked[sid] = top

    def _pong(self, client: Client, data: bytes) -> None:
        for line in data.split(b"\n"):
            line = line.strip()
            if line.startswith(b"PING"):
                self._queue(client, b"PONG" + line[4:] + b"\r\n")

    def _close(self, client: Client, reason: str) -> None:
        if client.closed:
            return
        client.closed = True
        notice = last_notice(client.text_tail)[:160]
        client.closed_reason = reason + (f" (last line: {notice})" if notice else "")
        self._drop(client)

    # --- ending -------------------------------------------------------------------------------

    def _finished(self) -> bool:
        now = time.monotonic()
        if now - self.go_time > self.deadline:
            self.end_reason = "deadline"
            return True
        sending = any(
            not c.closed and (c.sent < self.messages or c.outbuf) for c in self.local_senders
        )
        if self.rate > 0 and sending:
            if now - self.last_progress > self.idle_timeout:
                self.end_reason = "no progress"
                return True
            return False
        complete = all(c.distinct >= c.expected for c in self.clients if c.reads and not c.closed)
        if complete and not sending:
            self.end_reason = "complete"
            return True
        if now - self.last_progress > self.idle_timeout:
            self.end_reason = "no progress"
            return True
        return False

    def _report(self) -> None:
        latency_file = self.config.get("latency_file")
        if latency_file:
            with open(latency_file, "wb") as out:
                self.latencies.tofile(out)
        readers = [c for c in self.clients if c.reads]
        expected = sum(c.expected for c in readers)
        received = sum(c.distinct for c in readers)
        usage = resource.getrusage(resource.RUSAGE_SELF)
        reasons: dict[str, int] = {}
        for client in self.clients:
            if client.closed:
                key = client.closed_reason[:200]
                reasons[key] = reasons.get(key, 0) + 1
        emit(
            "done",
            worker=self.index,
            end_reason=self.end_reason,
            readers=len(readers),
            expected=expected,
            received=received,
            duplicates=self.duplicates,
            out_of_order=self.out_of_order,
            invalid=self.invalid,
            echoed=self.echoed,
            complete_readers=sum(1 for c in readers if c.distinct >= c.expected),
            closed_readers=sum(1 for c in readers if c.closed),
            closed_senders=sum(1 for c in self.clients if c.sender and c.closed),
            sent=sum(c.sent for c in self.clients if c.sender),
            close_reasons=reasons,
            go_ns=self.go_ns,
            first_send_ns=self.first_send_ns,
            last_recv_ns=self.last_recv_ns,
            cpu_s=usage.ru_utime + usage.ru_stime,
            latencies=len(self.latencies),
        )

    def drain(self, limit_s: float = 8.0, idle_s: float = 1.0) -> None:
        """Read everything queued for the never-reading clients; report whether it ended."""
        results = []
        for client in self.clients:
            if client.reads or client.sock is None:
                continue
            sock = client.sock
            sock.settimeout(idle_s)
            start = time.monotonic()
            received = 0
            tokens = 0
            ended = ""
            tail = b""
            while time.monotonic() - start < limit_s:
                try:
                    data = sock.recv(RECV_SIZE)
                except TimeoutError:
                    ended = ""
                    break
                except OSError as error:
                    ended = f"reset ({error!r})"
                    break
                if not data:
                    ended = "closed by server"
                    break
                received += len(data)
                chunk = tail + data
                cut = chunk.rfind(b"\n") + 1
                tokens += len(TOKEN.findall(chunk, 0, cut))
                tail = chunk[cut:]
                client.text_tail = (client.text_tail + chunk[:cut])[-600:]
            results.append(
                {
                    "client": client.name,
                    "bytes_after_run": received,
                    "tokens_after_run": tokens,
                    "ended": ended,
                    "last_notice": last_notice(client.text_tail)[:200],
                }
            )
        emit("drained", worker=self.index, slow=results)


def last_notice(text: bytes) -> str:
    """The last line of ``text`` that is not a benchmark message (a server's notice)."""
    lines = text.decode("utf-8", "replace").splitlines()
    notices = [line for line in lines if "@@" not in line and "xxxxxxxx" not in line]
    return next((line.strip() for line in reversed(notices) if line.strip()), "")


class Commands:
    """Lines from the orchestrator on stdin, read straight from the file descriptor (stdin is
    also in the selector, so no Python buffering may hide a line from it)."""

    def __init__(self) -> None:
        self.buffer = b""
        self.lines: list[str] = []

    def _read(self) -> None:
        data = os.read(sys.stdin.fileno(), 65536)
        if not data:
            self.lines.append("quit")
            return
        *lines, self.buffer = (self.buffer + data).split(b"\n")
        self.lines += [line.decode().strip() for line in lines]

    def next_line(self) -> str:
        """Block until a whole line is there (``quit`` at end of input)."""
        while not self.lines:
            self._read()
        return self.lines.pop(0)

    def available(self) -> list[str]:
        """The whole lines there are once stdin is readable (one read, which cannot block)."""
        self._read()
        lines, self.lines = self.lines, []
        return lines


class WorkerProcess:
    """The orchestrator's side: one worker process, the commands it is sent, its reports."""

    def __init__(self, index: int, config: dict[str, Any], log_path: Path) -> None:
        self.index = index
        self.log = log_path.open("wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.loadgen"],
            cwd=common.ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.log,
        )
        self.reports: queue.Queue[dict[str, Any]] = queue.Queue()
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()
        self.command(json.dumps(config))

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            try:
                self.reports.put(json.loads(line))
            except json.JSONDecodeError:
                continue
        self.reports.put({"event": "exited"})

    def command(self, text: str) -> None:
        assert self.process.stdin is not None
        try:
            self.process.stdin.write(text.encode() + b"\n")
            self.process.stdin.flush()
        except (BrokenPipeError, OSError):
            pass

    def expect(self, events: tuple[str, ...], timeout: float) -> dict[str, Any]:
        """The next report whose event is one of ``events``; an ``error`` report on timeout."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return {"event": "timeout", "waiting_for": events}
            try:
                report = self.reports.get(timeout=left)
            except queue.Empty:
                continue
            if report["event"] in events or report["event"] in ("exited", "error"):
                return report

    def stop(self) -> None:
        self.command("quit")
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            common.stop_process(self.process, grace=2)
        self.log.close()


def main() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    commands = Commands()
    config = json.loads(commands.next_line())
    Worker(config, commands).run()


if __name__ == "__main__":
    main()
