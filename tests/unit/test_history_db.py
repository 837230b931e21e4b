"""The SQLite history store: batched writes off the event loop, WAL, pruning, a restart."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
import trio
import trio.testing

from triochat.events import ChatMessage
from triochat.history import History
from triochat.room import Room
from triochat.server import history_db
from triochat.server.history_db import SqliteHistory

from .helpers import NOW, make_member


def message(number: int) -> ChatMessage:
    return ChatMessage(f"s{number}", f"text {number}", NOW, NOW, "127.0.0.1", 4000 + number)


async def run_store(store: SqliteHistory, messages: list[ChatMessage]) -> None:
    """Serve ``store``, hand it ``messages`` in one go, then stop it (it writes the rest)."""
    async with trio.open_nursery() as nursery:
        await nursery.start(store.serve)
        for each in messages:
            store.enqueue(each)
        await trio.testing.wait_all_tasks_blocked()
        nursery.cancel_scope.cancel()


async def test_history_survives_a_restart_and_the_file_keeps_only_the_last_n(
    tmp_path: Path,
) -> None:
    path = str(tmp_path / "history.db")
    store = await SqliteHistory.open(path, 5, batch_window=0)
    assert store.initial == []
    room = Room(history=History(5, sink=store.enqueue, initial=store.initial))
    ann, _ = make_member("ann")
    room.join(ann)
    async with trio.open_nursery() as nursery:
        await nursery.start(store.serve)
        for number in range(8):
            room.broadcast(ann, f"m{number}", received_at=NOW)
        nursery.cancel_scope.cancel()  # the last batch is still written
    assert store.statistics().written == 8

    again = await SqliteHistory.open(path, 5, batch_window=0)
    assert [m.text for m in again.initial] == ["m3", "m4", "m5", "m6", "m7"]
    assert again.initial[0].sender == "ann" and again.initial[0].display_time == NOW
    assert again.statistics().loaded == 5
    await again.aclose()
    with sqlite3.connect(path) as raw:
        assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert raw.execute("SELECT COUNT(*) FROM messages").fetchone()[0] == 5
    fewer = await SqliteHistory.open(path, 2, batch_window=0)  # a smaller --history after a restart
    assert [m.text for m in fewer.initial] == ["m6", "m7"]
    await fewer.aclose()


async def test_a_flood_is_written_in_few_batches(tmp_path: Path) -> None:
    store = await SqliteHistory.open(str(tmp_path / "h.db"), 100, batch_window=0)
    await run_store(store, [message(n) for n in range(3000)])
    stats = store.statistics()
    assert stats.written == 3000 and stats.pending == 0
    assert stats.batches <= 3  # one transaction per batch, not one per message


async def test_a_full_queue_drops_the_oldest_and_counts_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(history_db, "MAX_PENDING", 10)
    store = await SqliteHistory.open(str(tmp_path / "h.db"), 100, batch_window=0)
    for number in range(15):  # nobody is writing yet: a stalled disk
        store.enqueue(message(number))
    assert store.statistics().dropped == 5 and store.statistics().pending == 10
    await run_store(store, [])
    again = await SqliteHistory.open(str(tmp_path / "h.db"), 100, batch_window=0)
    assert again.initial[0].text == "text 5"
    await again.aclose()


async def test_a_file_that_is_not_a_database_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "not.db"
    path.write_bytes(b"this is not an SQLite database, not at all" * 100)
    with pytest.raises(sqlite3.Error):
        await SqliteHistory.open(str(path), 10, batch_window=0)


async def test_messages_that_come_within_the_batch_window_share_one_transaction(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    store = await SqliteHistory.open(str(tmp_path / "h.db"), 100, batch_window=0.05)
    async with trio.open_nursery() as nursery:
        await nursery.start(store.serve)
        for number in range(3):  # a few per scheduler turn, as in a flood
            store.enqueue(message(number))
            await trio.sleep(0.01)
        # (Virtual time cannot wait for the worker thread: stopping writes what is left.)
        nursery.cancel_scope.cancel()
    # Without the window the first message would have gone alone, in a batch of its own.
    assert (store.statistics().written, store.statistics().batches) == (3, 1)
