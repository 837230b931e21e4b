"""End-to-end tests: the real programs run as processes and talk over 127.0.0.1."""
