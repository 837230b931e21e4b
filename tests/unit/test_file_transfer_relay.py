"""The file relay between real agents (SPEC §6): whole files both ways and at once, and
requests refused before anything is dialled."""

from __future__ import annotations

import hashlib
import random
from pathlib import Path

import pytest
import trio
import trio.testing

from triochat.events import FileAnnouncement, FileFailed, TransferRole
from triochat.server.relay import MAX_TRANSFERS

from .file_transfer_helpers import World, in_world, listing, temp_files


async def test_relay_moves_every_byte_value_and_a_large_random_file(tmp_path: Path) -> None:
    all_bytes = bytes(range(256)) * 1024
    large = random.Random(3).randbytes(3 * 1024 * 1024 + 12345)

    async def body(world: World) -> None:
        alice = world.add("alice", 7001)
        bob = world.add("bob", 7002)
        (alice.share / "all_bytes.bin").write_bytes(all_bytes)
        (alice.share / "large.bin").write_bytes(large)
        world.request(bob, "alice", "all_bytes.bin")
        await world.observer.wait_for(1)
        world.request(bob, "Alice", "large.bin")  # names are case-insensitive
        await world.observer.wait_for(2)
        assert world.observer.failed == []
        assert world.observer.finished == [
            ("all_bytes.bin", "alice", "bob", len(all_bytes)),
            ("large.bin", "alice", "bob", len(large)),
        ]
        assert (bob.share / "all_bytes.bin").read_bytes() == all_bytes
        assert hashlib.sha256((bob.share / "large.bin").read_bytes()).digest() == (
            hashlib.sha256(large).digest()
        )
        assert listing(bob.share) == {"all_bytes.bin", "large.bin"}
        assert bob.reports.lines == [
            f"File all_bytes.bin received from alice: {len(all_bytes)} bytes, verified",
            f"File large.bin received from alice: {len(large)} bytes, verified",
        ]
        assert alice.reports.lines == []
        assert world.dials == [("127.0.0.1", 7001), ("127.0.0.1", 7002)] * 2
        # Each side heard of the transfer over its own chat connection, with its own token.
        (fetch_one, fetch_two) = alice.told(FileAnnouncement)
        (deliver_one, deliver_two) = bob.told(FileAnnouncement)
        assert (fetch_one.role, fetch_one.filename, fetch_one.peer) == (
            TransferRole.FETCH,
            "all_bytes.bin",
            "bob",
        )
        assert (deliver_one.role, deliver_one.filename, deliver_one.peer) == (
            TransferRole.DELIVER,
            "all_bytes.bin",
            "alice",
        )
        tokens = {fetch_one.token, fetch_two.token, deliver_one.token, deliver_two.token}
        assert len(tokens) == 4
        assert all(len(token) >= 32 for token in tokens)
        assert world.relay.stats.completed == 2
        assert world.relay.stats.bytes_relayed == len(all_bytes) + len(large)

    await in_world(tmp_path, body)


async def test_relay_runs_several_transfers_at_once_both_ways(tmp_path: Path) -> None:
    rng = random.Random(4)
    files = {
        ("alice", "a-empty"): b"",
        ("alice", "a-one"): b"\x00",
        ("alice", "a-mid.bin"): rng.randbytes(700_000),
        ("bob", "b-big.bin"): rng.randbytes(1_300_000),
        ("bob", "b-text.txt"): "ünïcode text\r\nwith lines\n".encode() * 1000,
        ("carol", "c-bytes"): bytes(range(256)) * 3000,
    }
    requests = [
        ("bob", "alice", "a-empty"),
        ("bob", "alice", "a-one"),
        ("bob", "alice", "a-mid.bin"),
        ("carol", "alice", "a-mid.bin"),
        ("alice", "bob", "b-big.bin"),
        ("alice", "bob", "b-text.txt"),
        ("carol", "bob", "b-big.bin"),
        ("alice", "carol", "c-bytes"),
        ("bob", "carol", "c-bytes"),
    ]

    async def body(world: World) -> None:
        peers = {name: world.add(name, port) for name, port in [("alice", 1), ("bob", 2)]}
        peers["carol"] = world.add("carol", 3)
        for (owner, filename), data in files.items():
            (peers[owner].share / filename).write_bytes(data)
        for requester, owner, filename in requests:
            world.request(peers[requester], owner, filename)
        assert world.relay.stats.started == len(requests)
        await world.observer.wait_for(len(requests))
        assert world.observer.failed == []
        assert sorted(world.observer.finished) == sorted(
            (filename, owner, requester, len(files[owner, filename]))
            for requester, owner, filename in requests
        )
        for requester, owner, filename in requests:
            assert (peers[requester].share / filename).read_bytes() == files[owner, filename]
        for peer in peers.values():
            assert temp_files(peer.share) == []
        assert sorted(peers["bob"].reports.lines) == sorted(
            f"File {filename} received from {owner}: {len(files[owner, filename])} bytes, verified"
            for requester, owner, filename in requests
            if requester == "bob"
        )

    await in_world(tmp_path, body)


REFUSALS = [
    ("nobody", "a.txt", "no member of that name is in the room (yet)"),
    ("carol", "a.txt", "carol does not share files"),
    ("bob", "a.txt", "you own that file already"),
    ("alice", "../x", "not a plain file name"),
    ("alice", "/etc/passwd", "not a plain file name"),
    ("alice", ".hidden", "not a plain file name"),
    ("alice", "", "not a plain file name"),
]


@pytest.mark.parametrize(("owner", "filename", "reason"), REFUSALS)
async def test_impossible_requests_fail_at_once(
    tmp_path: Path, owner: str, filename: str, reason: str
) -> None:
    async def body(world: World) -> None:
        alice = world.add("alice", 7001, pump=False)
        bob = world.add("bob", 7002, pump=False)
        carol = world.add("carol", None, pump=False)
        world.request(bob, owner, filename)
        failed = bob.inbox.receive_nowait().event
        assert failed == FileFailed("", filename, owner, reason)
        for peer in (alice, bob, carol):
            with pytest.raises(trio.WouldBlock):
                peer.inbox.receive_nowait()
        assert world.dials == []
        assert world.relay.stats.started == 0
        await trio.testing.wait_all_tasks_blocked()
        # The console says so too (a line per refusal), and nothing finished.
        assert world.observer.failed == [(filename, owner, "bob", reason)]
        assert world.observer.finished == []

    await in_world(tmp_path, body)


async def test_requester_without_file_port_fails_at_once(tmp_path: Path) -> None:
    async def body(world: World) -> None:
        alice = world.add("alice", 7001, pump=False)
        dave = world.add("dave", None, pump=False)
        world.request(dave, "alice", "a.txt")
        failed = dave.inbox.receive_nowait().event
        assert isinstance(failed, FileFailed)
        assert (failed.filename, failed.owner) == ("a.txt", "alice")
        assert "file port" in failed.reason
        with pytest.raises(trio.WouldBlock):
            alice.inbox.receive_nowait()
        assert world.dials == []

    await in_world(tmp_path, body)


async def test_too_many_transfers_are_refused_until_some_end(tmp_path: Path) -> None:
    async def body(world: World) -> None:
        world.add("alice", 7001, pump=False)
        bob = world.add("bob", 7002, pump=False)
        world.hold = trio.Event()
        world.refuse.add(7001)
        for index in range(MAX_TRANSFERS):
            world.request(bob, "alice", f"f{index}")
        world.request(bob, "alice", "one-too-many")
        told = [bob.inbox.receive_nowait().event for _ in range(MAX_TRANSFERS + 1)]
        assert all(isinstance(event, FileAnnouncement) for event in told[:-1])
        assert isinstance(told[-1], FileFailed)
        assert "too many transfers" in told[-1].reason
        # The dials fail; each transfer ends and makes room again.
        world.hold.set()
        await world.observer.wait_for(MAX_TRANSFERS + 1)  # the refusal is on the console too
        assert len(world.observer.failed) == MAX_TRANSFERS + 1
        world.hold = None
        world.request(bob, "alice", "now-there-is-room")
        while isinstance(event := bob.inbox.receive_nowait().event, FileFailed):
            pass
        assert isinstance(event, FileAnnouncement)
        assert event.filename == "now-there-is-room"

    await in_world(tmp_path, body)
