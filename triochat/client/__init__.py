"""Trio I/O for the clients: stdin, and one module per client mode."""
