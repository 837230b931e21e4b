"""FileLink: reads on a real socket reuse one buffer, and every failure is a TransferError."""

from __future__ import annotations

import socket

import pytest
import trio
import trio.testing

from triochat.transfer_io import (
    MAX_RECEIVE_LOW_WATER,
    RECEIVE_SIZE,
    FileLink,
    TransferError,
)


def socket_pair() -> tuple[trio.SocketStream, trio.SocketStream]:
    left, right = socket.socketpair()
    return (
        trio.SocketStream(trio.socket.from_stdlib_socket(left)),
        trio.SocketStream(trio.socket.from_stdlib_socket(right)),
    )


async def test_socket_reads_land_in_one_reused_buffer() -> None:
    # No fresh 1 MiB object per read (allocation and page faults cost more than the copy).
    ours, theirs = socket_pair()
    link = FileLink(ours, stall_timeout=5)
    await theirs.send_all(b"first")
    first = await link.receive()
    assert isinstance(first, memoryview)
    assert bytes(first) == b"first"
    owner = first.obj
    assert isinstance(owner, bytearray) and len(owner) == RECEIVE_SIZE
    await theirs.send_all(b"second")
    second = await link.receive()
    assert isinstance(second, memoryview) and second.obj is owner
    assert bytes(second) == b"second"
    await theirs.aclose()
    assert not await link.receive()  # end of stream
    await ours.aclose()


async def test_a_reset_socket_reads_as_a_hang_up() -> None:
    ours, theirs = socket_pair()
    link = FileLink(ours, stall_timeout=5)
    await ours.aclose()
    with pytest.raises(TransferError, match="hung up"):
        await link.receive()
    await theirs.aclose()


async def test_other_streams_still_read_through_receive_some() -> None:
    ours, theirs = trio.testing.memory_stream_pair()
    link = FileLink(ours, stall_timeout=5)
    await theirs.send_all(b"abc")
    assert bytes(await link.receive()) == b"abc"
    await theirs.aclose()
    await ours.aclose()


async def test_a_silent_peer_is_a_stall(autojump_clock: trio.testing.MockClock) -> None:
    ours, theirs = socket_pair()
    async with ours, theirs:
        link = FileLink(ours, stall_timeout=30)
        with pytest.raises(TransferError, match="stalled"):
            await link.receive()


# --- the direct socket path: receive_into, send, wake_for --------------------------------------


async def test_receive_into_fills_the_given_view_and_says_how_much() -> None:
    ours, theirs = socket_pair()
    async with ours, theirs:
        link = FileLink(ours, stall_timeout=5)
        await theirs.send_all(b"hello")
        buffer = bytearray(b"." * 10)
        with memoryview(buffer) as view, view[2:] as tail:
            assert await link.receive_into(tail) == 5
        assert buffer == b"..hello..."


async def test_receive_into_takes_no_more_than_the_view_holds() -> None:
    ours, theirs = socket_pair()
    async with ours, theirs:
        link = FileLink(ours, stall_timeout=5)
        await theirs.send_all(b"abcdefgh")
        buffer = bytearray(3)
        assert await link.receive_into(memoryview(buffer)) == 3
        assert buffer == b"abc"
        assert await link.receive_into(memoryview(buffer)) == 3
        assert buffer == b"def"


@pytest.mark.parametrize("pair", ["socket", "memory"])
async def test_receive_into_is_zero_at_end_of_stream(pair: str) -> None:
    ours, theirs = socket_pair() if pair == "socket" else trio.testing.memory_stream_pair()
    link = FileLink(ours, stall_timeout=5)
    await theirs.send_all(b"last")
    await theirs.aclose()
    buffer = bytearray(16)
    assert await link.receive_into(memoryview(buffer)) == 4
    assert buffer[:4] == b"last"
    assert await link.receive_into(memoryview(buffer)) == 0
    await ours.aclose()


async def test_receive_into_waits_for_data_that_comes_later() -> None:
    ours, theirs = socket_pair()
    async with ours, theirs, trio.open_nursery() as nursery:
        link = FileLink(ours, stall_timeout=5)
        got: list[int] = []
        buffer = bytearray(8)

        async def receive() -> None:
            got.append(await link.receive_into(memoryview(buffer)))

        nursery.start_soon(receive)
        await trio.testing.wait_all_tasks_blocked()
        assert got == []
        await theirs.send_all(b"late")
    assert got == [4] and buffer[:4] == b"late"


@pytest.mark.parametrize("pair", ["socket", "memory"])
async def test_receive_into_from_a_silent_peer_is_a_stall(
    pair: str, autojump_clock: trio.testing.MockClock
) -> None:
    ours, theirs = socket_pair() if pair == "socket" else trio.testing.memory_stream_pair()
    link = FileLink(ours, stall_timeout=30)
    with pytest.raises(TransferError, match="stalled"):
        await link.receive_into(memoryview(bytearray(8)))
    await ours.aclose()
    await theirs.aclose()


async def test_closing_the_link_while_it_receives_is_a_hang_up() -> None:
    ours, theirs = socket_pair()
    link = FileLink(ours, stall_timeout=5)
    async with trio.open_nursery() as nursery:

        async def receive() -> None:
            with pytest.raises(TransferError, match="hung up"):
                await link.receive_into(memoryview(bytearray(8)))

        nursery.start_soon(receive)
        await trio.testing.wait_all_tasks_blocked()
        await ours.aclose()
    await theirs.aclose()


async def read_all(stream: trio.abc.Stream, into: bytearray) -> None:
    """Read ``stream`` to its end."""
    while data := await stream.receive_some(65536):
        into += data


async def test_send_more_than_the_socket_holds_completes_as_the_peer_reads() -> None:
    # Several MiB are far beyond a socket pair's buffers: the send must wait for the reader
    # (backpressure) and still deliver every byte in order.
    ours, theirs = socket_pair()
    data = bytes(range(256)) * (6 * 4096)  # 6 MiB
    received = bytearray()
    async with theirs, trio.open_nursery() as nursery:
        nursery.start_soon(read_all, theirs, received)
        link = FileLink(ours, stall_timeout=5)
        await link.send(data)
        await link.send(memoryview(data)[:1000])
        await ours.aclose()
    assert received == data + data[:1000]


async def test_send_waits_while_the_peer_does_not_read() -> None:
    ours, theirs = socket_pair()
    data = bytes(8 * 1024 * 1024)
    async with ours, theirs, trio.open_nursery() as nursery:
        link = FileLink(ours, stall_timeout=5)
        done = trio.Event()

        async def send() -> None:
            await link.send(data)
            done.set()

        nursery.start_soon(send)
        await trio.testing.wait_all_tasks_blocked()
        assert not done.is_set()
        received = bytearray()
        while len(received) < len(data):
            received += await theirs.receive_some(1024 * 1024)
        await done.wait()
        assert len(received) == len(data)


async def test_send_to_a_peer_that_stopped_reading_is_a_stall(
    autojump_clock: trio.testing.MockClock,
) -> None:
    ours, theirs = socket_pair()
    async with ours, theirs:
        link = FileLink(ours, stall_timeout=30)
        with pytest.raises(TransferError, match="stopped reading"):
            await link.send(bytes(8 * 1024 * 1024))


async def test_send_to_a_memory_stream_peer_that_stopped_reading_is_a_stall(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # A lockstep pair blocks every send until the peer reads.
    ours, theirs = trio.testing.lockstep_stream_pair()
    async with ours, theirs:
        link = FileLink(ours, stall_timeout=30)
        with pytest.raises(TransferError, match="stopped reading"):
            await link.send(b"nobody listens")


async def test_send_to_a_peer_that_closed_is_a_hang_up() -> None:
    ours, theirs = socket_pair()
    await theirs.aclose()
    link = FileLink(ours, stall_timeout=5)
    with pytest.raises(TransferError, match="hung up"):
        await link.send(b"anyone there?")
    await ours.aclose()


async def test_a_peer_that_closes_during_a_blocked_send_is_a_hang_up() -> None:
    ours, theirs = socket_pair()
    link = FileLink(ours, stall_timeout=5)
    async with trio.open_nursery() as nursery:

        async def send() -> None:
            with pytest.raises(TransferError, match="hung up"):
                await link.send(bytes(8 * 1024 * 1024))

        nursery.start_soon(send)
        await trio.testing.wait_all_tasks_blocked()
        await theirs.aclose()
    await ours.aclose()


async def test_send_is_a_checkpoint_even_when_it_need_not_wait() -> None:
    # The relay's loop sends every run; a loop that never yields would starve the chat.
    ours, theirs = socket_pair()
    async with ours, theirs:
        link = FileLink(ours, stall_timeout=5)
        with trio.CancelScope() as scope:
            scope.cancel()
            await link.send(b"x")
        assert scope.cancelled_caught


def low_water(stream: trio.SocketStream) -> int:
    value = stream.socket.getsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT)
    assert isinstance(value, int)
    return value


async def test_wake_for_sets_the_receive_low_water_mark() -> None:
    ours, theirs = socket_pair()
    async with ours, theirs:
        link = FileLink(ours, stall_timeout=5)
        link.wake_for(4096)
        assert low_water(ours) == 4096
        link.wake_for(17)
        assert low_water(ours) == 17


@pytest.mark.parametrize(
    ("asked", "set_to"),
    [
        (0, 1),
        (-5, 1),
        (MAX_RECEIVE_LOW_WATER, MAX_RECEIVE_LOW_WATER),
        (MAX_RECEIVE_LOW_WATER + 1, MAX_RECEIVE_LOW_WATER),
        (10**9, MAX_RECEIVE_LOW_WATER),
    ],
)
async def test_wake_for_clamps_to_what_the_kernel_can_gather(asked: int, set_to: int) -> None:
    ours, theirs = socket_pair()
    async with ours, theirs:
        link = FileLink(ours, stall_timeout=5)
        link.wake_for(1000)  # away from the default first, so the clamped value shows
        link.wake_for(asked)
        assert low_water(ours) == set_to


async def test_wake_for_does_nothing_on_a_memory_stream() -> None:
    ours, theirs = trio.testing.memory_stream_pair()
    link = FileLink(ours, stall_timeout=5)
    link.wake_for(4096)  # no socket options to set, and no error
    await theirs.send_all(b"ab")
    buffer = bytearray(8)
    assert await link.receive_into(memoryview(buffer)) == 2  # still wakes for fewer bytes
    await ours.aclose()
    await theirs.aclose()


async def test_wake_for_on_a_closed_socket_is_ignored() -> None:
    # Set just before a receive that will report the hang-up itself.
    ours, theirs = socket_pair()
    link = FileLink(ours, stall_timeout=5)
    await ours.aclose()
    link.wake_for(4096)
    await theirs.aclose()
