"""Byte-exact tests of the file-relay framing (SPEC §6): frames, handshake, file names."""

from __future__ import annotations

import itertools
import struct

import pytest
import xxhash
from crc32c import crc32c
from hypothesis import given, settings
from hypothesis import strategies as st

from triochat.wire.chunks import (
    CHUNK_SIZE,
    FRAME_OVERHEAD,
    MAX_CHUNK_PAYLOAD,
    MAX_HEADER_BYTES,
    AgentHandshake,
    ChunkDecoder,
    ChunkEvent,
    DataChunk,
    EndOfFile,
    RelayHandshake,
    SenderFailed,
    TransferAccepted,
    TransferRefused,
    TransferRequest,
    encode_data,
    encode_end,
    encode_error,
    encode_frame,
    is_plain_file_name,
    new_digest,
)
from triochat.wire.common import NEED_DATA, RemoteProtocolError

PROPERTY = settings(max_examples=200, deadline=None)

chunk_lists = st.lists(st.binary(max_size=300), max_size=6)
"""The data frames of one file (empty chunks are legal frames too)."""


def file_stream(chunks: list[bytes]) -> bytes:
    """A complete, valid stream: one data frame per chunk, then the end frame."""
    data = b"".join(chunks)
    return b"".join(encode_data(chunk) for chunk in chunks) + encode_end(
        len(data), xxhash.xxh3_128_digest(data)
    )


def drain(decoder: ChunkDecoder) -> list[ChunkEvent]:
    """Every event the decoder holds right now (errors propagate)."""
    events: list[ChunkEvent] = []
    while (event := decoder.next_event()) is not NEED_DATA:
        events.append(event)
    return events


class Outcome:
    """What a receiver made of a whole stream followed by end of stream."""

    def __init__(self, stream: bytes, *, check_digest: bool = True, pieces: int = 1) -> None:
        self.events: list[ChunkEvent] = []
        self.error: RemoteProtocolError | None = None
        decoder = ChunkDecoder(check_digest=check_digest)
        step = max(1, -(-len(stream) // pieces))
        try:
            for start in range(0, len(stream), step):
                decoder.receive_data(stream[start : start + step])
                self.events += drain(decoder)
            decoder.end_of_stream()
        except RemoteProtocolError as error:
            self.error = error

    @property
    def payload(self) -> bytes:
        return b"".join(event.payload for event in self.events if isinstance(event, DataChunk))

    @property
    def completed(self) -> bool:
        """The receiver would keep the file: it saw the end frame and nothing went wrong."""
        return self.error is None and any(isinstance(event, EndOfFile) for event in self.events)

    @property
    def failed(self) -> bool:
        """The receiver knows the transfer failed (an error, or the sender said so)."""
        return self.error is not None or any(isinstance(e, SenderFailed) for e in self.events)


# --- frame layout -----------------------------------------------------------------------------


def test_data_frame_layout_is_byte_exact() -> None:
    # CRC-32C check value of "123456789" is 0xE3069283 (Castagnoli, as in iSCSI and ext4).
    assert encode_data(b"123456789") == b"D\x00\x00\x00\x09123456789\xe3\x06\x92\x83"


def test_empty_data_frame_is_nine_bytes() -> None:
    assert FRAME_OVERHEAD == 9
    assert encode_data(b"") == b"D\x00\x00\x00\x00\x00\x00\x00\x00"


def test_length_is_big_endian_over_four_bytes() -> None:
    payload = bytes(range(256)) * 2 + b"x"  # 513 bytes = 0x201
    frame = encode_data(payload)
    assert frame[:5] == b"D\x00\x00\x02\x01"
    assert frame[5:-4] == payload
    assert frame[-4:] == crc32c(payload).to_bytes(4, "big")
    assert len(frame) == len(payload) + FRAME_OVERHEAD


def test_end_frame_layout_is_byte_exact() -> None:
    digest = bytes(range(16))
    frame = encode_end(0x0102030405060708, digest)
    payload = b"\x01\x02\x03\x04\x05\x06\x07\x08" + digest
    assert frame == b"E\x00\x00\x00\x18" + payload + crc32c(payload).to_bytes(4, "big")


def test_error_frame_layout_is_byte_exact() -> None:
    payload = "no such file ✗".encode()
    assert encode_error("no such file ✗") == (
        b"X" + len(payload).to_bytes(4, "big") + payload + crc32c(payload).to_bytes(4, "big")
    )


def test_error_frame_message_is_capped() -> None:
    frame = encode_error("e" * (MAX_HEADER_BYTES * 3))
    assert frame[:5] == b"X" + MAX_HEADER_BYTES.to_bytes(4, "big")
    assert len(frame) == MAX_HEADER_BYTES + FRAME_OVERHEAD


def test_encode_frame_is_the_common_shape() -> None:
    assert encode_frame(b"D", b"abc") == encode_data(b"abc")


def test_new_digest_is_xxh3_128() -> None:
    digest = new_digest()
    digest.update(b"abc")
    assert digest.digest() == xxhash.xxh3_128_digest(b"abc")


# --- decoding valid streams -------------------------------------------------------------------


def test_decoder_reports_each_chunk_and_the_end() -> None:
    decoder = ChunkDecoder()
    stream = file_stream([b"hello ", b"world"])
    decoder.receive_data(stream)
    events = drain(decoder)
    digest = xxhash.xxh3_128_digest(b"hello world")
    assert events == [
        DataChunk(memoryview(b"hello "), encode_data(b"hello ")),
        DataChunk(memoryview(b"world"), encode_data(b"world")),
        EndOfFile(11, digest, encode_end(11, digest)),
    ]
    assert decoder.size == 11
    assert decoder.finished
    decoder.end_of_stream()  # fine after the end frame


def test_empty_file_is_just_the_end_frame() -> None:
    outcome = Outcome(file_stream([]))
    assert outcome.completed
    assert outcome.events == [
        EndOfFile(0, xxhash.xxh3_128_digest(b""), encode_end(0, xxhash.xxh3_128_digest(b"")))
    ]


def test_full_size_and_largest_chunks_are_accepted() -> None:
    big = bytes(range(256)) * (MAX_CHUNK_PAYLOAD // 256)
    chunks = [big[:CHUNK_SIZE], big]
    outcome = Outcome(file_stream(chunks), pieces=7)
    assert outcome.completed
    assert outcome.payload == big[:CHUNK_SIZE] + big


def test_decoder_needs_data_until_a_frame_is_whole() -> None:
    frame = encode_data(b"abcdef")
    decoder = ChunkDecoder()
    for byte in frame[:-1]:
        decoder.receive_data(bytes([byte]))
        assert decoder.next_event() is NEED_DATA
    decoder.receive_data(frame[-1:])
    assert decoder.next_event() == DataChunk(memoryview(b"abcdef"), frame)
    assert decoder.next_event() is NEED_DATA


@PROPERTY
@given(chunks=chunk_lists)
def test_round_trip_of_any_chunks(chunks: list[bytes]) -> None:
    data = b"".join(chunks)
    outcome = Outcome(file_stream(chunks))
    assert outcome.completed
    assert [e.payload for e in outcome.events if isinstance(e, DataChunk)] == chunks
    digest = xxhash.xxh3_128_digest(data)
    assert outcome.events[-1] == EndOfFile(len(data), digest, encode_end(len(data), digest))
    frames = [encode_data(chunk) for chunk in chunks] + [encode_end(len(data), digest)]
    assert [event.frame for event in outcome.events] == frames


@PROPERTY
@given(chunks=chunk_lists, cuts=st.lists(st.integers(min_value=0, max_value=2000), max_size=12))
def test_any_split_gives_the_same_events(chunks: list[bytes], cuts: list[int]) -> None:
    stream = file_stream(chunks)
    whole = ChunkDecoder()
    whole.receive_data(stream)
    expected = drain(whole)

    decoder = ChunkDecoder()
    events: list[ChunkEvent] = []
    bounds = sorted({0, len(stream), *(cut % (len(stream) + 1) for cut in cuts)})
    for start, stop in itertools.pairwise(bounds):
        decoder.receive_data(stream[start:stop])
        events += drain(decoder)
    decoder.end_of_stream()
    assert events == expected


# --- corruption, truncation and misuse --------------------------------------------------------


def flipped(stream: bytes, index: int, mask: int) -> bytes:
    corrupt = bytearray(stream)
    corrupt[index] ^= mask
    return bytes(corrupt)


def assert_flip_detected(stream: bytes, original: bytes, *, check_digest: bool) -> None:
    for pieces in (1, 3):
        outcome = Outcome(stream, check_digest=check_digest, pieces=pieces)
        # Safety: never a "complete" file whose bytes differ from what was sent.
        assert not (outcome.completed and outcome.payload != original)
        # And in fact every single-byte corruption of a whole stream is noticed.
        assert outcome.failed, outcome.events


@pytest.mark.parametrize("check_digest", [True, False])
def test_every_single_byte_flip_of_a_multi_frame_stream_is_detected(check_digest: bool) -> None:
    chunks = [b"\x00" * 40, bytes(range(7)), b"", b"\xff" * 5]
    original = b"".join(chunks)
    stream = file_stream(chunks)
    for index in range(len(stream)):
        for mask in range(1, 256):
            assert_flip_detected(flipped(stream, index, mask), original, check_digest=check_digest)


@PROPERTY
@given(
    chunks=st.lists(st.binary(max_size=200), min_size=1, max_size=5),
    where=st.integers(min_value=0),
    mask=st.integers(min_value=1, max_value=255),
    check_digest=st.booleans(),
)
def test_any_single_byte_flip_is_detected(
    chunks: list[bytes], where: int, mask: int, check_digest: bool
) -> None:
    stream = file_stream(chunks)
    corrupt = flipped(stream, where % len(stream), mask)
    assert_flip_detected(corrupt, b"".join(chunks), check_digest=check_digest)


def test_truncation_at_every_offset_is_detected() -> None:
    stream = file_stream([b"abc", bytes(range(256)), b"", b"z" * 50])
    for offset in range(len(stream)):
        decoder = ChunkDecoder()
        decoder.receive_data(stream[:offset])
        events = drain(decoder)
        assert not any(isinstance(event, EndOfFile) for event in events)
        with pytest.raises(RemoteProtocolError, match="cut short") as caught:
            decoder.end_of_stream()
        assert caught.value.recoverable is False
    assert Outcome(stream).completed


@PROPERTY
@given(chunks=chunk_lists, where=st.integers(min_value=0))
def test_any_truncation_is_detected(chunks: list[bytes], where: int) -> None:
    stream = file_stream(chunks)
    outcome = Outcome(stream[: where % len(stream)])
    assert not outcome.completed
    assert outcome.error is not None


def test_empty_stream_is_truncation() -> None:
    with pytest.raises(RemoteProtocolError):
        ChunkDecoder().end_of_stream()


@pytest.mark.parametrize("kind", [b"D", b"E", b"X"])
def test_oversize_length_is_refused_from_the_prefix_alone(kind: bytes) -> None:
    decoder = ChunkDecoder()
    decoder.receive_data(kind + (MAX_CHUNK_PAYLOAD + 1).to_bytes(4, "big"))
    with pytest.raises(RemoteProtocolError, match="too large") as caught:
        decoder.next_event()
    assert caught.value.recoverable is False


def test_huge_length_is_refused_without_buffering() -> None:
    decoder = ChunkDecoder()
    decoder.receive_data(b"D\xff\xff\xff\xff")
    with pytest.raises(RemoteProtocolError, match="too large"):
        decoder.next_event()


@pytest.mark.parametrize("kind", [b"d", b"Z", b"\x00", b"{", b"\xff"])
def test_unknown_kind_is_refused(kind: bytes) -> None:
    decoder = ChunkDecoder()
    decoder.receive_data(encode_frame(kind, b"payload"))
    with pytest.raises(RemoteProtocolError, match="unknown frame kind") as caught:
        decoder.next_event()
    assert caught.value.recoverable is False


def test_a_header_line_where_frames_belong_is_refused() -> None:
    decoder = ChunkDecoder()
    decoder.receive_data(AgentHandshake().send(TransferRefused("no")))
    with pytest.raises(RemoteProtocolError):
        decoder.next_event()


@pytest.mark.parametrize(
    "extra", [b"D", b"\x00", encode_data(b"more"), encode_end(0, bytes(16)), encode_error("x")]
)
def test_data_after_the_end_is_refused(extra: bytes) -> None:
    decoder = ChunkDecoder()
    decoder.receive_data(file_stream([b"abc"]))
    assert isinstance(drain(decoder)[-1], EndOfFile)
    decoder.receive_data(extra)
    with pytest.raises(RemoteProtocolError, match="after the end"):
        decoder.next_event()


def test_data_after_the_end_in_the_same_read_is_refused() -> None:
    decoder = ChunkDecoder()
    decoder.receive_data(file_stream([b"abc"]) + b"!")
    assert isinstance(decoder.next_event(), DataChunk)
    assert isinstance(decoder.next_event(), EndOfFile)
    with pytest.raises(RemoteProtocolError, match="after the end"):
        decoder.next_event()


@pytest.mark.parametrize("check_digest", [True, False])
@pytest.mark.parametrize("claimed", [0, 5, 7, 2**64 - 1])
def test_size_mismatch_at_the_end_is_refused(check_digest: bool, claimed: int) -> None:
    decoder = ChunkDecoder(check_digest=check_digest)
    decoder.receive_data(encode_data(b"abc") + encode_data(b"def"))
    decoder.receive_data(encode_end(claimed, xxhash.xxh3_128_digest(b"abcdef")))
    drain_error = None
    try:
        drain(decoder)
    except RemoteProtocolError as error:
        drain_error = error
    assert drain_error is not None
    assert "size mismatch" in str(drain_error)
    assert not decoder.finished


def test_digest_mismatch_at_the_end_is_refused() -> None:
    decoder = ChunkDecoder()
    decoder.receive_data(encode_data(b"abcdef"))
    decoder.receive_data(encode_end(6, xxhash.xxh3_128_digest(b"abcdeF")))
    assert isinstance(decoder.next_event(), DataChunk)
    with pytest.raises(RemoteProtocolError, match="digest mismatch") as caught:
        decoder.next_event()
    assert caught.value.recoverable is False
    assert not decoder.finished
    with pytest.raises(RemoteProtocolError):
        decoder.end_of_stream()


def test_without_digest_checking_the_digest_is_left_to_the_receiver() -> None:
    decoder = ChunkDecoder(check_digest=False)
    wrong = xxhash.xxh3_128_digest(b"something else")
    decoder.receive_data(encode_data(b"abcdef") + encode_end(6, wrong))
    assert drain(decoder)[-1] == EndOfFile(6, wrong, encode_end(6, wrong))


@pytest.mark.parametrize("check_digest", [True, False])
def test_crc_is_checked_with_or_without_digest(check_digest: bool) -> None:
    frame = bytearray(encode_data(b"abcdef"))
    frame[-1] ^= 0x01
    decoder = ChunkDecoder(check_digest=check_digest)
    decoder.receive_data(bytes(frame))
    with pytest.raises(RemoteProtocolError, match="checksum") as caught:
        decoder.next_event()
    assert caught.value.recoverable is False
    assert decoder.size == 0


@pytest.mark.parametrize("check_digest", [True, False])
def test_corrupt_payload_is_caught_by_the_crc(check_digest: bool) -> None:
    frame = bytearray(encode_data(b"abcdef"))
    frame[7] ^= 0x20
    decoder = ChunkDecoder(check_digest=check_digest)
    decoder.receive_data(bytes(frame))
    with pytest.raises(RemoteProtocolError, match="checksum"):
        decoder.next_event()


@pytest.mark.parametrize("length", [0, 39, 41])
def test_malformed_end_frame_is_refused(length: int) -> None:
    decoder = ChunkDecoder(check_digest=False)
    decoder.receive_data(encode_frame(b"E", b"\x00" * length))
    with pytest.raises(RemoteProtocolError, match="malformed end frame"):
        decoder.next_event()


def test_sender_failure_ends_the_stream_with_its_reason() -> None:
    decoder = ChunkDecoder()
    frame = encode_error("cannot read it")
    decoder.receive_data(encode_data(b"abc") + frame)
    events = drain(decoder)
    assert events[-1] == SenderFailed("cannot read it", frame)
    assert decoder.finished
    decoder.end_of_stream()  # the sender said why: not a truncation
    decoder.receive_data(encode_data(b"late"))
    with pytest.raises(RemoteProtocolError, match="after the end"):
        decoder.next_event()


def test_sender_failure_with_invalid_utf8_is_still_reported() -> None:
    decoder = ChunkDecoder()
    decoder.receive_data(encode_frame(b"X", b"bad \xff\xfe"))
    event = decoder.next_event()
    assert isinstance(event, SenderFailed)
    assert event.message == "bad \ufffd\ufffd"


def test_size_counts_verified_data_only() -> None:
    decoder = ChunkDecoder()
    decoder.receive_data(encode_data(b"12345") + encode_data(b"678")[:-1])
    assert isinstance(decoder.next_event(), DataChunk)
    assert decoder.next_event() is NEED_DATA
    assert decoder.size == 5


# --- the handshake ----------------------------------------------------------------------------


def test_handshake_exact_bytes() -> None:
    relay, agent = RelayHandshake(), AgentHandshake()
    assert relay.send(TransferRequest("ab12")) == b'{"token": "ab12"}\n'
    assert relay.send(TransferRequest("ab12", 5)) == b'{"token": "ab12", "size": 5}\n'
    assert agent.send(TransferAccepted(5)) == b'{"status": "ok", "size": 5}\n'
    assert agent.send(TransferRefused("no such file")) == (
        b'{"status": "error", "message": "no such file"}\n'
    )
    assert agent.send(TransferRefused("é")) == '{"status": "error", "message": "é"}\n'.encode()


def test_each_end_sends_only_its_own_events() -> None:
    with pytest.raises(TypeError):
        RelayHandshake().send(TransferAccepted(1))  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        AgentHandshake().send(TransferRequest("t"))  # type: ignore[arg-type]


def test_over_long_header_cannot_be_sent() -> None:
    fits = RelayHandshake().send(TransferRequest("x" * (MAX_HEADER_BYTES - 14)))
    assert len(fits) == MAX_HEADER_BYTES  # {"token": "…"}\n
    with pytest.raises(ValueError, match="too long"):
        RelayHandshake().send(TransferRequest("x" * (MAX_HEADER_BYTES - 13)))


def test_request_and_the_bytes_after_it() -> None:
    agent = AgentHandshake()
    first_frames = encode_data(b"abc")
    agent.receive_data(b'{"token": "t1", "size": 3}\n' + first_frames)
    assert agent.next_event() == TransferRequest("t1", 3)
    assert agent.take_rest() == first_frames
    assert agent.take_rest() == b""


def test_reply_and_the_bytes_after_it() -> None:
    relay = RelayHandshake()
    first_frames = encode_data(b"abc")
    relay.receive_data(b'{"status": "ok", "size": 3}\n' + first_frames)
    assert relay.next_event() == TransferAccepted(3)
    assert relay.take_rest() == first_frames


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (b'{"status": "error", "message": "no such file"}\n', TransferRefused("no such file")),
        (b'{"status": "error"}\n', TransferRefused("")),
        (b'{"status": "error", "message": ""}\n', TransferRefused("")),
        (b'{"status": "busy", "message": 7}\n', TransferRefused("7")),
        (b"{}\n", TransferRefused("")),
        (b'{"status": "ok", "size": 0, "extra": true}\n', TransferAccepted(0)),
    ],
)
def test_replies_are_read_liberally(line: bytes, expected: object) -> None:
    relay = RelayHandshake()
    relay.receive_data(line)
    assert relay.next_event() == expected


def test_header_needs_data_until_the_newline() -> None:
    agent = AgentHandshake()
    line = RelayHandshake().send(TransferRequest("abc"))
    for byte in line[:-1]:
        agent.receive_data(bytes([byte]))
        assert agent.next_event() is NEED_DATA
    agent.receive_data(b"\n")
    assert agent.next_event() == TransferRequest("abc")


def test_longest_header_line_is_accepted_piece_by_piece() -> None:
    line = RelayHandshake().send(TransferRequest("x" * (MAX_HEADER_BYTES - 14)))
    assert len(line) == MAX_HEADER_BYTES
    agent = AgentHandshake()
    for start in range(0, len(line), 100):
        agent.receive_data(line[start : start + 100])
    assert agent.next_event() == TransferRequest("x" * (MAX_HEADER_BYTES - 14))


def test_header_without_newline_at_the_limit_still_waits() -> None:
    agent = AgentHandshake()
    agent.receive_data(b"{" + b" " * (MAX_HEADER_BYTES - 1))
    assert agent.next_event() is NEED_DATA


def test_header_without_newline_beyond_the_limit_is_refused() -> None:
    agent = AgentHandshake()
    agent.receive_data(b"{" + b" " * MAX_HEADER_BYTES)
    with pytest.raises(RemoteProtocolError, match="too long") as caught:
        agent.next_event()
    assert caught.value.recoverable is False


def test_over_long_header_line_is_refused_even_in_one_read() -> None:
    # Regression: the limit used to hold only while no newline had arrived.
    line = b'{"token": "' + b"x" * (2 * MAX_HEADER_BYTES) + b'"}\n'
    agent = AgentHandshake()
    agent.receive_data(line)
    with pytest.raises(RemoteProtocolError, match="too long"):
        agent.next_event()


BAD_LINES = [
    b"not json\n",
    b"\n",
    b'{"token": \n',
    b'{"token": "caf\xc3"}\n',  # invalid UTF-8
    b"\xff\xfe\n",
    b"[1, 2]\n",
    b'"token"\n',
    b"42\n",
    b"null\n",
    b"[" * 2000 + b"]" * 2000 + b"\n",  # deep nesting within the size limit
]


@pytest.mark.parametrize(
    "line",
    [
        *BAD_LINES,
        b"{}\n",
        b'{"token": ""}\n',
        b'{"token": 7}\n',
        b'{"token": null}\n',
        b'{"token": "t", "size": -1}\n',
        b'{"token": "t", "size": "3"}\n',
        b'{"token": "t", "size": true}\n',
        b'{"token": "t", "size": 1.5}\n',
    ],
)
def test_bad_request_is_refused(line: bytes) -> None:
    agent = AgentHandshake()
    agent.receive_data(line)
    with pytest.raises(RemoteProtocolError, match="bad file header") as caught:
        agent.next_event()
    assert caught.value.recoverable is False


@pytest.mark.parametrize(
    "line",
    [
        *BAD_LINES,
        b'{"status": "ok"}\n',
        b'{"status": "ok", "size": -1}\n',
        b'{"status": "ok", "size": "3"}\n',
        b'{"status": "ok", "size": false}\n',
    ],
)
def test_bad_reply_is_refused(line: bytes) -> None:
    relay = RelayHandshake()
    relay.receive_data(line)
    with pytest.raises(RemoteProtocolError, match="bad file header") as caught:
        relay.next_event()
    assert caught.value.recoverable is False


TOKENS = st.text(min_size=1, max_size=40)
SIZES = st.integers(min_value=0, max_value=2**63)


def split_and_read(
    reader: RelayHandshake | AgentHandshake, line: bytes, rest: bytes, cut: int
) -> object:
    """Feed ``line + rest`` cut at one point; the event read, once the rest is checked."""
    data = line + rest
    point = cut % (len(data) + 1)
    reader.receive_data(data[:point])
    got = reader.next_event()
    if got is NEED_DATA:
        assert point < len(line)
        reader.receive_data(data[point:])
        got = reader.next_event()
        assert reader.take_rest() == rest
    else:
        assert reader.take_rest() + data[point:] == rest
    return got


@PROPERTY
@given(
    request=st.builds(TransferRequest, TOKENS, st.none() | SIZES),
    rest=st.binary(max_size=50),
    cut=st.integers(min_value=0),
)
def test_request_round_trip_split_anywhere(request: TransferRequest, rest: bytes, cut: int) -> None:
    line = RelayHandshake().send(request)
    assert split_and_read(AgentHandshake(), line, rest, cut) == request


@PROPERTY
@given(
    reply=st.one_of(
        st.builds(TransferAccepted, SIZES), st.builds(TransferRefused, st.text(max_size=200))
    ),
    rest=st.binary(max_size=50),
    cut=st.integers(min_value=0),
)
def test_reply_round_trip_split_anywhere(
    reply: TransferAccepted | TransferRefused, rest: bytes, cut: int
) -> None:
    line = AgentHandshake().send(reply)
    assert split_and_read(RelayHandshake(), line, rest, cut) == reply


# --- plain file names -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "a.txt",
        "Ameca_splendens.jpg",
        "a",
        "file with spaces.txt",
        "x..y",
        "archive.tar.gz",
        "émoji-✓.bin",
        "n" * 255,
    ],
)
def test_plain_file_names_are_accepted(name: str) -> None:
    assert is_plain_file_name(name)


@pytest.mark.parametrize(
    "name",
    [
        "",
        ".",
        "..",
        "../x",
        "..\\x",
        "/etc/passwd",
        "a/b",
        "a\\b",
        "x\x00y",
        ".hidden",
        ".a.txt.1234.part",
        "line\nbreak",
        "tab\there",
        "n" * 256,
        "C:\\Windows\\win.ini",
    ],
)
def test_tricky_file_names_are_refused(name: str) -> None:
    assert not is_plain_file_name(name)


def test_struct_constants_match_the_documented_layout() -> None:
    # kind (1) | length (4, big-endian) | payload | CRC-32C (4): checked against struct directly.
    frame = encode_data(b"\x00\x01")
    kind, length = struct.unpack(">cI", frame[:5])
    assert (kind, length) == (b"D", 2)
    assert struct.unpack(">I", frame[-4:])[0] == crc32c(b"\x00\x01")
