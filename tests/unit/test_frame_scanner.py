"""FrameScanner: frames verified where they lie in the caller's buffer, and seal_data_frame.

The relay and the requester scan their own receive buffers instead of copying frames into a
ChunkDecoder, so the scanner must hand out views into that very buffer, stop cleanly at an
incomplete frame, and reject everything ChunkDecoder rejects.
"""

from __future__ import annotations

import itertools
import struct

import pytest
import xxhash
from hypothesis import given, settings
from hypothesis import strategies as st

from triochat.wire.chunks import (
    END,
    FRAME_OVERHEAD,
    FRAME_PREFIX_SIZE,
    MAX_CHUNK_PAYLOAD,
    ChunkDecoder,
    DataChunk,
    FrameScanner,
    SenderFailed,
    encode_data,
    encode_end,
    encode_error,
    encode_frame,
    seal_data_frame,
)
from triochat.wire.common import NEED_DATA, RemoteProtocolError

PROPERTY = settings(max_examples=200, deadline=None)


def end_frame(data: bytes) -> bytes:
    """The honest end frame for a file of ``data``."""
    return encode_end(len(data), xxhash.xxh3_128_digest(data))


def file_stream(chunks: list[bytes]) -> bytes:
    """A complete, valid stream: one data frame per chunk, then the end frame."""
    return b"".join(encode_data(chunk) for chunk in chunks) + end_frame(b"".join(chunks))


def prefix(kind: bytes, length: int) -> bytes:
    """A frame's kind and length, as the wire has them."""
    return struct.pack(">cI", kind, length)


# --- scan: complete frames, views into the caller's buffer -------------------------------------


def test_scan_counts_the_complete_frames_at_the_start_and_stops_at_a_partial_one() -> None:
    whole = encode_data(b"ab") + encode_data(b"cde")
    buffer = bytearray(whole + encode_data(b"fghij")[:7])
    scanner = FrameScanner()
    payloads: list[memoryview] = []
    assert scanner.scan(memoryview(buffer), payloads) == len(whole)
    assert [bytes(payload) for payload in payloads] == [b"ab", b"cde"]
    assert scanner.size == 5
    assert not scanner.finished


def test_payloads_are_views_into_the_callers_buffer_not_copies() -> None:
    # The point of the scanner: the payload written to disk is the bytes that were received.
    buffer = bytearray(encode_data(b"hello") + encode_data(b"world"))
    payloads: list[memoryview] = []
    FrameScanner().scan(memoryview(buffer), payloads)
    assert all(payload.obj is buffer for payload in payloads)
    buffer[FRAME_PREFIX_SIZE] = ord("J")  # a change to the buffer shows through the view
    assert bytes(payloads[0]) == b"Jello"


def test_scan_without_a_payload_list_still_verifies_and_counts() -> None:
    stream = encode_data(b"abc") + encode_data(b"de")
    scanner = FrameScanner()
    assert scanner.scan(memoryview(stream)) == len(stream)
    assert scanner.size == 5


def test_scan_after_an_offset_reports_bytes_from_the_views_start() -> None:
    # Readers scan ``buffer[start:end]``; the count is relative to that slice.
    frame = encode_data(b"xyz")
    buffer = bytearray(b"junk" + frame + frame[:3])
    assert FrameScanner().scan(memoryview(buffer)[4:]) == len(frame)


@pytest.mark.parametrize("cut", range(len(encode_data(b"partial"))))
def test_a_lone_partial_frame_scans_as_nothing(cut: int) -> None:
    # Covers the empty view, a prefix cut short (< 5 bytes), the bare prefix and a frame
    # missing only part of its checksum.
    scanner = FrameScanner()
    payloads: list[memoryview] = []
    assert scanner.scan(memoryview(encode_data(b"partial")[:cut]), payloads) == 0
    assert payloads == []
    assert scanner.size == 0
    assert not scanner.finished


def test_an_empty_data_frame_is_a_legal_frame() -> None:
    scanner = FrameScanner()
    payloads: list[memoryview] = []
    assert scanner.scan(memoryview(encode_data(b"")), payloads) == FRAME_OVERHEAD
    assert [bytes(payload) for payload in payloads] == [b""]


# --- the end and error frames ------------------------------------------------------------------


def test_the_end_frame_finishes_and_records_the_digest() -> None:
    stream = file_stream([b"abc", b"def"])
    scanner = FrameScanner()
    assert scanner.scan(memoryview(stream)) == len(stream)
    assert scanner.finished
    assert scanner.failure is None
    assert scanner.end_digest == xxhash.xxh3_128_digest(b"abcdef")
    assert scanner.size == 6
    scanner.end_of_stream()  # fine once finished


def test_an_error_frame_sets_failure_and_finished() -> None:
    stream = encode_data(b"abc") + encode_error("disk on fire")
    scanner = FrameScanner()
    assert scanner.scan(memoryview(stream)) == len(stream)
    assert scanner.finished
    assert scanner.failure == "disk on fire"
    assert scanner.end_digest == b""
    scanner.end_of_stream()


def test_an_error_message_that_is_not_utf8_is_still_shown() -> None:
    scanner = FrameScanner()
    scanner.scan(memoryview(encode_frame(b"X", b"bad \xff byte")))
    assert scanner.failure == "bad \ufffd byte"


@pytest.mark.parametrize(
    "trailer",
    [b"D", b"D\x00\x00", prefix(b"D", 3), encode_data(b"more"), end_frame(b"")],
    ids=["one byte", "short prefix", "prefix", "data frame", "second end"],
)
def test_scanning_stops_at_the_end_and_what_follows_is_an_error_when_scanned(
    trailer: bytes,
) -> None:
    # The end frame is verified and counted; the bytes after it fail the next scan, so a
    # reader that stops at the end (as the relay and the requester do) never trips on them.
    stream = file_stream([b"abc"])
    scanner = FrameScanner()
    view = memoryview(stream + trailer)
    assert scanner.scan(view) == len(stream)
    assert scanner.finished
    with pytest.raises(RemoteProtocolError, match="after the end") as caught:
        scanner.scan(view[len(stream) :])
    assert not caught.value.recoverable


def test_an_error_frame_keeps_its_message_whatever_follows_it() -> None:
    # A relay may add its own error frame after the owner's: the first message is the one.
    scanner = FrameScanner()
    first = encode_error("the owner cannot read the file")
    assert scanner.scan(memoryview(first + encode_error("later"))) == len(first)
    assert scanner.failure == "the owner cannot read the file"


def test_a_later_view_after_the_end_is_an_error_unless_empty() -> None:
    scanner = FrameScanner()
    scanner.scan(memoryview(file_stream([b"abc"])))
    assert scanner.scan(memoryview(b"")) == 0
    with pytest.raises(RemoteProtocolError, match="after the end"):
        scanner.scan(memoryview(b"D"))
    with pytest.raises(RemoteProtocolError, match="after the end"):
        scanner.scan(memoryview(encode_data(b"x")))


def test_end_of_stream_before_the_end_frame_is_truncation() -> None:
    scanner = FrameScanner()
    scanner.scan(memoryview(encode_data(b"abcd") + encode_data(b"ef")[:4]))
    with pytest.raises(RemoteProtocolError, match="transfer cut short after 4 bytes") as caught:
        scanner.end_of_stream()
    assert not caught.value.recoverable


def test_end_of_stream_with_nothing_received_is_truncation() -> None:
    with pytest.raises(RemoteProtocolError, match="cut short after 0 bytes"):
        FrameScanner().end_of_stream()


# --- bad frames, as ChunkDecoder rejects them --------------------------------------------------


def test_a_flipped_payload_byte_is_a_checksum_mismatch() -> None:
    frame = bytearray(encode_data(b"payload"))
    frame[FRAME_PREFIX_SIZE + 2] ^= 0x01
    with pytest.raises(RemoteProtocolError, match="checksum mismatch"):
        FrameScanner().scan(memoryview(frame))


def test_a_flipped_checksum_byte_is_a_checksum_mismatch() -> None:
    frame = bytearray(encode_data(b"payload"))
    frame[-1] ^= 0x80
    with pytest.raises(RemoteProtocolError, match="checksum mismatch"):
        FrameScanner().scan(memoryview(frame))


def test_a_bad_frame_after_good_ones_fails_the_whole_scan() -> None:
    # No count comes back for the good frames before it: the transfer is over anyway, and a
    # relay must not forward part of a view it has found corrupt.
    bad = bytearray(encode_data(b"bad"))
    bad[FRAME_PREFIX_SIZE] ^= 0xFF
    with pytest.raises(RemoteProtocolError, match="checksum mismatch"):
        FrameScanner().scan(memoryview(encode_data(b"good") + bad))


def test_an_unknown_kind_is_rejected_from_its_prefix_alone() -> None:
    with pytest.raises(RemoteProtocolError, match="unknown frame kind") as caught:
        FrameScanner().scan(memoryview(prefix(b"Q", 3)))
    assert not caught.value.recoverable


def test_an_over_large_frame_is_rejected_from_its_prefix_alone() -> None:
    # Never buffered: the prefix is enough to refuse it.
    with pytest.raises(RemoteProtocolError, match="too large"):
        FrameScanner().scan(memoryview(prefix(b"D", MAX_CHUNK_PAYLOAD + 1)))


def test_the_largest_allowed_payload_verifies() -> None:
    payload = bytes(range(256)) * (MAX_CHUNK_PAYLOAD // 256)
    assert len(payload) == MAX_CHUNK_PAYLOAD
    scanner = FrameScanner()
    assert scanner.scan(memoryview(encode_data(payload))) == MAX_CHUNK_PAYLOAD + FRAME_OVERHEAD
    assert scanner.size == MAX_CHUNK_PAYLOAD


def test_an_end_frame_with_the_wrong_size_is_a_size_mismatch() -> None:
    stream = encode_data(b"abc") + encode_end(5, xxhash.xxh3_128_digest(b"abc"))
    with pytest.raises(RemoteProtocolError, match="size mismatch: sender says 5 bytes, got 3"):
        FrameScanner().scan(memoryview(stream))


def test_a_malformed_end_frame_is_rejected() -> None:
    with pytest.raises(RemoteProtocolError, match="malformed end frame"):
        FrameScanner().scan(memoryview(encode_frame(END, b"short")))


def test_a_wrong_digest_is_rejected_when_checked() -> None:
    stream = encode_data(b"abc") + encode_end(3, xxhash.xxh3_128_digest(b"abd"))
    scanner = FrameScanner(check_digest=True)
    with pytest.raises(RemoteProtocolError, match="digest mismatch"):
        scanner.scan(memoryview(stream))
    assert not scanner.finished


def test_a_wrong_digest_passes_when_not_checked_and_is_recorded() -> None:
    # The relay leaves the end-to-end digest to the receiver; it still checks the size.
    wrong = xxhash.xxh3_128_digest(b"abd")
    stream = encode_data(b"abc") + encode_end(3, wrong)
    scanner = FrameScanner(check_digest=False)
    assert scanner.scan(memoryview(stream)) == len(stream)
    assert scanner.finished
    assert scanner.end_digest == wrong


def test_the_size_is_checked_even_without_the_digest() -> None:
    stream = encode_data(b"abc") + encode_end(4, b"\x00" * 16)
    with pytest.raises(RemoteProtocolError, match="size mismatch"):
        FrameScanner(check_digest=False).scan(memoryview(stream))


# --- frame_length ------------------------------------------------------------------------------


@pytest.mark.parametrize("have", range(FRAME_PREFIX_SIZE))
def test_frame_length_asks_for_the_prefix_while_it_is_incomplete(have: int) -> None:
    assert FrameScanner().frame_length(memoryview(encode_data(b"abcdef")[:have])) == 5


@pytest.mark.parametrize("payload", [b"", b"abcdef", bytes(100_000)])
def test_frame_length_is_the_whole_frame_once_the_prefix_is_in(payload: bytes) -> None:
    frame = encode_data(payload)
    scanner = FrameScanner()
    assert scanner.frame_length(memoryview(frame[:FRAME_PREFIX_SIZE])) == len(frame)
    assert scanner.frame_length(memoryview(frame)) == len(frame)
    assert scanner.frame_length(memoryview(frame + b"next")) == len(frame)


def test_frame_length_accepts_the_largest_frame_and_refuses_one_more_byte() -> None:
    scanner = FrameScanner()
    largest = prefix(b"D", MAX_CHUNK_PAYLOAD)
    assert scanner.frame_length(memoryview(largest)) == MAX_CHUNK_PAYLOAD + FRAME_OVERHEAD
    with pytest.raises(RemoteProtocolError, match="too large"):
        scanner.frame_length(memoryview(prefix(b"D", MAX_CHUNK_PAYLOAD + 1)))
    with pytest.raises(RemoteProtocolError, match="unknown frame kind"):
        scanner.frame_length(memoryview(prefix(b"d", 1)))


# --- scanning a growing buffer matches ChunkDecoder --------------------------------------------

streams = st.tuples(
    st.lists(st.binary(max_size=300), max_size=6),
    st.one_of(st.none(), st.text(max_size=20)),
).map(
    lambda parts: (
        b"".join(encode_data(chunk) for chunk in parts[0])
        + (end_frame(b"".join(parts[0])) if parts[1] is None else encode_error(parts[1]))
    )
)
"""Valid streams: data frames, then an end frame or an error frame."""


def decoded(stream: bytes) -> tuple[bytes, int, str | None]:
    """The payload, size and failure ChunkDecoder makes of a whole stream."""
    decoder = ChunkDecoder()
    decoder.receive_data(stream)
    data = b""
    failure = None
    while (event := decoder.next_event()) is not NEED_DATA:
        if isinstance(event, DataChunk):
            data += event.payload
        elif isinstance(event, SenderFailed):
            failure = event.message
    decoder.end_of_stream()
    return data, decoder.size, failure


def scanned(stream: bytes, cuts: list[int]) -> tuple[bytes, int, str | None]:
    """The same, from a FrameScanner over a buffer that grows by one piece at a time.

    Every view is released before the buffer grows: a bytearray with a live export refuses to
    resize, so this also shows the scanner keeps no views of its own.
    """
    scanner = FrameScanner()
    buffer = bytearray()
    start = 0
    data = b""
    bounds = [0, *sorted(cuts), len(stream)]
    for low, high in itertools.pairwise(bounds):
        buffer += stream[low:high]
        payloads: list[memoryview] = []
        with memoryview(buffer) as view, view[start:] as rest:
            start += scanner.scan(rest, payloads)
            for payload in payloads:
                assert payload.obj is buffer
                data += bytes(payload)
                payload.release()
    assert start == len(stream)
    scanner.end_of_stream()
    return data, scanner.size, scanner.failure


@PROPERTY
@given(stream=streams, data=st.data())
def test_any_split_scans_like_chunk_decoder(stream: bytes, data: st.DataObject) -> None:
    cuts = data.draw(st.lists(st.integers(0, len(stream)), max_size=12))
    assert scanned(stream, cuts) == decoded(stream)


# --- seal_data_frame ---------------------------------------------------------------------------


@PROPERTY
@given(payload=st.binary(max_size=2000), slack=st.integers(0, 16))
def test_seal_data_frame_makes_exactly_encode_data(payload: bytes, slack: int) -> None:
    # The sender reads the file straight into place; the frame around it must be the same
    # bytes encode_data would have made, and nothing past the frame is touched.
    size = len(payload) + FRAME_OVERHEAD
    buffer = bytearray(b"\xaa" * (size + slack))
    buffer[FRAME_PREFIX_SIZE : FRAME_PREFIX_SIZE + len(payload)] = payload
    assert seal_data_frame(memoryview(buffer), len(payload)) == size
    assert bytes(buffer[:size]) == encode_data(payload)
    assert buffer[size:] == b"\xaa" * slack


def test_a_sealed_frame_in_the_middle_of_a_buffer_verifies() -> None:
    buffer = bytearray(100)
    view = memoryview(buffer)[10:]
    view[FRAME_PREFIX_SIZE : FRAME_PREFIX_SIZE + 4] = b"data"
    size = seal_data_frame(view, 4)
    payloads: list[memoryview] = []
    assert FrameScanner().scan(memoryview(buffer)[10 : 10 + size], payloads) == size
    assert [bytes(payload) for payload in payloads] == [b"data"]
