"""Fake of seed 002's own client (``python3 Client_chat_1.py``), written the seed's way.

UDP to 127.0.0.1:<port>. Sends ``GREETINGS``, prints ``Welcome to the chat room!`` and
``Type your message and press Enter to send it``; each stdin line goes out as ``b"MES" + text``
(no space). A receive thread prints, for each datagram, the text after its first ``": "`` (the
whole datagram if there is none). Against the seed's server, ``From('<ip>', <port>): <text>``
shows as ``<text>``, its own messages included, as in the seed's transcript; against ours,
``INCOMING <ip> <port> <name>: <text>`` shows as ``<text>`` too (names contain no ``:``).
The seed leaves by Ctrl-C; here end of stdin exits 0.
"""

import socket
import sys
import threading

server = ("127.0.0.1", int(sys.argv[1]))
sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sock.sendto(b"GREETINGS", server)
print("Welcome to the chat room!", flush=True)
print("Type your message and press Enter to send it", flush=True)


def receive() -> None:
    while True:
        try:
            data, _ = sock.recvfrom(1024)
        except OSError:
            break
        print(data.decode(errors="replace").split(": ", 1)[-1], flush=True)


threading.Thread(target=receive, daemon=True).start()
while True:
    try:
        line = input()
    except EOFError:
        break
    sock.sendto(b"MES" + line.encode(), server)
sock.close()
