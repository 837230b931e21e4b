"""Argument errors: exact ``ERR - ...`` lines, non-zero exit, never a traceback."""

from __future__ import annotations

import pytest
import trio

from .harness import LOCALHOST, Finished, Harness, free_port

PORT = "{port}"  # replaced by a free port number


def assert_error(result: Finished, line: str) -> None:
    assert result.stdout == [line], result
    assert result.code != 0, result
    assert "Traceback" not in result.stderr, result.stderr


@pytest.mark.parametrize(
    "args",
    [[], ["abc"], ["70000"], ["0"], ["-5"]],
    ids=["no-arg", "abc", "70000", "zero", "negative"],
)
async def test_server_bad_port(harness: Harness, args: list[str]) -> None:
    assert_error(await harness.run("ChatServer.py", *args), "ERR - arg 1")


async def test_server_extra_argument(harness: Harness) -> None:
    assert_error(await harness.run("ChatServer.py", "5000", "6000"), "ERR - arg 2")


async def test_server_busy_port(harness: Harness) -> None:
    with trio.socket.socket() as holder:
        await holder.bind((LOCALHOST, 0))
        holder.listen()
        port = holder.getsockname()[1]
        result = await harness.run("ChatServer.py", str(port), "--host", LOCALHOST)
    assert_error(result, f"ERR - cannot create ChatServer socket using port number {port}")


@pytest.mark.parametrize(
    ("args", "number"),
    [
        ([], 1),
        (["abc"], 1),
        (["70000"], 1),
        ([LOCALHOST, PORT], 3),
        ([LOCALHOST, PORT, "Alice"], 4),
        ([LOCALHOST, "abc", "Alice", "001"], 2),
        ([LOCALHOST, "0", "Alice", "001"], 2),
        ([LOCALHOST, "65536", "Alice", "001"], 2),
        (["no-such-host.invalid", PORT, "Alice", "001"], 1),
        ([LOCALHOST, PORT, "bad:name", "001"], 3),
        ([LOCALHOST, PORT, "{curly", "001"], 3),
    ],
    ids=[
        "none",
        "line-port-abc",
        "line-port-70000",
        "two-args",
        "three-args",
        "port-abc",
        "port-zero",
        "port-65536",
        "unresolvable-host",
        "nickname-colon",
        "nickname-brace",
    ],
)
async def test_client_bad_arguments(harness: Harness, args: list[str], number: int) -> None:
    port = str(free_port())  # nothing listens there: no argument error may try to connect
    argv = [port if arg == PORT else arg for arg in args]
    assert_error(await harness.run("ChatClient.py", *argv), f"ERR - arg {number}")


@pytest.mark.parametrize("script", ["ChatServer.py", "ChatClient.py"])
async def test_help(harness: Harness, script: str) -> None:
    result = await harness.run(script, "--help")
    assert result.code == 0, result
    assert result.stdout and "usage" in result.stdout[0].lower(), result
    assert "Traceback" not in result.stderr
