"""Launcher: see triochat.cli.server_main."""

import sys

from triochat.cli import server_main

if __name__ == "__main__":
    sys.exit(server_main())
