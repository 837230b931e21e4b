"""The file agent behind ``-l``: serves fetches and receives deliveries the server announced.

A file connection is served only if its first line presents a token that the server announced
over this client's own chat connection; the two race, so an unknown token is given a few
seconds to be announced before the connection is closed with nothing said. Owners serve only
plain names inside their share directory; requesters write a hidden temporary file there,
verify every chunk and the whole-file digest, fsync, and rename it into place, so a partial or
corrupt file never appears under the final name.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import trio

from triochat.client.disk_writer import DiskThread, DiskWriter, open_direct_writer
from triochat.client.file_sender import send_file
from triochat.events import FileAnnouncement, FileFailed, TransferRole, file_failed_text
from triochat.transfer_io import FileLink, FrameRun, FrameWindow, TransferError
from triochat.wire.chunks import (
    AgentHandshake,
    FrameScanner,
    TransferAccepted,
    TransferRefused,
    TransferRequest,
    encode_error,
    is_plain_file_name,
    new_digest,
)
from triochat.wire.common import RemoteProtocolError

logger = logging.getLogger(__name__)

ANNOUNCE_WAIT = 5.0
"""Seconds a file connection may wait for its token to be announced over chat."""
HEADER_TIMEOUT = 5.0
"""Seconds a file connection has to send its header line."""
STALL_TIMEOUT = 30.0
"""Seconds a transfer may go without progress."""
MAX_PENDING = 256
"""Announced tokens kept at once; the oldest are forgotten first."""
WRITE_BUFFERS = 4
"""Receive buffers (1 MiB each) a delivery may hold: the disk writes overlap the receiving
within this much memory per transfer."""
FLUSH_EVERY = 64 * 1024 * 1024
"""Bytes written through the page cache between early ``fdatasync`` calls, which run beside
the writes so that the fsync before the rename has little left to flush (the durability
guarantee stays). Direct writes leave nothing there to flush."""


@dataclass(frozen=True)
class Expected:
    """A transfer the server announced: our ``role`` in it, the file, and the other member."""

    role: TransferRole
    filename: str
    peer: str


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


class FileAgent:
    """Serves and receives files for one menu client.

    Args:
        share_dir: the directory files are served from and written to.
        report: prints one line for the user (a file arrived, or failed and why).
        stall_timeout: seconds without progress before a transfer is abandoned.
        progress: shows a delivery's progress line (rewritten in place); ``None``: not shown.
    """

    def __init__(
        self,
        share_dir: Path,
        report: Callable[[str], None],
        *,
        stall_timeout: float = STALL_TIMEOUT,
        announce_wait: float = ANNOUNCE_WAIT,
        progress: Callable[[str], None] | None = None,
    ) -> None:
        self._share_dir = share_dir.resolve()
        self._report = report
        self._progress = progress
        self._stall_timeout = stall_timeout
        self._announce_wait = announce_wait
        self._expected: OrderedDict[str, Expected] = OrderedDict()
        self._reported: OrderedDict[str, None] = OrderedDict()
        self._announced = trio.Event()
        self._file_mode = 0o666 & ~_current_umask()

    # --- announcements (from the chat connection) --------------------------------------------

    def announce(self, announcement: FileAnnouncement) -> None:
        """The server will connect with the announced token; remember what for."""
        self._expected[announcement.token] = Expected(
            announcement.role, announcement.filename, announcement.peer
        )
        while len(self._expected) > MAX_PENDING:
            self._expected.popitem(last=False)
        self._announced.set()
        self._announced = trio.Event()

    def transfer_failed(self, failure: FileFailed) -> None:
        """The server says a transfer we asked for failed (said once per transfer)."""
        self._expected.pop(failure.token, None)
        self._report_once(failure.token, failure.text)

    def _report_once(self, token: str, line: str) -> None:
        """Print a transfer's outcome unless it was printed already.

        The server reports failures over chat, and the file connection may report the same
        failure: whichever comes first is shown.
        """
        if token:
            if token in self._reported:
                return
            self._reported[token] = None
            while len(self._reported) > MAX_PENDING:
                self._reported.popitem(last=False)
        self._report(line)

    async def _claim(self, token: str) -> Expected | None:
        with trio.move_on_after(self._announce_wait):
            while token not in self._expected:
                await self._announced.wait()
            return self._expected.pop(token)
        return None

    # --- connections -------------------------------------------------------------------------

    async def serve(
        self,
        listeners: list[trio.SocketListener],
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Accept file connections until cancelled."""
        async with trio.open_nursery() as nursery:
            task_status.started()
            await trio.serve_listeners(self.handle, listeners, handler_nursery=nursery)

    async def handle(self, stream: trio.abc.Stream) -> None:
        """Serve one file connection; a stranger gets nothing at all."""
        try:
            async with stream:
                link = FileLink(stream, self._stall_timeout)
                handshake = AgentHandshake()
                request: TransferRequest | None = None
                with trio.move_on_after(HEADER_TIMEOUT):
                    request = await link.read_handshake(handshake)
                if request is None:
                    return
                expected = await self._claim(request.token)
                if expected is None:
                    return
                if expected.role is TransferRole.FETCH:
                    await self._serve_file(link, handshake, expected)
                else:
                    await self._receive_file(
                        link, handshake, request, expected, handshake.take_rest()
                    )
        except (TransferError, trio.BrokenResourceError, trio.ClosedResourceError) as error:
            logger.info("file connection ended: %s", error)
        except Exception:
            # A bad request must never end the client: log it and keep serving.
            logger.exception("file connection failed")

    # --- owner side --------------------------------------------------------------------------

    def _shared_path(self, filename: str) -> Path:
        """The file ``filename`` names in the share directory, or why it cannot be served."""
        if not is_plain_file_name(filename):
            raise TransferError("not a plain file name")
        path = self._share_dir / filename
        # A link may point anywhere: serve it only if it resolves inside the share directory.
        if path.resolve().parent != self._share_dir:
            raise TransferError("no such file")
        return path

    async def _serve_file(
        self, link: FileLink, handshake: AgentHandshake, expected: Expected
    ) -> None:
        try:
            path = self._shared_path(expected.filename)
            # Unbuffered: reads go straight into the frames being sent.
            file = await trio.open_file(path.resolve(), "rb", buffering=0)
        except TransferError as error:
            await link.send(handshake.send(TransferRefused(str(error))))
            return
        except OSError as error:
            reason = "no such file" if isinstance(error, FileNotFoundError) else "cannot read it"
            await link.send(handshake.send(TransferRefused(reason)))
            return
        async with file:
            size = os.fstat(file.fileno()).st_size
            await link.send(handshake.send(TransferAccepted(size)))
            try:
                sent = await send_file(link, file.wrapped, new_digest())
            except OSError as error:
                logger.info("reading %s failed: %s", expected.filename, error)
                await link.send(encode_error("the owner cannot read the file"))
                return
        logger.info("served %s (%d bytes) to %s", expected.filename, sent, expected.peer)

    # --- requester side ----------------------------------------------------------------------

    async def _receive_file(
        self,
        link: FileLink,
        handshake: AgentHandshake,
        request: TransferRequest,
        expected: Expected,
        rest: bytes,
    ) -> None:
        token = request.token
        filename, owner = expected.filename, expected.peer
        if not is_plain_file_name(filename):
            raise TransferError("not a plain file name")
        fd, temp_name = tempfile.mkstemp(
            prefix=f".{filename}.", suffix=".part", dir=self._share_dir
        )
        temp_path = Path(temp_name)
        disk = DiskWriter(fd, open_direct_writer(temp_path))
        failure: str | None = None
        try:
            meter = None
            if self._progress is not None:
                meter = ProgressMeter(f"File {filename} from {owner}", request.size, self._progress)
            size = await self._write_verified(link, disk, rest, meter)
            os.chmod(temp_path, self._file_mode)
            os.replace(temp_path, self._share_dir / filename)
        except (
            TransferError,
            OSError,
            trio.BrokenResourceError,
            trio.ClosedResourceError,
        ) as error:
            failure = (
                error.strerror if isinstance(error, OSError) and error.strerror else str(error)
            )
        finally:
            # Whatever happened (cancellation included), no descriptor stays open and no
            # temporary file is left behind.
            disk.close()
            os.close(fd)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temp_path)
        if failure is not None:
            self._report_once(token, file_failed_text(filename, owner, failure))
            with (
                trio.move_on_after(1),
                contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError),
            ):
                await link.stream.send_all(handshake.send(TransferRefused(failure)))
            return
        self._report_once(token, f"File {filename} received from {owner}: {size} bytes, verified")
        with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
            await link.send(handshake.send(TransferAccepted(size)))

    async def _write_verified(
        self, link: FileLink, disk: DiskWriter, rest: bytes, meter: ProgressMeter | None = None
    ) -> int:
        """Receive, verify and write the file; return its size once it is on disk.

        Frames are verified where they land in the receive buffers, and the delivery's own
        thread (:class:`~triochat.client.disk_writer.DiskThread`) writes their payloads from
        there while the next ones arrive (at most :data:`WRITE_BUFFERS` buffers are held):
        nothing is copied in Python, and aligned chunks not even into the page cache. Every
        :data:`FLUSH_EVERY` bytes written through the page cache the thread flushes them, so
        the fsync before the rename has little left to do.
        """
        scanner = FrameScanner(check_digest=True)
        window = FrameWindow(link, scanner, rest, buffers=WRITE_BUFFERS, aligned=True)
        failure: Exception | None = None
        complete = False
        with trio.CancelScope() as receiving:
            writer = DiskThread(disk, flush_every=FLUSH_EVERY, on_error=receiving.cancel)
            try:
                await self._receive_runs(window, scanner, writer.submit, meter)
                complete = True
            except (TransferError, trio.BrokenResourceError, trio.ClosedResourceError) as error:
                failure = error
            finally:
                # Returns only once the thread no longer writes from the receive buffers.
                await writer.finish(sync=complete)
        if writer.error is not None:
            raise writer.error
        if failure is not None:
            raise failure
        return int(scanner.size)

    async def _receive_runs(
        self,
        window: FrameWindow,
        scanner: FrameScanner,
        submit: Callable[[FrameRun], None],
        meter: ProgressMeter | None,
    ) -> None:
        try:
            while not scanner.finished:
                submit(await window.next_run(payloads=True))
                if meter is not None:
                    meter.update(scanner.size)
                # A schedule point per run: receiving never waits while data keeps coming.
                await trio.lowlevel.checkpoint()
        except RemoteProtocolError as error:
            raise TransferError(str(error)) from error
        if scanner.failure is not None:
            raise TransferError(scanner.failure)


PROGRESS_AFTER = 1.0
"""Seconds a delivery runs before its progress line appears (SPEC §6: "about a second")."""
PROGRESS_EVERY = 0.25
"""Seconds between rewrites of the progress line."""


def _amount(count: float) -> str:
    for unit in ("B", "KiB", "MiB"):
        if count < 1024:
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024
    return f"{count:.2f} GiB"


class ProgressMeter:
    """A delivery's progress line: bytes, rate and time left, at most every
    :data:`PROGRESS_EVERY` seconds once it has run :data:`PROGRESS_AFTER` seconds.

    Formatting a line costs microseconds and writing it to a terminal is one small write, so
    it runs on the event loop (no library needed, and none blocks less).
    """

    def __init__(self, label: str, total: int | None, show: Callable[[str], None]) -> None:
        self._label = label
        self._total = total
        self._show = show
        self._start = trio.current_time()
        self._next = self._start + PROGRESS_AFTER

    def update(self, done: int) -> None:
        """``done`` bytes arrived so far; show the line if it is time."""
        now = trio.current_time()
        if now < self._next:
            return
        self._next = now + PROGRESS_EVERY
        self._show(self.line(done, now - self._start))

    def line(self, done: int, elapsed: float) -> str:
        """The text for ``done`` bytes after ``elapsed`` seconds."""
        rate = done / elapsed if elapsed > 0 else 0.0
        text = f"{self._label}: {_amount(done)}"
        if self._total:
            text += f" of {_amount(self._total)} ({100 * done // self._total}%)"
        text += f", {rate / 1e6:.0f} MB/s"
        if self._total and rate > 0:
            text += f", {max(self._total - done, 0) / rate:.0f} s left"
        return text
