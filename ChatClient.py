"""Launcher: see triochat.cli.client_main."""

import sys

from triochat.cli import client_main

if __name__ == "__main__":
    sys.exit(client_main())
