"""The file relay: fetch from the owner's file port, verify each chunk, stream to the requester.

For each request the relay announces two unguessable tokens over the members' own chat
connections (the owner's says "serve this file", the requester's says "expect this file"),
then dials the owner's file port, reads the header, dials the requester's file port and pipes
frames through, checking each chunk's CRC-32C where it lands and sending it on from there
(``transfer_io.FrameWindow``). Backpressure is the send: the relay holds at most two frame
buffers (1 MiB each) per transfer, whatever the file size. Any failure
ends that transfer only: the requester is told (over its file connection if it is open, over
chat otherwise) and the console gets a line.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

import trio

from triochat.events import FileAnnouncement, FileFailed, FileRequest, ServerEvent, TransferRole
from triochat.room import Delivery, Member, Room
from triochat.server.config import MAX_FILE_BYTES
from triochat.transfer_io import FileLink, FrameWindow, TransferCutShort, TransferError
from triochat.wire.chunks import (
    FrameScanner,
    RelayHandshake,
    TransferRefused,
    TransferRequest,
    encode_error,
    is_plain_file_name,
)
from triochat.wire.common import RemoteProtocolError

logger = logging.getLogger(__name__)

CONNECT_TIMEOUT = 5.0
"""Seconds to reach a member's file port."""
STALL_TIMEOUT = 30.0
"""Seconds a transfer may go without any progress before it is abandoned."""
MAX_TRANSFERS = 64
"""Transfers running at once; more requests are refused with a message."""

Connector = Callable[[str, int], Awaitable[trio.abc.Stream]]


class OwnerFailed(TransferError):
    """The owner ended with an error frame, which the relay forwarded as it came."""


class RelayObserver(Protocol):
    """Hears how transfers end (the server console)."""

    def transfer_finished(self, filename: str, owner: str, requester: str, size: int) -> None: ...

    def transfer_failed(self, filename: str, owner: str, requester: str, reason: str) -> None: ...


class SilentRelayObserver:
    """A relay observer that records nothing."""

    def transfer_finished(self, filename: str, owner: str, requester: str, size: int) -> None:
        """Ignore."""

    def transfer_failed(self, filename: str, owner: str, requester: str, reason: str) -> None:
        """Ignore."""


@dataclass
class RelayStatistics:
    """Counters for monitoring and benchmarks."""

    started: int = 0
    completed: int = 0
    failed: int = 0
    bytes_relayed: int = 0


@dataclass(frozen=True)
class Transfer:
    """One request in flight."""

    owner: Member
    requester: Member
    filename: str
    fetch_token: str
    deliver_token: str


def new_token() -> str:
    """An unguessable one-time token (128 bits)."""
    return secrets.token_hex(16)


async def _open_tcp(host: str, port: int) -> trio.abc.Stream:
    return await trio.open_tcp_stream(host, port)


class FileRelay:
    """Runs transfers in its own nursery; :meth:`request` is synchronous for the sessions.

    Args:
        room: where owners and requesters are looked up.
        observer: told how each transfer ends.
        connect: opens a stream to (ip, port); tests pass in-memory streams.
        stall_timeout: seconds without progress before a transfer is abandoned.
    """

    def __init__(
        self,
        room: Room,
        observer: RelayObserver,
        *,
        connect: Connector = _open_tcp,
        stall_timeout: float = STALL_TIMEOUT,
        max_file_bytes: int = MAX_FILE_BYTES,
    ) -> None:
        self._room = room
        self._observer = observer
        self._connect = connect
        self._stall_timeout = stall_timeout
        self._max_file_bytes = max_file_bytes
        self._nursery: trio.Nursery | None = None
        self._active = 0
        self.stats = RelayStatistics()

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Host transfers until cancelled."""
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            task_status.started()
            await trio.sleep_forever()

    def request(self, requester: Member, request: FileRequest) -> None:
        """Start a transfer for ``requester``, or tell it at once why not."""
        owner = self._room.find(request.owner)
        reason = self._refusal(requester, owner, request.filename)
        if reason is not None or owner is None or self._nursery is None:
            reason = reason or "unavailable"
            self._observer.transfer_failed(request.filename, request.owner, requester.name, reason)
            self._tell(requester, FileFailed("", request.filename, request.owner, reason))
            return
        transfer = Transfer(owner, requester, request.filename, new_token(), new_token())
        # Announced before dialing: each side's agent learns its token over its own chat.
        self._tell(
            owner,
            FileAnnouncement(
                TransferRole.FETCH, transfer.fetch_token, transfer.filename, requester.name
            ),
        )
        self._tell(
            requester,
            FileAnnouncement(
                TransferRole.DELIVER, transfer.deliver_token, transfer.filename, owner.name
            ),
        )
        self._active += 1
        self.stats.started += 1
        self._nursery.start_soon(self._run, transfer)

    def _refusal(self, requester: Member, owner: Member | None, filename: str) -> str | None:
        if requester.file_port is None:
            return "you have no file port (start the menu client with -l <port>)"
        if owner is None:
            return "no member of that name is in the room (yet)"
        if owner is requester:
            return "you own that file already"
        if owner.file_port is None:
            return f"{owner.name} does not share files"
        if not is_plain_file_name(filename):
            return "not a plain file name"
        if self._active >= MAX_TRANSFERS:
            return "too many transfers running; try again later"
        return None

    @staticmethod
    def _tell(member: Member, event: ServerEvent) -> None:
        member.deliver_nowait(Delivery(event))

    async def _run(self, transfer: Transfer) -> None:
        names = (transfer.filename, transfer.owner.name, transfer.requester.name)
        reason: str | None = None
        size = 0
        try:
            size = await self._relay(transfer)
        except TransferError as failure:
            reason = str(failure)
        except Exception:
            # A bug in one transfer must not take the server down; it is logged, not hidden.
            logger.exception("transfer of %r failed unexpectedly", transfer.filename)
            reason = "internal error"
        finally:
            self._active -= 1
        if reason is None:
            self.stats.completed += 1
            self._observer.transfer_finished(*names, size)
            return
        self.stats.failed += 1
        self._observer.transfer_failed(*names, reason)
        # Always over chat too: the file connection may never have reached the requester.
        # Its agent shows one failure line per transfer, whichever report arrives first.
        self._tell(
            transfer.requester,
            FileFailed(transfer.deliver_token, transfer.filename, transfer.owner.name, reason),
        )

    async def _relay(self, transfer: Transfer) -> int:
        owner, requester = transfer.owner, transfer.requester
        streams: list[trio.abc.Stream] = []
        try:
            source = FileLink(await self._dial(owner, "owner"), self._stall_timeout)
            streams.append(source.stream)
            from_owner = RelayHandshake()
            await source.send(from_owner.send(TransferRequest(transfer.fetch_token)))
            offer = await source.read_handshake(from_owner)
            if isinstance(offer, TransferRefused):
                raise TransferError(offer.reason or "the owner refused")
            size = offer.size
            if size > self._max_file_bytes:
                raise TransferError(
                    f"file too large ({size} bytes; the limit is {self._max_file_bytes})"
                )
            destination = FileLink(await self._dial(requester, "requester"), self._stall_timeout)
            streams.append(destination.stream)
            to_requester = RelayHandshake()
            await destination.send(to_requester.send(TransferRequest(transfer.deliver_token, size)))
            try:
                await self._pipe(source, destination, from_owner.take_rest())
            except OwnerFailed:
                raise  # its error frame went to the requester already: one is all it reads
            except TransferError as failure:
                with (
                    trio.move_on_after(1),
                    contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError),
                ):
                    await destination.stream.send_all(encode_error(str(failure)))
                raise
            reply = await destination.read_handshake(to_requester)
            if isinstance(reply, TransferRefused):
                raise TransferError(reply.reason or "the requester refused the file")
            return size
        finally:
            for stream in streams:
                await trio.aclose_forcefully(stream)

    async def _dial(self, member: Member, role: str) -> trio.abc.Stream:
        assert member.file_port is not None
        try:
            with trio.fail_after(CONNECT_TIMEOUT):
                return await self._connect(member.ip, member.file_port)
        except (OSError, trio.TooSlowError) as error:
            raise TransferError(f"cannot reach the {role}'s file port ({error})") from error

    async def _pipe(self, source: FileLink, destination: FileLink, first: bytes) -> None:
        """Forward frames once verified, straight from the receive buffer (no copies); the
        relay holds at most two buffers of one transfer."""
        scanner = FrameScanner(check_digest=False)
        window = FrameWindow(source, scanner, first)
        while not scanner.finished:
            counted = scanner.size
            try:
                run = await window.next_run()
            except TransferCutShort as error:
                raise TransferError(f"the owner hung up after {scanner.size} bytes") from error
            except RemoteProtocolError as error:
                raise TransferError(f"corrupt data from the owner: {error}") from error
            if scanner.size > self._max_file_bytes:
                # The file grew past the limit while the owner was sending it.
                raise TransferError(f"file too large (limit {self._max_file_bytes})")
            try:
                await destination.send(run.frames)
            finally:
                run.release()
            self.stats.bytes_relayed += scanner.size - counted
        if scanner.failure is not None:
            raise OwnerFailed(f"the owner failed: {scanner.failure}")
