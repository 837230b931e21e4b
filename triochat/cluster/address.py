"""``--cluster redis://host:port[/db]``: the address of the Redis that nodes share."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

DEFAULT_REDIS_PORT = 6379


@dataclass(frozen=True)
class ClusterAddress:
    """Where the cluster's Redis is.

    Attributes:
        host: its host name or IP address.
        port: its TCP port.
        db: the logical database number (``SELECT``), 0 by default.
    """

    host: str
    port: int
    db: int = 0

    def __str__(self) -> str:
        return f"redis://{self.host}:{self.port}/{self.db}"


def parse_cluster_address(text: str) -> ClusterAddress:
    """Parse ``redis://host[:port][/db]``.

    Raises:
        ValueError: not such an address (the message says what is wrong).
    """
    parts = urlsplit(text)
    if parts.scheme != "redis":
        raise ValueError(f"{text!r} is not a redis://host:port[/db] address")
    try:
        port = parts.port or DEFAULT_REDIS_PORT
    except ValueError as error:
        raise ValueError(f"{text!r}: bad port") from error
    if not parts.hostname:
        raise ValueError(f"{text!r}: no host")
    if parts.username or parts.password or parts.query or parts.fragment:
        # Credentials on the command line would show in every `ps`; none are supported yet.
        raise ValueError(f"{text!r}: only redis://host:port[/db] is supported")
    path = parts.path.strip("/")
    if path and not path.isdigit():
        raise ValueError(f"{text!r}: the database must be a number")
    return ClusterAddress(parts.hostname, port, int(path) if path else 0)
