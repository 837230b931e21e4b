"""A real browser for the end-to-end tests: Debian's Chromium, driven by Selenium.

Selenium's calls block, so each runs in a worker thread (``trio.to_thread``) and the test's
other peers keep being read meanwhile. Every wait is a condition polled until it holds (or
the deadline passes), never a fixed sleep. Without Chromium and its driver the tests that
need a browser are skipped, saying what to install.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import trio

from .harness import TIMEOUT

T = TypeVar("T")

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome")
DRIVER_NAMES = ("chromedriver",)
POLL = 0.05
"""Seconds between two looks at the page while waiting for a condition."""


def find_chromium() -> tuple[str, str] | None:
    """The paths of a Chromium and its driver, or ``None`` if either is missing."""
    browser = next((p for n in CHROMIUM_NAMES if (p := shutil.which(n))), None)
    driver = next((p for n in DRIVER_NAMES if (p := shutil.which(n))), None)
    if driver is None and Path("/usr/lib/chromium/chromedriver").exists():
        driver = "/usr/lib/chromium/chromedriver"
    return (browser, driver) if browser and driver else None


MISSING = (
    "needs Chromium and its driver: apt-get install -y chromium chromium-driver "
    "(.ci/run installs them when it can)"
)


class Browser:
    """One headless Chromium window on the chat page.

    Args:
        driver: the Selenium driver (closed by :meth:`aclose`).
    """

    def __init__(self, driver: Any) -> None:
        self.driver = driver

    @classmethod
    async def open(cls, *, width: int = 900, height: int = 600, trust_spki: str = "") -> Browser:
        """Start Chromium (headless). ``trust_spki``: a base64 SHA-256 of a server key's
        SubjectPublicKeyInfo that Chromium trusts for TLS (the tests' own certificate)."""
        found = find_chromium()
        if found is None:
            import pytest

            pytest.skip(MISSING)
        return cls(await trio.to_thread.run_sync(_start_driver, *found, width, height, trust_spki))

    async def _run(self, function: Callable[..., T], *args: Any) -> T:
        return await trio.to_thread.run_sync(partial(function, *args))

    async def get(self, url: str) -> None:
        """Load ``url``."""
        await self._run(self.driver.get, url)

    async def wait_until(
        self, condition: Callable[[Any], T | None], what: str, within: float = TIMEOUT
    ) -> T:
        """Poll ``condition(driver)`` until it returns something true; fail after ``within``."""
        from selenium.common.exceptions import TimeoutException
        from selenium.webdriver.support.ui import WebDriverWait

        wait = WebDriverWait(self.driver, within, poll_frequency=POLL)
        try:
            result: T = await self._run(wait.until, condition)
            return result
        except TimeoutException:
            raise AssertionError(
                f"browser: timed out waiting for {what}; status {await self.status()!r}, "
                f"log:\n" + "\n".join(await self.lines())
            ) from None

    async def lines(self) -> list[str]:
        """The page's message log, one string per line."""
        return await self._run(_texts, self.driver, "#log li")

    async def members(self) -> list[str]:
        """The members list as the page shows it."""
        return await self._run(_texts, self.driver, "#members li")

    async def status(self) -> str:
        """The status line."""
        return str(await self._run(self.driver.execute_script, _STATUS))

    async def type_line(self, text: str) -> None:
        """Type ``text`` into the text box and press Enter."""
        await self._run(_type, self.driver, text)

    async def wait_for_line(self, pattern: str, within: float = TIMEOUT) -> str:
        """The first log line that contains ``pattern`` (waits for it)."""

        def found(driver: Any) -> str | None:
            return next((line for line in _texts(driver, "#log li") if pattern in line), None)

        return await self.wait_until(found, f"a log line with {pattern!r}", within)

    async def wait_for_status(self, pattern: str, within: float = TIMEOUT) -> str:
        """The status line once it contains ``pattern``."""

        def found(driver: Any) -> str | None:
            text = str(driver.execute_script(_STATUS))
            return text if pattern in text else None

        return await self.wait_until(found, f"the status {pattern!r}", within)

    async def wait_for_members(self, names: list[str], within: float = TIMEOUT) -> None:
        """Wait until the members list is exactly ``names`` (in any order)."""

        def found(driver: Any) -> bool:
            return sorted(_texts(driver, "#members li")) == sorted(names)

        await self.wait_until(found, f"the members {names}", within)

    async def screenshot(self, path: Path) -> None:
        """Save a PNG of the window."""
        await self._run(self.driver.save_screenshot, str(path))

    async def aclose(self) -> None:
        """Quit the browser (and its driver process)."""
        with trio.CancelScope(shield=True):
            await self._run(self.driver.quit)


_STATUS = "return document.getElementById('status').textContent"


def _texts(driver: Any, selector: str) -> list[str]:
    script = f"return [...document.querySelectorAll({selector!r})].map(e => e.textContent)"
    return [str(text) for text in driver.execute_script(script)]


def _type(driver: Any, text: str) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    box = driver.find_element(By.ID, "line")
    box.send_keys(text + Keys.ENTER)


def _start_driver(browser: str, driver: str, width: int, height: int, trust_spki: str) -> Any:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for argument in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--disable-extensions",
        "--hide-scrollbars",
        f"--window-size={width},{height}",
    ):
        options.add_argument(argument)
    if trust_spki:
        # Trust exactly the test server's key, nothing else: real TLS checks otherwise.
        options.add_argument(f"--ignore-certificate-errors-spki-list={trust_spki}")
    # Selenium must not try to download a driver: Debian's is the one to use.
    os.environ.setdefault("SE_OFFLINE", "true")
    return webdriver.Chrome(options=options, service=Service(executable_path=driver))
