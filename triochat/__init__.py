"""triochat: one Trio chat server and client for every classic chat dialect."""

__version__ = "0.1.0"
