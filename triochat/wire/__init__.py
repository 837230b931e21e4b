"""Sans-IO codecs: bytes in, events out; events in, bytes out. No trio, no sockets, no clock.

Every dialect has one codec per role, all of one shape (h11's): ``receive_data(bytes)`` then
``next_event()`` until ``NEED_DATA`` (datagrams: ``receive_datagram(bytes)``, one event per
datagram), and ``send(event) -> bytes`` (``list[bytes]`` where one event may need several
datagrams). The server role decodes :data:`~triochat.events.ClientEvent` and sends
:data:`~triochat.events.ServerEvent`; the client role the other way round.
"""

from triochat.wire.common import NEED_DATA, NeedData, RemoteProtocolError, Role

__all__ = ["NEED_DATA", "NeedData", "RemoteProtocolError", "Role"]
