"""TLS on the server's own port (SPEC §9): our TCP clients with --tls/--ca, next to plain
members in the same room; what a bad certificate or CA looks like."""

from __future__ import annotations

import re

from .harness import LOCALHOST, Harness, Program, rx
from .tls_files import TlsFiles


async def test_tls_clients_and_plain_members_share_the_room(
    harness: Harness, tls_files: TlsFiles
) -> None:
    server, port = await harness.start_chat_server(
        "--tls-cert", str(tls_files.cert), "--tls-key", str(tls_files.key)
    )
    ca = str(tls_files.ca)
    lina = await harness.start("ChatClient.py", str(port), "--ca", ca, label="TLS line client")
    await lina.send_line("lina")
    await server.expect_next(rx("{dt} :: lina: connected."))
    jay = await harness.start(
        "ChatClient.py", LOCALHOST, str(port), "Jay", "J1", "--tls", "--ca", ca, label="TLS JSON"
    )
    await jay.expect_next(rx("ChatClient started with server IP: 127.0.0.1, port: {port}{any}"))
    await server.expect_next(rx("{dt} :: Jay: connected."))
    plain = await harness.connect(port, "plain netcat")
    await plain.send(b"plain\n")
    await server.expect_next(rx("{dt} :: plain: connected."))

    await lina.send_line("secret hello")
    await plain.expect_line("lina: secret hello")
    await jay.expect_next(rx("{dt} :: lina: secret hello"))
    await plain.send(b"plain hello\n")
    await lina.expect_next("plain: plain hello")
    await jay.expect_next(rx("{dt} :: plain: plain hello"))
    await jay.send_line("json hello")
    await lina.expect_next("Jay: json hello")
    await plain.expect_line("Jay: json hello")

    await lina.close_stdin()
    assert await lina.wait_exit() == 0
    await server.expect_line(rx("{dt} :: lina: disconnected."))
    await jay.send_line("disconnect")
    assert await jay.wait_exit() == 0


async def test_a_server_that_cannot_be_verified_is_a_clear_error(
    harness: Harness, tls_files: TlsFiles
) -> None:
    server, port = await harness.start_chat_server(
        "--tls-cert", str(tls_files.cert), "--tls-key", str(tls_files.key)
    )
    # The system's CAs do not know the test CA: the client says so and sends nothing.
    client = await harness.start("ChatClient.py", str(port), "--tls", label="unverified")
    await client.send_line("nobody")
    assert await client.wait_exit() == 1
    assert re.search(r"TLS with the chat server failed: .*certificate verify failed", client.stderr)
    client.assert_no_traceback()
    await _nobody_joined_before_a_probe(harness, server, port)


async def _nobody_joined_before_a_probe(harness: Harness, server: Program, port: int) -> None:
    """The next member the server announces is a plain probe: the failed client's name never
    reached it (in clear or otherwise)."""
    probe = await harness.connect(port, "probe")
    await probe.send(b"probe\n")
    await server.expect_next(rx("{dt} :: probe: connected."))


async def test_tls_to_a_plain_server_fails_cleanly(harness: Harness, tls_files: TlsFiles) -> None:
    server, port = await harness.start_chat_server()
    client = await harness.start("ChatClient.py", str(port), "--ca", str(tls_files.ca))
    await client.send_line("someone")
    assert await client.wait_exit() == 1
    assert "TLS with the chat server failed" in client.stderr
    await _nobody_joined_before_a_probe(harness, server, port)


async def test_a_certificate_that_cannot_be_loaded_is_an_err_line(
    harness: Harness, tls_files: TlsFiles
) -> None:
    finished = await harness.run(
        "ChatServer.py", "--port", "0", "--tls-cert", str(tls_files.cert), "--tls-key", "nope"
    )
    assert finished.code == 1
    assert finished.stdout[0].startswith("ERR - cannot use the TLS certificate and key")
