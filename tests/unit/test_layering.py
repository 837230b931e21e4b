"""Every layer of DESIGN.md imports only the layers below it, and the pure ones stay pure.

- wire (``wire/*``): may import wire and the pure core; no trio, sockets, async or clocks.
- pure core (``events``, ``history``, ``text``, ``timestamps``): each other only; no I/O,
  async or clocks.
- room (``room``, ``member``): wire and the pure core; trio for its channels, but no sockets or
  clocks.
- clock (``clock``): the pure core; the one module that reads the current time.
- file I/O (``transfer_io``, shared by the relay and the file agent): wire, the pure core.
- server (``server/*``): wire, core, room, clock, file I/O, server; no clients, no command
  lines.
- client (``client/*`` but ``early``): wire, pure core, clock, file I/O, startup, client; not
  the room, the servers or the command lines.
- early start (``client/early``, ``startup``): the standard library only (no trio).
- command lines (``cli``, ``cli_server``): anything.

Server and client share only ``wire/``, the pure core and the helpers named above. Imports
inside functions count as well (the command lines import a mode only when it is chosen).
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "triochat"

WIRE = "wire"
PURE_CORE = frozenset({"events", "history", "text", "timestamps"})
IO_MODULES = frozenset({"trio", "socket", "asyncio", "select", "selectors"})
CLOCKS = frozenset({"time"})
CLOCK_CALLS = frozenset({"now", "today", "utcnow", "monotonic", "perf_counter"})
"""Attribute calls that read the current time (``datetime.now()``, ``time.monotonic()``)."""


@dataclass(frozen=True)
class Layer:
    """What one layer may import, and whether it must stay free of I/O and clocks."""

    name: str
    may_import: frozenset[str]
    """Top parts of ``triochat.<part>`` this layer may import ("*" for anything)."""
    no_io: bool = False
    no_clock: bool = False
    no_async: bool = False


CORE = frozenset({WIRE, *PURE_CORE})
LAYERS = {
    "wire": Layer("wire", CORE, no_io=True, no_clock=True, no_async=True),
    "pure core": Layer("pure core", PURE_CORE, no_io=True, no_clock=True, no_async=True),
    "room": Layer("room", CORE | {"room", "member"}, no_clock=True),
    "clock": Layer("clock", PURE_CORE, no_io=True, no_async=True),
    "file I/O": Layer("file I/O", CORE, no_clock=True),
    "server": Layer("server", CORE | {"room", "member", "clock", "transfer_io", "server"}),
    "client": Layer("client", CORE | {"clock", "transfer_io", "client", "startup"}),
    "cluster": Layer("cluster", CORE | {"room", "member", "history", "cluster"}, no_clock=True),
    "early start": Layer("early start", frozenset(), no_async=True),
    "command lines": Layer("command lines", frozenset({"*"})),
}


def layer_of(path: Path) -> Layer:
    """The layer a module of the package belongs to."""
    parts = path.relative_to(PACKAGE).with_suffix("").parts
    top = parts[0]
    if top == "wire":
        return LAYERS["wire"]
    if parts in (("client", "early"), ("startup",)):
        return LAYERS["early start"]
    if top in ("server", "client", "cluster"):
        return LAYERS[top]
    named = {
        "room": "room",
        "member": "room",
        "clock": "clock",
        "transfer_io": "file I/O",
        "cli": "command lines",
        "cli_server": "command lines",
        "__init__": "pure core",
    }
    if top in named:
        return LAYERS[named[top]]
    if top in PURE_CORE:
        return LAYERS["pure core"]
    raise AssertionError(f"{path}: no layer: add it to the table in this test and DESIGN.md")


def imported_modules(tree: ast.AST) -> list[tuple[int, str]]:
    """(line, absolute module name) for every import in ``tree``, nested ones included."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
            # ``from triochat import clock`` names a module too.
            if node.module == "triochat":
                found += [(node.lineno, f"triochat.{alias.name}") for alias in node.names]
    return found


def violations(source: str, layer: Layer) -> list[str]:
    """What in ``source`` breaks ``layer``'s rules, one entry per offence."""
    tree = ast.parse(source)
    found: list[str] = []
    for line, module in imported_modules(tree):
        parts = module.split(".")
        if parts[0] == "triochat" and len(parts) > 1:
            if "*" not in layer.may_import and parts[1] not in layer.may_import:
                found.append(f"line {line}: imports {module}")
        elif (
            (layer.no_io and parts[0] in IO_MODULES)
            or (layer.no_clock and parts[0] in CLOCKS)
            or (layer.name == "early start" and parts[0] == "trio")
        ):
            found.append(f"line {line}: imports {module}")
    for node in ast.walk(tree):
        line = getattr(node, "lineno", 0)
        if layer.no_async and isinstance(
            node, ast.AsyncFunctionDef | ast.Await | ast.AsyncFor | ast.AsyncWith
        ):
            found.append(f"line {line}: {type(node).__name__}")
        if (
            layer.no_clock
            and isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr in CLOCK_CALLS
        ):
            found.append(f"line {line}: reads the clock ({node.func.attr}())")
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id == "__import__"
        ):
            found.append(f"line {line}: __import__")
    return found


MODULES = sorted(PACKAGE.rglob("*.py"))


def module_id(path: Path) -> str:
    return path.relative_to(PACKAGE).as_posix()


@pytest.mark.parametrize("path", MODULES, ids=module_id)
def test_module_keeps_its_layer(path: Path) -> None:
    assert violations(path.read_text(encoding="utf-8"), layer_of(path)) == []


def test_every_layer_has_modules() -> None:
    used = {layer_of(path).name for path in MODULES}
    assert used == set(LAYERS)


@pytest.mark.parametrize(
    ("source", "layer", "offence"),
    [
        ("import trio", "wire", "imports trio"),
        ("from trio import open_nursery", "pure core", "imports trio"),
        ("import os, socket", "wire", "imports socket"),
        ("from asyncio import sleep", "wire", "imports asyncio"),
        ("import selectors", "clock", "imports selectors"),
        ("from time import monotonic", "room", "imports time"),
        ("async def f():\n    pass", "wire", "AsyncFunctionDef"),
        ("def f():\n    await g()", "pure core", "Await"),
        ("__import__('socket')", "wire", "__import__"),
        ("import datetime\nx = datetime.datetime.now()", "room", "reads the clock"),
        ("from datetime import date\ndate.today()", "pure core", "reads the clock"),
        ("from triochat.server.session import ChatSession", "client", "triochat.server"),
        ("from triochat.room import Room", "client", "triochat.room"),
        ("from triochat.client import early", "server", "triochat.client"),
        ("from triochat.cli import run_program", "server", "triochat.cli"),
        ("from triochat.clock import now_display", "room", "triochat.clock"),
        ("from triochat.room import Room", "wire", "triochat.room"),
        ("def f():\n    import triochat.server.serve", "client", "triochat.server"),
        ("from triochat import clock", "wire", "triochat.clock"),
        ("import trio", "early start", "imports trio"),
        ("from triochat.events import Say", "early start", "triochat.events"),
    ],
)
def test_the_checker_catches_offences(source: str, layer: str, offence: str) -> None:
    found = violations(source, LAYERS[layer])
    assert len(found) == 1, found
    assert offence in found[0]


@pytest.mark.parametrize(
    ("source", "layer"),
    [
        ("import datetime\ndatetime.datetime.fromtimestamp(0)", "pure core"),
        ("from datetime import time", "wire"),
        ("import json, re", "wire"),
        ("import trio", "room"),
        ("from triochat.clock import now_display", "server"),
        ("from triochat.server.serve import serve_chat", "command lines"),
        ("import socket, os, sys", "early start"),
    ],
)
def test_the_checker_allows_what_a_layer_may_do(source: str, layer: str) -> None:
    assert violations(source, LAYERS[layer]) == []
