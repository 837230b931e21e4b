"""One room across several server processes, through Redis Streams (``--cluster``, SPEC §10).

Nothing here is imported unless ``--cluster`` is given, and only :mod:`.link` needs the
optional ``coredis`` package (``pip install 'triochat[cluster]'``): the default server stays
one process with the room in memory and nothing to install.

- :mod:`.address`: ``redis://host:port[/db]`` -> :class:`~.address.ClusterAddress` (pure).
- :mod:`.records`: what a stream entry or a name claim holds, as JSON (pure).
- :mod:`.room`: :class:`~.room.ClusterRoom`, the room sessions see; fans out what the stream
  delivers, in stream order.
- :mod:`.link`: the Redis side: XADD, blocking XREAD from the last ID, name leases and their
  heartbeat, reconnection with backoff.
"""
