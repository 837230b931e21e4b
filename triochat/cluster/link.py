"""The Redis side of a cluster node: one stream per room, name leases, reconnection.

:func:`serve_cluster_room` connects, builds the :class:`~triochat.cluster.room.ClusterRoom`,
reports it through ``task_status`` once Redis answered, and then runs three tasks per
connection:

- the reader: blocking ``XREAD`` from the last entry ID it handled, each entry handed to
  :meth:`ClusterRoom.apply` in stream order;
- the publisher: the room's operations in the order they were submitted, everything queued
  at that moment sent in one pipeline (one round trip for a burst);
- the heartbeat: renews this node's lease, sweeps claims of nodes whose lease ran out, and
  gives the room every live claim (its roster); claims Redis lost are made again.

When Redis stops answering (a command fails or times out) the three tasks are cancelled
together, members are told, and the node reconnects with exponential backoff; it resumes
reading from its last ID, so nothing accepted is lost or read twice. If Redis came back
without the stream (restarted empty), reading starts from the beginning of the new stream,
and the heartbeat claims every member's name again.
"""

from __future__ import annotations

import logging
import math
import os
import secrets
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import coredis
import trio
from coredis.commands.script import Script
from coredis.exceptions import RedisError
from coredis.retry import NoRetryPolicy

from triochat.cluster import scripts
from triochat.cluster.address import ClusterAddress
from triochat.cluster.records import BadRecord, MemberRecord
from triochat.cluster.room import (
    BACK_NOTICE,
    LOST_NOTICE,
    ClaimName,
    ClusterRoom,
    LinkDown,
    Operation,
    PublishMessage,
    ReleaseName,
    SendDirect,
)
from triochat.history import History
from triochat.room import RoomObserver
from triochat.text import name_key

logger = logging.getLogger(__name__)

ROOM = "lobby"
"""The one room's name in Redis keys (the braces keep its keys in one Redis Cluster slot)."""
STREAM_MAXLEN = 100_000
"""Entries the stream keeps (``MAXLEN ~``): the history, and how far a node may fall behind."""
LEASE_SECONDS = 5.0
"""A node's claims die with its lease this long after its last heartbeat."""
HEARTBEAT_SECONDS = 1.0
"""How often a node renews its lease and refreshes its roster."""
BLOCK_MS = 1000
"""How long one XREAD waits for entries; a shorter wait than :data:`COMMAND_TIMEOUT`."""
HISTORY_SCAN = 2
"""A starting node reads this many stream entries per message of history it keeps (joins,
leaves and file announcements share the stream with the messages)."""
READ_COUNT = 256
"""Most entries one XREAD returns: fewer than a member's outbox holds."""
COMMAND_TIMEOUT = 3.0
"""Seconds a command may take before Redis counts as unreachable."""
CONNECT_TIMEOUT = 2.0
"""Seconds to open a connection to Redis."""
GOODBYE_TIMEOUT = 0.5
"""Seconds a node stopping cleanly gives itself to free its names (else its lease runs out)."""
STARTUP_TIMEOUT = 5.0
"""Seconds a starting node tries to reach Redis before it gives up."""
BACKOFF_MIN = 0.1
BACKOFF_MAX = 5.0
"""Reconnection waits double from the first to the second figure."""
OPERATIONS_LIMIT = 10_000
"""Operations queued for the publisher; beyond, senders are told to send again."""
BATCH_LIMIT = 512
"""Most operations in one pipeline."""

LINK_ERRORS = (OSError, RedisError, trio.TooSlowError)
"""What "Redis cannot be reached" looks like (TimeoutError is an OSError)."""


class ClusterUnavailable(Exception):
    """Redis could not be reached when the node started."""


def new_node_id() -> str:
    """A node id unique in the cluster: host, process and a random part."""
    return f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"


def _id_order(entry_id: str) -> tuple[int, int]:
    milliseconds, _, sequence = entry_id.partition("-")
    return int(milliseconds), int(sequence or 0)


class RedisLink:
    """One node's connection to the cluster's Redis (see the module docstring).

    Args:
        address: where Redis is.
        node: this node's id.
    """

    def __init__(self, address: ClusterAddress, node: str) -> None:
        self.address = address
        self.node = node
        self.prefix = f"triochat:{{{ROOM}}}:"
        self.stream = self.prefix + "stream"
        self.names = self.prefix + "names"
        self.lease_prefix = self.prefix + "node:"
        self.lease = self.lease_prefix + node
        self.last_id: str | None = None
        self._up = False
        self._client: coredis.Redis[str] | None = None
        self._claim: Script[str] | None = None
        self._release: Script[str] | None = None
        self._heartbeat: Script[str] | None = None
        self._append: Script[str] | None = None
        self._operations_send, self._operations_receive = trio.open_memory_channel[Operation](
            OPERATIONS_LIMIT
        )

    # --- what the room uses ------------------------------------------------------------------

    @property
    def up(self) -> bool:
        """True while Redis answers."""
        return self._up

    def submit(self, operation: Operation) -> None:
        """Queue ``operation`` for the publisher; ``trio.WouldBlock`` when the queue is full."""
        self._operations_send.send_nowait(operation)

    async def claim(self, record: MemberRecord) -> bool:
        """Claim ``record.name`` for this node; True if it won. Raises LinkDown."""
        client = self._client
        if client is None or not self._up:
            raise LinkDown
        try:
            with trio.fail_after(COMMAND_TIMEOUT):
                return await self._run_claim(client, record)
        except LINK_ERRORS as error:
            raise LinkDown from error

    async def _run_claim(self, client: coredis.Redis[str], record: MemberRecord) -> bool:
        assert self._claim is not None
        result: Any = await self._claim(
            keys=[self.names, self.stream, self.lease], args=self._claim_args(record), client=client
        )
        return int(result) == 1

    def _claim_args(self, record: MemberRecord) -> list[str | int]:
        return [
            name_key(record.name),
            self.node,
            record.dumps(),
            int(LEASE_SECONDS * 1000),
            self.lease_prefix,
            STREAM_MAXLEN,
        ]

    # --- the connection's life ---------------------------------------------------------------

    @asynccontextmanager
    async def _connect(self) -> AsyncIterator[coredis.Redis[str]]:
        client: coredis.Redis[str] = coredis.Redis(
            host=self.address.host,
            port=self.address.port,
            db=self.address.db,
            decode_responses=True,
            stream_timeout=COMMAND_TIMEOUT,
            connect_timeout=CONNECT_TIMEOUT,
            # A retried XADD could append a message twice: failures are ours to handle.
            retry_policy=NoRetryPolicy(),
            client_name=f"triochat-{self.node}",
        )
        async with client:
            self._claim = client.register_script(scripts.CLAIM)
            self._release = client.register_script(scripts.RELEASE)
            self._heartbeat = client.register_script(scripts.HEARTBEAT)
            self._append = client.register_script(scripts.APPEND)
            yield client

    async def serve(
        self, room: ClusterRoom, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Keep the node linked to Redis until cancelled (see the module docstring).

        Raises:
            ClusterUnavailable: Redis did not answer within :data:`STARTUP_TIMEOUT` of the
                start (``task_status`` was not reported then).
        """
        backoff = BACKOFF_MIN
        started = False
        give_up_at = trio.current_time() + STARTUP_TIMEOUT
        while True:
            failure: BaseException | None = None
            try:
                async with self._connect() as client:
                    with trio.fail_after(COMMAND_TIMEOUT):
                        await self._resume(client, room)
                    self._client = client
                    self._set_up(room, True)
                    backoff = BACKOFF_MIN
                    if not started:
                        started = True
                        task_status.started()
                    try:
                        async with trio.open_nursery() as nursery:
                            nursery.start_soon(self._read, client, room)
                            nursery.start_soon(self._publish, client, room)
                            nursery.start_soon(self._beat_forever, client, room)
                    finally:
                        self._client = None
                        if room.closing:
                            await self._say_goodbye()
            except* LINK_ERRORS as group:
                failure = group.exceptions[0]
            self._set_up(room, False, failure)
            if not started and trio.current_time() + backoff > give_up_at:
                raise ClusterUnavailable(f"cannot reach Redis at {self.address}: {failure}")
            await trio.sleep(backoff)
            backoff = min(backoff * 2, BACKOFF_MAX)

    def _set_up(self, room: ClusterRoom, up: bool, failure: BaseException | None = None) -> None:
        if up == self._up:
            return
        self._up = up
        if up:
            logger.info("cluster: linked to Redis at %s", self.address)
            room.tell_everyone(BACK_NOTICE)
        else:
            logger.warning("cluster: lost Redis at %s: %r", self.address, failure)
            room.tell_everyone(LOST_NOTICE)
            self._drop_queued(room)

    def _drop_queued(self, room: ClusterRoom) -> None:
        """Nothing queued waits for Redis to come back: a message would arrive long after
        its sender was told Redis is away, so it is dropped and its sender told. Claims and
        releases are left to the heartbeat, which makes this node's claims match its
        members again once Redis answers; a file announcement fails its transfer."""
        while True:
            try:
                operation = self._operations_receive.receive_nowait()
            except trio.WouldBlock:
                return
            room.publish_dropped(operation)

    async def _say_goodbye(self) -> None:
        """A clean stop gives the lease and the names back at once.

        Over a connection of its own: the cancellation that stops the node has already
        reached the connections of the client it was using.
        """
        with trio.CancelScope(shield=True), trio.move_on_after(GOODBYE_TIMEOUT):
            try:
                async with self._connect() as client:
                    script = client.register_script(scripts.GONE)
                    await script(
                        keys=[self.names, self.lease, self.stream],
                        args=[self.node, STREAM_MAXLEN],
                        client=client,
                    )
            except* LINK_ERRORS as group:
                logger.info("cluster: goodbye not said: %r", group.exceptions[0])

    async def _resume(self, client: coredis.Redis[str], room: ClusterRoom) -> None:
        newest = await client.xrevrange(self.stream, "+", "-", count=1)
        newest_id = str(newest[0].identifier) if newest else None
        if self.last_id is None:
            # A new node: members get what is accepted from now on; the room's history is
            # the stream's, so the node's starts with its last messages.
            self.last_id = newest_id or "0-0"
            if room.history is not None and newest_id is not None:
                recent = await client.xrevrange(
                    self.stream, newest_id, "-", count=room.history.limit * HISTORY_SCAN
                )
                room.preload_history(
                    str(entry.field_values.get("data", ""))
                    for entry in reversed(recent)
                    if entry.field_values.get("kind") == "msg"
                )
        elif newest_id is None or _id_order(newest_id) < _id_order(self.last_id):
            # Redis came back without the entries this node had read (restarted empty):
            # everything the stream holds now is new here.
            logger.warning("cluster: the stream restarted empty; reading it from its start")
            self.last_id = "0-0"
        # Names back before anyone may send again.
        await self._beat(client, room)

    # --- the three tasks ---------------------------------------------------------------------

    async def _read(self, client: coredis.Redis[str], room: ClusterRoom) -> None:
        while True:
            assert self.last_id is not None
            result = await client.xread(
                {self.stream: self.last_id}, count=READ_COUNT, block=BLOCK_MS
            )
            if not result:
                continue
            for entry in result.get(self.stream, ()):
                # Handled entries are never read again: the next XREAD starts after this one.
                self.last_id = str(entry.identifier)
                fields = entry.field_values
                room.apply(str(fields.get("kind", "")), str(fields.get("data", "")))

    async def _publish(self, client: coredis.Redis[str], room: ClusterRoom) -> None:
        while True:
            batch = [await self._operations_receive.receive()]
            while len(batch) < BATCH_LIMIT:
                try:
                    batch.append(self._operations_receive.receive_nowait())
                except trio.WouldBlock:
                    break
            done = False
            try:
                with trio.fail_after(COMMAND_TIMEOUT):
                    results = await self._send_batch(client, batch)
                done = True
            finally:
                if not done:
                    for operation in batch:
                        room.publish_failed(operation)
            for operation, result in zip(batch, results, strict=True):
                if isinstance(operation, ClaimName) and int(result) != 1:
                    room.claim_lost(operation.record)

    async def _send_batch(self, client: coredis.Redis[str], batch: list[Operation]) -> list[Any]:
        """One pipeline for ``batch``, in order: each run of appended entries is one call of
        the APPEND script; claims and releases are one call each. A result per operation."""
        claim, release, append = self._claim, self._release, self._append
        assert claim is not None and release is not None and append is not None
        runs: list[int] = []  # operations per command, in pipeline order
        async with client.pipeline(transaction=False) as pipe:
            entries: list[str] = []

            def flush() -> None:
                if entries:
                    append(keys=[self.stream], args=[STREAM_MAXLEN, *entries], client=pipe)
                    runs.append(len(entries) // 2)
                    entries.clear()

            for operation in batch:
                if isinstance(operation, PublishMessage):
                    entries += ["msg", operation.record.dumps()]
                elif isinstance(operation, SendDirect):
                    entries += ["direct", operation.record.dumps()]
                else:
                    flush()
                    runs.append(1)
                    record = operation.record
                    if isinstance(operation, ReleaseName):
                        args: list[str | int] = [
                            name_key(record.name),
                            record.token,
                            STREAM_MAXLEN,
                            record.dumps(),
                        ]
                        release(keys=[self.names, self.stream], args=args, client=pipe)
                    else:
                        claim(
                            keys=[self.names, self.stream, self.lease],
                            args=self._claim_args(record),
                            client=pipe,
                        )
            flush()
        results: list[Any] = []
        for count, result in zip(runs, pipe.results or (), strict=True):
            results += [result] * count
        return results

    async def _beat_forever(self, client: coredis.Redis[str], room: ClusterRoom) -> None:
        while True:
            await trio.sleep(HEARTBEAT_SECONDS)
            with trio.fail_after(COMMAND_TIMEOUT):
                await self._beat(client, room)

    async def _beat(self, client: coredis.Redis[str], room: ClusterRoom) -> None:
        assert self._heartbeat is not None
        held = [name_key(record.name) for record in room.local_claims()]
        mark = room.roster_mark()
        values: Any = await self._heartbeat(
            keys=[self.names, self.lease],
            args=[self.node, int(LEASE_SECONDS * 1000), self.lease_prefix, *held],
            client=client,
        )
        claims: list[MemberRecord] = []
        for value in values or ():
            try:
                claims.append(MemberRecord.loads(str(value)))
            except BadRecord as error:
                logger.warning("cluster: claim skipped: %s", error)
        lost = room.roster_refreshed(claims, mark)
        if not lost:
            return
        # Redis lost these claims (it restarted empty, or this node's lease ran out while it
        # could not reach Redis): make them again, all in one round trip, and tell the
        # members whose name another node took meanwhile.
        claim = self._claim
        assert claim is not None
        async with client.pipeline(transaction=False) as pipe:
            for record in lost:
                claim(
                    keys=[self.names, self.stream, self.lease],
                    args=self._claim_args(record),
                    client=pipe,
                )
        for record, result in zip(lost, pipe.results or (), strict=True):
            if int(result) != 1:
                room.claim_lost(record)


async def serve_cluster_room(
    address: ClusterAddress,
    observer: RoomObserver | None = None,
    outbox_limit: int | None = None,
    *,
    encode_once: bool = True,
    history: History | None = None,
    task_status: trio.TaskStatus[ClusterRoom] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run a node's share of the cluster room until cancelled; report the room once Redis
    answered. With ``history``, the node's history starts with the stream's last messages.

    Raises:
        ClusterUnavailable: Redis did not answer at the start.
    """
    node = new_node_id()
    link = RedisLink(address, node)
    room = ClusterRoom(
        node,
        link,
        observer,
        encode_once=encode_once,
        history=history,
        **({} if outbox_limit is None else {"outbox_limit": outbox_limit}),
    )
    async with trio.open_nursery() as nursery:
        await nursery.start(link.serve, room)
        task_status.started(room)
        await trio.sleep(math.inf)
