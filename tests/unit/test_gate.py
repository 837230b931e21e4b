"""The connection gate: per-address limits, the loopback exemption, polite refusals."""

from __future__ import annotations

from typing import cast

import pytest
import trio
import trio.testing

from triochat.server.addresses import is_loopback
from triochat.server.config import ServerConfig
from triochat.server.gate import ConnectionGate, GateStatistics


class FakeSocket:
    def __init__(self, ip: str) -> None:
        self._ip = ip

    def getpeername(self) -> tuple[str, int]:
        return (self._ip, 5000)


class FakeSocketStream:
    """Enough of a ``trio.SocketStream`` for the gate: a peer address and a memory stream."""

    def __init__(self, ip: str) -> None:
        self.socket = FakeSocket(ip)
        self.client, self.server = trio.testing.memory_stream_pair()

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        return await self.server.receive_some(max_bytes)

    async def send_all(self, data: bytes) -> None:
        await self.server.send_all(data)

    async def send_eof(self) -> None:
        await self.server.send_eof()

    async def aclose(self) -> None:
        await self.server.aclose()


async def hold(gate: ConnectionGate, ip: str, nursery: trio.Nursery) -> trio.Event:
    """Serve one connection from ``ip`` until the returned event is set."""
    done = trio.Event()

    async def handler(stream: trio.SocketStream, release: object) -> None:
        await done.wait()

    stream = cast(trio.SocketStream, FakeSocketStream(ip))
    nursery.start_soon(gate.serve, stream, handler)
    await trio.testing.wait_all_tasks_blocked()
    return done


async def refusal(gate: ConnectionGate, ip: str, first: bytes) -> bytes:
    """What a connection from ``ip`` that starts with ``first`` is told before it is closed."""
    fake = FakeSocketStream(ip)

    async def handler(stream: trio.SocketStream, release: object) -> None:
        raise AssertionError("should have been refused")

    await fake.client.send_all(first)
    await fake.client.send_eof()  # the gate drains what it did not read until the peer closes
    await gate.serve(cast(trio.SocketStream, fake), handler)
    return bytes(await fake.client.receive_some(65536))


@pytest.mark.parametrize(
    ("ip", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.0.0.2", True),
        ("::1", True),
        ("::ffff:127.0.0.1", True),
        ("10.0.0.1", False),
        ("::ffff:10.0.0.1", False),
        ("not an address", False),
    ],
)
def test_loopback_range(ip: str, loopback: bool) -> None:
    assert is_loopback(ip) is loopback


async def test_an_address_over_its_limit_is_refused_in_its_dialect_and_counted(
    autojump_clock: trio.testing.MockClock,
) -> None:
    gate = ConnectionGate(ServerConfig(max_per_ip=2))
    async with trio.open_nursery() as nursery:
        first = await hold(gate, "10.0.0.1", nursery)
        await hold(gate, "10.0.0.1", nursery)
        await hold(gate, "10.0.0.2", nursery)  # another address has its own count
        assert await refusal(gate, "10.0.0.1", b"alice\n") == (
            b"*** Too many connections from your address (limit 2); try again later\n"
        )
        assert b'"type": "error"' in await refusal(gate, "10.0.0.1", b'{"type": "nickname"}')
        stats = gate.statistics()
        assert (stats.open, stats.refused_per_ip, stats.refused, stats.addresses) == (3, 2, 0, 2)
        first.set()  # one leaves: its place is free at once
        await trio.testing.wait_all_tasks_blocked()
        await hold(gate, "10.0.0.1", nursery)
        assert gate.statistics().open == 3
        nursery.cancel_scope.cancel()
    assert gate.statistics() == GateStatistics(open=0, refused=0, refused_per_ip=2, addresses=0)


async def test_loopback_is_exempt_by_default_but_not_when_the_limit_is_given() -> None:
    exempt = ConnectionGate(ServerConfig(max_per_ip=1))
    strict = ConnectionGate(ServerConfig(max_per_ip=1, per_ip_exempt_loopback=False))
    async with trio.open_nursery() as nursery:
        for _ in range(3):
            await hold(exempt, "127.0.0.1", nursery)
        assert exempt.statistics().open == 3
        await hold(strict, "127.0.0.1", nursery)
        with trio.fail_after(5):
            assert b"limit 1" in await refusal(strict, "127.0.0.1", b"bob\n")
        await hold(strict, "127.0.0.2", nursery)
        assert strict.statistics().open == 2
        nursery.cancel_scope.cancel()


async def test_zero_means_no_limit_per_address() -> None:
    gate = ConnectionGate(ServerConfig(max_per_ip=0, per_ip_exempt_loopback=False))
    async with trio.open_nursery() as nursery:
        for _ in range(5):
            await hold(gate, "10.0.0.1", nursery)
        assert gate.statistics().open == 5
        nursery.cancel_scope.cancel()
