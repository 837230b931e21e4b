"""triochat's server with one performance lever switched off, to measure what each lever buys.

This launcher starts the same ``run_chat_server``; every lever is a real setting of
``ServerConfig``. A flag whose setting does not exist in this version of triochat (a
``--before`` checkout) says so on stderr and exits 3 (the benchmark then reports it).

    python -m benchmarks.triochat_variant <port> [--no-fast-path] [--no-coalesce]
        [--no-encode-cache] [--quiet-console] [--no-history] [--history-db FILE]

It is a server for ``python -m benchmarks.fanout`` (which starts it), not a benchmark.

--no-fast-path     ``ServerConfig(fast_path=False)``: every delivery wakes the member's
                   writer task, which sends what is queued (no flusher staging)
--no-coalesce      one ``send_all`` per message: ``coalesce_bytes = 1`` and no fast path
                   (the flusher joins a member's staged messages into one write)
--no-encode-cache  ``ServerConfig(encode_once=False)``: encode every message once per
                   member instead of once per dialect
--quiet-console    ``ServerConfig(log_messages=False)``: skip the two console lines per
                   message (``Received:``/``Broadcasted:``)
--no-history       ``ServerConfig(history=0)``: the room keeps no history (it keeps the
                   last 100 messages by default)
--history-db FILE  ``ServerConfig(history_db=FILE)``: history also goes to SQLite (not a
                   lever switched off but one switched on: what durability costs)
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from functools import partial

import trio

from triochat.cli_server import raise_open_file_limit, run_chat_server
from triochat.server.config import ServerConfig

MISSING = 3


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
    parser.add_argument("--no-history", action="store_true")
    parser.add_argument("--history-db", default=None)
    args = parser.parse_args()
    switched_off: dict[str, object] = {}
    if args.no_fast_path or args.no_coalesce:
        switched_off["fast_path"] = False
    if args.no_coalesce:
        switched_off["coalesce_bytes"] = 1
    if args.no_encode_cache:
        switched_off["encode_once"] = False
    if args.quiet_console:
        switched_off["log_messages"] = False
    if args.no_history:
        switched_off["history"] = 0
    if args.history_db:
        switched_off["history_db"] = args.history_db
    settings = {field.name for field in dataclasses.fields(ServerConfig)}
    for name in switched_off:
        if name not in settings:
            return _missing(f"ServerConfig.{name}")
    limits = ServerConfig(**switched_off)  # type: ignore[arg-type]
    raise_open_file_limit()
    try:
        return trio.run(partial(run_chat_server, args.port, args.host, limits, udp=False))
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
