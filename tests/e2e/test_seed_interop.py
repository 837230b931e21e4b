"""Issue 9: our programs against fakes of the seeds' own programs, in both directions.

The fakes in ``seed_programs/`` are small threaded stdlib scripts written the way the seeds'
programs are: one ``send()`` per message with no newline, each ``recv()`` taken as one message
(their docstrings say exactly what each models). They run as real processes. The
``test_fake_pair_*`` tests run each fake against its fake partner: they show what the seeds'
programs show each other, and that the fakes themselves are sound, so a failure elsewhere is
ours. Every wait is for a condition under a deadline; the only sleep is the pause *inside* a
split line, which is the input under test.
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable

import pytest
import trio

from .harness import (
    LOCALHOST,
    TIMEOUT,
    Harness,
    Program,
    json_banner,
    received_json,
    rx,
    summary,
)

SEEDS = "tests/e2e/seed_programs"
PORT_TAGGED_WELCOME = "Connected to chat server. Type 'exit' to leave."
UDP_WELCOME = ("Welcome to the chat room!", "Type your message and press Enter to send it")
DISCONNECTED = "Disconnected from server"
STAMP = "2024-03-21 10:30:45"


def fake(name: str) -> str:
    """The script of one fake seed program, relative to the repository root."""
    return f"{SEEDS}/{name}.py"


async def start_fake_server(
    h: Harness,
    name: str,
    banner: str,
    *options: str,
    port_option: bool = False,
    then: tuple[str, ...] = (),
) -> tuple[Program, int]:
    """A fake seed server on port 0; the port its first line shows, and the ``then`` lines seen.

    ``banner`` is an :func:`rx` template with one ``{port}`` placeholder.
    """
    args = ("--port", "0") if port_option else ("0",)
    server = await h.start(fake(name), *args, *options, label=f"fake {name}")
    port = int((await server.expect_next(rx(banner))).group(1))
    for line in then:
        await server.expect_next(line)
    return server, port


async def seed000_server(h: Harness) -> tuple[Program, int]:
    return await start_fake_server(h, "seed000_server", "Listening on port {port}")


async def seed002_server(h: Harness) -> tuple[Program, int]:
    # The first line is the fake's own (the seed's banner shows no port), then the seed's.
    return await start_fake_server(
        h,
        "seed002_server",
        "Listening on UDP port {port}",
        then=("Server Initialized and is running.......",),
    )


async def seed003_server(h: Harness, *options: str) -> tuple[Program, int]:
    return await start_fake_server(
        h,
        "seed003_server",
        "ChatServer started with server IP: 127.0.0.1, port: {port} ...",
        *options,
    )


async def seed004_server(h: Harness) -> tuple[Program, int]:
    return await start_fake_server(
        h, "seed004_server", "Server listening on 127.0.0.1:{port}", port_option=True
    )


def chat_object(kind: str, nickname: str, text: str) -> bytes:
    """One ``broadcast`` or ``message`` object, the seed's way: no newline."""
    obj = {"type": kind, "nickname": nickname, "message": text, "timestamp": STAMP}
    return json.dumps(obj).encode()


async def start_seed003_client(h: Harness, port: int, nick: str, client_id: str) -> Program:
    client = await h.start(
        fake("seed003_client"), LOCALHOST, str(port), nick, client_id, label=f"seed003 {nick}"
    )
    await client.expect_next(json_banner(port, nick, client_id))
    return client


async def start_our_json_client(h: Harness, port: int, nick: str, client_id: str) -> Program:
    client = await h.start(
        "ChatClient.py", LOCALHOST, str(port), nick, client_id, label=f"our json {nick}"
    )
    await client.expect_next(json_banner(port, nick, client_id))
    return client


async def start_seed004_client(
    h: Harness, server: Program, port: int, label: str, *, ours: bool = False
) -> tuple[Program, str]:
    """A port-tagged client (the fake seed's or ``mychatclient.py``) and its port tag."""
    script = "mychatclient.py" if ours else fake("seed004_client")
    client = await h.start(script, "--port", str(port), label=label)
    await client.expect_next(PORT_TAGGED_WELCOME)
    tag = (await server.expect_next(rx("New connection from : ('127.0.0.1', {port})"))).group(1)
    return client, tag


async def start_udp_client(h: Harness, port: int, label: str, *, ours: bool = False) -> Program:
    if ours:
        client = await h.start("ChatClient.py", "--udp", LOCALHOST, str(port), label=label)
    else:
        client = await h.start(fake("seed002_client"), str(port), label=label)
    for line in UDP_WELCOME:
        await client.expect_next(line)
    return client


def assert_lines(program: Program, expected: list[str]) -> None:
    """Everything ``program`` printed, exactly (no blank lines, nothing glued or extra)."""
    seen = program.stdout.lines
    assert seen == expected, f"{program.label} printed {seen!r}, expected {expected!r}"


async def at_once(*sends: Callable[[], Awaitable[object]]) -> None:
    """Run several sends concurrently: they leave within the same scheduler tick."""
    async with trio.open_nursery() as nursery:
        for send in sends:
            nursery.start_soon(send)


# --- the fakes against each other: what the seeds' programs show each other ----------------


async def test_fake_pair_seed000(harness: Harness) -> None:
    server, port = await seed000_server(harness)
    alice = await harness.start(fake("seed000_client"), str(port), label="seed000 alice")
    await alice.send_line("alice")
    await server.expect_next("New client: 'alice'")
    bob = await harness.start(fake("seed000_client"), str(port), label="seed000 bob")
    await bob.send_line("bob")
    await server.expect_next("New client: 'bob'")
    await alice.send_line("hello")
    await server.expect_next("Relayed: 'alice: hello'")
    await bob.expect_next("alice: hello")
    await bob.send_line("hi alice")
    await server.expect_next("Relayed: 'bob: hi alice'")
    await alice.expect_next("bob: hi alice")
    for client, name in ((alice, "alice"), (bob, "bob")):
        await client.close_stdin()
        assert await client.wait_exit() == 0
        await server.expect_next(f"Closed: {name!r}")
        client.assert_consumed()
        client.assert_no_traceback()


async def test_fake_pair_seed002(harness: Harness) -> None:
    server, port = await seed002_server(harness)
    one = await start_udp_client(harness, port, "seed002 one")
    two = await start_udp_client(harness, port, "seed002 two")
    await two.send_line("How are you?")
    await server.expect_next(rx("From('127.0.0.1', {port}): How are you?"))
    await two.expect_next("How are you?")
    await one.expect_next("How are you?")
    await one.send_line("fine")
    await one.expect_next("fine")
    await two.expect_next("fine")


async def test_fake_pair_seed003(harness: Harness) -> None:
    server, port = await seed003_server(harness)
    ann = await start_seed003_client(harness, port, "ann", "001")
    await server.expect_next(rx("{dt} :: ann: connected."))
    bob = await start_seed003_client(harness, port, "bob", "002")
    await server.expect_next(rx("{dt} :: bob: connected."))
    await ann.send_line("hello")
    await server.expect_next(received_json("ann", "001", 5))
    await server.expect_next("Broadcasted: bob")
    await bob.expect_next(rx("{dt} :: ann: hello"))
    taken = await start_seed003_client(harness, port, "ann", "003")
    await taken.expect_next("Nickname already in use")
    assert await taken.wait_exit() == 1
    await ann.send_line("disconnect")
    await ann.expect_next(summary(1, 0, 5, 0))
    assert await ann.wait_exit() == 0
    await server.expect_next(rx("{dt} :: ann: disconnected."))
    ann.assert_consumed()
    await bob.close_stdin()
    await bob.expect_next(summary(0, 1, 0, 5))
    assert await bob.wait_exit() == 0
    bob.assert_consumed()
    for program in (ann, bob, taken, server):
        program.assert_no_traceback()


async def test_fake_pair_seed003_client_goes_silent_on_two_objects_in_one_read(
    harness: Harness,
) -> None:
    # The seed-003 behaviour that our server must never trigger, shown on a hand-made server.
    (listener,) = await trio.open_tcp_listeners(0, host=LOCALHOST)
    port = listener.socket.getsockname()[1]
    async with listener:
        ann = await start_seed003_client(harness, port, "ann", "001")
        async with await listener.accept() as stream:
            assert json.loads(await stream.receive_some(1024))["type"] == "nickname"
            one, two, three = (chat_object("broadcast", "bob", t) for t in ("one", "two", "3"))
            await stream.send_all(one)
            await ann.expect_next(f"{STAMP} :: bob: one")
            await stream.send_all(two + three)  # "Extra data": the receive thread ends
            await ann.send_line("disconnect")
            assert json.loads(await stream.receive_some(1024))["type"] == "disconnect"
    await ann.expect_next(summary(0, 1, 0, 3))
    assert await ann.wait_exit() == 0
    ann.assert_consumed()


async def test_fake_pair_seed004(harness: Harness) -> None:
    server, port = await seed004_server(harness)
    c1, p1 = await start_seed004_client(harness, server, port, "seed004 c1")
    c2, _ = await start_seed004_client(harness, server, port, "seed004 c2")
    await c1.send_line("Hi!")
    await server.expect_next(f"{p1}:Hi!")
    await c2.expect_next("")  # the seed client prints "\n" + message
    await c2.expect_next(f"{p1}:Hi!")
    for client in (c1, c2):
        await client.send_line("exit")
        await client.expect_next(DISCONNECTED)
        assert await client.wait_exit() == 0
        await server.expect_next("Connection closed")
        client.assert_consumed()
    server.assert_consumed()


async def test_fake_pair_seed004_server_floods_when_a_client_closes(harness: Harness) -> None:
    # The seed-004 behaviour that our port-tagged client must never trigger (bounded here).
    server, port = await seed004_server(harness)
    listener, _ = await start_seed004_client(harness, server, port, "seed004 listener")
    raw = await harness.connect(port, "closes without exit")
    await server.expect_next(f"New connection from : ('127.0.0.1', {raw.local_port})")
    await raw.aclose()
    for _ in range(20):
        await server.expect_next(f"{raw.local_port}:")
    await server.expect_next("Connection closed")
    await listener.expect_line(re.compile(f"({raw.local_port}:)+"))  # glued, as they come


# --- our servers with fake seed clients ---------------------------------------------------------


async def test_seed000_clients_on_our_server_see_one_line_per_message(harness: Harness) -> None:
    server, port = await harness.start_chat_server()
    clients: dict[str, Program] = {}
    for name in ("alice", "bob", "carol"):
        clients[name] = await harness.start(fake("seed000_client"), str(port), label=name)
        await clients[name].send_line(name)
        await server.expect_line(rx(f"{{dt}} :: {name}: connected."))
    alice, bob, carol = clients.values()

    await alice.send_line("hello")
    await bob.expect_next("alice: hello")
    await carol.expect_next("alice: hello")

    # Two members send at the same instant: alice gets each as its own read, hence line.
    await at_once(lambda: bob.send_line("one"), lambda: carol.send_line("two"))
    got = {await alice.next_line(), await alice.next_line()}
    assert got == {"bob: one", "carol: two"}, f"alice printed {alice.stdout.lines!r}"
    await bob.expect_next("carol: two")
    await carol.expect_next("bob: one")

    for name, client in clients.items():
        await client.close_stdin()
        assert await client.wait_exit() == 0
        await server.expect_line(rx(f"{{dt}} :: {name}: disconnected."))
        client.assert_consumed()  # no blank lines, nothing glued, nothing of their own
        client.assert_no_traceback()


@pytest.mark.parametrize("paster", ["our json client", "a raw peer writing two objects at once"])
async def test_seed003_client_on_our_server_survives_a_paste(harness: Harness, paster: str) -> None:
    server, port = await harness.start_chat_server()
    ann = await start_seed003_client(harness, port, "ann", "001")
    await server.expect_next(rx("{dt} :: ann: connected."))
    if paster == "our json client":
        bob = await start_our_json_client(harness, port, "bob", "002")
        await server.expect_next(rx("{dt} :: bob: connected."))
        await bob.send_bytes(b"one\ntwo\n")
    else:
        raw = await harness.connect(port, "raw json bob")
        join = {"type": "nickname", "nickname": "bob", "clientID": "002", "timstamp": "x"}
        await raw.send(json.dumps(join).encode())
        await server.expect_next(rx("{dt} :: bob: connected."))
        await raw.send(chat_object("message", "bob", "one") + chat_object("message", "bob", "two"))
    await ann.expect_next(rx("{dt} :: bob: one"))
    await ann.expect_next(rx("{dt} :: bob: two"))
    # Still alive afterwards: a later message shows too.
    cat = await start_seed003_client(harness, port, "cat", "003")
    await server.expect_line(rx("{dt} :: cat: connected."))
    await cat.send_line("three")
    await ann.expect_next(rx("{dt} :: cat: three"))
    await ann.send_line("disconnect")
    await ann.expect_next(summary(0, 3, 0, 11))
    assert await ann.wait_exit() == 0
    ann.assert_consumed()
    ann.assert_no_traceback()


async def test_seed003_client_leaving_our_server_prints_one_summary(harness: Harness) -> None:
    server, port = await harness.start_chat_server()
    ann = await start_seed003_client(harness, port, "ann", "001")
    await server.expect_next(rx("{dt} :: ann: connected."))
    await ann.send_line("hello")
    await server.expect_line(re.compile("Broadcasted:.*"))  # to nobody
    await ann.send_line("disconnect")
    await ann.expect_next(summary(1, 0, 5, 0))
    assert await ann.wait_exit() == 0
    await server.expect_line(rx("{dt} :: ann: disconnected."))
    ann.assert_consumed()  # no "Goodbye", no second Summary
    ann.assert_no_traceback()


async def test_seed004_clients_on_mychatserver(harness: Harness) -> None:
    server, port = await harness.start_port_tagged_server()
    c1, p1 = await start_seed004_client(harness, server, port, "seed004 c1")
    c2, p2 = await start_seed004_client(harness, server, port, "seed004 c2")
    c3, _ = await start_seed004_client(harness, server, port, "seed004 c3")

    await c1.send_line("Hi!")
    await server.expect_next(f"{p1}:Hi!")
    for other in (c2, c3):
        await other.expect_next("")  # the seed's own look: "\n" + message
        await other.expect_next(f"{p1}:Hi!")

    # Two members send at the same instant: c3 gets each in its own read.
    await at_once(lambda: c1.send_line("Good."), lambda: c2.send_line("Fine."))
    got = [await c3.next_line() for _ in range(4)]
    each_alone = (["", f"{p1}:Good.", "", f"{p2}:Fine."], ["", f"{p2}:Fine.", "", f"{p1}:Good."])
    assert got in each_alone, f"c3 printed {got!r}: two messages in one read, or blank lines"
    await c1.expect_next("")
    await c1.expect_next(f"{p2}:Fine.")
    await c2.expect_next("")
    await c2.expect_next(f"{p1}:Good.")

    for client in (c1, c2, c3):
        await client.send_line("exit")
        await client.expect_next(DISCONNECTED)  # strictly next: no "exit", no blank lines
        assert await client.wait_exit() == 0
        await server.expect_line("Connection closed")
        client.assert_consumed()
        client.assert_no_traceback()
    assert_lines(c1, [PORT_TAGGED_WELCOME, "", f"{p2}:Fine.", DISCONNECTED])
    assert server.returncode is None


async def test_seed002_clients_on_our_udp_server(harness: Harness) -> None:
    server, port = await harness.start_chat_server()
    one = await start_udp_client(harness, port, "seed002 one")
    await server.expect_next(rx("{dt} :: udp-{port}: connected."))
    two = await start_udp_client(harness, port, "seed002 two")
    await server.expect_next(rx("{dt} :: udp-{port}: connected."))
    await two.send_line("How are you?")
    await two.expect_next("How are you?")
    await one.expect_next("How are you?")
    line = await harness.start("ChatClient.py", str(port), label="our line client")
    await line.send_line("lina")
    await server.expect_line(rx("{dt} :: lina: connected."))
    await line.send_line("hi udp")
    await one.expect_next("hi udp")
    await two.expect_next("hi udp")
    for client in (one, two):
        client.assert_consumed()
        client.assert_no_traceback()


# --- our clients with fake seed servers ----------------------------------------------------------


async def test_our_line_clients_on_seed000_server(harness: Harness) -> None:
    server, port = await seed000_server(harness)
    alice = await harness.start("ChatClient.py", str(port), label="our line alice")
    await alice.send_line("alice")
    await server.expect_next("New client: 'alice'")  # the name alone, no newline
    bob = await harness.start("ChatClient.py", str(port), label="our line bob")
    await bob.send_line("bob")
    await server.expect_next("New client: 'bob'")

    await alice.send_line("hello")
    await server.expect_next("Relayed: 'alice: hello'")
    await bob.expect_next("alice: hello")  # shown although the server added no newline

    # A paste: each line its own write, so its own relay, so its own line.
    await alice.send_bytes(b"one\ntwo\n")
    await server.expect_next("Relayed: 'alice: one'")
    await server.expect_next("Relayed: 'alice: two'")
    await bob.expect_next("alice: one")
    await bob.expect_next("alice: two")

    await bob.send_line("hi alice")
    await server.expect_next("Relayed: 'bob: hi alice'")
    await alice.expect_next("bob: hi alice")

    # The last message relayed before bob leaves is not lost.
    await alice.send_line("last")
    await server.expect_next("Relayed: 'alice: last'")
    await bob.close_stdin()
    assert await bob.wait_exit() == 0
    await server.expect_next("Closed: 'bob'")
    assert_lines(bob, ["alice: hello", "alice: one", "alice: two", "alice: last"])

    await alice.close_stdin()
    assert await alice.wait_exit() == 0
    await server.expect_next("Closed: 'alice'")
    assert_lines(alice, ["bob: hi alice"])
    server.assert_consumed()
    for program in (alice, bob, server):
        program.assert_no_traceback()


async def test_our_port_tagged_clients_on_seed004_server(harness: Harness) -> None:
    server, port = await seed004_server(harness)
    c1, p1 = await start_seed004_client(harness, server, port, "our c1", ours=True)
    c2, p2 = await start_seed004_client(harness, server, port, "our c2", ours=True)

    await c1.send_line("Hi!")
    await server.expect_next(f"{p1}:Hi!")  # strictly next: no blank line, no "\n" sent
    await c2.expect_next(f"{p1}:Hi!")
    await c1.send_bytes(b"a\nb\n")
    await server.expect_next(f"{p1}:a")
    await server.expect_next(f"{p1}:b")
    await c2.expect_next(f"{p1}:a")
    await c2.expect_next(f"{p1}:b")
    await c2.send_line("Hello!")
    await server.expect_next(f"{p2}:Hello!")
    await c1.expect_next(f"{p2}:Hello!")

    # exit: the server echoes exactly "exit" and closes; no "<port>:exit", no flood.
    await c1.send_line("exit")
    await c1.expect_next(DISCONNECTED)
    assert await c1.wait_exit() == 0
    await server.expect_next("Connection closed")
    await c2.send_line("still here")
    await server.expect_next(f"{p2}:still here")
    await c2.send_line("exit")
    await c2.expect_next(DISCONNECTED)
    assert await c2.wait_exit() == 0
    await server.expect_next("Connection closed")
    server.assert_consumed()
    assert_lines(c1, [PORT_TAGGED_WELCOME, f"{p2}:Hello!", DISCONNECTED])
    assert_lines(c2, [PORT_TAGGED_WELCOME, f"{p1}:Hi!", f"{p1}:a", f"{p1}:b", DISCONNECTED])
    for program in (c1, c2, server):
        program.assert_no_traceback()


async def test_our_udp_client_on_seed002_server(harness: Harness) -> None:
    server, port = await seed002_server(harness)
    seed = await start_udp_client(harness, port, "seed002 client")
    ours = await start_udp_client(harness, port, "our udp client", ours=True)
    await ours.send_line("How are you?")
    await server.expect_next(rx("From('127.0.0.1', {port}): How are you?"))  # never "SAGE ..."
    await ours.expect_next("How are you?")  # its own message, the text alone
    await seed.expect_next("How are you?")
    await seed.send_line("fine, thanks")
    await server.expect_next(rx("From('127.0.0.1', {port}): fine, thanks"))
    await seed.expect_next("fine, thanks")
    await ours.expect_next("fine, thanks")
    await ours.close_stdin()
    assert await ours.wait_exit() == 0
    assert_lines(ours, [*UDP_WELCOME, "How are you?", "fine, thanks"])
    ours.assert_no_traceback()


async def test_our_udp_client_leaving_is_not_relayed_by_seed002_server(harness: Harness) -> None:
    # The seed's server relays any datagram from a registered address (minus three bytes):
    # whatever our client sends when it leaves must not show up as chat ("LEAVE" -> "VE").
    _, port = await seed002_server(harness)
    seed = await start_udp_client(harness, port, "seed002 client")
    ours = await start_udp_client(harness, port, "our udp client", ours=True)
    await ours.send_line("bye")
    await seed.expect_next("bye")
    await ours.close_stdin()
    assert await ours.wait_exit() == 0
    # The seed client's own next message comes back after anything the server relayed before.
    await seed.send_line("anyone?")
    await seed.expect_line("anyone?")
    assert_lines(seed, [*UDP_WELCOME, "bye", "anyone?"])


async def test_our_json_client_on_seed003_server(harness: Harness) -> None:
    server, port = await seed003_server(harness)
    bob = await start_seed003_client(harness, port, "bob", "002")
    await server.expect_next(rx("{dt} :: bob: connected."))
    ann = await start_our_json_client(harness, port, "ann", "001")
    await server.expect_next(rx("{dt} :: ann: connected."))

    await ann.send_line("hello")
    await server.expect_next(received_json("ann", "001", 5))
    await server.expect_next("Broadcasted: bob")
    await bob.expect_next(rx("{dt} :: ann: hello"))
    await bob.send_line("hi ann")
    await server.expect_next(received_json("bob", "002", 6))
    await server.expect_next("Broadcasted: ann")
    await ann.expect_next(rx("{dt} :: bob: hi ann"))

    # A paste: one object per write, so the server's one-object-per-recv() parse holds.
    await ann.send_bytes(b"one\ntwo\nsix\n")
    for text in ("one", "two", "six"):
        await server.expect_next(received_json("ann", "001", 3))
        await server.expect_next("Broadcasted: bob")
        await bob.expect_next(rx(f"{{dt}} :: ann: {text}"))

    await ann.send_line("disconnect")
    await ann.expect_next(summary(4, 1, 14, 6))
    assert await ann.wait_exit() == 0
    await server.expect_next(rx("{dt} :: ann: disconnected."))
    await bob.send_line("disconnect")
    await bob.expect_next(summary(1, 4, 6, 14))
    assert await bob.wait_exit() == 0
    await server.expect_next(rx("{dt} :: bob: disconnected."))
    server.assert_consumed()
    for program in (ann, bob, server):
        program.assert_consumed()
        program.assert_no_traceback()


@pytest.mark.parametrize("answer", ["disconnect", "a new nickname"])
async def test_our_json_client_refused_by_seed003_server_that_keeps_the_connection(
    harness: Harness, answer: str
) -> None:
    server, port = await seed003_server(harness)
    holder = await start_seed003_client(harness, port, "ann", "001")
    await server.expect_next(rx("{dt} :: ann: connected."))
    ours = await start_our_json_client(harness, port, "ann", "002")
    await ours.expect_next("Nickname already in use")
    await ours.expect_next("Enter a different nickname:")
    if answer == "disconnect":
        await ours.send_line("disconnect")
        await ours.expect_next(summary(0, 0, 0, 0))
        assert await ours.wait_exit() == 0
        # Nobody joined as "disconnect": the server's next line is about the holder's message.
        await holder.send_line("still alone")
        await server.expect_next(received_json("ann", "001", 11))
        await server.expect_next("Broadcasted: ")
    else:
        await ours.send_line("bea")
        await server.expect_next(rx("{dt} :: bea: connected."))
        await holder.send_line("hi bea")
        await server.expect_next(received_json("ann", "001", 6))
        await server.expect_next("Broadcasted: bea")
        await ours.expect_next(rx("{dt} :: ann: hi bea"))
        await ours.send_line("disconnect")
        await ours.expect_next(summary(0, 1, 0, 6))
        assert await ours.wait_exit() == 0
        await server.expect_next(rx("{dt} :: bea: disconnected."))
    ours.assert_consumed()
    ours.assert_no_traceback()


async def test_our_json_client_refused_by_seed003_server_that_closes(harness: Harness) -> None:
    server, port = await seed003_server(harness, "--close-on-taken")
    await start_seed003_client(harness, port, "ann", "001")
    await server.expect_next(rx("{dt} :: ann: connected."))
    ours = await start_our_json_client(harness, port, "ann", "002")
    await ours.expect_next("Nickname already in use")
    # Noticed before asking again: no prompt on a dead connection, exit 1, and it says why.
    assert await ours.wait_exit(within=5) == 1
    assert "Enter a different nickname:" not in ours.stdout.lines, ours.stdout.context()
    said = "\n".join([*ours.stdout.lines, ours.stderr]).lower()
    assert "closed" in said, ours.stdout.context()
    ours.assert_no_traceback()


# --- unframed and framed peers on our server ------------------------------------------------


async def test_unframed_peer_gets_one_message_per_receive(harness: Harness) -> None:
    server, port = await harness.start_chat_server()
    with trio.fail_after(TIMEOUT):
        ann = await trio.open_tcp_stream(LOCALHOST, port)
    async with ann:
        await ann.send_all(b"ann")  # the seed's way: the name alone, no newline
        await server.expect_next(rx("{dt} :: ann: connected."))
        bob = await harness.connect(port, "nc bob")
        await bob.send(b"bob\n")
        await server.expect_next(rx("{dt} :: bob: connected."))
        carol = await harness.connect(port, "nc carol")
        await carol.send(b"carol\n")
        await server.expect_next(rx("{dt} :: carol: connected."))

        await at_once(lambda: bob.send(b"one\n"), lambda: carol.send(b"two\n"))
        expected = {b"bob: one", b"carol: two"}
        with trio.fail_after(TIMEOUT):
            first = await ann.receive_some(65536)
            assert first in expected, f"first read held {first!r}"
            second = await ann.receive_some(65536)
        assert {first, second} == expected, f"reads held {first!r} then {second!r}"

        await bob.expect_next("carol: two")  # framed peers get lines
        await carol.expect_next("bob: one")
        await ann.send_all(b"hi")
        await bob.expect_next("ann: hi")
        await carol.expect_next("ann: hi")


async def test_framed_peer_line_sent_in_two_parts_is_one_message(harness: Harness) -> None:
    server, port = await harness.start_chat_server()
    nat = await harness.connect(port, "nc nat")
    await nat.send(b"nat\n")
    await server.expect_next(rx("{dt} :: nat: connected."))
    lis = await harness.connect(port, "nc lis")
    await lis.send(b"lis\n")
    await server.expect_next(rx("{dt} :: lis: connected."))
    await nat.send(b"spl")
    await trio.sleep(0.3)  # the input under test: a pause inside one line, not a wait
    await nat.send(b"it\n")
    await lis.expect_next("nat: split")
    await server.expect_line(
        rx(
            "Received: IP:127.0.0.1, Port:{port}, Client-Nickname:nat, ClientID:-, "
            "Date/Time:{dt}, Msg-Size:5"
        )
    )
    await lis.send(b"ok\n")
    await nat.expect_next("lis: ok")
    lis.log.assert_consumed()
