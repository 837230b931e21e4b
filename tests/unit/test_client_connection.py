"""What the TCP clients share (SPEC §3): paced whole writes and lines from the server.

:class:`PacedSender` writes each message alone, at least ``WRITE_GAP`` after the previous
write; :class:`ServerLines` shows an unterminated chunk as a line after ``QUIET_FLUSH`` of
quiet. Both run over in-memory streams on the autojump clock: every gap is virtual time.
"""

from __future__ import annotations

import itertools

import pytest
import trio
import trio.testing

from triochat.client.connection import QUIET_FLUSH, WRITE_GAP, PacedSender, ServerLines
from triochat.wire.common import MAX_SERVER_LINE_BYTES
from triochat.wire.lines import LineClientCodec


class RecordingStream(trio.abc.SendStream):
    """A send stream that keeps every write with the (virtual) time it was made."""

    def __init__(self) -> None:
        self.writes: list[tuple[float, bytes]] = []

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await trio.lowlevel.checkpoint()
        self.writes.append((trio.current_time(), bytes(data)))

    async def wait_send_all_might_not_block(self) -> None:
        await trio.lowlevel.checkpoint()

    async def aclose(self) -> None:
        await trio.lowlevel.checkpoint()


def gaps(writes: list[tuple[float, bytes]]) -> list[float]:
    return [later - earlier for (earlier, _), (later, _) in itertools.pairwise(writes)]


# --- PacedSender ------------------------------------------------------------------------------


async def test_first_write_goes_at_once_and_each_next_one_write_gap_later(
    autojump_clock: trio.testing.MockClock,
) -> None:
    stream = RecordingStream()
    sender = PacedSender(stream)
    for text in (b"alice", b"hello", b"world"):
        await sender.send(text)
    assert [data for _, data in stream.writes] == [b"alice", b"hello", b"world"]
    assert stream.writes[0][0] == 0.0
    assert gaps(stream.writes) == [pytest.approx(WRITE_GAP)] * 2


async def test_a_write_made_before_trio_ran_counts_toward_the_gap(
    autojump_clock: trio.testing.MockClock,
) -> None:
    stream = RecordingStream()
    sender = PacedSender(stream, seconds_since_last_write=0.1)  # the launcher sent the name
    await sender.send(b"first message")
    ((when, _),) = stream.writes
    assert when == pytest.approx(WRITE_GAP - 0.1)


async def test_a_write_long_ago_does_not_delay_the_next(
    autojump_clock: trio.testing.MockClock,
) -> None:
    stream = RecordingStream()
    sender = PacedSender(stream, seconds_since_last_write=5.0)
    await sender.send(b"x")
    assert stream.writes == [(0.0, b"x")]


async def test_nothing_to_send_writes_nothing_and_waits_for_nothing(
    autojump_clock: trio.testing.MockClock,
) -> None:
    stream = RecordingStream()
    sender = PacedSender(stream)
    await sender.send(b"one")
    await sender.send(b"")  # an empty line: a zero-byte write would look like nothing to a peer
    await sender.send(b"two")
    assert [data for _, data in stream.writes] == [b"one", b"two"]
    assert gaps(stream.writes) == [pytest.approx(WRITE_GAP)]


async def test_tasks_sharing_a_sender_take_turns_and_keep_the_gap(
    autojump_clock: trio.testing.MockClock,
) -> None:
    stream = RecordingStream()
    sender = PacedSender(stream)
    async with trio.open_nursery() as nursery:
        for task in range(3):
            for number in range(3):
                nursery.start_soon(sender.send, f"t{task}m{number}".encode())
    sent = sorted(data for _, data in stream.writes)
    assert sent == sorted(f"t{task}m{number}".encode() for task in range(3) for number in range(3))
    assert all(gap >= WRITE_GAP - 1e-9 for gap in gaps(stream.writes))


# --- ServerLines ------------------------------------------------------------------------------


def server_lines(stream: trio.abc.ReceiveStream) -> ServerLines:
    """Lines from ``stream`` as the line client reads them."""
    return ServerLines(stream, LineClientCodec(MAX_SERVER_LINE_BYTES))


async def test_terminated_lines_come_at_once_whole_and_without_their_endings(
    autojump_clock: trio.testing.MockClock,
) -> None:
    ours, theirs = trio.testing.memory_stream_pair()
    lines = server_lines(theirs)
    await ours.send_all(b"alice: one\r\nbob: two\nbob: thr")
    await ours.send_all(b"ee\n")
    assert [await lines.readline() for _ in range(3)] == ["alice: one", "bob: two", "bob: three"]
    assert trio.current_time() == 0.0  # nobody waited for the quiet time


async def test_an_unterminated_chunk_is_a_line_after_the_quiet_time_and_not_before(
    autojump_clock: trio.testing.MockClock,
) -> None:
    ours, theirs = trio.testing.memory_stream_pair()
    lines = server_lines(theirs)
    await ours.send_all(b"5001:Hi!")  # a seed server adds no newline
    assert await lines.readline() == "5001:Hi!"
    assert trio.current_time() == pytest.approx(QUIET_FLUSH)


async def test_a_chunk_completed_within_the_quiet_time_is_one_line(
    autojump_clock: trio.testing.MockClock,
) -> None:
    ours, theirs = trio.testing.memory_stream_pair()
    lines = server_lines(theirs)

    async def split_by_the_network() -> None:
        await ours.send_all(b"alice: a name never ")
        await trio.sleep(QUIET_FLUSH / 2)
        await ours.send_all(b"broken over two lines")

    async with trio.open_nursery() as nursery:
        nursery.start_soon(split_by_the_network)
        assert await lines.readline() == "alice: a name never broken over two lines"
    assert trio.current_time() == pytest.approx(QUIET_FLUSH * 1.5)


async def test_paced_unterminated_messages_are_lines_of_their_own(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Our server writes to an unframed peer 50 ms apart, more than the quiet time."""
    ours, theirs = trio.testing.memory_stream_pair()
    lines = server_lines(theirs)

    async def server() -> None:
        for message in (b"alice: one", b"alice: two", b"bob: three"):
            await ours.send_all(message)
            await trio.sleep(0.05)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(server)
        assert [await lines.readline() for _ in range(3)] == [
            "alice: one",
            "alice: two",
            "bob: three",
        ]


async def test_end_of_connection_shows_the_partial_line_then_none(
    autojump_clock: trio.testing.MockClock,
) -> None:
    ours, theirs = trio.testing.memory_stream_pair()
    lines = server_lines(theirs)
    await ours.send_all(b"*** Server shutting down\nlast words")
    await ours.aclose()
    assert await lines.readline() == "*** Server shutting down"
    assert await lines.readline() == "last words"
    assert await lines.readline() is None
    assert await lines.readline() is None
    assert trio.current_time() == 0.0  # the end is not waited for


async def test_a_broken_connection_counts_as_its_end(
    autojump_clock: trio.testing.MockClock,
) -> None:
    class Broken(trio.abc.ReceiveStream):
        async def receive_some(self, max_bytes: int | None = None) -> bytes:
            await trio.lowlevel.checkpoint()
            raise trio.BrokenResourceError("connection reset")

        async def aclose(self) -> None:
            await trio.lowlevel.checkpoint()

    assert await server_lines(Broken()).readline() is None


async def test_a_line_over_the_limit_is_dropped_with_a_warning_and_reading_goes_on(
    autojump_clock: trio.testing.MockClock, capsys: pytest.CaptureFixture[str]
) -> None:
    ours, theirs = trio.testing.memory_stream_pair()
    lines = server_lines(theirs)
    await ours.send_all(b"x" * (MAX_SERVER_LINE_BYTES + 10) + b"\nalice: still here\n")
    assert await lines.readline() == "alice: still here"
    assert "Dropped a line from the server" in capsys.readouterr().err
