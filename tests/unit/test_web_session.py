"""The page's WebSocket as a session over in-memory streams: sniffed from ``GET ``, served the
page, joined, told of joins and leaves, pinged, and cut off when it stops answering."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
import trio
import trio.testing

from triochat.events import (
    Goodbye,
    Hello,
    Leave,
    MemberJoined,
    MemberLeft,
    Notice,
    Say,
    ServerEvent,
    Welcome,
)
from triochat.room import Room
from triochat.server.config import ServerConfig
from triochat.server.gate import ConnectionGate
from triochat.server.session import ChatSession
from triochat.wire.common import NEED_DATA
from triochat.wire.websocket import WebSocketClientCodec

from .helpers import Peer, make_member

LIMITS = ServerConfig(
    registration_timeout=5.0, close_grace=1.0, ws_ping_interval=3.0, ws_ping_timeout=2.0
)


@asynccontextmanager
async def session(
    room: Room, port: int, limits: ServerConfig = LIMITS
) -> AsyncIterator[
    trio.StapledStream[trio.testing.MemorySendStream, trio.testing.MemoryReceiveStream]
]:
    async with trio.open_nursery() as nursery:
        client, server = trio.testing.memory_stream_pair()

        async def serve() -> None:
            await ChatSession(server, None, room, ("127.0.0.1", port), limits).run()

        nursery.start_soon(serve)
        yield client


class Page:
    """The page's side of a WebSocket over a memory stream."""

    def __init__(self, stream: trio.abc.Stream) -> None:
        self.stream = stream
        self.codec = WebSocketClientCodec("127.0.0.1:5000")

    async def open(self) -> None:
        await self.stream.send_all(self.codec.start())
        while not self.codec.open:
            self.codec.receive_data(await self.stream.receive_some())
            assert self.codec.next_event() is NEED_DATA

    async def send(self, event: Hello | Say) -> None:
        await self.stream.send_all(self.codec.send(event))

    async def event(self) -> ServerEvent | None:
        while True:
            event = self.codec.next_event()
            if replies := self.codec.take_replies():
                await self.stream.send_all(replies)  # pongs, as a browser sends them
            if event is not NEED_DATA:
                return event
            data = await self.stream.receive_some()
            if not data:
                return None
            self.codec.receive_data(data)


async def test_get_slash_serves_the_page_and_closes() -> None:
    room = Room()
    async with session(room, 1) as stream:
        await stream.send_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        response = b""
        while data := await stream.receive_some():
            response += data
    assert response.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"<title>triochat</title>" in response
    assert room.names() == []


async def test_an_unknown_path_is_not_found() -> None:
    async with session(Room(), 1) as stream:
        await stream.send_all(b"GET /nothing HTTP/1.1\r\nHost: x\r\n\r\n")
        response = b""
        while data := await stream.receive_some():
            response += data
    assert response.startswith(b"HTTP/1.1 404 ")


async def test_a_page_chats_with_a_line_member_and_sees_joins_and_leaves() -> None:
    room = Room()
    async with session(room, 1) as page_stream:
        page = Page(page_stream)
        await page.open()
        await page.send(Hello("webby"))
        assert await page.event() == Welcome("webby", ("webby",))
        async with session(room, 2) as line_stream:
            line = Peer(line_stream)
            await line.send(b"nc\n")
            assert await page.event() == MemberJoined("nc")
            await page.send(Say("hello"))
            assert await line.line() == "webby: hello"
            await line.send(b"hi\n")
            message = await page.event()
            assert message is not None and getattr(message, "text", None) == "hi"
            await line.send(b"/quit\n")
            assert await page.event() == MemberLeft("nc")
        await page.stream.send_all(page.codec.send(Leave()))
        assert await page.event() == Goodbye("webby")


async def test_a_silent_page_is_pinged_and_one_that_never_answers_is_cut_off(
    autojump_clock: trio.testing.MockClock,
) -> None:
    room = Room()
    async with session(room, 1) as page_stream:
        page = Page(page_stream)
        await page.open()
        await page.send(Hello("webby"))
        assert await page.event() == Welcome("webby", ("webby",))
        # Page.event answers pings, so a quiet page stays.
        with trio.move_on_after(30):
            await page.event()
        assert room.names() == ["webby"]
        # A page that reads nothing and answers nothing is cut off after interval + timeout.
        start = trio.current_time()
        while True:
            data = await page.stream.receive_some()
            if not data:
                break
            page.codec.receive_data(data)
        assert room.names() == []
        assert trio.current_time() - start <= LIMITS.ws_ping_interval + LIMITS.ws_ping_timeout + 1
        events = []
        while (event := page.codec.next_event()) is not NEED_DATA:
            events.append(event)
        assert Notice("Disconnected: no answer to a ping within 5 s", is_error=True) in events


async def test_a_page_that_stops_reading_is_evicted_like_any_member() -> None:
    room = Room(outbox_limit=4)
    limits = ServerConfig(registration_timeout=5.0, close_grace=0.5, outbox_limit=4)
    async with trio.open_nursery() as nursery:
        page_stream, server_stream = trio.testing.lockstep_stream_pair()
        nursery.start_soon(ChatSession(server_stream, None, room, ("127.0.0.1", 1), limits).run)
        page = Page(page_stream)
        await page.open()
        await page.send(Hello("sleepy"))
        assert await page.event() == Welcome("sleepy", ("sleepy",))
        async with session(room, 2, limits) as line_stream:
            line = Peer(line_stream)
            await line.send(b"talker\n")
            await trio.testing.wait_all_tasks_blocked()
            # The page reads nothing more: its writer blocks, its outbox fills, it goes.
            await line.send(b"".join(b"message %d\n" % i for i in range(20)))
            await trio.testing.wait_all_tasks_blocked()
            assert room.names() == ["talker"]
            assert room.statistics().evictions == 1
            await line.send(b"/quit\n")
        nursery.cancel_scope.cancel()


async def test_a_seed_client_named_get_is_a_line_member(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # A seed client sends its name alone, without a newline, and waits: "GET" could be the
    # start of a request, so it gets the quiet time to go on, then it is a name.
    room = Room()
    async with session(room, 1) as stream:
        await stream.send_all(b"GET")
        await trio.sleep(1)
        assert room.names() == ["GET"]
        await stream.send_all(b"/quit\n")
        assert await stream.receive_some() == b""


async def test_without_the_web_a_request_is_a_line_members_bad_name() -> None:
    room = Room()
    limits = ServerConfig(registration_timeout=5.0, close_grace=1.0, web=False)
    async with session(room, 1, limits) as stream:
        line = Peer(stream)
        await line.send(b"GET / HTTP/1.1\r\n")
        assert (await line.line()).startswith("*** Name must not contain white space")
        await stream.aclose()


def test_only_members_that_watch_presence_hear_of_joins_and_leaves() -> None:
    room = Room()
    page, page_outbox = make_member("page")
    page.watches_presence = True
    line, line_outbox = make_member("line")
    room.join(page)
    room.join(line)
    room.leave(line)
    seen = [page_outbox.receive_nowait().event for _ in range(2)]
    assert seen == [MemberJoined("line"), MemberLeft("line")]
    with pytest.raises(trio.WouldBlock):
        line_outbox.receive_nowait()
    # A shutdown tells every member why; nobody needs a leave per member on top.
    other, _ = make_member("other")
    room.join(other)
    assert page_outbox.receive_nowait().event == MemberJoined("other")
    room.close("Server shutting down")
    room.leave(other)
    with pytest.raises(trio.WouldBlock):
        page_outbox.receive_nowait()


async def test_a_browser_refused_by_the_gate_gets_an_http_answer(
    autojump_clock: trio.testing.MockClock,
) -> None:
    from .test_gate import hold, refusal

    gate = ConnectionGate(ServerConfig(max_connections=1))
    async with trio.open_nursery() as nursery:
        done = await hold(gate, "10.0.0.1", nursery)
        answer = await refusal(gate, "10.0.0.2", b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert answer.startswith(b"HTTP/1.1 503 Service Unavailable\r\n")
        assert answer.endswith(b"Server full (1 connections); try again later\n")
        # A line member whose name starts with G is still told in its own dialect.
        assert await refusal(gate, "10.0.0.3", b"Gina\n") == (
            b"*** Server full (1 connections); try again later\n"
        )
        done.set()
