"""Ctrl-C while a program is still starting: exit at once, quietly, and never miss it.

Python turns Ctrl-C into ``KeyboardInterrupt`` wherever the main thread happens to be. While
modules are being imported that can be inside importlib's weakref callbacks, where CPython
prints "Exception ignored" and drops the exception: the program then runs on as if it had
never been interrupted (seen about once in 150 tries with SIGINT 0.1-0.3 s after start). A
handler that exits directly cannot be dropped, and before anything is served there is nothing
to tell anyone or clean up.

Imports nothing but the standard library, so a launcher can install it first thing.
"""

from __future__ import annotations

import os
import signal
import types

EXIT_INTERRUPTED = 130
"""The shell's code for a program ended by Ctrl-C (128 + SIGINT)."""


def _exit_now(signum: int, frame: types.FrameType | None) -> None:
    os._exit(EXIT_INTERRUPTED)


def exit_on_ctrl_c() -> None:
    """From now until :func:`hand_ctrl_c_to_trio`, Ctrl-C ends the process with 130.

    An inherited "ignore SIGINT" (a background job) is left as it is.
    """
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        signal.signal(signal.SIGINT, _exit_now)


_ctrl_c_pending = False


def _remember(signum: int, frame: types.FrameType | None) -> None:
    global _ctrl_c_pending
    _ctrl_c_pending = True


def defer_ctrl_c() -> None:
    """From now on Ctrl-C is only remembered (see :func:`ctrl_c_pending`), not acted on.

    For a client that has already joined before Trio runs and must still say goodbye (the
    JSON client's ``Summary:``): it checks the flag once its own signal receiver is open.
    """
    if signal.getsignal(signal.SIGINT) is _exit_now:
        signal.signal(signal.SIGINT, _remember)


def ctrl_c_pending() -> bool:
    """True if Ctrl-C came while it was deferred (:func:`defer_ctrl_c`)."""
    return _ctrl_c_pending


def hand_ctrl_c_to_trio() -> None:
    """Give Ctrl-C back to Python, so that ``trio.run`` raises it in the main task."""
    if signal.getsignal(signal.SIGINT) is _exit_now:
        signal.signal(signal.SIGINT, signal.default_int_handler)
