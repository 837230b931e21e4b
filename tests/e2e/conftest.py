"""Fixtures for the end-to-end tests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trio

from .harness import Harness


@pytest.fixture
async def harness(nursery: trio.Nursery, tmp_path: Path) -> AsyncIterator[Harness]:
    """A harness whose programs run in ``tmp_path`` and are all killed when the test ends."""
    started = Harness(nursery, tmp_path)
    try:
        yield started
    finally:
        await started.aclose()
