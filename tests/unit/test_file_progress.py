"""The requester's progress line (SPEC §6): after about a second, rewritten in place on a
terminal with bytes, rate and time left; never on piped output."""

from __future__ import annotations

import io
import random
from pathlib import Path

import pytest
import trio
import trio.testing

from triochat.client import early
from triochat.client.file_agent import PROGRESS_AFTER, FileAgent, ProgressMeter
from triochat.events import FileAnnouncement, TransferRole

from .file_transfer_helpers import TOKEN, Reports, delivery, parse_reply, read_to_end


async def test_the_line_has_bytes_rate_and_time_left() -> None:
    meter = ProgressMeter("File a.bin from alice", 100 * 1024 * 1024, lambda line: None)
    line = meter.line(25 * 1024 * 1024, 2.0)
    assert line == "File a.bin from alice: 25.0 MiB of 100.0 MiB (25%), 13 MB/s, 6 s left"


async def test_without_a_size_the_line_has_no_time_left() -> None:
    meter = ProgressMeter("File a.bin from alice", None, lambda line: None)
    assert meter.line(2048, 1.0) == "File a.bin from alice: 2.0 KiB, 0 MB/s"


async def test_the_line_appears_after_a_second_and_at_most_four_times_a_second(
    autojump_clock: trio.testing.MockClock,
) -> None:
    lines: list[str] = []
    meter = ProgressMeter("f", 1000, lines.append)
    for step in range(1, 31):  # 3 s in steps of 0.1 s
        await trio.sleep(0.1)
        meter.update(step)
    # From about 1 s on, at most every 0.25 s (steps of 0.1 s make it every 0.3 s here).
    assert 6 <= len(lines) <= 9
    assert lines[0].startswith("f: 1") and "of 1000 B (1%)" in lines[0]


async def test_a_slow_delivery_reports_progress_then_the_final_line(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    data = random.Random(3).randbytes(50_000)
    reports = Reports()
    progress: list[str] = []
    agent = FileAgent(tmp_path, reports, progress=progress.append)
    agent.announce(FileAnnouncement(TransferRole.DELIVER, TOKEN, "slow.bin", "alice"))
    ours, theirs = trio.testing.memory_stream_pair()
    raw = delivery(data, chunk=5_000)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(agent.handle, theirs)
        for start in range(0, len(raw), 5_000):  # 0.2 s per 5 KB: about 2 s in all
            await ours.send_all(raw[start : start + 5_000])
            await trio.sleep(0.2)
        reply = parse_reply(await read_to_end(ours))
    assert reply.header == {"status": "ok", "size": len(data)}
    assert progress and all(line.startswith("File slow.bin from alice: ") for line in progress)
    assert "of 48.8 KiB" in progress[0] and "s left" in progress[0]
    assert reports.lines == [f"File slow.bin received from alice: {len(data)} bytes, verified"]
    assert PROGRESS_AFTER == 1.0


class FakeStdout(io.StringIO):
    def __init__(self, terminal: bool) -> None:
        super().__init__()
        self.terminal = terminal

    def isatty(self) -> bool:
        return self.terminal


def test_on_a_terminal_the_status_is_rewritten_and_erased_by_the_next_line(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    out = FakeStdout(terminal=True)
    monkeypatch.setattr("sys.stdout", out)
    monkeypatch.setattr(early, "_status_shown", False)
    early.show_status("1 MiB")
    early.show_status("2 MiB")
    early.say("File x received")
    early.say("next")
    assert out.getvalue() == "\r1 MiB\x1b[K\r2 MiB\x1b[K\r\x1b[KFile x received\nnext\n"


def test_piped_output_gets_no_status_only_the_lines(monkeypatch: pytest.MonkeyPatch) -> None:
    out = FakeStdout(terminal=False)
    monkeypatch.setattr("sys.stdout", out)
    monkeypatch.setattr(early, "_status_shown", False)
    early.show_status("1 MiB")
    early.say("File x received")
    assert out.getvalue() == "File x received\n"
