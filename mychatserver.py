"""Launcher: see triochat.cli_server.port_tagged_server_main."""

import sys

if __name__ == "__main__":
    try:
        from triochat.startup import exit_on_ctrl_c

        exit_on_ctrl_c()
        from triochat.cli_server import port_tagged_server_main

        sys.exit(port_tagged_server_main())
    except KeyboardInterrupt:
        # Ctrl-C before the handler above was in place: still no traceback.
        sys.exit(130)
