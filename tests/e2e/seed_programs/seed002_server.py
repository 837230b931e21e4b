"""Fake of seed 002's own server (``python3 Main_Chat_Server.py``), written the seed's way.

UDP on 127.0.0.1:<port>. ``data, addr = recvfrom(1024)``: a datagram starting with ``GRE``
registers ``addr``; any other datagram from a registered address is a message whose text is
everything after its first three bytes (``MES``, so ``MESSAGE hi`` becomes ``SAGE hi``, and a
``LEAVE`` becomes ``VE``). Every registered address, the sender's included, is sent
``From('<ip>', <port>): <text>`` (``f"From{addr}: {text}"``); the same line is printed.
Prints ``Server Initialized and is running.......`` once bound (``ERR - ...`` and exit 1 if the
port is busy). Datagrams from unregistered addresses are ignored.

Not the seed's, for the tests: port 0 picks a free port, and the very first line, before the
seed's banner (which shows no port), is ``Listening on UDP port <port>`` with the port really
bound.
"""

import socket
import sys

port = int(sys.argv[1])
sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
try:
    sock.bind(("127.0.0.1", port))
except OSError:
    print(f"ERR - cannot bind UDP port {port}", flush=True)
    sys.exit(1)
print(f"Listening on UDP port {sock.getsockname()[1]}", flush=True)
print("Server Initialized and is running.......", flush=True)
clients: list[tuple[str, int]] = []
while True:
    data, addr = sock.recvfrom(1024)
    if data.startswith(b"GRE"):
        if addr not in clients:
            clients.append(addr)
    elif addr in clients:
        text = f"From{addr}: {data[3:].decode(errors='replace')}"
        for client in clients:
            sock.sendto(text.encode(), client)
        print(text, flush=True)
