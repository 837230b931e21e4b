"""``--cluster``: several ChatServer processes share one room through a real Redis (SPEC §10).

Every test starts its own ``redis-server`` on a free port and its own nodes, and waits for
lines, never for fixed times. Skipped, with the reason, where Redis cannot be run.
"""

from __future__ import annotations

import importlib.util
import json
import random
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trio

from .harness import (
    TIMEOUT,
    Harness,
    Program,
    RawPeer,
    free_port,
    join_raw_line,
    received_json,
    rx,
)
from .redis_server import RedisServer, skip_without_redis
from .test_files import MENU, MenuClient, received
from .test_mixed_room import next_broadcast, obj
from .test_udp import raw_udp

LOST = (
    "*** The chat cluster is unreachable: you stay connected, but messages cannot be sent "
    "until it is back"
)
BACK = "*** The chat cluster is reachable again: messages can be sent"
NOT_SENT = "*** Message not sent: the chat cluster is unreachable; send it again when it is back"
TAKEN = "*** Nickname already in use"
LEASE_DEADLINE = 15.0
"""A dead node's names are free after its lease (5 s) and a heartbeat (1 s): well within."""


async def _redis(nursery: trio.Nursery, tmp_path: Path, persistent: bool) -> RedisServer:
    skip_without_redis()
    directory = tmp_path / "redis"
    directory.mkdir()
    server = RedisServer(nursery, directory, persistent=persistent)
    await server.start()
    return server


@pytest.fixture
async def redis(nursery: trio.Nursery, tmp_path: Path) -> AsyncIterator[RedisServer]:
    """A Redis that comes back empty when restarted."""
    server = await _redis(nursery, tmp_path, persistent=False)
    try:
        yield server
    finally:
        await server.aclose()


@pytest.fixture
async def durable_redis(nursery: trio.Nursery, tmp_path: Path) -> AsyncIterator[RedisServer]:
    """A Redis that keeps every write on disk, so a restart finds its stream again."""
    server = await _redis(nursery, tmp_path, persistent=True)
    try:
        yield server
    finally:
        await server.aclose()


async def start_node(
    harness: Harness, redis: RedisServer, label: str, *options: str, port: int = 0
) -> tuple[Program, int]:
    """A ChatServer node of the cluster; its port, from its banner."""
    node = await harness.start(
        "ChatServer.py",
        "--port",
        str(port),
        "--host",
        "127.0.0.1",
        "--cluster",
        redis.url,
        *options,
        label=label,
    )
    banner = rx("ChatServer started with server IP: 127.0.0.1, port: {port} ...")
    return node, int((await node.expect_next(banner)).group(1))


async def wait_for_members(peer: RawPeer, names: set[str]) -> None:
    """Ask ``/who`` until the answer lists exactly ``names`` (other nodes' joins travel
    through the stream, so a node learns of them a moment later)."""
    with trio.fail_after(TIMEOUT):
        while True:
            await peer.send(b"/who\n")
            answer = await peer.expect_line(rx("*** Members: {any}"))
            listed = answer.group(1).split(", ")
            for name in listed:  # then one line per member: its dialect and idle time
                await peer.expect_next(rx(f"***   {name} ({{any}})"))
            if set(listed) == names:
                return


# --- one room ---------------------------------------------------------------------------------


async def test_three_nodes_every_dialect_one_room(
    harness: Harness, nursery: trio.Nursery, redis: RedisServer
) -> None:
    one, port1 = await start_node(harness, redis, "node one")
    two, port2 = await start_node(harness, redis, "node two")
    three, port3 = await start_node(harness, redis, "node three")

    lina = await join_raw_line(harness, one, port1, "lina")
    jay = await harness.connect(port2, "jay")
    await jay.send(obj(type="nickname", nickname="Jay", clientID="J1", timestamp="x") + b"\n")
    await two.expect_line(rx("{dt} :: Jay: connected."))
    ulla = await raw_udp(nursery, "ulla", port3)
    await ulla.send(b"GREETING ulla")
    await three.expect_line(rx("{dt} :: ulla: connected."))
    await wait_for_members(lina, {"lina", "Jay", "ulla"})

    # A line member on node one: everyone else, on every node, in their own dialect.
    await lina.send(b"hello from one\n")
    got = await next_broadcast(jay)
    assert (got["nickname"], got["message"]) == ("lina", "hello from one")
    await ulla.expect(f"INCOMING 127.0.0.1 {lina.local_port} lina: hello from one".encode())
    # Each node prints what it sees; Broadcasted: lists its own recipients.
    for node, recipients in ((one, ""), (two, " Jay"), (three, " ulla")):
        await node.expect_line(received_json("lina", "-", 14))
        await node.expect_next(f"Broadcasted:{recipients}")

    # A JSON member on node two, then a datagram member on node three.
    await jay.send(obj(type="message", nickname="Jay", message="hi from two", timestamp="x"))
    await jay.send(b"\n")
    await lina.expect_line("Jay: hi from two")
    await ulla.expect(b"INCOMING 127.0.0.1 " + str(jay.local_port).encode() + b" Jay: hi from two")
    await ulla.send(b"MESSAGE and from three")
    await ulla.expect(f"INCOMING 127.0.0.1 {ulla.port} ulla: and from three".encode())
    await lina.expect_line("ulla: and from three")
    got = await next_broadcast(jay)
    assert (got["nickname"], got["message"]) == ("ulla", "and from three")
    await three.expect_line(received_json("ulla", "-", 14))
    await three.expect_next("Broadcasted: ulla")  # a datagram sender hears itself

    # Leaving on one node is seen by /who on another.
    await jay.send(obj(type="disconnect", nickname="Jay", clientID="J1") + b"\n")
    await two.expect_line(rx("{dt} :: Jay: disconnected."))
    await wait_for_members(lina, {"lina", "ulla"})


async def test_concurrent_senders_on_three_nodes_see_one_total_order(
    harness: Harness, nursery: trio.Nursery, redis: RedisServer
) -> None:
    """The property: every member's received sequence is the stream's one order, no gaps,
    whatever its node and its dialect."""
    nodes = [await start_node(harness, redis, f"node {index}") for index in range(3)]
    senders: list[RawPeer] = []
    watchers: list[RawPeer] = []
    for index, (node, port) in enumerate(nodes):
        watchers.append(await join_raw_line(harness, node, port, f"watcher{index}"))
        for number in range(2):
            senders.append(await join_raw_line(harness, node, port, f"s{index}{number}"))
    # A JSON watcher on node 1 and a datagram watcher on node 2.
    (node1, port1), (node2, port2) = nodes[1], nodes[2]
    jason = await harness.connect(port1, "jason")
    await jason.send(obj(type="nickname", nickname="jason", clientID="J", timestamp="x") + b"\n")
    await node1.expect_line(rx("{dt} :: jason: connected."))
    ulla = await raw_udp(nursery, "ulla", port2)
    await ulla.send(b"GREETING ulla")
    await node2.expect_line(rx("{dt} :: ulla: connected."))
    everyone = {peer.label for peer in senders + watchers} | {"jason", "ulla"}
    for watcher in watchers:
        await wait_for_members(watcher, everyone)

    count = 40
    rng = random.Random(13)

    async def send_all(peer: RawPeer) -> None:
        # Bursts of random sizes, so that the senders' messages interleave differently.
        numbers = list(range(count))
        while numbers:
            size = rng.randint(1, 8)
            burst, numbers = numbers[:size], numbers[size:]
            await peer.send(b"".join(f"{peer.label}-{n}\n".encode() for n in burst))
            await trio.lowlevel.checkpoint()

    async with trio.open_nursery() as nursery:
        for peer in senders:
            nursery.start_soon(send_all, peer)

    expected = {peer.label: [f"{peer.label}-{n}" for n in range(count)] for peer in senders}
    total = sum(len(messages) for messages in expected.values())
    orders: dict[str, list[str]] = {}
    for peer in watchers + senders:
        own = len(expected.get(peer.label, ()))
        lines = [await peer.next_line() for _ in range(total - own)]
        orders[peer.label] = [line.split(": ", 1)[1] for line in lines]
        for line in lines:  # "<sender>: <sender>-<n>": the name and the text agree
            sender, text = line.split(": ", 1)
            assert text.rsplit("-", 1)[0] == sender, line
    broadcasts = [await next_broadcast(jason) for _ in range(total)]
    orders["jason"] = [str(b["message"]) for b in broadcasts]
    assert all(str(b["message"]).startswith(f"{b['nickname']}-") for b in broadcasts)
    incoming = rx("INCOMING 127.0.0.1 {port} {any}")
    datagrams = []
    for _ in range(total):
        with trio.fail_after(TIMEOUT):
            line = (await ulla.receive()).decode()
        match = incoming.fullmatch(line)
        assert match is not None, line
        sender, text = match.group(2).split(": ", 1)
        assert text.rsplit("-", 1)[0] == sender, line
        datagrams.append(text)
    orders["ulla"] = datagrams
    reference = orders["watcher0"]
    # No gaps: every message once; and each sender's messages in the order it sent them.
    assert sorted(reference) == sorted(m for messages in expected.values() for m in messages)
    for sender, messages in expected.items():
        assert [m for m in reference if m.startswith(sender + "-")] == messages
    # One total order: every member's sequence is the reference without its own messages.
    for label, order in orders.items():
        assert order == [m for m in reference if not m.startswith(label + "-")], label


# --- names ------------------------------------------------------------------------------------


async def test_names_are_unique_across_nodes_and_races_have_one_winner(
    harness: Harness, nursery: trio.Nursery, redis: RedisServer
) -> None:
    one, port1 = await start_node(harness, redis, "node one")
    two, port2 = await start_node(harness, redis, "node two")
    winners: set[str] = set()
    for round_ in range(5):
        name = f"racer{round_}"
        first = await harness.connect(port1, f"{name} on one")
        second = await harness.connect(port2, f"{name.upper()} on two")
        async with trio.open_nursery() as race:
            race.start_soon(first.send, f"{name}\n".encode())
            race.start_soon(second.send, f"{name.upper()}\n".encode())
        # Exactly one of them is told the name is taken; the other is in.
        loser = await _first_refused(first, second)
        winner_node, winner = (one, name) if loser is second else (two, name.upper())
        await winner_node.expect_line(rx(f"{{dt}} :: {winner}: connected."))
        winners.add(winner)

    # A datagram member on node two cannot take a name held on node one.
    mia = await join_raw_line(harness, one, port1, "Mia")
    watcher = await join_raw_line(harness, two, port2, "watcher")
    await wait_for_members(watcher, winners | {"Mia", "watcher"})
    copycat = await raw_udp(nursery, "copycat", port2)
    await copycat.send(b"GREETING mia")
    await copycat.expect(b"ERROR Nickname already in use")
    await mia.send(b"still mine\n")
    await watcher.expect_line("Mia: still mine")


async def _first_refused(first: RawPeer, second: RawPeer) -> RawPeer:
    """Whichever of two racing peers is refused; the other must not be."""
    refused: list[RawPeer] = []

    async def watch(peer: RawPeer, cancel: trio.CancelScope) -> None:
        await peer.expect_line(TAKEN)
        refused.append(peer)
        cancel.cancel()

    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(watch, first, nursery.cancel_scope)
            nursery.start_soon(watch, second, nursery.cancel_scope)
    assert len(refused) == 1
    return refused[0]


async def test_a_killed_node_releases_its_names_and_the_others_go_on(
    harness: Harness, redis: RedisServer
) -> None:
    one, port1 = await start_node(harness, redis, "node one")
    two, port2 = await start_node(harness, redis, "node two")
    dave = await join_raw_line(harness, one, port1, "dave")
    first_carol = await join_raw_line(harness, two, port2, "carol")
    await wait_for_members(dave, {"dave", "carol"})

    # Node two dies in the middle of a burst: what Redis accepted from it reaches dave, all
    # of it, in order, once; what it had not sent yet was never accepted.
    await first_carol.send(b"".join(f"burst {n}\n".encode() for n in range(300)))
    await dave.expect_next("carol: burst 0")
    two.kill()
    await two.wait_exit()
    accepted = await accepted_texts(redis, "carol")
    assert accepted[:1] == ["burst 0"]
    assert accepted == [f"burst {n}" for n in range(len(accepted))]
    for text in accepted[1:]:
        await dave.expect_next(f"carol: {text}")
    # The name is free once node two's lease has run out: take it on node one. A refused
    # name makes the server take /who as the next try; an accepted one answers it.
    with trio.fail_after(LEASE_DEADLINE):
        while True:
            carol = await harness.connect(port1, "carol again")
            await carol.send(b"carol\n/who\n")
            first = await carol.next_line(LEASE_DEADLINE)
            if first.startswith("*** Members: "):
                break
            assert first == TAKEN, first
            await carol.aclose()
    await carol.send(b"I am back\n")
    await dave.expect_line("carol: I am back")
    await wait_for_members(dave, {"dave", "carol"})


async def accepted_texts(redis: RedisServer, sender: str) -> list[str]:
    """The texts of ``sender``'s messages in the room's stream, in stream order."""
    import coredis

    async with coredis.Redis(port=redis.port, decode_responses=True) as client:
        entries = await client.xrange("triochat:{lobby}:stream")
    texts = []
    for entry in entries:
        if entry.field_values["kind"] == "msg":
            message = json.loads(entry.field_values["data"])
            if message["sender"] == sender:
                texts.append(str(message["text"]))
    return texts


# --- Redis outages ----------------------------------------------------------------------------


async def test_redis_down_then_back_loses_and_repeats_nothing(
    harness: Harness, durable_redis: RedisServer
) -> None:
    one, port1 = await start_node(harness, durable_redis, "node one")
    two, port2 = await start_node(harness, durable_redis, "node two")
    amy = await join_raw_line(harness, one, port1, "amy")
    ben = await join_raw_line(harness, two, port2, "ben")
    await wait_for_members(amy, {"amy", "ben"})
    for n in range(3):
        await amy.send(f"before {n}\n".encode())
    for n in range(3):
        await ben.expect_line(f"amy: before {n}")

    durable_redis.kill()
    await amy.expect_next(LOST)
    await ben.expect_next(LOST)
    await amy.send(b"during\n")
    await amy.expect_next(NOT_SENT)

    await durable_redis.start()  # the same data, from its append-only file
    await amy.expect_next(BACK, within=LEASE_DEADLINE)
    await ben.expect_next(BACK, within=LEASE_DEADLINE)
    # Both nodes resume after the last entry they handled: nothing again, nothing missing.
    await amy.send(b"after\n")
    await ben.expect_next("amy: after")
    await ben.send(b"welcome back\n")
    await amy.expect_next("ben: welcome back")
    # The names survived too.
    copycat = await harness.connect(port1, "copycat")
    await copycat.send(b"BEN\n")
    await copycat.expect_next(TAKEN)


async def test_a_hung_redis_is_noticed_and_the_room_resumes(
    harness: Harness, redis: RedisServer
) -> None:
    one, port1 = await start_node(harness, redis, "node one")
    two, port2 = await start_node(harness, redis, "node two")
    amy = await join_raw_line(harness, one, port1, "amy")
    ben = await join_raw_line(harness, two, port2, "ben")
    await wait_for_members(amy, {"amy", "ben"})

    redis.pause()
    await amy.expect_next(LOST)
    await ben.expect_next(LOST)
    redis.resume()
    await amy.expect_next(BACK, within=LEASE_DEADLINE)
    await ben.expect_next(BACK, within=LEASE_DEADLINE)
    await amy.send(b"still one room\n")
    await ben.expect_next("amy: still one room")


async def test_redis_restarted_empty_gets_names_back_and_chat_goes_on(
    harness: Harness, redis: RedisServer
) -> None:
    one, port1 = await start_node(harness, redis, "node one")
    two, port2 = await start_node(harness, redis, "node two")
    amy = await join_raw_line(harness, one, port1, "amy")
    ben = await join_raw_line(harness, two, port2, "ben")
    await wait_for_members(amy, {"amy", "ben"})

    await redis.restart()  # empty: no stream, no names, no leases
    await amy.expect_next(LOST)
    await ben.expect_next(LOST)
    await amy.expect_next(BACK, within=LEASE_DEADLINE)
    await ben.expect_next(BACK, within=LEASE_DEADLINE)
    # Each node claimed its members' names again before it said so.
    copycat = await harness.connect(port1, "copycat")
    await copycat.send(b"Ben\n")
    await copycat.expect_next(TAKEN)
    await amy.send(b"after the restart\n")
    await ben.expect_next("amy: after the restart")
    await wait_for_members(ben, {"amy", "ben"})


# --- files and ports --------------------------------------------------------------------------


async def test_a_file_moves_between_menu_members_of_two_nodes(
    nursery: trio.Nursery, harness: Harness, redis: RedisServer, tmp_path: Path
) -> None:
    one, port1 = await start_node(harness, redis, "node one")
    two, port2 = await start_node(harness, redis, "node two")
    data = random.Random(7).randbytes(300_000)
    menus: list[Harness] = []
    try:
        alice = await menu_member(menus, nursery, tmp_path, one, port1, "alice", data)
        bob = await menu_member(menus, nursery, tmp_path, two, port2, "bob")
        watcher = await join_raw_line(harness, two, port2, "watcher")
        await wait_for_members(watcher, {"alice", "bob", "watcher"})

        # Bob's node runs the relay; Alice's node tells her which transfer to serve.
        await bob.request("alice", "notes.bin")
        await bob.program.expect_line(received("notes.bin", "alice", len(data)))
        assert (bob.directory / "notes.bin").read_bytes() == data
        await two.expect_line(rx("{dt} :: File notes.bin: alice -> bob, 300000 bytes, verified."))
        await alice.message("and chat goes on")
        await bob.program.expect_line("alice: and chat goes on")
    finally:
        for menu in menus:
            await menu.aclose()


async def menu_member(
    menus: list[Harness],
    nursery: trio.Nursery,
    root: Path,
    node: Program,
    port: int,
    name: str,
    data: bytes | None = None,
) -> MenuClient:
    """A menu client in ``root/name`` (holding ``notes.bin`` = ``data``), once joined."""
    directory = root / name
    directory.mkdir()
    if data is not None:
        (directory / "notes.bin").write_bytes(data)
    harness = Harness(nursery, directory)
    menus.append(harness)
    file_port = free_port()
    program = await harness.start(
        "ChatClient.py", "-l", str(file_port), "-p", str(port), label=f"menu {name}"
    )
    await program.send_line(name)
    for line in MENU:
        await program.expect_next(line)
    await node.expect_line(rx(f"{{dt}} :: {name}: connected."))
    return MenuClient(name, program, directory, file_port)


async def test_two_nodes_share_one_port(harness: Harness, redis: RedisServer) -> None:
    _, port = await start_node(harness, redis, "node one", "--reuse-port")
    _, same = await start_node(harness, redis, "node two", "--reuse-port", port=port)
    assert same == port
    peers = []
    for index in range(8):
        peer = await harness.connect(port, f"p{index}")
        await peer.send(f"p{index}\n".encode())
        peers.append(peer)
    names = {f"p{index}" for index in range(8)}
    await wait_for_members(peers[0], names)
    await peers[0].send(b"one address, every core\n")
    for peer in peers[1:]:
        await peer.expect_line("p0: one address, every core")


async def test_an_unreachable_redis_is_a_clear_error(harness: Harness) -> None:
    if importlib.util.find_spec("coredis") is None:
        pytest.skip("coredis is not installed (pip install -e '.[test]')")
    finished = await harness.run(
        "ChatServer.py", "--port", "0", "--cluster", f"redis://127.0.0.1:{free_port()}"
    )
    assert finished.code == 1
    assert finished.stdout[-1].startswith("ERR - cannot reach the cluster's Redis at redis://")
    assert "Traceback" not in finished.stderr


async def test_a_node_stopped_with_ctrl_c_frees_its_names_at_once(
    harness: Harness, redis: RedisServer
) -> None:
    import coredis

    one, port1 = await start_node(harness, redis, "node one")
    two, port2 = await start_node(harness, redis, "node two")
    zed = await join_raw_line(harness, one, port1, "zed")
    watcher = await join_raw_line(harness, two, port2, "watcher")
    await wait_for_members(watcher, {"zed", "watcher"})

    one.send_signal(signal.SIGINT)
    await zed.expect_line("*** Server shutting down")
    assert await one.wait_exit() == 0
    one.assert_no_traceback()
    # Gone from Redis before the node exited: no lease to wait for.
    async with coredis.Redis(port=redis.port, decode_responses=True) as client:
        assert await client.hkeys("triochat:{lobby}:names") == ("watcher",)
        leases = [key async for key in client.scan_iter(match="triochat:{lobby}:node:*")]
        assert len(leases) == 1
    # Node two read the leaves from the stream.
    await wait_for_members(watcher, {"watcher"})
    await join_raw_line(harness, two, port2, "zed")


async def test_without_coredis_cluster_is_one_err_line_and_the_default_needs_none(
    harness: Harness, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    blocked = tmp_path / "blocked"
    (blocked / "coredis").mkdir(parents=True)
    (blocked / "coredis" / "__init__.py").write_text("raise ImportError('not installed')\n")
    monkeypatch.setenv("PYTHONPATH", str(blocked))
    finished = await harness.run(
        "ChatServer.py", "--port", "0", "--cluster", "redis://127.0.0.1:6379"
    )
    assert finished.code == 1
    assert finished.stdout == ["ERR - --cluster needs coredis: pip install 'triochat[cluster]'"]
    # Without --cluster nothing imports it.
    _, port = await harness.start_chat_server()
    peer = await harness.connect(port, "solo")
    await peer.send(b"solo\n/who\n")
    await peer.expect_line("*** Members: solo")


async def test_private_messages_renames_and_presence_cross_nodes(
    harness: Harness, redis: RedisServer
) -> None:
    one, port1 = await start_node(harness, redis, "node one")
    two, port2 = await start_node(harness, redis, "node two")
    amy = await join_raw_line(harness, one, port1, "amy")
    ben = await join_raw_line(harness, two, port2, "ben")
    await wait_for_members(amy, {"amy", "ben"})

    await amy.send(b"/msg BEN just for you\n")
    await ben.expect_next("amy (private): just for you")
    await ben.send(b"/nick AMY\n")  # held on node one
    await ben.expect_next("*** Cannot rename to 'AMY': Nickname already in use")
    await ben.send(b"/nick benedict\n")
    await wait_for_members(amy, {"amy", "benedict"})
    await amy.send(b"/msg benedict still you?\n")
    await ben.expect_line("amy (private): still you?")
    await ben.send(b"/who\n")
    await ben.expect_line("*** Members: benedict, amy")
    await ben.expect_next(rx("***   benedict (line, idle {any})"))
    await ben.expect_next(rx("***   amy (line, idle {any})"))
