"""Sans-IO codecs: bytes in, events out; events in, bytes out. No trio, no sockets, no clock."""

from triochat.wire.common import NEED_DATA, NeedData, RemoteProtocolError

__all__ = ["NEED_DATA", "NeedData", "RemoteProtocolError"]
