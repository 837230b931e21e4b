"""One room, every TCP dialect: line client, JSON client, raw JSON peer, raw netcat peer."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import trio

from .harness import Harness, RawPeer, rx

OLD_TIMESTAMP = "2024-03-21 10:30:45"


def obj(**fields: Any) -> bytes:
    """A compact JSON object with no trailing newline, as naive clients send it."""
    return json.dumps(fields, separators=(",", ":")).encode()


async def next_broadcast(peer: RawPeer) -> dict[str, Any]:
    """The next ``broadcast`` object; every line the server writes must be one JSON object."""
    while True:
        line = await peer.next_line()
        try:
            value = json.loads(line)
        except ValueError:
            raise AssertionError(f"not one JSON object per line: {line!r}") from None
        assert isinstance(value, dict), line
        if value.get("type") == "broadcast":
            return value
        assert value.get("type") in ("welcome", "notice"), f"unexpected object {value!r}"


def received(name: str, client_id: str, size: int, when: str = "{dt}") -> str:
    return (
        f"Received: IP:127.0.0.1, Port:{{port}}, Client-Nickname:{name}, "
        f"ClientID:{client_id}, Date/Time:{when}, Msg-Size:{size}"
    )


async def test_every_dialect_in_one_room(harness: Harness) -> None:
    server, port = await harness.start_chat_server()

    lina = await harness.start("ChatClient.py", str(port), label="line client lina")
    await lina.send_line("lina")
    await server.expect_next(rx("{dt} :: lina: connected."))

    jason = await harness.start("ChatClient.py", "127.0.0.1", str(port), "Jason", "J7")
    await jason.expect_next(
        rx(
            f"ChatClient started with server IP: 127.0.0.1, port: {port}, nickname: Jason, "
            "client ID: J7, Date/Time: {dt}"
        )
    )
    await server.expect_next(rx("{dt} :: Jason: connected."))

    # A hand-written JSON client: join and first message in ONE send, no newlines at all,
    # with the seed's own "timstamp" spelling in the join request.
    rawj = await harness.connect(port, "rawj")
    await rawj.send(
        obj(type="nickname", nickname="Rawj", clientID="R1", timstamp=OLD_TIMESTAMP)
        + obj(type="message", nickname="Rawj", message="hello from raw", timestamp=OLD_TIMESTAMP)
    )
    await server.expect_next(rx("{dt} :: Rawj: connected."))
    await server.expect_next(rx(received("Rawj", "R1", 14, OLD_TIMESTAMP)))
    await server.expect_next("Broadcasted: lina, Jason")
    await lina.expect_next("Rawj: hello from raw")
    await jason.expect_next(f"{OLD_TIMESTAMP} :: Rawj: hello from raw")  # the sender's time

    # A netcat/telnet-style line client: name and message in one send, CRLF line endings.
    netty = await harness.connect(port, "netty")
    await netty.send(b"netty\r\nhi from nc\r\n")
    await server.expect_next(rx("{dt} :: netty: connected."))
    sent_at = (await server.expect_next(rx(received("netty", "-", 10)))).group(2)
    await server.expect_next("Broadcasted: lina, Jason, Rawj")
    await lina.expect_next("netty: hi from nc")
    await jason.expect_next(f"{sent_at} :: netty: hi from nc")
    got = await next_broadcast(rawj)
    assert (got["nickname"], got["message"]) == ("netty", "hi from nc")
    assert isinstance(got["timestamp"], str)

    await lina.send_line("line says hi")
    sent_at = (await server.expect_next(rx(received("lina", "-", 12)))).group(2)
    await server.expect_next("Broadcasted: Jason, Rawj, netty")
    await jason.expect_next(f"{sent_at} :: lina: line says hi")
    await netty.expect_next("lina: line says hi")
    got = await next_broadcast(rawj)
    assert (got["nickname"], got["message"]) == ("lina", "line says hi")

    await jason.send_line("json says hi")
    sent_at = (await server.expect_next(rx(received("Jason", "J7", 12)))).group(2)
    await server.expect_next("Broadcasted: lina, Rawj, netty")
    await lina.expect_next("Jason: json says hi")
    await netty.expect_next("Jason: json says hi")
    got = await next_broadcast(rawj)
    assert (got["nickname"], got["message"]) == ("Jason", "json says hi")
    # The sender's timestamp is kept as it was sent ("YYYY-MM-DD HH:MM:SS" by our client).
    assert got["timestamp"] == sent_at

    # Two objects back to back in one send, then one arriving in two pieces.
    await rawj.send(
        obj(type="message", nickname="Rawj", message="one", timestamp=OLD_TIMESTAMP)
        + obj(type="message", nickname="Rawj", message="two", timestamp=OLD_TIMESTAMP)
    )
    three = obj(type="message", nickname="Rawj", message="three", timestamp=OLD_TIMESTAMP)
    await rawj.send(three[:10])
    for text in ("one", "two"):
        await server.expect_next(rx(received("Rawj", "R1", len(text), OLD_TIMESTAMP)))
        await server.expect_next("Broadcasted: lina, Jason, netty")
        await lina.expect_next(f"Rawj: {text}")
        await jason.expect_next(f"{OLD_TIMESTAMP} :: Rawj: {text}")
        await netty.expect_next(f"Rawj: {text}")
    await rawj.send(three[10:])
    await server.expect_next(rx(received("Rawj", "R1", 5, OLD_TIMESTAMP)))
    await server.expect_next("Broadcasted: lina, Jason, netty")
    await lina.expect_next("Rawj: three")
    await jason.expect_next(f"{OLD_TIMESTAMP} :: Rawj: three")
    await netty.expect_next("Rawj: three")

    # Date/Time is the message's own timestamp, read leniently (epoch seconds, ISO 8601);
    # without a readable one the server's receive time stands in.
    epoch = 1711017045
    variants: list[tuple[object, str]] = [
        (epoch, datetime.fromtimestamp(epoch).strftime("%Y-%m-%d %H:%M:%S")),
        ("2024-03-21T10:30:45", "2024-03-21 10:30:45"),
        ("not a time", "{dt}"),
    ]
    for index, (stamp, shown) in enumerate(variants):
        text = f"stamp {index}"
        await rawj.send(obj(type="message", nickname="Rawj", message=text, timestamp=stamp))
        await server.expect_next(rx(received("Rawj", "R1", len(text), shown)))
        await server.expect_next("Broadcasted: lina, Jason, netty")
        await lina.expect_next(f"Rawj: {text}")
        await jason.expect_next(rx(f"{shown} :: Rawj: {text}"))
        await netty.expect_next(f"Rawj: {text}")

    # An unframed line peer: name and message each in one send() with no newline at all.
    unframed = await harness.connect(port, "unframed")
    await unframed.send(b"quiet")
    await server.expect_next(rx("{dt} :: quiet: connected."))
    await unframed.send(b"no newline here")
    await server.expect_next(rx(received("quiet", "-", 15)))
    await server.expect_next("Broadcasted: lina, Jason, Rawj, netty")
    await lina.expect_next("quiet: no newline here")
    await jason.expect_next(rx("{dt} :: quiet: no newline here"))
    await netty.expect_next("quiet: no newline here")
    got = await next_broadcast(rawj)
    assert (got["nickname"], got["message"]) == ("quiet", "no newline here")
    await unframed.aclose()
    await server.expect_next(rx("{dt} :: quiet: disconnected."))

    # A message under somebody else's nickname is refused and reaches nobody.
    await rawj.send(obj(type="message", nickname="lina", message="forged", timestamp="x"))
    refusal = json.loads(await rawj.next_line())
    # The session goes on, so not "error" (a seed-003 client ends on that).
    assert (refusal["type"], refusal["level"]) == ("notice", "error"), refusal

    # The raw JSON client leaves with a disconnect request and gets an acknowledgement.
    await rawj.send(obj(type="disconnect", nickname="Rawj", clientID="R1"))
    ack = json.loads(await rawj.next_line())
    assert ack["type"] == "bye", ack  # not "disconnect": a seed client reads that as shutdown
    await server.expect_next(rx("{dt} :: Rawj: disconnected."))
    await rawj.log.expect_closed()

    # The netcat peer half-closes: the server takes that as leaving.
    await netty.send_eof()
    await server.expect_next(rx("{dt} :: netty: disconnected."))
    await netty.log.expect_closed()

    await lina.close_stdin()
    assert await lina.wait_exit() == 0
    await server.expect_next(rx("{dt} :: lina: disconnected."))
    await jason.send_line("disconnect")
    await jason.expect_next(
        rx("Summary: start:{dt}, end:{dt}, msg sent:1, msg rcv:10, char sent:12, char rcv:83")
    )
    assert await jason.wait_exit() == 0
    await server.expect_next(rx("{dt} :: Jason: disconnected."))

    for client in (lina, jason):
        client.assert_consumed()
        client.assert_no_traceback()
    netty.log.assert_consumed()
    server.assert_consumed()


async def test_every_member_sees_one_total_order(harness: Harness) -> None:
    """Concurrent senders of both dialects; every member sees the same order, nothing lost."""
    server, port = await harness.start_chat_server()
    count = 50

    lina = await harness.start("ChatClient.py", str(port), label="line client lina")
    await lina.send_line("lina")
    await server.expect_line(rx("{dt} :: lina: connected."))
    line_watcher = await harness.connect(port, "line watcher")
    await line_watcher.send(b"watcher\n")
    await server.expect_line(rx("{dt} :: watcher: connected."))
    json_watcher = await harness.connect(port, "json watcher")
    await json_watcher.send(obj(type="nickname", nickname="jwatch", clientID="W"))
    await server.expect_line(rx("{dt} :: jwatch: connected."))

    senders: list[tuple[str, RawPeer]] = []
    for name in ("s0", "s1", "s2"):
        peer = await harness.connect(port, name)
        await peer.send(f"{name}\n".encode())
        await server.expect_line(rx(f"{{dt}} :: {name}: connected."))
        senders.append((name, peer))
    json_sender = await harness.connect(port, "j3")
    await json_sender.send(obj(type="nickname", nickname="j3", clientID="J"))
    await server.expect_line(rx("{dt} :: j3: connected."))

    async def send_lines(peer: RawPeer) -> None:
        for index in range(count):
            await peer.send(f"m{index}\n".encode())

    async def send_objects(peer: RawPeer) -> None:
        for index in range(count):
            await peer.send(obj(type="message", nickname="j3", message=f"m{index}"))

    async with trio.open_nursery() as nursery:
        for _name, peer in senders:
            nursery.start_soon(send_lines, peer)
        nursery.start_soon(send_objects, json_sender)

    total = count * (len(senders) + 1)
    seen_by_watcher = [await line_watcher.next_line() for _ in range(total)]
    seen_by_json: list[str] = []
    while len(seen_by_json) < total:
        got = await next_broadcast(json_watcher)
        seen_by_json.append(f"{got['nickname']}: {got['message']}")
    assert seen_by_watcher == seen_by_json
    # lina's client is unframed (the seeds' wire: one message per write, no newline): on a
    # loaded machine two messages can meet in one recv() and show as one line.
    await lina.expect_text("".join(seen_by_watcher))
    for name in ("s0", "s1", "s2", "j3"):
        mine = [line for line in seen_by_watcher if line.startswith(f"{name}: ")]
        assert mine == [f"{name}: m{index}" for index in range(count)], name
    console_order = [
        line.split("Client-Nickname:")[1].split(",")[0]
        for line in server.stdout.lines
        if line.startswith("Received: ")
    ]
    assert console_order == [line.split(":")[0] for line in seen_by_watcher]
