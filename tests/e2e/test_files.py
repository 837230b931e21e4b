"""Seed 001: ``ChatServer.py <port>`` and menu clients ``ChatClient.py -l <p> -p <port>``.

Real processes on 127.0.0.1; every menu client runs in its own directory (its share
directory, where requested files land). Tests wait for lines, never for fixed times.
"""

from __future__ import annotations

import hashlib
import os
import re
import stat
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import trio

from .harness import DT, Harness, LineLog, Pattern, Program, free_port, rx

MENU = (
    "Enter an option ('m', 'f', 'x'):",
    "  (M)essage (send)",
    "  (F)ile (request)",
    " e(X)it",
)
GOODBYE = "closing your sockets...goodbye"
BIG = 60.0
"""Deadline for conditions that wait on a transfer of hundreds of MiB."""
BIG_SIZE = 200 * 1024 * 1024


@dataclass
class MenuClient:
    """One menu client process, its working directory and its file port."""

    name: str
    program: Program
    directory: Path
    file_port: int

    async def message(self, text: str) -> None:
        """Menu option ``m``: send ``text`` to the room."""
        await self.program.send_line("m")
        await self.program.send_line(text)

    async def request(self, owner: str, filename: str) -> None:
        """Menu option ``f``: ask ``owner`` for ``filename``."""
        await self.program.send_line("f")
        await self.program.send_line(owner)
        await self.program.send_line(filename)

    async def leave(self) -> None:
        """Menu option ``x``: the goodbye line, then exit 0."""
        await self.program.send_line("x")
        await self.program.expect_line(GOODBYE)
        assert await self.program.wait_exit() == 0
        self.program.assert_no_traceback()

    @property
    def lines(self) -> list[str]:
        return self.program.stdout.lines


class Room:
    """A ChatServer and the menu clients joined to it, each in its own directory."""

    def __init__(self, nursery: trio.Nursery, server_harness: Harness, root: Path) -> None:
        self.nursery = nursery
        self.server_harness = server_harness
        self.root = root
        self.harnesses: list[Harness] = []
        self.server: Program
        self.port = 0

    async def start(self) -> None:
        self.server, self.port = await self.server_harness.start_chat_server()

    async def join(self, name: str, files: dict[str, bytes] | None = None) -> MenuClient:
        """Start a menu client in ``root/name`` holding ``files``; wait until it has joined."""
        directory = self.root / name
        directory.mkdir()
        for filename, data in (files or {}).items():
            (directory / filename).write_bytes(data)
        harness = Harness(self.nursery, directory)
        self.harnesses.append(harness)
        for _attempt in range(5):
            file_port = free_port()
            program = await harness.start(
                "ChatClient.py", "-l", str(file_port), "-p", str(self.port), label=f"menu {name}"
            )
            await program.send_line(name)
            try:
                await program.expect_next(MENU[0])
            except AssertionError:
                await program.wait_exit()
                if "Cannot listen" in program.stderr:
                    continue  # someone took the port meanwhile: try another
                raise
            for line in MENU[1:]:
                await program.expect_next(line)
            await self.server.expect_line(rx(f"{{dt}} :: {name}: connected."))
            return MenuClient(name, program, directory, file_port)
        raise AssertionError(f"no free file port for {name} after 5 tries")

    async def aclose(self) -> None:
        for harness in self.harnesses:
            await harness.aclose()


@pytest.fixture
async def room(nursery: trio.Nursery, harness: Harness, tmp_path: Path) -> AsyncIterator[Room]:
    """A running ChatServer; menu clients join with :meth:`Room.join`; all are killed after."""
    started = Room(nursery, harness, tmp_path)
    try:
        await started.start()
        yield started
    finally:
        await started.aclose()


@dataclass(frozen=True)
class BigFile:
    path: Path
    sha256: str


@pytest.fixture(scope="module")
def big_file(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BigFile]:
    """200 MiB of random bytes, made once per module (tests hard-link it into a directory)."""
    path = tmp_path_factory.mktemp("big") / "big.bin"
    digest = hashlib.sha256()
    with path.open("wb") as file:
        for _ in range(BIG_SIZE // (1024 * 1024)):
            block = os.urandom(1024 * 1024)
            digest.update(block)
            file.write(block)
    yield BigFile(path, digest.hexdigest())
    path.unlink()


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        while block := file.read(1024 * 1024):
            digest.update(block)
    return digest.hexdigest()


def received(filename: str, owner: str, size: int) -> str:
    return f"File {filename} received from {owner}: {size} bytes, verified"


def failed(filename: str, owner: str, reason: str | None = None) -> Pattern:
    if reason is not None:
        return f"File {filename} from {owner} failed: {reason}"
    return rx(f"File {filename} from {owner} failed: {{any}}")


async def expect_all(log: LineLog, patterns: Iterable[Pattern], within: float = 10.0) -> None:
    """Every pattern matches some line at or after the cursor, in any order."""
    start = end = log.cursor
    for pattern in patterns:
        log.cursor = start
        await log.expect_line(pattern, within)
        end = max(end, log.cursor)
    log.cursor = end


def temp_files(directory: Path) -> list[str]:
    return [name for name in os.listdir(directory) if name.endswith(".part")]


def new_file_mode() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


async def wait_until(condition: str, check: Callable[[], bool], within: float = 10.0) -> None:
    """Poll ``check()`` (a cheap file-system look) until it is true."""
    with trio.move_on_after(within):
        while True:
            if check():
                return
            await trio.sleep(0.005)  # nothing to wait on: the file system has no events here
    raise AssertionError(f"not true within {within} s: {condition}")


# --- tests ------------------------------------------------------------------------------------


async def test_seed_001_transcript_is_exact(room: Room) -> None:
    photo = os.urandom(300_000)
    client1 = await room.join("client1", {"Ameca_splendens.jpg": photo})
    client2 = await room.join("client2")
    out = client2.program

    await client2.message("hello!")
    await out.expect_next("Enter your message:")
    for line in MENU:
        await out.expect_next(line)
    await client1.program.expect_line("client2: hello!")

    await client2.request("client1", "Ameca_splendens.jpg")
    await out.expect_next("Who owns the file?")
    await out.expect_next("Which file do you want?")
    for line in MENU:  # at once, while the file is on its way
        await out.expect_next(line)
    await out.expect_next(received("Ameca_splendens.jpg", "client1", len(photo)))
    assert (client2.directory / "Ameca_splendens.jpg").read_bytes() == photo

    await client2.message("another important message!")
    await out.expect_next("Enter your message:")
    for line in MENU:
        await out.expect_next(line)
    await client1.program.expect_line("client2: another important message!")

    await out.send_line("x")
    await out.expect_next(GOODBYE)
    assert await out.wait_exit() == 0
    out.assert_consumed()
    assert out.stderr == ""
    await room.server.expect_line(rx("{dt} :: client2: disconnected."))

    # The owner saw the chat and nothing about serving the file.
    assert [line for line in client1.lines if not line.startswith(MENU)] == [
        "client2: hello!",
        "client2: another important message!",
    ]
    await client1.leave()
    assert sorted(os.listdir(client2.directory)) == ["Ameca_splendens.jpg"]
    assert sorted(os.listdir(client1.directory)) == ["Ameca_splendens.jpg"]


async def test_files_both_ways_while_chatting(room: Room) -> None:
    notes = "Grüße, 你好\r\nline two\n\ttabbed\n".encode() * 500
    every = bytes(range(256)) * 4096
    noise = os.urandom(5 * 1024 * 1024 + 17)
    alice = await room.join("alice", {"notes.txt": notes, "every.bin": every})
    bob = await room.join("bob", {"noise.bin": noise})
    carol = await room.join("carol")

    await bob.request("alice", "notes.txt")
    await bob.request("alice", "every.bin")
    await alice.request("bob", "noise.bin")
    await bob.message("bob chats during transfers")
    await alice.message("alice chats too")
    await carol.message("carol says hi")
    await carol.request("alice", "every.bin")

    await expect_all(
        bob.program.stdout,
        [
            received("notes.txt", "alice", len(notes)),
            received("every.bin", "alice", len(every)),
            "alice: alice chats too",
            "carol: carol says hi",
        ],
        within=30,
    )
    await expect_all(
        alice.program.stdout,
        [
            received("noise.bin", "bob", len(noise)),
            "bob: bob chats during transfers",
            "carol: carol says hi",
        ],
        within=30,
    )
    await expect_all(
        carol.program.stdout,
        [
            received("every.bin", "alice", len(every)),
            "alice: alice chats too",
            "bob: bob chats during transfers",
        ],
        within=30,
    )
    for client, filename, original in [
        (bob, "notes.txt", notes),
        (bob, "every.bin", every),
        (alice, "noise.bin", noise),
        (carol, "every.bin", every),
    ]:
        path = client.directory / filename
        assert sha256_of(path) == hashlib.sha256(original).hexdigest()
        assert stat.S_IMODE(path.stat().st_mode) == new_file_mode()
    for client in (alice, bob, carol):
        assert temp_files(client.directory) == []
        # Nobody hears their own messages back; no failures anywhere.
        assert not any(line.startswith(f"{client.name}: ") for line in client.lines)
        assert not any(" failed: " in line for line in client.lines)
    for client in (alice, bob, carol):
        await client.leave()


async def test_missing_files_and_path_tricks_fail_and_nobody_stops(room: Room) -> None:
    (room.root / "secret.txt").write_bytes(b"top secret")
    alice = await room.join("alice", {"shared.txt": b"fine"})
    (alice.directory / "link.txt").symlink_to(Path("..") / "secret.txt")
    bob = await room.join("bob")
    carol = await room.join("carol")
    before = {path: sorted(os.listdir(path)) for path in (room.root, alice.directory)}

    await bob.request("alice", "nope.txt")
    await bob.program.expect_line(failed("nope.txt", "alice", "no such file"))
    for filename in ("../secret.txt", "/etc/passwd", "link.txt", ".", "..", "../alice/shared.txt"):
        await bob.request("alice", filename)
        await bob.program.expect_line(failed(filename, "alice"))
    await bob.request("zed", "shared.txt")  # nobody called zed has joined (yet)
    await bob.program.expect_line(
        failed("shared.txt", "zed", "no member of that name is in the room (yet)")
    )
    await room.server.expect_line(
        re.compile(
            DT
            + re.escape(
                " :: File shared.txt: zed -> bob failed: "
                "no member of that name is in the room (yet)."
            )
        )
    )
    await bob.request("bob", "anything.txt")
    await bob.program.expect_line(failed("anything.txt", "bob"))

    # Everyone keeps running: chat still flows, and a proper request still works.
    await alice.message("still here")
    await expect_all(bob.program.stdout, ["alice: still here"])
    await carol.program.expect_line("alice: still here")
    await bob.message("me too")
    await alice.program.expect_line("bob: me too")
    await bob.request("alice", "shared.txt")
    await bob.program.expect_line(received("shared.txt", "alice", 4))

    assert sorted(os.listdir(bob.directory)) == ["shared.txt"]
    assert (bob.directory / "shared.txt").read_bytes() == b"fine"
    assert {path: sorted(os.listdir(path)) for path in (room.root, alice.directory)} == before
    assert not any(" received " in line for line in alice.lines + carol.lines)
    for client in (alice, bob, carol):
        assert client.program.returncode is None
    for client in (alice, bob, carol):
        await client.leave()


async def test_owner_killed_mid_transfer_leaves_no_partial_file(
    room: Room, big_file: BigFile
) -> None:
    alice = await room.join("alice")
    os.link(big_file.path, alice.directory / "big.bin")
    bob = await room.join("bob")
    carol = await room.join("carol")

    await bob.request("alice", "big.bin")

    def transfer_under_way() -> bool:
        return any(
            (bob.directory / name).stat().st_size >= 8 * 1024 * 1024
            for name in temp_files(bob.directory)
        )

    await wait_until("bob's temporary file holds 8 MiB", transfer_under_way, within=BIG)
    alice.program.kill()
    await alice.program.wait_exit()

    await bob.program.expect_line(failed("big.bin", "alice"), within=BIG)
    await room.server.expect_line(rx("{dt} :: alice: disconnected."))
    await wait_until(
        "bob's temporary file is gone", lambda: temp_files(bob.directory) == [], within=BIG
    )
    assert os.listdir(bob.directory) == []
    assert not any(line.startswith("File big.bin received") for line in bob.lines)

    # The requester still works: chat both ways, and another transfer.
    await bob.message("bob is fine")
    await carol.program.expect_line("bob: bob is fine")
    await carol.message("so is carol")
    await bob.program.expect_line("carol: so is carol")
    (carol.directory / "after.txt").write_bytes(b"after the crash")
    await bob.request("carol", "after.txt")
    await bob.program.expect_line(received("after.txt", "carol", 15))
    for client in (bob, carol):
        await client.leave()


async def test_200_mib_file_arrives_byte_exact(room: Room, big_file: BigFile) -> None:
    alice = await room.join("alice")
    os.link(big_file.path, alice.directory / "big.bin")
    bob = await room.join("bob")
    carol = await room.join("carol")

    await bob.request("alice", "big.bin")
    # Chat keeps flowing while the file is on its way.
    await carol.message("chatting during a big transfer")
    await expect_all(
        bob.program.stdout,
        [received("big.bin", "alice", BIG_SIZE), "carol: chatting during a big transfer"],
        within=BIG,
    )
    await alice.program.expect_line("carol: chatting during a big transfer")
    path = bob.directory / "big.bin"
    assert path.stat().st_size == BIG_SIZE
    assert sha256_of(path) == big_file.sha256
    assert stat.S_IMODE(path.stat().st_mode) == new_file_mode()
    assert sorted(os.listdir(bob.directory)) == ["big.bin"]
    for client in (alice, bob, carol):
        await client.leave()


async def test_stranger_with_garbage_on_a_file_port_gets_nothing(
    room: Room, harness: Harness
) -> None:
    alice = await room.join("alice", {"a.txt": b"secret"})
    bob = await room.join("bob")
    stranger = await harness.connect(alice.file_port, "stranger")
    await stranger.send(b"GET /a.txt HTTP/1.0\r\n\r\n")
    await stranger.log.expect_closed()
    assert stranger.log.lines == []
    await alice.message("unbothered")
    await bob.program.expect_line("alice: unbothered")
    assert alice.program.returncode is None
    for client in (alice, bob):
        await client.leave()


async def test_stranger_with_made_up_token_gets_nothing(room: Room, harness: Harness) -> None:
    # Regression: the client used to die 5 s later (UnboundLocalError in FileAgent.handle).
    alice = await room.join("alice", {"a.txt": b"secret"})
    bob = await room.join("bob")
    stranger = await harness.connect(alice.file_port, "stranger")
    await stranger.send(b'{"token":"deadbeef"}\n')
    await stranger.log.expect_closed(within=15)
    assert stranger.log.lines == []
    # Alice is still there: she hears bob, and bob hears her.
    await bob.message("are you there?")
    await alice.program.expect_line("bob: are you there?")
    await alice.message("unbothered")
    await bob.program.expect_line("alice: unbothered")
    assert alice.program.returncode is None
    assert "Traceback" not in alice.program.stderr
    assert "internal error" not in alice.program.stderr
    await alice.leave()


def test_helpers_match_the_seed_wording() -> None:
    assert received("a.jpg", "client1", 5) == "File a.jpg received from client1: 5 bytes, verified"
    pattern = failed("../x", "alice")
    assert isinstance(pattern, re.Pattern)
    assert pattern.fullmatch("File ../x from alice failed: not a plain file name")
    assert not pattern.fullmatch("File ../y from alice failed: whatever")
