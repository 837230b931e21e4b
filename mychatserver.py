"""Launcher: see triochat.cli.port_tagged_server_main."""

import sys

from triochat.cli import port_tagged_server_main

if __name__ == "__main__":
    sys.exit(port_tagged_server_main())
