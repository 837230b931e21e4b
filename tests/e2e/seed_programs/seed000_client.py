"""Fake of seed 000's own client (``python ChatClient.py <port>``), written the seed's way.

Modelled: connects to 127.0.0.1:<port>; every stdin line (``input()``) goes out in one
``sock.send(line.encode())`` with no newline, the first one being the name; a receive thread
prints each ``recv(1024)`` with ``print(data.decode())`` (so two messages in one read show
glued on one line, and a relayed ``"...\\n"`` shows a blank line after it). ``recv() == b""``
ends the receive thread; end of stdin closes the socket and exits (0). Prints nothing else.
"""

import socket
import sys
import threading

sock = socket.create_connection(("127.0.0.1", int(sys.argv[1])))


def receive() -> None:
    while True:
        try:
            data = sock.recv(1024)
        except OSError:
            break
        if not data:
            break
        print(data.decode(), flush=True)


threading.Thread(target=receive, daemon=True).start()
while True:
    try:
        line = input()
    except EOFError:
        break
    sock.send(line.encode())
sock.close()
