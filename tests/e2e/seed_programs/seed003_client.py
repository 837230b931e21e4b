"""Fake of seed 003's own client (``python ChatClient.py <host> <port> <nick> <id>``).

Sends the nickname object (the seed's ``"timstamp"`` spelling), then each typed line as a
``message`` object: one ``send`` each, no newline. The receive thread ``json.loads`` each
``recv(1024)``: two objects in one read ("Extra data") or a closed connection end it silently.
``broadcast``: shown, counted; ``error``: message printed, exit 1; a ``disconnect`` object from
the server is a shutdown: its message (``Goodbye``) and a ``Summary:``. ``disconnect`` typed (or
end of stdin): disconnect object, at most 1 s for the receive thread, close, ``Summary:``.
"""

import json
import os
import socket
import sys
import threading
from datetime import datetime


def now() -> str:
    return datetime.now().strftime("%Y-%m-%d %H:%M:%S")


host, port, nick, client_id = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
start = now()
stats = {"sent": 0, "rcv": 0, "chars_sent": 0, "chars_rcv": 0}
sock = socket.create_connection((host, port))
print(
    f"ChatClient started with server IP: {host}, port: {port}, nickname: {nick}, "
    f"client ID: {client_id}, Date/Time: {start}",
    flush=True,
)
join = {"type": "nickname", "nickname": nick, "clientID": client_id, "timstamp": start}
sock.send(json.dumps(join).encode())


def summary() -> None:
    print(
        f"Summary: start:{start}, end:{now()}, msg sent:{stats['sent']}, msg rcv:"
        f"{stats['rcv']}, char sent:{stats['chars_sent']}, char rcv:{stats['chars_rcv']}",
        flush=True,
    )


def receive() -> None:
    while True:
        try:
            obj = json.loads(sock.recv(1024).decode())
        except (OSError, ValueError):
            return  # "Extra data", or the connection closed: silently over
        if obj.get("type") == "broadcast":
            print(f"{obj['timestamp']} :: {obj['nickname']}: {obj['message']}", flush=True)
            stats["rcv"] += 1
            stats["chars_rcv"] += len(obj["message"])
        elif obj.get("type") == "error":
            print(obj.get("message"), flush=True)
            os._exit(1)
        elif obj.get("type") == "disconnect":
            print(obj.get("message", "Server is shutting down"), flush=True)
            summary()
            return


receiver = threading.Thread(target=receive, daemon=True)
receiver.start()
while True:
    try:
        line = input()
    except EOFError:
        break
    if line.strip() == "disconnect":
        break
    message = {"type": "message", "nickname": nick, "message": line, "timestamp": now()}
    sock.send(json.dumps(message).encode())
    stats["sent"] += 1
    stats["chars_sent"] += len(line)
sock.send(json.dumps({"type": "disconnect", "nickname": nick, "clientID": client_id}).encode())
receiver.join(1.0)
sock.close()
summary()
