"""Fixtures for the end-to-end tests, and their marker: every test here is ``e2e``."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trio

from .harness import Harness
from .tls_files import TlsFiles, make_tls_files

E2E_DIR = Path(__file__).resolve().parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test in this directory ``e2e`` (``-m "not e2e"`` runs the unit tests only)."""
    for item in items:
        if E2E_DIR in Path(str(item.path)).resolve().parents:
            item.add_marker(pytest.mark.e2e)


@pytest.fixture
async def harness(nursery: trio.Nursery, tmp_path: Path) -> AsyncIterator[Harness]:
    """A harness whose programs run in ``tmp_path`` and are all killed when the test ends."""
    started = Harness(nursery, tmp_path)
    try:
        yield started
    finally:
        await started.aclose()


@pytest.fixture
def tls_files(tmp_path: Path) -> TlsFiles:
    """A private CA and a certificate for 127.0.0.1 (skipped without ``trustme``)."""
    return make_tls_files(tmp_path)
