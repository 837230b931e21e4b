"""Fake of seed 000's own server (``python ChatServer.py <port>``), written the seed's way.

Modelled: one thread per client; the first ``recv(1024)`` is the name, decoded and kept as is
(not stripped, so ``b"alice\\n"`` is the name ``"alice\\n"``); every later ``recv(1024)`` is
relayed to every *other* client as ``f"{name}: {chunk}"`` in one ``send`` with nothing added
(no newline); ``recv() == b""`` removes and closes that client.

Console (for the tests, the seed prints nothing fixed): ``Listening on port <port>``,
``New client: <name repr>``, ``Relayed: <relayed text repr>`` (after the sends) and
``Closed: <name repr>``. Port 0 picks a free port; the first line shows the port really bound
(``ERR - cannot bind port <port>`` and exit 1 if the port is busy).
"""

import contextlib
import socket
import sys
import threading

clients: list[socket.socket] = []
lock = threading.Lock()


def handle(conn: socket.socket) -> None:
    name = conn.recv(1024).decode()
    if not name:
        conn.close()
        return
    with lock:
        clients.append(conn)
    print(f"New client: {name!r}", flush=True)
    while True:
        try:
            data = conn.recv(1024)
        except OSError:
            break
        if not data:
            break
        text = f"{name}: {data.decode()}"
        with lock:
            others = [c for c in clients if c is not conn]
        for other in others:
            with contextlib.suppress(OSError):
                other.send(text.encode())
        print(f"Relayed: {text!r}", flush=True)
    with lock:
        clients.remove(conn)
    conn.close()
    print(f"Closed: {name!r}", flush=True)


port = int(sys.argv[1])
try:
    server = socket.create_server(("127.0.0.1", port))  # SO_REUSEADDR, listening
except OSError:
    print(f"ERR - cannot bind port {port}", flush=True)
    sys.exit(1)
print(f"Listening on port {server.getsockname()[1]}", flush=True)
while True:
    conn, _ = server.accept()
    threading.Thread(target=handle, args=(conn,), daemon=True).start()
