"""Fake of seed 003's own server (``python ChatServer.py <port>``), written the seed's way.

A thread per client; each ``recv(1024)`` is ``json.loads``-ed as one object, so two objects in
one read ("Extra data") make it drop the client (``Error: <reason>``). A taken ``nickname``
gets the error object; the connection stays open for another try (``--close-on-taken``: it is
closed). ``message``: SPEC §7 ``Received:``, one ``send`` of a ``broadcast`` object (no newline)
to each other member, ``Broadcasted:``. ``disconnect`` or ``b""``: removed, ``disconnected.``,
closed, no acknowledgement (its client would take a server's ``disconnect`` for a shutdown).
Port 0 picks a free port; the banner shows the port really bound.
"""

import json
import socket
import sys
import threading
from datetime import datetime

members: dict[socket.socket, tuple[str, str]] = {}
lock = threading.Lock()
TAKEN = json.dumps({"type": "error", "message": "Nickname already in use"}).encode()


def now() -> str:
    return datetime.now().strftime("%Y-%m-%d %H:%M:%S")


def handle(conn: socket.socket, addr: tuple[str, int]) -> None:
    nick = None
    while True:
        try:
            data = conn.recv(1024)
            if not data:
                break
            obj = json.loads(data.decode())
        except OSError:
            break
        except ValueError as error:
            print(f"Error: {error}", flush=True)
            break
        if obj.get("type") == "nickname":
            with lock:
                taken = obj["nickname"] in [n for n, _ in members.values()]
                if not taken:
                    members[conn] = (obj["nickname"], str(obj.get("clientID")))
            if taken:
                conn.send(TAKEN)
                if "--close-on-taken" in sys.argv:
                    break
                continue
            nick = obj["nickname"]
            print(f"{now()} :: {nick}: connected.", flush=True)
        elif obj.get("type") == "message" and nick is not None:
            text, stamp, cid = obj["message"], obj.get("timestamp", now()), members[conn][1]
            who = f"IP:{addr[0]}, Port:{addr[1]}, Client-Nickname:{nick}, ClientID:{cid}"
            print(f"Received: {who}, Date/Time:{stamp}, Msg-Size:{len(text)}", flush=True)
            out = {"type": "broadcast", "nickname": nick, "message": text, "timestamp": stamp}
            with lock:
                others = [(c, n) for c, (n, _) in members.items() if c is not conn]
            for other, _ in others:
                other.send(json.dumps(out).encode())
            print(f"Broadcasted: {', '.join(n for _, n in others)}", flush=True)
        elif obj.get("type") == "disconnect":
            break
    with lock:
        members.pop(conn, None)
    if nick is not None:
        print(f"{now()} :: {nick}: disconnected.", flush=True)
    conn.close()


port = int(sys.argv[1])
try:
    server = socket.create_server(("127.0.0.1", port))  # SO_REUSEADDR, listening
except OSError:
    print(f"ERR - cannot create ChatServer socket using port number {port}", flush=True)
    sys.exit(1)
bound = server.getsockname()[1]
print(f"ChatServer started with server IP: 127.0.0.1, port: {bound} ...", flush=True)
while True:
    conn, addr = server.accept()
    threading.Thread(target=handle, args=(conn, addr), daemon=True).start()
