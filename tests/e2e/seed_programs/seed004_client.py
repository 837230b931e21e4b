"""Fake of seed 004's own client (``python mychatclient.py``), written the seed's way.

Prints ``Connected to chat server. Type 'exit' to leave.``; a receive thread does
``msg = sock.recv(1024).decode()`` and stops when ``msg == "exit"`` exactly, otherwise it
prints ``"\\n" + msg`` (every message shows as a blank line, then the message). It never checks
for ``b""``: once the server has closed without echoing exactly ``exit`` it prints blank lines
in a loop -- the real one forever, this one for :data:`FLOOD` empty reads. Each stdin line is
sent raw in one ``send`` (no newline); after ``exit`` (end of stdin counts as ``exit``) it waits
for the receive thread, then prints ``Disconnected from server`` and exits 0. Where the real
client would hang, this one gives up after :data:`HANG` seconds: prints ``(hung)``, exits 2.
"""

import os
import socket
import sys
import threading

FLOOD = 50
HANG = 5.0
port = int(sys.argv[sys.argv.index("--port") + 1]) if "--port" in sys.argv else 12000
sock = socket.create_connection(("127.0.0.1", port))
print("Connected to chat server. Type 'exit' to leave.", flush=True)


def receive() -> None:
    empty_reads = 0
    while True:
        try:
            msg = sock.recv(1024).decode()
        except OSError:
            break
        if msg == "exit":
            break
        if not msg:
            empty_reads += 1
            if empty_reads > FLOOD:
                break
        print("\n" + msg, flush=True)


receiver = threading.Thread(target=receive, daemon=True)
receiver.start()
while True:
    try:
        line = input()
    except EOFError:
        line = "exit"
    sock.send(line.encode())
    if line == "exit":
        break
receiver.join(HANG)
if receiver.is_alive():
    print("(hung)", flush=True)
    os._exit(2)
print("Disconnected from server", flush=True)
sock.close()
