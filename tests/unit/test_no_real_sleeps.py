"""Unit tests wait for conditions, never for real time (the project's test standard).

A test that sleeps (``trio.sleep``/``trio.sleep_until``, in its own body or a function nested
in it) must run on the autojump clock, where sleeping costs nothing and means nothing but
"let every timer that is due fire"; ``time.sleep`` has no place here at all. Helpers that
sleep check their clock at run time instead (see ``helpers.Server.wait_until``).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

UNIT = Path(__file__).parent
CLOCK_FIXTURES = {"autojump_clock"}
SLEEPS = {"sleep", "sleep_until"}


def sleeps_in(node: ast.AST) -> list[int]:
    """Lines of ``trio.sleep(...)``/``trio.sleep_until(...)`` calls anywhere under ``node``."""
    return [
        call.lineno
        for call in ast.walk(node)
        if isinstance(call, ast.Call)
        and isinstance(call.func, ast.Attribute)
        and call.func.attr in SLEEPS
        and isinstance(call.func.value, ast.Name)
        and call.func.value.id == "trio"
    ]


def real_sleeps(source: str) -> list[str]:
    """What in a test module would wait for real time, as ``line: reason``."""
    tree = ast.parse(source)
    found: list[str] = []
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "sleep"
            and isinstance(node.func.value, ast.Name)
            and node.func.value.id == "time"
        ):
            found.append(f"{node.lineno}: time.sleep")
    for node in tree.body:
        if isinstance(node, ast.AsyncFunctionDef) and node.name.startswith("test_"):
            fixtures = {arg.arg for arg in node.args.args}
            if not fixtures & CLOCK_FIXTURES:
                found += [f"{line}: trio sleep without autojump_clock" for line in sleeps_in(node)]
    return found


@pytest.mark.parametrize("path", sorted(UNIT.glob("test_*.py")), ids=lambda path: path.name)
def test_unit_tests_never_sleep_in_real_time(path: Path) -> None:
    assert real_sleeps(path.read_text()) == []


def test_the_check_sees_what_it_should() -> None:
    bad = (
        "import time, trio\n"
        "async def test_a() -> None:\n"
        "    async def later() -> None:\n"
        "        await trio.sleep(1)\n"
        "    await later()\n"
        "def test_b() -> None:\n"
        "    time.sleep(0.1)\n"
    )
    assert real_sleeps(bad) == ["7: time.sleep", "4: trio sleep without autojump_clock"]
    good = (
        "import trio\n"
        "async def test_a(autojump_clock: object) -> None:\n"
        "    await trio.sleep(1)\n"
        "async def test_b() -> None:\n"
        "    await trio.testing.wait_all_tasks_blocked()\n"
    )
    assert real_sleeps(good) == []
