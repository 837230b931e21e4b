"""triochat's server with one performance lever switched off, to measure what each lever buys.

This launcher starts the same ``run_chat_server``. The writer's levers are real settings of
``ServerConfig`` (``fast_path``, ``coalesce_bytes``); the other two still swap one piece from
the outside. A flag whose piece no longer exists in this version of triochat says so on
stderr and exits 3 (the benchmark then reports it).

    python benchmarks/triochat_variant.py <port> [--no-fast-path] [--no-coalesce]
        [--no-encode-cache] [--quiet-console]

--no-fast-path     ``ServerConfig(fast_path=False)``: every delivery wakes the member's
                   writer task, which sends what is queued (no flusher staging)
--no-coalesce      one ``send_all`` per message: ``coalesce_bytes = 1`` and no fast path
                   (the flusher joins a member's staged messages into one write)
--no-encode-cache  encode every message once per member instead of once per dialect
--quiet-console    skip the two console lines per message (``Received:``/``Broadcasted:``)
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from functools import partial
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import trio

from triochat.cli_server import raise_open_file_limit, run_chat_server
from triochat.room import Delivery, Encoder
from triochat.server import console
from triochat.server.config import ServerConfig

MISSING = 3


def _encode_every_time(self: Delivery, encoder: Encoder) -> bytes:
    return encoder.encode(self.event)


def _missing(what: str) -> int:
    sys.stderr.write(f"this triochat has no {what}: the lever cannot be switched off\n")
    return MISSING


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("port", type=int)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--no-fast-path", action="store_true")
    parser.add_argument("--no-coalesce", action="store_true")
    parser.add_argument("--no-encode-cache", action="store_true")
    parser.add_argument("--quiet-console", action="store_true")
    args = parser.parse_args()
    limits = ServerConfig()
    if args.no_fast_path or args.no_coalesce:
        if not hasattr(limits, "fast_path"):
            return _missing("ServerConfig.fast_path")
        limits = dataclasses.replace(limits, fast_path=False)
    if args.no_coalesce:
        if not hasattr(limits, "coalesce_bytes"):
            return _missing("ServerConfig.coalesce_bytes")
        limits = dataclasses.replace(limits, coalesce_bytes=1)
    if args.no_encode_cache:
        if not hasattr(Delivery, "encode_for"):
            return _missing("Delivery.encode_for")
        Delivery.encode_for = _encode_every_time  # type: ignore[method-assign]
    if args.quiet_console:
        console.ChatConsole.message_accepted = lambda *_: None  # type: ignore[method-assign]
    raise_open_file_limit()
    try:
        return trio.run(partial(run_chat_server, args.port, args.host, limits, udp=False))
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
