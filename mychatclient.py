"""Launcher: see triochat.cli.port_tagged_client_main."""

import sys

from triochat.cli import port_tagged_client_main

if __name__ == "__main__":
    sys.exit(port_tagged_client_main())
