"""Trio I/O for the server: sessions, listeners, console."""
