"""FileLink: reads on a real socket reuse one buffer, and every failure is a TransferError."""

from __future__ import annotations

import socket

import pytest
import trio
import trio.testing

from triochat.transfer_io import RECEIVE_SIZE, FileLink, TransferError


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
    assert await link.receive() == b"abc"
    await theirs.aclose()
    await ours.aclose()


async def test_a_silent_peer_is_a_stall() -> None:
    ours, theirs = socket_pair()
    async with ours, theirs:
        link = FileLink(ours, stall_timeout=0.05)
        with pytest.raises(TransferError, match="stalled"):
            await link.receive()
