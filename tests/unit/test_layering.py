"""The sans-IO layer stays sans-IO: no trio, sockets, event loops, clock or coroutines (DESIGN)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "triochat"
FORBIDDEN_MODULES = frozenset({"trio", "socket", "asyncio", "select", "selectors", "time"})
PURE_MODULES = sorted(
    [
        *(PACKAGE / "wire").glob("*.py"),
        PACKAGE / "events.py",
        PACKAGE / "text.py",
        PACKAGE / "timestamps.py",
    ]
)


def violations(source: str) -> list[str]:
    """What in ``source`` breaks the sans-IO rules, one entry per offence."""
    found: list[str] = []
    for node in ast.walk(ast.parse(source)):
        line = getattr(node, "lineno", 0)
        imported: list[str] = []
        if isinstance(node, ast.Import):
            imported = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            imported = [node.module]
        found += [
            f"line {line}: imports {name}"
            for name in imported
            if name.split(".")[0] in FORBIDDEN_MODULES
        ]
        if isinstance(node, ast.AsyncFunctionDef):
            found.append(f"line {line}: async def {node.name}")
        elif isinstance(node, ast.Await | ast.AsyncFor | ast.AsyncWith):
            found.append(f"line {line}: {type(node).__name__.lower()}")
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id == "__import__"
        ):
            found.append(f"line {line}: __import__")
    return found


def test_the_pure_modules_exist() -> None:
    names = {module_id(path) for path in PURE_MODULES}
    assert {"events.py", "text.py", "timestamps.py", "wire/lines.py", "wire/json_lines.py"} <= names


def module_id(path: Path) -> str:
    return path.relative_to(PACKAGE).as_posix()


@pytest.mark.parametrize("path", PURE_MODULES, ids=module_id)
def test_module_is_sans_io(path: Path) -> None:
    assert violations(path.read_text(encoding="utf-8")) == []


@pytest.mark.parametrize(
    ("source", "offence"),
    [
        ("import trio", "imports trio"),
        ("import trio.lowlevel as ll", "imports trio.lowlevel"),
        ("from trio import open_nursery", "imports trio"),
        ("import os, socket", "imports socket"),
        ("from asyncio import sleep", "imports asyncio"),
        ("import select", "imports select"),
        ("import selectors", "imports selectors"),
        ("from time import monotonic", "imports time"),
        ("async def f():\n    pass", "async def f"),
        ("class C:\n    async def m(self):\n        pass", "async def m"),
        ("def f():\n    await g()", "await"),
        ("__import__('socket')", "__import__"),
    ],
)
def test_the_checker_catches_offences(source: str, offence: str) -> None:
    found = violations(source)
    assert len(found) == 1
    assert offence in found[0]


@pytest.mark.parametrize(
    "source",
    [
        "import datetime",
        "from datetime import time",
        "import timeit_helpers",
        "from .time import x",
        "import json, re",
        "def f():\n    return 1",
    ],
)
def test_the_checker_allows_pure_code(source: str) -> None:
    assert violations(source) == []
