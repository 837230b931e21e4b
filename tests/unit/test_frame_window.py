"""FrameWindow and FrameRun: a transfer's frames received and verified where they land.

Run over in-memory streams (FileLink's ``receive_some`` fallback) and over a real socket pair
(its direct ``readv`` path). What matters: runs are whole verified frames in order, the
senders' frame size moves nothing and needs at most two buffers, odd sizes and large frames
still work, and a reader that holds its runs holds back the receiving (the backpressure).
"""

from __future__ import annotations

import ctypes
import itertools
import mmap
import socket
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass

import pytest
import trio
import trio.testing
import xxhash

from triochat.transfer_io import (
    SLAB_SIZE,
    FileLink,
    FrameRun,
    FrameWindow,
    TransferCutShort,
    TransferError,
)
from triochat.wire.chunks import (
    CHUNK_SIZE,
    FRAME_OVERHEAD,
    FRAME_PREFIX_SIZE,
    MAX_CHUNK_PAYLOAD,
    FrameScanner,
    encode_data,
    encode_end,
    encode_error,
)
from triochat.wire.common import RemoteProtocolError

STALL = 30.0
"""The links' stall timeout: never reached by a healthy test."""

Pair = Callable[[], tuple[trio.abc.Stream, trio.abc.Stream]]


def memory_pair() -> tuple[trio.abc.Stream, trio.abc.Stream]:
    return trio.testing.memory_stream_pair()


def socket_pair() -> tuple[trio.abc.Stream, trio.abc.Stream]:
    left, right = socket.socketpair()
    return (
        trio.SocketStream(trio.socket.from_stdlib_socket(left)),
        trio.SocketStream(trio.socket.from_stdlib_socket(right)),
    )


PAIRS = pytest.mark.parametrize("pair", [memory_pair, socket_pair], ids=["memory", "socket"])


def file_stream(chunks: list[bytes]) -> bytes:
    """Data frames for ``chunks``, then the honest end frame."""
    data = b"".join(chunks)
    return b"".join(encode_data(chunk) for chunk in chunks) + encode_end(
        len(data), xxhash.xxh3_128_digest(data)
    )


def patterned(size: int, seed: int = 0) -> bytes:
    """``size`` bytes that differ from chunk to chunk (so a misplaced chunk shows)."""
    return bytes((seed + index) % 251 for index in range(251)) * (size // 251) + bytes(size % 251)


@asynccontextmanager
async def window_over(
    pair: Pair,
    stream: bytes,
    *,
    close: bool = True,
    first: bytes = b"",
    buffers: int = 2,
    capacity: int = SLAB_SIZE,
    aligned: bool = False,
) -> AsyncIterator[tuple[FrameWindow, FrameScanner]]:
    """A window (and its scanner) reading ``stream`` from a peer that sends it all (then
    closes) in the background, as fast as the window lets it."""
    ours, theirs = pair()

    async def send() -> None:
        await theirs.send_all(stream)
        if close:
            await theirs.aclose()

    async with ours, theirs, trio.open_nursery() as nursery:
        nursery.start_soon(send)
        scanner = FrameScanner()
        link = FileLink(ours, STALL)
        window = FrameWindow(
            link, scanner, first, buffers=buffers, capacity=capacity, aligned=aligned
        )
        yield window, scanner
        nursery.cancel_scope.cancel()


def address(view: memoryview | bytearray | mmap.mmap) -> int:
    """Where a (non-empty, writable) buffer's first byte lies in memory."""
    return ctypes.addressof(ctypes.c_char.from_buffer(view))


@dataclass(frozen=True)
class Seen:
    """What a run held when it was handed out: copied then, since once released its buffer
    is received into again (``owner`` is the buffer itself, for identity checks)."""

    frames: bytes
    payloads: list[bytes]
    owner: object
    owner_size: int
    offset: int
    """Where the run starts in its buffer's memory (a plain buffer's start is 0; an aligned
    one starts FRAME_PREFIX_SIZE bytes before its first page boundary)."""
    payload_page_offsets: list[int]
    """Where each non-empty payload starts within its memory page."""

    @property
    def at_start(self) -> bool:
        """The run begins at the start of its buffer."""
        if isinstance(self.owner, mmap.mmap):
            return self.offset == mmap.PAGESIZE - FRAME_PREFIX_SIZE
        return self.offset == 0


def seen(run: FrameRun) -> Seen:
    owner = run.frames.obj
    assert isinstance(owner, bytearray | mmap.mmap)
    for payload in run.payloads:
        assert payload.obj is owner  # payloads are views into the same buffer
    return Seen(
        frames=bytes(run.frames),
        payloads=[bytes(payload) for payload in run.payloads],
        owner=owner,
        owner_size=len(owner),
        offset=address(run.frames) - address(owner),
        payload_page_offsets=[
            address(payload) % mmap.PAGESIZE for payload in run.payloads if len(payload)
        ],
    )


async def all_runs(
    window: FrameWindow, scanner: FrameScanner, *, payloads: bool = False, hold: bool = True
) -> list[Seen]:
    """Runs until the end or error frame. With ``hold`` each is released only once the next
    one is in hand (a reader a run behind, like the requester's writer); without, each is
    released before the next is asked for (like the relay, which sends, then releases)."""
    runs: list[Seen] = []
    held: FrameRun | None = None
    while not runs or not scanner.finished:
        run = await window.next_run(payloads=payloads)
        runs.append(seen(run))
        if held is not None:
            held.release()
        held = run
        if not hold:
            run.release()
            held = None
    if held is not None:
        held.release()
    return runs


# --- runs are the frames as sent ---------------------------------------------------------------


@PAIRS
async def test_runs_are_whole_frames_that_add_up_to_the_stream(pair: Pair) -> None:
    chunks = [patterned(size, seed) for seed, size in enumerate([0, 1, 300, 5000, 70_000, 17])]
    stream = file_stream(chunks)
    async with window_over(pair, stream) as (window, scanner):
        runs = await all_runs(window, scanner)
        assert b"".join(run.frames for run in runs) == stream
        assert scanner.size == sum(map(len, chunks))


@PAIRS
async def test_payloads_are_views_into_the_runs_buffer(pair: Pair) -> None:
    chunks = [patterned(size, seed) for seed, size in enumerate([10, 0, 4000, 123])]
    async with window_over(pair, file_stream(chunks)) as (window, scanner):
        got: list[bytes] = []
        while not scanner.finished:
            run = await window.next_run(payloads=True)
            assert all(payload.obj is run.frames.obj for payload in run.payloads)
            got += [bytes(payload) for payload in run.payloads]
            run.release()
        assert got == chunks


async def test_without_payloads_the_run_has_none() -> None:
    async with window_over(memory_pair, file_stream([b"abc"])) as (window, _):
        run = await window.next_run()
        assert run.payloads == []
        assert bytes(run.frames).startswith(encode_data(b"abc"))


@PAIRS
async def test_an_error_frame_ends_the_runs_with_the_failure(pair: Pair) -> None:
    stream = encode_data(b"part") + encode_error("the disk went away")
    async with window_over(pair, stream) as (window, scanner):
        runs = await all_runs(window, scanner)
        assert b"".join(run.frames for run in runs) == stream
        assert scanner.failure == "the disk went away"


# --- buffers: the senders' frame size moves nothing --------------------------------------------


@PAIRS
async def test_sender_sized_frames_fill_whole_buffers_and_two_suffice(pair: Pair) -> None:
    # SLAB_SIZE is one frame of CHUNK_SIZE payload: each data run is exactly one whole buffer
    # (so it starts at offset 0 and nothing was moved to make room), and holding one run while
    # the next arrives needs no more than two buffers.
    chunks = [patterned(CHUNK_SIZE, seed) for seed in range(5)]
    stream = file_stream(chunks)
    async with window_over(pair, stream) as (window, scanner):
        runs = await all_runs(window, scanner)
    assert b"".join(run.frames for run in runs) == stream
    data_runs, last = runs[:-1], runs[-1]
    assert len(data_runs) == len(chunks)
    for run in data_runs:
        assert len(run.frames) == run.owner_size == SLAB_SIZE
    assert len({id(run.owner) for run in runs}) <= 2
    assert last.at_start  # the end frame starts the next buffer


@PAIRS
async def test_released_runs_let_one_buffer_serve_every_frame(pair: Pair) -> None:
    # A reader that releases each run before asking for the next never needs a second buffer.
    chunks = [patterned(CHUNK_SIZE, seed) for seed in range(3)]
    async with window_over(pair, file_stream(chunks)) as (window, scanner):
        owners = set()
        while not scanner.finished:
            run = await window.next_run()
            owners.add(id(run.frames.obj))
            run.release()
    assert len(owners) == 1


@PAIRS
async def test_a_frame_that_straddles_a_buffer_end_is_moved_and_still_verifies(
    pair: Pair,
) -> None:
    # Frames of 39 bytes in 100-byte buffers: the third frame would cross the end of the first
    # buffer, so the part already received goes to the start of another one.
    chunks = [patterned(30, seed) for seed in range(7)]
    stream = file_stream(chunks)
    async with window_over(pair, stream, capacity=100) as (window, scanner):
        runs = await all_runs(window, scanner, payloads=True)
    assert b"".join(run.frames for run in runs) == stream
    assert [payload for run in runs for payload in run.payloads] == chunks
    assert all(len(run.frames) <= 100 for run in runs)
    moved = [run for run in runs[1:] if run.owner is not runs[0].owner]
    assert moved, "no run landed in a second buffer"
    assert moved[0].at_start


@pytest.mark.parametrize(("hold", "buffers"), [(False, 2), (True, 3)], ids=["relay", "behind"])
@pytest.mark.parametrize("payload_size", [100_000, MAX_CHUNK_PAYLOAD])
@PAIRS
async def test_a_frame_larger_than_the_buffers_grows_one(
    pair: Pair, payload_size: int, hold: bool, buffers: int
) -> None:
    # Receivers accept frames up to MAX_CHUNK_PAYLOAD whatever the senders' usual size.
    chunks = [patterned(1000), patterned(payload_size, 1), patterned(payload_size, 2), b"end"]
    stream = file_stream(chunks)
    async with window_over(pair, stream, capacity=64 * 1024, buffers=buffers) as (
        window,
        scanner,
    ):
        runs = await all_runs(window, scanner, payloads=True, hold=hold)
    assert b"".join(run.frames for run in runs) == stream
    assert [payload for run in runs for payload in run.payloads] == chunks
    big = [run for run in runs if len(run.frames) >= payload_size]
    assert big
    assert all(run.owner_size >= payload_size + FRAME_OVERHEAD for run in big)
    assert len({id(run.owner) for run in runs}) <= buffers


@PAIRS
async def test_aligned_buffers_put_each_sender_sized_payload_on_a_page_boundary(
    pair: Pair,
) -> None:
    # The requester writes these payloads with O_DIRECT, straight from the buffer: that needs
    # page-aligned memory, which only holds if every frame lands at the start of a buffer.
    chunks = [patterned(CHUNK_SIZE, seed) for seed in range(4)]
    stream = file_stream(chunks)
    async with window_over(pair, stream, aligned=True) as (window, scanner):
        runs = await all_runs(window, scanner, payloads=True)
    assert [payload for run in runs for payload in run.payloads] == chunks
    for run in runs[:-1]:
        assert isinstance(run.owner, mmap.mmap)
        assert run.at_start
        assert run.payload_page_offsets == [0]
    assert len({id(run.owner) for run in runs}) <= 2


@PAIRS
async def test_aligned_buffers_align_a_moved_frame_too(pair: Pair) -> None:
    chunks = [patterned(30, seed) for seed in range(7)]
    stream = file_stream(chunks)
    async with window_over(pair, stream, capacity=100, aligned=True) as (window, scanner):
        runs = await all_runs(window, scanner, payloads=True)
    assert b"".join(run.frames for run in runs) == stream
    assert all(run.at_start for run in runs)  # each run after the first was moved
    assert all(run.payload_page_offsets[0] == 0 for run in runs if run.payloads)


@PAIRS
async def test_aligned_buffers_grow_aligned(pair: Pair) -> None:
    chunks = [patterned(100_000, 1), patterned(200_000, 2)]
    stream = file_stream(chunks)
    async with window_over(pair, stream, capacity=64 * 1024, aligned=True) as (window, scanner):
        runs = await all_runs(window, scanner, payloads=True, hold=False)
    assert [payload for run in runs for payload in run.payloads] == chunks
    for run in runs[:-1]:
        assert isinstance(run.owner, mmap.mmap)
        assert run.payload_page_offsets == [0]


# --- backpressure ------------------------------------------------------------------------------


async def test_held_runs_hold_back_the_next_until_one_is_released() -> None:
    # Each 39-byte buffer holds one frame; with both buffers held, the window may not receive
    # into either, so next_run waits (all the data is there to read: it waits for the
    # release, not for the peer), and goes on once one is released.
    chunks = [patterned(30, seed) for seed in range(4)]
    ours, theirs = trio.testing.memory_stream_pair()
    await theirs.send_all(file_stream(chunks))
    window = FrameWindow(FileLink(ours, STALL), FrameScanner(), buffers=2, capacity=39)
    first = await window.next_run(payloads=True)
    second = await window.next_run(payloads=True)
    assert first.frames.obj is not second.frames.obj
    third: list[FrameRun] = []

    async def take() -> None:
        third.append(await window.next_run(payloads=True))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(take)
        await trio.testing.wait_all_tasks_blocked()
        assert third == []
        # The held runs are intact: nothing was received over them.
        assert [bytes(first.payloads[0]), bytes(second.payloads[0])] == chunks[:2]
        first.release()
    assert third[0].frames.obj is first.frames.obj
    assert bytes(third[0].payloads[0]) == chunks[2]
    assert bytes(second.payloads[0]) == chunks[1]


async def test_a_buffer_is_free_only_once_every_run_from_it_is_released() -> None:
    # Two runs from one buffer: releasing one of them must not let the window reuse it.
    stream = file_stream([b"a" * 10, b"b" * 10, b"c" * 10])
    ours, theirs = trio.testing.memory_stream_pair()
    window = FrameWindow(FileLink(ours, STALL), FrameScanner(), buffers=2, capacity=38)
    runs = []
    for low in (0, 19, 38):  # one 19-byte frame per receive, so one frame per run
        await theirs.send_all(stream[low : low + 19])
        runs.append(await window.next_run(payloads=True))
    one, two, three = runs
    assert one.frames.obj is two.frames.obj is not three.frames.obj
    await theirs.send_all(stream[57:])  # the end frame: too long for the rest of the buffer
    done: list[FrameRun] = []

    async def take() -> None:
        done.append(await window.next_run(payloads=True))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(take)
        await trio.testing.wait_all_tasks_blocked()
        one.release()
        await trio.testing.wait_all_tasks_blocked()
        assert done == []
        assert bytes(two.payloads[0]) == b"b" * 10
        two.release()
    assert done[0].frames.obj is one.frames.obj
    assert bytes(done[0].frames) == stream[57:]
    assert bytes(three.payloads[0]) == b"c" * 10


async def test_more_buffers_let_a_reader_hold_more_runs() -> None:
    chunks = [patterned(30, seed) for seed in range(4)]
    ours, theirs = trio.testing.memory_stream_pair()
    await theirs.send_all(file_stream(chunks))
    window = FrameWindow(FileLink(ours, STALL), FrameScanner(), buffers=4, capacity=39)
    held = [await window.next_run(payloads=True) for _ in chunks]
    assert len({id(run.frames.obj) for run in held}) == 4
    assert [bytes(run.payloads[0]) for run in held] == chunks


# --- first bytes -------------------------------------------------------------------------------


@PAIRS
async def test_first_bytes_are_used_before_anything_is_read(pair: Pair) -> None:
    stream = file_stream([b"hello", b"world"])
    cut = 9  # the first frame's prefix and part of its payload came with the handshake
    async with window_over(pair, stream[cut:], first=stream[:cut]) as (window, scanner):
        runs = await all_runs(window, scanner)
    assert b"".join(run.frames for run in runs) == stream


async def test_a_whole_file_in_the_first_bytes_needs_no_reads(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # The peer never sends and never closes: a read would stall (and fail the test).
    stream = file_stream([b"small"])
    ours, _peer = trio.testing.memory_stream_pair()  # kept open, and silent
    scanner = FrameScanner()
    window = FrameWindow(FileLink(ours, STALL), scanner, stream)
    run = await window.next_run()
    assert bytes(run.frames) == stream
    assert scanner.finished


async def test_first_bytes_larger_than_the_capacity_fit() -> None:
    stream = file_stream([patterned(300), patterned(50)])
    ours, theirs = trio.testing.memory_stream_pair()
    await theirs.send_all(stream[250:])
    scanner = FrameScanner()
    window = FrameWindow(FileLink(ours, STALL), scanner, stream[:250], capacity=64)
    runs = await all_runs(window, scanner)
    assert b"".join(run.frames for run in runs) == stream


# --- how a transfer fails ----------------------------------------------------------------------


@pytest.mark.parametrize("cut", [0, 4, FRAME_PREFIX_SIZE, 20, 47, 48, 57, 60, 89])
@PAIRS
async def test_a_stream_that_ends_mid_file_is_cut_short(pair: Pair, cut: int) -> None:
    # Frames of 10 bytes of data (19 on the wire): the error names the verified bytes.
    stream = file_stream([b"0123456789", b"abcdefghij", b"ABCDEFGHIJ"])
    verified = 10 * min(3, cut // 19)
    async with window_over(pair, stream[:cut]) as (window, scanner):
        with pytest.raises(TransferCutShort, match=f"transfer cut short after {verified} bytes"):
            await all_runs(window, scanner)


@PAIRS
async def test_a_corrupted_chunk_is_a_protocol_error(pair: Pair) -> None:
    stream = bytearray(file_stream([b"good", b"bad!", b"never"]))
    stream[len(encode_data(b"good")) + FRAME_PREFIX_SIZE] ^= 0x20
    async with window_over(pair, bytes(stream)) as (window, scanner):
        with pytest.raises(RemoteProtocolError, match="checksum mismatch"):
            await all_runs(window, scanner)


@PAIRS
async def test_next_run_after_the_end_frame_is_an_error_at_once(pair: Pair) -> None:
    # The peer stays open: asking for more must fail, not wait.
    async with window_over(pair, file_stream([b"abc"]), close=False) as (window, scanner):
        await all_runs(window, scanner)
        with pytest.raises(TransferError, match="after the end") as caught:
            await window.next_run()
        assert not isinstance(caught.value, TransferCutShort)


@PAIRS
async def test_the_runs_stop_at_the_end_frame_and_more_is_a_protocol_error(pair: Pair) -> None:
    stream = file_stream([b"abc"])
    async with window_over(pair, stream + b"extra") as (window, scanner):
        runs = await all_runs(window, scanner)
        assert b"".join(run.frames for run in runs) == stream
        with pytest.raises((RemoteProtocolError, TransferError), match="after the end"):
            await window.next_run()


async def test_a_silent_peer_stalls_the_window(autojump_clock: trio.testing.MockClock) -> None:
    ours, theirs = trio.testing.memory_stream_pair()
    await theirs.send_all(encode_data(b"abc")[:6])
    window = FrameWindow(FileLink(ours, stall_timeout=5), FrameScanner())
    with pytest.raises(TransferError, match="stalled"):
        await window.next_run()


# --- the socket path in pieces -----------------------------------------------------------------


def tcp_pair() -> tuple[trio.abc.Stream, trio.abc.Stream]:
    """Both ends of a loopback TCP connection (where SO_RCVLOWAT also holds back poll)."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        client = socket.create_connection(listener.getsockname())
        server, _ = listener.accept()
    return (
        trio.SocketStream(trio.socket.from_stdlib_socket(server)),
        trio.SocketStream(trio.socket.from_stdlib_socket(client)),
    )


@pytest.mark.parametrize("pair", [socket_pair, tcp_pair], ids=["unix", "tcp"])
async def test_frames_trickling_in_over_a_socket_arrive_whole(pair: Pair) -> None:
    # The sender pauses inside frames (and inside prefixes); the window, waiting with
    # SO_RCVLOWAT set for the rest of the frame, still hands out only whole frames, and
    # wakes for the last pieces of a frame (fewer bytes than it asked the kernel to gather).
    chunks = [patterned(CHUNK_SIZE, 1), patterned(1000, 2), patterned(CHUNK_SIZE - 3, 3)]
    stream = file_stream(chunks)
    ours, theirs = pair()
    cuts = [0, 2, 3, 500_000, SLAB_SIZE + 1, SLAB_SIZE + 600, len(stream) - 4, len(stream)]

    async def trickle() -> None:
        for low, high in itertools.pairwise(cuts):
            await theirs.send_all(stream[low:high])
            await trio.testing.wait_all_tasks_blocked()
        await theirs.aclose()

    async with ours, trio.open_nursery() as nursery:
        nursery.start_soon(trickle)
        scanner = FrameScanner()
        window = FrameWindow(FileLink(ours, STALL), scanner)
        runs = await all_runs(window, scanner, payloads=True)
    assert [payload for run in runs for payload in run.payloads] == chunks
    assert b"".join(run.frames for run in runs) == stream


@pytest.mark.parametrize("sizes", [[100_000, 100_000, 3], [1000, 100_000, 100_000, 3]])
@PAIRS
async def test_holding_the_latest_run_while_asking_for_the_next_never_hangs(
    pair: Pair, sizes: list[int]
) -> None:
    # Two buffers, frames larger than both: the latest run holds one, and the frame being
    # received sits at the start of the other, too small. Nothing holds that one, so it
    # gives way to a larger buffer rather than waiting for a release that never comes.
    chunks = [patterned(size, seed) for seed, size in enumerate(sizes)]
    async with window_over(pair, file_stream(chunks), capacity=64 * 1024) as (window, scanner):
        held: FrameRun | None = None
        received: list[bytes] = []
        with trio.fail_after(STALL):
            while not scanner.finished:
                run = await window.next_run(payloads=True)
                received += [bytes(payload) for payload in run.payloads]
                if held is not None:
                    held.release()
                held = run
    assert received == chunks


async def test_buffers_never_released_fail_the_transfer_after_the_stall_timeout(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # A reader whose writes stopped (a disk that hangs) holds every buffer: the window
    # gives up after the link's stall timeout instead of waiting for ever.
    chunks = [patterned(30, seed) for seed in range(4)]
    ours, theirs = trio.testing.memory_stream_pair()
    await theirs.send_all(file_stream(chunks))
    window = FrameWindow(FileLink(ours, STALL), FrameScanner(), buffers=2, capacity=39)
    held = [await window.next_run(), await window.next_run()]
    start = trio.current_time()
    with pytest.raises(TransferError, match="writing the file stalled"):
        await window.next_run()
    assert trio.current_time() - start == pytest.approx(STALL)
    assert len(held) == 2
