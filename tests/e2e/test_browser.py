"""The chat page in a real browser (SPEC §9): Chromium joins the room over a WebSocket on the
server's own port and chats with netcat-style and JSON members.

``TRIOCHAT_SCREENSHOT=<file.png>`` makes the first test save the page, mid-conversation, as
the README's screenshot.
"""

from __future__ import annotations

import os
import re
import signal
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trio

from .browser import MISSING, Browser, find_chromium
from .harness import DT, LOCALHOST, Harness, free_port, rx
from .tls_files import TlsFiles


@pytest.fixture
def chromium() -> None:
    """Skip, saying what to install, when there is no Chromium with its driver.

    A plain fixture: a skip raised inside the Trio run would lose its reason.
    """
    if find_chromium() is None:
        pytest.skip(MISSING)


@pytest.fixture
async def browser(chromium: None) -> AsyncIterator[Browser]:
    opened = await Browser.open()
    try:
        yield opened
    finally:
        await opened.aclose()


def message_line(name: str, text: str) -> re.Pattern[str]:
    """A chat line as the page shows it: ``<date/time> <name>: <text>``."""
    return re.compile(f"{DT} {re.escape(name)}: {re.escape(text)}")


async def wait_for_message(browser: Browser, name: str, text: str) -> None:
    pattern = message_line(name, text)

    def found(driver: object) -> bool:
        script = "return [...document.querySelectorAll('#log li')].map(e => e.textContent)"
        return any(pattern.fullmatch(line) for line in driver.execute_script(script))  # type: ignore[attr-defined]

    await browser.wait_until(found, f"the message {name}: {text}")


async def test_browser_netcat_and_json_client_chat_both_ways(
    harness: Harness, browser: Browser
) -> None:
    server, port = await harness.start_chat_server()
    await browser.get(f"http://{LOCALHOST}:{port}/?name=webby")
    await browser.wait_for_status("Connected as webby")
    await server.expect_next(rx("{dt} :: webby: connected."))

    nc = await harness.connect(port, "nc")
    await nc.send(b"nc_user\n")
    await server.expect_next(rx("{dt} :: nc_user: connected."))
    jay = await harness.start("ChatClient.py", LOCALHOST, str(port), "Jay", "J7", label="JSON")
    await server.expect_next(rx("{dt} :: Jay: connected."))
    await browser.wait_for_members(["webby", "nc_user", "Jay"])
    await browser.wait_for_line("nc_user joined")

    # Browser -> line and JSON members.
    await browser.type_line("hello from the browser")
    await nc.expect_line("webby: hello from the browser")
    await jay.expect_line(rx("{dt} :: webby: hello from the browser"))
    await browser.wait_for_line("webby: hello from the browser")  # its own, shown locally

    # Line and JSON members -> browser, with date/time and sender.
    await nc.send(b"hi browser, from netcat\n")
    await wait_for_message(browser, "nc_user", "hi browser, from netcat")
    await jay.send_line("and from JSON")
    await wait_for_message(browser, "Jay", "and from JSON")

    # Slash commands work as in netcat; markup is shown as text, never run.
    await browser.type_line("/who")
    members = await browser.wait_for_line("Members: webby")
    assert "nc_user" in members and "Jay" in members, members
    await nc.send(b"<b>not bold</b>\n")
    await wait_for_message(browser, "nc_user", "<b>not bold</b>")

    if shot := os.environ.get("TRIOCHAT_SCREENSHOT"):
        await browser.screenshot(Path(shot))

    await nc.aclose()
    await browser.wait_for_line("nc_user left")
    await browser.wait_for_members(["webby", "Jay"])

    await browser.type_line("/quit")
    await server.expect_line(rx("{dt} :: webby: disconnected."))
    await browser.wait_for_status("You left")


async def test_a_taken_name_asks_again(harness: Harness, browser: Browser) -> None:
    server, port = await harness.start_chat_server()
    alice = await harness.connect(port, "alice")
    await alice.send(b"alice\n")
    await server.expect_next(rx("{dt} :: alice: connected."))

    await browser.get(f"http://{LOCALHOST}:{port}/")
    await browser.type_line("ALICE")  # names are unique ignoring case
    await browser.wait_for_line("Nickname already in use")
    await browser.wait_for_status("Choose another name")
    await browser.type_line("alice2")
    await browser.wait_for_status("Connected as alice2")
    await server.expect_next(rx("{dt} :: alice2: connected."))
    await browser.type_line("got in")
    await alice.expect_line("alice2: got in")


async def test_the_page_reconnects_after_the_server_restarts(
    harness: Harness, browser: Browser
) -> None:
    port = free_port()
    options = ("--port", str(port), "--host", LOCALHOST)
    banner = rx(f"ChatServer started with server IP: {LOCALHOST}, port: {port} ...")
    first = await harness.start("ChatServer.py", *options, label="first server")
    await first.expect_next(banner)
    await browser.get(f"http://{LOCALHOST}:{port}/?name=phoenix")
    await browser.wait_for_status("Connected as phoenix")

    first.send_signal(signal.SIGINT)
    assert await first.wait_exit() == 0
    await browser.wait_for_line("Server shutting down")
    await browser.wait_for_status("server went away")
    await browser.wait_for_members([])

    second = await harness.start("ChatServer.py", *options, label="second server")
    await second.expect_next(banner)
    # The page comes back by itself, under the name it had.
    await second.expect_next(rx("{dt} :: phoenix: connected."), within=30)
    await browser.wait_for_status("Connected as phoenix")
    nc = await harness.connect(port, "nc")
    await nc.send(b"nc\n")
    await browser.wait_for_line("nc joined")
    await browser.type_line("back again")
    await nc.expect_line("phoenix: back again")


async def test_no_web_turns_the_page_off(harness: Harness) -> None:
    _server, port = await harness.start_chat_server("--no-web")
    peer = await harness.connect(port, "http")
    await peer.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    # Without the page the request is just a line member's bad name.
    await peer.expect_line(re.compile(r"\*\*\* .*white space.*"))


async def test_the_page_over_https_with_netcat_tls_and_json_members(
    harness: Harness, tls_files: TlsFiles, chromium: None
) -> None:
    server, port = await harness.start_chat_server(
        "--tls-cert", str(tls_files.cert), "--tls-key", str(tls_files.key)
    )
    browser = await Browser.open(trust_spki=tls_files.spki)
    try:
        await browser.get(f"https://{LOCALHOST}:{port}/?name=secure")
        await browser.wait_for_status("Connected as secure")
        await server.expect_next(rx("{dt} :: secure: connected."))

        # A plain netcat member and a TLS one (checked against the private CA) in one room.
        plain = await harness.connect(port, "plain")
        await plain.send(b"plain\n")
        await server.expect_next(rx("{dt} :: plain: connected."))
        context = ssl.create_default_context(cafile=str(tls_files.ca))
        with trio.fail_after(10):
            tcp = await trio.open_tcp_stream(LOCALHOST, port)
            secured = trio.SSLStream(tcp, context, server_hostname=LOCALHOST)
            await secured.send_all(b"tlsnc\n")
        await server.expect_next(rx("{dt} :: tlsnc: connected."))
        # And our JSON client over TLS.
        jay = await harness.start(
            "ChatClient.py", LOCALHOST, str(port), "Jay", "J1", "--ca", str(tls_files.ca)
        )
        await server.expect_next(rx("{dt} :: Jay: connected."))
        await browser.wait_for_members(["secure", "plain", "tlsnc", "Jay"])

        await browser.type_line("over wss")
        await plain.expect_line("secure: over wss")
        await jay.expect_line(rx("{dt} :: secure: over wss"))
        await jay.send_line("json over tls")
        await wait_for_message(browser, "Jay", "json over tls")
        received = b""
        with trio.fail_after(10):
            while b"secure: over wss\n" not in received:
                received += await secured.receive_some(4096)
        await plain.send(b"from plain\n")
        await wait_for_message(browser, "plain", "from plain")
        await secured.send_all(b"from tls\n")
        await wait_for_message(browser, "tlsnc", "from tls")
        await plain.expect_line("tlsnc: from tls")
        await trio.aclose_forcefully(secured)
    finally:
        await browser.aclose()


async def test_the_page_fits_a_phone_sized_screen(harness: Harness, chromium: None) -> None:
    _server, port = await harness.start_chat_server()
    phone = await Browser.open(width=375, height=667)
    try:
        await phone.get(f"http://{LOCALHOST}:{port}/?name=pocket")
        await phone.wait_for_status("Connected as pocket")
        layout = await phone.wait_until(
            lambda driver: driver.execute_script(
                "const box = document.getElementById('line').getBoundingClientRect();"
                "const list = document.getElementById('members').getBoundingClientRect();"
                "return {width: document.documentElement.clientWidth,"
                " scroll: document.documentElement.scrollWidth,"
                " box: box.right, list: list.height, top: list.top};"
            ),
            "the page's layout",
        )
        # Nothing sideways to scroll, the text box on screen, the members on one line.
        assert layout["scroll"] <= layout["width"], layout
        assert layout["box"] <= layout["width"], layout
        assert 0 < layout["list"] < 40, layout
        if shot := os.environ.get("TRIOCHAT_PHONE_SCREENSHOT"):
            await phone.screenshot(Path(shot))
    finally:
        await phone.aclose()


async def test_history_on_joining_and_the_chat_commands_in_the_page(
    harness: Harness, browser: Browser
) -> None:
    server, port = await harness.start_chat_server()
    nc = await harness.connect(port, "nc")
    await nc.send(b"nc\n")
    await server.expect_next(rx("{dt} :: nc: connected."))
    await nc.send(b"said before you came\n")
    await nc.send(b"and this too\n")
    await server.expect_line(rx("{any}Msg-Size:12"))

    await browser.get(f"http://{LOCALHOST}:{port}/?name=late")
    await browser.wait_for_status("Connected as late")
    # The room's recent messages, dated in brackets as the line dialect shows history.
    first = await browser.wait_for_line("nc: said before you came")
    assert re.fullmatch(rf"\[{DT}\] nc: said before you came", first), first
    await browser.wait_for_line("nc: and this too")

    # Private messages both ways, and a rename that the members list follows.
    await nc.send(b"/msg late psst\n")
    await browser.wait_for_line("nc (private): psst")
    await browser.type_line("/msg nc hello you")
    await nc.expect_line("late (private): hello you")
    await nc.send(b"/nick nico\n")
    await browser.wait_for_line("nc is now nico")
    await browser.wait_for_members(["nico", "late"])
    await browser.type_line("/nick later")
    await browser.wait_for_line("late is now later")
    await browser.wait_for_members(["nico", "later"])
    await nc.send(b"still here?\n")
    await wait_for_message(browser, "nico", "still here?")
