"""The datagram dialect end to end (seed 002): real processes and raw UDP sockets on 127.0.0.1.

Every wait is for a condition under a deadline; the garbage floods are bounded and come in
bursts small enough for the server's receive buffer, so the kernel never has a reason to drop
the valid datagrams that follow them. Our client against the seed's own server: here with a
socket of the test's own playing either server, byte for byte, and with the fake of the seed's
server (``seed_programs/seed002_server.py``); ``test_seed_interop.py`` has the pairings.
"""

from __future__ import annotations

import random
import signal
import socket

import pytest
import trio

from .harness import LOCALHOST, TIMEOUT, Harness, Program, rx

SEED002_SERVER = "tests/e2e/seed_programs/seed002_server.py"
SEED002_PORT_LINE = "Listening on UDP port {port}"
"""The fake's own first line (an :func:`rx` template): the port it bound, for the tests."""
SEED002_BANNER = "Server Initialized and is running......."

WELCOME = ("Welcome to the chat room!", "Type your message and press Enter to send it")
FLOOD_ROUNDS = 10
FLOOD_BURST = 100
"""Garbage datagrams per sender per round: 10 rounds x 100 x 2 senders = 2000 in all."""
RAW_INBOX_LIMIT = 1000


class RawUdp:
    """A raw UDP socket of the test's own: sends what it is told, keeps what it receives."""

    def __init__(self, label: str, sock: trio.socket.SocketType, server: tuple[str, int]) -> None:
        self.label = label
        self.socket = sock
        self.server = server
        self.port = int(sock.getsockname()[1])
        self._send, self._receive = trio.open_memory_channel[bytes](RAW_INBOX_LIMIT)

    async def send(self, data: bytes) -> None:
        await self.socket.sendto(data, self.server)

    async def pump(self) -> None:
        """Receive until the test's nursery is cancelled, then close the socket."""
        with self.socket:
            while True:
                data, _ = await self.socket.recvfrom(70_000)
                self._send.send_nowait(data)

    async def receive(self) -> bytes:
        """The next datagram received."""
        return await self._receive.receive()

    async def expect(self, data: bytes) -> None:
        """The next datagram received must be exactly ``data``."""
        with trio.fail_after(TIMEOUT):
            got = await self.receive()
        assert got == data, f"{self.label}: expected {data!r}, got {got!r}"

    def assert_nothing_more(self) -> None:
        try:
            extra = self._receive.receive_nowait()
        except trio.WouldBlock:
            return
        raise AssertionError(f"{self.label}: unexpected datagram {extra!r}")


async def raw_udp(nursery: trio.Nursery, label: str, port: int) -> RawUdp:
    sock = trio.socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    await sock.bind((LOCALHOST, 0))
    peer = RawUdp(label, sock, (LOCALHOST, port))
    nursery.start_soon(peer.pump)
    return peer


class FakeServer:
    """A UDP socket of the test's own in the server's place: it sees exactly what a client
    sends, and answers what the test tells it to, as our server or as the seed's would."""

    def __init__(self) -> None:
        self.raw = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.raw.bind((LOCALHOST, 0))
        self.port = int(self.raw.getsockname()[1])
        self.socket = trio.socket.from_stdlib_socket(self.raw)
        self.client: tuple[str, int] | None = None

    async def expect(self, data: bytes) -> None:
        """The next datagram from the client must be exactly ``data``."""
        with trio.fail_after(TIMEOUT):
            got, address = await self.socket.recvfrom(70_000)
        self.client = (str(address[0]), int(address[1]))
        assert got == data, f"fake server: expected {data!r}, got {got!r}"

    async def send(self, data: bytes) -> None:
        assert self.client is not None, "the client has sent nothing yet"
        await self.socket.sendto(data, self.client)

    def assert_nothing_more(self) -> None:
        """Nothing else has arrived (on 127.0.0.1 a sent datagram is queued at once)."""
        try:
            extra = self.raw.recv(70_000)
        except BlockingIOError:
            return
        raise AssertionError(f"fake server: unexpected datagram {extra!r}")


def garbage(rng: random.Random, count: int) -> list[bytes]:
    """Datagrams that are no command from anyone: bytes, bad UTF-8, oversized, strangers' words."""
    out: list[bytes] = []
    for index in range(count):
        kind = index % 10
        if kind == 0:
            out.append(b"MESSAGE " + b"x" * 9000)  # over the 8 KiB limit
        elif kind == 1:
            out.append(b"\xff\xfe\xfd not UTF-8 \xc3")
        elif kind == 2:
            out.append(b"INCOMING 6.6.6.6 666 evil: forged")
        elif kind == 3:
            out.append(b"")
        elif kind == 4:
            out.append(b"MESSAGE")  # no text
        else:
            out.append(b"\x00" + rng.randbytes(rng.randrange(0, 200)))
    return out


def received(name: str, port: int | str, size: int) -> str:
    return (
        f"Received: IP:127.0.0.1, Port:{port}, Client-Nickname:{name}, ClientID:-, "
        f"Date/Time:{{dt}}, Msg-Size:{size}"
    )


async def start_udp_client(harness: Harness, port: int, *extra: str, label: str) -> Program:
    client = await harness.start(
        "ChatClient.py", "--udp", LOCALHOST, str(port), *extra, label=label
    )
    for line in WELCOME:
        await client.expect_next(line)
    return client


async def test_udp_and_tcp_clients_chat_in_one_room_through_a_garbage_flood(
    harness: Harness, nursery: trio.Nursery
) -> None:
    server, port = await harness.start_chat_server()

    ursula = await start_udp_client(harness, port, label="udp client (default name)")
    joined = await server.expect_next(rx("{dt} :: udp-{port}: connected."))
    ursula_port = int(joined.group(2))
    ursula_name = f"udp-{ursula_port}"  # no name given: the server names it by its port

    ulla = await start_udp_client(harness, port, "ulla", "--show-sender", label="udp client ulla")
    await server.expect_next(rx("{dt} :: ulla: connected."))

    lina = await harness.start("ChatClient.py", str(port), label="line client lina")
    await lina.send_line("lina")
    await server.expect_next(rx("{dt} :: lina: connected."))

    rawu = await raw_udp(nursery, "raw UDP member", port)
    await rawu.send(b"GREETINGS rawu")  # the seed client's spelling, with a name
    await server.expect_next(rx("{dt} :: rawu: connected."))

    # A UDP member speaks: everyone hears it, the sender included (seed 002).
    await ursula.send_line("hello from udp one")
    await server.expect_next(rx(received(ursula_name, ursula_port, 18)))
    # A datagram sender gets its own message back, so it is listed among the recipients.
    await server.expect_next(f"Broadcasted: {ursula_name}, ulla, lina, rawu")
    await ursula.expect_next("hello from udp one")
    await ulla.expect_next(f"{ursula_name}: hello from udp one")
    await lina.expect_next(f"{ursula_name}: hello from udp one")
    await rawu.expect(
        f"INCOMING 127.0.0.1 {ursula_port} {ursula_name}: hello from udp one".encode()
    )

    await ulla.send_line("hi, ulla here")
    ulla_port = (await server.expect_next(rx(received("ulla", "{port}", 13)))).group(1)
    await server.expect_next(f"Broadcasted: {ursula_name}, ulla, lina, rawu")
    await ursula.expect_next("hi, ulla here")
    await ulla.expect_next("ulla: hi, ulla here")
    await lina.expect_next("ulla: hi, ulla here")
    await rawu.expect(f"INCOMING 127.0.0.1 {ulla_port} ulla: hi, ulla here".encode())

    # A TCP member speaks: datagram members get INCOMING with the TCP sender's address.
    await lina.send_line("hi from tcp")
    lina_port = (await server.expect_next(rx(received("lina", "{port}", 11)))).group(1)
    await server.expect_next(f"Broadcasted: {ursula_name}, ulla, rawu")
    await ursula.expect_next("hi from tcp")
    await ulla.expect_next("lina: hi from tcp")
    await rawu.expect(f"INCOMING 127.0.0.1 {lina_port} lina: hi from tcp".encode())

    await rawu.send(b"MEShello from raw")  # the seed client's MES<text>
    await server.expect_next(rx(received("rawu", rawu.port, 14)))
    await server.expect_next(f"Broadcasted: {ursula_name}, ulla, lina, rawu")
    await ursula.expect_next("hello from raw")
    await ulla.expect_next("rawu: hello from raw")
    await lina.expect_next("rawu: hello from raw")
    await rawu.expect(f"INCOMING 127.0.0.1 {rawu.port} rawu: hello from raw".encode())

    # 2000 garbage datagrams from a stranger and from a member, between valid messages.
    stranger = await raw_udp(nursery, "stranger", port)
    rng = random.Random(2)
    for round_number in range(FLOOD_ROUNDS):
        for data in garbage(rng, FLOOD_BURST):
            await stranger.send(data)
            await rawu.send(data)
        text = f"still chatting {round_number}"
        await ursula.send_line(text)
        await server.expect_next(rx(received(ursula_name, ursula_port, len(text))))
        await server.expect_next(f"Broadcasted: {ursula_name}, ulla, lina, rawu")
        await ursula.expect_next(text)
        await ulla.expect_next(f"{ursula_name}: {text}")
        await lina.expect_next(f"{ursula_name}: {text}")
        await rawu.expect(f"INCOMING 127.0.0.1 {ursula_port} {ursula_name}: {text}".encode())
    stranger.assert_nothing_more()

    # Leaving: end of input, Ctrl-C (the seed's way), a LEAVE datagram, and the line client.
    left_at = trio.current_time()
    await ursula.close_stdin()
    assert await ursula.wait_exit() == 0
    assert trio.current_time() - left_at < 1.5
    await server.expect_next(rx(f"{{dt}} :: {ursula_name}: disconnected."))

    left_at = trio.current_time()
    ulla.send_signal(signal.SIGINT)
    assert await ulla.wait_exit() == 0
    assert trio.current_time() - left_at < 1.5
    await server.expect_next(rx("{dt} :: ulla: disconnected."))

    await rawu.send(b"LEAVE")
    await server.expect_next(rx("{dt} :: rawu: disconnected."))
    await lina.close_stdin()
    assert await lina.wait_exit() == 0
    await server.expect_next(rx("{dt} :: lina: disconnected."))

    server.send_signal(signal.SIGINT)
    assert await server.wait_exit() == 0
    rawu.assert_nothing_more()
    for program in (server, ursula, ulla, lina):
        program.assert_consumed()
        program.assert_no_traceback()
        assert program.stderr == "", program.label


async def test_piped_udp_session_prints_its_own_last_messages_before_leaving(
    harness: Harness,
) -> None:
    # Seed 002: "Client_chat_2 Input - How are you?" / "Output - How are you?". End of input
    # right after the last line must not leave before the server's echoes are back.
    server, port = await harness.start_chat_server()
    client = await start_udp_client(harness, port, "piper", label="piped udp client")
    await server.expect_next(rx("{dt} :: piper: connected."))
    lines = ["How are you?", *(f"line {number}" for number in range(2, 21))]
    await client.send_bytes("".join(f"{line}\n" for line in lines).encode())
    await client.close_stdin()
    assert await client.wait_exit() == 0
    assert client.stdout.lines == [*WELCOME, *lines]
    await server.expect_line(rx("{dt} :: piper: disconnected."))
    client.assert_no_traceback()


async def test_a_taken_name_is_refused_and_said_on_stderr(harness: Harness) -> None:
    server, port = await harness.start_chat_server()
    lina = await harness.start("ChatClient.py", str(port), label="line client lina")
    await lina.send_line("lina")
    await server.expect_next(rx("{dt} :: lina: connected."))

    copycat = await start_udp_client(harness, port, "LINA", label="udp copycat")
    await copycat.stderr_log.expect_line("ERROR Nickname already in use")
    assert await copycat.wait_exit() == 1  # not a member, so nothing to stay for
    copycat.assert_consumed()
    copycat.assert_no_traceback()
    await lina.send_line("only lina here")
    await server.expect_next(rx(received("lina", "{port}", 14)))
    await server.expect_next("Broadcasted:")
    await lina.close_stdin()
    await server.expect_next(rx("{dt} :: lina: disconnected."))
    server.assert_consumed()


async def test_server_ctrl_c_tells_udp_members(harness: Harness) -> None:
    server, port = await harness.start_chat_server()
    udp = await start_udp_client(harness, port, "ulla", label="udp client")
    await server.expect_next(rx("{dt} :: ulla: connected."))

    signalled_at = trio.current_time()
    server.send_signal(signal.SIGINT)
    await server.expect_next(rx("{dt} :: ulla: disconnected."))
    assert await server.wait_exit() == 0
    assert await udp.wait_exit() == 1
    assert trio.current_time() - signalled_at < 2.0
    assert udp.stderr == "Disconnected by the chat server: Server shutting down"
    for program in (server, udp):
        program.assert_consumed()
        program.assert_no_traceback()


async def test_udp_clients_notice_a_missing_server(harness: Harness) -> None:
    server, port = await harness.start_chat_server()
    udp = await start_udp_client(harness, port, label="udp client")
    await server.expect_next(rx("{dt} :: udp-{port}: connected."))

    server.kill()
    await server.wait_exit()
    await udp.send_line("anyone there?")  # the ICMP "port unreachable" tells the client
    assert await udp.wait_exit() == 1
    assert "not reachable" in udp.stderr
    udp.assert_no_traceback()
    udp.assert_consumed()


async def test_no_udp_server_has_no_udp_endpoint(harness: Harness) -> None:
    server, port = await harness.start_chat_server("--no-udp")
    udp = await harness.start("ChatClient.py", "--udp", LOCALHOST, str(port), label="udp client")
    assert await udp.wait_exit() == 1
    assert "not reachable" in udp.stderr
    udp.assert_no_traceback()
    assert server.returncode is None
    server.assert_consumed()


async def test_a_busy_udp_port_is_a_clear_error(harness: Harness) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as squatter:
        squatter.bind((LOCALHOST, 0))
        port = int(squatter.getsockname()[1])
        finished = await harness.run("ChatServer.py", str(port), "--host", LOCALHOST)
    assert finished.code == 1
    assert finished.stdout == [f"ERR - cannot create ChatServer socket using port number {port}"]


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--udp"], "ERR - arg 1"),
        (["--udp", "no-such-host.invalid", "4000"], "ERR - arg 1"),
        (["--udp", LOCALHOST], "ERR - arg 2"),
        (["--udp", LOCALHOST, "0"], "ERR - arg 2"),
        (["--udp", LOCALHOST, "70000"], "ERR - arg 2"),
        (["--udp", LOCALHOST, "4000", "bad:name"], "ERR - arg 3"),
    ],
)
async def test_udp_client_argument_errors(harness: Harness, args: list[str], expected: str) -> None:
    finished = await harness.run("ChatClient.py", *args)
    assert (finished.code, finished.stdout) == (1, [expected])


async def test_udp_client_says_mes_until_the_server_shows_it_is_triochat(
    harness: Harness,
) -> None:
    server = FakeServer()
    with server.socket:
        client = await start_udp_client(harness, server.port, label="udp client")
        await server.expect(b"GREETING")
        assert server.client is not None
        port = server.client[1]
        # Nothing has come back yet: the one form both servers show as the text typed.
        await client.send_line("hello")
        await server.expect(b"MEShello")
        await server.send(f"INCOMING 127.0.0.1 {port} udp-{port}: hello".encode())
        await client.expect_next("hello")
        # Now it is triochat: MESSAGE <text>, exact even for what MES<text> would lose.
        await client.send_line("SAGE advice")
        await server.expect(b"MESSAGE SAGE advice")
        await client.send_line(" indented")
        await server.expect(b"MESSAGE  indented")
        await client.close_stdin()
        for text in ("SAGE advice", " indented"):  # the echoes it waits for
            await server.send(f"INCOMING 127.0.0.1 {port} udp-{port}: {text}".encode())
        await server.expect(b"LEAVE")
        assert await client.wait_exit() == 0
        server.assert_nothing_more()
        assert client.stdout.lines == [*WELCOME, "hello", "SAGE advice", " indented"]
        client.assert_no_traceback()


async def test_udp_client_on_a_seed_server_shows_relays_and_never_leaves_as_chat(
    harness: Harness,
) -> None:
    server = FakeServer()
    with server.socket:
        client = await start_udp_client(
            harness, server.port, "--show-sender", label="udp client --show-sender"
        )
        await server.expect(b"GREETING")
        assert server.client is not None
        port = server.client[1]
        await client.send_line("hello")
        await server.expect(b"MEShello")
        # The seed's server: f"From{addr}: {text}", to every registered address.
        await server.send(f"From('127.0.0.1', {port}): hello".encode())
        await client.expect_next(f"127.0.0.1:{port}: hello")
        await server.send(b"From('10.1.2.3', 4444): hi): there")
        await client.expect_next("10.1.2.3:4444: hi): there")
        await server.send(b"From('10.1.2.3', 4444): ")  # a seed client's empty line: not shown
        await server.send(b"From(nonsense")  # not what that server sends: ignored
        await server.send(b"From('::1', 5000, 0, 0): over IPv6")
        await client.expect_next("[::1]:5000: over IPv6")
        # Still MES<text>: that server strips three bytes and shows "SAGE advice".
        await client.send_line("SAGE advice")
        await server.expect(b"MESSAGE advice")
        await server.send(f"From('127.0.0.1', {port}): SAGE advice".encode())
        await client.expect_next(f"127.0.0.1:{port}: SAGE advice")
        await client.send_line("bye")
        await client.close_stdin()
        await server.expect(b"MESbye")
        await server.send(f"From('127.0.0.1', {port}): bye".encode())  # the echo it waits for
        assert await client.wait_exit() == 0
        server.assert_nothing_more()  # no LEAVE: that server would relay it as "VE"
        assert client.stdout.lines == [
            *WELCOME,
            f"127.0.0.1:{port}: hello",
            "10.1.2.3:4444: hi): there",
            "[::1]:5000: over IPv6",
            f"127.0.0.1:{port}: SAGE advice",
            f"127.0.0.1:{port}: bye",
        ]
        client.assert_no_traceback()
        assert client.stderr == ""


async def test_piped_udp_session_on_the_seed_server_counts_its_echoes(harness: Harness) -> None:
    # The echoes come back as From(...) with our port: the client leaves as soon as they are
    # all back (not after ECHO_WAIT), and the server relays nothing but the lines typed.
    server = await harness.start(SEED002_SERVER, "0", label="fake seed002 server")
    port = int((await server.expect_next(rx(SEED002_PORT_LINE))).group(1))
    await server.expect_next(SEED002_BANNER)
    client = await start_udp_client(harness, port, label="piped udp client")
    lines = ["How are you?", "SAGE advice", " indented", "LEAVE", *(f"line {n}" for n in range(20))]
    await client.send_bytes("".join(f"{line}\n" for line in lines).encode())
    closed_at = trio.current_time()
    await client.close_stdin()
    assert await client.wait_exit() == 0
    assert trio.current_time() - closed_at < 1.5
    assert client.stdout.lines == [*WELCOME, *lines]
    for line in lines:
        await server.expect_next(rx(f"From('127.0.0.1', {{port}}): {line}"))
    # Whatever the client sent before it exited reaches the server before this does: the next
    # relay is this, not a "VE" from a LEAVE.
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as late:
        late.sendto(b"GREETINGS", (LOCALHOST, port))
        late.sendto(b"MESlast", (LOCALHOST, port))
        await server.expect_next(rx("From('127.0.0.1', {port}): last"))
    client.assert_no_traceback()
